"""Stacking measured: each family's score as a logistic regression on every score of both members.

The averaged ensemble takes the mean of its members' scores per family. This measures whether a
learnt combination does better: per family, a logistic regression (scikit-learn, C=0.1) on the
logits of all of both members' outputs (ten heads and the gate each), fitted on the held-out
validation windows with a family question. It is scored on the left-out library's windows (another
source: the clean test) and, by 5-fold cross-validation over the windows, on the held-out windows
themselves (optimistic: the folds share instruments). Prints the per-family AUC of the mean and of
the stacked score on both. Needs scikit-learn, which tagger does not install
(``.venv/bin/pip install scikit-learn``).

    .venv/bin/python scripts/stack_scores.py ~/.cache/tagger/runs/pair-lo-shift4-sections-soft-onese \\
        ~/.cache/tagger/train/examples-1f5b7b3e65db55b4
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(pair: Path, valid: Path) -> None:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict
    except ImportError:
        raise SystemExit("scripts/stack_scores.py needs scikit-learn, which tagger does not install (librosa, which "
                         "brought it, is in the test extra alone): .venv/bin/pip install scikit-learn") from None

    from tagger.evaluate.metrics import auc
    from tagger.model import average as A
    from tagger.model import ensemble as E

    manifest = E.read_manifest(pair)
    fams = list(manifest["families"])
    k = len(fams)
    vs = A._validation_set(valid, manifest)
    lo = A._validation_set(valid / "left_out", manifest, columns_from=valid)
    members = [E.Ensemble.load(pair / m["dir"]) for m in manifest["members"]]

    def scores(x):  # each member: its k heads, then its gate
        return np.concatenate([m.predict_raw(x) for m in members], axis=1)

    def logit(p):
        p = np.clip(p, 1e-5, 1 - 1e-5)
        return np.log(p / (1 - p))

    xh, xl = scores(vs.feats), scores(lo.feats)
    sh, sl = vs.kind < 3, lo.kind < 3
    rows = []
    for j, f in enumerate(fams):
        mean_h, mean_l = (xh[:, j] + xh[:, k + 1 + j]) / 2, (xl[:, j] + xl[:, k + 1 + j]) / 2
        y = vs.labels[sh, j]
        fitted = LogisticRegression(C=0.1, max_iter=2000).fit(logit(xh[sh]), y)
        cv = cross_val_predict(LogisticRegression(C=0.1, max_iter=2000), logit(xh[sh]), y, cv=5, method="predict_proba")[:, 1]
        rows.append((auc(y, mean_h[sh]), auc(y, cv), auc(lo.labels[sl, j], mean_l[sl]),
                     auc(lo.labels[sl, j], fitted.predict_proba(logit(xl[sl]))[:, 1])))  # fmt: skip
        print(f"{f:9s} held-out mean {rows[-1][0]:.4f} stacked (5-fold) {rows[-1][1]:.4f} | "
              f"left-out mean {rows[-1][2]:.4f} stacked {rows[-1][3]:.4f}", flush=True)  # fmt: skip
    m = np.mean(rows, axis=0)
    print(f"mean      held-out mean {m[0]:.4f} stacked (5-fold) {m[1]:.4f} | left-out mean {m[2]:.4f} stacked {m[3]:.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

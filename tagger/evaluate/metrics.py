"""Evaluation metrics on 0/1 presence arrays, as the paper defines them (pure numpy).

Every function takes keyword-only arrays ``truth`` and ``pred`` [shape=(n, n_families)] of 0/1
(or bool) in the same family order; row i is one example (a solo note or a mixture).

Definitions (the paper's Section IV, with the faults of its reference code fixed):

- **Jaccard accuracy** ("multilabel accuracy" in the paper): per example |y ∩ z| / |y ∪ z|; an
  example with an empty truth and an empty prediction (polyphony level 0 answered "nothing")
  scores 1. Averaged over examples.
- **Hamming accuracy**: the share of correct bits, 1 - Hamming loss. It is *not* the Jaccard index
  (the reference code printed the IoU under this name).
- **Exact match ratio (EMR)**: the share of examples whose whole presence array is right.
- Per family: **TP/FP/TN/FN** counts, **accuracy** (TP+TN)/n, **TPR** = TP/(TP+FN) (the reference
  code computed TN/(TN+FN), see `reference_code_tpr`), **FPR** = FP/(FP+TN), precision, recall, F1.

Undefined ratios: a rate whose denominator is 0 (TPR of a family absent from every example, e.g. at
polyphony level 0; FPR of a family present in every example, e.g. at level 10; precision of a
family never predicted) is NaN, written ``null`` in JSON and "n/a" in tables. It is never silently
0 or 1, and averages over families or levels skip it, but for the solo test's macro and weighted averages
(`classification_report`), which count a family with notes never predicted as precision 0, as
scikit-learn does. F1 = 2TP / (2TP + FP + FN)
is NaN only when the family is neither present nor predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tagger.errors import UserError

NONE_LABEL = "none"
"""Column name of the solo confusion matrix for examples where no family passes its threshold."""


def as_presence(array, *, name: str = "array", width: int | None = None) -> np.ndarray:
    """Validate a 0/1 presence array and return it as bool [shape=(n, n_families)]."""
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise UserError(f"{name} must have shape (n, n_families), got {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise UserError(f"{name} must have {width} columns, got {arr.shape[1]}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise UserError(f"{name} must hold only 0 and 1")
    return arr.astype(bool)


def _pair(truth, pred) -> tuple[np.ndarray, np.ndarray]:
    t = as_presence(truth, name="truth")
    p = as_presence(pred, name="pred", width=t.shape[1])
    if len(p) != len(t):
        raise UserError(f"truth has {len(t)} rows but pred has {len(p)}")
    return t, p


def _ratio(num, den) -> np.ndarray:
    """num / den elementwise, NaN where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out if out.ndim else float(out)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


# --- example-level (multilabel) metrics -------------------------------------------------------


def jaccard_per_example(*, truth, pred) -> np.ndarray:
    """|y ∩ z| / |y ∪ z| per example [shape=(n,), dtype=float64]; 1 where both sets are empty."""
    t, p = _pair(truth, pred)
    inter = (t & p).sum(axis=1)
    union = (t | p).sum(axis=1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def jaccard_accuracy(*, truth, pred) -> float:
    """The paper's multilabel accuracy: mean Jaccard index over examples (NaN for no examples)."""
    return _mean(jaccard_per_example(truth=truth, pred=pred))


def hamming_accuracy(*, truth, pred) -> float:
    """Share of correct bits over all examples and families (1 - Hamming loss)."""
    t, p = _pair(truth, pred)
    return float((t == p).mean()) if t.size else float("nan")


def exact_match_ratio(*, truth, pred) -> float:
    """Share of examples whose presence array is entirely right."""
    t, p = _pair(truth, pred)
    return _mean((t == p).all(axis=1))


def multilabel_summary(*, truth, pred) -> dict[str, float]:
    """jaccard, hamming and emr of a set of examples, plus its size n."""
    t, p = _pair(truth, pred)
    return {
        "n": int(len(t)),
        "jaccard": jaccard_accuracy(truth=t, pred=p),
        "hamming": hamming_accuracy(truth=t, pred=p),
        "emr": exact_match_ratio(truth=t, pred=p),
    }


# --- per-family binary metrics ----------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Per-family confusion counts, each [shape=(n_families,), dtype=int64]."""

    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.tp + self.fp + self.tn + self.fn

    def matrix(self, index: int) -> np.ndarray:
        """The 2x2 confusion matrix of one family, rows = truth (absent, present), columns =
        prediction (absent, present): [[TN, FP], [FN, TP]] (scikit-learn's layout)."""
        return np.array([[self.tn[index], self.fp[index]], [self.fn[index], self.tp[index]]], dtype=np.int64)


def family_counts(*, truth, pred) -> Counts:
    """TP, FP, TN, FN of each family (column)."""
    t, p = _pair(truth, pred)
    return Counts(
        tp=(t & p).sum(axis=0).astype(np.int64),
        fp=(~t & p).sum(axis=0).astype(np.int64),
        tn=(~t & ~p).sum(axis=0).astype(np.int64),
        fn=(t & ~p).sum(axis=0).astype(np.int64),
    )


def accuracy(counts: Counts) -> np.ndarray:
    """(TP + TN) / n per family (NaN for no examples)."""
    return _ratio(counts.tp + counts.tn, counts.n)


def true_positive_rate(counts: Counts) -> np.ndarray:
    """TPR (recall, sensitivity) = TP / (TP + FN) per family; NaN where the family never occurs."""
    return _ratio(counts.tp, counts.tp + counts.fn)


def false_positive_rate(counts: Counts) -> np.ndarray:
    """FPR = FP / (FP + TN) per family; NaN where the family is present in every example."""
    return _ratio(counts.fp, counts.fp + counts.tn)


def reference_code_tpr(counts: Counts) -> np.ndarray:
    """What the paper's reference code reported as "TPR": TN / (TN + FN), the negative predictive
    value. Kept only to show (in tests and the README) that it is not the true-positive rate."""
    return _ratio(counts.tn, counts.tn + counts.fn)


def precision(counts: Counts) -> np.ndarray:
    """TP / (TP + FP) per family; NaN where the family is never predicted."""
    return _ratio(counts.tp, counts.tp + counts.fp)


def f1_score(counts: Counts) -> np.ndarray:
    """2 TP / (2 TP + FP + FN) per family (the harmonic mean of precision and recall); NaN when
    the family is neither present nor predicted, 0 when it is present but never found."""
    return _ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn)


def family_table(counts: Counts, families: Sequence[str]) -> dict[str, dict]:
    """Per family: accuracy, tpr, fpr, precision, f1, support, counts and the 2x2 matrix."""
    acc, tpr, fpr = accuracy(counts), true_positive_rate(counts), false_positive_rate(counts)
    prec, f1 = precision(counts), f1_score(counts)
    out = {}
    for i, fam in enumerate(families):
        out[fam] = {
            "accuracy": float(acc[i]),
            "tpr": float(tpr[i]),
            "fpr": float(fpr[i]),
            "precision": float(prec[i]),
            "f1": float(f1[i]),
            "support": int(counts.tp[i] + counts.fn[i]),
            "tp": int(counts.tp[i]),
            "fp": int(counts.fp[i]),
            "tn": int(counts.tn[i]),
            "fn": int(counts.fn[i]),
            "confusion": counts.matrix(i).tolist(),
        }
    return out


# --- single-label (solo) classification --------------------------------------------------------


def single_label_predictions(*, scores, thresholds) -> np.ndarray:
    """One predicted class per solo note [shape=(n,), dtype=int64] from ensemble scores.

    The class is the family with the highest score *among the families whose score reaches their
    threshold*; when no family reaches its threshold the class is ``n_families`` (the "none"
    column). Scores of families that did not pass their threshold are ignored, so the single-label
    view never names a family the ensemble itself rejected, and an ensemble that hears nothing is
    counted wrong rather than given its most likely guess.
    """
    s = np.asarray(scores, dtype=np.float64)
    th = np.asarray(thresholds, dtype=np.float64)
    if s.ndim != 2 or th.shape != (s.shape[1],):
        raise UserError(f"scores must be (n, n_families) with one threshold per family; got {s.shape} and {th.shape}")
    passed = s >= th
    masked = np.where(passed, s, -np.inf)
    out = np.argmax(masked, axis=1).astype(np.int64)
    out[~passed.any(axis=1)] = s.shape[1]
    return out


def solo_confusion_matrix(*, truth_index, pred_index, n_families: int) -> np.ndarray:
    """Counts [shape=(n_families, n_families + 1), dtype=int64]: row = true family, column =
    predicted family, the last column = "none" (no family passed its threshold)."""
    t = np.asarray(truth_index, dtype=np.int64)
    p = np.asarray(pred_index, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise UserError(f"truth and prediction indices must be matching 1-D arrays, got {t.shape} and {p.shape}")
    if len(t) and (t.min() < 0 or t.max() >= n_families or p.min() < 0 or p.max() > n_families):
        raise UserError("class index out of range")
    cm = np.zeros((n_families, n_families + 1), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def classification_report(confusion: np.ndarray, families: Sequence[str]) -> dict:
    """Table VI from a solo confusion matrix (`solo_confusion_matrix`).

    Per family: precision (of the notes predicted as the family, the share that are), recall (of the
    family's notes, the share predicted as it), F1 and support; "none" predictions count as misses.
    Also accuracy (share of notes whose predicted class is right), the macro average (unweighted
    mean over families with support) and the weighted average (weighted by support). A family with
    notes that is never predicted has no precision (NaN in its row) and counts as 0 in both
    averages, as scikit-learn's ``classification_report`` counts it: skipping it would flatter the
    macro precision of a model that never names a family.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(families)
    if cm.shape != (k, k + 1):
        raise UserError(f"confusion matrix must be ({k}, {k + 1}), got {cm.shape}")
    tp = np.diag(cm[:, :k]).astype(np.float64)
    predicted = cm[:, :k].sum(axis=0)
    support = cm.sum(axis=1)
    prec = _ratio(tp, predicted)
    rec = _ratio(tp, support)
    f1 = _ratio(2 * tp, predicted + support)
    per_family = {
        fam: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, fam in enumerate(families)
    }
    has = support > 0
    total = int(support.sum())

    def macro(values: np.ndarray) -> float:
        v = np.where(np.isnan(values), 0.0, values)[has]
        return float(v.mean()) if len(v) else float("nan")

    def weighted(values: np.ndarray) -> float:
        v = np.where(np.isnan(values), 0.0, values)
        return float((v * support).sum() / total) if total else float("nan")

    return {
        "families": per_family,
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_avg": {"precision": macro(prec), "recall": macro(rec), "f1": macro(f1), "support": total},
        "weighted_avg": {"precision": weighted(prec), "recall": weighted(rec), "f1": weighted(f1), "support": total},
        "none": int(cm[:, k].sum()),
    }


# --- polyphony levels ----------------------------------------------------------------------------


def per_level(*, levels, truth, pred, families: Sequence[str]) -> dict[int, dict]:
    """Metrics of each polyphony level: jaccard, hamming, emr, n and the per-family table.

    `levels` [shape=(n,)] gives the level (number of instruments) of each example.
    """
    t, p = _pair(truth, pred)
    lv = np.asarray(levels, dtype=np.int64)
    if lv.shape != (len(t),):
        raise UserError(f"levels must have one entry per example ({len(t)}), got shape {lv.shape}")
    if t.shape[1] != len(families):
        raise UserError(f"{len(families)} families named but the arrays have {t.shape[1]} columns")
    out = {}
    for level in sorted(set(lv.tolist())):
        sel = lv == level
        entry = multilabel_summary(truth=t[sel], pred=p[sel])
        entry["families"] = family_table(family_counts(truth=t[sel], pred=p[sel]), families)
        out[int(level)] = entry
    return out


def oracle_count_predictions(*, truth, scores) -> np.ndarray:
    """Each example's k highest-scoring families, k being its true number of families.

    No tagger knows k; this isolates how well the scores rank the families from how well the
    thresholds cut them (for single notes it is top-1 accuracy). Ties go to the earlier family.
    """
    t = as_presence(truth, name="truth")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != t.shape:
        raise UserError(f"scores have shape {s.shape} but the truth has shape {t.shape}")
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(s.shape[1])[None, :].repeat(len(s), axis=0), axis=1)
    return (ranks < t.sum(axis=1, keepdims=True)).astype(np.uint8)


def overall(levels: Mapping[int, dict], *, keys: Sequence[str] = ("jaccard", "hamming", "emr")) -> dict[str, float]:
    """The paper's overall values: the unweighted mean over levels of each metric (NaN levels skipped).

    Every level counts once whatever its number of examples, as the paper's overall accuracy and EMR
    are the means of its Table V rows.
    """
    out = {}
    for key in keys:
        vals = np.array([levels[k][key] for k in levels], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        out[key] = float(vals.mean()) if len(vals) else float("nan")
    return out


def family_overall(levels: Mapping[int, dict], families: Sequence[str], *, keys: Sequence[str] = ("accuracy", "tpr", "fpr")) -> dict[str, dict]:
    """Per family, the mean over levels of each per-level family metric (levels where it is NaN skipped)."""
    out: dict[str, dict] = {}
    for fam in families:
        out[fam] = {}
        for key in keys:
            vals = np.array([levels[k]["families"][fam][key] for k in levels], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            out[fam][key] = float(vals.mean()) if len(vals) else float("nan")
    return out


# --- training: threshold calibration and validation scores ---------------------------------------
# Training (`tagger.model.train`) and aggregation calibration (`tagger.model.calibrate`) read these;
# their rounded figures are what the model manifest records.

THRESHOLD_BETA = 0.5
"""Thresholds maximise F-beta with beta 0.5 (precision weighs twice recall): a wrong tag is worse
than a missing one, because users search by it."""


def fbeta_from_counts(tp, fp, fn, *, beta: float = THRESHOLD_BETA):
    """F-beta from true positive, false positive and false negative counts (0 when all are 0): a
    float for counts, an array of F-betas element-wise for arrays of counts (e.g. resamples)."""
    b2 = beta * beta
    tp, fp, fn = (np.asarray(c, dtype=np.float64) for c in (tp, fp, fn))
    f = (1 + b2) * tp / np.maximum((1 + b2) * tp + b2 * fn + fp, 1)
    return float(f) if f.ndim == 0 else f


def calibrate_threshold(y: np.ndarray, p: np.ndarray, *, beta: float = 1.0, resamples: int = 0,
                        seed: int = 0) -> tuple[float, dict]:  # fmt: skip
    """The F-beta-optimal threshold for one family on validation labels `y` and probabilities `p`
    (beta < 1 favours precision), with its rounded metrics (empty ratios are 0 here, not NaN).

    With `resamples` > 0, the one-standard-error rule instead (as for the track rule,
    `tagger.model.calibrate.choose_aggregation`): of the thresholds whose F-beta is within one
    bootstrap standard error of the best's (the error of their paired difference over `resamples`
    resamples of the examples, seeded), the most precise; the metrics then record the best's
    threshold and F-beta (`fbeta_best`). The examples are resampled one by one, so for windows that
    share instruments the error is if anything too small and the rule too close to the best."""
    grid = np.linspace(0.05, 0.95, 91)
    best = (0.5, -1.0)
    pos = y.astype(bool)
    for t in grid:
        pred = p >= t
        f = fbeta_from_counts(np.sum(pred & pos), np.sum(pred & ~pos), np.sum(~pred & pos), beta=beta)
        if f > best[1] + 1e-9:
            best = (float(t), float(f))
    extra = {}
    if resamples > 0 and best[1] > 0:
        extra = {"fbeta_best": {"threshold": round(best[0], 4), "fbeta": round(best[1], 4)}}
        best = _one_standard_error(pos, p, grid, best[0], beta=beta, resamples=resamples, seed=seed)
    t = best[0]
    point = operating_point(y, p, t)
    pred = p >= t
    tp, fp, fn = int(np.sum(pred & pos)), int(np.sum(pred & ~pos)), int(np.sum(~pred & pos))
    return t, {
        "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4),
        "fbeta": round(best[1], 4),
        "beta": beta,
        **extra,
        "precision": point["precision"],
        "recall": point["recall"],
        "fpr": point["fpr"],
        "auc": round(auc(y, p), 4),
        "positives": point["positives"],
        "examples": point["examples"],
    }


def _one_standard_error(pos: np.ndarray, p: np.ndarray, grid: np.ndarray, best: float, *, beta: float, resamples: int,
                        seed: int) -> tuple[float, float]:  # fmt: skip
    """(threshold, F-beta) of `calibrate_threshold`'s one-standard-error rule on the `grid`, whose
    F-beta-best threshold is `best`."""
    pred = p[None, :] >= grid[:, None]  # (thresholds, examples)
    per = [(pred & pos).astype(np.float64), (pred & ~pos).astype(np.float64), (~pred & pos).astype(np.float64)]
    f = fbeta_from_counts(*(c.sum(axis=1) for c in per), beta=beta)
    n = len(pos)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    boot = fbeta_from_counts(*(weights @ c.T for c in per), beta=beta)  # (resamples, thresholds)
    i_best = int(np.argmin(np.abs(grid - best)))
    se = np.std(boot - boot[:, [i_best]], axis=0, ddof=1)
    tp, fp = per[0].sum(axis=1), per[1].sum(axis=1)
    precision = tp / np.maximum(tp + fp, 1)
    qualify = np.flatnonzero(f >= f[i_best] - se - 1e-9)
    i = max(qualify, key=lambda j: (precision[j], f[j], -grid[j]))  # ties: the lowest, as for the best
    return float(grid[i]), float(f[i])


def operating_point(y: np.ndarray, p: np.ndarray, t: float) -> dict:
    """Precision, recall and false-positive rate of one family at threshold `t` (rounded; an empty
    ratio is 0), with the numbers of positives and examples."""
    pos, pred = y.astype(bool), p >= t
    tp, fp = int(np.sum(pred & pos)), int(np.sum(pred & ~pos))
    fn, tn = int(np.sum(~pred & pos)), int(np.sum(~pred & ~pos))
    return {"precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4),
            "fpr": round(fp / max(fp + tn, 1), 4), "positives": int(pos.sum()), "examples": int(len(y))}  # fmt: skip


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC of scores `p` for 0/1 labels `y` (Mann-Whitney U); ties share their mean rank, so a
    constant score gives 0.5. NaN when either class is absent."""
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def jaccard(truth, pred) -> np.ndarray:
    """`jaccard_per_example` with positional arguments (as training calls it)."""
    return jaccard_per_example(truth=truth, pred=pred)


def protocol_scores(truth, pred, levels) -> dict:
    """Per-level Jaccard and EMR (rounded) and their means over levels (as the paper computes overall
    values): the validation summary of the Table V protocol that the manifest records."""
    truth, pred = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    levels = np.asarray(levels)
    per = {}
    for lv in np.unique(levels):
        m = levels == lv
        per[int(lv)] = {
            "jaccard": round(float(jaccard(truth[m], pred[m]).mean()), 4),
            "emr": round(float(np.all(truth[m] == pred[m], axis=1).mean()), 4),
        }
    return {
        "levels": per,
        "jaccard": round(float(np.mean([v["jaccard"] for v in per.values()])), 4),
        "emr": round(float(np.mean([v["emr"] for v in per.values()])), 4),
    }

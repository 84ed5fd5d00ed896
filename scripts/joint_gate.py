"""A presence gate on both trunks' embeddings, against the averaged gates of an averaged ensemble.

An averaged ensemble (`tagger combine`) averages its members' scores, the presence gate's too:
each member's gate is a logistic regression on its own trunk's embedding. This measures one
logistic regression on the two embeddings side by side instead (`tagger.model.gate.fit_logistic`,
the same penalty and class balance), fitted on the members' training examples, with the operating
point chosen on the held-out validation windows exactly as `tagger combine --valid ... --soft-gate
--one-se-thresholds` chooses it (`tagger.model.average.choose_operating_point`), for both gates:

    .venv/bin/python scripts/joint_gate.py --pair ~/.cache/tagger/runs/pair-lo-shift4-sections-soft-onese \\
        --valid ~/.cache/tagger/train/examples-1f5b7b3e65db55b4 \\
        --train ~/.cache/tagger/train/examples-1f5b7b3e65db55b4 --train ~/.cache/tagger/train/examples-85b968c578896254 \\
        --per-set 40000

Prints, for each gate, its AUC (validation windows with a family against those without), the
chosen exponent, and the figures `tagger train` records (protocol Jaccard / EMR, single notes,
music-like, drums alone silent), held-out and on the left-out source.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", required=True, type=Path, help="an averaged ensemble of held-out runs")
    ap.add_argument("--valid", required=True, type=Path, help="the runs' cached examples folder with valid_*.npy")
    ap.add_argument("--train", required=True, type=Path, action="append", help="cached examples folders (train_x/y.npy)")
    ap.add_argument("--per-set", type=int, default=40000, help="training examples read from each --train folder")
    ap.add_argument("--resamples", type=int, default=500, help="bootstrap resamples of the one-SE thresholds")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()

    from tagger.evaluate.metrics import auc
    from tagger.model import average as A
    from tagger.model import ensemble as E
    from tagger.model import gate as G

    manifest = E.read_manifest(args.pair)
    fams = list(manifest["families"])
    k = len(fams)
    members = [args.pair / m["dir"] for m in manifest["members"]]
    trunks = []
    for d in members:
        mm = E.read_manifest(d)
        trunks.append(E.load_classifier(E._verified_file(d, mm["trunk"], "trunk", str(d))))

    def joint_embedding(x) -> np.ndarray:
        return np.concatenate([G.embed(t, x) for t in trunks], axis=1)

    emb, present = [], []
    for folder in args.train:
        x = np.load(folder / "train_x.npy", mmap_mode="r")
        y = np.load(folder / "train_y.npy")
        cols = json.loads((folder / "families.json").read_text())
        n = min(args.per_set, len(x))
        emb.append(joint_embedding(x[:n]))
        present.append(y[:n][:, [cols.index(f) for f in fams]].any(axis=1))
        print(f"embedded {n} training examples of {folder.name}", flush=True)
    weights, bias = G.fit_logistic(np.concatenate(emb), np.concatenate(present))
    gate_model = G.gate_model(weights, bias)

    ens = E.Ensemble.load(args.pair)
    vs = A._validation_set(args.valid, manifest)
    lo = A._validation_set(args.valid / "left_out", manifest, columns_from=args.valid)
    held, lo_raw = ens.predict_raw(vs.feats), ens.predict_raw(lo.feats)
    joint = {"held": G.gate_scores(gate_model, joint_embedding(vs.feats)),
             "lo": G.gate_scores(gate_model, joint_embedding(lo.feats))}
    averaged = {"held": held[:, k], "lo": lo_raw[:, k]}
    results = {}
    for name, gate in (("averaged gates", averaged), ("joint gate", joint)):
        kits = lo.kind == 3
        point = A.choose_operating_point(held[:, :k], gate["held"], truth=vs.labels, kind=vs.kind,
                                         other_kits=(lo_raw[kits, :k], gate["lo"][kits]), soft=True,
                                         threshold_resamples=args.resamples)  # fmt: skip
        entry = {"threshold": point["gate"]["threshold"], "override": point["gate"]["override"],
                 "exponent": point["gate"]["exponent"]}  # fmt: skip
        th = np.asarray(point["thresholds"], dtype=np.float32)
        dec_h = G.decided(held[:, :k], gate["held"], entry)
        dec_l = G.decided(lo_raw[:, :k], gate["lo"], entry)
        sel_h, sel_l = vs.kind < 3, lo.kind < 3
        results[name] = {
            "gate_auc_held": round(auc((vs.kind < 3) & vs.labels.any(axis=1), gate["held"]), 4),
            "gate_auc_left_out": round(auc((lo.kind < 3) & lo.labels.any(axis=1), gate["lo"]), 4),
            "gate": entry,
            "auc_held": round(float(np.mean([auc(vs.labels[sel_h, j], dec_h[sel_h, j]) for j in range(k)])), 4),
            "auc_left_out": round(float(np.mean([auc(lo.labels[sel_l, j], dec_l[sel_l, j]) for j in range(k)])), 4),
            "held": vs.report(dec_h, th, fams, fams),
            "left_out": lo.report(dec_l, th, fams, fams),
        }
        r = results[name]
        print(f"{name}: gate AUC {r['gate_auc_held']} / {r['gate_auc_left_out']}, {entry}; family AUC "
              f"{r['auc_held']} / {r['auc_left_out']}; protocol {r['held']['protocol']['jaccard']} / "
              f"{r['held']['protocol']['emr']}, single {r['held']['solo_jaccard']}, music {r['held']['music_jaccard']}, "
              f"drums silent {r['held'].get('percussion_silent')}; left-out protocol {r['left_out']['protocol']['jaccard']}"
              f" / {r['left_out']['protocol']['emr']}, single {r['left_out']['solo_jaccard']}, drums silent "
              f"{r['left_out'].get('percussion_silent')}", flush=True)  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

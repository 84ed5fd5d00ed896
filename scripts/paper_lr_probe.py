"""Which Adam learning rates the `paper` architecture (Table IV) survives: a short probe.

Trains one `paper` classifier (one family) on the first ``--examples`` solo-recipe training examples
of a rendered dataset, batch 16, at each ``--lr``, and prints the weighted loss every 10 batches, then
the validation AUC and the range of its outputs on solo validation examples. A learning rate that is
too high shows as losses far above 0.69 (a constant answer) and outputs pinned to one value.

    .venv/bin/python scripts/paper_lr_probe.py ~/.cache/tagger/datasets/gm2 --family string \\
        --lr 1e-4 --lr 1e-5 --lr 1e-6

Takes about 70 s per learning rate on two cores (plus generating the examples once).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="a rendered, split note dataset")
    ap.add_argument("--family", default="string")
    ap.add_argument("--lr", type=float, action="append", help="learning rates to probe (repeatable)")
    ap.add_argument("--examples", type=int, default=480)
    ap.add_argument("--valid", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np

    from tagger.data.nsynth import NoteDataset
    from tagger.model import architectures as A, synth as S
    from tagger.evaluate.metrics import auc as _auc
    from tagger.model.examples import cache_root
    from tagger.model.joint import _weighted_bce

    families = NoteDataset.load(args.data, split="train").families
    if args.family not in families:
        ap.error(f"{args.data}: no family {args.family!r}; it has {', '.join(families)}")
    fam = families.index(args.family)
    fcfg = A.feature_config("paper")
    solo = S.SynthSettings(recipe="solo")
    sets = {}
    for split, count in (("train", args.examples), ("valid", args.valid)):
        ds = NoteDataset.load(args.data, split=split)
        pool = S.NotePool.build(ds, cache_root() / "probe" / f"pool-{split}-{args.data.resolve().name}", seed=args.seed)
        sets[split] = S.generate(pool.directory, count=count, seed=args.seed, settings=solo, feature_config=fcfg)
    (x, y), (vx, vy) = sets["train"], sets["valid"]
    y, vy = y[:, fam : fam + 1].astype("float32"), vy[:, fam]
    pos = max(float(y.mean()), 1e-3)
    print(f"{args.family}: {len(y)} training examples ({int(y.sum())} positive), {len(vy)} validation", flush=True)

    import keras

    for lr in args.lr or [1e-4, 1e-5, 1e-6]:
        keras.utils.set_random_seed(args.seed)
        model = A.build("paper")
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=_weighted_bce(0.5 / pos, 0.5 / (1 - pos)))
        t0, losses = time.time(), []
        for b in range(0, len(y), 16):
            losses.append(float(model.train_on_batch(np.asarray(x[b : b + 16], np.float32), y[b : b + 16])))
            if len(losses) % 10 == 0:
                print(f"  lr {lr:g}: batches {len(losses) - 9}-{len(losses)} mean loss {np.mean(losses[-10:]):.3f}", flush=True)
        p = model.predict(np.asarray(vx, np.float32), batch_size=16, verbose=0)[:, 0]
        print(f"lr {lr:g}: {time.time() - t0:.0f} s, validation AUC {_auc(vy, p):.3f}, "
              f"outputs {p.min():.3f}..{p.max():.3f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

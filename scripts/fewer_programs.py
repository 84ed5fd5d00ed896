"""Copy a split note dataset keeping only part of each family's training programs (an ablation).

How much does the number of training instruments matter for unseen ones? This makes a copy of a
rendered, split dataset (audio hard-linked, indexes copied) in which, per family, only a share of
the training program groups stays in the train split; the others are marked ``unused`` and belong
to no split. Validation and test instruments and the negatives are untouched, so a model trained on
the copy is validated on exactly the same instruments as one trained on the original.

    .venv/bin/python scripts/fewer_programs.py ~/.cache/tagger/datasets/gm2 \\
        ~/.cache/tagger/datasets/gm2-half --keep 0.5

Prints, per family, the programs kept and dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a rendered, split note dataset")
    ap.add_argument("dest", type=Path, help="the folder to create")
    ap.add_argument("--keep", type=float, default=0.5, help="share of each family's training programs to keep")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np

    from tagger.data.nsynth import SPLIT_FILE, NoteDataset

    if not 0 < args.keep <= 1:
        ap.error("--keep must be in (0, 1]")
    if args.dest.exists():
        ap.error(f"{args.dest} exists; choose a new folder")
    train = NoteDataset.load(args.source, split="train")
    groups: dict[str, dict[str, set[str]]] = {}
    for n in train.notes:  # family notes only: negatives stay as they are
        groups.setdefault(n.family, {}).setdefault(n.group, set()).add(n.instrument)
    split = json.loads((args.source / SPLIT_FILE).read_text())
    rng = np.random.default_rng(args.seed)
    for family in sorted(groups):
        names = sorted(groups[family])
        rng.shuffle(names)
        kept = max(1, math.ceil(args.keep * len(names)))
        for g in names[kept:]:
            for inst in groups[family][g]:
                split["instruments"][inst] = "unused"
        print(f"{family}: keeps {', '.join(sorted(names[:kept]))}; drops {', '.join(sorted(names[kept:])) or '-'}")
    args.dest.mkdir(parents=True)
    shutil.copytree(args.source / "audio", args.dest / "audio", copy_function=os.link)
    for f in args.source.glob("*.json"):
        if f.name != SPLIT_FILE:
            shutil.copy2(f, args.dest / f.name)
    split["ablation"] = {"source": str(args.source.resolve()), "keep": args.keep, "seed": args.seed}
    (args.dest / SPLIT_FILE).write_text(json.dumps(split, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

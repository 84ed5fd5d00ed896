"""Calibrate the per-track aggregation rule on validation data (never test data).

Synthetic validation *tracks* are built from the validation instruments: each track has a fixed set
of 0..6 instruments (one per family), each playing in a random share of the track's 4 s windows,
with negatives (drums, synths) mixed in as in `tagger.model.synth`. The ensemble scores every
window; the aggregation parameters (`quantile`, `min_windows`) that maximise the mean track-level
Jaccard accuracy are written into the manifest's "aggregation" entry.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from tagger.aggregate import DEFAULT_AGGREGATION, aggregate
from tagger.evaluate.metrics import jaccard
from tagger.model import synth as S
from tagger.model.ensemble import Ensemble, read_manifest, write_manifest

QUANTILES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
MIN_WINDOWS = (1, 2, 3)


def synth_tracks(pool: S.NotePool, *, tracks: int, seed: int, settings: S.SynthSettings = S.SynthSettings()):
    """Yield (window audio [shape=(n, 64000)], truth label) for `tracks` synthetic tracks."""
    rng = np.random.default_rng(seed)
    nf = len(pool.families)
    available = [f for f in range(nf) if len(pool.family_instruments[f])]
    for _ in range(tracks):
        k = int(rng.integers(0, min(6, len(available)) + 1))
        fams = [int(f) for f in rng.choice(available, size=k, replace=False)]
        inst = {f: int(rng.choice(pool.family_instruments[f])) for f in fams}
        share = {f: rng.uniform(0.25, 1.0) for f in fams}
        n = int(rng.integers(3, 16))
        active = [[f for f in fams if rng.random() < share[f]] for _ in range(n)]
        for f in fams:  # every instrument of the track plays somewhere
            if not any(f in a for a in active):
                active[int(rng.integers(n))].append(f)
        windows = np.stack([S.mixture_example(pool, rng, settings, instruments={f: inst[f] for f in a})[0] for a in active])
        label = np.zeros(nf, dtype=np.uint8)
        label[fams] = 1
        yield windows, label


def calibrate_aggregation(model_dir: str | os.PathLike, pool_dir: str | os.PathLike, *, tracks: int = 300, seed: int = 7) -> dict:
    """Choose the aggregation parameters on validation tracks and store them in the manifest."""
    ensemble = Ensemble.load(model_dir)
    pool = S.NotePool(pool_dir)
    missing = [f for f in ensemble.families if f not in pool.families]
    if missing:
        raise ValueError(f"the validation pool has no notes of {', '.join(missing)}")
    columns = [pool.families.index(f) for f in ensemble.families]
    scored = []
    for windows, label in synth_tracks(pool, tracks=tracks, seed=seed):
        probs = ensemble.predict(windows)
        silent = np.zeros(len(windows), dtype=bool)
        starts = np.arange(len(windows)) * 4.0
        scored.append((probs, silent, starts, label))
    truth = np.stack([s[3] for s in scored])[:, columns].astype(bool)
    grid = []
    for q, mw in itertools.product(QUANTILES, MIN_WINDOWS):
        pred = np.stack(
            [
                [r.present for r in aggregate(p, s, t, families=ensemble.families, thresholds=ensemble.thresholds,
                                             quantile=q, min_windows=mw).results]  # fmt: skip
                for p, s, t, _ in scored
            ]
        )
        grid.append({"quantile": q, "min_windows": mw, "jaccard": round(float(jaccard(truth, pred).mean()), 4),
                     "emr": round(float(np.all(truth == pred, axis=1).mean()), 4)})  # fmt: skip
    best = max(grid, key=lambda g: (g["jaccard"], g["emr"], g["quantile"]))
    manifest = read_manifest(model_dir)
    manifest["aggregation"] = {**DEFAULT_AGGREGATION, "quantile": best["quantile"], "min_windows": best["min_windows"]}
    manifest["aggregation_calibration"] = {
        "data": "synthetic validation tracks (validation instruments only)",
        "tracks": tracks,
        "seed": seed,
        "best": best,
        "default": next(g for g in grid if g["quantile"] == DEFAULT_AGGREGATION["quantile"] and g["min_windows"] == 1),
    }
    write_manifest(model_dir, manifest)
    return manifest["aggregation_calibration"]

"""Calibrate the per-track aggregation rule on validation data (never test data).

Synthetic validation *tracks* are built from the validation instruments: each track has a fixed set
of 0..6 instruments (one per family), each playing in a random share of the track's 4 s windows,
with negatives (drums, synths) mixed in as in `tagger.model.synth`. The ensemble scores every
window; the aggregation parameters (`quantile`, `min_windows`) are chosen by the track-level F-beta
(`THRESHOLD_BETA`, 0.5: precision weighs twice recall, as for the window thresholds), counted over
every family of every track, and written into the manifest's "aggregation" entry. The track tags
are what a user searches by, so the rule that makes them favours precision too; the Jaccard-best
rule (the rule before 2026-12-04, which tags more and wrongly more often) is recorded beside it.

F-beta is nearly flat near its best, so the best rule of one draw of tracks is partly chance: of
the rules whose F-beta is within one bootstrap standard error of the best (the error of the paired
difference, over `BOOTSTRAP_RESAMPLES` resamples of the tracks: the one-standard-error rule), the
most precise is chosen (since 2026-12-05, night; before, the F-beta-best itself).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from tagger.aggregate import DEFAULT_AGGREGATION, aggregate
from tagger.evaluate.metrics import THRESHOLD_BETA, fbeta_from_counts, jaccard
from tagger.model import synth as S
from tagger.model.ensemble import Ensemble
from tagger.model.manifest import read_manifest, write_manifest

QUANTILES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
MIN_WINDOWS = (1, 2, 3)
BOOTSTRAP_RESAMPLES = 500


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


def score_tracks(
    ensemble: Ensemble, pool: S.NotePool, *, tracks: int, seed: int, settings: S.SynthSettings = S.SynthSettings()
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ensemble's window probabilities [shape=(windows, families)] and the truth label (in the
    ensemble's family order) of each of `tracks` synthetic tracks of the pool (`settings`: how
    their windows are made, e.g. ``drum_prob=1`` for a drum beat under every window)."""
    missing = [f for f in ensemble.families if f not in pool.families]
    if missing:
        raise ValueError(f"the validation pool has no notes of {', '.join(missing)}")
    columns = [pool.families.index(f) for f in ensemble.families]
    return [(ensemble.predict(windows), label[columns].astype(bool))
            for windows, label in synth_tracks(pool, tracks=tracks, seed=seed, settings=settings)]  # fmt: skip


def _track_predictions(scored: list[tuple[np.ndarray, np.ndarray]], *, families, thresholds, quantile: float,
                       min_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """The truth and the rule's tags [shape=(tracks, families), bool] of every scored track."""
    truth = np.stack([label for _, label in scored])
    pred = np.stack(
        [
            [r.present for r in aggregate(p, np.zeros(len(p), dtype=bool), np.arange(len(p)) * 4.0, families=families,
                                         thresholds=thresholds, quantile=quantile, min_windows=min_windows).results]  # fmt: skip
            for p, _ in scored
        ]
    )
    return truth, pred


def _figures(truth: np.ndarray, pred: np.ndarray, *, quantile: float, min_windows: int) -> dict:
    tp, fp, fn = int(np.sum(truth & pred)), int(np.sum(~truth & pred)), int(np.sum(truth & ~pred))
    return {
        "quantile": quantile,
        "min_windows": min_windows,
        "fbeta": round(fbeta_from_counts(tp, fp, fn), 4),
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
        "jaccard": round(float(jaccard(truth, pred).mean()), 4),
        "emr": round(float(np.all(truth == pred, axis=1).mean()), 4),
        "wrong_per_track": round(fp / max(len(truth), 1), 3),
    }


def track_figures(scored: list[tuple[np.ndarray, np.ndarray]], *, families, thresholds, quantile: float, min_windows: int) -> dict:
    """Track-level figures of one aggregation rule: F-beta, precision and recall over every
    (track, family) pair, mean Jaccard, exact-match ratio and wrong families per track (rounded)."""
    truth, pred = _track_predictions(scored, families=families, thresholds=thresholds, quantile=quantile, min_windows=min_windows)
    return _figures(truth, pred, quantile=quantile, min_windows=min_windows)


def _bootstrap_fbeta(counts: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """F-beta of every rule [shape=(rules, resamples)] on `resamples` resamples of the tracks (the
    same resamples for every rule), from per-track counts [shape=(rules, tracks, 3): tp, fp, fn]."""
    n = counts.shape[1]
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    tp, fp, fn = (weights @ counts[:, :, k].T.astype(np.float64) for k in range(3))  # (resamples, rules) each
    return fbeta_from_counts(tp, fp, fn).T


def choose_aggregation(scored: list[tuple[np.ndarray, np.ndarray]], *, families, thresholds,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[dict, list[dict]]:
    """The rule of the grid (`QUANTILES` x `MIN_WINDOWS`) to use, and the whole grid.

    The F-beta-best rule (ties: higher Jaccard, then the higher quantile) is `fbeta_best`; every rule
    whose F-beta is at least the best's less one bootstrap standard error of their paired difference
    (`se_from_best`, over `resamples` resamples of the tracks, seeded) qualifies, and of those the
    most precise is chosen (ties: higher F-beta, higher Jaccard, higher quantile). `resamples=0`
    chooses the F-beta-best rule itself. Every grid entry records `se_from_best` and `qualifies`."""
    rules = list(itertools.product(QUANTILES, MIN_WINDOWS))
    grid, counts = [], []
    for q, mw in rules:
        truth, pred = _track_predictions(scored, families=families, thresholds=thresholds, quantile=q, min_windows=mw)
        grid.append(_figures(truth, pred, quantile=q, min_windows=mw))
        counts.append(np.stack([(truth & pred).sum(1), (~truth & pred).sum(1), (truth & ~pred).sum(1)], axis=1))
    best = max(range(len(grid)), key=lambda i: (grid[i]["fbeta"], grid[i]["jaccard"], grid[i]["quantile"]))
    if resamples > 0:
        boot = _bootstrap_fbeta(np.stack(counts), resamples=resamples, seed=seed)
        se = np.std(boot - boot[best], axis=1, ddof=1)
    else:
        se = np.zeros(len(grid))
    for g, s in zip(grid, se):
        g["se_from_best"] = round(float(s), 4)
        g["qualifies"] = bool(g["fbeta"] >= grid[best]["fbeta"] - s - 1e-9)
    chosen = max((g for g in grid if g["qualifies"]), key=lambda g: (g["precision"], g["fbeta"], g["jaccard"], g["quantile"]))
    return {**chosen, "fbeta_best": dict(grid[best])}, grid


def calibrate_aggregation(model_dir: str | os.PathLike, pool_dir: str | os.PathLike, *, tracks: int = 300, seed: int = 7,
                          write: bool = True) -> dict:
    """Choose the aggregation parameters on validation tracks and store them in the manifest (unless
    `write` is false: then the manifest is left as it was)."""
    ensemble = Ensemble.load(model_dir)
    scored = score_tracks(ensemble, S.NotePool(pool_dir), tracks=tracks, seed=seed)
    best, grid = choose_aggregation(scored, families=ensemble.families, thresholds=ensemble.thresholds)
    manifest = read_manifest(model_dir)
    manifest["aggregation"] = {**DEFAULT_AGGREGATION, "quantile": best["quantile"], "min_windows": best["min_windows"]}
    manifest["aggregation_calibration"] = {
        "data": "synthetic validation tracks (validation instruments only)",
        "rule": (f"the most precise rule whose F{THRESHOLD_BETA:g} over every family of every track is within one bootstrap "
                 f"standard error ({BOOTSTRAP_RESAMPLES} resamples of the tracks, paired) of the best"),
        "tracks": tracks,
        "seed": seed,
        "best": best,
        "jaccard_best": max(grid, key=lambda g: (g["jaccard"], g["emr"], g["quantile"])),
        "default": next(g for g in grid if g["quantile"] == DEFAULT_AGGREGATION["quantile"] and g["min_windows"] == 1),
    }
    if write:
        write_manifest(model_dir, manifest)
    return manifest["aggregation_calibration"]

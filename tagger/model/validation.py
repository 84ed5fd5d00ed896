"""The validation data of a training run and each family's operating point on it.

`ValidationSet` holds the windows a run validates on, by kind: the protocol mixtures (polyphony
levels 0..10), music-like mixtures, single notes and drum notes alone; it is built once per set of
examples and cached beside them. `family_threshold` chooses a family's threshold on it (training,
and `tagger.model.average` for an averaged ensemble).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tagger import features as F
from tagger.data import mix as M
from tagger.data.nsynth import NoteDataset
from tagger.evaluate.metrics import THRESHOLD_BETA, calibrate_threshold, jaccard, protocol_scores
from tagger.evaluate.metrics import auc as _auc
from tagger.evaluate.metrics import operating_point as _operating_point
from tagger.model import synth as S


PERCUSSION_NOTES = 500
"""Validation percussion notes scored alone (kind 3): drums must trigger no family."""


class ValidationSet:
    """Validation features and labels by kind: 0 protocol mixtures (levels 0..10), 1 music-like
    mixtures, 2 solo notes, 3 percussion notes alone (no family)."""

    def __init__(self, feats: np.ndarray, labels: np.ndarray, kind: np.ndarray, levels: np.ndarray):
        self.feats, self.labels, self.kind, self.levels = feats, labels, kind, levels

    @staticmethod
    def build(valid: NoteDataset, pool_dir: Path, settings, feature_config, synth: S.SynthSettings):
        """Build the set from the `valid` notes and their pool (`pool_dir`) with the seed and the
        sizes of `settings` (a `tagger.model.settings.TrainSettings`)."""
        rng = np.random.default_rng(settings.seed + 1)
        present = sum(1 for notes in valid.by_family().values() if notes)
        plan = M.draw_mixtures(valid, per_level=settings.valid_per_level, levels=range(present + 1), seed=settings.seed + 1)
        audio = np.stack([M.render_mixture(r) for r in plan])
        levels = np.array([r["level"] for r in plan])
        labels = np.array([[int(b) for b in r["label"]] for r in plan], dtype=np.uint8)
        feats = [F.compute(windows=audio[i : i + 64], config=feature_config) for i in range(0, len(audio), 64)]
        parts_f = [np.concatenate(feats).astype(np.float16)]
        parts_y = [labels]
        parts_k = [np.zeros(len(plan), dtype=np.int8)]
        parts_l = [levels]
        music_f, music_y = S.generate(
            pool_dir, count=settings.valid_music_examples, seed=settings.seed + 2, settings=synth,
            feature_config=feature_config,
        )  # fmt: skip
        parts_f.append(music_f)
        parts_y.append(music_y)
        parts_k.append(np.ones(len(music_y), dtype=np.int8))
        parts_l.append(music_y.sum(axis=1))
        notes = valid.notes
        if len(notes) > settings.valid_solo_notes:
            notes = [notes[i] for i in np.sort(rng.choice(len(notes), settings.valid_solo_notes, replace=False))]
        from tagger.data.nsynth import load_note_audio

        solo = load_note_audio(notes)
        solo_f = np.concatenate([F.compute(windows=solo[i : i + 64], config=feature_config) for i in range(0, len(solo), 64)])
        fam = {f: i for i, f in enumerate(valid.families)}
        solo_y = np.zeros((len(notes), len(valid.families)), dtype=np.uint8)
        for i, n in enumerate(notes):
            solo_y[i, fam[n.family]] = 1
        parts_f.append(solo_f.astype(np.float16))
        parts_y.append(solo_y)
        parts_k.append(np.full(len(notes), 2, dtype=np.int8))
        parts_l.append(np.ones(len(notes), dtype=np.int64))
        drums = [n for n in valid.negatives if n.family == "percussion"]
        if len(drums) > PERCUSSION_NOTES:
            drums = [drums[i] for i in np.sort(rng.choice(len(drums), PERCUSSION_NOTES, replace=False))]
        if drums:
            clips = load_note_audio(drums)
            parts_f.append(np.concatenate(
                [F.compute(windows=clips[i : i + 64], config=feature_config) for i in range(0, len(clips), 64)]
            ).astype(np.float16))  # fmt: skip
            parts_y.append(np.zeros((len(drums), len(valid.families)), dtype=np.uint8))
            parts_k.append(np.full(len(drums), 3, dtype=np.int8))
            parts_l.append(np.zeros(len(drums), dtype=np.int64))
        return ValidationSet(np.concatenate(parts_f), np.concatenate(parts_y), np.concatenate(parts_k), np.concatenate(parts_l))

    @staticmethod
    def cached(folder: Path, build: Callable[[], ValidationSet]) -> ValidationSet:
        """The validation set saved in `folder`, built (and saved atomically) the first time."""
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "valid_x.npy").is_file():
            built = build()
            for name in ("labels", "kind", "levels"):
                np.save(folder / f"valid_{name}.npy", getattr(built, name))
            np.save(folder / "valid_x.tmp.npy", built.feats)
            os.replace(folder / "valid_x.tmp.npy", folder / "valid_x.npy")
        return ValidationSet(
            np.load(folder / "valid_x.npy"), np.load(folder / "valid_labels.npy"),
            np.load(folder / "valid_kind.npy"), np.load(folder / "valid_levels.npy"),
        )  # fmt: skip

    def report(self, probs: np.ndarray, thresholds: np.ndarray, families: Sequence[str], all_families: Sequence[str]) -> dict:
        """Ensemble metrics on validation (only meaningful when all families are present)."""
        idx = [list(all_families).index(f) for f in families]
        truth = self.labels[:, idx].astype(bool)
        pred = probs >= thresholds[None, :]
        proto = self.kind == 0
        solo = self.kind == 2
        music = self.kind == 1
        drums = self.kind == 3
        extra = {"percussion_silent": round(float(1 - pred[drums].any(axis=1).mean()), 4)} if drums.any() else {}
        return {
            **extra,
            "protocol": protocol_scores(truth[proto], pred[proto], self.levels[proto]),
            "solo_jaccard": round(float(jaccard(truth[solo], pred[solo]).mean()), 4),
            "solo_emr": round(float(np.all(truth[solo] == pred[solo], axis=1).mean()), 4),
            "music_jaccard": round(float(jaccard(truth[music], pred[music]).mean()), 4),
        }


def family_threshold(truth: np.ndarray, scores: np.ndarray, kind: np.ndarray, *,
                     resamples: int = 0) -> tuple[float, dict]:  # fmt: skip
    """One family's operating point on validation windows (`ValidationSet`: labels [shape=(n,)],
    scores before any gate [shape=(n,)], kinds): F0.5 (precision first) over every window with a
    family question (protocol mixtures, music-like mixtures and single notes; drums alone are
    reported on their own); with `resamples`, the most precise threshold within one bootstrap
    standard error of the F0.5-best (`calibrate_threshold`). Returns the threshold and its metrics,
    with the precision and recall of the music-like mixtures, the single notes and every window."""
    music, solo = kind == 1, kind == 2
    scored = kind < 3
    t, metrics = calibrate_threshold(truth[scored], scores[scored], beta=THRESHOLD_BETA, resamples=resamples)
    return t, {**metrics, "music_auc": round(_auc(truth[music], scores[music]), 4),
               "music": _operating_point(truth[music], scores[music], t),
               "solo": _operating_point(truth[solo], scores[solo], t),
               "all": _operating_point(truth, scores, t)}  # fmt: skip

"""Analyse one audio file with the ensemble: stream windows, score them, aggregate per track."""

from __future__ import annotations

import os

import numpy as np

from tagger import audio
from tagger import constants as C
from tagger.aggregate import TrackResult, aggregate


def analyse_file(path: str | os.PathLike, ensemble, *, hop_seconds: float = C.WINDOW_SECONDS, batch_size: int = 64) -> TrackResult:
    """Window probabilities of a whole file, aggregated with the manifest's rule.

    Raises `tagger.errors.AudioReadError` when the file cannot be decoded.
    """
    probs, silent, starts = [], [], []
    for win in audio.iter_windows(path, hop_seconds=hop_seconds, batch_size=batch_size):
        probs.append(ensemble.predict(win.audio, batch_size=batch_size))
        silent.append(win.silent)
        starts.append(win.start / C.SAMPLE_RATE)
    n_fam = len(ensemble.families)
    p = np.concatenate(probs) if probs else np.zeros((0, n_fam), np.float32)
    s = np.concatenate(silent) if silent else np.zeros(0, bool)
    t = np.concatenate(starts) if starts else np.zeros(0)
    return aggregate(
        p, s, t, families=ensemble.families, thresholds=ensemble.thresholds, **ensemble.aggregation
    )

"""Analyse one audio file in this process: the scan's worker steps, then the ensemble and aggregation.

`tagger predict` uses this; `tagger scan` runs the same worker steps (`tagger.library.analyse`) in
worker processes and the same inference and aggregation in its main process.
"""

from __future__ import annotations

import os

import numpy as np

from tagger import constants as C
from tagger.aggregate import TrackResult, aggregate
from tagger.errors import AudioReadError
from tagger.library.analyse import AnalysisConfig
from tagger.library.analyse import analyse_file as worker_steps


def analyse_file(path: str | os.PathLike, ensemble, *, hop_seconds: float = C.WINDOW_SECONDS, batch_size: int = 64) -> TrackResult:
    """Window probabilities of a whole file, aggregated with the manifest's rule.

    Silent windows are not scored. Raises `AudioReadError` when the file cannot be decoded.
    """
    config = AnalysisConfig(features=ensemble.feature_config.to_dict(), hop_seconds=hop_seconds, batch_size=batch_size)
    n_fam = len(ensemble.families)
    probs, silent, starts = [], [], []
    duration = None
    for message in worker_steps(0, os.fspath(path), config=config):
        kind = message[0]
        if kind == "error":
            raise AudioReadError(path, message[2])
        if kind == "windows":
            _, _, start, sil, feats = message
            p = np.zeros((len(start), n_fam), dtype=np.float32)
            if len(feats):
                p[~sil] = ensemble.predict_features(feats, batch_size=batch_size)
            probs.append(p)
            silent.append(sil)
            starts.append(start / C.SAMPLE_RATE)
        elif kind == "done":
            duration = message[2] / C.SAMPLE_RATE
    p = np.concatenate(probs) if probs else np.zeros((0, n_fam), np.float32)
    s = np.concatenate(silent) if silent else np.zeros(0, bool)
    t = np.concatenate(starts) if starts else np.zeros(0)
    return aggregate(
        p, s, t, families=ensemble.families, thresholds=ensemble.thresholds, duration=duration, **ensemble.aggregation
    )

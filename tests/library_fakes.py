"""A small deterministic stand-in for the Ensemble, for the library (scan/db/query) tests.

Each family listens to a frequency band: its probability for a window is the mean over time of the
strongest mel band inside its range (features are normalised to the window's maximum, so a steady
tone inside the band scores close to 1 and a band holding nothing scores 0). Tones at 110 Hz
(bass), 1000 Hz (flute) and 4000 Hz (string) are thus detected exactly.
"""

from __future__ import annotations

import time

import numpy as np

from tagger.aggregate import DEFAULT_AGGREGATION
from tagger.features import FeatureConfig

BANDS = {"bass": (40.0, 300.0), "flute": (600.0, 2000.0), "string": (2500.0, 7000.0)}
FREQ = {"bass": 110.0, "flute": 1000.0, "string": 4000.0}


class FakeAnalyser:
    def __init__(self, *, version: str = "fake-1", delay: float = 0.0, n_mels: int = 32):
        import librosa

        self.families = tuple(BANDS)
        self.thresholds = np.full(len(self.families), 0.5, dtype=np.float32)
        self.feature_config = FeatureConfig(kind="logmel", n_mels=n_mels)
        self._version = version
        self.delay = delay
        centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=self.feature_config.fmin, fmax=8000.0)[1:-1]
        self.masks = [(centres >= lo) & (centres <= hi) for lo, hi in BANDS.values()]
        self.calls = 0
        self.windows_seen = 0

    @property
    def version(self) -> str:
        return self._version

    @property
    def hash(self) -> str:
        return "hash-" + self._version

    @property
    def aggregation(self) -> dict:
        return dict(DEFAULT_AGGREGATION)

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.windows_seen += len(feats)
        if self.delay:
            time.sleep(self.delay)
        feats = np.asarray(feats, dtype=np.float32)
        per_band = feats.mean(axis=2)  # (n, n_mels)
        return np.stack([per_band[:, m].max(axis=1) for m in self.masks], axis=1).astype(np.float32)

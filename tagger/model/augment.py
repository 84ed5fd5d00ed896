"""The augmentations applied to a training batch's features as it is drawn (`tagger train
--mask-prob`, `--shift-prob`): the cached examples stay as they are, each epoch masks and shifts
them anew (`tagger.model.train`'s loop)."""

from __future__ import annotations

import numpy as np


def spec_mask(x: np.ndarray, rng: np.random.Generator, *, prob: float, bands: int = 2, max_bins: int = 8,
              stretches: int = 2, max_frames: int = 12) -> np.ndarray:
    """SpecAugment on a batch of features [shape=(n, bins, frames)], in place: each example, with
    probability `prob`, has `bands` frequency bands of up to `max_bins` bins and `stretches` time
    stretches of up to `max_frames` frames set to the floor (0: silence). Returns `x`."""
    n, n_bins, n_frames = x.shape
    for i in np.flatnonzero(rng.random(n) < prob):
        for _ in range(bands):
            w = int(rng.integers(1, max_bins + 1))
            lo = int(rng.integers(0, n_bins - w + 1))
            x[i, lo : lo + w, :] = 0.0
        for _ in range(stretches):
            w = int(rng.integers(1, max_frames + 1))
            lo = int(rng.integers(0, n_frames - w + 1))
            x[i, :, lo : lo + w] = 0.0
    return x


def shift_mel(feats: np.ndarray, bands: int) -> np.ndarray:
    """Spectrograms [shape=(n, mel bands, frames)] shifted up by `bands` mel bands (down when
    negative), the band at the edge repeated into the bands left empty. Returns a new array."""
    feats = np.asarray(feats, dtype=np.float32)
    if bands == 0:
        return feats.copy()
    out = np.roll(feats, bands, axis=1)
    if bands > 0:
        out[:, :bands] = feats[:, :1]
    else:
        out[:, bands:] = feats[:, -1:]
    return out


def spec_shift(x: np.ndarray, rng: np.random.Generator, *, prob: float, max_bands: int) -> np.ndarray:
    """Mel-shift augmentation on a batch of features [shape=(n, bins, frames)], in place: each
    example, with probability `prob`, is shifted up or down by 1 to `max_bands` bands (`shift_mel`).
    Returns `x`."""
    for i in np.flatnonzero(rng.random(len(x)) < prob):
        k = int(rng.integers(1, max_bands + 1)) * (1 if rng.random() < 0.5 else -1)
        x[i] = shift_mel(x[i : i + 1], k)[0]
    return x

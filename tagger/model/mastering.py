"""Loud-mastering augmentation: training windows made louder and squeezed into full scale, as much
commercial music is mastered.

A loud master is the mix raised by several decibels, then held under 0 dBFS by a hard clip, a soft
limiter (tanh) or a peak limiter; the distortion and the flattened decays are sounds no rendered
note has, and the shipped models hear them as instruments (brass first: README *Loud masters:
clipping and limiting*, measured by ``scripts/clipping.py``, which masters with these functions).
`augment` masters a share of the training windows; every function is numpy, a few milliseconds a
window at most.
"""

from __future__ import annotations

import numpy as np

from tagger import constants as C

KINDS = ("clip", "tanh", "limit")
"""The masterings a window may get, each as likely: `hard_clip`, `soft_limit`, `peak_limit`."""
GAIN_DB = (3.0, 18.0)
"""The gain of a master above a peak of `PEAK_DBFS` (uniform, dB)."""
PEAK_DBFS = -1.0
"""The peak a window is brought to before the gain, as a mix before mastering (and as `scripts/clipping.py`'s excerpts)."""
RELEASE_S = (0.02, 0.2)
"""The peak limiter's release time constant (uniform, seconds)."""
SILENT_PEAK = 1e-3
"""Windows whose peak is below this (-60 dBFS: silence) are left as they are. A window of the synthesis's
light noise alone (-65 to -35 dB RMS, `synth.finish_example`) peaks above it and is mastered like a mix:
its noise brought to -1 dBFS, then raised."""


def hard_clip(x: np.ndarray) -> np.ndarray:
    """`x` clipped at full scale: every sample in [-1, 1]."""
    return np.clip(x, -1, 1)


def soft_limit(x: np.ndarray) -> np.ndarray:
    """`x` through tanh, a soft limiter that bends every sample, not only the peaks."""
    return np.tanh(x)


def peak_limit(x: np.ndarray, *, release_s: float, sample_rate: int = C.SAMPLE_RATE) -> np.ndarray:
    """`x` [shape=(..., n), time on the last axis] through a peak limiter without look-ahead, ceiling
    0 dBFS: the gain is 1 / envelope where the envelope is over 1, the envelope following each peak at
    once (no overshoot) and falling back exponentially with time constant `release_s`. Same shape and
    dtype as `x`, every sample in [-1, 1].

    The envelope, max over k of |x[n - k]| * a**k, is computed without a loop: in logs it is
    n log a + the running maximum of log|x[m]| - m log a."""
    log_a = -1.0 / (release_s * sample_rate)
    m = np.arange(x.shape[-1]) * log_a
    level = np.log(np.maximum(np.abs(x.astype(np.float64)), 1e-12))
    envelope = np.exp(m + np.maximum.accumulate(level - m, axis=-1))
    return np.clip(x / np.maximum(envelope, 1.0), -1, 1).astype(x.dtype)


def master(x: np.ndarray, kind: str | None, gain_db: float, *, release_s: float = 0.1,
           sample_rate: int = C.SAMPLE_RATE) -> np.ndarray:  # fmt: skip
    """`x` made louder by `gain_db`, then hard-clipped at full scale (``clip``), through tanh
    (``tanh``) or through `peak_limit` with `release_s` (``limit``, time on the last axis); `kind`
    None: `x` as it is."""
    if kind is None:
        return x
    y = x * np.float32(10 ** (gain_db / 20))
    if kind == "clip":
        return hard_clip(y)
    if kind == "tanh":
        return soft_limit(y)
    if kind == "limit":
        return peak_limit(y, release_s=release_s, sample_rate=sample_rate)
    raise ValueError(f"unknown mastering {kind!r}; one of {', '.join(KINDS)}")


def augment(windows: np.ndarray, rng: np.random.Generator, *, prob: float) -> np.ndarray:
    """`windows` [shape=(n, WINDOW_SAMPLES)] with each window, at chance `prob`, mastered loud: brought
    to a peak of `PEAK_DBFS`, raised by a gain drawn from `GAIN_DB`, then one of `KINDS` (drawn
    uniformly; the limiter's release from `RELEASE_S`); the rest, and windows quieter than
    `SILENT_PEAK`, unchanged. Every sample of a mastered window is in [-1, 1]. Draws from `rng` only."""
    chosen = np.flatnonzero(rng.random(len(windows)) < prob)
    kinds = rng.integers(0, len(KINDS), size=len(chosen))
    gains = rng.uniform(*GAIN_DB, size=len(chosen))
    releases = rng.uniform(*RELEASE_S, size=len(chosen))
    out = windows.copy()
    for i, kind, gain, release in zip(chosen, kinds, gains, releases):
        peak = float(np.max(np.abs(windows[i])))
        if peak < SILENT_PEAK:
            continue
        level = windows[i] * np.float32(10 ** (PEAK_DBFS / 20) / peak)
        out[i] = master(level, KINDS[kind], float(gain), release_s=float(release))
    return out

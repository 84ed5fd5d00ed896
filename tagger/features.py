"""Spectrogram front ends, batched over 4 s windows.

Two front ends share one normalisation (`normalise_db`), used identically by training and inference:
- ``stft``: the paper's magnitude STFT in dB (n_fft 2048, hop 512, Hann, centred): (1025, 126).
- ``logmel``: log-mel power in dB (default 128 bands, 30 Hz-8 kHz) for the compact models: (n_mels, 126).

dB values are relative to the window's own maximum (so the loudness of a recording does not matter),
floored `top_db` below it, then mapped to [0, 1]. All outputs are float32.

Either front end can keep only the *harmonic* part of the spectrogram (``FeatureConfig.harmonic``):
a soft harmonic/percussive separation by median filtering (Fitzgerald 2010, as librosa's
``decompose.hpss``) that scales each bin by H^2 / (H^2 + P^2), where H is the power smoothed along
time and P along frequency. Drum hits (short and broadband) are damped; sustained partials stay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from tagger import constants as C

FMIN = 30.0


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides a feature tensor; recorded in the model manifest."""

    kind: str = "logmel"
    sample_rate: int = C.SAMPLE_RATE
    window_samples: int = C.WINDOW_SAMPLES
    n_fft: int = C.N_FFT
    hop_length: int = C.HOP_LENGTH
    n_mels: int = C.N_MELS
    fmin: float = FMIN
    top_db: float = C.TOP_DB
    normalisation: str = "db-rel-max-floor-scaled-01"
    harmonic: bool = False
    """Keep the harmonic part of the spectrogram only (`harmonic_mask`)."""

    def to_dict(self) -> dict:
        """The fields as a dict; `harmonic` only when set (so the records and cache signatures of
        configurations made before it existed are unchanged)."""
        d = asdict(self)
        if not self.harmonic:
            d.pop("harmonic")
        return d

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def shape(self) -> tuple[int, int]:
        """Feature shape of one window: (bins, frames)."""
        frames = 1 + self.window_samples // self.hop_length
        bins = self.n_fft // 2 + 1 if self.kind == "stft" else self.n_mels
        return bins, frames


def _as_batch(windows: np.ndarray) -> np.ndarray:
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"windows must have shape (n, samples), got {x.shape}")
    return x


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def power_spectrogram(*, windows: np.ndarray, n_fft: int = C.N_FFT, hop_length: int = C.HOP_LENGTH) -> np.ndarray:
    """|STFT|^2 of each window (Hann, centred with zero padding, as librosa's ``center=True``).

    Parameters
    ----------
    windows : np.ndarray [shape=(n, samples)] or [shape=(samples,)]

    Returns
    -------
    np.ndarray [shape=(n, n_fft // 2 + 1, 1 + samples // hop_length), dtype=float32]
    """
    from scipy import fft as sfft

    x = _as_batch(windows)
    pad = n_fft // 2
    xp = np.pad(x, ((0, 0), (pad, pad)))
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft, axis=1)[:, ::hop_length]  # (n, frames, n_fft)
    spec = sfft.rfft(frames * _hann(n_fft), axis=-1)  # float32 in -> complex64 out
    power = spec.real**2 + spec.imag**2
    return np.transpose(power, (0, 2, 1))


def normalise_db(db: np.ndarray, *, top_db: float = C.TOP_DB) -> np.ndarray:
    """Map dB values [shape=(n, bins, frames)] to [0, 1]: 0 dB re the window maximum -> 1, -top_db -> 0."""
    ref = db.max(axis=(-2, -1), keepdims=True)
    return np.clip((db - ref + top_db) / top_db, 0.0, 1.0).astype(np.float32)


def power_to_db(power: np.ndarray) -> np.ndarray:
    """10 log10(power), floored at -200 dB."""
    return (10.0 * np.log10(np.maximum(power, 1e-20))).astype(np.float32)


def stft_db(*, windows: np.ndarray, n_fft: int = C.N_FFT, hop_length: int = C.HOP_LENGTH) -> np.ndarray:
    """The paper's magnitude STFT in dB (20 log10 |X|), not normalised.

    Returns
    -------
    np.ndarray [shape=(n, 1025, 126), dtype=float32] for 4 s windows at 16 kHz.
    """
    return power_to_db(power_spectrogram(windows=windows, n_fft=n_fft, hop_length=hop_length))


@lru_cache(maxsize=8)
def mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float) -> np.ndarray:
    """Slaney-normalised mel filters [shape=(n_mels, n_fft // 2 + 1)], as librosa.filters.mel
    (Slaney mel scale, fmax = Nyquist), computed here so that the scan's workers never import librosa
    (seconds of start-up and about 100 MB each); tests/test_features.py checks it against librosa."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=sample_rate / 2)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def mel_frequencies(*, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """`n_mels` frequencies in Hz [shape=(n_mels,)] evenly spaced on Slaney's mel scale from `fmin`
    to `fmax`, as librosa.mel_frequencies (``htk=False``): the edges and centres of the mel filters."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels))


_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's ``htk=False``)."""
    return hz / _F_SP if hz < _MIN_LOG_HZ else _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    return np.where(mels >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), _F_SP * mels)


def logmel_db(
    *,
    windows: np.ndarray,
    sample_rate: int = C.SAMPLE_RATE,
    n_fft: int = C.N_FFT,
    hop_length: int = C.HOP_LENGTH,
    n_mels: int = C.N_MELS,
    fmin: float = FMIN,
) -> np.ndarray:
    """Log-mel power in dB, not normalised.

    Returns
    -------
    np.ndarray [shape=(n, n_mels, 1 + samples // hop_length), dtype=float32]
    """
    power = power_spectrogram(windows=windows, n_fft=n_fft, hop_length=hop_length)
    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin)
    return power_to_db(np.einsum("mf,nft->nmt", fb, power, optimize=True))


HARMONIC_FRAMES = 9
"""Median filter length along time for the harmonic part: 9 frames, 0.29 s at hop 512 and 16 kHz."""
HARMONIC_BINS = 9
"""Median filter length along frequency for the percussive part, in bins of the front end."""


def _running_median(x: np.ndarray, *, size: int, axis: int) -> np.ndarray:
    """Median over `size` (odd) neighbours along `axis`, edges mirrored: the same values as
    ``scipy.ndimage.median_filter`` with ``mode="reflect"`` along that axis, at half its cost."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (size // 2, size // 2)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="symmetric"), size, axis=axis)
    return np.partition(windows, size // 2, axis=-1)[..., size // 2]


def harmonic_mask(*, power: np.ndarray, frames: int = HARMONIC_FRAMES, bins: int = HARMONIC_BINS) -> np.ndarray:
    """Soft harmonic mask of power spectrograms: H^2 / (H^2 + P^2), H the median of each bin over
    `frames` frames, P the median of each frame over `bins` bins (edges reflected).

    Parameters
    ----------
    power : np.ndarray [shape=(n, bins, frames)]

    Returns
    -------
    np.ndarray [shape=power.shape, dtype=float32] in [0, 1]; 0.5 where both are zero.
    """
    p = np.asarray(power, dtype=np.float32)
    if p.ndim != 3:
        raise ValueError(f"power must have shape (n, bins, frames), got {p.shape}")
    h = _running_median(p, size=frames, axis=2).astype(np.float64) ** 2
    v = _running_median(p, size=bins, axis=1).astype(np.float64) ** 2
    total = h + v
    return np.where(total > 0, h / np.where(total > 0, total, 1.0), 0.5).astype(np.float32)


PEAK_LIMIT = 2.0**20
"""The largest sample magnitude `compute` takes as it is (about 120 dB above full scale). A float
file can hold samples up to 3.4e38, whose power spectrum overflows float32 (from about 1e15 up);
a window with a larger peak is scaled down by a power of two first, which changes nothing in the
output, relative to the window's maximum."""


def _within_peak_limit(x: np.ndarray) -> np.ndarray:
    """`x` [shape=(n, samples)], its rows whose peak exceeds `PEAK_LIMIT` scaled to a peak of at
    most 1 by a power of two (a copy only when one is)."""
    with np.errstate(invalid="ignore"):
        peak = np.maximum(x.max(axis=1), -x.min(axis=1))
    big = peak > PEAK_LIMIT
    if not big.any():
        return x
    x = x.copy()
    shift = np.ceil(np.log2(peak[big].astype(np.float64)))
    x[big] = (x[big].astype(np.float64) * np.exp2(-shift)[:, None]).astype(np.float32)
    return x


def compute(*, windows: np.ndarray, config: FeatureConfig, spectral_gain: np.ndarray | None = None) -> np.ndarray:
    """Normalised model input for a batch of windows.

    `spectral_gain` [shape=(n, n_fft // 2 + 1)], used by training augmentation only, multiplies each
    window's power spectrum (an equaliser) before the front end.

    The same for a window and the window times any factor: windows beyond `PEAK_LIMIT` are scaled
    down first.

    Returns
    -------
    np.ndarray [shape=(n, bins, frames), dtype=float32] in [0, 1]; bins/frames as `config.shape`.
    """
    x = _as_batch(windows)
    if x.shape[1] != config.window_samples:
        raise ValueError(f"windows must hold {config.window_samples} samples, got {x.shape[1]}")
    if config.kind not in ("stft", "logmel"):
        raise ValueError(f"unknown feature kind {config.kind!r} (expected 'stft' or 'logmel')")
    x = _within_peak_limit(x)
    power = power_spectrogram(windows=x, n_fft=config.n_fft, hop_length=config.hop_length)
    if spectral_gain is not None:
        power = power * np.asarray(spectral_gain, dtype=np.float32)[:, :, None]
    if config.kind == "logmel":
        fb = mel_filterbank(sample_rate=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin)
        power = np.einsum("mf,nft->nmt", fb, power, optimize=True)
    if config.harmonic:
        power = power * harmonic_mask(power=power)
    return normalise_db(power_to_db(power), top_db=config.top_db)

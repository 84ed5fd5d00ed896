"""Lossy-codec augmentation: training windows sent through the encoders a music library holds.

A library is mostly MP3, AAC, Opus and Vorbis; their quantisation noise, band-limiting and
pre-echo are sounds no rendered note has. `round_trip` encodes windows with ffmpeg as a library's
file would be made (the 16 kHz window resampled to 44.1 kHz, encoded at a common bitrate),
decodes them and resamples back to 16 kHz, as a scan decodes a file. Windows are sent through a
codec together, one long signal with silence between them (one ffmpeg run per codec and group,
not per window); the codec's delay is measured and undone, so each window comes back where it was.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.errors import UserError

RATE = 44_100
"""The rate a library's lossy file is encoded at (Opus: 48 kHz, the only rates it codes are its own)."""
GAP = C.SAMPLE_RATE // 4
"""Silence between two windows in one encoded signal (16 kHz samples): more than any codec's frame,
so that no window's sound leaks into its neighbour's."""
MAX_LAG = C.SAMPLE_RATE // 8
"""Largest codec delay looked for (16 kHz samples)."""


@dataclass(frozen=True)
class Codec:
    name: str
    extension: str
    args: tuple[str, ...]
    rate: int = RATE


CODECS: tuple[Codec, ...] = (
    *(Codec(f"mp3-{b}k", "mp3", ("-c:a", "libmp3lame", "-b:a", f"{b}k")) for b in (64, 96, 128, 192)),
    *(Codec(f"mp3-v{q}", "mp3", ("-c:a", "libmp3lame", "-q:a", str(q))) for q in (2, 5)),
    *(Codec(f"aac-{b}k", "m4a", ("-c:a", "aac", "-b:a", f"{b}k")) for b in (96, 128)),
    *(Codec(f"opus-{b}k", "opus", ("-c:a", "libopus", "-b:a", f"{b}k"), 48_000) for b in (64, 96)),
    *(Codec(f"vorbis-q{q}", "ogg", ("-c:a", "libvorbis", "-q:a", str(q))) for q in (2, 3, 5)),
)
"""The encodings a window may get, each as likely: common library bitrates and a few low ones."""


def _ffmpeg(args: list[str], *, stdin: bytes | None = None) -> bytes:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("codec augmentation needs ffmpeg on the PATH (Debian: apt-get install ffmpeg)") from None
    if done.returncode:
        raise UserError(f"ffmpeg failed in codec augmentation ({' '.join(cmd)}): {done.stderr.decode(errors='replace')[-400:]}")
    return done.stdout


def encode_decode(signal: np.ndarray, codec: Codec) -> np.ndarray:
    """`signal` [shape=(n,), 16 kHz] encoded at 44.1 kHz (Opus 48 kHz) by `codec` and decoded back to 16 kHz
    [shape=(m,)], as ffmpeg hands it over (its delay and padding not undone)."""
    raw = np.ascontiguousarray(signal, dtype="<f4").tobytes()
    with tempfile.TemporaryDirectory(prefix="tagger-codec-") as tmp:
        path = Path(tmp) / f"x.{codec.extension}"
        _ffmpeg(["-f", "f32le", "-ar", str(C.SAMPLE_RATE), "-ac", "1", "-i", "pipe:0", "-ar", str(codec.rate),
                 *codec.args, str(path)], stdin=raw)  # fmt: skip
        out = _ffmpeg(["-i", str(path), "-ac", "1", "-ar", str(C.SAMPLE_RATE), "-f", "f32le", "pipe:1"])
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def delay(original: np.ndarray, decoded: np.ndarray, *, max_lag: int = MAX_LAG) -> int:
    """The lag (samples, 0..max_lag) at which `decoded` best matches `original` (cross-correlation)."""
    n = min(len(original), len(decoded) - max_lag)
    if n <= 0:
        return 0
    a = original[:n].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(n + max_lag + len(a))))
    spec = np.fft.rfft(decoded[: n + max_lag].astype(np.float64), size) * np.conj(np.fft.rfft(a, size))
    corr = np.fft.irfft(spec, size)[: max_lag + 1]
    return int(np.argmax(corr))


def round_trip(windows: np.ndarray, codec: Codec) -> np.ndarray:
    """`windows` [shape=(n, WINDOW_SAMPLES), 16 kHz] as they sound after `codec`: the same shape,
    each window where it was."""
    n, length = windows.shape
    if n == 0:
        return windows.copy()
    stride = length + GAP
    signal = np.zeros(GAP + n * stride, dtype=np.float32)
    for i in range(n):
        signal[GAP + i * stride : GAP + i * stride + length] = windows[i]
    decoded = encode_decode(signal, codec)
    lag = delay(signal, decoded)
    decoded = np.concatenate([decoded[lag:], np.zeros(max(0, len(signal) + lag - len(decoded)), dtype=np.float32)])
    return np.stack([decoded[GAP + i * stride : GAP + i * stride + length] for i in range(n)]).astype(np.float32)


def augment(windows: np.ndarray, rng: np.random.Generator, *, prob: float) -> np.ndarray:
    """`windows` [shape=(n, WINDOW_SAMPLES)] with each window, at chance `prob`, sent through one of
    `CODECS` (drawn uniformly); the rest unchanged. Draws from `rng` only."""
    chosen = np.flatnonzero(rng.random(len(windows)) < prob)
    which = rng.integers(0, len(CODECS), size=len(chosen))
    out = windows.copy()
    for k, codec in enumerate(CODECS):
        idx = chosen[which == k]
        if len(idx):
            out[idx] = round_trip(windows[idx], codec)
    return out

"""Shared, generic test fixtures: synthetic signals and audio files in any format."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

# The tests create files and tag them at once: no settle time for the commands (CLI runs and their
# subprocesses) unless a test asks for one (tests of the settle time set it themselves).
os.environ["TAGGER_SETTLE_SECONDS"] = "0"


def tone_signal(
    freqs: Sequence[float], *, seconds: float, sr: int = 16_000, amplitude: float = 0.3, silence: float = 0.0
) -> np.ndarray:
    """Sum of sines (equal share of `amplitude`), optionally followed by `silence` seconds of zeros."""
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for f in freqs:
        y += np.sin(2 * np.pi * f * t)
    if len(freqs):
        y *= amplitude / len(freqs)
    if silence:
        y = np.concatenate([y, np.zeros(int(silence * sr))])
    return y.astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, *, sr: int = 16_000) -> Path:
    """Write mono `audio` to `path`; the extension picks the format (wav/flac/aiff via soundfile,
    anything else (mp3, m4a, ogg, opus, ...) encoded by ffmpeg from a temporary WAV)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext in (".wav", ".flac", ".aiff", ".aif"):
        sf.write(str(path), audio, sr)
        return path
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed to encode " + ext)
    tmp = path.with_name(f".{path.name}.src.wav")
    sf.write(str(tmp), audio, sr)
    codec = {".mp3": ["-c:a", "libmp3lame", "-b:a", "96k"], ".m4a": ["-c:a", "aac", "-b:a", "96k"],
             ".ogg": ["-c:a", "libvorbis"], ".opus": ["-c:a", "libopus"]}.get(ext, [])  # fmt: skip
    try:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(tmp), *codec, str(path)], check=True)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@pytest.fixture
def make_tone_file():
    """``make_tone_file(path, freqs, seconds=..., sr=..., silence=...)`` writes a tone file and returns its path."""

    def make(path, freqs: Sequence[float], *, seconds: float = 4.0, sr: int = 16_000, **kwargs) -> Path:
        return write_audio(path, tone_signal(freqs, seconds=seconds, sr=sr, **kwargs), sr=sr)

    return make

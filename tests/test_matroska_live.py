"""Live-written Matroska and WebM files (no Duration in their Segment Info, no DURATION tag, no Cues:
ffmpeg's ``-live 1``, a browser's MediaRecorder, OBS)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_signal
from library_fakes import FREQ
from tagger import audio

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
FF = ["ffmpeg", "-nostdin", "-v", "error"]


def _live(tmp_path, name: str, seconds: float, *args: str, codec: str = "libopus", fmt: str = "webm"):
    src = tmp_path / f"{name}.wav"
    sf.write(src, tone_signal([FREQ["flute"], FREQ["bass"]], seconds=seconds, sr=48_000), 48_000)
    out = tmp_path / f"{name}.{'webm' if fmt == 'webm' else 'mka'}"
    subprocess.run([*FF, "-i", src, *args, "-c:a", codec, "-f", fmt, "-live", "1", "-cluster_time_limit", "1000",
                    "-cluster_size_limit", "1000000", out], check=True)  # fmt: skip
    return out


def _decoded(path, notes):
    return len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000


@pytest.mark.parametrize("kind", ["opus", "mp3", "ac3", "aac", "pcm"])
def test_whole_live_written_files_are_analysed_without_a_note(tmp_path, kind):
    """Whole live-written files: Opus in a WebM, MP3, AC-3, AAC and PCM in a live MKA. The MP3 and
    AC-3 ones were refused or noted: ffprobe's length of a file that declares none is an estimate
    from its bit rate (a 10 s MP3 'a 10.4 s stream', 0.4 s of 'gaps')."""
    seconds = 10.0
    if kind == "opus":
        path = _live(tmp_path, kind, seconds)
    else:
        codec = {"mp3": "libmp3lame", "ac3": "ac3", "aac": "aac", "pcm": "pcm_s16le"}[kind]
        path = _live(tmp_path, kind, seconds, codec=codec, fmt="matroska")
    notes: list[str] = []
    assert abs(_decoded(path, notes) - seconds) < 0.05
    assert notes == []
    assert audio.info(path).duration is None

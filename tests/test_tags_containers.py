"""Containers whose bytes hold more than mutagen shows: a tag write refuses them or keeps them whole.

Each file is built here (ffmpeg, then the container's bytes edited by hand where no encoder writes
the case), tagged, and checked from its bytes and with ffmpeg/ffprobe, not with mutagen alone:
mutagen's own view is what these cases get wrong.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tagger import tags
from tagger.errors import TagWriteError

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

WRITE = dict(instruments=["guitar", "bass"], model_version="ova-test-1")


def _ffmpeg(path: Path, *args: str) -> Path:
    """A 1 s tone encoded by ffmpeg with ``args`` (codec and container options)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-map_metadata", "-1", *args, str(path)], check=True)  # fmt: skip
    return path


def _decoded_md5(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


# -- MP4 ------------------------------------------------------------------------------------------


def test_fragmented_mp4_is_refused_and_left_as_it_is(tmp_path):
    song = _ffmpeg(tmp_path / "frag.m4a", "-c:a", "aac", "-movflags", "+frag_keyframe+empty_moov",
                   "-frag_duration", "200000")  # fmt: skip
    original = song.read_bytes()
    assert original.count(b"moof") > 1
    with pytest.raises(TagWriteError, match="fragmented MP4"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    assert not tags.read_instruments(song).tagged

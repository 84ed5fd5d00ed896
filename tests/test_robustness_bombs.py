"""Files crafted to exhaust resources, as a malicious or badly damaged file in a downloaded album
would be: headers declaring far more audio or tag data than the file holds. Each is built here
(an encoder's small file, then its header edited by hand). A length that cannot be true is an error
or is analysed as what is there, never allocated; a tag of impossible size is an error naming the
file, in bounded memory, the file left byte for byte as it was.
"""

from __future__ import annotations

import shutil
import struct

import pytest

from test_tags_containers import _id3_frame, _mp3_with_id3, _syncsafe
from tagger import tags
from tagger.errors import TagWriteError

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

WRITE = dict(instruments=["flute"], model_version="bomb-test-1")


# -- tags that declare sizes the file cannot hold ----------------------------------------------------


def test_an_id3_frame_declaring_more_than_its_tag_holds_is_refused_not_rewritten(tmp_path):
    """An APIC frame declaring 256 MB (ID3v2.4, syncsafe) or 4 GB (ID3v2.3) in a tag of 380 bytes:
    mutagen reads the rest of the tag as the picture, the TPE1 frame behind it included, and a
    write stored it so, with the picture's new size: the artist gone for good into the picture's
    bytes (was: written, the file changed). Now the write and the removal are refused, naming the
    frame, and the file stays byte for byte as it was."""
    for major, size in ((4, _syncsafe(2**28 - 1)), (3, struct.pack(">I", 0xFFFFFFF0))):
        ours = [_id3_frame(b"TXXX", b"\x00" + name + b"\x00" + value, major=major)
                for name, value in ((b"INSTRUMENTS", b"bass"), (b"INSTRUMENTS_MODEL", b"old-model"))]  # fmt: skip
        bomb = b"APIC" + size + b"\x00\x00" + b"\x00image/jpeg\x00\x03\x00" + b"\xff\xd8" * 50
        song = _mp3_with_id3(tmp_path / f"v2{major}.mp3", _id3_frame(b"TIT2", b"\x00Song", major=major), *ours, bomb,
                             _id3_frame(b"TPE1", b"\x00Artist", major=major), major=major)  # fmt: skip
        original = song.read_bytes()
        declared = 2**28 - 1 if major == 4 else 0xFFFFFFF0
        said = rf"its ID3v2\.{major} tag is damaged: its APIC frame declares {declared} bytes where 195 are left"
        for change in (lambda: tags.write_instruments(song, **WRITE), lambda: tags.remove_instruments(song)):
            with pytest.raises(TagWriteError, match=said) as caught:
                change()
            assert str(song) in str(caught.value) and "left unchanged" in str(caught.value)
            assert song.read_bytes() == original
        assert tags.read_instruments(song).instruments == ["bass"]  # (reading it still works)

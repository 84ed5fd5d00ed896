"""The audio digest (`tagger.tags.audio_digest`) says "only the tags changed" for a retagged file,
whose results are then kept without analysis (tests/test_scan_retagged.py): it must cover every byte
that decides what the file decodes to, codec headers included, and none that a tag write rewrites.

Each codec header field below is edited alone in a file ffmpeg encoded: the digest must change. A
tag write by mutagen that grows the tags by 1 MB (the audio, MP4's ``moov`` and its chunk offsets,
Ogg's pages all move) and one by tagger must leave it equal."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from conftest import tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.library.scan import scan

BIG_COVER = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4096
"""A cover of 1 MB: a tag write that adds it moves everything after the tags."""


def encoded(path, *, faststart: bool = False):
    """Two seconds of a 440 Hz tone at 16 kHz in the format of ``path``'s extension (MP4 with its
    ``moov`` before ``mdat`` with ``faststart``, as iTunes and most taggers' files have it)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed")
    path = write_audio(path, tone_signal([440.0], seconds=2.0))
    if faststart:
        tmp = path.with_name("fast" + path.suffix)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-c", "copy", "-movflags",
                        "+faststart", str(tmp)], check=True)  # fmt: skip
        tmp.replace(path)
    return path


# -- where the fields are ------------------------------------------------------------------------


def _add(data: bytearray, fmt: str, at: int, delta: int) -> None:
    struct.pack_into(fmt, data, at, struct.unpack_from(fmt, data, at)[0] + delta)


def flac_rate_doubled(data: bytearray) -> None:
    at = data.index(b"fLaC") + 8 + 10  # STREAMINFO: the rate is its 20 bits from byte 10
    rate = int.from_bytes(data[at : at + 3], "big") >> 4
    data[at : at + 3] = ((rate * 2) << 4 | data[at + 2] & 0xF).to_bytes(3, "big")


def flac_channels_changed(data: bytearray) -> None:
    data[data.index(b"fLaC") + 8 + 12] ^= 0x02  # (channels - 1: bits 3-1 of STREAMINFO's byte 12)


def opus_pre_skip(data: bytearray) -> None:
    _add(data, "<H", data.index(b"OpusHead") + 10, 48)


def vorbis_rate(data: bytearray) -> None:
    _add(data, "<I", data.index(b"\x01vorbis") + 12, 1000)


EDITS = {
    "flac": [flac_rate_doubled, flac_channels_changed],
    "opus": [opus_pre_skip],
    "ogg": [vorbis_rate],
}  # fmt: skip


@pytest.mark.parametrize(("ext", "edit"), [(ext, edit) for ext, edits in EDITS.items() for edit in edits],
                         ids=lambda v: getattr(v, "__name__", v))  # fmt: skip
def test_an_edit_of_a_codec_header_field_alone_changes_the_digest(tmp_path, ext, edit):
    f = encoded(tmp_path / f"tone.{ext}")
    before = tags.audio_digest(f)
    assert before is not None
    data = bytearray(f.read_bytes())
    edit(data)
    f.write_bytes(data)
    assert tags.audio_digest(f) != before


# -- tag writes keep it --------------------------------------------------------------------------


def retag_with_cover(path) -> None:
    """Another program's tag edit (mutagen's): a title and a 1 MB cover."""
    import base64

    import mutagen
    from mutagen.asf import ASFByteArrayAttribute
    from mutagen.flac import Picture
    from mutagen.mp4 import MP4Cover

    f = mutagen.File(path)
    kind = type(f).__name__
    if f.tags is None:
        f.add_tags()
    pic = Picture()
    pic.type, pic.mime, pic.data = 3, "image/png", BIG_COVER
    if kind == "FLAC":
        f.tags["TITLE"] = "Retagged"
        f.add_picture(pic)
    elif kind == "MP4":
        f.tags["\xa9nam"] = ["Retagged"]
        f.tags["covr"] = [MP4Cover(BIG_COVER, imageformat=MP4Cover.FORMAT_PNG)]
    elif kind == "ASF":
        f.tags["Title"] = "Retagged"
        f.tags["WM/Picture"] = [ASFByteArrayAttribute(b"\x03" + struct.pack("<I", len(BIG_COVER)) + b"\0\0\0\0"
                                                      + BIG_COVER)]  # fmt: skip
    else:  # Ogg Vorbis, Opus: the picture in the comment header, which then spans many pages
        f.tags["TITLE"] = "Retagged"
        f.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    f.save()


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-after-mdat", "moov-first"])
@pytest.mark.parametrize("ext", EDITS)
def test_a_tag_write_that_moves_the_audio_keeps_the_digest(tmp_path, ext, faststart):
    if faststart and ext != "m4a":
        pytest.skip("MP4 only")
    f = encoded(tmp_path / f"tone.{ext}", faststart=faststart)
    before, size = tags.audio_digest(f), f.stat().st_size
    retag_with_cover(f)
    assert f.stat().st_size > size + len(BIG_COVER)
    assert tags.audio_digest(f) == before
    change = tags.write_instruments(f, instruments=["bass"], model_version="digest-test-1")
    assert change.written and change.audio_digest == before == tags.audio_digest(f)


@pytest.mark.parametrize("edit", [flac_rate_doubled], ids=lambda e: e.__name__)
def test_a_file_whose_codec_header_now_says_other_audio_is_analysed_again(tmp_path, db, edit):
    """End to end: the scan took such a file for one whose tags only had changed and kept the old
    results for audio it no longer holds."""
    ext = next(ext for ext, edits in EDITS.items() if edit in edits)
    f = encoded(tmp_path / "music" / f"tone.{ext}")
    scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    data = bytearray(f.read_bytes())
    edit(data)
    f.write_bytes(data)
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert again.retagged == 0 and analyser.calls > 0

"""TAK files (``.tak``) tagged as their users' other tools tag them: in an APEv2 tag at the end of the
file, which foobar2000, Mp3tag and the TAK encoder write and mutagen (``mutagen.tak.TAK``) and ffmpeg
read. Until now a tag write refused TAK as a format without tags. Each TAK file is written here by
`tak_files.tak_file` (bit-exact with ffmpeg's decoder), tagged by a scan, and checked from its bytes,
with mutagen, ffprobe and ffmpeg's decoding, and TagLib (which opens no TAK file at all).

TTA (``.tta``) stays a format without tags: its readers do not agree on a tag (the last test)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import taglib
from sqlalchemy import select
from tak_files import tak_file
from test_tags_containers import _ID3V1, _ape_tag, _decoded_md5, _ffprobe_tags, _id3v2

from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db import models as M
from tagger.library.scan import scan, tag_writer

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

ITEMS = [(b"Title", 0, b"Low Tide"), (b"Artist", 0, b"Ann Example"), (b"REPLAYGAIN_TRACK_GAIN", 0, b"-3.20 dB"),
         (b"Cover Art (Front)", 2, b"cover.jpg\0" + bytes(range(256)) * 4)]  # fmt: skip
"""The items of a TAK file's own APEv2 tag (key, flags, value): text, ReplayGain and a binary cover."""


def _tak(path, *, seconds: float = 5.0):
    """A stereo TAK file of a 110 Hz tone (bass for `FakeAnalyser`) at 22.05 kHz."""
    t = np.arange(round(seconds * 22_050)) / 22_050
    x = np.round(16383 * np.sin(2 * np.pi * 110.0 * t)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    return tak_file(path, np.stack([x, x], axis=1), 22_050)


def _scan(db, music, analyser=None):
    return scan([music], db=db, analyser=analyser or FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))


def _digest(db, f):
    with db.session() as s:
        return s.scalar(select(M.Track.audio_digest).where(M.Track.path == str(f)))


@pytest.mark.parametrize("id3v1", [b"", _ID3V1], ids=["APEv2 tag", "APEv2 and ID3v1 tags"])
def test_a_scan_tags_a_tak_file_in_its_apev2_tag_and_keeps_every_other_byte(tmp_path, db, id3v1):
    """Was: ``no tags for ...: unsupported format (TAK)``. Now INSTRUMENTS is an APEv2 item that
    mutagen and ffprobe read; the file's own items and an ID3v1 tag after the APEv2 tag stay byte for
    byte, the audio decodes the same, and the audio digest does not move: retagged by another tool
    (foobar2000 adding a comment), the file keeps its results without analysis. (ffmpeg 5.1 reads a
    TAK's APEv2 tag only where it ends the file: behind an ID3v1 tag it shows no tag, before or after.)"""
    music = tmp_path / "music"
    f = _tak(music / "low.tak")
    stream, decoded = f.read_bytes(), _decoded_md5(f)
    f.write_bytes(stream + _ape_tag([(k, flags, v) for k, flags, v in ITEMS], header=True) + id3v1)
    probed_before = _ffprobe_tags(f)
    assert ("title" in probed_before) is not bool(id3v1)
    with pytest.raises(OSError):  # (TagLib 2.1 knows no TAK: kid3 and the players built on it show no tag)
        taglib.File(str(f))

    summary = _scan(db, music)
    assert (summary.scanned, summary.tags_written, summary.untaggable) == (1, 1, []) and summary.ok
    data = f.read_bytes()
    assert data.startswith(stream) and data.endswith(id3v1)
    assert all(struct_item(k, flags, v) in data for k, flags, v in ITEMS)
    from mutagen.tak import TAK

    ape = TAK(f).tags
    assert list(ape["INSTRUMENTS"]) == ["bass"] and str(ape["INSTRUMENTS_MODEL"]) == "fake-1"
    assert tags.read_instruments(f).instruments == ["bass"]
    probed = _ffprobe_tags(f)
    if id3v1:
        assert probed == probed_before == {}
    else:
        assert (probed.pop("instruments"), probed.pop("instruments_model")) == ("bass", "fake-1")
        assert probed == probed_before and probed["title"] == "Low Tide"
    assert _decoded_md5(f) == decoded
    with pytest.raises(OSError):
        taglib.File(str(f))
    digest = _digest(db, f)
    assert digest is not None and digest == tags.audio_digest(f)

    other = TAK(f)  # another tool's edit of the file's tags (foobar2000's: the ID3v1 tag after the APEv2 tag)
    other.tags["Comment"] = "found at the market"
    other.save()  # (mutagen drops the ID3v1 tag)
    f.write_bytes(f.read_bytes() + id3v1)
    analyser = FakeAnalyser()
    again = _scan(db, music, analyser)
    assert analyser.calls == 0 and (again.scanned, again.retagged, again.tags_written) == (0, 1, 0) and again.ok
    assert _digest(db, f) == digest and tags.read_instruments(f).instruments == ["bass"]

    assert tags.remove_instruments(f).written
    data = f.read_bytes()
    assert data.startswith(stream) and data.endswith(id3v1) and _decoded_md5(f) == decoded
    assert all(struct_item(k, flags, v) in data for k, flags, v in ITEMS) and b"INSTRUMENTS" not in data


def struct_item(key: bytes, flags: int, value: bytes) -> bytes:
    """An APEv2 item as it is stored: the value's length, the flags, the key, a NUL, the value."""
    return len(value).to_bytes(4, "little") + flags.to_bytes(4, "little") + key + b"\0" + value


@pytest.mark.parametrize("front", [b"", _id3v2(b"Low Tide")], ids=["bare", "behind an ID3v2 tag"])
def test_untag_gives_back_the_tak_file_tagger_created_the_apev2_tag_in(tmp_path, db, front):
    """A TAK file without an APEv2 tag, tagged and untagged, is the file it was, byte for byte; one
    behind an ID3v2 tag (some taggers put one in front; ffmpeg skips it, mutagen took the file for an
    MP3) gets its APEv2 tag at the end, the ID3v2 tag kept."""
    music = tmp_path / "music"
    f = _tak(music / "low.tak")
    f.write_bytes(front + f.read_bytes())
    original = f.read_bytes()
    assert _scan(db, music).tags_written == 1
    assert f.read_bytes().startswith(original) and tags.read_instruments(f).instruments == ["bass"]
    assert tags.remove_instruments(f).written
    assert f.read_bytes() == original


@pytest.mark.parametrize("tagged", [False, True], ids=["bare", "with an APEv2 tag"])
def test_a_tak_file_cut_short_is_refused_before_any_write(tmp_path, db, tagged):
    """A TAK cut short (a copy that stopped; tagged after the cut, as a tool would) is refused by the
    decoding, which checks the length its STREAMINFO declares, before its tags are touched."""
    music = tmp_path / "music"
    f = _tak(music / "cut.tak", seconds=2.3)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] + (_ape_tag([(b"Title", 0, b"Low Tide")], header=True) if tagged else b""))
    before = f.read_bytes()
    summary = _scan(db, music)
    assert (summary.scanned, summary.failed, summary.tags_written) == (0, 1, 0) and not summary.ok
    assert "cut short: the file holds 1.3 s of the 2.3 s its header declares" in summary.errors[0][1]
    assert f.read_bytes() == before


def test_a_tak_file_an_earlier_tagger_could_not_tag_is_tagged_by_the_next_scan(tmp_path, db, monkeypatch):
    """TAK files scanned before this tagger (stored as a format without tags, marked with what that
    tagger could tag) are tagged by the next tag-writing scan, without analysis."""
    from tagger.tags.storage import STORAGES

    music = tmp_path / "music"
    f = _tak(music / "low.tak")
    with monkeypatch.context() as m:
        m.delitem(STORAGES, "TAK")  # (the tagger of this morning)
        first = _scan(db, music)
        assert first.scanned == 1 and [p for p, _ in first.untaggable] == [str(f)]
        assert "unsupported format (TAK)" in first.untaggable[0][1]
    analyser = FakeAnalyser()
    again = _scan(db, music, analyser)
    assert analyser.calls == 0 and again.tags_written == 1 and again.untaggable == []
    assert tags.read_instruments(f).instruments == ["bass"]


def test_tta_stays_a_format_without_tags_as_its_readers_disagree(tmp_path, db):
    """TTA's readers do not agree on a tag: ffmpeg (which writes an APEv2 tag into every TTA it makes)
    and foobar2000 read APEv2; TagLib (kid3, Strawberry, Amarok) and mutagen's ``TrueAudio`` read
    ID3 alone, and ffmpeg discards the ID3v2 tag beside its APEv2 one. An APEv2 field would be missing
    from every TagLib player, so TTA is analysed and stored, never written into."""
    from mutagen.apev2 import APEv2

    music = tmp_path / "music"
    music.mkdir()
    src = tmp_path / "low.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=110:duration=5",
                    str(src)], check=True)  # fmt: skip
    f = music / "low.tta"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "tta", str(f)], check=True)
    assert f.read_bytes()[-32:].startswith(b"APETAGEX")  # (ffmpeg's own APEv2 tag: its encoder's name)
    ape = APEv2(f)
    ape["Title"] = "Low Tide"
    ape.save(f)
    assert _ffprobe_tags(f)["title"] == "Low Tide"
    with taglib.File(str(f)) as t:
        assert "TITLE" not in t.tags
    before = f.read_bytes()
    summary = _scan(db, music)
    assert summary.scanned == 1 and "unsupported format (TrueAudio)" in summary.untaggable[0][1]
    assert f.read_bytes() == before

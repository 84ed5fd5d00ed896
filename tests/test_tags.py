"""Writing, reading and removing tagger's fields, per format, with files made by ffmpeg.

Every format runs the same round-trip class (mediafile's ReadWriteTestBase idea). The files carry
many tags (title, artist, album, date, genre, comment, track, a custom TXXX/freeform/comment field,
a multi-valued field) and a PNG cover. Other readers (mutagen's pprint, beets' mediafile, ffprobe)
must see every other tag unchanged, and the audio must decode identically with the same packets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from functools import lru_cache
from pathlib import Path

import pytest
from conftest import UNTAG_KNOWN

from tagger import tags
from tagger.errors import TagWriteError, UserError

mediafile = pytest.importorskip("mediafile")
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

FORMATS = {
    # extension: (encoder, extra ffmpeg arguments)
    "mp3": ("libmp3lame", ["-b:a", "64k"]),
    "flac": ("flac", []),
    "ogg": ("libvorbis", []),
    "opus": ("libopus", []),
    "m4a": ("aac", ["-b:a", "64k"]),
    "wav": ("pcm_s16le", []),
    "aiff": ("pcm_s16be", ["-write_id3v2", "1"]),
    "wma": ("wmav2", []),
    "wv": ("wavpack", []),
}
TEXT_TAGS = {"title": "Blue in Green", "artist": "Ann Example", "album": "Kind of Test", "date": "1959",
             "genre": "Jazz", "comment": "a comment", "track": "3"}  # fmt: skip
NOTE = "TAGGER_TEST_NOTE"
"""A custom field (TXXX / freeform / comment / ASF attribute) the fixture files carry."""

WRITE = dict(instruments=["guitar", "bass"], model_version="ova-test-1")
SCORES = {f: round(0.05 + 0.09 * i, 3) for i, f in enumerate(("bass", "brass", "flute", "guitar", "keyboard",
                                                               "mallet", "organ", "reed", "string", "vocal"))}  # fmt: skip


# -- making the files -----------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _encoders() -> frozenset[str]:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith(" A"))


def _png() -> bytes:
    """A tiny valid 4x4 RGB PNG, made here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([200, 30 * y, 60]) * 4 for y in range(4))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(rows)
    ) + chunk(b"IEND", b"")


def _register_note() -> None:
    if "tagger_test_note" not in mediafile.MediaFile.__dict__:
        mediafile.MediaFile.add_field(
            "tagger_test_note",
            mediafile.MediaField(
                mediafile.MP3DescStorageStyle(desc=NOTE),
                mediafile.MP4StorageStyle("----:com.apple.iTunes:" + NOTE),
                mediafile.StorageStyle(NOTE),
                mediafile.ASFStorageStyle(NOTE),
            ),
        )


def ffmpeg_tone(path: Path, ext: str, *, seconds: float = 1.5, metadata: bool = True, extra=()) -> Path:
    encoder, args = FORMATS[ext]
    if encoder not in _encoders():
        pytest.skip(f"this ffmpeg has no {encoder} encoder for .{ext}")
    meta = [] if not metadata else [a for k, v in TEXT_TAGS.items() for a in ("-metadata", f"{k}={v}")]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-ac", "2", "-c:a", encoder, *args, *meta, *extra, str(path)],
        check=True,
    )  # fmt: skip
    return path


def make_tagged(path: Path, ext: str, *, seconds: float = 1.5) -> Path:
    """A tone with many tags and a cover. WAV gets its tags in an ID3 chunk only (no LIST/INFO chunk,
    which would hide the ID3 chunk from ffprobe: see test_wav_info_chunk_untouched)."""
    plain = ext == "wav"
    ffmpeg_tone(path, ext, seconds=seconds, metadata=not plain, extra=["-fflags", "+bitexact"] if plain else ())
    _register_note()
    mf = mediafile.MediaFile(str(path))
    if ext == "wav":
        mf.title, mf.artist, mf.album, mf.year = TEXT_TAGS["title"], TEXT_TAGS["artist"], TEXT_TAGS["album"], 1959
        mf.genre, mf.comments, mf.track = TEXT_TAGS["genre"], TEXT_TAGS["comment"], 3
    mf.artists = ["Ann Example", "Bob Example"]
    mf.tagger_test_note = "keep me"
    mf.images = [mediafile.Image(data=_png(), desc="cover", type=mediafile.ImageType.front)]
    mf.save()
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One tagged file per format, made once per module; tests copy them."""
    made: dict[str, Path | str] = {}
    root = tmp_path_factory.mktemp("originals")

    def get(ext: str) -> Path:
        if ext not in made:
            try:
                made[ext] = make_tagged(root / f"song.{ext}", ext)
            except pytest.skip.Exception as exc:
                made[ext] = str(exc)
        if isinstance(made[ext], str):
            pytest.skip(made[ext])
        return made[ext]

    return get


@pytest.fixture(params=sorted(FORMATS))
def song(request, originals, tmp_path) -> Path:
    """A fresh copy of the tagged file of each format."""
    dst = tmp_path / originals(request.param).name
    shutil.copy2(originals(request.param), dst)
    return dst


# -- independent readers --------------------------------------------------------------------------


def ffprobe_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    found = {f"format:{k}": v for k, v in data.get("format", {}).get("tags", {}).items()}
    for i, s in enumerate(data.get("streams", [])):
        found.update({f"stream{i}:{k}": v for k, v in s.get("tags", {}).items()})
    return found


def packets_md5(path: Path) -> str:
    """ffmpeg's per-packet hashes of the audio stream, stream-copied (the payload bytes).

    Packet side data is left out: ffmpeg's Ogg demuxer attaches the parsed comments to the first
    packet as side data, which of course changes with the tags."""
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy", "-f", "framemd5", "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return "\n".join(line.split(", S=")[0] for line in out.splitlines() if not line.startswith("#"))


def decoded_md5(path: Path) -> str:
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "md5", "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip()


def _ours(text: str) -> bool:
    return "instruments" in text.lower()


def tag_state(path: Path, *, include_ours: bool) -> dict:
    """Every tag as three independent readers see it (cover art data included)."""
    import mutagen

    tags.register_mediafile_fields()
    _register_note()
    f = mutagen.File(str(path))
    lines = sorted(f.tags.pprint().splitlines()) if f.tags is not None else []
    mf = mediafile.MediaFile(str(path))
    fields = {k: v for k, v in mf.as_dict().items() if k not in ("images", "art")}
    images = [(i.mime_type, i.type, i.desc, i.data) for i in (mf.images or [])]
    probe = ffprobe_tags(path)
    if not include_ours:
        lines = [x for x in lines if not _ours(x)]
        fields = {k: v for k, v in fields.items() if not _ours(k)}
        probe = {k: v for k, v in probe.items() if not _ours(k)}
    return {"mutagen": lines, "mediafile": fields, "images": images, "ffprobe": probe}


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(tags.TEMP_SUFFIX)]


# -- the per-format round trip --------------------------------------------------------------------


class TestRoundTrip:
    def test_write_then_read(self, song):
        change = tags.write_instruments(song, **WRITE)
        assert change.written and change.changed and not change.dry_run
        assert change.before == tags.TagState()
        assert change.after == tags.TagState(instruments=["bass", "guitar"], model_version="ova-test-1")
        assert tags.read_instruments(song) == change.after
        assert (change.size, change.mtime) == (song.stat().st_size, song.stat().st_mtime)

    def test_fixture_really_carries_tags_and_cover(self, song):
        state = tag_state(song, include_ours=False)
        assert state["mediafile"]["title"] == TEXT_TAGS["title"]
        assert state["mediafile"]["artist"] == TEXT_TAGS["artist"]
        assert state["mediafile"]["tagger_test_note"] == "keep me"
        assert state["images"] and state["images"][0][3] == _png()

    def test_other_tags_cover_and_audio_unchanged(self, song):
        before, decoded, packets = tag_state(song, include_ours=False), decoded_md5(song), packets_md5(song)
        tags.write_instruments(song, **WRITE, scores=SCORES)
        assert tag_state(song, include_ours=False) == before
        assert decoded_md5(song) == decoded
        assert packets_md5(song) == packets

    def test_ffprobe_shows_the_fields(self, song):
        tags.write_instruments(song, **WRITE)
        probe = {k.split(":", 1)[1].upper(): v for k, v in ffprobe_tags(song).items()}
        # ffmpeg joins repeated Vorbis comments with ';' and shows the first of several ID3/MP4/ASF values
        values = probe["INSTRUMENTS"].split(";")
        assert values and values == ["bass", "guitar"][: len(values)]
        assert probe["INSTRUMENTS_MODEL"] == "ova-test-1"

    def test_mediafile_reads_registered_fields(self, song):
        tags.write_instruments(song, **WRITE, scores=SCORES)
        tags.register_mediafile_fields()
        tags.register_mediafile_fields()  # idempotent
        mf = mediafile.MediaFile(str(song))
        assert mf.instruments == ["bass", "guitar"]
        assert mf.instruments_model == "ova-test-1"
        assert mf.instruments_scores == [f"{f}={s:.3f}" for f, s in SCORES.items()]

    def test_scores_round_trip_and_are_dropped_when_not_given(self, song):
        change = tags.write_instruments(song, **WRITE, scores=SCORES)
        assert change.after.scores == SCORES
        assert tags.read_instruments(song).scores == SCORES
        change = tags.write_instruments(song, **WRITE)
        assert change.written and change.before.scores == SCORES
        assert tags.read_instruments(song).scores is None

    def test_untag_restores_previous_tag_state(self, song):
        before, packets = tag_state(song, include_ours=True), packets_md5(song)
        tags.write_instruments(song, **WRITE, scores=SCORES)
        assert tag_state(song, include_ours=True) != before
        change = tags.remove_instruments(song)
        assert change.written and change.before.instruments == ["bass", "guitar"] and not change.after.tagged
        assert tag_state(song, include_ours=True) == before
        assert packets_md5(song) == packets
        assert tags.read_instruments(song) == tags.TagState()
        again = tags.remove_instruments(song)
        assert not again.written and not again.changed

    def test_rewrite_replaces_values(self, song):
        tags.write_instruments(song, **WRITE)
        change = tags.write_instruments(song, instruments=["vocal"], model_version="ova-test-2")
        assert change.written and change.before.instruments == ["bass", "guitar"]
        assert tags.read_instruments(song) == tags.TagState(instruments=["vocal"], model_version="ova-test-2")
        tags.register_mediafile_fields()
        assert mediafile.MediaFile(str(song)).instruments == ["vocal"]

    def test_same_values_is_a_noop(self, song):
        tags.write_instruments(song, **WRITE, scores=SCORES)
        st, data = song.stat(), song.read_bytes()
        time.sleep(0.01)
        change = tags.write_instruments(song, instruments=["bass", "guitar"], model_version="ova-test-1", scores=SCORES)
        assert not change.written and not change.changed
        after = song.stat()
        assert (after.st_mtime_ns, after.st_ino) == (st.st_mtime_ns, st.st_ino)
        assert song.read_bytes() == data

    def test_dry_run_changes_nothing(self, song):
        st, data = song.stat(), song.read_bytes()
        change = tags.write_instruments(song, **WRITE, dry_run=True)
        assert change.dry_run and change.changed and not change.written
        assert change.after.instruments == ["bass", "guitar"]
        assert song.read_bytes() == data and song.stat().st_mtime_ns == st.st_mtime_ns
        assert temp_files(song.parent) == []

    def test_mode_kept_mtime_updated_or_kept(self, song):
        os.chmod(song, 0o640)
        old = time.time() - 3600
        os.utime(song, (old, old))
        tags.write_instruments(song, **WRITE)
        assert stat.S_IMODE(song.stat().st_mode) == 0o640
        assert song.stat().st_mtime > old + 60
        os.utime(song, (old, old))
        change = tags.remove_instruments(song, keep_mtime=True)
        assert change.written and song.stat().st_mtime == pytest.approx(old)
        assert stat.S_IMODE(song.stat().st_mode) == 0o640

    def test_read_only_file_is_skipped(self, song):
        data = song.read_bytes()
        os.chmod(song, 0o444)
        try:
            with pytest.raises(TagWriteError, match="read-only") as err:
                tags.write_instruments(song, **WRITE)
            assert err.value.path == str(song)
            assert song.read_bytes() == data
            assert temp_files(song.parent) == []
        finally:
            os.chmod(song, 0o644)

    def test_changed_since_analysed_is_refused(self, song):
        st = song.stat()
        data = song.read_bytes()
        for expected in ((st.st_size + 1, st.st_mtime), (st.st_size, st.st_mtime - 5)):
            with pytest.raises(TagWriteError, match="changed since it was analysed"):
                tags.write_instruments(song, **WRITE, expected=expected)
        assert song.read_bytes() == data
        assert tags.write_instruments(song, **WRITE, expected=(st.st_size, st.st_mtime)).written

    def test_failure_during_verify_leaves_original_and_no_temp(self, song, monkeypatch):
        """(An error of tagger's own code is that file's error, said to be tagger's, not the file's fault.)"""
        data = song.read_bytes()

        def boom(*args, **kwargs):
            raise RuntimeError("simulated crash while verifying")

        monkeypatch.setattr(tags.writing, "_verify", boom)
        with pytest.raises(TagWriteError, match="an error in tagger itself.*RuntimeError: simulated crash"):
            tags.write_instruments(song, **WRITE)
        assert song.read_bytes() == data
        assert temp_files(song.parent) == []

    def test_verification_catches_a_damaged_payload(self, song, monkeypatch):
        data = song.read_bytes()
        real_write = tags.writing._write_copy

        def write_and_damage(tmp, **kwargs):
            written = real_write(tmp, **kwargs)
            with open(tmp, "r+b") as f:  # the middle of these files is audio
                f.seek(os.path.getsize(tmp) // 2)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0xFF]))
            return written

        monkeypatch.setattr(tags.writing, "_write_copy", write_and_damage)
        with pytest.raises(TagWriteError, match="audio payload changed"):
            tags.write_instruments(song, **WRITE)
        assert song.read_bytes() == data
        assert temp_files(song.parent) == []

    def test_never_writes_credit_fields(self, song):
        import mutagen

        tags.write_instruments(song, **WRITE)
        f = mutagen.File(str(song))
        keys = {str(k).upper() for k in f.tags.keys()}
        assert not {"TMCL", "IPLS", "PERFORMER", "TIPL"} & {k.split(":")[0] for k in keys}
        assert not any("PERFORMER" in k for k in keys)


# -- format specifics -----------------------------------------------------------------------------


def _riff_chunks(data: bytes, *, little: bool) -> dict[bytes, list[bytes]]:
    chunks: dict[bytes, list[bytes]] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack("<4sI" if little else ">4sI", data[pos : pos + 8])
        chunks.setdefault(cid, []).append(data[pos + 8 : pos + 8 + size])
        pos += 8 + size + (size & 1)
    return chunks


def _after_id3v2(data: bytes) -> bytes:
    assert data[:3] == b"ID3"
    size = 0
    for b in data[6:10]:
        size = (size << 7) | b
    return data[10 + size :]


def _flac_frames(data: bytes) -> bytes:
    pos = data.index(b"fLaC") + 4
    while True:
        head = data[pos : pos + 4]
        pos += 4 + int.from_bytes(head[1:4], "big")
        if head[0] & 0x80:
            return data[pos:]


@pytest.mark.parametrize("ext", ["mp3", "flac", "wav", "aiff"])
def test_audio_payload_bytes_unchanged(originals, tmp_path, ext):
    song = tmp_path / f"song.{ext}"
    shutil.copy2(originals(ext), song)

    def payload(data: bytes) -> bytes:
        if ext == "mp3":
            return _after_id3v2(data)
        if ext == "flac":
            return _flac_frames(data)
        return _riff_chunks(data, little=ext == "wav")[b"data" if ext == "wav" else b"SSND"][0]

    before = song.read_bytes()
    tags.write_instruments(song, **WRITE, scores=SCORES)
    after = song.read_bytes()
    assert after != before
    assert len(payload(before)) > 10_000 and payload(after) == payload(before)


def test_wav_info_chunk_untouched(tmp_path):
    """ffmpeg writes WAV metadata as LIST/INFO: it stays byte for byte; our fields go to an ID3 chunk,
    with the LIST/INFO fields copied beside them (TagLib shows the ID3 chunk alone once there is one:
    tests/test_tags_taglib.py), which `untag` leaves there.

    (ffmpeg/ffprobe ignore a WAV's ID3 chunk when a LIST/INFO chunk exists: "Discarding ID3 tags
    because more suitable tags were found"; mediafile and mutagen read it.)
    """
    song = ffmpeg_tone(tmp_path / "info.wav", "wav")
    before = _riff_chunks(song.read_bytes(), little=True)
    assert b"LIST" in before and b"id3 " not in before
    tags.write_instruments(song, **WRITE)
    after = _riff_chunks(song.read_bytes(), little=True)
    assert after[b"LIST"] == before[b"LIST"] and after[b"data"] == before[b"data"]
    assert b"id3 " in after or b"ID3 " in after
    tags.register_mediafile_fields()
    copied = mediafile.MediaFile(str(song))
    assert copied.instruments == ["bass", "guitar"]
    assert (copied.title, copied.artist, copied.album, copied.genre, copied.comments, copied.track, copied.year) == (
        TEXT_TAGS["title"], TEXT_TAGS["artist"], TEXT_TAGS["album"], TEXT_TAGS["genre"], TEXT_TAGS["comment"], 3, 1959)
    assert ffprobe_tags(song)["format:title"] == TEXT_TAGS["title"]
    tags.remove_instruments(song)
    untagged = _riff_chunks(song.read_bytes(), little=True)
    assert {k: v for k, v in untagged.items() if k != b"id3 "} == before
    assert not tags.read_instruments(song).tagged and mediafile.MediaFile(str(song)).title == TEXT_TAGS["title"]


@pytest.mark.parametrize("ext", ["mp3", "wav", "aiff"])
def test_id3v23_on_request(originals, tmp_path, ext):
    from mutagen.id3 import ID3

    song = tmp_path / f"song.{ext}"
    shutil.copy2(originals(ext), song)
    decoded = decoded_md5(song)
    tags.write_instruments(song, **WRITE, scores=SCORES, id3v23=True)
    import mutagen

    id3 = mutagen.File(str(song)).tags
    assert id3.version[:2] == (2, 3)
    if ext == "mp3":
        assert ID3(str(song)).version[:2] == (2, 3)
        with open(song, "rb") as f:
            assert f.read(4) == b"ID3\x03"
    assert id3.getall("TXXX:INSTRUMENTS")[0].text == ["bass/guitar"]
    assert tags.read_instruments(song) == tags.TagState(["bass", "guitar"], "ova-test-1", SCORES)
    tags.register_mediafile_fields()
    assert mediafile.MediaFile(str(song)).instruments == ["bass", "guitar"]
    assert mediafile.MediaFile(str(song)).title == TEXT_TAGS["title"]
    assert decoded_md5(song) == decoded
    # the same values again: no rewrite; a later default write keeps the file's v2.3 tag
    assert not tags.write_instruments(song, **WRITE, scores=SCORES, id3v23=True).written
    tags.write_instruments(song, instruments=["vocal"], model_version="ova-test-1")
    assert mutagen.File(str(song)).tags.version[:2] == (2, 3)


def test_default_is_id3v24(originals, tmp_path):
    song = tmp_path / "song.mp3"
    ffmpeg_tone(song, "mp3", extra=["-id3v2_version", "4"])
    tags.write_instruments(song, **WRITE)
    with open(song, "rb") as f:
        assert f.read(4) == b"ID3\x04"


def test_existing_id3v23_tag_stays_v23_with_other_frames_unchanged(tmp_path):
    from mutagen.id3 import ID3

    song = ffmpeg_tone(tmp_path / "v23.mp3", "mp3", extra=["-id3v2_version", "3"])
    assert ID3(str(song)).version[:2] == (2, 3)
    before = tag_state(song, include_ours=False)
    tags.write_instruments(song, **WRITE)
    assert ID3(str(song)).version[:2] == (2, 3)
    assert tag_state(song, include_ours=False) == before
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_mp3_id3v1_only_file_keeps_its_id3v1_tag_and_audio_byte_for_byte(tmp_path):
    """The ID3v2 tag added carries the ID3v1 fields (test_tags_containers.py checks what readers
    show); untag leaves them in it."""
    from mutagen.id3 import ID3

    song = ffmpeg_tone(tmp_path / "v1.mp3", "mp3", extra=["-write_id3v1", "1", "-id3v2_version", "0"])
    original = song.read_bytes()
    assert original[-128:-125] == b"TAG" and original[:3] != b"ID3"
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert data[-128:] == original[-128:] and data.endswith(original)  # ID3v1 and audio untouched
    keys = sorted(ID3(str(song), load_v1=False).keys())
    assert keys == ["COMM::eng", "TXXX:INSTRUMENTS", "TXXX:INSTRUMENTS_MODEL"]  # (ffmpeg's ID3v1: a comment only)
    tags.remove_instruments(song)
    assert song.read_bytes().endswith(original)
    assert sorted(ID3(str(song), load_v1=False).keys()) == [k for k in keys if not k.startswith("TXXX:INSTRUMENTS")]


def test_mp3_with_id3v1_and_v2_keeps_v1_bytes(tmp_path):
    song = ffmpeg_tone(tmp_path / "v1v2.mp3", "mp3", extra=["-write_id3v1", "1"])
    original = song.read_bytes()
    assert original[-128:-125] == b"TAG"
    tags.write_instruments(song, **WRITE)
    assert song.read_bytes()[-128:] == original[-128:]


def test_unsupported_format_is_skipped_with_a_clear_message(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all\n" * 10)
    with pytest.raises(TagWriteError, match="unsupported format"):
        tags.write_instruments(text, **WRITE)
    with pytest.raises(TagWriteError, match="unsupported format"):
        tags.read_instruments(text)
    adts = tmp_path / "raw.aac"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac",
                    str(adts)], check=True)  # fmt: skip
    data = adts.read_bytes()
    with pytest.raises(TagWriteError, match="unsupported format"):
        tags.write_instruments(adts, **WRITE)
    assert adts.read_bytes() == data
    with pytest.raises(TagWriteError, match="no such file"):
        tags.write_instruments(tmp_path / "missing.mp3", **WRITE)


OGG_WITHOUT_TAGS = {
    # name: (ffmpeg output arguments, what the message calls it)
    "flac.oga": (["-c:a", "flac"], "Ogg FLAC"),
    "theora.ogg": (["-c:v", "libtheora", "-c:a", "libvorbis"], "Ogg Theora video"),
}


@pytest.mark.parametrize("name", sorted(OGG_WITHOUT_TAGS))
def test_ogg_flac_and_theora_are_refused_by_name_and_left_alone(tmp_path, name):
    """FLAC in Ogg and a Theora video with a Vorbis soundtrack (mutagen reads both, tagger writes
    neither) are each one `UntaggableError` saying which format it is in words (was: mutagen's class
    name, ``OggFLAC``), the file unchanged."""
    from tagger.errors import UntaggableError

    args, label = OGG_WITHOUT_TAGS[name]
    song = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=5",
                    "-f", "lavfi", "-i", "sine=duration=1", *(["-map", "1:a"] if "theora" not in name else []),
                    *args, str(song)], check=True)  # fmt: skip
    data = song.read_bytes()
    for attempt in (lambda: tags.write_instruments(song, **WRITE), lambda: tags.read_instruments(song)):
        with pytest.raises(UntaggableError, match=rf"{song}: unsupported format \({label}\); tagger writes tags into "):
            attempt()
    assert song.read_bytes() == data


@pytest.mark.parametrize("ext", ["mp3", "flac", "wav", "ogg", "m4a", "dsf"])
def test_an_empty_file_with_a_music_extension_is_one_clear_error(tmp_path, ext):
    """A 0-byte file named like music (an interrupted copy) gave mutagen's words for it ("Header size
    < 8", "file said 4 bytes, read 0 bytes", "can't sync to MPEG frame"); it is now "empty file (0
    bytes)", as the scan's decoder says, for a read, a write and a removal, and stays empty."""
    empty = tmp_path / f"empty.{ext}"
    empty.touch()
    for attempt in (lambda: tags.read_instruments(empty), lambda: tags.write_instruments(empty, **WRITE),
                    lambda: tags.remove_instruments(empty)):  # fmt: skip
        with pytest.raises(TagWriteError, match=rf"^{empty}: empty file \(0 bytes\)"):
            attempt()
    assert empty.stat().st_size == 0 and os.listdir(tmp_path) == [empty.name]


def test_untag_counts_an_empty_file_unchanged(originals, tmp_path, monkeypatch):
    """`tagger untag ~/Music` over a folder holding a 0-byte .mp3 (an interrupted download) said
    `skipped ...: empty file (0 bytes): no audio, no tags; left as it is` and exited 1 on every run,
    for a file that holds nothing of tagger's to remove (found walking through the README with a
    small library). It is counted unchanged, as a file in a format without tags is; exit 0."""
    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.errors import EmptyFileError

    music = tmp_path / "music"
    music.mkdir()
    song = music / "song.flac"
    shutil.copy2(originals("flac"), song)
    tags.write_instruments(song, **WRITE)
    (music / "empty.mp3").touch()
    with pytest.raises(EmptyFileError):
        tags.remove_instruments(music / "empty.mp3")
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "nowhere.db"))
    result = CliRunner().invoke(app, ["untag", *UNTAG_KNOWN, str(music), "--settle-seconds", "0"])
    assert result.exit_code == 0, result.output
    assert f"untagged {song} (removed: bass, guitar)" in result.output
    assert "1 untagged, 1 unchanged, 0 skipped" in result.output and "empty.mp3" not in result.output
    assert not tags.read_instruments(song).tagged and (music / "empty.mp3").stat().st_size == 0
    result = CliRunner().invoke(app, ["untag", *UNTAG_KNOWN, str(music / "empty.mp3"), "--dry-run"])
    assert result.exit_code == 0 and "0 would be untagged, 1 unchanged, 0 skipped" in result.output, result.output


def test_untag_include_hidden_enters_the_hidden_folders_a_scan_with_it_tagged(originals, tmp_path, monkeypatch):
    """`tagger scan ~/Music --include-hidden` tags the songs of ~/Music/.hidden; `tagger untag ~/Music`
    left them tagged, without a word, and untag had no --include-hidden (found walking through the
    README with a hidden folder). It has it now, as scan does; without it hidden files stay as before."""
    from typer.testing import CliRunner

    from tagger.cli import app

    music = tmp_path / "music"
    (music / ".hidden").mkdir(parents=True)
    shown, hidden = music / "song.flac", music / ".hidden" / "secret.flac"
    for song in (shown, hidden):
        shutil.copy2(originals("flac"), song)
        tags.write_instruments(song, **WRITE)
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "nowhere.db"))
    result = CliRunner().invoke(app, ["untag", *UNTAG_KNOWN, str(music), "--settle-seconds", "0"])
    assert result.exit_code == 0 and "1 untagged, 0 unchanged" in result.output, result.output
    assert tags.read_instruments(hidden).tagged and not tags.read_instruments(shown).tagged
    result = CliRunner().invoke(app, ["untag", *UNTAG_KNOWN, str(music), "--settle-seconds", "0", "--include-hidden"])
    assert result.exit_code == 0 and f"untagged {hidden} (removed: bass, guitar)" in result.output, result.output
    assert "1 untagged, 1 unchanged" in result.output and not tags.read_instruments(hidden).tagged


def test_bad_values_are_refused_before_touching_the_file(originals, tmp_path):
    song = tmp_path / "song.flac"
    shutil.copy2(originals("flac"), song)
    data = song.read_bytes()
    with pytest.raises(UserError, match="unknown instrument family"):
        tags.write_instruments(song, instruments=["kazoo"], model_version="m")
    with pytest.raises(UserError, match="model version"):
        tags.write_instruments(song, instruments=["bass"], model_version=" ")
    with pytest.raises(UserError, match="between 0 and 1"):
        tags.write_instruments(song, instruments=["bass"], model_version="m", scores={"bass": 1.5})
    assert song.read_bytes() == data


def test_no_instrument_keeps_the_model_as_provenance(originals, tmp_path):
    song = tmp_path / "song.ogg"
    shutil.copy2(originals("ogg"), song)
    tags.write_instruments(song, instruments=[], model_version="ova-test-1")
    state = tags.read_instruments(song)
    assert state == tags.TagState(instruments=[], model_version="ova-test-1") and state.tagged
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_symlink_target_is_written_and_link_kept(originals, tmp_path):
    song = tmp_path / "song.flac"
    shutil.copy2(originals("flac"), song)
    link = tmp_path / "link.flac"
    link.symlink_to(song)
    tags.write_instruments(link, **WRITE)
    assert link.is_symlink()
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def _writer_got_in(path: Path, writer: threading.Thread) -> None:
    """Wait until `writer` has opened `path` for writing: its write done (no lease on the file), or
    its ``open`` waiting on the read lease the tag write holds (the kernel breaking it, /proc/locks).
    (Was a 0.3 s sleep, which a loaded machine could end before the thread ran.)"""
    ino, locks = os.stat(path).st_ino, Path("/proc/locks")
    deadline = time.monotonic() + 60  # (a bound on a hang, not a timing)
    while writer.is_alive():
        if locks.exists() and any(" BREAKING " in line and f":{ino} " in line for line in locks.read_text().splitlines()):
            return
        assert time.monotonic() < deadline, "the other program never opened the file"
        time.sleep(0.01)


def test_file_changed_during_the_write_is_left_alone(originals, tmp_path, monkeypatch):
    song = tmp_path / "song.flac"
    shutil.copy2(originals("flac"), song)
    real_verify = tags.writing._verify

    size = song.stat().st_size
    appender = []

    def append():
        with open(song, "ab") as f:  # (waits while tagger holds its lease on the file)
            f.write(b"\0")

    def verify_while_someone_appends(tmp, **kwargs):
        real_verify(tmp, **kwargs)
        appender.append(threading.Thread(target=append))
        appender[0].start()
        _writer_got_in(song, appender[0])  # the other program is in the middle of its write

    monkeypatch.setattr(tags.writing, "_verify", verify_while_someone_appends)
    with pytest.raises(TagWriteError, match="changed while"):
        tags.write_instruments(song, **WRITE)
    appender[0].join(timeout=10)
    assert not tags.read_instruments(song).tagged
    assert song.stat().st_size == size + 1  # the other program's write is in the file
    assert temp_files(tmp_path) == []


_KILL_LOOP = """
import sys
from tagger.tags import remove_instruments, write_instruments
path = sys.argv[1]
print("ready", flush=True)
while True:
    write_instruments(path, instruments=["bass", "guitar"], model_version="ova-test-1")
    remove_instruments(path)
"""


@pytest.mark.integration
def test_sigkill_at_any_moment_leaves_old_or_new_file(tmp_path):
    """Kill a process that keeps writing and removing the tags; the file is always whole."""
    song = make_tagged(tmp_path / "song.flac", "flac", seconds=20)
    before = tag_state(song, include_ours=False)
    packets = packets_md5(song)
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        proc = subprocess.Popen([sys.executable, "-c", _KILL_LOOP, str(song)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = tags.read_instruments(song)
        assert state in (tags.TagState(), tags.TagState(["bass", "guitar"], "ova-test-1"))
        assert tag_state(song, include_ours=False) == before
        assert packets_md5(song) == packets
        for leftover in temp_files(tmp_path):  # only a hidden temp file can remain; never scanned
            assert leftover.name.startswith(".") and Path(leftover.name).suffix == tags.TEMP_SUFFIX
            leftover.unlink()


def test_find_audio_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.mp3", "a/b/two.FLAC", "a/cover.jpg", f"a/.one.mp3.x{tags.TEMP_SUFFIX}", "three.wma"):
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in tags.find_audio_files([tmp_path / "a", tmp_path / "three.wma"])]
    assert found == ["a/one.mp3", "a/b/two.FLAC", "three.wma"]


@pytest.mark.parametrize("ext, extra", [("m4a", ["-movflags", "+faststart"]), ("mp3", []), ("flac", []), ("ogg", [])])
def test_tags_larger_than_the_padding_move_the_audio_safely(tmp_path, ext, extra):
    """A long model version forces the tag area to grow (MP4 moov before mdat, ID3 beyond its padding)."""
    song = ffmpeg_tone(tmp_path / f"grow.{ext}", ext, extra=extra)
    before, decoded, packets = tag_state(song, include_ours=False), decoded_md5(song), packets_md5(song)
    size = song.stat().st_size
    version = "v" * 20_000
    tags.write_instruments(song, instruments=["organ"], model_version=version, scores=SCORES)
    assert song.stat().st_size > size + 10_000
    assert tags.read_instruments(song).model_version == version
    assert tag_state(song, include_ours=False) == before
    assert (decoded_md5(song), packets_md5(song)) == (decoded, packets)


def test_hard_link_gets_its_own_copy(originals, tmp_path):
    song = tmp_path / "song.flac"
    shutil.copy2(originals("flac"), song)
    other = tmp_path / "other.flac"
    os.link(song, other)
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).tagged
    assert not tags.read_instruments(other).tagged  # documented: the other link keeps the old content

"""Files crafted to exhaust resources, as a malicious or badly damaged file in a downloaded album
would be: headers declaring far more audio or tag data than the file holds. Each is built here
(an encoder's small file, then its header edited by hand). A length that cannot be true is an error
or is analysed as what is there, never allocated; a tag of impossible size is an error naming the
file, in bounded memory, the file left byte for byte as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import ffmpeg_demuxers, tone_signal, track_rows, write_audio
from library_fakes import FakeAnalyser
from test_tags_containers import _id3_frame, _mp3_with_id3, _ogg_crc, _syncsafe
from tagger import tags
from tagger.db import models as M
from tagger.errors import TagWriteError
from tagger.library.scan import scan

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

WRITE = dict(instruments=["flute"], model_version="bomb-test-1")


def _ogg_pages(data: bytes):
    """(start, end) of each Ogg page of ``data``."""
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        table = data[pos + 27 : pos + 27 + data[pos + 26]]
        yield pos, pos + 27 + len(table) + sum(table)
        pos += 27 + len(table) + sum(table)


def _with_page_patched(path: Path, page: int, offset: int, new: bytes) -> Path:
    """The Ogg file ``path`` with ``new`` written at ``offset`` in its page number ``page`` (-1: the
    last), the page's CRC made right again."""
    data = bytearray(path.read_bytes())
    start, end = list(_ogg_pages(bytes(data)))[page]
    data[start + offset : start + offset + len(new)] = new
    data[start + 22 : start + 26] = bytes(4)
    data[start + 22 : start + 26] = _ogg_crc(bytes(data[start:end]))
    path.write_bytes(data)
    return path


def _atoms(data: bytes, start: int = 0, end: int | None = None):
    """(offset, size, name) of every MP4 atom of ``data`` on the path to the sample tables."""
    pos, end = start, len(data) if end is None else end
    while pos + 8 <= end:
        size, name = struct.unpack(">I4s", data[pos : pos + 8])
        yield pos, size, name
        if name in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            yield from _atoms(data, pos + 8, pos + size)
        pos += size


def _patch_atom(path: Path, name: bytes, offset: int, new: bytes) -> Path:
    data = bytearray(path.read_bytes())
    at = next(pos for pos, _size, found in _atoms(bytes(data)) if found == name)
    data[at + offset : at + offset + len(new)] = new
    path.write_bytes(data)
    return path


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


def _wavpack(tmp_path: Path, name: str, tail: bytes) -> Path:
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:r=44100", "-t", "1",
                    "-c:a", "wavpack", str(path)], check=True)  # fmt: skip
    path.write_bytes(path.read_bytes() + tail)
    return path


def _ape_footer(size: int, count: int) -> bytes:
    return struct.pack("<II", 5, 0) + b"Title\x00Song!" + b"APETAGEX" + struct.pack("<4I", 2000, size, count, 0) + bytes(8)


def _m4a_atom_2_63(tmp_path: Path) -> Path:  # (a last top-level atom of 64-bit size 2**63 - 1)
    path = write_audio(tmp_path / "atom.m4a", tone_signal([440.0], seconds=1.0), sr=16_000)
    path.write_bytes(path.read_bytes() + struct.pack(">I4sQ", 1, b"free", 2**63 - 1) + bytes(16))
    return path


def _flac_blocks(path: Path) -> tuple[list[tuple[int, bytes]], bytes]:
    """The metadata blocks (type, content) of a FLAC file and the frames after them."""
    data, blocks, pos = path.read_bytes(), [], 4
    while True:
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        blocks.append((kind & 0x7F, data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
        if kind & 0x80:
            return blocks, data[pos:]


def _flac_with(tmp_path: Path, name: str, edit) -> Path:
    """A FLAC file whose metadata blocks are ``edit(blocks)``: (type, content) or (type, content,
    the size its header declares)."""
    path = write_audio(tmp_path / name, tone_signal([440.0], seconds=1.0), sr=16_000)
    blocks, frames = _flac_blocks(path)
    edited = edit(blocks)
    out = b"fLaC"
    for i, (kind, content, *declared) in enumerate(edited):
        last = 0x80 if i == len(edited) - 1 else 0
        out += bytes([kind | last]) + (declared[0] if declared else len(content)).to_bytes(3, "big") + content
    path.write_bytes(out + frames)
    return path


def _flac_picture_16_mb(tmp_path: Path) -> Path:  # (a last PICTURE block declaring 16 MB, holding 150 bytes)
    picture = struct.pack(">II", 3, 10) + b"image/jpeg" + struct.pack(">I5I", 0, 1, 1, 24, 0, 2**24) + b"\xff\xd8" * 50
    return _flac_with(tmp_path, "picture.flac", lambda blocks: [*blocks, (6, picture, 0xFFFFFF)])


def _vorbis_comment_count(content: bytes, count: int) -> bytes:
    vendor = struct.unpack("<I", content[:4])[0]
    return content[: 4 + vendor] + struct.pack("<I", count) + content[8 + vendor :]


def _flac_2_31_comments(tmp_path: Path) -> Path:
    return _flac_with(tmp_path, "comments.flac",
                      lambda blocks: [(k, _vorbis_comment_count(c, 2**31) if k == 4 else c) for k, c in blocks])  # fmt: skip


def _ogg_2_31_comments(tmp_path: Path) -> Path:
    path = write_audio(tmp_path / "comments.ogg", tone_signal([440.0], seconds=1.0), sr=16_000)
    data = path.read_bytes()
    start = list(_ogg_pages(data))[1][0]
    at = data.find(b"\x03vorbis", start) - start
    vendor = struct.unpack("<I", data[start + at + 7 : start + at + 11])[0]
    return _with_page_patched(path, 1, at + 11 + vendor, struct.pack("<I", 2**31))


def _mp3_id3_tag_256_mb(tmp_path: Path) -> Path:  # (the ID3v2 tag's size: 2**28 - 1, syncsafe)
    song = _mp3_with_id3(tmp_path / "tag.mp3", _id3_frame(b"TIT2", b"\x03Song"))
    data = bytearray(song.read_bytes())
    data[6:10] = _syncsafe(2**28 - 1)
    song.write_bytes(data)
    return song


TAG_BOMBS = {
    "id3v2 tag of 256 MB": (_mp3_id3_tag_256_mb, "a part of it runs past the end of the file"),
    "apev2 tag of 2 GB": (lambda tmp: _wavpack(tmp, "big.wv", _ape_footer(2**31, 1)),
                          "its APE tag says it is larger than the file"),
    "apev2 tag of 2^31 items": (lambda tmp: _wavpack(tmp, "items.wv", _ape_footer(32 + 17, 2**31)),
                                "its APE tag's items run past the tag"),
    "flac picture of 16 MB": (_flac_picture_16_mb, "cannot read tags"),
    "flac 2^31 comments": (_flac_2_31_comments, "cannot read tags"),
    "ogg 2^31 comments": (_ogg_2_31_comments, "not a valid Vorbis comment"),
    "mp4 atom of 2^63 bytes": (_m4a_atom_2_63, "a size in its headers is too large to be true"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAG_BOMBS))
def test_a_tag_declaring_an_impossible_size_is_an_error_naming_the_file(tmp_path, case):
    """Reading, writing and removing tags give one error naming the file and the part at fault,
    and leave it byte for byte as it was; the scan's audio digest is None (no answer to trust).
    mutagen said ``[Errno 22] Invalid argument`` of the 2 GB APEv2 tag, ``error (mutagen gives no
    reason)`` of the 2**31 items, ``cannot fit 'int' into an offset-sized integer`` of the atom."""
    make, said = TAG_BOMBS[case]
    path = make(tmp_path)
    original = path.read_bytes()
    for op in (tags.read_instruments, lambda p: tags.write_instruments(p, **WRITE), tags.remove_instruments):
        with pytest.raises(TagWriteError, match=said) as caught:
            op(path)
        assert str(path) in str(caught.value)
        assert path.read_bytes() == original
    assert tags.audio_digest_or_none(path) is None



def test_a_file_shorter_than_an_ape_header_that_begins_as_one_is_an_error_naming_the_file(tmp_path):
    """The check that names a damaged APE tag (run on every file mutagen cannot read) unpacked the
    header of a file of under 32 bytes beginning with ``APETAGEX``: `tags.read_instruments` raised
    a bare ``struct.error: unpack requires a buffer of 16 bytes`` (no file named), and a write or an
    untag gave that as the reason. Each is mutagen's reason now, naming the file, which is left as it was."""
    path = tmp_path / "tiny.mp3"
    path.write_bytes(b"APETAGEX" + bytes([1]) * 12)
    for op in (tags.read_instruments, lambda p: tags.write_instruments(p, **WRITE), tags.remove_instruments):
        with pytest.raises(TagWriteError) as caught:
            op(path)
        assert str(path) in str(caught.value) and "unpack" not in str(caught.value), caught.value
        assert path.read_bytes() == b"APETAGEX" + bytes([1]) * 12

BOUNDED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))
from tagger import tags
out = {}
for path in sys.argv[1:]:
    for name, op in (("read", tags.read_instruments), ("digest", tags.audio_digest),
                     ("write", lambda p: tags.write_instruments(p, instruments=["flute"], model_version="m")),
                     ("remove", tags.remove_instruments)):
        try:
            op(path)
            out[f"{path} {name}"] = "no error"
        except BaseException as exc:
            out[f"{path} {name}"] = type(exc).__name__
print(json.dumps(out))
"""


def test_every_tag_bomb_is_refused_within_768_mb_of_address_space(tmp_path):
    """In a process that may not map more than 768 MB (tagger with mutagen maps about 310 MB), none
    of the tags above is allocated at its declared size (256 MB to 2**63 bytes): each operation is
    our error (TagWriteError), never a MemoryError."""
    paths = []
    for i, (make, _said) in enumerate(TAG_BOMBS.values()):
        (tmp_path / str(i)).mkdir()
        paths.append(str(make(tmp_path / str(i))))
    run = subprocess.run([sys.executable, "-c", BOUNDED, *paths], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert set(json.loads(run.stdout).values()) == {"TagWriteError"}, run.stdout


# -- tiny files whose headers declare hours, days or centuries of audio ---------------------------


def _ogg_granule_2_62(tmp_path: Path) -> Path:  # (the last page's granule position: 2**62 samples)
    path = write_audio(tmp_path / "granule.ogg", tone_signal([440.0], seconds=2.0, sr=44_100), sr=44_100)
    return _with_page_patched(path, -1, 6, struct.pack("<Q", 2**62))


def _opus_granule_2_40(tmp_path: Path) -> Path:  # (libsndfile takes it for 22.9 million seconds)
    path = write_audio(tmp_path / "granule.opus", tone_signal([440.0], seconds=2.0, sr=48_000), sr=48_000)
    return _with_page_patched(path, -1, 6, struct.pack("<Q", 2**40))


def _m4a_stts_2_31(tmp_path: Path) -> Path:  # (its first time-to-sample entry: 2**31 samples)
    path = write_audio(tmp_path / "stts.m4a", tone_signal([440.0], seconds=2.0, sr=44_100), sr=44_100)
    return _patch_atom(path, b"stts", 16, struct.pack(">I", 2**31))


def _m4a_mdhd_27_hours(tmp_path: Path) -> Path:  # (the media header's duration: 2**32 - 1 ticks)
    path = write_audio(tmp_path / "mdhd.m4a", tone_signal([440.0], seconds=2.0, sr=44_100), sr=44_100)
    assert path.read_bytes()[path.read_bytes().find(b"mdhd") + 4] == 0  # (version 0: 32-bit fields)
    return _patch_atom(path, b"mdhd", 24, struct.pack(">I", 0xFFFFFFFF))


@pytest.mark.parametrize("make", [_ogg_granule_2_62, _opus_granule_2_40, _m4a_stts_2_31, _m4a_mdhd_27_hours],
                         ids=["ogg granule 2^62", "opus granule 2^40", "m4a stts 2^31", "m4a mdhd 2^32-1"])  # fmt: skip
def test_a_small_file_declaring_an_impossible_length_is_analysed_as_what_it_holds(tmp_path, db, make):
    """Nothing is sized by the declared length (up to 3 million years of audio here): the 2 s the
    file holds are decoded, analysed and stored as 2 s, in the time and memory of 2 s."""
    path = make(tmp_path)
    original = path.read_bytes()
    summary = scan([path], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    with db.session() as s:
        track = s.scalar(select(M.Track))
        assert track.status == "ok" and abs(track.duration - 2.0) < 0.05 and track.windows == 1
    assert path.read_bytes() == original


def test_a_wma_whose_header_declares_2_63_bytes_is_refused_naming_it(tmp_path):
    """mutagen reads the attributes that are there and its save then fails seeking past the header
    it believes in: the write said ``tag write failed (OSError: Invalid argument)``. It is refused
    before anything is written, with the sizes; the file is left as it was."""
    path = write_audio(tmp_path / "song.wma", tone_signal([440.0], seconds=1.0))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack("<Q", 2**63 - 1)
    path.write_bytes(data)
    with pytest.raises(TagWriteError, match=rf"its ASF header declares {2**63 - 1} bytes where the file holds "
                                            rf"{len(data)} \(damaged\?\); left unchanged"):  # fmt: skip
        tags.write_instruments(path, **WRITE)
    assert path.read_bytes() == data

# -- paths at the file system's limits --------------------------------------------------------------


def test_a_file_name_of_255_bytes_of_multibyte_utf8_is_analysed_and_tagged(tmp_path, db):
    """NAME_MAX of 3-byte characters: the temporary copy a tag write makes beside it takes the
    first 80 bytes of the name, cut inside a character (decoded without it), never a name too long."""
    name = "音" * 83 + "ab.wav"  # (249 + 6 = 255 bytes)
    assert len(name.encode()) == 255
    music = tmp_path / "music"
    path = write_audio(music / name, tone_signal([440.0], seconds=2.0))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.failed == 0, summary.errors
    assert tags.write_instruments(path, **WRITE).written
    assert tags.read_instruments(path).instruments == ["flute"] and [p.name for p in music.iterdir()] == [name]


def test_an_ogg_whose_comment_header_declares_2_31_comments_is_analysed_by_ffmpeg(tmp_path, db):
    """libsndfile opens it, declares its length and reads not one frame, without a word: it was an
    error saying that the file holds no audio samples (untrue). ffmpeg decodes it whole now; its
    tags stay a failure naming the file, which is left as it was."""
    path = _ogg_2_31_comments(tmp_path)
    original = path.read_bytes()
    summary = scan([path], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    with db.session() as s:
        track = s.scalar(select(M.Track))
        assert track.status == "ok" and abs(track.duration - 1.0) < 0.05
    with pytest.raises(TagWriteError, match="not a valid Vorbis comment"):
        tags.write_instruments(path, **WRITE)
    assert path.read_bytes() == original


@pytest.mark.parametrize("make, said", [
    (_mp3_id3_tag_256_mb, r"its ID3v2 tag declares 268435465 bytes where the file holds \d+ \(damaged or cut short\?\)"),
    (_flac_picture_16_mb, r"its FLAC PICTURE metadata block declares 16777215 bytes where the file holds \d+ "
                          r"\(damaged or cut short\?\)"),
], ids=["id3v2 tag of 256 MB", "flac picture of 16 MB"])  # fmt: skip
def test_a_header_running_past_the_end_of_the_file_is_named_in_its_error(tmp_path, db, make, said):
    """Neither decoder reads such a file; the error row said ffprobe's words alone, ``not a readable
    audio file (Invalid argument)`` and ``(Input/output error)``, which name neither the part at
    fault nor the file's state. The rest of the library is analysed."""
    music = tmp_path / "music"
    music.mkdir()
    path = make(music)
    write_audio(music / "fine.wav", tone_signal([440.0], seconds=2.0))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.failed == 1
    status, error = track_rows(db)[str(path)]
    assert status == "error" and re.fullmatch("not a readable audio file: " + said, error), error


@pytest.mark.parametrize("make", [_mp3_id3_tag_256_mb, _flac_picture_16_mb], ids=["id3v2 tag of 256 MB", "flac picture of 16 MB"])
def test_a_header_running_past_the_end_names_no_dask_worker(tmp_path, make):
    """tagger's own reading of the file's headers finds the fault (the file's, the same on every
    machine), though its reason begins as ffprobe's failure does, 'not a readable audio file': a Dask
    scan said '(on the Dask worker ADDRESS)' after it, as after a worker's decoder failing (found
    reviewing f9f8017). ffprobe's own failure still names the worker."""
    from tagger.audio.probe import _ffprobe_info
    from tagger.errors import AudioReadError
    from tagger.library.messages import RemoteResult
    from tagger.library.runner import where_it_failed

    path = make(tmp_path)
    with pytest.raises(AudioReadError) as caught:
        _ffprobe_info(path)
    assert caught.value.reason.startswith("not a readable audio file: ")
    assert where_it_failed(RemoteResult(str(path), error=caught.value.reason, worker="tcp://10.0.0.2:40000")) == ""
    ffprobes = RemoteResult(str(path), error="not a readable audio file (Invalid argument)", worker="tcp://10.0.0.2:40000")
    assert where_it_failed(ffprobes) == " (on the Dask worker tcp://10.0.0.2:40000)"


def test_an_ffmpeg_playlist_named_like_music_is_an_error_not_hours_of_another_file(tmp_path, db):
    """ffmpeg recognises a concat script by its content whatever its name: a ``song.mp3`` of 1.4 KB
    naming ``real.wav`` 100 times was analysed as a 400 s track of that file's audio (a 300 KB one
    names 24 hours of it). It is an error row now; the file it names is analysed as itself."""
    music = tmp_path / "music"
    real = write_audio(music / "real.wav", tone_signal([440.0], seconds=4.0))
    playlist = music / "song.mp3"
    playlist.write_text("ffconcat version 1.0\n" + "file real.wav\n" * 100)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.failed == 1
    assert track_rows(db) == {
        str(real): ("ok", None),
        str(playlist): ("error", "not an audio file but a playlist of other files or streams (ffmpeg's concat format): "
                                 "not analysed"),
    }  # fmt: skip


def test_a_script_ffmpeg_synthesises_named_like_music_is_an_error_not_hours_of_tones(tmp_path, db):
    """ffmpeg also recognises an SBaGen script (binaural beats) by its content and synthesises the
    tones it lists: a 60-byte text ``beats.mp3`` was analysed as 10 s of audio, and one saying
    ``+24:00:00`` as a 24-hour track (results for a file that holds no audio). An error row now."""
    music = tmp_path / "music"
    write_audio(music / "real.wav", tone_signal([440.0], seconds=2.0))
    script = music / "beats.mp3"
    script.write_text("-SE\nalpha: 200+10/50\nNOW alpha\n+0:00:10 alpha\n")
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.failed == 1
    assert track_rows(db)[str(script)] == (
        "error", "not an audio file but a script of tones that ffmpeg synthesises (ffmpeg's sbg format, SBaGen "
                 "binaural beats): not analysed")  # fmt: skip


def _westwood_aud(path: Path) -> Path:
    """A Westwood Studios AUD file (a game's sound: its ``wsaud`` format) of 2 s of IMA ADPCM whose
    samples are random bytes: 12 bytes of header and chunks marked 0xDEAF, all ffmpeg checks."""
    data = bytes(range(256)) * 86
    parts = [data[i : i + 512] for i in range(0, len(data), 512)]
    chunks = b"".join(struct.pack("<HHI", len(part), 4 * len(part), 0xDEAF) + part for part in parts)
    path.write_bytes(struct.pack("<HIIBB", 22050, 4 * len(data), len(chunks), 0, 99) + chunks)
    return path


def _ffmetadata(path: Path) -> Path:
    path.write_text(";FFMETADATA1\ntitle=Song\n")
    return path


@pytest.mark.parametrize("make, demuxer", [(_westwood_aud, "wsaud"), (_ffmetadata, "ffmetadata")],
                         ids=["game sound", "ffmpeg metadata"])  # fmt: skip
def test_a_file_ffmpeg_reads_as_no_audio_file_format_is_an_error_naming_the_format(tmp_path, db, make, demuxer):
    """ffmpeg picks its demuxer (of 355) by the file's content whatever its name; tagger analyses
    what it reads with the demuxer of an audio file format (`AUDIO_DEMUXERS`) only. A ``sound.mp3``
    holding 12 bytes of a game's sound header and 11 KB of anything was analysed as 2 s of audio;
    an ffmpeg metadata text was 'no audio stream in this file'. Each is an error naming the format."""
    music = tmp_path / "music"
    write_audio(music / "real.wav", tone_signal([440.0], seconds=2.0))
    path = make(music / "sound.mp3")
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.failed == 1
    assert track_rows(db)[str(path)] == (
        "error", f"ffmpeg reads it as {demuxer}, which is not an audio file format tagger analyses: not analysed")


def test_every_audio_demuxer_is_one_this_ffmpeg_has():
    """The allowlist names ffmpeg's demuxers as ``ffmpeg -demuxers`` does (a misspelt name would
    refuse every file of its format); those of external libraries (libopenmpt, libgme) where this
    ffmpeg was built with them."""
    from tagger.audio import formats

    known = ffmpeg_demuxers()
    assert {"mp3", "flac", "ogg", "mov", "matroska", "wav"} <= known  # (the list was read)
    assert formats.AUDIO_DEMUXERS - {"libopenmpt", "libgme"} <= known, formats.AUDIO_DEMUXERS - known
    assert set(formats.SOUNDFILE_DEMUXERS.values()) <= formats.AUDIO_DEMUXERS
    assert not (formats.PLAYLIST_FORMATS | set(formats.SYNTH_FORMATS)) & formats.AUDIO_DEMUXERS

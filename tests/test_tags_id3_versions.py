"""ID3 versions: a tag write keeps every frame of other programs as it is in the file.

mutagen's default load converts a tag to ID3v2.4 in memory (TYER becomes TDRC; RVAD, TSIZ, TRDA,
TDAT and TIME are dropped; ID3v2.2 frames it cannot convert are dropped), so a save would write
that conversion into the file. These tests build tags frame by frame, write our fields, and read
the frames back from the file's bytes with a parser of their own.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from tagger import tags
from tagger.errors import TagWriteError

WRITE = dict(instruments=["guitar", "bass"], model_version="ova-test-1")


def _tone(path: Path, fmt: str) -> Path:
    """A 1 s tone without any tag."""
    codec = {"mp3": ["-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0"],
             "wav": ["-c:a", "pcm_s16le", "-fflags", "+bitexact"],
             "aiff": ["-c:a", "pcm_s16be"]}[fmt]  # fmt: skip
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-map_metadata", "-1", *codec, str(path)], check=True)  # fmt: skip
    return path


def _frame(version: int, fid: str, data: bytes) -> bytes:
    if version == 2:
        return fid.encode() + len(data).to_bytes(3, "big") + data
    return fid.encode() + struct.pack(">I", len(data)) + b"\0\0" + data  # v2.3 sizes: plain


def _tag(version: int, frames: list[tuple[str, bytes]], padding: int = 64) -> bytes:
    body = b"".join(_frame(version, fid, data) for fid, data in frames) + b"\0" * padding
    n = len(body)
    return b"ID3" + bytes([version, 0, 0]) + bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127]) + body


def _mp3_with_tag(path: Path, tag: bytes) -> Path:
    audio = _tone(path.with_suffix(".raw.mp3"), "mp3").read_bytes()
    path.write_bytes(tag + audio)
    return path


def _frames(path: Path) -> tuple[int, list[tuple[str, bytes]]]:
    """(ID3v2 major version, [(frame ID, frame data)]) of an MP3's tag, read by hand."""
    data = path.read_bytes()
    assert data[:3] == b"ID3"
    version = data[3]
    n = sum((b & 127) << (7 * (3 - k)) for k, b in enumerate(data[6:10]))
    body, pos, out = data[10 : 10 + n], 0, []
    head, width = (6, 3) if version == 2 else (10, 4)
    while pos + head <= len(body) and body[pos]:
        raw = body[pos + width : pos + 2 * width if version == 2 else pos + 8]
        size = (sum((b & 127) << (7 * (3 - k)) for k, b in enumerate(raw)) if version == 4
                else int.from_bytes(raw, "big"))  # fmt: skip
        out.append((body[pos : pos + width].decode(), body[pos + head : pos + head + size]))
        pos += head + size
    return version, out


def _others(frames: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The frames that are not TXXX, text frames without the terminating NUL mutagen writes."""
    return sorted((fid, data.rstrip(b"\0") if fid[0] == "T" else data) for fid, data in frames if fid != "TXXX")


def _decoded_md5(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


V23_FRAMES = [("TIT2", b"\0Song"), ("TYER", b"\0c.1959"), ("TDAT", b"\x000305"), ("TIME", b"\x001200"),
              ("RVAD", b"\x03\x10" + b"\x01\x00" * 4), ("TSIZ", b"\x0012345"), ("TRDA", b"\0March 12"),
              ("TCON", b"\0(17)")]  # fmt: skip
"""Frames of ID3v2.3 that mutagen's default load renames (TYER, TCON's "(17)") or drops."""


def test_id3v23_frames_stay_as_they_are_through_write_and_removal(tmp_path):
    song = _mp3_with_tag(tmp_path / "v23.mp3", _tag(3, V23_FRAMES))
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    version, frames = _frames(song)
    assert version == 3
    assert _others(frames) == sorted(V23_FRAMES)
    assert [fid for fid, _ in frames].count("TXXX") == 2
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert _decoded_md5(song) == decoded
    tags.remove_instruments(song)
    version, frames = _frames(song)
    assert version == 3 and _others(frames) == sorted(V23_FRAMES) and len(frames) == len(V23_FRAMES)


@pytest.mark.parametrize("fmt", ["wav", "aiff"])
def test_id3v23_chunk_of_wav_and_aiff_keeps_its_frames(tmp_path, fmt):
    import mutagen
    from mutagen.id3 import TDAT, TIT2, TSIZ, TYER

    song = _tone(tmp_path / f"song.{fmt}", fmt)
    audio = mutagen.File(str(song))
    audio.add_tags()
    for frame in (TIT2(encoding=0, text="Song"), TYER(encoding=0, text="c.1959"), TDAT(encoding=0, text="0305"),
                  TSIZ(encoding=0, text="12345")):  # fmt: skip
        audio.tags.add(frame)
    audio.save(v2_version=3)
    cls = type(audio)

    def frames():
        loaded = cls(str(song), translate=False).tags
        return loaded.version[:2], sorted(f.pprint() for f in loaded.values() if f.FrameID != "TXXX")

    before = frames()
    assert before == ((2, 3), ["TDAT=0305", "TIT2=Song", "TSIZ=12345", "TYER=c.1959"])
    tags.write_instruments(song, **WRITE)
    assert frames() == before
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_id3v24_tag_keeps_the_v23_frames_it_carries(tmp_path):
    from mutagen.id3 import ID3, TIT2, TYER

    song = _tone(tmp_path / "v24.mp3", "mp3")
    id3 = ID3()
    id3.add(TIT2(encoding=3, text="Song"))
    id3.add(TYER(encoding=3, text="1959"))  # not in the v2.4 standard, but common
    id3.save(str(song), v2_version=4)
    tags.write_instruments(song, **WRITE)
    version, frames = _frames(song)
    assert version == 4 and sorted(fid for fid, _ in frames) == ["TIT2", "TXXX", "TXXX", "TYER"]


def test_id3v22_tag_becomes_v23_with_every_frame(tmp_path):
    song = _mp3_with_tag(tmp_path / "v22.mp3", _tag(2, [("TT2", b"\0Song"), ("TP1", b"\0Ann Example"),
                                                         ("TYE", b"\x001959")]))  # fmt: skip
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    version, frames = _frames(song)
    assert version == 3
    assert _others(frames) == [("TIT2", b"\0Song"), ("TPE1", b"\0Ann Example"), ("TYER", b"\x001959")]
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert _decoded_md5(song) == decoded


def test_id3v22_frame_mutagen_cannot_convert_leaves_the_file_alone(tmp_path):
    song = _mp3_with_tag(tmp_path / "v22.mp3", _tag(2, [("TT2", b"\0Song"), ("XYZ", b"\0custom")]))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"v22\.mp3: converting its ID3v2\.2 tag to ID3v2\.3 would lose XYZ"):
        tags.write_instruments(song, **WRITE)
    with pytest.raises(TagWriteError, match="would lose XYZ"):
        tags.write_instruments(song, **WRITE, dry_run=True)
    assert song.read_bytes() == original


def test_frame_mutagen_cannot_read_is_not_silently_dropped(tmp_path):
    # a TPE2 whose text encoding byte (5) does not exist: mutagen skips it when it loads the tag
    song = _mp3_with_tag(tmp_path / "junk.mp3", _tag(3, [("TIT2", b"\0Song"), ("TPE2", b"\x05Band")]))
    original = song.read_bytes()
    lost = r"junk\.mp3: its ID3v2\.3 tag has frames that a rewrite would lose \(TPE2\)"
    with pytest.raises(TagWriteError, match=lost):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def _v24_song(path: Path, *frames) -> Path:
    from mutagen.id3 import ID3

    song = _tone(path, "mp3")
    id3 = ID3()
    for frame in frames:
        id3.add(frame)
    id3.save(str(song), v2_version=4)
    return song


def test_id3v23_request_converts_a_v24_date_to_v23_frames(tmp_path):
    from mutagen.id3 import ID3, TDRC, TIT2

    song = _v24_song(tmp_path / "date.mp3", TIT2(encoding=3, text="Song"), TDRC(encoding=3, text="1959-05-03"))
    tags.write_instruments(song, **WRITE, id3v23=True)
    version, frames = _frames(song)
    assert version == 3
    assert sorted(fid for fid, _ in frames) == ["TDAT", "TIT2", "TXXX", "TXXX", "TYER"]  # no v2.4 frame left
    assert str(ID3(str(song))["TDRC"]) == "1959-05-03"  # as a v2.4 reader sees it again
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_id3v23_request_refuses_to_drop_a_v24_only_frame(tmp_path):
    from mutagen.id3 import TIT2, TMOO

    song = _v24_song(tmp_path / "mood.mp3", TIT2(encoding=3, text="Song"), TMOO(encoding=3, text="Calm"))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"mood\.mp3: converting its ID3v2\.4 tag to ID3v2\.3 would lose TMOO"):
        tags.write_instruments(song, **WRITE, id3v23=True)
    assert song.read_bytes() == original
    tags.write_instruments(song, **WRITE)  # without the request the tag stays v2.4, mood and all
    version, frames = _frames(song)
    assert version == 4 and sorted(fid for fid, _ in frames) == ["TIT2", "TMOO", "TXXX", "TXXX"]


def test_a_wav_whose_data_chunk_runs_past_the_end_is_refused_with_the_reason(tmp_path):
    song = _tone(tmp_path / "cut.wav", "wav")
    data = song.read_bytes()
    song.write_bytes(data[: len(data) - 4000])  # the header still claims the whole data chunk
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"cut\.wav: its 'data' chunk claims \d+ bytes but the file ends"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original

"""Valid but unusual files that real libraries hold: a tag write keeps every byte outside tagger's
fields (or refuses the file, saying why), checked from the bytes and with ffmpeg, not with mutagen.

Chained Ogg (a radio rip: one song's streams after another's), an ID3v2.4 tag with a footer, a WAV
whose last chunk has an odd size and no pad byte; and, as cheap regression cases, containers that
were found to be kept whole (multiplexed Ogg, FLAC with CUESHEET/APPLICATION blocks, MP4 chapters,
MP3 with APEv2 + Lyrics3v2 + ID3v1, Broadcast WAV, WAV/AIFF chunk layouts around the ID3 chunk).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tagger import tags
from tagger.errors import TagWriteError
from tagger.containers import syncsafe as _tag_size

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

WRITE = dict(instruments=["guitar", "bass"], model_version="unusual-1")


def _ffmpeg(path: Path, *args: str, sources: tuple[str, ...] = ("sine=frequency=440:duration=1",)) -> Path:
    """Encode the lavfi ``sources`` with ``args``; bit-exact (an Ogg stream's serial number is 0)."""
    inputs = [arg for source in sources for arg in ("-f", "lavfi", "-i", source)]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-map_metadata", "-1", "-fflags", "+bitexact",
                    *args, str(path)], check=True)  # fmt: skip
    return path


def _decoded(path: Path) -> list[str]:
    """The MD5 of every stream's decoded content, in order (ffmpeg complains of a chained stream of one
    serial number, and decodes it)."""
    streams = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                                        capture_output=True, text=True, check=True).stdout)["streams"]  # fmt: skip
    return [subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:{s['index']}", "-f", "md5",
                            "-"], capture_output=True, text=True).stdout for s in streams]  # fmt: skip



def _taglib_shown(path: Path) -> dict:
    """What TagLib shows of the file's tags, but tagger's fields."""
    import taglib

    with taglib.File(str(path)) as f:
        return {k: v for k, v in f.tags.items() if not k.startswith("INSTRUMENTS")}

# -- Ogg ------------------------------------------------------------------------------------------


def _ogg_pages(data: bytes) -> list[tuple[int, int, int]]:
    """(serial, sequence number, offset) of each page."""
    from mutagen.ogg import OggPage

    f, out = io.BytesIO(data), []
    while True:
        try:
            page = OggPage(f)
        except EOFError:
            return out
        out.append((page.serial, page.sequence, page.offset))


def _brimful_song(path: Path, codec: str) -> Path:
    """A one-second Ogg song whose comment header (a cover) fills its pages to the brim: tagger's
    fields take one page more, and mutagen numbers every later page of its serial number on."""
    from mutagen import File
    from mutagen.flac import Picture

    first = _ffmpeg(path, "-c:a", codec)
    audio = File(first)
    cover = Picture()
    cover.type, cover.mime, cover.data = 3, "image/png", bytes(range(256)) * 242
    audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(cover.write()).decode()]
    audio["TITLE"] = ["first song"]
    audio.save(padding=lambda info: 0)
    return first


def _second_song(path: Path, codec: str, *args: str) -> bytes:
    return _ffmpeg(path, "-c:a", codec, "-metadata", "title=second song", *args,
                   sources=("sine=frequency=660:duration=1",)).read_bytes()  # fmt: skip


@pytest.mark.parametrize("ext, codec", [("ogg", "libvorbis"), ("opus", "libopus")])
def test_the_next_chains_of_a_chained_ogg_file_keep_every_byte(tmp_path, ext, codec):
    from mutagen import File

    # mutagen numbered every later page of serial 0 on from the first song, the next song's too.
    first = _brimful_song(tmp_path / f"first.{ext}", codec)
    second = _second_song(tmp_path / f"second.{ext}", codec)
    chained = tmp_path / f"chained.{ext}"
    chained.write_bytes(first.read_bytes() + second)
    assert {serial for serial, _, _ in _ogg_pages(chained.read_bytes())} == {0}
    decoded = _decoded(chained)

    assert tags.write_instruments(chained, **WRITE).written
    data = chained.read_bytes()
    assert data.endswith(second)  # the second song: every page as it was (numbered from 0, its CRCs)
    assert len(_ogg_pages(data[: -len(second)])) == len(_ogg_pages(first.read_bytes())) + 1
    assert tags.read_instruments(chained).instruments == ["bass", "guitar"]
    assert _decoded(chained) == decoded
    assert tags.remove_instruments(chained).written
    assert chained.read_bytes().endswith(second)
    assert File(chained)["TITLE"] == ["first song"]


@pytest.mark.parametrize("serial", ["the same serial number", "another serial number"])
@pytest.mark.parametrize("ext, codec", [("ogg", "libvorbis"), ("opus", "libopus")])
def test_a_chained_ogg_file_whose_first_song_has_no_end_of_stream_page_keeps_the_next_song(tmp_path, ext, codec,
                                                                                          serial):  # fmt: skip
    """A chain whose first song's last page lacks its end-of-stream flag (a cut radio rip, a careless
    joiner): the first chain was taken to run to the end of the file, and mutagen renumbered the next
    song's pages when they had the first's serial number. The next song starts at its
    beginning-of-stream page, after a page that was not one; it is kept byte for byte."""
    from mutagen.ogg import OggPage

    first = _brimful_song(tmp_path / f"first.{ext}", codec).read_bytes()
    last = first.rindex(b"OggS")
    page = OggPage(io.BytesIO(first[last:]))
    assert page.last
    page.last = False
    first = first[:last] + page.write()
    second = _second_song(tmp_path / f"second.{ext}", codec,
                          *([] if serial.startswith("the same") else ["-serial_offset", "77"]))  # fmt: skip
    chained = tmp_path / f"chained.{ext}"
    chained.write_bytes(first + second)
    decoded = _decoded(chained)

    assert tags.write_instruments(chained, **WRITE).written
    data = chained.read_bytes()
    assert data.endswith(second)
    assert len(_ogg_pages(data[: -len(second)])) == len(_ogg_pages(first)) + 1
    assert tags.read_instruments(chained).instruments == ["bass", "guitar"]
    assert _decoded(chained) == decoded
    assert tags.remove_instruments(chained).written
    assert chained.read_bytes().endswith(second)


def test_a_stream_begun_late_in_a_multiplexed_file_is_not_taken_for_the_next_song(tmp_path):
    """A second stream whose beginning-of-stream page comes after the first stream's data pages
    (against the Ogg specification; ffmpeg refuses such a file) while the first stream goes on: not
    taken for the next song of a chain, which would have left the first stream's later pages
    numbered as before while its comment header took a page more. The file is one chain: the tagged
    stream's pages are numbered on without a gap, the other stream's kept byte for byte."""
    from mutagen import File
    from mutagen.flac import Picture
    from mutagen.ogg import OggPage

    mixed = _ffmpeg(tmp_path / "mixed.ogg", "-map", "0:a", "-map", "1:a", "-c:a:0", "libvorbis", "-c:a:1", "libopus",
                    sources=("sine=frequency=440:duration=1", "sine=frequency=880:duration=1"))  # fmt: skip
    audio = File(mixed)
    cover = Picture()
    cover.type, cover.mime, cover.data = 3, "image/png", bytes(range(256)) * 242
    audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(cover.write()).decode()]
    audio.save(padding=lambda info: 0)

    def pages(data: bytes) -> list[tuple[OggPage, bytes]]:
        out = []
        for _serial, _seq, offset in _ogg_pages(data):
            f = io.BytesIO(data)
            f.seek(offset)
            out.append((OggPage(f), data[offset : f.tell()]))
        return out

    before = pages(mixed.read_bytes())
    vorbis = before[0][0].serial
    late = next(i for i, (page, _raw) in enumerate(before) if page.first and page.serial != vorbis)
    moved = before.pop(late)
    before.insert(next(i for i, (page, _raw) in enumerate(before) if page.serial == moved[0].serial), moved)
    assert any(not page.first for page, _raw in before[: before.index(moved)])  # after the Vorbis stream's pages
    mixed.write_bytes(b"".join(raw for _page, raw in before))

    assert tags.write_instruments(mixed, **WRITE).written
    after = pages(mixed.read_bytes())
    numbers = [page.sequence for page, _raw in after if page.serial == vorbis]
    assert numbers == list(range(len(numbers))) and len(numbers) == sum(p.serial == vorbis for p, _ in before) + 1
    assert [raw for page, raw in after if page.serial != vorbis] == [raw for page, raw in before if page.serial != vorbis]
    assert tags.read_instruments(mixed).instruments == ["bass", "guitar"]


def test_a_stream_multiplexed_with_the_tagged_one_keeps_its_pages(tmp_path):
    mixed = _ffmpeg(tmp_path / "mixed.ogg", "-map", "0:a", "-map", "1:a", "-c:a:0", "libopus", "-c:a:1", "libvorbis",
                    sources=("sine=frequency=440:duration=1", "sine=frequency=880:duration=1"))  # fmt: skip
    before = mixed.read_bytes()
    opus_serial = _ogg_pages(before)[0][0]
    decoded = _decoded(mixed)
    assert tags.write_instruments(mixed, **WRITE).written  # (mutagen reads it as the Vorbis file it also is)

    def opus_pages(data):
        from mutagen.ogg import OggPage

        f, out = io.BytesIO(data), []
        for serial, _seq, offset in _ogg_pages(data):
            f.seek(offset)
            OggPage(f)  # reads the page: f now stands at its end
            if serial == opus_serial:
                out.append(data[offset : f.tell()])
        return out

    assert opus_pages(mixed.read_bytes()) == opus_pages(before)
    assert _decoded(mixed) == decoded


def _with_comment_tail(path: Path, codec: str, magic: bytes, tail: bytes) -> Path:
    """A one-second Ogg song whose comment header packet ends with ``tail`` after its comments (and,
    for Vorbis, after the framing byte 1 that ffmpeg writes)."""
    from mutagen.ogg import OggPage

    _ffmpeg(path, "-c:a", codec, "-metadata", "TITLE=made")
    with open(path, "r+b") as f:
        OggPage(f)  # the identification header's page
        old = [OggPage(f)]
        while not (old[-1].complete or len(old[-1].packets) > 1):
            old.append(OggPage(f))
        packets = OggPage.to_packets(old, strict=False)
        assert packets[0].startswith(magic)
        packets[0] += tail
        OggPage.replace(f, old, OggPage._from_packets_try_preserve(packets, old))
    return path


@pytest.mark.parametrize("ext, codec, magic, tail, kept", [
    ("ogg", "libvorbis", b"\x03vorbis", b"\0" * 9, True),
    ("ogg", "libvorbis", b"\x03vorbis", b"tool data", False),
    ("opus", "libopus", b"OpusTags", b"\0" * 9, True),
    ("opus", "libopus", b"OpusTags", b"\x01tool data", True),
    ("opus", "libopus", b"OpusTags", b"\x02tool data", False),
], ids=["vorbis zeros", "vorbis data", "opus zeros", "opus data to keep", "opus data marked padding"])  # fmt: skip
def test_bytes_after_the_ogg_comments_are_kept_or_the_file_left_alone(tmp_path, ext, codec, magic, tail, kept):
    """mutagen writes the comment header packet from the comments it parsed, then zeros: bytes after
    the comments (after Vorbis's framing byte; an Opus tail whose first byte has its lowest bit
    clear) were replaced with zeros without a word. Zeros are padding and are written over; other
    bytes leave the file unchanged, named; an Opus tail marked to be kept is kept."""
    song = _with_comment_tail(tmp_path / f"song.{ext}", codec, magic, tail)
    before = song.read_bytes()
    if not kept:
        with pytest.raises(TagWriteError, match="comment header holds bytes after its comments"):
            tags.write_instruments(song, **WRITE)
        assert song.read_bytes() == before
        return
    decoded = _decoded(song)
    assert tags.write_instruments(song, **WRITE).written
    assert not any(tail) or tail in song.read_bytes()
    assert _decoded(song) == decoded


@pytest.mark.parametrize("ext, codec", [("ogg", "libvorbis"), ("opus", "libopus")])
def test_an_ogg_page_failing_its_crc_that_a_rewrite_would_renumber_leaves_the_file_unchanged_naming_it(tmp_path, ext,
                                                                                                      codec):  # fmt: skip
    """Players skip an Ogg page whose CRC is wrong (damaged). mutagen renumbers the pages after the
    comment header when it takes another number of pages (ffmpeg lays a comment header of 8 kB in one
    page, mutagen in pages of 4 kB), each with a right CRC: players would play the damaged audio. The
    verification left the file unchanged saying 'the audio payload changed', and no more; it now
    names the damaged page. The same file undamaged is tagged."""
    clean = _ffmpeg(tmp_path / f"clean.{ext}", "-c:a", codec, "-metadata", "description=" + "d" * 8000)
    data = bytearray(clean.read_bytes())
    _serial, sequence, offset = _ogg_pages(bytes(data))[-1]
    data[-10] ^= 0xFF  # (in the last page's audio)
    damaged = tmp_path / f"damaged.{ext}"
    damaged.write_bytes(data)

    with pytest.raises(TagWriteError, match=rf"damaged.{ext}: verification failed: the audio payload changed: its Ogg page "
                                            rf"{sequence} \(at byte {offset}\) fails its CRC check \(damaged: players skip it\)"):
        tags.write_instruments(damaged, **WRITE)
    assert damaged.read_bytes() == data
    assert tags.write_instruments(clean, **WRITE).written


def test_an_ogg_header_page_failing_its_crc_leaves_the_file_unchanged_naming_the_header(tmp_path):
    """A damaged page holding the comment header and Vorbis's setup header beside it: every rewrite
    lays those packets in new pages with right CRCs, whether or not the comment header keeps its
    number of pages (here it does), and players would read the damaged setup header. The reason
    said that the pages after the comment header were renumbered and that players would play the
    page's damaged audio; it now says the page holds the headers."""
    clean = _ffmpeg(tmp_path / "clean.ogg", "-c:a", "libvorbis")
    data = bytearray(clean.read_bytes())
    pages = _ogg_pages(bytes(data))
    data[pages[2][2] - 20] ^= 0xFF  # (the setup header's last bytes, on the comment header's page)
    damaged = tmp_path / "damaged.ogg"
    damaged.write_bytes(data)

    with pytest.raises(TagWriteError, match=r"payload changed: its Ogg page 1 \(at byte 58\) fails its CRC check "
                                            r"\(damaged: players skip it, and the Vorbis headers on it\), and every "
                                            r"rewrite lays the comment header .* would read its damaged codec header"):
        tags.write_instruments(damaged, **WRITE)
    assert damaged.read_bytes() == data


# -- MP3 ------------------------------------------------------------------------------------------


def _syncsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))


def _id3v24(*frames: tuple[bytes, bytes], footer: bool = False) -> bytes:
    """An ID3v2.4 tag of the (frame id, content) ``frames``, with a footer when asked."""
    body = b"".join(fid + _syncsafe(len(data)) + b"\0\0" + data for fid, data in frames)
    flags = b"\x10" if footer else b"\0"
    return b"ID3\x04\x00" + flags + _syncsafe(len(body)) + body + (b"3DI\x04\x00" + flags + _syncsafe(len(body)) if footer else b"")


def _mp3(tmp_path: Path) -> bytes:
    """A 1 s MP3 (with its Xing/Info frame) without any tag."""
    return _ffmpeg(tmp_path / "plain.mp3", "-c:a", "libmp3lame", "-b:a", "64k", "-id3v2_version", "0").read_bytes()


def _title(path: Path) -> str | None:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=title", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out).get("format", {}).get("tags", {}).get("title")


def test_an_id3v24_extended_header_is_dropped_and_ffmpeg_reads_the_same_tags_and_audio(tmp_path):
    """mutagen writes no extended header: a tag's CRC, restrictions and update flag describe the old
    tag (a CRC kept would no longer match the frames). Checked to lose nothing a reader shows: the
    title, the audio bytes and the decoded audio are the same after the write."""
    audio = _mp3(tmp_path)
    tag = bytearray(_id3v24((b"TIT2", b"\x03Extended song")))
    extended = _syncsafe(8) + b"\x01\x10\x01\x05"  # its size, one flag byte: restrictions (1 byte of data)
    tag[5] |= 0x40
    tag[6:10] = _syncsafe(_tag_size(tag[6:10]) + len(extended))
    song = tmp_path / "extended.mp3"
    song.write_bytes(bytes(tag[:10]) + extended + bytes(tag[10:]) + audio)
    assert _title(song) == "Extended song"
    decoded = _decoded(song)

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data[5] & 0x40 == 0 and data.endswith(audio)
    assert _title(song) == "Extended song" and _decoded(song) == decoded
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_an_id3v24_tag_with_a_footer_is_tagged_and_its_footer_not_left_in_front_of_the_audio(tmp_path):
    # mutagen rewrote the tag and left the old footer between it and the audio: the audio check
    # refused the file ("the audio payload changed"), a valid tag that could never be tagged
    audio = _mp3(tmp_path)
    song = tmp_path / "footer.mp3"
    song.write_bytes(_id3v24((b"TIT2", b"\x03Footer song"), footer=True) + audio)

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.endswith(audio) and b"3DI" not in data[: -len(audio)]  # every audio byte, no stray footer
    assert data[10 + _tag_size(data[6:10]) :] == audio  # the tag ends where the audio starts
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert _title(song) == "Footer song"
    assert tags.remove_instruments(song).written
    assert song.read_bytes().endswith(audio) and _title(song) == "Footer song"


@pytest.mark.parametrize("case", ["v2.3 compressed frame", "v2.4 compressed frame", "v2.3 unsynchronised tag"])
def test_compressed_frames_and_unsynchronisation_are_written_plain_with_the_same_content(tmp_path, case):
    """A README promise (*What a rewrite does not keep*): mutagen writes no frame compressed and no
    tag unsynchronised; the frames hold what they held (mutagen reads them the same), and readers that
    cannot decompress a frame (TagLib; ffmpeg in an ID3v2.3 tag) show it after the write."""
    import zlib

    from mutagen.id3 import ID3

    text = b"\x00Compressed title" if case.startswith("v2.3") else b"\x03Compressed title"
    if case == "v2.3 compressed frame":  # the flag 0x0080 and the size before compression
        frame = b"TIT2" + struct.pack(">IH", 4 + len(zlib.compress(text)), 0x0080) + struct.pack(">I", len(text))
        tag = b"ID3\x03\x00\x00" + _syncsafe(len(frame) + len(zlib.compress(text)))
        tag += frame + zlib.compress(text)
    elif case == "v2.4 compressed frame":  # compression (0x0008) needs the data length indicator (0x0001)
        body = _syncsafe(len(text)) + zlib.compress(text)
        frame = b"TIT2" + _syncsafe(len(body)) + struct.pack(">H", 0x0009) + body
        tag = b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame
    else:  # an 0xFF byte followed by 0xE0 in a frame: a 0 byte inserted after it
        private = b"owner\0\xff\xe0\xff\xfb"
        frame = b"TIT2" + struct.pack(">IH", len(text), 0) + text + b"PRIV" + struct.pack(">IH", len(private), 0) + private
        body = frame.replace(b"\xff", b"\xff\x00") + bytes(8)
        tag = b"ID3\x03\x00\x80" + _syncsafe(len(body)) + body
    song = tmp_path / "song.mp3"
    song.write_bytes(tag + _mp3(tmp_path))
    frames = sorted(repr(frame) for frame in ID3(song, translate=False).values())
    assert tags.write_instruments(song, **WRITE).written
    written = ID3(song, translate=False)
    assert sorted(repr(f) for f in written.values() if "INSTRUMENTS" not in repr(f)) == frames
    assert not song.read_bytes()[5] & 0x80 and _title(song) == "Compressed title"


# -- WAV, AIFF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext, codec, little", [("wav", "pcm_u8", True), ("aiff", "pcm_s8", False)])
@pytest.mark.parametrize("counted", [False, True], ids=["size without it", "size counting it"])
@pytest.mark.parametrize("v1", [False, True], ids=["no tag after it", "an ID3v1 tag after it"])
def test_a_last_chunk_of_odd_size_without_its_pad_byte_gets_it_and_the_tag_chunk_after(tmp_path, ext, codec, little,
                                                                                        counted, v1):  # fmt: skip
    # An odd-sized last chunk (8-bit mono, an odd number of samples) written without the pad byte
    # that should follow it: mutagen added the ID3 chunk at the odd offset, where no reader looks
    # for a chunk, and the write failed its check ("fields read back as {}"), so it was never tagged.
    # Some writers count the pad byte they leave out in the RIFF/FORM size (was: that failure still).
    # An ID3v1 tag appended after the chunks (some tools do) stays the file's last 128 bytes (was:
    # mutagen took its first byte for the pad byte and added its ID3 chunk after it, inside the tag).
    made = _ffmpeg(tmp_path / f"made.{ext}", "-c:a", codec, "-ac", "1", "-ar", "8001").read_bytes()
    fmt = "<I" if little else ">I"
    assert made[-1:] == b"\0" and struct.unpack(fmt, made[4:8])[0] == len(made) - 8  # ffmpeg's pad byte
    song = tmp_path / f"song.{ext}"
    tail = ID3V1 if v1 else b""
    original = made[:4] + struct.pack(fmt, len(made) - (8 if counted else 9)) + made[8:-1]  # left out, as many do
    song.write_bytes(original + tail)
    decoded = _decoded(song)

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.endswith(tail)
    data = data[: len(data) - len(tail)]
    assert data[8 : len(original)] == original[8:] and data[len(original)] == 0  # the pad byte, then the tag
    assert data[len(original) + 1 : len(original) + 5].upper() == b"ID3 "
    assert struct.unpack(fmt, data[4:8])[0] == len(data) - 8
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert _decoded(song) == decoded
    assert tags.remove_instruments(song).written
    assert song.read_bytes()[8:] == original[8:] + b"\0" + tail


@pytest.mark.parametrize("ext, codec, little", [("wav", "pcm_u8", True), ("aiff", "pcm_s8", False)])
def test_an_odd_sized_audio_chunk_without_its_pad_byte_before_a_text_chunk_gets_it(tmp_path, ext, codec, little):
    """8-bit mono of an odd number of samples written without the pad byte, a text chunk (LIST/INFO,
    NAME) right after it, as some writers leave it: libsndfile and ffmpeg decode it, but mutagen (and
    tagger's chunk walk, and TagLib) read the text chunk's header a byte late, and the write was
    refused naming a chunk that is not there ("its 'IST\\x0e' chunk claims ... cut short?"). The copy
    gets the pad byte (the text chunk moves by one, as it was), then the ID3 chunk; a WAV's INFO title
    is copied into it, ffmpeg shows it, and the audio decodes the same."""
    made = _iff_chunks(_ffmpeg(tmp_path / f"made.{ext}", "-c:a", codec, "-ac", "1", "-ar", "8001").read_bytes(), little)
    fmt_id, audio_id = (b"fmt ", b"data") if little else (b"COMM", b"SSND")
    audio = made[audio_id]
    assert audio[-1:] == b"\0" and len(audio) % 2 == 0  # (ffmpeg's pad byte, left out below)
    text = (_iff_chunk(b"LIST", b"INFO" + _iff_chunk(b"INAM", b"Song\0", True), True) if little else
            _iff_chunk(b"NAME", b"A name", False))  # fmt: skip
    body = (b"WAVE" if little else b"AIFF") + made[fmt_id] + audio[:-1] + text
    size = struct.pack("<I" if little else ">I", len(body))
    original = (b"RIFF" if little else b"FORM") + size + body
    song = tmp_path / f"song.{ext}"
    song.write_bytes(original)
    decoded, title = _decoded(song), _title(song)
    assert decoded[0] and title is None  # (ffmpeg reads no text chunk a byte late either)

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    repaired = original[8:].replace(audio[:-1], audio)  # the pad byte, every chunk as it was
    assert data[8 : 8 + len(repaired)] == repaired and data[8 + len(repaired) :][:4].upper() == b"ID3 "
    assert struct.unpack("<I" if little else ">I", data[4:8])[0] == len(data) - 8
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded(song) == decoded
    assert _title(song) == ("Song" if little else "A name")
    assert tags.remove_instruments(song).written
    assert _decoded(song) == decoded and tags.read_instruments(song).instruments == []


def test_an_id3_chunk_after_an_odd_sized_chunk_without_its_pad_byte_is_refused(tmp_path):
    """mutagen does not find an ID3 chunk after an odd-sized chunk that lacks its pad byte (TagLib
    does): a write would add a second one, the first one's frames not in it. Refused, named."""
    made = _iff_chunks(_ffmpeg(tmp_path / "made.wav", "-c:a", "pcm_u8", "-ac", "1", "-ar", "8001").read_bytes(), True)
    body = b"WAVE" + made[b"fmt "] + made[b"data"][:-1] + _id3_chunk_bytes(b"ID3 ", b"Song", True)
    song = tmp_path / "song.wav"
    original = b"RIFF" + struct.pack("<I", len(body)) + body
    song.write_bytes(original)
    with pytest.raises(TagWriteError, match="its ID3 chunk follows the 'data' chunk of an odd size .8001 bytes. "
                                                 "without its pad byte"):  # fmt: skip
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_a_pad_byte_that_is_not_zero_before_an_audio_chunk_cut_short_is_a_pad_byte(tmp_path):
    """A printable pad byte ('x') after an odd text chunk, then a data chunk that claims more bytes than
    the file holds (a recording cut short): no chunk fits after the pad byte, none at it either, so it
    is a pad byte, and the data chunk is the one named (the walk must not take 'xdat' for a chunk)."""
    made = _iff_chunks(_ffmpeg(tmp_path / "made.wav", "-c:a", "pcm_s16le", "-ac", "1", "-ar", "8000").read_bytes(), True)
    text = _iff_chunk(b"LIST", b"INFO" + _iff_chunk(b"INAM", b"Song", True) + b"x", True, pad=b"x")
    body = b"WAVE" + made[b"fmt "] + text + made[b"data"][:-4000]
    song = tmp_path / "song.wav"
    original = b"RIFF" + struct.pack("<I", len(body)) + body
    song.write_bytes(original)
    assert tags.audio_digest(song) is not None
    with pytest.raises(TagWriteError, match="its 'data' chunk claims 16000 bytes but the file ends 12000 bytes into it"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("ext, placeholder, named", [
    ("wav", 0, "its 'data' chunk declares 0 bytes, a streaming writer's placeholder never filled in"),
    ("aiff", 0, "its 'SSND' chunk declares 0 bytes, a streaming writer's placeholder never filled in"),
    ("wav", 0xFFFFFFFF, "its 'data' chunk claims 4294967295 bytes but the file ends 16000 bytes into it (a "
                        "streaming writer's placeholder)"),
], ids=["wav 0", "aiff 0", "wav 0xFFFFFFFF"])  # fmt: skip
def test_an_audio_chunk_size_left_as_a_streaming_placeholder_is_refused_naming_it(tmp_path, ext, placeholder, named):
    """ffmpeg decodes such a WAV, libsndfile such an AIFF, to the end of the file: a tag chunk added
    after the audio would be decoded as audio. A size of 0 was refused naming a chunk read from the
    samples ("its '\\x80\\xa1..' chunk")."""
    little = ext == "wav"
    made = _iff_chunks(_ffmpeg(tmp_path / f"made.{ext}", "-c:a", "pcm_s16le" if little else "pcm_s16be", "-ac", "1",
                               "-ar", "8000").read_bytes(), little)  # fmt: skip
    fmt_id, audio_id, fmt = (b"fmt ", b"data", "<I") if little else (b"COMM", b"SSND", ">I")
    audio = audio_id + struct.pack(fmt, placeholder) + made[audio_id][8:]
    body = (b"WAVE" if little else b"AIFF") + made[fmt_id] + audio
    song = tmp_path / f"song.{ext}"
    original = (b"RIFF" if little else b"FORM") + struct.pack(fmt, len(body)) + body
    song.write_bytes(original)
    with pytest.raises(TagWriteError, match=re.escape(named)):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def _iff_chunks(data: bytes, little: bool) -> dict[bytes, bytes]:
    """Each top-level chunk of a RIFF/FORM file (id -> its header, data and pad byte), the last of an id."""
    fmt, pos, out = "<4sI" if little else ">4sI", 12, {}
    while pos + 8 <= len(data):
        cid, length = struct.unpack_from(fmt, data, pos)
        out[cid] = data[pos : pos + 8 + length + (length & 1)]
        pos += 8 + length + (length & 1)
    return out


def _iff_chunk(cid: bytes, content: bytes, little: bool, *, pad: bytes = b"\0") -> bytes:
    return cid + struct.pack("<I" if little else ">I", len(content)) + content + (pad if len(content) & 1 else b"")


def _id3_chunk_bytes(cid: bytes, title: bytes, little: bool) -> bytes:
    return _iff_chunk(cid, _id3v24((b"TIT2", b"\x03" + title)), little)


IFF_LAYOUTS = {
    # case: the chunks after the format chunk, by name (ID3: the ID3 chunk tagger writes into), and
    # the bytes after the RIFF/FORM chunk
    "an ID3 chunk in the middle, an odd chunk padded with a byte that is not zero, text after it": (
        ("odd", "ID3", "text", "audio"), b""),
    "two ID3 chunks": (("audio", "ID3", "text", "second ID3"), b""),
    "bytes after the RIFF/FORM chunk": (("ID3", "audio"), b"trailing bytes, not a chunk\0"),
    "no ID3 chunk, bytes after the RIFF/FORM chunk": (("odd", "audio"), b"junk"),
    "a RIFF/FORM size larger than the file": (("ID3", "audio", "text"), None),
}


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_a_riff_or_form_size_of_0_is_refused_naming_it(tmp_path, ext):
    """A streaming writer that never went back to fill in the RIFF/FORM size (0) leaves a file that
    libsndfile and ffmpeg read, and mutagen reads no chunk of: the refusal said mutagen's words,
    "Container chunk data size < 4"."""
    little = ext == "wav"
    song = _ffmpeg(tmp_path / f"song.{ext}", "-c:a", "pcm_s16le" if little else "pcm_s16be", "-ac", "1", "-ar", "8000")
    data = bytearray(song.read_bytes())
    data[4:8] = bytes(4)
    song.write_bytes(data)
    form = "RIFF" if little else "FORM"
    with pytest.raises(TagWriteError, match=re.escape(f"its {form} size is 0 (a streaming writer's placeholder")):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == data


RIFF_ENDS = {
    # case: the RIFF/FORM size (None: the file's), the chunks after the audio, and what the refusal names
    "an ID3 chunk after the RIFF/FORM chunk": (None, "ID3", "its ID3 chunk lies after the end its {form} size"),
    "a RIFF/FORM size ending inside the audio": (100, "", "its {form} size (100 bytes) ends inside its {audio!r}"),
    "a RIFF/FORM size left as a placeholder": (0xFFFFFFFF, "", "its {form} size is 0xFFFFFFFF, a streaming writer's"),
}


@pytest.mark.parametrize("ext, codec, little", [("wav", "pcm_s16le", True), ("aiff", "pcm_s16be", False)])
@pytest.mark.parametrize("case", sorted(RIFF_ENDS))
def test_a_wav_or_aiff_whose_riff_size_mutagen_cannot_add_a_tag_chunk_at_is_refused(tmp_path, ext, codec, little, case):
    """mutagen reads the chunks up to the end the RIFF/FORM size gives and adds its ID3 chunk there.
    An ID3 chunk after that end (a tool that appended it and left the size), which TagLib and ffmpeg
    read, was not seen: the write added a second one, and TagLib showed tagger's fields alone, the
    title gone. A size ending inside the audio chunk made mutagen add the tag chunk inside it
    ("verification failed: fields read back as {}"), and a size of 0xFFFFFFFF could not grow ("tag
    write failed (error: 'I' format requires ...)"). Each is refused before the file is touched, named."""
    made = _iff_chunks(_ffmpeg(tmp_path / f"made.{ext}", "-c:a", codec, "-ac", "1", "-ar", "8000").read_bytes(), little)
    fmt_id, audio_id, fmt = (b"fmt ", b"data", "<I") if little else (b"COMM", b"SSND", ">I")
    declared, after, named = RIFF_ENDS[case]
    body = (b"WAVE" if little else b"AIFF") + made[fmt_id] + made[audio_id]
    outside = _id3_chunk_bytes(b"ID3 ", b"Outside", little) if after else b""
    original = (b"RIFF" if little else b"FORM") + struct.pack(fmt, declared or len(body)) + body + outside
    song = tmp_path / f"song.{ext}"
    song.write_bytes(original)
    if after:
        taglib = pytest.importorskip("taglib")
        with taglib.File(str(song)) as f:
            assert f.tags["TITLE"] == ["Outside"]  # (TagLib reads it)
    message = named.format(form="RIFF" if little else "FORM", audio=audio_id.decode())
    with pytest.raises(TagWriteError, match=re.escape(message)):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("ext, codec, little", [("wav", "pcm_s16le", True), ("aiff", "pcm_s16be", False)])
@pytest.mark.parametrize("case", sorted(IFF_LAYOUTS))
def test_every_byte_of_a_wav_or_aiff_outside_its_id3_chunk_is_kept(tmp_path, ext, codec, little, case):
    """mutagen resizes the (first) ID3 chunk where it lies, or adds one after the RIFF/FORM chunk's
    last, and grows the RIFF/FORM size by what it added: every other byte is kept (chunk order, an
    odd chunk's pad byte that is not zero, text chunks after the ID3 one, a second ID3 chunk, bytes
    after the RIFF/FORM chunk, a RIFF/FORM size that is not the file's), and ffmpeg decodes the same
    audio. Checked safe by reading mutagen; these tests keep it so."""
    made = _iff_chunks(_ffmpeg(tmp_path / f"made.{ext}", "-c:a", codec, "-ac", "1", "-ar", "8000").read_bytes(), little)
    fmt_id, audio_id, text_id = (b"fmt ", b"data", b"LIST") if little else (b"COMM", b"SSND", b"NAME")
    text = b"INFOINAM" + struct.pack("<I", 6) + b"Title\0" if little else b"A name"
    parts = {"odd": _iff_chunk(b"junk", b"odd", little, pad=b"\xaa"), "ID3": _id3_chunk_bytes(b"ID3 ", b"first", little),
             "text": _iff_chunk(text_id, text, little), "audio": made[audio_id],
             "second ID3": _id3_chunk_bytes(b"id3 " if little else b"ID3 ", b"second", little)}  # fmt: skip
    names, after = IFF_LAYOUTS[case]
    body = (b"WAVE" if little else b"AIFF") + made[fmt_id] + b"".join(parts[name] for name in names)
    size = len(body) + (1000 if after is None else 0)
    original = (b"RIFF" if little else b"FORM") + struct.pack("<I" if little else ">I", size) + body + (after or b"")
    song = tmp_path / f"song.{ext}"
    song.write_bytes(original)
    decoded, title = _decoded(song), _title(song)

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    if "ID3" in names:  # resized in place
        at = original.index(parts["ID3"])
        before, rest = original[:at], original[at + len(parts["ID3"]) :]
    else:  # added after the RIFF/FORM chunk's last chunk
        before, rest = original[: 8 + size], original[8 + size :]
    grown = len(data) - len(original)
    assert data[8 : len(before)] == before[8:] and data[len(data) - len(rest) :] == rest
    assert struct.unpack("<I" if little else ">I", data[4:8])[0] == size + grown
    new_chunk = data[len(before) : len(data) - len(rest)]
    assert new_chunk[:4].upper() == b"ID3 " and b"INSTRUMENTS" in new_chunk
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded(song) == decoded
    assert _title(song) == title  # (ffmpeg shows the title it read last: a text chunk's, the second ID3 chunk's)


ID3V1 = (b"TAG" + b"V1 title".ljust(30, b"\0") + b"V1 artist".ljust(30, b"\0") + b"V1 album".ljust(30, b"\0") + b"1999"
         + b"V1 comment".ljust(28, b"\0") + b"\0\x05\x11")  # fmt: skip
"""An ID3v1.1 tag (title, artist, album, year, comment, track 5, genre 17)."""


@pytest.mark.parametrize("ext, codec, little", [("wav", "pcm_s16le", True), ("aiff", "pcm_s16be", False)])
@pytest.mark.parametrize("with_chunk", [False, True], ids=["no ID3 chunk", "an ID3 chunk"])
def test_an_id3v1_tag_after_a_wav_or_aiff_stays_there_and_out_of_the_id3_chunk(tmp_path, ext, codec, little,
                                                                                 with_chunk):  # fmt: skip
    """Some tools append a 128-byte ID3v1 tag after a WAV's or an AIFF's RIFF/FORM chunk. No reader
    shows it (TagLib, ffmpeg; mutagen not where the file has no ID3 chunk); mutagen folds it into the
    ID3 chunk's tag where there is one. A file without an ID3 chunk was refused with "verification
    failed: other tags changed" (the copy had one, and mutagen showed the ID3v1 fields), and one
    with an ID3 chunk got the ID3v1 fields written into it, where TagLib then showed them. The ID3
    chunk is loaded alone now: tagger's fields are written, the ID3v1 bytes stay at the end, what
    TagLib shows is the same but for tagger's fields, and an untag gives back the file as it was (where
    it added the ID3 chunk; mutagen rewrites one that was there)."""
    pytest.importorskip("taglib")
    made = _iff_chunks(_ffmpeg(tmp_path / f"made.{ext}", "-c:a", codec, "-ac", "1", "-ar", "8000").read_bytes(), little)
    fmt_id, audio_id = (b"fmt ", b"data") if little else (b"COMM", b"SSND")
    chunk = _id3_chunk_bytes(b"ID3 ", b"Chunk title", little) if with_chunk else b""
    body = (b"WAVE" if little else b"AIFF") + made[fmt_id] + made[audio_id] + chunk
    original = (b"RIFF" if little else b"FORM") + struct.pack("<I" if little else ">I", len(body)) + body + ID3V1
    song = tmp_path / f"song.{ext}"
    song.write_bytes(original)

    before, decoded = _taglib_shown(song), _decoded(song)
    assert before == ({"TITLE": ["Chunk title"]} if with_chunk else {})
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    kept = 12 + len(made[fmt_id]) + len(made[audio_id])  # (the ID3 chunk is resized where it is, or added there)
    assert data[8:kept] == original[8:kept] and data.endswith(ID3V1) and data[kept : kept + 4].upper() == b"ID3 "
    assert b"INSTRUMENTS" in data[kept:-128] and b"V1 title" not in data[:-128]
    assert _taglib_shown(song) == before and _decoded(song) == decoded
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == original if not with_chunk else song.read_bytes().endswith(ID3V1) and _taglib_shown(song) == before


@pytest.mark.parametrize("ext, module, name", [("wav", "wave", "WAVE"), ("aiff", "aiff", "AIFF")])
def test_a_wav_or_aiff_is_loaded_once_to_be_tagged(tmp_path, monkeypatch, ext, module, name):
    """Telling a file's type with mutagen's guess loads its tags (a cover of 20 MB included), which
    were then let go and loaded again as they are in the file: a WAV or AIFF file is told from its
    first 12 bytes, and the original is loaded once per write (its copy once to write, once to check)."""
    import importlib

    import numpy as np
    from conftest import write_audio

    cls = getattr(importlib.import_module(f"mutagen.{module}"), name)
    song = write_audio(tmp_path / f"song.{ext}", np.zeros(1600, dtype="float32"))
    loaded, load = [], cls.load

    def counted(self, filething, *args, **kwargs):
        loaded.append(os.path.realpath(filething))
        return load(self, filething, *args, **kwargs)

    monkeypatch.setattr(cls, "load", counted)
    assert tags.write_instruments(song, **WRITE).written
    assert loaded.count(os.path.realpath(song)) == 1 and len(loaded) == 3
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


# -- kept whole already: cheap regression cases -----------------------------------------------------


def _broadcast_wav(tmp_path: Path) -> bytes:
    """A broadcast WAV as recorders and DAWs write it: ``bext`` (description, originator, date, time
    reference, coding history) and ``JUNK`` before the audio, ``cue ``, ``LIST/adtl`` (a marker's
    label) and ``smpl`` (a loop) after it."""
    made = _iff_chunks(_ffmpeg(tmp_path / "made.wav", "-c:a", "pcm_s16le", "-ac", "1", "-ar", "8000").read_bytes(), True)
    bext = (b"A take".ljust(256, b"\0") + b"Recorder".ljust(32, b"\0") + b"ref".ljust(32, b"\0") + b"2026-12-06"
            + b"12:00:00" + struct.pack("<QH", 48000 * 3600, 1) + bytes(64 + 190) + b"A=PCM,F=8000,W=16,M=mono\r\n")
    cue = struct.pack("<I", 1) + struct.pack("<II4sIII", 1, 0, b"data", 0, 0, 4000)
    adtl = b"adtl" + _iff_chunk(b"labl", struct.pack("<I", 1) + b"Marker one\0", True)
    smpl = struct.pack("<9I", 0, 0, 125000, 60, 0, 0, 0, 1, 0) + struct.pack("<6I", 0, 0, 0, 7999, 0, 0)
    body = (b"WAVE" + _iff_chunk(b"bext", bext, True) + _iff_chunk(b"JUNK", bytes(28), True) + made[b"fmt "]
            + made[b"data"] + _iff_chunk(b"cue ", cue, True) + _iff_chunk(b"LIST", adtl, True)
            + _iff_chunk(b"smpl", smpl, True))  # fmt: skip
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("kind", ["broadcast wav", "aiff-c sowt"])
def test_broadcast_wav_chunks_and_an_aiff_c_keep_every_chunk_through_tag_and_untag(tmp_path, kind):
    """Every chunk but the ID3 one is kept byte for byte in its place (the ID3 chunk is added after the
    last), the audio digest and the decoded audio are the same, ffmpeg still reads the ``bext``
    fields, and `untag` gives back the file as it was."""
    if kind == "broadcast wav":
        song = tmp_path / "take.wav"
        song.write_bytes(_broadcast_wav(tmp_path))
    else:  # (ffmpeg writes little-endian PCM in an AIFF-C file, compression type sowt)
        song = _ffmpeg(tmp_path / "take.aifc", "-c:a", "pcm_s16le", "-ac", "1", "-ar", "8000")
        assert song.read_bytes()[8:12] == b"AIFC" and b"sowt" in song.read_bytes()[:100]
    def shown(path: Path) -> dict:  # (what ffprobe shows of the file's tags, but tagger's fields)
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(path)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        found = json.loads(out).get("format", {}).get("tags", {})
        return {k: v for k, v in found.items() if not k.upper().startswith("INSTRUMENTS")}

    original = song.read_bytes()
    decoded, digest, before = _decoded(song), tags.audio_digest(song), shown(song)
    assert kind != "broadcast wav" or before["coding_history"] == "A=PCM,F=8000,W=16,M=mono\r\n"
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data[8 : len(original)] == original[8:] and data[len(original) : len(original) + 4].upper() == b"ID3 "
    assert _decoded(song) == decoded and tags.audio_digest(song) == digest and shown(song) == before
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == original


def test_an_mp3_with_apev2_lyrics3v2_and_id3v1_after_its_audio_keeps_them_byte_for_byte(tmp_path):
    from mutagen.apev2 import APEv2

    ape_file = tmp_path / "ape"
    ape_file.write_bytes(b"")
    ape = APEv2()
    ape["Replaygain_track_gain"] = "-3.00 dB"
    ape.save(str(ape_file))
    fields = b"IND00003110" + b"LYR00011hello world"
    lyrics3 = b"LYRICSBEGIN" + fields + b"%06dLYRICS200" % (11 + len(fields))
    id3v1 = b"TAG" + b"v1 title".ljust(30, b"\0") + b"\0" * 94 + b"\x05"
    after = _mp3(tmp_path) + ape_file.read_bytes() + lyrics3 + id3v1
    song = tmp_path / "song.mp3"
    song.write_bytes(_id3v24((b"TIT2", b"\x03v2 title")) + after)
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data[10 + _tag_size(data[6:10]) :] == after
    assert _title(song) == "v2 title"


def test_flac_application_and_reserved_blocks_and_an_id3v2_tag_in_front_are_kept(tmp_path):
    # (Vorbis comments of its own: without them the tag in front is refused, test below)
    made = _ffmpeg(tmp_path / "made.flac", "-c:a", "flac", "-metadata", "TITLE=made").read_bytes()
    assert made[:4] == b"fLaC" and made[4] == 0  # STREAMINFO, not last
    streaminfo = made[4 : 8 + 34]
    rest = made[8 + 34 :]
    application = b"\x02" + (25).to_bytes(3, "big") + b"ATCH" + b"application's own data\0"[:21]
    reserved = b"\x09" + (8).to_bytes(3, "big") + b"reserved"
    front = _id3v24((b"TIT2", b"\x03in front"))
    song = tmp_path / "song.flac"
    song.write_bytes(front + b"fLaC" + streaminfo + application + reserved + rest)
    frames = rest[-8000:]  # (the end of the audio frames)
    decoded = _decoded(song)
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.startswith(front + b"fLaC" + streaminfo + application + reserved) and data.endswith(frames)
    assert _decoded(song) == decoded


def _cuesheet(*, reserved: bytes = b"\0" * 258, after: bytes = b"") -> bytes:
    """A CUESHEET block's content: one track of one index at sample 0 and the lead-out track (170)
    at sample 44100; ``reserved``: the header's 258 reserved bytes; ``after``: bytes past its end."""
    head = struct.pack(">128sQB", b"1234567890123", 88200, 0x80) + reserved + bytes([2])
    track = struct.pack(">QB12sB13xB", 0, 1, b"USABC1234567", 0, 1) + struct.pack(">QB3x", 0, 1)
    lead_out = struct.pack(">QB12sB13xB", 44100, 170, b"\0" * 12, 0, 0)
    return head + track + lead_out + after


def _seektable(*, after: bytes = b"") -> bytes:
    """A SEEKTABLE block's content: a seek point at sample 0 and a placeholder point."""
    return struct.pack(">QQH", 0, 0, 4608) + struct.pack(">QQH", 2**64 - 1, 0, 0) + after


def _flac_with_blocks(tmp_path: Path, *blocks: tuple[int, bytes]) -> Path:
    """A 1 s FLAC with its own Vorbis comments and the (type, content) ``blocks`` after STREAMINFO."""
    made = _ffmpeg(tmp_path / "made.flac", "-c:a", "flac", "-metadata", "TITLE=made").read_bytes()
    assert made[:4] == b"fLaC" and made[4] == 0  # STREAMINFO, not last
    song = tmp_path / "song.flac"
    extra = b"".join(bytes([code]) + len(data).to_bytes(3, "big") + data for code, data in blocks)
    song.write_bytes(made[: 8 + 34] + extra + made[8 + 34 :])
    return song


def test_flac_cuesheet_and_seektable_blocks_are_kept_byte_for_byte(tmp_path):
    """A README promise (*Unusual containers kept whole*) that no test checked: CUESHEET and
    SEEKTABLE blocks come out of a tag write as they went in."""
    blocks = (3, _seektable()), (5, _cuesheet())
    song = _flac_with_blocks(tmp_path, *blocks)
    start = song.read_bytes()[: 8 + 34 + sum(4 + len(data) for _, data in blocks)]
    decoded = _decoded(song)
    assert tags.write_instruments(song, **WRITE).written
    assert song.read_bytes().startswith(start) and _decoded(song) == decoded


@pytest.mark.parametrize("block, named", [
    ((5, _cuesheet(reserved=b"\0" * 200 + b"cue tool" + b"\0" * 50)), "CUESHEET"),
    ((5, _cuesheet(after=b"\x01\x02\x03")), "CUESHEET"),
    ((3, _seektable(after=b"\x07" * 5)), "SEEKTABLE"),
], ids=["cuesheet reserved bytes", "cuesheet bytes past its end", "seektable partial point"])  # fmt: skip
def test_a_flac_block_that_mutagen_would_write_back_otherwise_is_left_alone(tmp_path, block, named):
    """mutagen writes a CUESHEET or SEEKTABLE block back from the fields it parsed: bytes in its
    reserved fields or past its last track or seek point were dropped without a word (the file
    tagged, `flac -t` passing, the block no longer as it was). Such a file is left unchanged,
    the block named."""
    song = _flac_with_blocks(tmp_path, block)
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match=rf"its FLAC metadata has blocks that a rewrite would change \({named}"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(tags.TEMP_SUFFIX)]


def test_vorbis_comments_that_tagger_s_fields_would_take_past_16_mib_are_refused_saying_so(tmp_path):
    """A FLAC metadata block holds at most 2^24 - 1 bytes. A VORBIS_COMMENT block within a few bytes of
    that (lyrics, or a cover stored as a comment, as some taggers do) has no room for tagger's fields:
    mutagen 1.48 failed on it with an AttributeError of its own, shown as `tag write failed
    (AttributeError: 'VCFLACDict' object has no attribute '_invalid_overflow_size')`. Found tagging a
    FLAC with a comment block just under 16 MiB. The refusal says what it is; the file is unchanged,
    and `untag`, which only shrinks the block, is not concerned."""
    from mutagen.flac import FLAC

    song = _ffmpeg(tmp_path / "song.flac", "-c:a", "flac", "-metadata", "TITLE=made")
    audio = FLAC(song)
    audio["LYRICS"] = "la"
    empty = len(audio.tags.write())
    audio["LYRICS"] = "l" * ((1 << 24) - 1 - empty - 40)
    audio.save()
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"its Vorbis comments with tagger's fields would take 16,777,2\d\d bytes, "
                                            r"more than a FLAC metadata block holds \(16,777,215\); file left unchanged"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(tags.TEMP_SUFFIX)]


def test_mp4_chapters_a_second_audio_track_and_a_video_track_are_kept(tmp_path):
    chapters = tmp_path / "chapters.txt"
    chapters.write_text(";FFMETADATA1\ntitle=Book\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=One\n"
                        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=Two\n")  # fmt: skip
    song = tmp_path / "song.m4v"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-f", "lavfi", "-i", "sine=frequency=880:duration=1", "-f", "lavfi", "-i",
                    "testsrc=size=32x32:rate=5:duration=1", "-i", str(chapters), "-map", "0:a", "-map", "1:a", "-map",
                    "2:v", "-map_chapters", "3", "-map_metadata", "3", "-c:a", "aac", "-c:v", "mpeg4", "-movflags",
                    "+faststart", "-f", "mp4", str(song)], check=True)  # fmt: skip

    def probe():
        out = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_streams", "-show_entries",
                              "format_tags=title", "-of", "json", str(song)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        return json.loads(out)

    before, decoded = probe(), _decoded(song)
    assert len(before["chapters"]) == 2 and len(before["streams"]) >= 3
    assert tags.write_instruments(song, **WRITE).written  # (the moov before the audio grows: offsets move)
    assert probe() == before and _decoded(song) == decoded


def test_a_flac_whose_only_fields_are_an_id3v1_tag_at_its_end_is_refused_naming_that_tag(tmp_path):
    """A FLAC whose fields are in an ID3v1 tag at its end (its Vorbis comments empty) was refused as
    holding 'an ID3v2 tag in front of its FLAC stream', a tag it does not have: the check loaded
    the file's ID3 tag with mutagen, which falls back on an ID3v1 tag. Found tagging FLACs with an
    ID3v1 tag alone. TagLib shows that tag only while the Vorbis comments are empty: still left
    unchanged, the refusal naming the ID3v1 tag."""
    song = _ffmpeg(tmp_path / "song.flac", "-c:a", "flac")
    song.write_bytes(song.read_bytes() + b"TAG" + b"v1 title".ljust(30, b"\0") + b"v1 artist".ljust(30, b"\0")
                     + bytes(64) + b"\x05")  # fmt: skip
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"an ID3v1 tag at its end holds its fields \(TCON, TIT2, TPE1\) and its "
                                            r"Vorbis comments none: TagLib shows them"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == before


def test_a_flac_whose_only_fields_are_an_id3v2_tag_in_front_is_left_alone(tmp_path):
    """Players that read FLAC through ffmpeg show an ID3v2 tag in front of fLaC only while the
    Vorbis comments are empty: writing tagger's fields hid the file's title and artist from them
    (the ID3 bytes were kept, but nothing showed them). Such a file is left unchanged with the
    reason; one whose Vorbis comments hold fields of their own is tagged as before."""
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3, TIT2, TPE1

    f = _ffmpeg(tmp_path / "old-rip.flac", "-c:a", "flac")
    id3 = ID3()
    id3.add(TIT2(encoding=3, text=["Song"]))
    id3.add(TPE1(encoding=3, text=["Artist"]))
    id3.save(f)
    before = f.read_bytes()
    assert before[:3] == b"ID3" and not list(FLAC(f).tags or ())
    with pytest.raises(TagWriteError, match=r"ID3v2 tag in front of its FLAC stream holds its fields \(TIT2, TPE1\)"):
        tags.write_instruments(f, **WRITE)
    assert f.read_bytes() == before
    audio = FLAC(f)
    audio["TITLE"] = "Song"
    audio.save()
    tags.write_instruments(f, **WRITE)
    assert tags.read_instruments(f).instruments == ["bass", "guitar"]


def test_an_mp3_whose_second_id3v2_tag_holds_taggers_fields_is_refused_naming_it(tmp_path):
    """An MP3 starting with two ID3v2 tags back to back (another program prepended one), the second
    holding tagger's fields: mutagen and TagLib read the first tag alone, ffmpeg both. A write went
    into the first tag, and after an untag ffprobe still showed the old instruments. Refused now
    before any write, naming the second tag's fields; the file is untouched."""
    audio = _mp3(tmp_path)
    ours = [(b"TXXX", b"\x03" + desc + b"\0" + value) for desc, value in ((b"INSTRUMENTS", b"piano"),
                                                                            (b"INSTRUMENTS_MODEL", b"old-1"))]  # fmt: skip
    song = tmp_path / "double.mp3"
    original = _id3v24((b"TIT2", b"\x03First title")) + _id3v24(*ours) + audio
    song.write_bytes(original)
    with pytest.raises(TagWriteError, match=r"second ID3v2 tag .*TXXX:INSTRUMENTS=piano.*left unchanged"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    # a second tag without tagger's fields is no obstacle
    song.write_bytes(_id3v24((b"TIT2", b"\x03First title")) + _id3v24((b"TPE1", b"\x03Artist")) + audio)
    assert tags.write_instruments(song, **WRITE).written


def test_untag_of_an_mp3_whose_second_id3v2_tag_alone_holds_taggers_fields_says_why_it_is_left(tmp_path):
    """`untag` of an MP3 whose first ID3v2 tag holds none of tagger's fields and whose second one
    (right after it) does, as older taggers or other tools left such files (7d4f2c7 refuses to
    write one): mutagen and TagLib read the first tag alone, so untag found nothing of tagger's,
    changed nothing and said nothing, while ffprobe went on showing the instruments. Found
    reviewing 7d4f2c7. It says now, in one line naming the fields, why the file is left as it is
    (a failure, exit 1: tagger's fields are still in it, as where `tag` refuses it). The file is untouched."""
    from typer.testing import CliRunner

    from tagger.cli import app

    ours = [(b"TXXX", b"\x03" + desc + b"\0" + value) for desc, value in ((b"INSTRUMENTS", b"piano"),
                                                                            (b"INSTRUMENTS_MODEL", b"old-1"))]  # fmt: skip
    song = tmp_path / "double.mp3"
    original = _id3v24((b"TIT2", b"\x03First title")) + _id3v24(*ours) + _mp3(tmp_path)
    song.write_bytes(original)
    with pytest.raises(TagWriteError, match=r"second ID3v2 tag .*TXXX:INSTRUMENTS=piano.*left unchanged"):
        tags.remove_instruments(song)
    assert song.read_bytes() == original
    result = CliRunner().invoke(app, ["untag", str(song), "--settle-seconds", "0"])
    assert result.exit_code == 1
    said = [line for line in result.output.splitlines() if str(song) in line]
    assert len(said) == 1 and "TXXX:INSTRUMENTS=piano" in said[0], result.output
    assert song.read_bytes() == original


@pytest.mark.parametrize("ext, codec, little", [("wav", "pcm_u8", True), ("aiff", "pcm_s8", False)])
@pytest.mark.parametrize("v1", [False, True], ids=["no tag after it", "an ID3v1 tag after it"])
def test_a_riff_size_counting_a_missing_pad_byte_in_the_middle_is_right_after_a_write(tmp_path, ext, codec, little,
                                                                                       v1):  # fmt: skip
    """An odd-sized audio chunk without its pad byte, a text chunk after it, the RIFF/FORM size
    counting the missing byte (one more than the chunks). With an ID3v1 tag appended the write was
    refused naming a chunk that is not there ("its RIFF size ... ends inside its 'TAGV' chunk": the
    tag's 'TAG' and its title's first letter); without one the file was tagged and its RIFF/FORM
    size left one byte too large (it counted the pad byte the write added). Now both are tagged: the
    pad byte, the ID3 chunk, a RIFF/FORM size that is the chunks', the ID3v1 tag last as it was."""
    made = _iff_chunks(_ffmpeg(tmp_path / f"made.{ext}", "-c:a", codec, "-ac", "1", "-ar", "8001").read_bytes(), little)
    fmt_id, audio_id = (b"fmt ", b"data") if little else (b"COMM", b"SSND")
    text = (_iff_chunk(b"LIST", b"INFO" + _iff_chunk(b"INAM", b"Song\0", True), True) if little else
            _iff_chunk(b"NAME", b"A name", False))  # fmt: skip
    body = (b"WAVE" if little else b"AIFF") + made[fmt_id] + made[audio_id][:-1] + text
    fmt = "<I" if little else ">I"
    tail = ID3V1 if v1 else b""
    song = tmp_path / f"song.{ext}"
    song.write_bytes((b"RIFF" if little else b"FORM") + struct.pack(fmt, len(body) + 1) + body + tail)
    decoded = _decoded(song)

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.endswith(tail) and b"V1 title" not in data[: len(data) - len(tail)]
    chunks = data[: len(data) - len(tail)]
    assert struct.unpack(fmt, chunks[4:8])[0] == len(chunks) - 8
    assert list(_iff_chunks(chunks, little)) == [fmt_id, audio_id, text[:4], b"id3 " if little else b"ID3 "]
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded(song) == decoded


def test_a_riff_size_ending_inside_an_id3v1_tag_is_refused_naming_the_tag(tmp_path):
    """A RIFF size that ends inside an ID3v1 tag appended after the chunks (not at its start, nor a
    byte after it) is refused naming the ID3v1 tag, not a chunk 'TAGV' read from its bytes."""
    made = _iff_chunks(_ffmpeg(tmp_path / "made.wav", "-c:a", "pcm_u8", "-ac", "1", "-ar", "8000").read_bytes(), True)
    body = b"WAVE" + made[b"fmt "] + made[b"data"]
    song = tmp_path / "song.wav"
    original = b"RIFF" + struct.pack("<I", len(body) + 20) + body + ID3V1
    song.write_bytes(original)
    with pytest.raises(TagWriteError, match=r"RIFF size \(\d+ bytes\) ends inside the ID3v1 tag appended"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("with_tag", [False, True], ids=["no ID3v2 tag", "an ID3v2 tag"])
def test_an_id3v1_tag_after_a_dsf_stays_at_its_end_and_out_of_the_id3v2_tag(tmp_path, with_tag):
    """Some tools append an ID3v1 tag to a DSF file, after its ID3v2 tag (or its data chunk). No
    reader shows it (TagLib, ffmpeg); mutagen folded it into the ID3v2 tag as it loaded it. A file
    with an ID3v2 tag was refused ("its metadata pointer does not lead to one ID3 tag ending the
    file"), and one without got its new ID3v2 tag after the ID3v1 tag, which was no longer at the
    end. The ID3v2 tag is loaded alone now (as a WAV's ID3 chunk, 62467bc), the ID3v1 tag is taken
    off before mutagen writes and cuts the file and put back after: it stays the file's last 128
    bytes, out of the ID3v2 tag, and an untag gives back the file as it was."""
    pytest.importorskip("taglib")
    from conftest import dsf_file
    from mutagen.dsf import DSF
    from mutagen.id3 import TIT2

    song = dsf_file(tmp_path / "song.dsf", seconds=0.5, freq=440.0)
    if with_tag:
        made = DSF(song)
        made.add_tags()
        made.tags.add(TIT2(encoding=3, text=["Dsf title"]))
        made.save()
    with open(song, "ab") as f:
        f.write(ID3V1)
    original = song.read_bytes()

    before, decoded = _taglib_shown(song), _decoded(song)
    assert before == ({"TITLE": ["Dsf title"]} if with_tag else {})
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.endswith(ID3V1) and b"V1 title" not in data[:-128] and b"INSTRUMENTS" in data[:-128]
    assert _taglib_shown(song) == before and _decoded(song) == decoded
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == original


@pytest.mark.parametrize("second", [False, True], ids=["alone", "before an ID3 chunk"])
def test_an_aiff_whose_id3_chunk_is_named_in_lower_case_is_refused_naming_it(tmp_path, second):
    """An AIFF's ID3 chunk named ``id3 `` (as WAV files name theirs), which TagLib reads and mutagen
    (whose AIFF chunk names are case-sensitive) does not: mutagen added a second chunk, ``ID3 ``, and
    the write was refused by its verification, "the tag's items read from its bytes are not the ones
    written", naming nothing. It is refused before the file is touched, naming the chunk."""
    made = _iff_chunks(_ffmpeg(tmp_path / "made.aiff", "-c:a", "pcm_s16be", "-ac", "1", "-ar", "8000").read_bytes(), False)
    body = (b"AIFF" + made[b"COMM"] + _id3_chunk_bytes(b"id3 ", b"Lower", False) + made[b"SSND"]
            + (_id3_chunk_bytes(b"ID3 ", b"Upper", False) if second else b""))  # fmt: skip
    original = b"FORM" + struct.pack(">I", len(body)) + body
    song = tmp_path / "song.aiff"
    song.write_bytes(original)
    taglib = pytest.importorskip("taglib")
    with taglib.File(str(song)) as f:
        assert f.tags["TITLE"] == ["Lower"]  # (TagLib reads it)
    with pytest.raises(TagWriteError, match=re.escape("its ID3 chunk is named 'id3 ', which mutagen and ffmpeg do not")):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original

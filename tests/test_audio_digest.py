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
from tagger.errors import TagWriteError
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


def _mp4_atom(data: bytes, *names: bytes) -> int:
    """Offset of the content of the atom at path ``names`` (``moov``, ``trak``, ...) in the MP4 file ``data``."""
    start, end = 0, len(data)
    for name in names:
        pos = start
        while pos + 8 <= end:
            size, kind = struct.unpack_from(">I4s", data, pos)
            if kind == name:
                break
            pos += size
        else:
            raise AssertionError(f"no {name!r} atom")
        start, end = pos + 8 + {b"stsd": 8, b"mp4a": 28, b"esds": 4}.get(name, 0), pos + size
    return start


_STBL = (b"moov", b"trak", b"mdia", b"minf", b"stbl")


def _asf_object(data: bytes, guid: str) -> int:
    """Offset of the content of the first ASF header object ``guid`` in the ASF file ``data``."""
    import uuid

    want, pos = uuid.UUID(guid).bytes_le, 30
    while data[pos : pos + 16] != want:
        pos += struct.unpack_from("<Q", data, pos + 16)[0]
    return pos + 24


def _add(data: bytearray, fmt: str, at: int, delta: int) -> None:
    struct.pack_into(fmt, data, at, struct.unpack_from(fmt, data, at)[0] + delta)


def flac_rate_doubled(data: bytearray) -> None:
    at = data.index(b"fLaC") + 8 + 10  # STREAMINFO: the rate is its 20 bits from byte 10
    rate = int.from_bytes(data[at : at + 3], "big") >> 4
    data[at : at + 3] = ((rate * 2) << 4 | data[at + 2] & 0xF).to_bytes(3, "big")


def flac_channels_changed(data: bytearray) -> None:
    data[data.index(b"fLaC") + 8 + 12] ^= 0x02  # (channels - 1: bits 3-1 of STREAMINFO's byte 12)


def mp4_mdhd_timescale(data: bytearray) -> None:
    _add(data, ">I", _mp4_atom(data, b"moov", b"trak", b"mdia", b"mdhd") + 12, 1000)


def mp4_esds_channels(data: bytearray) -> None:
    at = _mp4_atom(data, *_STBL, b"stsd", b"mp4a", b"esds")
    for tag, skip in ((3, 3), (4, 13), (5, 0)):  # ES, DecoderConfig, DecoderSpecificInfo (the AudioSpecificConfig)
        assert data[at] == tag
        at += 1
        while data[at] & 0x80:  # (a descriptor's size, in as many bytes as the muxer chose)
            at += 1
        at += 1 + skip
    data[at + 1] ^= 0x18  # (object type: 5 bits, rate index: 4, channel configuration: 4)


def mp4_stsd_rate(data: bytearray) -> None:
    _add(data, ">I", _mp4_atom(data, *_STBL, b"stsd") + 8 + 24, 1 << 16)  # (16.16 fixed point)


def mp4_elst_start(data: bytearray) -> None:
    at = _mp4_atom(data, b"moov", b"trak", b"edts", b"elst") + 8 + 4  # (first edit's media time)
    assert struct.unpack_from(">I", data, at)[0] == 1024  # (the AAC encoder's delay, which decoders drop)
    struct.pack_into(">I", data, at, 0)


def mp4_stts_delta(data: bytearray) -> None:
    _add(data, ">I", _mp4_atom(data, *_STBL, b"stts") + 12, 1)


def mp4_stsz_sizes(data: bytearray) -> None:
    at = _mp4_atom(data, *_STBL, b"stsz") + 12  # (after the default size and the count)
    _add(data, ">I", at, 1)
    _add(data, ">I", at + 4, -1)  # (the same bytes, one more in the first frame)


def mp4_stco_offset(data: bytearray) -> None:
    _add(data, ">I", _mp4_atom(data, *_STBL, b"stco") + 8, 1)


_STREAM_PROPERTIES = "B7DC0791-A9B7-11CF-8EE6-00C00C205365"


def asf_rate_doubled(data: bytearray) -> None:
    at = _asf_object(bytes(data), _STREAM_PROPERTIES) + 54 + 4  # (WAVEFORMATEX: tag, channels, rate)
    _add(data, "<I", at, struct.unpack_from("<I", data, at)[0])


def asf_codec_data(data: bytearray) -> None:
    at = _asf_object(bytes(data), _STREAM_PROPERTIES) + 54 + 18  # (the codec's data after WAVEFORMATEX)
    data[at] ^= 0x01


def asf_packet_size(data: bytearray) -> None:
    at = _asf_object(bytes(data), "8CABDCA1-A947-11CF-8EE4-00C00C205365") + 68  # (minimum and maximum)
    _add(data, "<I", at, -16)
    _add(data, "<I", at + 4, -16)


def opus_pre_skip(data: bytearray) -> None:
    _add(data, "<H", data.index(b"OpusHead") + 10, 48)


def vorbis_rate(data: bytearray) -> None:
    _add(data, "<I", data.index(b"\x01vorbis") + 12, 1000)


EDITS = {
    "flac": [flac_rate_doubled, flac_channels_changed],
    "m4a": [mp4_mdhd_timescale, mp4_esds_channels, mp4_stsd_rate, mp4_elst_start, mp4_stts_delta, mp4_stsz_sizes,
            mp4_stco_offset],
    "wma": [asf_rate_doubled, asf_codec_data, asf_packet_size],
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


@pytest.mark.parametrize(("ext", "faststart"), [(ext, False) for ext in EDITS] + [("m4a", True)],
                         ids=[*EDITS, "m4a-moov-first"])  # fmt: skip
def test_a_tag_write_that_moves_the_audio_keeps_the_digest(tmp_path, ext, faststart):
    f = encoded(tmp_path / f"tone.{ext}", faststart=faststart)
    before, size = tags.audio_digest(f), f.stat().st_size
    retag_with_cover(f)
    assert f.stat().st_size > size + len(BIG_COVER)
    assert tags.audio_digest(f) == before
    change = tags.write_instruments(f, instruments=["bass"], model_version="digest-test-1")
    assert change.written and change.audio_digest == before == tags.audio_digest(f)


def test_a_tag_write_that_moves_moov_before_mdat_keeps_the_digest(tmp_path):
    """A tagger that moves ``moov`` in front of the audio (as qt-faststart, iTunes and some taggers
    save): every chunk offset changes by the size of ``moov``, the audio they point at does not."""
    f = encoded(tmp_path / "tone.m4a")
    before = tags.audio_digest(f)
    data = f.read_bytes()
    at = data.index(b"moov") - 4
    assert data.index(b"mdat") < at and struct.unpack_from(">I", data, at)[0] == len(data) - at  # (moov last)
    ftyp = struct.unpack_from(">I", data, 0)[0]
    moved = bytearray(data[:ftyp] + data[at:] + data[ftyp:at])
    table = _mp4_atom(moved, *_STBL, b"stco")
    for n in range(struct.unpack_from(">I", moved, table + 4)[0]):
        _add(moved, ">I", table + 8 + 4 * n, len(data) - at)
    f.write_bytes(moved)
    assert tags.audio_digest(f) == before
    mp4_stco_offset(moved)  # (and one offset pointing elsewhere is other audio)
    f.write_bytes(moved)
    assert tags.audio_digest(f) != before


def test_the_dates_in_an_mp4_track_header_are_not_audio(tmp_path):
    """A tagger that sets the modification time of the tracks it saves (``tkhd``, ``mdhd``) changed
    nothing that decodes: the digest stays."""
    f = encoded(tmp_path / "tone.m4a")
    before = tags.audio_digest(f)
    data = bytearray(f.read_bytes())
    for header in (b"tkhd", b"mdhd"):
        at = _mp4_atom(data, b"moov", b"trak", *((b"mdia",) if header == b"mdhd" else ()), header)
        assert data[at] == 0  # (version 0: 32-bit creation and modification times)
        _add(data, ">I", at + 8, 86_400)
    f.write_bytes(data)
    assert tags.audio_digest(f) == before


def test_a_fragmented_mp4_keeps_its_digest_through_a_tag_write_and_not_through_an_edit_of_its_fragments(tmp_path):
    """A fragmented MP4 (``moof`` atoms: their ``trun`` say which bytes of ``mdat`` are which frames;
    ``tfhd`` holds a file offset that a tag write shifts, as ``stco`` does)."""
    frag = tmp_path / "frag.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(encoded(tmp_path / "tone.m4a")), "-c", "copy",
                    "-movflags", "frag_keyframe+empty_moov", str(frag)], check=True)  # fmt: skip
    before, size = tags.audio_digest(frag), frag.stat().st_size
    retag_with_cover(frag)
    assert frag.stat().st_size > size + len(BIG_COVER)
    assert tags.audio_digest(frag) == before
    data = bytearray(frag.read_bytes())
    at = data.index(b"trun") + 4
    flags = int.from_bytes(data[at + 1 : at + 4], "big")
    assert flags & 0x200  # (each sample's size)
    at += 8 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0) + (4 if flags & 0x100 else 0)
    entry = 4 * bin(flags & 0xF00).count("1")
    _add(data, ">I", at, 1)
    _add(data, ">I", at + entry, -1)  # (the same bytes, one more in the first frame)
    frag.write_bytes(data)
    assert tags.audio_digest(frag) != before


@pytest.mark.parametrize("edit", [flac_rate_doubled, mp4_elst_start, asf_rate_doubled], ids=lambda e: e.__name__)
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


def test_an_ogg_cut_inside_a_page_is_a_tag_error_naming_the_file_not_mutagens(tmp_path):
    """`audio_digest` raises `TagWriteError` for a file it cannot read, as its callers expect: an
    Opus file cut inside a page's lacing values raised mutagen's own ``ogg.error`` (caught only by
    `audio_digest_or_none`'s catch-all, with no file named)."""
    path = encoded(tmp_path / "a.opus")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TagWriteError) as err:
        tags.audio_digest(path)
    assert str(path) in str(err.value) and "cannot read its audio" in str(err.value)


# -- WAV, AIFF: the format and audio chunks, each with its id and size -----------------------------


def _iff(path) -> tuple[bytearray, str, dict[bytes, tuple[int, int]]]:
    """The bytes of the WAV or AIFF file ``path``, its size format, and each top-level chunk's id ->
    (offset of its header, declared length)."""
    data = bytearray(path.read_bytes())
    fmt = "<I" if data[:4] == b"RIFF" else ">I"
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        length = struct.unpack_from(fmt, data, pos + 4)[0]
        chunks[bytes(data[pos : pos + 4])] = (pos, length)
        pos += 8 + length + (length & 1)
    return data, fmt, chunks


def wav_channels(data, fmt, chunks):
    at = chunks[b"fmt "][0] + 8
    channels, rate, byte_rate, align = struct.unpack_from("<HIIH", data, at + 2)
    struct.pack_into("<HIIH", data, at + 2, 2, rate // 2, byte_rate, align * 2)  # (the same bytes as stereo)


def wav_rate(data, fmt, chunks):
    _add(data, "<I", chunks[b"fmt "][0] + 8 + 4, 1000)


def wav_bits(data, fmt, chunks):
    at = chunks[b"fmt "][0] + 8
    struct.pack_into("<IHH", data, at + 8, struct.unpack_from("<I", data, at + 8)[0] // 2, 1, 8)  # (16 -> 8 bits)


def aiff_channels(data, fmt, chunks):
    _add(data, ">H", chunks[b"COMM"][0] + 8, 1)


def format_chunk_grown_into_the_audio(data, fmt, chunks):
    """The format chunk 2 bytes longer (a WAV's cbSize, an AIFF COMM's pad), taken from the start of
    the audio chunk, which is 2 bytes shorter: the same bytes one after the other, other audio."""
    (form_at, form_len), (audio_at, audio_len) = (chunks[c] for c in ((b"fmt ", b"data") if fmt == "<I" else
                                                                      (b"COMM", b"SSND")))  # fmt: skip
    assert form_at + 8 + form_len == audio_at and data[audio_at + 8 : audio_at + 10] == b"\0\0"
    struct.pack_into(fmt, data, form_at + 4, form_len + 2)
    data[audio_at : audio_at + 10] = data[audio_at + 8 : audio_at + 10] + data[audio_at : audio_at + 8]
    struct.pack_into(fmt, data, audio_at + 2 + 4, audio_len - 2)


IFF_EDITS = {"wav": [wav_channels, wav_rate, wav_bits, format_chunk_grown_into_the_audio],
             "aiff": [aiff_channels, format_chunk_grown_into_the_audio]}  # fmt: skip


@pytest.mark.parametrize(("ext", "edit"), [(ext, edit) for ext, edits in IFF_EDITS.items() for edit in edits],
                         ids=lambda v: getattr(v, "__name__", v))  # fmt: skip
def test_an_edit_of_a_wav_or_aiff_format_chunk_alone_changes_the_digest(tmp_path, ext, edit):
    """The format chunk decides how the audio chunk's bytes decode (channels, rate, sample format),
    and so does where one ends and the other begins: its size. The digest hashed the two chunks'
    contents one after the other, so a format chunk grown by 2 bytes taken from the audio hashed the
    same."""
    f = encoded(tmp_path / f"tone.{ext}")
    before = tags.audio_digest(f)
    data, fmt, chunks = _iff(f)
    edit(data, fmt, chunks)
    f.write_bytes(data)
    assert tags.audio_digest(f) != before


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_an_audio_chunk_size_left_as_a_streaming_placeholder_hashes_the_audio_to_the_end(tmp_path, ext):
    """A WAV or AIFF written by a streaming writer that never went back to fill in its audio chunk's
    size (0, or 0xFFFFFFFF): ffmpeg decodes such a WAV, libsndfile (tagger's decoder) such an AIFF,
    to the end of the file. The digest hashed the 0 bytes the chunk declared: every such file of one
    format hashed the same, whatever its audio."""
    f = encoded(tmp_path / f"tone.{ext}")
    data, fmt, chunks = _iff(f)
    at = chunks[b"data" if ext == "wav" else b"SSND"][0]
    for placeholder in (0, 0xFFFFFFFF):
        struct.pack_into(fmt, data, at + 4, placeholder)
        f.write_bytes(data)
        before = tags.audio_digest(f)
        other = bytearray(data)
        other[-100] ^= 0x01
        f.write_bytes(other)
        assert tags.audio_digest(f) != before


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_tags_only_edits_of_a_wav_or_aiff_keep_the_digest(tmp_path, ext):
    """An ID3 chunk (with a cover of 1 MB), a LIST/INFO or NAME chunk and a JUNK/padding chunk added
    before the audio, and tagger's write: none is audio."""
    from mutagen.id3 import APIC, TIT2

    f = encoded(tmp_path / f"tone.{ext}")
    before = tags.audio_digest(f)
    data, fmt, chunks = _iff(f)
    little = fmt == "<I"
    text = (b"LIST", b"INFOINAM\x06\0\0\0Title\0") if little else (b"NAME", b"A name")
    extra = b"".join(cid + struct.pack(fmt, len(body)) + body for cid, body in (text, (b"JUNK", b"\0" * 28)))
    at = chunks[b"data" if little else b"SSND"][0]
    data[at:at] = extra
    struct.pack_into(fmt, data, 4, len(data) - 8)
    f.write_bytes(data)
    assert tags.audio_digest(f) == before
    import mutagen

    song = mutagen.File(f)
    song.add_tags()
    song.tags.add(TIT2(encoding=3, text=["Retagged"]))
    song.tags.add(APIC(encoding=3, mime="image/png", type=3, desc="", data=BIG_COVER))
    song.save()
    assert tags.audio_digest(f) == before
    change = tags.write_instruments(f, instruments=["bass"], model_version="digest-test-1")
    assert change.written and change.audio_digest == before == tags.audio_digest(f)

"""The cue sheet an album image carries in itself (`tagger.cuesheet`): a FLAC file's ``CUESHEET``
Vorbis comment or CUESHEET metadata block (its blocks read without mutagen: `_flac_blocks`), or the
``Cuesheet`` item of the APEv2 tag of a file of `APE_TAG_EXTENSIONS` (`_ape_cuesheet`)."""

from __future__ import annotations

import os
import struct

from tagger.containers import id3v2_end
from tagger.cuesheet.parsing import parse_cue_text
from tagger.cuesheet.reading import MAX_CUE_BYTES, _regular, decode_cue
from tagger.cuesheet.sheet import CueSheet, CueSheetError, CueTrack, with_hidden_track

MAX_FLAC_METADATA = 64 << 20
"""How far into a FLAC file its metadata blocks are followed (cover pictures are skipped, not read)."""

_FLAC_STREAMINFO, _FLAC_VORBIS_COMMENT, _FLAC_CUESHEET = 0, 4, 5
_LEAD_OUT = (170, 255)
"""The lead-out's track number in a FLAC CUESHEET block: 170 for a CD, 255 otherwise."""


def _embedded(path: str) -> CueSheet | None:
    """The cue sheet a FLAC file carries: its ``CUESHEET`` Vorbis comment, else its CUESHEET block; or
    the ``Cuesheet`` item of the APEv2 tag of a file of `APE_TAG_EXTENSIONS`; None for a file that
    holds none."""
    if not _regular(path):
        return None
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            if magic[:3] == b"ID3":  # (ID3v2 tags in front of the stream, one or more back to back, which ffmpeg and
                f.seek(id3v2_end(f))  # tagger's probe and tag storage read past: was the first one alone)
                magic = f.read(4)
            if magic != b"fLaC":
                text = _ape_cuesheet(f) if path.casefold().endswith(APE_TAG_EXTENSIONS) else None
                return None if text is None else parse_cue_text(text, source=f"{path} (embedded APEv2 Cuesheet)")
            blocks = _flac_blocks(f)
    except OSError:
        return None  # (the file itself: `show` reads the database, the file may be gone or unreadable)
    comment = _vorbis_cuesheet(blocks.get(_FLAC_VORBIS_COMMENT))
    if comment is not None:
        return parse_cue_text(comment, source=f"{path} (embedded CUESHEET comment)")
    if _FLAC_CUESHEET in blocks and _FLAC_STREAMINFO in blocks:
        return _cuesheet_block(blocks[_FLAC_CUESHEET], blocks[_FLAC_STREAMINFO], source=f"{path} (embedded CUESHEET block)")
    return None


APE_TAG_EXTENSIONS = (".ape", ".wv", ".tta", ".tak", ".mpc")
"""The formats whose tags are APEv2, where foobar2000 embeds an image's cue sheet as a ``Cuesheet`` item
(Monkey's Audio, WavPack, TTA, TAK, Musepack)."""


def may_embed_cue_sheet(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is of a format whose cue sheet `find_cue_sheet` reads from the file
    itself (FLAC, or a format of APEv2 tags, by its name)."""
    return os.fspath(path).casefold().endswith((".flac", *APE_TAG_EXTENSIONS))


def _ape_cuesheet(f) -> str | None:
    """The ``Cuesheet`` item of the APEv2 tag at the end of the file ``f`` (before an ID3v1 tag), as
    text (UTF-8); None where there is none."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    for tail in (0, 128):  # (an ID3v1 tag may follow the APEv2 tag)
        if end < tail + 32:
            return None
        f.seek(end - tail - 32)
        footer = f.read(32)
        if footer[:8] == b"APETAGEX":
            break
    else:
        return None
    _version, size, count, _flags = struct.unpack_from("<IIII", footer, 8)
    if size < 32 or size > MAX_CUE_BYTES * 16 or size > end - tail:
        return None
    f.seek(end - tail - size)
    items = f.read(size - 32)
    pos = 0
    try:
        for _ in range(count):
            n, _flags = struct.unpack_from("<II", items, pos)
            key_end = items.index(b"\0", pos + 8)
            key, value = items[pos + 8 : key_end], items[key_end + 1 : key_end + 1 + n]
            pos = key_end + 1 + n
            if key.lower() == b"cuesheet":
                return value.decode("utf-8", errors="replace") if len(value) <= MAX_CUE_BYTES else None
    except (struct.error, ValueError):
        return None
    return None


def _flac_blocks(f) -> dict[int, bytes]:
    """The STREAMINFO, VORBIS_COMMENT and CUESHEET blocks of a FLAC file read past its ``fLaC``."""
    found: dict[int, bytes] = {}
    pos = 4
    while pos < MAX_FLAC_METADATA:
        header = f.read(4)
        if len(header) < 4:
            break
        last, kind, size = header[0] & 0x80, header[0] & 0x7F, int.from_bytes(header[1:], "big")
        if kind in (_FLAC_STREAMINFO, _FLAC_VORBIS_COMMENT, _FLAC_CUESHEET) and kind not in found:
            found[kind] = f.read(size)
        else:
            f.seek(size, os.SEEK_CUR)
        pos += 4 + size
        if last:
            break
    return found


def _vorbis_cuesheet(block: bytes | None) -> str | None:
    if not block:
        return None
    try:
        (vendor,) = struct.unpack_from("<I", block, 0)
        pos = 4 + vendor
        (count,) = struct.unpack_from("<I", block, pos)
        pos += 4
        for _ in range(count):
            (n,) = struct.unpack_from("<I", block, pos)
            entry = block[pos + 4 : pos + 4 + n]
            pos += 4 + n
            key, eq, value = entry.partition(b"=")
            if eq and key.upper() == b"CUESHEET":
                return decode_cue(value)
    except struct.error:
        return None
    return None


def _cuesheet_block(block: bytes, streaminfo: bytes, *, source: str) -> CueSheet:
    """The tracks of a FLAC CUESHEET metadata block (offsets in samples; the lead-out left out)."""
    try:
        rate = int.from_bytes(streaminfo[10:13], "big") >> 4
        count = block[395]
        pos, starts = 396, []
        for _ in range(count):
            offset, number = struct.unpack_from(">QB", block, pos)
            n_index = block[pos + 35]
            pos += 36
            index01 = None
            for _ in range(n_index):
                ioffset, inumber = struct.unpack_from(">QB", block, pos)
                pos += 12
                if inumber == 1:
                    index01 = offset + ioffset
            if number not in _LEAD_OUT:
                if index01 is None:
                    raise CueSheetError(source, f"track {number:02d} has no index 01 (where it starts)")
                starts.append((number, index01))
    except (IndexError, struct.error):
        raise CueSheetError(source, "cut short: not a CUESHEET block") from None
    if not rate:
        raise CueSheetError(source, "the stream's sample rate is 0")
    for (a, sa), (b, sb) in zip(starts, starts[1:]):
        if b <= a or sb <= sa:
            raise CueSheetError(source, f"track {b:02d} does not follow track {a:02d}")
    tracks = tuple(CueTrack(n, None, None, s / rate, nxt / rate if nxt is not None else None)
                   for (n, s), nxt in zip(starts, [s for _, s in starts[1:]] + [None]))  # fmt: skip
    return CueSheet(source, None, None, with_hidden_track(tracks))

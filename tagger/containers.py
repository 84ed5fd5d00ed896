"""Byte layouts of audio containers that the audio probe (`tagger.audio.probe`, `.ogg`, ...), the cue sheet reader and
the tag storage (`tagger.tags.storage`) read: the length of an ID3v2 tag (`id3v2_length`), the end of those back to back (`id3v2_end`) and the pages of
an Ogg file followed by their headers (`ogg_page_heads`). Each caller decides what to make of what
it finds (the probe looks past damage, the storage stops there).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


def syncsafe(data: bytes) -> int:
    """The integer of the ID3v2 syncsafe bytes ``data`` (7 bits each, the high bit ignored)."""
    size = 0
    for b in data:
        size = (size << 7) | (b & 0x7F)
    return size


def id3v2_length(head: bytes) -> int:
    """The length in bytes of the ID3v2 tag that ``head`` (its first 10 bytes or more) begins with:
    its header, the size it declares and its footer where its flags give one (ID3v2.4's footer flag,
    bit 4 of the flags byte, taken as it is in any version); 0 where ``head`` does not begin with
    ``ID3`` or holds fewer than 10 bytes."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    return 10 + syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)


def id3v2_end(f: BinaryIO, pos: int = 0) -> int:
    """The offset after the ID3v2 tags of the binary file ``f`` that stand back to back from ``pos``
    (a file's tags in front: the first, then any another program prepended; each as long as
    `id3v2_length` reads it); ``pos`` where none begins there."""
    while True:
        f.seek(pos)
        length = id3v2_length(f.read(10))
        if not length:
            return pos
        pos += length


def id3v2_tags(f: BinaryIO, pos: int = 0) -> Iterator[bytes]:
    """The bytes of each ID3v2 tag of the binary file ``f`` that stand back to back from ``pos`` (a
    file's tags in front: the first, then any another program prepended), in file order; each
    tag's length as `id3v2_length` reads it, the last one possibly cut by the file's end."""
    while True:
        f.seek(pos)
        length = id3v2_length(f.read(10))
        if not length:
            return
        f.seek(pos)
        yield f.read(length)
        pos += length


@dataclass(frozen=True)
class OggPageHead:
    """The header of one Ogg page, as `ogg_page_heads` reads it."""

    offset: int
    """Where the page begins in the file."""
    flags: int
    """Its header type: 0x01 continued packet, 0x02 beginning of stream, 0x04 end of stream."""
    granule: int
    """Its granule position (-1: no packet ends on it)."""
    serial: int
    """The serial number of its logical stream."""
    sequence: int
    """Its number in its logical stream (0 for the first, one more for each page after: a number
    skipped is a page missing)."""
    header: int
    """The length of its header with its segment table (where its body begins, from ``offset``)."""
    length: int
    """The length of the whole page, as its segment table gives it (the file may end before)."""
    whole: bool = True
    """Whether its segment table is whole (False: the file ends inside it)."""

    @property
    def first(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def last(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def end(self) -> int:
        """The offset after the page."""
        return self.offset + self.length


def ogg_page_heads(f, pos: int = 0) -> Iterator[OggPageHead]:
    """The pages of the open Ogg file ``f`` from the offset ``pos``, followed one after another by
    the lengths their headers give (27 bytes and the segment table read a page, its body skipped).
    They end before bytes that are not a page header (fewer than 27 bytes: the end of the file or a
    header cut short; bytes that do not begin with ``OggS``: junk, damage), which the caller reads
    where the last page ends, and after a page whose segment table is cut short (``whole`` False:
    its ``length`` counts the segments there). A page's body may run past the end of the file."""
    while True:
        f.seek(pos)
        head = f.read(27 + 255)  # (the header and its segment table, in one read)
        if len(head) < 27 or head[:4] != b"OggS":
            return
        table = head[27 : 27 + head[26]]
        granule, serial, sequence = struct.unpack("<qII", head[6:22])
        whole = len(table) == head[26]
        page = OggPageHead(pos, head[5], granule, serial, sequence, 27 + len(table), 27 + len(table) + sum(table),
                           whole)  # fmt: skip
        yield page
        if not whole:
            return
        pos = page.end

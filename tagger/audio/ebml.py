"""The EBML elements of a Matroska or WebM file (`tagger.audio.matroska`): the IDs its walk reads, an
element's head (`_element`: its ID, the length of its head, its size or None where unknown, from
EBML variable-length integers, `_vint`) and the children of a master element read whole
(`_children`)."""

from __future__ import annotations

_SEGMENT, _CLUSTER, _INFO, _TRACKS = 0x18538067, 0x1F43B675, 0x1549A966, 0x1654AE6B
_TIMECODE, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK, _BLOCK_DURATION = 0xE7, 0xA3, 0xA0, 0xA1, 0x9B
_CLUSTER_CHILDREN = frozenset({_TIMECODE, 0xA7, 0xAB, _SIMPLE_BLOCK, _BLOCK_GROUP, 0xAF, 0x5854, 0xBF, 0xEC})
"""The elements a Cluster holds (Timecode, Position, PrevSize, SimpleBlock, BlockGroup,
EncryptedBlock, SilentTracks, CRC-32, Void): a cluster of unknown size (a MediaRecorder's) ends at
the first element that is none of them (the next Cluster, Cues, Tags)."""
_HEAD = 32
"""Bytes read at an element's start: its ID and size, a block's track, timestamp, flags and lacing."""


def _vint(data: bytes, at: int, *, marker: bool = False) -> tuple[int, int, bool] | None:
    """(value, length, all ones) of the EBML variable-length integer at ``data[at]`` (its length marker
    kept for an element ID, `marker`); None where it is cut or invalid."""
    if at >= len(data) or not data[at]:
        return None
    first = data[at]
    if first & 0x80:  # (one byte: a block's ID, its track, most sizes)
        return (first, 1, False) if marker else (first & 0x7F, 1, first == 0xFF)
    length = 9 - first.bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big")
    if marker:
        return value, length, False
    value &= (1 << (7 * length)) - 1
    return value, length, value == (1 << (7 * length)) - 1


def _element(data: bytes, at: int = 0) -> tuple[int, int, int | None] | None:
    """(ID, length of its head, size or None where unknown) of the element at ``data[at]``."""
    eid = _vint(data, at, marker=True)
    size = _vint(data, at + eid[1]) if eid else None
    if eid is None or size is None:
        return None
    return eid[0], eid[1] + size[1], None if size[2] else size[0]


def _children(data: bytes):
    """(ID, body) of each element in ``data`` (a master element's body read whole)."""
    at = 0
    while at < len(data):
        head = _element(data, at)
        if head is None or head[2] is None:
            return
        yield head[0], data[at + head[1] : at + head[1] + head[2]]
        at += head[1] + head[2]

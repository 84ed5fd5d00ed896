"""A Matroska or WebM file's EBML elements read where ffprobe does not tell: whether its Segment
Info declares a Duration (`_declares_duration`; where not, a file written live, ffprobe's lengths
are estimates from the bit rate)."""

from __future__ import annotations

import os
from pathlib import Path

_SEGMENT, _CLUSTER, _INFO = 0x18538067, 0x1F43B675, 0x1549A966
_HEAD = 32
"""Bytes read at an element's start: its ID and size."""


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


def _declares_duration(path: Path) -> bool:
    """Whether the file's Segment Info holds a Duration (read from the elements before its first
    Cluster): where it does not (a live-written file), ffprobe's length of the file and of its
    streams is an estimate from their bit rates (a 20 s MP3 in a live-written MKA was 'a 20.4 s
    stream', and refused as holding gaps). True where it cannot be told."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            ebml = _element(f.read(_HEAD))
            if ebml is None or ebml[0] != 0x1A45DFA3 or ebml[2] is None:
                return True
            pos = ebml[1] + ebml[2]
            f.seek(pos)
            seg = _element(f.read(_HEAD))
            if seg is None or seg[0] != _SEGMENT:
                return True
            pos += seg[1]
            for _ in range(64):
                f.seek(pos)
                el = _element(f.read(_HEAD))
                if el is None or el[2] is None or el[0] == _CLUSTER or pos >= size:
                    return True
                if el[0] == _INFO:
                    return el[2] > 1 << 20 or any(sub == 0x4489 for sub, _ in _children(f.read(el[2])))
                pos += el[1] + el[2]
    except OSError:
        return True
    return True

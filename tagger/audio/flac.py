"""A FLAC file's frames read from their headers: whether it ends on a whole last frame of the length
its STREAMINFO declares (`_flac_end_whole`: audio a decode misses was lost in its middle, not cut
off), a frame header and its CRC-8 (`_flac_frame_header`), a frame's CRC-16."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tagger.audio.endtags import _trailing_tags
from tagger.containers import id3v2_length


def _flac_end_whole(path: Path, total: int, at: int | None = None) -> bool:
    """Whether a FLAC file ends on a whole frame (its CRC-16 right) whose last sample is the
    `total`-th its STREAMINFO declares: its end is there, and audio missing from a decode was lost
    in its middle (damaged frames that the decoders skip), not cut off. Reads its STREAMINFO and its
    last 256 KiB; its audio ends before the tags some taggers append (`_trailing_tags`: ID3v1,
    APEv2), and its last frame is looked for among the headers within STREAMINFO's largest frame of
    its end (a few at most). `at`: where the stream whose STREAMINFO is read begins (the last of a
    file of FLACs joined: `tagger.audio.joined`); None: after the ID3v2 tag at the file's start."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10)) if at is None else at
            f.seek(start)
            head = f.read(4 + 4 + 10)
            if head[:4] != b"fLaC" or head[4] & 0x7F != 0:
                return False
            nominal = int.from_bytes(head[10:12], "big")  # (STREAMINFO's largest block: a fixed-size stream's)
            largest = int.from_bytes(head[15:18], "big")  # (its largest frame in bytes; 0: not known)
            end, _tags = _trailing_tags(f, size)  # (an ID3v1 or APEv2 tag that some taggers append)
            first = max(start, end - (1 << 18))
            f.seek(first)
            data = f.read(end - first)
    except OSError:
        return False
    tries = 0
    for i in range(len(data) - 6, -1, -1):
        if largest and len(data) - i > largest:
            break  # (no frame is that long)
        if data[i] != 0xFF or data[i + 1] not in (0xF8, 0xF9):
            continue
        frame = _flac_frame_header(data, i)
        if frame is None:
            continue
        number, blocksize = frame
        first_sample = number if data[i + 1] == 0xF9 else number * nominal
        if _crc16_flac(data[i:-2]) == int.from_bytes(data[-2:], "big"):
            return first_sample + blocksize == total
        tries += 1
        if tries == 4:  # (the last frame begins at one of the last headers, past a false one or two inside it;
            break  # a cut one is no frame: each header tried is a CRC-16 in Python over all that follows)
    return False


def _flac_last_frame(path: Path, total: int, at: int) -> int | None:
    """Where the header of the frame that holds the last of the `total` samples the STREAMINFO of the
    FLAC stream at `at` declares lies in the file's last 256 KiB (before the tags at its end: the
    stream ends within a frame of it, junk or another file after it); None where none does."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(at)
            nominal = int.from_bytes(f.read(12)[10:12], "big")
            end, _tags = _trailing_tags(f, size)
            first = max(at, end - (1 << 18))
            f.seek(first)
            data = f.read(end - first)
    except OSError:
        return None
    i = len(data)
    while True:  # (the headers from the last on: FF F8 of a fixed block size, FF F9 of a variable one)
        i = max(data.rfind(b"\xff\xf8", 0, i + 1), data.rfind(b"\xff\xf9", 0, i + 1))
        if i < 0:
            return None
        frame = _flac_frame_header(data, i)
        if frame is not None and (frame[0] if data[i + 1] == 0xF9 else frame[0] * nominal) + frame[1] == total:
            return first + i
        i -= 1


def _flac_frame_header(data: bytes, i: int) -> tuple[int, int] | None:
    """(frame or sample number, block size) of the FLAC frame header at ``data[i]`` whose CRC-8 is
    right; None where none is."""
    if i + 6 > len(data):
        return None
    code, rate = data[i + 2] >> 4, data[i + 2] & 0x0F
    if code == 0 or rate == 15 or data[i + 3] & 1:
        return None
    j, lead = i + 4, data[i + 4]
    extra = next((n for n, mask in enumerate((0x80, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF)) if lead & mask == (mask << 1) & 0xFF), None)
    if extra is None or j + 1 + extra > len(data):
        return None
    number = lead & (0x7F >> (extra + 1)) if extra else lead
    for k in range(1, extra + 1):
        if data[j + k] & 0xC0 != 0x80:
            return None
        number = number << 6 | data[j + k] & 0x3F
    j += 1 + extra
    if code == 6:
        blocksize, j = data[j] + 1 if j < len(data) else 0, j + 1
    elif code == 7:
        blocksize, j = int.from_bytes(data[j : j + 2], "big") + 1, j + 2
    else:
        blocksize = 192 if code == 1 else 576 << (code - 2) if code <= 5 else 256 << (code - 8)
    j += 1 if rate == 12 else 2 if rate in (13, 14) else 0
    if j >= len(data) or _crc8_flac(data[i:j]) != data[j]:
        return None
    return number, blocksize


def _crc8_flac(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else crc << 1
    return crc


@functools.lru_cache(maxsize=1)
def _crc16_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        r = i << 8
        for _ in range(8):
            r = ((r << 1) ^ 0x8005) & 0xFFFF if r & 0x8000 else r << 1
        table.append(r)
    return tuple(table)


def _crc16_flac(data: bytes) -> int:
    """A FLAC frame's CRC-16 (polynomial 0x8005, not reflected) of `data`."""
    table, crc = _crc16_table(), 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc

"""How an MP3's frames end, read from its last few frames (`_mp3_tail`: on a whole frame, or inside
one, cut), and where a last frame's audio ends inside it (`_mp3_audio_end`: a layer III frame's
side info, a layer II frame's bit allocation, `_mp2_bits`; the "LAME3.100" lame writes after its
audio, `_lame_ancillary`), so that the zero bytes a whole frame ends on are not taken for a cut."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tagger.audio.endtags import _mp3_ends, _without_padding
from tagger.audio.mp3frames import MP3_MAX_FRAME, _mp3_frame, _mp3_frames_at
from tagger.containers import id3v2_length


@dataclass(frozen=True)
class _Mp3Tail:
    """How an MP3's frames end (`_mp3_tail`)."""

    end: int
    """Where its audio ends: before the tags at the end of the file (`_trailing_tags`)."""
    trailing: list[str]
    """The names of those tags, the last one first ("an ID3v1 tag")."""
    held: int
    """The bytes the file holds of its last frame where it ends inside it (cut), 0 where it ends on
    a whole frame."""
    length: int
    """That frame's length in bytes (0 where even its header is cut)."""


def _mp3_tail(path: Path) -> _Mp3Tail | None:
    """How the frames of an MP3 end before the tags at its end, read from its last few frames (a
    few KiB, whatever its length: not `_mp3_walk`'s walk from the first): on a whole frame, or inside
    one (cut: a copy or download that stopped). None where no chain of frames reaches its end
    (bytes that are neither frames nor tags there) or it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            end, padded, trailing = _mp3_ends(f, size)
            first = max(start, end - 4 * MP3_MAX_FRAME)
            f.seek(first)
            data = f.read(min(padded, end + MP3_MAX_FRAME) - first)  # (a frame may end on zero bytes)
    except (OSError, ValueError):
        return None
    found = _mp3_frames_at(data[: 2 * MP3_MAX_FRAME + 4])
    if found is None:
        return None
    pos, stop = found[0], end - first
    while pos < stop:
        frame = _mp3_frame(data, pos)
        if frame is None:  # (the header itself cut, 1-3 bytes of it left, or bytes that are no frame)
            left = data[pos:stop]
            header = len(left) < 4 and left[0] == 0xFF and (len(left) == 1 or left[1] & 0xE0 == 0xE0)
            return _Mp3Tail(end, trailing, len(left), 0) if header else None
        if pos + frame[1] > stop and first + pos + frame[1] != padded:
            # (its end past the file's bytes, or inside zeros that go on past it: a download stopped
            # inside it, its file preallocated; a frame ending exactly where they do holds them itself,
            # as does one whose audio ends where they begin: its ancillary bytes zero, then padding)
            whole = _mp3_audio_end(data, pos) if first + pos + frame[1] < padded else None
            if whole is not None and whole[0] <= stop <= whole[1]:
                pos += frame[1]
                break
            held = (stop if first + pos + frame[1] < padded else padded - first) - pos
            return _Mp3Tail(end, trailing, held, frame[1])
        pos += frame[1]
    return _Mp3Tail(first + pos, trailing if first + pos < padded else _without_padding(trailing), 0, 0)


def _mp3_audio_end(data: bytes, pos: int) -> tuple[int, int] | None:
    """Where in `data` the zero bytes after the MPEG layer III frame at ``data[pos]``, the last frame
    of its file, may begin for the frame to be whole: (from, to). Its audio ends at `to`: its main
    data, read from its side info (where it begins, `main_data_begin` bytes back in the frames before,
    and its granules' bits, `part2_3_length`); a last frame's bytes after it are its ancillary data,
    no audio, which an encoder may write as zero bytes (lame writes 0x55 and 0xAA, others zeros). So
    zeros that begin there, or up to 2 bytes before (its main data's own last bytes may be zero), or,
    in a frame without main data of its own (silence), anywhere after its side info's last
    `part2_3_length` (the rest of a silent granule's side info may be zero), and go on past the
    frame's end are no sign of a frame cut short; nor are zeros that begin after the "LAME3.100"
    lame writes after its audio (`_lame_ancillary`: `to` past it). A download that stopped inside a
    frame stops there one time in a few hundred (in a frame of the middle, the bytes after its audio
    are the next frames', not zeros). A layer II frame's audio ends where its bits do (`_mp2_bits`;
    its encoder zero-fills the rest: ffmpeg's and twolame's). None where the frame is of layer I or
    its side info is cut."""
    if pos + 4 > len(data):
        return None
    h = int.from_bytes(data[pos : pos + 4], "big")
    if (h >> 17) & 3 == 2:
        used = _mp2_bits(data, pos)
        return None if used is None else (pos + (used + 7) // 8 - 2, pos + (used + 7) // 8)
    if (h >> 17) & 3 != 1:
        return None
    mpeg1, mono = (h >> 19) & 3 == 3, (h >> 6) & 3 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    at = pos + 4 + (0 if (h >> 16) & 1 else 2)  # (a CRC after the header where its protection bit is 0)
    if at + side > len(data):
        return None
    bits, n = int.from_bytes(data[at : at + side], "big"), 8 * side
    begin = bits >> (n - (9 if mpeg1 else 8))
    read = (9 + (5 if mono else 3) + 4 * (1 if mono else 2)) if mpeg1 else (8 + (1 if mono else 2))  # (scfsi too)
    total = fields = 0
    for _ in range((2 if mpeg1 else 1) * (1 if mono else 2)):
        total += (bits >> (n - read - 12)) & 0xFFF
        fields = read + 12
        read += 59 if mpeg1 else 63
    own = max(0, (total + 7) // 8 - begin)
    frame = _mp3_frame(data, pos)
    ends, anc = at + side + own, 8 * (at + side) + max(0, total - 8 * begin)  # (the bit its audio ends on)
    lame = _lame_ancillary(data, anc, pos + (frame[1] if frame else 0))
    return (at + (fields + 7) // 8 if not own else ends - 2), max(ends, lame)


_MP2_STEPS = ((0, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383, 32767, 65535),
              (0, 3, 5, 7, 9, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 65535),
              (0, 3, 5, 7, 9, 15, 31, 65535), (0, 3, 5, 65535),
              (0, 3, 5, 9, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383, 32767),
              (0, 3, 5, 9, 15, 31, 63, 127),
              (0, 3, 5, 7, 9, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383), (0, 3, 5, 9))  # fmt: skip
_MP2_TABLES = ((0,) * 3 + (1,) * 8 + (2,) * 12 + (3,) * 4, (0,) * 3 + (1,) * 8 + (2,) * 12 + (3,) * 7,
               (4,) * 2 + (5,) * 6, (4,) * 2 + (5,) * 10, (6,) * 4 + (5,) * 7 + (7,) * 19)  # fmt: skip
"""Layer II's bit allocation tables (ISO 11172-3 B.2a-d, 13818-3 B.1 for MPEG-2): each subband's
quantisation steps (`_MP2_STEPS`, their allocation read in 4, 3 or 2 bits: 16, 8 or 4 of them)."""


def _mp2_bits(data: bytes, pos: int) -> int | None:
    """The bits of the MPEG layer II frame at ``data[pos]`` its audio takes (header, CRC, bit
    allocation, scale factor selection, scale factors and 12 granules of samples); None where its
    bit allocation is cut."""
    frame = _mp3_frame(data, pos)
    if frame is None:
        return None
    kbps, length, hz = frame
    h = int.from_bytes(data[pos : pos + 4], "big")
    mode, nch = (h >> 6) & 3, 1 if (h >> 6) & 3 == 3 else 2
    per = kbps // nch
    if (h >> 19) & 3 != 3:
        table = _MP2_TABLES[4]
    elif (hz == 48000 and per >= 56) or 56 <= per <= 80:
        table = _MP2_TABLES[0]
    else:
        table = _MP2_TABLES[1 if hz != 48000 and per >= 96 else 2 if hz != 32000 and per <= 48 else 3]
    bound = min(len(table), ((h >> 4) & 3) * 4 + 4) if mode == 1 else len(table)  # (joint stereo's)
    if pos + length > len(data):
        return None
    bits, n = int.from_bytes(data[pos : pos + length], "big"), 8 * length
    at = 32 + (0 if (h >> 16) & 1 else 16)

    def read(width: int) -> int:
        nonlocal at
        at += width
        return (bits >> (n - at)) & ((1 << width) - 1) if at <= n else 0

    steps = []
    for sb, kind in enumerate(table):
        width = len(_MP2_STEPS[kind]).bit_length() - 1
        steps.append([_MP2_STEPS[kind][read(width)] for _ in range(nch)] if sb < bound else
                     [_MP2_STEPS[kind][read(width)]] * nch)  # fmt: skip
    factors = sum((18, 12, 6, 12)[read(2)] for both in steps for step in both if step)
    samples = sum({3: 5, 5: 7, 9: 10}.get(step) or 3 * (step + 1).bit_length() - 3
                  for sb, both in enumerate(steps) for step in (both if sb < bound else both[:1]) if step)  # fmt: skip
    return at + factors + 12 * samples if at <= n else None


def _lame_ancillary(data: bytes, bit: int, end: int) -> int:
    """Where the ancillary data LAME writes after a frame's audio ends, found beginning at bit `bit`
    of `data` (where the frame's main data ends, anywhere in a byte) or a few bits on, before `end`
    (the frame's end): "LAME" and its version ("LAME3.100", "LAME3.99r", cut where the frame ends);
    0 where none begins there. lame writes 0x55 and 0xAA after it, but zero bytes without its bit
    reservoir (``lame --nores``, ffmpeg's ``-reservoir 0``), in every frame: a whole last frame's
    zeros then begin up to 9 bytes past its audio."""
    chunk = data[bit // 8 : min(end, len(data), bit // 8 + _LAME_ANCILLARY + 2)]
    for skip in range(bit % 8, bit % 8 + 9):
        n = 8 * len(chunk) - skip
        if n < 8:
            return 0
        text = ((int.from_bytes(chunk, "big") & ((1 << n) - 1)) >> (n % 8)).to_bytes(n // 8, "big")
        count = 0
        for i, byte in enumerate(text[:_LAME_ANCILLARY]):
            if (byte != b"LAME"[i]) if i < 4 else (byte not in b"0123456789.abcdefghijklmnopqrstuvwxyz"):
                break
            count = i + 1
        if count >= min(4, len(text)):
            return bit // 8 + (skip + 8 * count + 7) // 8
    return 0


_LAME_ANCILLARY = 16
"""The most bytes of "LAME" and its version read after a frame's audio (`_lame_ancillary`)."""

"""The audio track of a Matroska or WebM file (`tagger.audio.matroska`) and the samples of its blocks:
its TrackEntry read (`_Track`, `_read_track`: codec, rate, channels, CodecDelay, DefaultDuration, a
Vorbis track's window sizes), a block's lacing undone (`_frames`), and the nanoseconds of audio in a
block as its codec tells them (`_block_ns`: an Opus TOC, a Vorbis packet's mode, frames of one size,
MP3, FLAC, TrueHD/MLP access units, PCM's bytes), and whether they are told (`_told`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tagger.audio.ebml import _children, _vint
from tagger.audio.ogg import _flac_samples, _opus_samples, _vorbis_modes

_FIXED_FRAMES = {"A_AAC": 1024, "A_AC3": 1536, "A_EAC3": 1536, "A_DTS": 512, "A_MPEG/L2": 1152, "A_MPEG/L1": 384}
"""Samples in each frame of a codec whose frames are of one size (AAC-LC and HE-AAC's core rate,
AC-3, E-AC-3 of 6 blocks, DTS core, MPEG layer I/II)."""
_OPUS_MAX = 5760
"""The most samples an Opus packet holds (120 ms: RFC 6716 section 3.2.5); a TOC that says more is
damage (bytes cut out of a block: 600 ms of a 20 ms one's), its length not told."""


@dataclass
class _Track:
    """The first audio track: its number, codec, what tells its blocks' samples."""

    number: int = 0
    codec: str = ""
    rate: float = 0.0
    channels: int = 1
    bits: int = 0
    delay: int = 0
    """CodecDelay (ns): an Opus stream's pre-skip, decoded but not given."""
    default: int = 0
    """DefaultDuration (ns) of a frame."""
    vorbis: tuple[int, int, tuple[bool, ...]] | None = None
    """(short block, long block, each mode's long flag) of a Vorbis track."""
    unit_ns: int = 0
    """Nanoseconds of an access unit of a TrueHD or MLP track (`_mlp_unit`)."""


def _read_track(body: bytes) -> _Track | None:
    """The track of a TrackEntry's `body`; None where it is not of audio."""
    track, kind, private, encoded = _Track(), 0, b"", False
    for eid, value in _children(body):
        number = int.from_bytes(value, "big") if len(value) <= 8 else 0
        if eid == 0xD7:
            track.number = number
        elif eid == 0x83:
            kind = number
        elif eid == 0x86:
            track.codec = value.decode("ascii", "replace").rstrip("\x00")
        elif eid == 0x63A2:
            private = value
        elif eid == 0x6D80:  # (ContentEncodings: frames compressed or their headers stripped, not told)
            encoded = True
        elif eid == 0x56AA:
            track.delay = number
        elif eid == 0x23E383:
            track.default = number
        elif eid == 0xE1:
            for sub, v in _children(value):
                if sub == 0xB5 and len(v) in (4, 8):
                    track.rate = struct.unpack(">f" if len(v) == 4 else ">d", v)[0]
                elif sub == 0x9F:
                    track.channels = int.from_bytes(v, "big") or 1
                elif sub == 0x6264:
                    track.bits = int.from_bytes(v, "big")
    if kind != 2:
        return None
    if encoded:
        track.codec = "encoded"  # (its frames' samples not told: its DefaultDuration alone)
    if track.codec in ("A_TRUEHD", "A_MLP") and track.rate:
        track.unit_ns = int(_mlp_unit(track) * 1_000_000_000 / track.rate)
    if track.codec == "A_VORBIS" and private[:1] == b"\x02":  # (three headers, Xiph-laced)
        laced = _xiph_sizes(private, 1, 2)
        if laced is None:
            return track
        sizes, at = laced
        ident, setup = private[at : at + sizes[0]], private[at + sizes[0] + sizes[1] :]
        modes = _vorbis_modes(setup)
        if len(ident) >= 29 and ident[:7] == b"\x01vorbis" and modes:
            track.vorbis = (1 << (ident[28] & 0x0F), 1 << (ident[28] >> 4), modes)
    return track


def _xiph_sizes(data: bytes, at: int, count: int) -> tuple[list[int], int] | None:
    """`count` Xiph-laced sizes read from `data` at `at` (each a run of 255s and the byte ending
    it: a Vorbis track's CodecPrivate, a Xiph-laced block) and where they end; None where `data`
    ends first."""
    sizes = []
    for _ in range(count):
        size = 0
        while at < len(data) and data[at] == 255:
            size, at = size + 255, at + 1
        if at >= len(data):
            return None
        sizes.append(size + data[at])
        at += 1
    return sizes, at


def _frames(track: _Track, payload: bytes, flags: int) -> list[bytes] | None:
    """The frames of a block's `payload` (after its track, timestamp and flags), its lacing undone;
    None where the lacing is cut or invalid."""
    lacing = flags >> 1 & 3
    if not lacing:
        return [payload]
    if not payload:
        return None
    count, at, sizes = payload[0] + 1, 1, []
    if lacing == 1:  # (Xiph)
        laced = _xiph_sizes(payload, at, count - 1)
        if laced is None:
            return None
        sizes, at = laced
    elif lacing == 3:  # (EBML: the first size, then signed differences)
        for i in range(count - 1):
            v = _vint(payload, at)
            if v is None:
                return None
            size = v[0] if i == 0 else sizes[-1] + v[0] - ((1 << (7 * v[1] - 1)) - 1)
            sizes.append(size)
            at += v[1]
    else:  # (fixed)
        if (len(payload) - 1) % count:
            return None
        sizes = [(len(payload) - 1) // count] * (count - 1)
    frames = []
    for size in sizes:
        if size < 0 or at + size > len(payload):
            return None
        frames.append(payload[at : at + size])
        at += size
    frames.append(payload[at:])
    return frames


def _mlp_unit(track: _Track) -> int:
    """The samples of a TrueHD or MLP access unit of `track`: 40 at 44.1 or 48 kHz, more above."""
    return 40 * int(track.rate) // (44_100 if int(track.rate) % 44_100 == 0 else 48_000)


def _block_ns(track: _Track, payload: bytes, flags: int, before: bytes | None, size: int) -> int | None:
    """Nanoseconds of audio in a block of `track` (its `payload` after the flags): from each frame's
    samples as its codec tells them (an Opus TOC, a Vorbis packet's mode and the block before it
    `before`'s, frames of one size, PCM's bytes: `size`, the payload's declared, of a block cut by
    the file's end), or its track's DefaultDuration; None where not told."""
    frames = _frames(track, payload, flags)
    if frames is None:
        return None
    samples = 0
    if track.codec == "A_OPUS":
        for frame in frames:
            n = _opus_samples(frame)
            if n is None or n > _OPUS_MAX:
                return None
            samples += n
        return samples * 1_000_000_000 // 48_000
    if not track.rate:
        return None
    if track.codec == "A_VORBIS" and track.vorbis:
        short, long, modes = track.vorbis
        width = (len(modes) - 1).bit_length()
        previous = None
        if before:
            mode = before[0] >> 1 & ((1 << width) - 1)
            previous = (long if modes[mode] else short) if mode < len(modes) else None
        for frame in frames:
            if not frame or frame[0] & 1:
                return None
            mode = frame[0] >> 1 & ((1 << width) - 1)
            if mode >= len(modes):
                return None
            current = long if modes[mode] else short
            if modes[mode]:
                previous = long if frame[0] >> (1 + width) & 1 else short
            samples += ((previous or short) + current) // 4
            previous = current
    elif track.codec in _FIXED_FRAMES:
        samples = _FIXED_FRAMES[track.codec] * len(frames)
    elif track.codec == "A_MPEG/L3":
        for frame in frames:
            if len(frame) < 2 or frame[0] != 0xFF:
                return None
            samples += 1152 if frame[1] >> 3 & 3 == 3 else 576
    elif track.codec == "A_FLAC":
        for frame in frames:
            n = _flac_samples(frame)
            if n is None:
                return None
            samples += n
    elif track.codec in ("A_TRUEHD", "A_MLP"):
        unit = _mlp_unit(track)
        for frame in frames:
            at = 0
            while at + 4 <= len(frame):  # (each unit's length in 16-bit words: its first 12 bits but 4)
                words = (frame[at] & 0x0F) << 8 | frame[at + 1]
                if words < 2:
                    return None
                samples, at = samples + unit, at + 2 * words
            if at != len(frame):
                return None
    elif track.codec.startswith("A_PCM/") and track.bits:
        samples = (size - 1 if flags >> 1 & 3 else size) // max(1, track.channels * track.bits // 8)
    elif track.default:
        return track.default * len(frames)
    else:
        return None
    return int(samples * 1_000_000_000 / track.rate)


def _told(track: _Track) -> bool:
    """Whether `_block_ns` tells the samples of the blocks of `track`."""
    if track.codec == "A_OPUS" or track.default:
        return True
    if not track.rate:
        return False
    return (track.codec in _FIXED_FRAMES or track.codec in ("A_MPEG/L3", "A_FLAC", "A_TRUEHD", "A_MLP")
            or (track.codec == "A_VORBIS" and track.vorbis is not None)
            or (track.codec.startswith("A_PCM/") and track.bits > 0))  # fmt: skip

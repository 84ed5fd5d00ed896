"""A Matroska or WebM file's clusters walked for its first audio track's timeline (`_matroska_walk`),
where the file declares no length (a live-written WebM: no Duration in its Segment Info, no
DURATION tag, no Cues; what ffmpeg writes with ``-live 1``, a browser's MediaRecorder, OBS):
the gaps between consecutive clusters' audio (clusters lost from its middle) and a last cluster
cut short, which ffmpeg passes over without a word (`_check_matroska_live`). Elements of other
tracks (video) are passed over by their sizes, never read. And whether its Segment Info declares a
Duration (`_declares_duration`; where not, ffprobe's lengths are estimates from the bit rate)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.audio.losses import _note_or_refuse
from tagger.audio.ogg import _opus_samples, _vorbis_modes

_SEGMENT, _CLUSTER, _INFO, _TRACKS = 0x18538067, 0x1F43B675, 0x1549A966, 0x1654AE6B
_TIMECODE, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK, _BLOCK_DURATION = 0xE7, 0xA3, 0xA0, 0xA1, 0x9B
_CLUSTER_CHILDREN = frozenset({_TIMECODE, 0xA7, 0xAB, _SIMPLE_BLOCK, _BLOCK_GROUP, 0xAF, 0x5854, 0xBF, 0xEC})
"""The elements a Cluster holds (Timecode, Position, PrevSize, SimpleBlock, BlockGroup,
EncryptedBlock, SilentTracks, CRC-32, Void): a cluster of unknown size (a MediaRecorder's) ends at
the first element that is none of them (the next Cluster, Cues, Tags)."""
_FIXED_FRAMES = {"A_AAC": 1024, "A_AC3": 1536, "A_EAC3": 1536, "A_DTS": 512, "A_MPEG/L2": 1152, "A_MPEG/L1": 384}
"""Samples in each frame of a codec whose frames are of one size (AAC-LC and HE-AAC's core rate,
AC-3, E-AC-3 of 6 blocks, DTS core, MPEG layer I/II)."""
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


@dataclass(frozen=True)
class MatroskaWalk:
    """The first audio track's timeline in a Matroska file's clusters (`_matroska_walk`)."""

    span: float
    """Seconds from its first block's timestamp to its last's end (the rest of a cut block counted
    where known), less its codec's delay: what a whole file decodes to."""
    gaps: int
    """How many times a cluster's first audio block begins after the end of the previous cluster's last."""
    lost: float
    """Seconds of those gaps together."""
    cut: bool
    """Whether the file ends inside an element of its last cluster (or of its Segment)."""
    rest: float | None
    """Seconds of audio in the cut block missing from the file, where that block is its cluster's
    last element and its head is there; None where how much is missing is not known."""


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
            if n is None:
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
    elif track.codec.startswith("A_PCM/") and track.bits:
        samples = (size - 1 if flags >> 1 & 3 else size) // max(1, track.channels * track.bits // 8)
    elif track.default:
        return track.default * len(frames)
    else:
        return None
    return int(samples * 1_000_000_000 / track.rate)


def _matroska_walk(path: Path) -> MatroskaWalk | None:
    """The first audio track's timeline, read from the file's clusters one after another: each
    cluster's Timecode and its blocks' heads (their track and relative timestamp), of the last block
    of the audio track in each cluster its frames too (the samples its codec tells), other elements
    passed over by their sizes. None where it cannot be told (no audio track, a codec whose blocks'
    samples are not told, no cluster, a file not of EBML)."""
    try:
        with open(path, "rb", buffering=4096) as f:  # (a page a read: a video's blocks passed over unread)
            return _walk(f, os.fstat(f.fileno()).st_size)
    except OSError:
        return None


def _segment(f) -> tuple[int, int | None] | None:
    """Where the Segment's children begin in the open file `f` and the Segment's size (None:
    unknown, a live-written file's); None where `f` is no EBML file or holds no Segment after its
    EBML header."""
    ebml = _element(f.read(_HEAD))
    if ebml is None or ebml[0] != 0x1A45DFA3 or ebml[2] is None:
        return None
    pos = ebml[1] + ebml[2]
    f.seek(pos)
    seg = _element(f.read(_HEAD))
    if seg is None or seg[0] != _SEGMENT:
        return None
    return pos + seg[1], seg[2]


def _walk(f, size: int) -> MatroskaWalk | None:
    segment = _segment(f)
    if segment is None:
        return None
    pos, seg_size = segment
    end = size if seg_size is None else min(size, pos + seg_size)
    scale, track = 1_000_000, None
    clusters: list[tuple[int | None, tuple[int, int] | None]] = []  # (first audio block's ns, (last's ns, its end))
    pairs: list[tuple[int, int]] = []
    cut, cut_block = False, None
    while pos < end:
        f.seek(pos)
        el = _element(f.read(_HEAD))
        if el is None:
            cut = pos + _HEAD > size  # (an element's head cut)
            break
        eid, hl, length = el
        if eid == _CLUSTER:
            if track is None:
                return None
            got = _cluster(f, track, scale, pos + hl, length, end)
            if got is None:
                return None
            stop, start, last, cut, cut_block, pair = got
            clusters.append((start, last))
            if pair is not None:
                pairs.append(pair)
            if cut:
                break
            pos = stop
            continue
        if length is None:  # (another element of unknown size: nothing after it is told)
            break
        if pos + hl + length > end:
            cut = pos + hl + length > size
            break
        if eid in (_INFO, _TRACKS) and length <= 1 << 20:
            f.seek(pos + hl)
            for sub, value in _children(f.read(length)):
                if eid == _INFO and sub == 0x2AD7B1:
                    scale = int.from_bytes(value, "big") or scale
                elif eid == _TRACKS and sub == 0xAE and track is None:
                    track = _read_track(value)
        pos += hl + length
    if track is None:
        return None
    stretch = _stretch(pairs, 2 * scale + 500_000)
    first = last_end = rest = None
    gaps, lost, slack = 0, 0, 0
    for start, last in clusters:
        if start is not None:
            if first is None:
                first = start
            elif last_end is not None and start - last_end > slack:
                gaps, lost = gaps + 1, lost + start - last_end
        if last is not None:
            told = round((last[1] - last[0]) * stretch)
            # (timestamps rounded to the tick, each: two ticks; a recorder's jitter: half a block)
            slack, last_end = max(2 * scale + 500_000, told // 2), last[0] + told
    if cut and cut_block is not None and last_end is not None:
        rest = max(cut_block[0] + round((cut_block[1] - cut_block[0]) * stretch) - last_end, 0)
    if first is None or last_end is None:
        return None
    span = ((last_end + (rest or 0)) - first - track.delay) / 1e9
    return MatroskaWalk(span, gaps, lost / 1e9, cut, None if rest is None else rest / 1e9)


def _stretch(pairs: list[tuple[int, int]], tolerance: int) -> float:
    """How much longer than their codec tells the blocks of a track are, measured in its clusters:
    `pairs` holds, of each cluster with two audio blocks or more, the spacing (ns) of its last two
    blocks' timestamps and the length its codec tells of the first of them. The median of their
    ratios (one where they agree within `tolerance`, two ticks of rounding), where it is off by more
    than a quarter; else 1. A codec's nominal length can be wrong for a whole file (an HE-AAC track
    whose SamplingFrequency is its output rate, each frame 2,048 samples of it, not 1,024: every
    cluster's end half a frame early, a gap after each, the whole file refused); its own timestamps
    are not. The median, not the sum: a gap inside a cluster is one ratio of many; and not of the
    ratios that disagree alone: timestamps rounded from a coarser file's (mkvmerge's of a live MKA,
    a millisecond off in a third of them) disagree a little either way."""
    ratios = sorted(1.0 if abs(spacing - told) <= tolerance else spacing / told
                    for spacing, told in pairs if told > 0 and spacing > 0)  # fmt: skip
    middle = ratios[len(ratios) // 2] if ratios else 1.0
    return 1.0 if 0.8 <= middle <= 1.25 else middle


def _cluster(f, track: _Track, scale: int, body: int, length: int | None, end: int):
    """One cluster's walk: (where it ends, its first audio block's timestamp (ns), (its last whole
    one's timestamp, its end) (ns), whether the file ends inside it, (the timestamp, the end) (ns) of
    the audio block cut by the file's end where it is the cluster's last element and its samples are
    told, (the spacing of its last two audio blocks' timestamps, the length told of the first of
    them) (ns) for `_stretch`); None where the samples of its last whole audio block are not told."""
    stop = end if length is None else body + length
    cut = length is not None and stop > end
    stop = min(stop, end)
    pos, timecode = body, 0
    blocks: list[tuple[int, int, int, int, int]] = []  # (ns, payload at, payload size, flags, duration ns or -1)
    cut_block = None
    while pos < stop:
        f.seek(pos)
        head = f.read(_HEAD)
        el = _element(head)
        if el is None:
            cut = cut or pos + _HEAD > end
            if not cut:
                return None
            break
        eid, hl, size = el
        if length is None and eid not in _CLUSTER_CHILDREN:
            stop = pos  # (a cluster of unknown size ends at the first element not its own)
            break
        if size is None:
            return None
        inside = pos + hl + size > stop  # (cut by the file's end)
        cut = cut or inside
        if eid == _TIMECODE:
            timecode = int.from_bytes(head[hl : hl + size], "big") if size <= 8 else 0
        elif eid in (_SIMPLE_BLOCK, _BLOCK_GROUP):
            at, inner, duration = pos + hl, size, -1
            if eid == _BLOCK_GROUP:
                found = None
                f.seek(at)
                group = f.read(min(size, 1 << 16))
                sub_at = 0
                while sub_at < len(group):
                    sub = _element(group, sub_at)
                    if sub is None or sub[2] is None:
                        break
                    if sub[0] == _BLOCK and found is None:
                        found = (at + sub_at + sub[1], sub[2])
                    elif sub[0] == _BLOCK_DURATION and sub[2] <= 8:
                        value = group[sub_at + sub[1] : sub_at + sub[1] + sub[2]]
                        duration = int.from_bytes(value, "big") * scale if len(value) == sub[2] else -1
                    sub_at += sub[1] + sub[2]
                if found is None:
                    pos += hl + size
                    continue
                at, inner = found
                f.seek(at)
                head = f.read(_HEAD)
            else:
                head = head[hl:]
            number = _vint(head, 0)
            if number is not None and number[0] == track.number and len(head) >= number[1] + 3:
                rel = int.from_bytes(head[number[1] : number[1] + 2], "big", signed=True)
                skip = number[1] + 3
                block = ((timecode + rel) * scale, at + skip, inner - skip, head[number[1] + 2], duration)
                if at + inner <= end:
                    blocks.append(block)
                elif length is not None and pos + hl + size == body + length:
                    cut_block = block  # (the cluster's last element: what is missing of the file, its rest)
        if inside:
            break
        pos += hl + size
    if not blocks:
        return stop, None, None, cut, None, None
    block_end = _block_end(f, track, blocks, -1, end)
    if block_end is None:
        return None
    cut_end = pair = None
    if cut and cut_block is not None:
        cut_end = _block_end(f, track, [*blocks, cut_block], -1, end)
    if len(blocks) > 1 and blocks[-2][4] < 0:  # (a BlockDuration is the block's own)
        before = _block_end(f, track, blocks, -2, end)
        if before is not None:
            pair = (blocks[-1][0] - blocks[-2][0], before - blocks[-2][0])
    return (stop, blocks[0][0], (blocks[-1][0], block_end), cut,
            None if cut_end is None else (cut_block[0], cut_end), pair)


def _block_end(f, track: _Track, blocks: list, index: int, end: int) -> int | None:
    """The end (ns) of ``blocks[index]``: its timestamp and its BlockDuration, or the samples of its
    frames (read from the file up to `end`, the block before it for a Vorbis packet's window)."""
    ns, at, size, flags, duration = blocks[index]
    if duration >= 0:
        return ns + duration
    before = None
    if track.codec == "A_VORBIS" and len(blocks) + index > 0:
        f.seek(blocks[index - 1][1])
        before = f.read(1)
    f.seek(at)
    payload = f.read(max(0, min(size, end - at, 1 << 20)))
    told = _block_ns(track, payload, flags, before, size)
    return None if told is None else ns + told


def _declares_duration(path: Path) -> bool:
    """Whether the file's Segment Info holds a Duration (read from the elements before its first
    Cluster): where it does not (a live-written file), ffprobe's length of the file and of its
    streams is an estimate from their bit rates (a 20 s MP3 in a live-written MKA was 'a 20.4 s
    stream', and refused as holding gaps). True where it cannot be told."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            segment = _segment(f)
            if segment is None:
                return True
            pos = segment[0]
            for _ in range(64):
                f.seek(pos)
                el = _element(f.read(_HEAD))
                if el is None or el[2] is None or el[0] == _CLUSTER or pos >= size:
                    return True
                if el[0] == _INFO:
                    f.seek(pos + el[1])  # (its body, after its head: not where the head's read ended)
                    return el[2] > 1 << 20 or any(sub == 0x4489 for sub, _ in _children(f.read(el[2])))
                pos += el[1] + el[2]
    except OSError:
        return True
    return True


def _check_matroska_live(path: Path, meta: AudioInfo, notes: list[str] | None) -> AudioInfo:
    """A Matroska or WebM stream whose file declares no length (`_ffprobe_info` found none), whose
    clusters hold gaps in its audio's timeline or whose last cluster is cut (`_matroska_walk`): gaps
    come under `_note_or_refuse`'s rule, worded as `tagger.audio.lengths._check_timeline` words the
    gaps of a file that declares its length (an ffmpeg ``-live 1`` WebM missing 1 s of its 20 s
    after its 8th cluster was analysed as a 19 s track without a word); the `meta` returned, for
    the decoder, has the timeline's span as its length, against which ffmpeg's ``File ended
    prematurely`` of a cut file is measured (its cut block's rest, where told; else, as before, how
    much is missing is not known, an error)."""
    if meta.duration or meta.decoder != "ffmpeg" or meta.demuxer != "matroska":
        return meta
    walk = _matroska_walk(path)
    if walk is None or walk.span <= 0:
        return meta
    if walk.gaps:
        _timeline_gaps(path, notes, lost=walk.lost, duration=walk.span)
    if walk.cut and walk.rest is None:
        return meta
    return replace(meta, duration=walk.span)


def _timeline_gaps(path: Path, notes: list[str] | None, *, lost: float, duration: float) -> None:
    """The note or refusal of a Matroska stream whose timeline spans `duration` seconds and holds
    `lost` seconds less: gaps (`_note_or_refuse`'s rule)."""
    holds = duration - lost
    span = f"its Matroska timestamps span {duration:.1f} s, of which the file holds {holds:.1f} s"
    why = "gaps in its timeline: frames a recording dropped, or a damaged copy lost"
    _note_or_refuse(path, notes, lost=lost, duration=duration, whole=True,
                    note=f"{span} ({why}): analysed without them ({lost:.3f} s of {duration:.1f} s left out)",
                    refusal=f"{span} ({why}); nothing stored, as a result would leave {lost:.1f} s out")

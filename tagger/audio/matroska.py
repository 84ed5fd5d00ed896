"""A Matroska or WebM file's clusters walked for its first audio track's timeline (`_matroska_walk`),
where the file declares no length (a live-written WebM: no Duration in its Segment Info, no
DURATION tag, no Cues; what ffmpeg writes with ``-live 1``, a browser's MediaRecorder, OBS):
the gaps between its audio blocks (clusters lost from its middle, blocks missing inside one,
frames a recording dropped; damage passed over to the next cluster, as ffmpeg does) and a last
cluster cut short, which ffmpeg passes over without a word (`_check_matroska_live`). Elements of other
tracks (video) are passed over by their sizes, never read. And whether its Segment Info declares a
Duration (`_declares_duration`; where not, ffprobe's lengths are estimates from the bit rate)."""

from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass, replace
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.errors import AudioReadError
from tagger.audio.losses import _note_or_refuse
from tagger.audio.ogg import _flac_samples, _opus_samples, _vorbis_modes

_SEGMENT, _CLUSTER, _INFO, _TRACKS = 0x18538067, 0x1F43B675, 0x1549A966, 0x1654AE6B
_TIMECODE, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK, _BLOCK_DURATION = 0xE7, 0xA3, 0xA0, 0xA1, 0x9B
_CLUSTER_CHILDREN = frozenset({_TIMECODE, 0xA7, 0xAB, _SIMPLE_BLOCK, _BLOCK_GROUP, 0xAF, 0x5854, 0xBF, 0xEC})
"""The elements a Cluster holds (Timecode, Position, PrevSize, SimpleBlock, BlockGroup,
EncryptedBlock, SilentTracks, CRC-32, Void): a cluster of unknown size (a MediaRecorder's) ends at
the first element that is none of them (the next Cluster, Cues, Tags)."""
_FIXED_FRAMES = {"A_AAC": 1024, "A_AC3": 1536, "A_EAC3": 1536, "A_DTS": 512, "A_MPEG/L2": 1152, "A_MPEG/L1": 384}
"""Samples in each frame of a codec whose frames are of one size (AAC-LC and HE-AAC's core rate,
AC-3, E-AC-3 of 6 blocks, DTS core, MPEG layer I/II)."""
_OPUS_MAX = 5760
"""The most samples an Opus packet holds (120 ms: RFC 6716 section 3.2.5); a TOC that says more is
damage (bytes cut out of a block: 600 ms of a 20 ms one's), its length not told."""
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
    unit_ns: int = 0
    """Nanoseconds of an access unit of a TrueHD or MLP track (`_mlp_unit`)."""


@dataclass(frozen=True)
class MatroskaWalk:
    """The first audio track's timeline in a Matroska file's clusters (`_matroska_walk`)."""

    span: float
    """Seconds from its first block's timestamp to its last's end (the rest of a cut block counted
    where known), less its codec's delay: what a whole file decodes to."""
    gaps: int
    """How many times an audio block begins after the end of the one before it (`_Timeline.gaps`)."""
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


def _matroska_walk(path: Path) -> MatroskaWalk | None:
    """The first audio track's timeline, read from the file's clusters one after another: each
    cluster's Timecode and its blocks' heads (their track and relative timestamp), of each block of
    the audio track its frames too (the samples its codec tells, from the bytes at the block's start;
    a laced block's read whole), other elements passed over by their sizes. Damage (an element that
    is none, or runs past its cluster's end) is passed over to the next Cluster, as ffmpeg resyncs
    there. None where it cannot be told (no audio track, a codec whose blocks' samples are not told,
    no cluster, a file not of EBML)."""
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


def _told(track: _Track) -> bool:
    """Whether `_block_ns` tells the samples of the blocks of `track`."""
    if track.codec == "A_OPUS" or track.default:
        return True
    if not track.rate:
        return False
    return (track.codec in _FIXED_FRAMES or track.codec in ("A_MPEG/L3", "A_FLAC", "A_TRUEHD", "A_MLP")
            or (track.codec == "A_VORBIS" and track.vorbis is not None)
            or (track.codec.startswith("A_PCM/") and track.bits > 0))  # fmt: skip


class _Timeline:
    """The audio track's blocks in the order the walk meets them (across clusters): the first one's
    timestamp, the last one's, and of each two in a row whose timestamps' spacing differs from the
    length its codec tells of the first by more than `tolerance` (two ticks of rounding), that
    spacing and length: a gap between them, or blocks longer than their codec tells (`_stretch`).
    Those that agree are counted alone (a whole file's: all of them, none kept); the lengths told of
    all are added up (`told`)."""

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self.first: int | None = None
        self.last: tuple[int, int | None, bool] | None = None  # (ns, length told (ns), a BlockDuration's)
        self.agree = 0
        self.apart = array("q")  # (spacing, length told, 1 for a BlockDuration's) of each that disagrees
        self.before: bytes | None = None  # (a Vorbis packet's window follows the packet before it)
        self.told = [0, 0]  # (the lengths told of all blocks: their codec's, their BlockDurations)
        self.before_last: tuple[int | None, bool] | None = None

    def add(self, ns: int, told: int | None, exact: bool) -> None:
        """The next block: its timestamp, its length told (None where not: taken as the one before's)
        and whether that is its BlockDuration."""
        if self.first is None:
            self.first = ns
        if told is None and self.last is not None:
            told, exact = self.last[1], self.last[2]
        if self.last is not None and self.last[1] is not None:
            spacing, length = ns - self.last[0], self.last[1]
            if abs(spacing - length) <= self.tolerance:
                self.agree += 1
            elif spacing > 0 and length > 0:
                self.apart.extend((spacing, length, int(self.last[2])))
        self.before_last = None if self.last is None else self.last[1:]
        self.last = (ns, told, exact)
        if told is not None:
            self.told[exact] += told

    def damaged(self) -> None:
        """Damage right after the last block: its bytes may be another's (bytes cut out from inside
        it), its length told wrong (600 ms of a 20 ms Opus block's): taken as the one before's."""
        if self.last is not None and self.before_last is not None:
            if self.last[1] is not None:
                self.told[self.last[2]] -= self.last[1]
            self.last = (self.last[0], *self.before_last)
            if self.last[1] is not None:
                self.told[self.last[2]] += self.last[1]

    def stretch(self) -> float:
        return _stretch([(s, t) for s, t, exact in zip(*[iter(self.apart)] * 3) if not exact], self.tolerance,
                        agree=self.agree)  # fmt: skip

    def length(self, told: int, exact: bool, stretch: float) -> int:
        return told if exact else round(told * stretch)

    def gaps(self, stretch: float, span: int) -> tuple[int, int]:
        """(how many, ns together) of the gaps: a block that begins after the end of the one before it
        (its length told, stretched) by more than two ticks and half a block (a recorder's jitter).
        Together at most what the timeline's `span` (ns) holds beyond the blocks' lengths: a block
        late by more than that whose next is as early (timestamps that jitter) loses nothing."""
        gaps = lost = 0
        for spacing, told, exact in zip(*[iter(self.apart)] * 3):
            length = self.length(told, bool(exact), stretch)
            if spacing - length > max(self.tolerance, length // 2):
                gaps, lost = gaps + 1, lost + spacing - length
        lost = min(lost, span - round(self.told[0] * stretch) - self.told[1])
        return (gaps, lost) if lost > self.tolerance else (0, 0)


def _walk(f, size: int) -> MatroskaWalk | None:
    segment = _segment(f)
    if segment is None:
        return None
    pos, seg_size = segment
    end = size if seg_size is None else min(size, pos + seg_size)
    scale, track, line = 1_000_000, None, None
    cut, cut_block = False, None
    while pos < end:
        f.seek(pos)
        head = f.read(_HEAD)
        el = _element(head)
        if el is None:
            if pos + _HEAD > size:  # (an element's head cut, or bytes after the last that are none)
                cut = _begins(head, (_CLUSTER,))
                break
            found = _next_cluster(f, pos + 1, end)  # (damage where a cluster begins: passed over to the next)
            if found is None:
                break
            pos = found
            continue
        eid, hl, length = el
        if eid == _CLUSTER:
            if track is None or not _told(track):
                return None
            line = line or _Timeline(2 * scale + 500_000)
            pos, cut, cut_block = _cluster(f, track, scale, pos + hl, length, end, line)
            if cut:
                break
            continue
        if length is None:  # (another element of unknown size: nothing after it is told)
            break
        if pos + hl + length > end:
            found = _next_cluster(f, pos + 1, end) if pos + hl + length > size else None
            if found is not None:  # (a damaged element's size: passed over to the next cluster)
                pos = found
                continue
            # (another element cut, no audio of it lost; or bytes appended that are none (an ID3v1
            # tag): no evidence of a cut, as a file that ends between two clusters)
            break
        if eid in (_INFO, _TRACKS) and length <= 1 << 20:
            f.seek(pos + hl)
            for sub, value in _children(f.read(length)):
                if eid == _INFO and sub == 0x2AD7B1:
                    scale = int.from_bytes(value, "big") or scale
                elif eid == _TRACKS and sub == 0xAE and track is None:
                    track = _read_track(value)
        pos += hl + length
    if track is None or line is None or line.first is None or line.last is None or line.last[1] is None:
        return None
    stretch = line.stretch()
    last_end = line.last[0] + line.length(line.last[1], line.last[2], stretch)
    gaps, lost = line.gaps(stretch, last_end - line.first)
    rest = None
    if cut and cut_block is not None:
        rest = max(cut_block[0] + round(cut_block[1] * stretch) - last_end, 0)
    span = ((last_end + (rest or 0)) - line.first - track.delay) / 1e9
    return MatroskaWalk(span, gaps, lost / 1e9, cut, None if rest is None else rest / 1e9)


def _stretch(pairs: list[tuple[int, int]], tolerance: int, *, agree: int = 0) -> float:
    """How much longer than their codec tells the blocks of a track are, measured by their own
    timestamps: `pairs` holds, of blocks in a row, the spacing (ns) of their timestamps and the
    length its codec tells of the first of them; `agree` more such that agree within `tolerance` (two
    ticks of rounding), each a ratio of one. The median of the ratios, where it is off by more than a
    quarter; else 1. A codec's nominal length can be wrong for a whole file (an HE-AAC track whose
    SamplingFrequency is its output rate, each frame 2,048 samples of it, not 1,024: every cluster's
    end half a frame early, a gap after each, the whole file refused); its own timestamps are not.
    The median, not the sum: a gap is one ratio of many; and not of the ratios that disagree alone:
    timestamps rounded from a coarser file's (mkvmerge's of a live MKA, a millisecond off in a third
    of them) disagree a little either way. Where it stretches, it is refined to the spacing over the
    lengths of the pairs that agree with the median within `tolerance`: the median of ratios each
    rounded to a tick (42 or 43 ms over 21.3) was 2.016, 94 ms too long over 12 s."""
    ratios = [1.0 if abs(spacing - told) <= tolerance else spacing / told
              for spacing, told in pairs if told > 0 and spacing > 0]  # fmt: skip
    below = sorted(r for r in ratios if r < 1.0)
    above = sorted(r for r in ratios if r > 1.0)
    ones = agree + len(ratios) - len(below) - len(above)
    k = (len(below) + ones + len(above)) // 2
    if not below and not above:
        return 1.0
    middle = below[k] if k < len(below) else 1.0 if k < len(below) + ones else above[k - len(below) - ones]
    if 0.8 <= middle <= 1.25:
        return 1.0
    # (each ratio off by its timestamps' rounding: the blocks' whole spacing over their lengths told,
    # of those near the median, the stretch of the file's length, not of one block's)
    near = [(spacing, told) for spacing, told in pairs if abs(spacing - told * middle) <= tolerance]
    return sum(s for s, _ in near) / sum(t for _, t in near) if near else middle


def _begins(tail: bytes, ids) -> bool:
    """Whether `tail`, the bytes at the file's end, too few for an element's head, begin one of the
    elements `ids` (a cut through its ID or size), not bytes that are none of them: a newline, a few
    zeros, an ID3v1 tag another tool appended to a whole file (each was noted as cut short, the file
    refused without notes)."""
    for eid in ids:
        code = eid.to_bytes((eid.bit_length() + 7) // 8, "big")
        n = min(len(code), len(tail))
        if n and tail[:n] == code[:n]:
            return True
    return False


def _next_cluster(f, start: int, end: int) -> int | None:
    """Where the next Cluster's ID lies in the file `f` from `start` on (before `end`): past damage,
    as ffmpeg's demuxer resyncs; None where there is none."""
    mark, pos = _CLUSTER.to_bytes(4, "big"), start
    while pos < end:
        f.seek(pos)
        chunk = f.read(min(1 << 16, end - pos))
        if not chunk:
            return None
        at = chunk.find(mark)
        if at >= 0:
            return pos + at
        if len(chunk) < 4:
            return None
        pos += len(chunk) - 3
    return None


def _cluster(f, track: _Track, scale: int, body: int, length: int | None, end: int, line: _Timeline):
    """One cluster's walk, its audio blocks added to `line`: (where the walk goes on, whether the file
    ends inside it, (the timestamp, the length told) (ns) of the audio block cut by the file's end
    where it is the cluster's last element (what is missing of the file: its rest), else None).
    Damage (an element that is none, of unknown size, or runs past the cluster's end inside the
    file; in a cluster of a known size, one that is no cluster's child) is passed over to the next
    Cluster (`_next_cluster`); where none follows, the file is taken as ending there (its last
    blocks missing)."""
    stop = end if length is None else min(body + length, end)
    pos, timecode = body, 0
    while pos < stop:
        f.seek(pos)
        head = f.read(_HEAD)
        el = _element(head)
        if el is not None and length is None and el[0] not in _CLUSTER_CHILDREN:
            return pos, False, None  # (a cluster of unknown size ends at the first element not its own)
        over = None if el is None or el[2] is None else pos + el[1] + el[2]
        if el is None and pos + _HEAD > end:  # (the file ends inside an element's head, or bytes that are none)
            ids = _CLUSTER_CHILDREN if length is not None else (*_CLUSTER_CHILDREN, _CLUSTER)
            return end, _begins(head, ids) or (length is not None and body + length > end), None
        if over is None or el[0] not in _CLUSTER_CHILDREN or (stop < over <= end):
            line.damaged()
            found = _next_cluster(f, pos + 1, end)  # (damage: ffmpeg resyncs at the next cluster too)
            return (end, True, None) if found is None else (found, False, None)
        eid, hl, size = el
        inside = over > end  # (cut by the file's end)
        found = _next_cluster(f, pos + 1, end) if inside else None
        if found is not None:
            line.damaged()
            return found, False, None  # (a damaged size, not the file's end)
        if eid == _TIMECODE:
            timecode = int.from_bytes(head[hl : hl + size], "big") if size <= 8 else 0
        elif eid in (_SIMPLE_BLOCK, _BLOCK_GROUP):
            block = _block(f, track, scale, eid, head[hl:], pos + hl, size, end, line)
            if block is not None:
                rel, told, exact = block
                ns = (timecode + rel) * scale
                if not inside:
                    line.add(ns, told, exact)
                elif length is not None and over == body + length and told is not None:
                    return end, True, (ns, told)  # (the cluster's last element: what is missing of the file)
        if inside:
            return end, True, None
        pos = over
    return stop, length is not None and body + length > end, None


def _block(f, track: _Track, scale: int, eid: int, head: bytes, at: int, size: int, end: int, line: _Timeline):
    """(its timestamp relative to its cluster's (ticks), its length told (ns) or None, whether that is
    its BlockDuration) of the block of the SimpleBlock or BlockGroup whose body is at `at` (`size`
    bytes; `head`, the bytes read there) where it is of the audio track; else None.
    A Vorbis packet's window follows the packet before it (`line`'s)."""
    duration = -1
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
            return None
        at, size = found
        f.seek(at)
        head = f.read(_HEAD)
    number = (head[0] & 0x7F, 1) if head and head[0] & 0x80 else _vint(head, 0)  # (its track: mostly one byte)
    if number is None or number[0] != track.number or len(head) < number[1] + 3:
        return None
    rel = int.from_bytes(head[number[1] : number[1] + 2], "big", signed=True)
    skip, flags = number[1] + 3, head[number[1] + 2]
    if duration >= 0:
        return rel, duration, True
    payload = head[skip:]
    if track.codec == "A_OPUS" and not flags & 0x06:  # (the most frequent: one packet, its TOC read)
        n = _opus_samples(payload)
        return rel, None if n is None or n > _OPUS_MAX else n * 1_000_000_000 // 48_000, False
    if track.unit_ns and not flags & 0x06 and len(payload) >= 2 and \
            ((payload[0] & 0x0F) << 8 | payload[1]) * 2 == size - skip:  # (one access unit, as ffmpeg writes)
        return rel, track.unit_ns, False
    if flags & 0x06 or track.codec in ("A_TRUEHD", "A_MLP"):  # (laced, or units to count: read whole)
        f.seek(at + skip)
        payload = f.read(max(0, min(size - skip, end - at - skip, 1 << 20)))
    told = _block_ns(track, payload, flags, line.before, size - skip)
    if track.vorbis:
        frames = [payload] if not flags & 0x06 else _frames(track, payload, flags)
        line.before = frames[-1][:1] if frames else None
    return rel, told, False


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
    prematurely`` of a cut file is measured (its cut block's rest, where told; else how much is
    missing is not known: the file is analysed as what it holds, with a note saying so, as an
    Ogg file missing its last pages (`_check_ogg_end`), an error for a caller that takes no notes;
    was: an error, whatever it held, so that a recording stopped by a crash, its audio before the
    cut whole, was refused)."""
    if meta.duration or meta.decoder != "ffmpeg" or meta.demuxer != "matroska":
        return meta
    walk = _matroska_walk(path)
    if walk is None or walk.span <= 0:
        return meta
    if walk.gaps:
        _timeline_gaps(path, notes, lost=walk.lost, duration=walk.span)
    if walk.cut and walk.rest is None:
        if notes is None:
            raise AudioReadError(path, "cut short: the file ends inside a Matroska cluster, a recording or copy that "
                                       "stopped; nothing stored, as how much is missing is not known")  # fmt: skip
        notes.append(f"the file ends inside a Matroska cluster (its last blocks missing or cut): cut short (a "
                     f"recording or copy that stopped?), analysed as the {walk.span:.1f} s it holds; how much is "
                     "missing is not known")  # fmt: skip
        return replace(meta, duration=walk.span, cut_said=True)
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

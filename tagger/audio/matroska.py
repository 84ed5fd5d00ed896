"""A Matroska or WebM file's clusters walked for its first audio track's timeline (`_matroska_walk`),
where the file declares no length (a live-written WebM: no Duration in its Segment Info, no
DURATION tag, no Cues; what ffmpeg writes with ``-live 1``, a browser's MediaRecorder, OBS):
the gaps between its audio blocks (clusters lost from its middle, blocks missing inside one,
frames a recording dropped; damage passed over to the next cluster, as ffmpeg does) and a last
cluster cut short, which ffmpeg passes over without a word (`_check_matroska_live`). Elements of other
tracks (video) are passed over by their sizes, never read. And whether its Segment Info declares a
Duration (`_declares_duration`; where not, ffprobe's lengths are estimates from the bit rate).

This module walks the file's elements and clusters and checks what the walk found; beside it are
`tagger.audio.ebml` (an element's head, its children), `tagger.audio.mkvblocks` (the audio track and
the samples its blocks' codec tells) and `tagger.audio.mkvtimeline` (the blocks' timeline: its gaps,
blocks longer than their codec tells)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.errors import AudioReadError
from tagger.audio.losses import _note_or_refuse
from tagger.audio.ogg import _opus_samples
from tagger.audio.ebml import (_BLOCK, _BLOCK_DURATION, _BLOCK_GROUP, _CLUSTER, _CLUSTER_CHILDREN, _HEAD, _INFO,
                               _SEGMENT, _SIMPLE_BLOCK, _TIMECODE, _TRACKS, _children, _element, _vint)
from tagger.audio.mkvblocks import _OPUS_MAX, _Track, _block_ns, _frames, _read_track, _told
from tagger.audio.mkvtimeline import _Timeline


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

"""A raw stream's frames walked from its first to its last (`_frame_walk`, `FrameWalk`), with the
frame headers of its kind (`tagger.audio.rawheaders`): where the file ends inside its last frame,
the bytes between frames that begin none (lost sync, found again by the kind's sync bytes), the
tags between them (files joined), the bytes after the last frame that are no padding, and a DTS-HD
file's STRMDATA chunk (`_dtshd_data`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tagger.audio.endtags import _tag_at, _trailing_tags
from tagger.audio.rawheaders import RAW_FRAMES, _Frames
from tagger.containers import id3v2_length


@dataclass(frozen=True)
class FrameWalk:
    """A raw stream's frames as their headers tell them (`_frame_walk`)."""

    codec: str
    """The stream's name for users ('AC-3', 'TrueHD', ...)."""
    seconds: float
    """The audio of the frames the file holds whole."""
    end: int
    """Where the last whole frame ends: the bytes a decoder is given of a file cut short."""
    cut: float = 0.0
    """Seconds of audio missing from its end: its last frame, which the file ends inside (a frame is
    decoded whole or not at all), and for a DTS-HD file the rest of the bytes its STRMDATA chunk
    declares; 0.0 where it ends on a whole frame."""
    cut_bytes: tuple[int, int] = (0, 0)
    """(bytes there, bytes its header declares) of the last frame, where the file ends inside it (0
    declared: inside its header)."""
    damaged: int = 0
    """Bytes between frames that begin no frame (lost sync: frames lost in the middle)."""
    damaged_seconds: float = 0.0
    """The audio those bytes held, estimated at the stream's bytes a second."""
    trailing: int = 0
    """Bytes after the last whole frame, to the end (before the tags at its end), that begin no frame
    and are no padding (`PADDING`): the zeros a preallocated copy or download that stopped leaves, a
    damaged end."""
    trailing_seconds: float = 0.0
    """The audio those bytes held, estimated at the stream's bytes a second."""
    tags: tuple[tuple[int, int], ...] = ()
    """(first, last + 1) byte of each tag between its frames (files joined with their tags), passed over."""

    @property
    def total(self) -> float:
        """The seconds of the whole stream: its whole frames and those it misses, cut, damaged or at its end."""
        return self.seconds + self.cut + self.damaged_seconds + self.trailing_seconds

    @property
    def feed(self) -> tuple[tuple[int, int], ...]:
        """The byte ranges a decoder is given (`AudioInfo.feed`): the file up to its last whole frame,
        without the tags between its frames (ffmpeg's AC-3, E-AC-3 and LOAS readers took one for a
        frame it could not decode)."""
        ranges, pos = [], 0
        for first, after in self.tags:
            ranges.append((pos, first))
            pos = after
        ranges.append((pos, self.end))
        return tuple((a, b) for a, b in ranges if b > a)


READ = 1 << 20
"""Bytes read at a time: the headers are walked in memory, each block once (a TrueHD access unit is
a few hundred bytes: a seek and read a header cost more than reading through)."""
TAIL = 1 << 20
"""Bytes at the end of a file whose frames are walked one at a time (where it ends inside one)."""
PADDING = 4096
"""The most zero bytes after the last frame taken as padding (to a sector or block), not as audio lost."""


def _dtshd_data(f, size: int) -> tuple[int, int] | None:
    """(start, declared end) of a DTS-HD file's STRMDATA chunk, past the chunks before it; None where
    the file is no DTS-HD file or holds no such chunk among its first 64."""
    pos = 0
    for _ in range(64):
        f.seek(pos)
        head = f.read(16)
        if len(head) < 16 or (pos == 0 and head[:8] != b"DTSHDHDR"):
            return None
        length = int.from_bytes(head[8:], "big")
        if head[:8] == b"STRMDATA":
            return pos + 16, pos + 16 + length
        pos += 16 + length
    return None


def _frame_walk(path: Path, demuxer: str) -> FrameWalk | None:
    """The frames of the raw stream `path` (of `RAW_FRAMES`), walked from the first (past an ID3v2
    tag) to the last (before the tags some taggers append), in blocks of `READ`: where the file ends
    inside its last frame, and the bytes between frames that begin none. None where the walk finds no
    frame at its start, for the decoder to say what it makes of it."""
    kind = RAW_FRAMES.get(demuxer)
    if kind is None:
        return None
    frames = kind()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            limit, _tags = _trailing_tags(f, size)
            declared = None
            if demuxer == "dtshd":
                data = _dtshd_data(f, size)
                if data is None:
                    return None
                start, declared = data
                limit = min(limit, declared)
            return _walk(f, frames, start, limit, declared)
    except OSError:
        return None


def _walk(f, frames: _Frames, start: int, limit: int, declared: int | None) -> FrameWalk | None:
    """`_frame_walk` of the open file `f`, its frames from `start` to `limit` (`declared`: the end
    a DTS-HD file's STRMDATA chunk declares)."""
    buf, at = b"", start  # (buf: the file's bytes from `at` on)

    def fill(pos: int, need: int) -> int:
        """Read on where ``buf`` holds less than `need` bytes from `pos` (the bytes before it let go);
        returns `pos` within ``buf``."""
        nonlocal buf, at
        have = at + len(buf)
        if pos + need > have and have < limit:
            have = max(have, pos)  # (a frame longer than the bytes left: the next begins past them)
            f.seek(have)
            buf = buf[pos - at :] + f.read(min(max(READ, need), limit - have))
            at = pos
        return pos - at

    def frame(i: int) -> tuple[int, float] | None | bool:
        """`_Frames.frame` at ``buf[i]``; False where ``buf`` ends inside its header."""
        try:
            return frames.frame(buf, i)
        except IndexError:
            return False

    def followed(j: int) -> bool:
        """Whether a frame begins at ``buf[j]`` and another (or the end) after it. (Not one that the
        end cuts: random bytes hold many a LOAS sync and length running past the end.)"""
        got = frame(j)
        if not got:
            return False
        after = j + got[0]
        return at + after == limit or bool(frame(after))

    def resync(pos: int) -> int | None:
        """The start of the next frame after `pos` that another follows; None where none does."""
        probe = pos + 1
        while True:
            i = fill(probe, 1 << 16)
            hits = [j for j in (buf.find(s, i + frames.sync_at) for s in frames.sync) if j >= 0]
            while hits:
                j = min(hits) - frames.sync_at
                if j >= i and followed(j):
                    return at + j
                hits = [h for h in (buf.find(s, j + frames.sync_at + 1) for s in frames.sync) if h >= 0]
            if at + len(buf) >= limit:
                return None
            probe = max(probe + 1, at + len(buf) - 1024)  # (a header across the block's end read again)

    pos, seconds, timed_bytes, damaged, damaged_seconds, last, cut, cut_bytes = start, 0.0, 0, 0, 0.0, 0.0, 0.0, (0, 0)
    whole_end, fast, trailing, tags = start, True, 0, []
    while pos < limit:
        i = fill(pos, frames.head + 64)
        # The frames of the block walked at once (`_Frames.run`), those of the file's last MiB one by one
        stop = min(len(buf) - frames.head - 64, limit - at - TAIL)
        if fast and stop > i:
            j, time, timed = frames.run(buf, i, stop)
            if at + j > limit:  # (a frame of over a MiB, cut: walked one by one)
                fast = False
                continue
            if j > i:
                pos = whole_end = at + j
                seconds, timed_bytes = seconds + time, timed_bytes + timed
                continue
        got = frame(i)
        if got is False:  # (the file ends inside a header: of a frame, where it begins as one)
            tail = buf[i + frames.sync_at :]
            if seconds and tail and any(s.startswith(tail[: len(s)]) for s in frames.sync):
                cut, cut_bytes = last, (limit - pos, 0)
            break
        if got is None:
            if pos == start:
                return None  # (no frame of its kind at its start)
            tag = _tag_at(buf[i : i + 32])  # (files joined with their tags: no frame lost there)
            if tag and pos + tag <= limit:
                tags.append((pos, pos + tag))
                pos += tag
                continue
            j = resync(pos)
            if j is None:  # (bytes that begin no frame, and none after them: padding, or a damaged end)
                rest = limit - pos
                if rest > PADDING or _nonzero(f, pos, rest):
                    trailing = rest
                break
            damaged += j - pos
            damaged_seconds += (j - pos) * seconds / max(timed_bytes, 1)
            pos = j
            continue
        length, time = got
        if pos + length > limit:
            cut, cut_bytes = time or last, (limit - pos, length)
            break
        pos += length
        whole_end = pos
        if time:
            seconds, last = seconds + time, time
        timed_bytes += length
    if not seconds:
        return None
    if declared is not None and declared > limit:  # (a DTS-HD file cut short: the rest of its STRMDATA chunk)
        cut, cut_bytes = (declared - whole_end) * seconds / max(timed_bytes, 1), (0, 0)
        trailing = 0  # (the bytes after its last frame among those the cut holds: not counted twice)
    return FrameWalk(frames.codec, seconds, whole_end, cut, cut_bytes, damaged, damaged_seconds, trailing,
                     trailing * seconds / max(timed_bytes, 1), tuple((a, b) for a, b in tags if b <= whole_end))


def _nonzero(f, pos: int, n: int) -> bool:
    """Whether the `n` bytes of the open file `f` at `pos` hold any but zeros."""
    f.seek(pos)
    return bool(f.read(n).strip(b"\0"))

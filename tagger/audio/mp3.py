"""An MP3's layout, its frames followed from the first and the tags between and after them
(`_mp3_layout`), and the checks made of it: what ffmpeg is given (`_mp3_feed`, `_feed_before`),
a file cut by an editor that kept its header's frame count (`_mp3_end_intact`), a file whose last
frame is cut (`_check_mp3_cut`), bytes after its frames that are neither frames nor tags
(`_mp3_junk`, `_check_mp3_junk`), and libsndfile stopping short of its frames
(`_check_mp3_stopped`).

Its frame headers are read in `tagger.audio.mp3frames`, the tags at its end in
`tagger.audio.endtags`, how its last frame ends in `tagger.audio.mp3tail`, the length its header
declares and what libsndfile would decode in part in `tagger.audio.mp3length`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tagger.audio.endtags import _mp3_ends, _without_padding
from tagger.audio.fileinfo import AudioInfo
from tagger.audio.losses import _note_or_refuse, _seconds_of
from tagger.audio.mp3frames import MP3_MAX_FRAME, _mp3_frame, _mp3_frames_at, _mp3_walk
from tagger.audio.mp3length import _first_mp3_frame, _mp3_length_declared
from tagger.audio.mp3tail import _Mp3Tail, _mp3_tail
from tagger.containers import id3v2_length
from tagger.errors import AudioReadError


def _check_mp3_cut(path: Path, meta: AudioInfo, tail: _Mp3Tail | None, decoded: int, notes: list[str] | None) -> None:
    """An MP3 without a header of its length (Xing, Info, VBRI) whose last frame the file cuts
    (`_mp3_tail`: a copy or download that stopped, ID3v1-tagged afterwards or not) is analysed as
    what it holds, with a note saying so; how much is missing is not known (a CBR file's length is
    estimated from its size, which the cut made). A file with such a header comes under
    `_check_shortfall`'s rule, against the length it declares."""
    if tail is None or not tail.held or _mp3_length_declared(path):
        return
    seconds = decoded / meta.decode_rate
    where = (f"inside an MPEG frame ({tail.held} of its {tail.length} bytes)" if tail.length
             else f"inside an MPEG frame's header ({tail.held} of its 4 bytes)")  # fmt: skip
    after = f", before {' and '.join(reversed(tail.trailing))}" if tail.trailing else ""
    if notes is None:
        raise AudioReadError(path, f"cut short: the file ends {where}{after}; nothing stored, as how much is "
                                   "missing is not known (no header declares its length)")  # fmt: skip
    notes.append(f"the file ends {where}{after}: cut short (a copy or download that stopped?), analysed as the "
                 f"{seconds:.1f} s it holds; how much is missing is not known (no header declares its length)")


def _check_mp3_stopped(path: Path, meta: AudioInfo, decoded: int) -> None:
    """An MP3 without a header of its length (a Xing/Info/VBRI header's: `_check_shortfall`) that
    libsndfile decoded to less than half of what its bytes hold at its first frame's bit rate (from
    its first frame to the tags at its end; its frames of one rate, `_mp3_decoded_in_part` having
    sent any other to ffmpeg): libsndfile stopped at bytes that are no MPEG frames it reads, without
    a word. A 26 s MP3 with a raw AAC inside it was 5.0 s of it; a raw AAC read as an MP3 (its first
    frame's header damaged, under another name than ``.aac``: `tagger.audio.rawframes._raw_not_mp3`)
    0.02 s of 6 s. An error: what it holds past there is not known, nor that it is an MP3."""
    seconds = decoded / meta.decode_rate
    # (libsndfile's own length, of the same bytes and bit rate, reached half way: no file read)
    if meta.decoder != "soundfile" or meta.format != "MP3" or seconds >= (meta.duration or 0.0) / 2:
        return
    if _mp3_length_declared(path):
        return
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            f.seek(start)
            data = f.read(16384)
            end, _padded, _names = _mp3_ends(f, size)
    except (OSError, ValueError):
        return
    # (its first two frames in a row; or a lone header where its audio begins, which libsndfile read)
    found = _mp3_frames_at(data) or ((0, _mp3_frame(data, 0)) if _mp3_frame(data, 0) else None)
    if found is None:
        return
    first, kbps = start + found[0], found[1][0]
    audio = end - first
    if seconds >= audio * 8 / (kbps * 1000) / 2:
        return
    # (tags its frames reach are no audio: an ID3v2 tag appended at its end, a 600 KB cover in it after
    # 5 s of frames, was read as 42 s of them and the whole file refused)
    try:
        with open(path, "rb") as f:
            _, tags, _, _ = _mp3_walk(f, first, end)
    except OSError:
        return
    audio -= sum(after - begins for begins, after in tags)
    held = audio * 8 / (kbps * 1000)
    if seconds >= held / 2:
        return
    raise AudioReadError(path, f"libsndfile, reading it as an MP3, stopped after {seconds:.2f} s of the about "
                               f"{held:.1f} s its {audio} bytes of audio hold at its first frame's {kbps} kbps: "
                               "the rest is no MPEG frames it reads (another format's frames, or damage); nothing "
                               "stored")  # fmt: skip


@dataclass(frozen=True)
class _Mp3Layout:
    """What an MP3's bytes are, frame headers and tags read (`_mp3_layout`)."""

    size: int
    end: int
    """Where its audio ends: before the tags at the end of the file (`_trailing_tags`)."""
    trailing: list[str]
    """The names of those tags, the last one first ("an ID3v1 tag")."""
    walked: int
    """Where its frames, followed one by one from the first, end (`_mp3_walk`): `end` when whole."""
    between: list[tuple[int, int]]
    """(first, last + 1) byte of each tag between its frames (files joined one after another)."""


def _mp3_layout(path: Path) -> _Mp3Layout | None:
    """The layout of an MP3 (its frames followed from the first, past an ID3v2 tag at its start);
    None where no frame is found or it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            f.seek(start)
            found = _mp3_frames_at(f.read(16384))
            if found is None:
                return None
            end, padded, trailing = _mp3_ends(f, size)
            walked, between, _, _ = _mp3_walk(f, start + found[0], padded)
    except (OSError, ValueError):
        return None
    tail = _mp3_tail(path) if end < padded else None  # (zero bytes at its end: where its last frame ends)
    if tail is not None and not tail.held:
        end, trailing = tail.end, tail.trailing
    return _Mp3Layout(size, end, trailing, walked, between)


def _mp3_end_intact(path: Path) -> str | None:
    """What follows the last MPEG frame of an MP3 whose frames, followed one by one from the first,
    end whole right before a tag at the end of the file (ID3v1, APEv2, Lyrics3: "an ID3v1 tag"), or
    None. Such a file was cut by an editor (mp3DirectCut, an old ``ffmpeg -c copy``) that kept the
    original's frame count in its Xing/Info/VBRI header: its end is intact, the header overstates.
    A download that stopped ends inside a frame (on a frame's end about one time in 400) and has no
    tag after its frames; a tool that later appends an ID3v1 tag leaves the cut frame before it."""
    layout = _mp3_layout(path)
    if layout is None or not _without_padding(layout.trailing) or layout.walked != layout.end:
        return None  # (zero bytes alone after a whole frame: a download's preallocated file, stopped?)
    return " and ".join(reversed(layout.trailing))


def _mp3_junk(path: Path) -> tuple[int, int] | None:
    """Where the frames of an MP3 without a header of its length (Xing, Info, VBRI), followed one by
    one from the first (`_mp3_layout`), end at bytes that are neither frames nor a tag known, up to
    the tags at its end, with no two frames in a row after them: (where its last whole frame ends,
    where those bytes end); None where its frames reach its end or frames follow (damage in its
    middle, which the decoders go on past). Such bytes (a download's garbage, a tool's leftovers, a
    frame cut and then something appended) were decoded as frames: libsndfile failed on them from a
    few KiB on, ffmpeg said it could not decode them, and the whole file was refused. Read only for
    a file whose last few frames do not reach its end (`_mp3_tail`), so a walk from its first frame
    (30-50 ms for 10 minutes) costs only such files."""
    if _mp3_length_declared(path):  # (decoded to the frame count it declares: what follows is never read)
        return None
    layout = _mp3_layout(path)
    if layout is None or layout.walked >= layout.end:
        return None
    try:
        with open(path, "rb") as f:
            pos = layout.walked
            while pos < layout.end:
                f.seek(pos)
                data = f.read(min(1 << 20, layout.end - pos) + 2 * MP3_MAX_FRAME)[: layout.end - pos]
                if _mp3_frames_at(data) is not None:
                    return None
                pos += max(1, len(data) - 2 * MP3_MAX_FRAME)
    except OSError:
        return None
    return layout.walked, layout.end


def _check_mp3_junk(path: Path, meta: AudioInfo, junk: tuple[int, int] | None, decoded: int,
                    notes: list[str] | None) -> None:  # fmt: skip
    """An MP3 whose frames are followed by bytes that are neither frames nor a tag known
    (`_mp3_junk`), decoded without them: whether they held audio once (a frame damaged, frames after
    it) is not known, so they count as the most audio they could hold, at its first frame's bit rate,
    under `MAX_LOST_SHARE`'s rule: a note where that is at most 1% of the length (a few KiB after a
    song), else an error (a 26 s MP3 with a raw AAC inside it after its first 5 s stays refused)."""
    if junk is None:
        return
    frame = _first_mp3_frame(path)
    kbps = _mp3_frame(frame, 0)[0] if frame is not None else 0
    seconds, junk_bytes = decoded / meta.decode_rate, junk[1] - junk[0]
    most = junk_bytes * 8 / (kbps * 1000) if kbps else float("inf")
    what = (f"{junk_bytes} bytes after its last whole MPEG frame are neither MPEG frames nor a tag known (damage, "
            "or what a download or a tool left?)")  # fmt: skip
    _note_or_refuse(path, notes, lost=most, duration=seconds + most,
                    note=f"{what}: analysed as the {seconds:.1f} s of its frames before them (they hold at most "
                         f"{most:.3f} s at its first frame's {kbps} kbps)",
                    refusal=f"{what}; nothing stored, as they could hold {_seconds_of(most, seconds + most)} (at its "
                            f"first frame's {kbps} kbps) and no header declares its length")  # fmt: skip


def _mp3_feed(path: Path) -> tuple[tuple[int, int], ...]:
    """The byte ranges of an MP3 to give ffmpeg (`AudioInfo.feed`) where tags lie between its frames
    (``cat a.mp3 b.mp3``, b beginning with its ID3v2 tag): all but those tags, and but the tags at
    its end where its frames reach them (ffmpeg, reading a pipe, cannot look for those); () where no
    tag lies between its frames, for ffmpeg to read the file itself. Where the walk stops at bytes
    that are neither frames nor tags (damage), the rest is given as it is, for ffmpeg's own rule.
    An APEv2 or Lyrics3 tag at its end that its frames reach is left out too, tags between them or
    not: ffmpeg skips an ID3v1 tag there, and decodes those as frames it cannot ("Header missing",
    a whole VBR MP3 without a length header then an error)."""
    layout = _mp3_layout(path)
    if layout is None:
        return ()
    ends_in_others = layout.walked == layout.end and any(t != "an ID3v1 tag" for t in layout.trailing)
    if not layout.between and not ends_in_others:
        return ()
    ranges, pos = [], 0
    for first, after in layout.between:
        ranges.append((pos, first))
        pos = after
    ranges.append((pos, layout.end if layout.walked == layout.end else layout.size))
    return tuple((a, b) for a, b in ranges if b > a)


def _feed_before(feed: tuple[tuple[int, int], ...], before: int) -> tuple[tuple[int, int], ...]:
    """The byte ranges `feed` (`AudioInfo.feed`; () for the whole file) less what lies from `before`
    on: an MP3's frames alone, without the bytes after them (`_mp3_junk`)."""
    return tuple((a, min(b, before)) for a, b in (feed or ((0, before),)) if a < before)

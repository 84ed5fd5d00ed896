"""An Ogg file's structure, read from its page headers (`_ogg_walk`: its streams, whether it is
chained, where it ends, the pages missing from its middle), and the damage found there after
decoding: a file cut short (`_check_ogg_end`), pages missing from its middle (`_check_ogg_gaps`),
an Opus header's pre-skip beyond what encoders write (`_check_opus_skip`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.audio.losses import _note_or_refuse
from tagger.containers import ogg_page_heads
from tagger.errors import AudioReadError
from tagger.hashing import ogg_page_intact


def _chained_ogg(path: Path) -> bool:
    """An Ogg file of several streams one after the other (a "chained" file: two recordings joined,
    an internet radio capture): a stream begins after another's pages. libsndfile decodes only the
    first; ffmpeg decodes them all (`_ogg_walk`)."""
    walk = _ogg_walk(path)
    return walk is not None and walk.chained


@dataclass
class _OggStream:
    """One logical stream of an Ogg file as its page headers tell it (`_ogg_walk`)."""

    codec: str
    """'vorbis', 'opus', 'flac', 'speex' (from its first packet), or '' for another (video, skeleton)."""
    rate: int
    """The rate of its granule positions: 48 kHz for Opus, the sample rate for the others (0: unknown)."""
    granule: int = -1
    """The granule position (samples from its start) of its last whole page that has one; -1 for none."""
    ended: bool = False
    """Whether its last page, whole and of a correct checksum, carries the end-of-stream flag."""
    last: int = 0
    """The number of its last page in the file (from 0)."""
    skip: int = 0
    """An Opus stream's pre-skip (its header's: the samples at 48 kHz a decoder drops from its start)."""
    sequence: int = 0
    """The page number (`OggPageHead.sequence`) its next page must have."""
    gap_from: int | None = None
    """The granule position before pages found missing, until a page after them gives one (None: no gap open)."""


@dataclass
class _OggGaps:
    """The pages missing from the middle of an Ogg file's audio streams (their page numbers skip), as
    `_ogg_walk` finds them."""

    pages: int = 0
    """How many pages are missing."""
    seconds: float = 0.0
    """At most how much audio they held: for each gap, from the granule position before it to the one
    of the first page after it that has one (that page's own audio included: a decoder may drop its
    first packet, which began on a missing page)."""
    known: bool = True
    """False where a gap's audio cannot be told (a stream of unknown rate, no granule position after it)."""


@dataclass(frozen=True)
class _OggWalk:
    """An Ogg file's pages read one after another from its start (`_ogg_walk`)."""

    chained: bool
    """Whether a stream begins after another's data pages (a chained file)."""
    link: int
    """The number of the first page of its last link (of its only one where it is not chained)."""
    streams: dict[int, _OggStream]
    """Its streams by serial number, in the order they begin."""
    cut: tuple[int, int, int] | None
    """(serial, granule position, flags) of the page the file ends inside (its header read whole);
    None where it ends on a whole page, or inside a page's header."""
    ends_in_page: bool
    """Whether the file ends inside a page (its header or its body)."""
    gaps: _OggGaps
    """The pages missing from its middle."""


def _ogg_codec(packet: bytes) -> tuple[str, int]:
    """(codec, rate of its granule positions) of an Ogg stream whose first packet begins `packet`."""
    if packet[:7] == b"\x01vorbis" and len(packet) >= 16:
        return "vorbis", int.from_bytes(packet[12:16], "little")
    if packet[:8] == b"OpusHead":
        return "opus", 48_000
    if packet[:5] == b"\x7fFLAC" and len(packet) >= 30:
        return "flac", packet[27] << 12 | packet[28] << 4 | packet[29] >> 4
    if packet[:8] == b"Speex   " and len(packet) >= 40:
        return "speex", int.from_bytes(packet[36:40], "little")
    return "", 0


def _ogg_walk(path: Path) -> _OggWalk | None:
    """The pages of an Ogg file followed from its start by their lengths (27 bytes of header and a
    segment table read a page, and the checksum of each end-of-stream page: 3-6 ms for a 10-minute
    file): which streams it holds, whether it is chained, which of them end with an end-of-stream
    page, and where the file ends inside a page (cut short). Stops at bytes that are not a page
    (junk after the last page, damage); None where the file does not begin with a page or cannot be
    read. Pages whose numbers skip in a stream of audio are missing from the middle (`_OggGaps`)."""
    streams: dict[int, _OggStream] = {}
    chained = seen_data = False
    link = 0
    gaps = _OggGaps()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos = number = 0
            while pos < size:
                for page in ogg_page_heads(f, pos):
                    if page.first:  # (a stream begins: after another's data pages, the next link of a chain)
                        link = number if seen_data else link
                        chained = chained or seen_data
                        f.seek(page.offset + page.header)
                        first = f.read(min(page.length - page.header, 64))
                        streams.pop(page.serial, None)  # (a serial number used again, by the next link)
                        codec, rate = _ogg_codec(first)
                        skip = int.from_bytes(first[10:12], "little") if codec == "opus" and len(first) >= 12 else 0
                        streams[page.serial] = _OggStream(codec, rate, last=number, skip=skip)
                    seen_data = seen_data or not page.first
                    cut = (page.serial, page.granule, page.flags)
                    if not page.whole or page.end > size:
                        return _OggWalk(chained, link, streams, cut if page.whole else None, True, gaps)
                    stream = streams.get(page.serial)
                    if stream is not None:
                        if page.last:
                            f.seek(page.offset)
                            if not ogg_page_intact(f.read(page.length)):  # (a page cut, and bytes appended after it)
                                return _OggWalk(chained, link, streams, cut, True, gaps)
                        _count_gap(gaps, stream, page)
                        stream.granule = page.granule if page.granule != -1 else stream.granule
                        stream.ended, stream.last = page.last, number
                    pos = page.end
                    number += 1
                if pos >= size:
                    break
                f.seek(pos)
                head = f.read(27)
                if len(head) < 27:
                    partial = b"OggS"[: len(head)] == head[:4] and head[4:5] in (b"", b"\0")
                    return _OggWalk(chained, link, streams, None, partial, gaps) if streams else None
                pos = _next_ogg_page(f, pos + 1, size)  # (not a page where one must begin: damage, or junk after the last page)
                if pos < 0:
                    break
    except OSError:
        return None
    return _OggWalk(chained, link, streams, None, False, gaps) if streams else None


def _count_gap(gaps: _OggGaps, stream: _OggStream, page) -> None:
    """Count in ``gaps`` the pages of ``stream`` missing before its whole page ``page`` (an
    `OggPageHead`: its number beyond the one due), and the audio they held once a page gives the
    granule position after them. A stream of no audio tagger knows (video, a skeleton) is passed over,
    and so is a skip before its first page of audio (no granule position past 0 yet): there a stream
    joined while it played begins (an internet radio recorded from its Icecast server, which sends
    the header pages, then the pages of the moment as they are: numbered on from thousands, their
    granule positions counting the hours played; a tool that rewrote the header pages into fewer
    without numbering the rest again), no audio of the file missing (was refused as thousands of
    pages missing, up to an hour of a 10 s file). The page headers cannot tell these from a file
    that lost the pages right after its header pages (its first seconds): it passes too."""
    if stream.codec and page.sequence > stream.sequence and not page.first and stream.granule > 0:
        gaps.pages += page.sequence - stream.sequence
        if stream.gap_from is None:
            stream.gap_from = stream.granule
    stream.sequence = max(stream.sequence, page.sequence + 1)
    if stream.gap_from is not None and page.granule != -1:
        if stream.rate:
            gaps.seconds += max(page.granule - stream.gap_from, 0) / stream.rate
        else:
            gaps.known = False
        stream.gap_from = None


def _next_ogg_page(f, pos: int, size: int) -> int:
    """Where the next whole Ogg page of a right checksum begins at or after `pos` in the open file
    `f` (past damage in the middle of a file: the decoders go on there too); -1 where none does."""
    while pos < size:
        f.seek(pos)
        data = f.read(1 << 16)
        at = data.find(b"OggS")
        if at < 0:
            pos += max(len(data) - 3, 1)
            continue
        f.seek(pos + at)
        page = bytearray(f.read(27 + 255))
        if len(page) >= 27:
            length = 27 + page[26] + sum(page[27 : 27 + page[26]])
            f.seek(pos + at)
            page = f.read(length)
            if len(page) == length and ogg_page_intact(page):
                return pos + at
        pos += at + 1
    return -1


def _check_ogg_end(path: Path, meta: AudioInfo, notes: list[str] | None) -> None:
    """An Ogg file cut short (a copy or download that stopped: inside a page, or missing its last
    pages) was decoded as far as it goes, by libsndfile or ffmpeg, and stored as if whole without a
    word. A stream of its last link (`_ogg_walk`) that does not end with a whole end-of-stream page
    is cut: where the file ends inside that last page, its header's granule position says how much
    is missing (the rest of the page), which comes under `_note_or_refuse`'s rule against the file's
    length; where not (its last pages missing, or only their header there), how much is missing is
    not known: the file is analysed as what it holds, with a note saying so, as an MP3 whose last
    frame is cut (`_check_mp3_cut`), and an error for a caller that takes no notes."""
    walk = _ogg_walk(path)
    if walk is None:
        return
    _check_opus_skip(path, meta, walk, notes)
    _check_ogg_gaps(path, meta, walk, notes)
    cut = [(serial, s) for serial, s in walk.streams.items() if s.codec and not s.ended and s.last >= walk.link]
    if not cut:
        return
    serial, stream = cut[-1]
    last = walk.cut if walk.cut is not None and walk.cut[0] == serial and walk.cut[2] & 0x04 else None
    where = ("inside its last Ogg page" if last is not None else
             "inside an Ogg page (its last pages missing or cut)" if walk.ends_in_page else
             "on an Ogg page that does not end its stream (its last pages missing)")  # fmt: skip
    if last is None or last[1] < 0 or stream.granule < 0 or not stream.rate or not meta.duration:
        if notes is None:
            raise AudioReadError(path, f"cut short: the file ends {where}, a copy or download that stopped; nothing "
                                       "stored, as how much is missing is not known")  # fmt: skip
        # (as an MP3 whose last frame is cut, `_check_mp3_cut`: the file plays as far as it goes, and what
        # it holds is analysed, the note saying so; a radio recording that never ended its stream too)
        held = f"the {meta.duration:.1f} s it holds" if meta.duration else "what it holds"
        notes.append(f"the file ends {where}: cut short (a copy or download that stopped?), analysed as {held}; "
                     "how much is missing is not known")
        return
    lost = max(last[1] - stream.granule, 0) / stream.rate
    full = meta.duration + lost
    _note_or_refuse(path, notes, lost=lost, duration=full,
                    note=f"the file ends {where}: analysed without the rest ({lost:.3f} s of {full:.1f} s left out)",
                    refusal=f"cut short: the file holds {meta.duration:.1f} s of the {full:.1f} s its last Ogg page "
                            f"declares; nothing stored, as a result would leave {lost:.1f} s out")  # fmt: skip


def _check_ogg_gaps(path: Path, meta: AudioInfo, walk: _OggWalk, notes: list[str] | None) -> None:
    """Pages missing from the middle of an Ogg file (a download that lost a range, a bad copy: the
    page numbers of a stream skip) were decoded past without a word, libsndfile and ffmpeg going
    on after the gap: a 10 s Opus file missing 4 s of pages was analysed as whole. What the missing
    pages held, at most (`_OggGaps.seconds`), comes under `_note_or_refuse`'s rule against the
    file's length (its last granule position's, which counts them); where it cannot be told, the
    file is refused. (Pages missing at its end: `_check_ogg_end`.)"""
    gaps = walk.gaps
    if not gaps.pages:
        return
    pages = f"{gaps.pages} Ogg page{'s are' if gaps.pages > 1 else ' is'} missing from its middle"
    known = gaps.known and not any(s.gap_from is not None and s.ended for s in walk.streams.values())
    _note_or_refuse(path, notes, lost=gaps.seconds, duration=meta.duration if known else None,
                    note=f"{pages} (a download that lost a range, a bad copy?): analysed without them (at most "
                         f"{gaps.seconds:.3f} s of {meta.duration or 0:.1f} s left out)",
                    refusal=f"{pages} (a download that lost a range, a bad copy): "
                            + (f"up to {gaps.seconds:.1f} s of its {meta.duration:.1f} s; " if known and meta.duration
                               else "how much audio they held is not known; ")
                            + "nothing stored, as a result would leave them out")  # fmt: skip


OPUS_MAX_SKIP = 3840
"""The largest pre-skip (samples at 48 kHz: 80 ms) an Opus encoder writes: its lookahead (libopus's
312, 6.5 ms; opusenc adds its resampler's delay) and at most the 80 ms that RFC 7845 asks a decoder
to drop when it seeks. More is a damaged or wrong header, which has the decoders drop real audio."""
OPUS_SKIP = 312
"""The pre-skip libopus's encoders write (its lookahead): what a wrong one drops is measured from it."""


def _check_opus_skip(path: Path, meta: AudioInfo, walk: _OggWalk, notes: list[str] | None) -> None:
    """An Opus stream whose header's pre-skip is more than `OPUS_MAX_SKIP` (a damaged or wrongly
    written header) had the decoders drop as much from its start, without a word: a 10 s file with a
    pre-skip of 60000 was analysed as 8.76 s. What is dropped beyond `OPUS_SKIP` comes under
    `_note_or_refuse`'s rule, against the file's length."""
    skip = max((s.skip for s in walk.streams.values() if s.codec == "opus"), default=0)
    if skip <= OPUS_MAX_SKIP:
        return
    lost = (skip - OPUS_SKIP) / 48_000
    full = (meta.duration or 0.0) + lost
    _note_or_refuse(path, notes, lost=lost, duration=full if meta.duration else None,
                    note=f"its Opus header's pre-skip ({skip} samples, where encoders write {OPUS_SKIP} to "
                         f"{OPUS_MAX_SKIP}) has its first {lost:.3f} s dropped: analysed without them ({lost:.3f} s "
                         f"of {full:.1f} s left out)",
                    refusal=f"its Opus header's pre-skip ({skip} samples, where encoders write {OPUS_SKIP} to "
                            f"{OPUS_MAX_SKIP}) has the decoders drop its first {lost:.1f} s (a damaged or wrongly "
                            "written header); nothing stored, as a result would leave them out")  # fmt: skip

"""An Ogg file's structure, read from its page headers (`_ogg_walk`: its streams, whether it is
chained, where it ends, the pages missing from its middle; the packets of the pages after them,
whose samples their codec tells: `_follow_packets`), and the damage found there after decoding: a
file cut short (`_check_ogg_end`), pages missing from its middle (`_check_ogg_gaps`), a stream that
begins into its stream (`_check_ogg_start`), an Opus header's pre-skip beyond what encoders write
(`_check_opus_skip`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.audio.losses import _note_or_refuse
from tagger.containers import ogg_page_heads
from tagger.errors import AudioReadError
from tagger.hashing import ogg_page_intact


def _chained_ogg(path: Path) -> tuple[str, ...]:
    """Whether an Ogg file is of several streams one after the other (a "chained" file: two recordings
    joined, an internet radio capture): a stream begins after another's pages. libsndfile decodes
    only the first; ffmpeg decodes them all where they are of one codec (`_ogg_walk`). The codecs of
    its audio streams in the order they begin (`_OggWalk.codecs`); () where it is not chained."""
    walk = _ogg_walk(path)
    return walk.codecs if walk is not None and walk.chained else ()


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
    heads: int = 0
    """How many of its codec's header packets are still to come (Vorbis 3, Opus 2, Speex 2 and its
    extra ones, counted from its first; FLAC's are told by their first byte, not counted)."""
    header: bytes = b""
    """The first bytes of its first packet (its codec's identification header)."""
    modes: tuple[bool, ...] | None = None
    """A Vorbis stream's modes, whether each is of long blocks (`_vorbis_modes`; None: not read)."""
    counting: bool = True
    """Whether the packets of its pages are being counted (`_follow_packets`): from its first page
    to the first page of audio that has a granule position, and after pages found missing to the next."""
    kept: int | None = 0
    """The samples of the whole packets counted so far (None: one of a length not told)."""
    open: bytes | None = None
    """The first bytes of the packet begun on an earlier page that the pages counted have not ended
    yet (None: none, or one whose beginning is missing)."""
    block: int | None = None
    """A Vorbis stream's block size of the last packet counted (None: not known, at its start and after a gap)."""
    audio: bool = False
    """Whether a packet of audio has been counted (its header packets are behind it)."""
    skipped: int = 0
    """The page numbers skipped before its first page of audio that has a granule position."""
    on_page: int = 0
    """The samples of the last packet counted on the page just followed (0: none ended there)."""
    longest: int = 0
    """The samples of the longest packet counted."""


@dataclass
class _OggGaps:
    """The pages missing from the middle of an Ogg file's audio streams (their page numbers skip), as
    `_ogg_walk` finds them."""

    pages: int = 0
    """How many pages are missing."""
    seconds: float = 0.0
    """How much audio they held: for each gap, from the granule position before it to the one of the
    first page after it that has one, less the samples of the whole packets after the gap that end on
    the pages up to it (`_follow_packets`; a packet that began on a missing page is missing); where a
    packet's samples are not told, those packets are counted in too, the span a bound (``exact``)."""
    known: bool = True
    """False where a gap's audio cannot be told (a stream of unknown rate, no granule position after it)."""
    exact: bool = True
    """Whether ``seconds`` is what the pages held, each packet after a gap told by its codec; False
    where it is the bound (a packet of a length not told)."""
    late: list[tuple[float, int]] = field(default_factory=list)
    """For each stream whose first page of audio has a granule position more than its packets'
    samples: how far into its stream the file begins (seconds), and the page numbers skipped
    before that page (`_count_gap`)."""


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
    codecs: tuple[str, ...] = ()
    """The codec of each of its audio streams (`_OggStream.codec`), in the order they begin: a
    chained file's, link after link."""


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


def _ogg_heads(codec: str, first: bytes) -> int:
    """How many header packets a stream of `codec` whose first packet begins `first` has before its
    audio: Vorbis 3, Opus 2, Speex 2 and the extra ones its header counts; FLAC's (and another
    codec's) are not counted (0: a FLAC packet of audio is told by its first byte, 0xFF)."""
    if codec == "vorbis":
        return 3
    if codec == "opus":
        return 2
    if codec == "speex" and len(first) >= 72:
        return 2 + min(int.from_bytes(first[68:72], "little"), 16)
    return 0


def _page_pieces(data: bytes) -> list[tuple[bytes, bool]]:
    """The pieces of packets on the whole Ogg page `data`, in order, each with whether its packet ends
    on the page (the last piece's does not where the segment table ends on 255: it goes on in the
    next page; the first is the end of a packet begun earlier where the page's flag 0x01 says so)."""
    table = data[27 : 27 + data[26]]
    pieces, start = [], 27 + len(table)
    pos = start
    for lace in table:
        pos += lace
        if lace < 255:
            pieces.append((data[start:pos], True))
            start = pos
    if table and table[-1] == 255:
        pieces.append((data[start:pos], False))
    return pieces


def _opus_samples(packet: bytes) -> int | None:
    """The samples at 48 kHz of an Opus packet, from its TOC byte (RFC 6716 section 3.1: the frame
    size its configuration gives, times the frames its count code gives); None for no packet or a
    count of 0 frames."""
    if not packet:
        return None
    config, code = packet[0] >> 3, packet[0] & 3
    size = (480, 960, 1920, 2880)[config & 3] if config < 12 else (480, 960)[config & 1] if config < 16 else \
        (120, 240, 480, 960)[config & 3]  # fmt: skip
    frames = 1 if code == 0 else 2 if code < 3 else packet[1] & 0x3F if len(packet) > 1 else 0
    return size * frames or None


def _flac_samples(frame: bytes) -> int | None:
    """The samples of a FLAC frame (a packet of FLAC in Ogg), from its header's block size code (and
    the 8 or 16 bits after its coded frame number where the code says so); None for no frame header."""
    if len(frame) < 5 or frame[0] != 0xFF or frame[1] & 0xFE != 0xF8:
        return None
    code = frame[2] >> 4
    if code == 1:
        return 192
    if 2 <= code <= 5:
        return 576 << (code - 2)
    if code >= 8:
        return 256 << (code - 8)
    if code == 0:
        return None
    ones = 8 - (~frame[4] & 0xFF).bit_length()  # (the coded frame number's length: UTF-8's, 1 to 7 bytes)
    at = 4 + (1 if ones == 0 else ones)
    if ones == 1 or ones > 7 or len(frame) < at + code - 5:
        return None
    return int.from_bytes(frame[at : at + code - 5], "big") + 1


def _vorbis_modes(setup: bytes) -> tuple[bool, ...] | None:
    """Whether each mode of a Vorbis stream is of long blocks, from its setup header `setup`: the
    modes are its last fields (each 41 bits: its block flag, a window and a transform type of 0, a
    mapping below 64; their count less one in the 6 bits before them; the framing bit after), read
    from its end backwards as ffmpeg's vorbis_parser.c does, the codebooks and floors before them
    not parsed; the longest run of modes whose count before it matches is taken. None where none does."""
    if len(setup) < 8 or setup[:7] != b"\x05vorbis":
        return None
    bits = int.from_bytes(setup, "little")  # (bit i of the packet, packed from each byte's lowest bit: bit i here)
    end = bits.bit_length() - 1  # (the framing bit: the last bit set)
    count = found = 0
    while end - 41 - 6 >= 56 and count < 64:
        if bits >> (end - 8) & 0xFF > 63 or bits >> (end - 40) & 0xFFFFFFFF:
            break
        count, end = count + 1, end - 41
        if bits >> (end - 6) & 0x3F == count - 1:
            found = count
    if not found:
        return None
    first = bits.bit_length() - 1 - 41 * found
    return tuple(bool(bits >> (first + 41 * i) & 1) for i in range(found))


def _vorbis_samples(stream: _OggStream, packet: bytes) -> int | None:
    """The samples a Vorbis audio packet adds to its stream (the Vorbis I spec, 4.3.8: a quarter of
    the previous block size and a quarter of its own; its first packet none), its mode from its first
    byte, the previous block's size from its flag where its block is long, from the packet before
    where short (not known after a gap: the short size taken, the least). None where the modes are
    not known or the packet is not one of audio."""
    modes = stream.modes
    if modes is None or not packet or packet[0] & 1 or len(stream.header) < 29:
        return None
    short, long = 1 << (stream.header[28] & 0x0F), 1 << (stream.header[28] >> 4)
    width = (len(modes) - 1).bit_length()
    mode = packet[0] >> 1 & ((1 << width) - 1)
    if mode >= len(modes):
        return None
    current = long if modes[mode] else short
    previous = (long if packet[0] >> (1 + width) & 1 else short) if modes[mode] else stream.block or short
    first = not stream.audio
    stream.block = current
    return 0 if first else (previous + current) // 4


def _packet_samples(stream: _OggStream, packet: bytes) -> int | None:
    """The samples of audio of one whole packet of `stream` (at its granule positions' rate); None
    where its codec does not tell them."""
    if stream.codec == "opus":
        return _opus_samples(packet)
    if stream.codec == "flac":
        return _flac_samples(packet)
    if stream.codec == "vorbis":
        return _vorbis_samples(stream, packet)
    if stream.codec == "speex" and len(stream.header) >= 68:
        frames = int.from_bytes(stream.header[56:60], "little") * int.from_bytes(stream.header[64:68], "little")
        return frames or None
    return None


def _follow_packets(stream: _OggStream, data: bytes) -> None:
    """Count in `stream` (`kept`) the samples of the packets that end on its whole page `data`, their
    header packets passed over (a Vorbis stream's modes read from its setup header on the way); a
    packet whose beginning is missing (on pages missing before this one) is not counted, nor is one
    that ends on a later page (it counts there)."""
    stream.on_page = 0
    for i, (piece, ends) in enumerate(_page_pieces(data)):
        if i == 0 and data[5] & 0x01:
            if stream.open is None:
                continue  # (the end of a packet whose beginning is missing, or not followed)
            piece = stream.open + piece
        whole_needed = stream.codec == "vorbis" and stream.heads == 1  # (its setup header, read whole)
        if not ends:
            stream.open = piece if whole_needed else piece[:16]
            continue
        stream.open = None
        header = stream.heads > 0 if stream.codec != "flac" else piece[:1] != b"\xff"
        if header:
            stream.heads = max(stream.heads - 1, 0)
            if stream.codec == "vorbis" and piece[:7] == b"\x05vorbis":
                stream.modes = _vorbis_modes(piece)
            continue
        samples = _packet_samples(stream, piece)
        stream.audio = True
        stream.on_page = samples or 0
        stream.longest = max(stream.longest, stream.on_page)
        stream.kept = None if samples is None or stream.kept is None else stream.kept + samples


def _ogg_walk(path: Path) -> _OggWalk | None:
    """The pages of an Ogg file followed from its start by their lengths (27 bytes of header and a
    segment table read a page, and the checksum of each end-of-stream page: 3-6 ms for a 10-minute
    file): which streams it holds, whether it is chained, which of them end with an end-of-stream
    page, and where the file ends inside a page (cut short). Stops at bytes that are not a page
    (junk after the last page, damage); None where the file does not begin with a page or cannot be
    read. Pages whose numbers skip in a stream of audio are missing from the middle (`_OggGaps`);
    the bodies of a stream's pages are read where their packets are counted (`_count_gap`: its header
    pages and first page of audio, the pages after a gap up to one with a granule position)."""
    streams: dict[int, _OggStream] = {}
    chained = seen_data = False
    link = 0
    gaps = _OggGaps()
    final = None  # (the last whole page of a stream read)
    begun: list[str] = []  # (the codecs of the audio streams, as they begin)
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
                        first = f.read(min(page.length - page.header, 80))
                        streams.pop(page.serial, None)  # (a serial number used again, by the next link)
                        codec, rate = _ogg_codec(first)
                        begun += [codec] if codec else []
                        skip = int.from_bytes(first[10:12], "little") if codec == "opus" and len(first) >= 12 else 0
                        streams[page.serial] = _OggStream(codec, rate, last=number, skip=skip,
                                                          heads=_ogg_heads(codec, first), header=first)  # fmt: skip
                    seen_data = seen_data or not page.first
                    cut = (page.serial, page.granule, page.flags)
                    if not page.whole or page.end > size:
                        return _OggWalk(chained, link, streams, cut if page.whole else None, True, gaps, tuple(begun))
                    stream = streams.get(page.serial)
                    if stream is not None:
                        if page.last:
                            f.seek(page.offset)
                            if not ogg_page_intact(f.read(page.length)):  # (a page cut, and bytes appended after it)
                                return _OggWalk(chained, link, streams, cut, True, gaps, tuple(begun))
                        _count_gap(gaps, stream, page, f)
                        stream.granule = page.granule if page.granule != -1 else stream.granule
                        stream.ended, stream.last = page.last, number
                        final = page
                    pos = page.end
                    number += 1
                if pos >= size:
                    break
                f.seek(pos)
                head = f.read(27)
                if len(head) < 27 and b"OggS"[: len(head)] == head[:4] and head[4:5] in (b"", b"\0"):
                    return _OggWalk(chained, link, streams, None, True, gaps, tuple(begun)) if streams else None
                pos = _next_ogg_page(f, pos + 1, size) if len(head) == 27 else -1  # (not a page where one must
                if pos < 0:  # begin: damage, or junk after the last page)
                    break
            # (its last page, whole by its length, not of a right checksum: cut inside, bytes appended after)
            if final is not None and not final.last:
                f.seek(final.offset)
                return _OggWalk(chained, link, streams, None, not ogg_page_intact(f.read(final.length)), gaps, tuple(begun)) \
                    if streams else None  # fmt: skip
    except OSError:
        return None
    return _OggWalk(chained, link, streams, None, False, gaps, tuple(begun)) if streams else None


def _count_gap(gaps: _OggGaps, stream: _OggStream, page, f) -> None:
    """Count in ``gaps`` the pages of ``stream`` missing before its whole page ``page`` (an
    `OggPageHead`: its number beyond the one due; the open file `f` read for the page's packets where
    they are counted), and the audio they held once a page gives the granule position after them: that
    position less the one before them and the packets after them that end on the pages up to it (their
    samples told by their codec, `_follow_packets`; a packet whose beginning was on a missing page
    counts as missing). A stream of no audio tagger knows (video, a skeleton) is passed over.

    Numbers skipped before its first page of audio that has a granule position are where it begins,
    not a gap: a stream joined while it played (an internet radio recorded from its Icecast server,
    which sends the header pages, then the pages of the moment as they are, numbered on from
    thousands, their granule positions counting the hours played; a tool that rewrote the header
    pages into fewer without numbering the rest again) holds all of its audio (refused as thousands
    of pages missing, up to an hour of a 10 s file, from 8e0fc50 to 2e43145). Where that first page's
    granule position is more than its packets' samples (the Vorbis I spec, A.2, and RFC 7845, 4.5:
    the stream's start was cut, or it was joined while it played), the file begins so far into its
    stream (``gaps.late``): the page headers cannot tell such a recording from a file that lost the
    pages right after its header pages (its first seconds), which is noted so, not refused."""
    skipped = page.sequence - stream.sequence if page.sequence > stream.sequence and not page.first else 0
    stream.sequence = max(stream.sequence, page.sequence + 1)
    if not stream.codec:
        return
    if skipped:
        stream.open = None  # (the packet that went on over the missing pages lost its end)
        if stream.counting and stream.gap_from is None:
            stream.skipped += skipped
        else:
            gaps.pages += skipped
            if stream.gap_from is None:
                stream.gap_from, stream.kept, stream.block, stream.counting = stream.granule, 0, None, True
    if not stream.counting:
        return
    f.seek(page.offset)
    _follow_packets(stream, f.read(page.length))
    if page.granule == -1 or (stream.gap_from is None and not stream.audio):
        return
    stream.counting = False
    if stream.gap_from is None:  # (its first page of audio that has a granule position)
        # (more than its longest packet: an encoder that counted a first packet that gives no audio,
        # Vorbis's, is not taken for a start cut)
        if stream.kept is not None and stream.rate and page.granule - stream.kept > stream.longest:
            gaps.late.append(((page.granule - stream.kept) / stream.rate, stream.skipped))
        return
    # (an end-of-stream page's last packet may be cut short by its granule position: not counted)
    kept = stream.kept - (stream.on_page if page.last else 0) if stream.kept is not None else 0
    gaps.exact = gaps.exact and stream.kept is not None
    if stream.rate:
        gaps.seconds += max(page.granule - stream.gap_from - kept, 0) / stream.rate
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
    word. A file that ends inside a page (`_ogg_walk`: its header or body cut, or its last page of a
    wrong checksum, bytes appended after the cut) where a stream of its last link lacks its
    end-of-stream page is cut: where it ends inside that last page, its header's granule position
    says how much is missing (the rest of the page), which comes under `_note_or_refuse`'s rule
    against the file's length; where not (its last pages missing, or only their header there), how
    much is missing is not known: the file is analysed as what it holds, with a note saying so, as
    an MP3 whose last frame is cut (`_check_mp3_cut`), and an error for a caller that takes no notes.
    A file that ends on a whole page of a right checksum is no evidence of a cut, with or without its
    end-of-stream flag: a stream recording stopped at a page's end (was noted as cut short, and
    refused for a caller that takes no notes)."""
    walk = _ogg_walk(path)
    if walk is None:
        return
    _check_opus_skip(path, meta, walk, notes)
    _check_ogg_gaps(path, meta, walk, notes)
    _check_ogg_start(walk, notes)
    cut = [(serial, s) for serial, s in walk.streams.items() if s.codec and not s.ended and s.last >= walk.link]
    if not cut or not walk.ends_in_page:
        return
    serial, stream = cut[-1]
    last = walk.cut if walk.cut is not None and walk.cut[0] == serial and walk.cut[2] & 0x04 else None
    where = "inside its last Ogg page" if last is not None else "inside an Ogg page (its last pages missing or cut)"
    if last is None or last[1] < 0 or stream.granule < 0 or not stream.rate or not meta.duration:
        if notes is None:
            raise AudioReadError(path, f"cut short: the file ends {where}, a copy or download that stopped; nothing "
                                       "stored, as how much is missing is not known")  # fmt: skip
        # (as an MP3 whose last frame is cut, `_check_mp3_cut`: the file plays as far as it goes, and what
        # it holds is analysed, the note saying so)
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
    pages held (`_OggGaps.seconds`: exact where the codec tells its packets' samples, else at most)
    comes under `_note_or_refuse`'s rule against the file's length (its last granule position's,
    which counts them); where it cannot be told, the file is refused. (Pages missing at its end:
    `_check_ogg_end`; before its first page of audio: `_check_ogg_start`.)"""
    gaps = walk.gaps
    if not gaps.pages:
        return
    pages = f"{gaps.pages} Ogg page{'s are' if gaps.pages > 1 else ' is'} missing from its middle"
    known = gaps.known and not any(s.gap_from is not None and s.ended for s in walk.streams.values())
    most, up_to = ("", "") if gaps.exact else ("at most ", "up to ")
    _note_or_refuse(path, notes, lost=gaps.seconds, duration=meta.duration if known else None,
                    note=f"{pages} (a download that lost a range, a bad copy?): analysed without them ({most}"
                         f"{gaps.seconds:.3f} s of {meta.duration or 0:.1f} s left out)",
                    refusal=f"{pages} (a download that lost a range, a bad copy): "
                            + (f"{up_to}{gaps.seconds:.1f} s of its {meta.duration:.1f} s; " if known and meta.duration
                               else "how much audio they held is not known; ")
                            + "nothing stored, as a result would leave them out")  # fmt: skip


def _check_ogg_start(walk: _OggWalk, notes: list[str] | None) -> None:
    """A stream whose first page of audio has a granule position beyond its packets' samples begins
    that far into its stream (`_OggGaps.late`): a recording of a stream joined while it played, a
    file cut from a longer one (oggz-chop), or one that lost the pages right after its header pages
    (a download that lost its first seconds); the pages cannot tell which. Such a file was analysed
    as what it holds without a word; it still is, and a caller that takes notes is told where it
    begins. Never an error: the file may be whole."""
    if notes is None:
        return
    for seconds, skipped in walk.gaps.late:
        why = (f", {skipped} page number{'s' if skipped > 1 else ''} skipped after its header pages (a recording "
               "joined while the stream played, or its first pages lost)" if skipped else
               " (cut from a longer stream, or a recording joined while it played)")  # fmt: skip
        notes.append(f"it begins {seconds:.1f} s into its Ogg stream{why}: analysed from there")


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

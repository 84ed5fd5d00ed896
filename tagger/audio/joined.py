"""Files that are two files or more joined byte-wise (``cat a.flac b.flac > ab.flac``: a badly joined
download, a "gapless album" tool): FLAC, WAV, RF64, Wave64, AIFF, WavPack, TTA, TAK, DSF and Monkey's
Audio streams one after another, found by their headers, at the end a part's header declares or looked
for from where each one's audio begins (`_joined_parts`). libsndfile and ffmpeg decode the first stream
alone, without a word; each part is decoded on its own by ffmpeg (`JoinedPart`:
`tagger.audio.decoders._parts_blocks`), so that the file is analysed whole (a file with a part of
Monkey's Audio is analysed from its first, and says so: `UNSPLIT_KINDS`)."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tagger.audio.endtags import _trailing_tags
from tagger.audio.flac import _flac_end_whole, _flac_last_frame
from tagger.containers import id3v2_end, id3v2_length


@dataclass(frozen=True)
class JoinedPart:
    """One stream of a file of streams joined: its bytes (``start`` to ``end``, its header on, the
    tags after its audio left out) and what its header declares (``samples``: None where it
    declares no length)."""

    start: int
    end: int
    rate: int
    channels: int
    samples: int | None
    kind: str = ""
    """Its kind's name (`JOINED_KINDS`: 'FLAC', 'WAV'...)."""
    demuxer: str = ""
    """The ffmpeg demuxer that decodes it."""

    @property
    def seconds(self) -> float | None:
        return self.samples / self.rate if self.samples is not None else None


JOINED_KINDS = {b"fLaC": ("FLAC", "flac"), b"RIFF": ("WAV", "wav"), b"FORM": ("AIFF", "aiff"),
                b"wvpk": ("WavPack", "wv"), b"TTA1": ("TTA", "tta"), b"RF64": ("RF64", "wav"),
                b"riff": ("Wave64", "w64"), b"DSD ": ("DSF", "dsf"), b"tBaK": ("TAK", "tak"),
                b"MAC ": ("Monkey's Audio", "ape")}  # fmt: skip
"""The first bytes of each kind of stream looked for (its name, ffmpeg's demuxer of it)."""
SEEKING_DEMUXERS = frozenset({"wv"})
"""The demuxers a part is given to as a part of the file ffmpeg can seek in (its ``subfile`` protocol),
not through a pipe: WavPack's (a file of more than 2 channels: it reads ahead to its other blocks
for its channels, and refuses a pipe: ``Cannot determine additional parameters``)."""
UNSPLIT_KINDS = frozenset({"Monkey's Audio"})
"""The kinds whose parts are found but not decoded one by one (no encoder of Monkey's Audio here to
test ffmpeg's reading of a part): a file holding one is decoded as libsndfile or ffmpeg reads it (its
first stream), and says so (`unsplit_note`, `tagger.audio.fileinfo.AudioInfo.said`)."""
MAX_PARTS = 1000
"""Parts read at most (a file of more is taken as what the first `MAX_PARTS` say)."""
DECODING = 3
"""The version of tagger's decoding recorded with each track it analyses (``tracks.decoding``,
revision 0012): 1 decodes every part of a file of streams joined byte-wise (`_joined_parts`; MP3
files joined: `tagger.audio.mp3length._mp3_decoded_in_part`), of which a tagger before it decoded
the first alone; 2 those of RF64, Wave64, DSF and TAK too, and of parts of other kinds (a FLAC then
a WAV); 3 analyses a recording under the silence floor throughout under a floor of its own
(`tagger.library.analyse.quiet_floor`), which a tagger before it stored with every window silent.
A track of an older decoding whose file `decoded_otherwise` names (before `JOINED_DECODING`), or
stored with every window silent (before 3), is analysed again."""
JOINED_DECODING = 2
"""The decoding from which a file is read as `decoded_otherwise` reads it: a track of it or a later
one is not looked at again for files joined (its file's bytes not read a second time)."""
MP3_SUFFIXES = (".mp3", ".mp2", ".mpga")


def decoded_otherwise(path: Path) -> str | None:
    """Why the decoding of `DECODING` reads the file otherwise than a tagger of an older one did, which
    decoded the first of its streams alone: ``2 FLAC files joined one after another``; None for a
    file both read alike (one that cannot be read too: its next analysis says why). Reads the 4
    bytes of its kind, and the file's bytes for a kind that can be joined (`_joined_parts`: 50 ms for
    a 10-minute FLAC in the page cache), or an MP3's frames at a few places (`_mp3_decoded_in_part`)."""
    parts = _joined_parts(path)
    if parts:
        return joined_said(parts)
    if path.suffix.lower() in MP3_SUFFIXES and _joined_kind(path) is None:
        from tagger.audio.mp3length import _mp3_decoded_in_part  # (only for MP3s)

        return _mp3_decoded_in_part(path)
    return None


def joined_said(parts: tuple[JoinedPart, ...]) -> str:
    """``2 FLAC files joined one after another``; ``2 files joined one after another (FLAC, then WAV)``."""
    kinds = [part.kind for part in parts]
    if len(set(kinds)) == 1:
        return f"{len(parts)} {kinds[0]} files joined one after another"
    said = ", then ".join(kinds[:6]) + (", then ..." if len(kinds) > 6 else "")
    return f"{len(parts)} files joined one after another ({said})"


def unsplit_note(parts: tuple[JoinedPart, ...]) -> str:
    """What is said of a file of `parts` that holds a kind not decoded part by part (`UNSPLIT_KINDS`)."""
    return (f"it holds {joined_said(parts)}, only the first analysed (a part of "
            f"{' or '.join(sorted({p.kind for p in parts} & UNSPLIT_KINDS))} is not decoded on its own)")


def _joined_kind(path: Path) -> tuple[str, str] | None:
    """(name, ffmpeg demuxer) of the kind of stream the file begins with (after ID3v2 tags), among
    `JOINED_KINDS`; None for another."""
    try:
        with open(path, "rb") as f:
            f.seek(id3v2_end(f))
            return JOINED_KINDS.get(f.read(4))
    except OSError:
        return None


def _joined_parts(path: Path) -> tuple[JoinedPart, ...]:
    """The streams of a file that holds two or more (`JOINED_KINDS`) one after another: each one's
    header (`_HEADERS`) found where the bytes the one before declares end (past the tags there:
    `_past_tags`; a part of any kind), else by searching the file's bytes for one of its kind from the
    audio of the one before (`_Bytes`, a MiB at a time: 50 ms for a 10-minute FLAC of 53 MB, read from the page
    cache), as a FLAC's, TAK's, WavPack's or TTA's header declares no size and a part cut short
    declares more bytes than it holds (a download that stopped, then joined); a file whose first
    header declares its bytes to be the file's (a WAV's RIFF size, an AIFF's FORM size, an RF64's,
    Wave64's or DSF's), or those before its tags at its end, is not searched. A part ends where the
    next begins (before the ID3v2 tag in front of it), its tags at its end left out (ID3v1, APEv2:
    `_trailing_tags`). () for a file of one stream, of another kind, or one that cannot be read."""
    kind = _joined_kind(path)
    if kind is None:
        return ()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 64:
                return ()
            first = id3v2_end(f)
            data = _Bytes(f, size)  # (read a block at a time: `_Bytes`)
            read = _HEADERS[kind[0]](data, first)
            if (read is not None and read.end in (size, _trailing_tags(f, size)[0])
                    and _next_at(data, read) is None):  # fmt: skip
                return ()  # (one stream whose header declares the file's bytes: its audio is not searched)
            found = []  # (where, kind, header read)
            after = (first, kind, read) if read is not None else None
            while after is not None and len(found) < MAX_PARTS:
                found.append(after)
                at, kind, read = after
                after = _next_at(data, read) or _next_of(data, [kind], read.audio)
                ends = _ends_before(path, data, f, kind[0], at, read) if after is None and read.end is None else None
                if ends is not None:
                    # (its stream ends before the file's audio does: a part of another kind after it,
                    # looked for in its bytes as a part of its own kind was: a FLAC, then a WAV)
                    after = _next_of(data, [k for k in JOINED_KINDS.values() if k != kind], ends)
            if len(found) < 2:
                return ()
            parts = []
            for i, (at, (name, demuxer), (rate, channels, samples, *_)) in enumerate(found):
                end = _id3v2_before(data, found[i + 1][0], at) if i + 1 < len(found) else len(data)
                # (the tags after each part's audio, ID3v1, APEv2, an appended ID3v2, are not given to ffmpeg)
                parts.append(JoinedPart(at, max(at, _trailing_tags(f, end)[0]), rate, channels, samples, name, demuxer))
            return tuple(parts)
    except (OSError, ValueError):
        return ()


def _next_at(data, read: Header) -> tuple[int, tuple[str, str], Header] | None:
    """The part of any kind that begins where a part's audio chunk ends (`Header.audio_end`), else where
    its bytes end (`Header.end`), past the tags there (`_past_tags`); None where none does."""
    if read.audio_end is not None and read.audio_end != read.end:
        after = _header_at(data, _past_tags(data, read.audio_end, footers=False))
        if after is not None:
            return after
    return _header_at(data, _past_tags(data, read.end)) if read.end is not None else None


def _next_of(data, kinds: list[tuple[str, str]], start: int) -> tuple[int, tuple[str, str], Header] | None:
    """The first stream of one of `kinds` whose header (`_HEADERS`) is found in the file's bytes from
    `start` on: (where, kind, its header read); None where none is."""
    best = None
    for kind in dict.fromkeys(kinds):
        magic, header = next(m for m, k in JOINED_KINDS.items() if k == kind), _HEADERS[kind[0]]
        at = data.find(magic, start)
        while at >= 0 and (best is None or at < best[0]):
            read = header(data, at)
            if read is not None:
                best = (at, kind, read)
                break
            at = data.find(magic, at + 1)
    return best


def _ends_before(path: Path, data, f, name: str, at: int, read: Header) -> int | None:
    """None where the stream of kind `name` at `at` (which declares no size) is the file's last: a FLAC
    that ends on the whole last frame of the samples its STREAMINFO declares (`_flac_end_whole`), a
    WavPack whose last block ends there with its last samples, before the tags at the file's end;
    else where a part after it is looked for from: its last frame's header where it lies in the
    file's last 256 KiB (`_flac_last_frame`: junk or a short file after it), else where its audio
    begins. None for another kind (a TAK's end is not read), and for a stream that declares no length."""
    if name == "FLAC" and read.samples:
        if _flac_end_whole(path, read.samples, at):
            return None
        last = _flac_last_frame(path, read.samples, at)
        return last if last is not None else read.audio
    if name == "WavPack" and read.samples and not _wavpack_ends(data, f, at, read):
        # (from past its first block: the wavpack program keeps the RIFF header of the WAV it encoded
        # there, which is no part)
        return at + 8 + int.from_bytes(data[at + 4 : at + 8], "little")
    if name == "TAK":
        last = _tak_last_frame(data, max(read.audio, _trailing_tags(f, len(data))[0] - TAK_TAIL))
        return last if last is not None else read.audio
    return None


TAK_TAIL = 2 << 20
"""The bytes at a file's end a TAK stream's last frame is looked for in (a frame is 250 ms at most:
1.2 MB of 8 channels of 24 bits at 192 kHz, uncompressed)."""


def _tak_last_frame(data, low: int) -> int | None:
    """Where the last TAK frame header from `low` on lies whose flags say it is its stream's last, its
    CRC-24 right (ffmpeg's ``ff_tak_decode_frame_header``: the sync 0xA0FF, flags, frame number, its
    samples, the stream's info where flagged, its bits read least significant first); None where none
    does (its stream ends before `low`: a part of another kind after it)."""
    at = len(data)
    while (at := data.rfind(b"\xff\xa0", low, at + 1)) >= 0:
        bits = int.from_bytes(data[at : at + 24], "little")
        flags, pos = (bits >> 16) & 7, 40
        if flags & 1 and not flags & 4:  # (the last frame, without metadata)
            pos += 16
            if flags & 2:  # (the stream's info: 80 bits, then 6 that may flag 25 more, to a whole byte)
                pos += 86 + (25 if (bits >> (pos + 80)) & 0x3F else 0)
                pos += -pos % 8
            size = pos // 8
            if _crc24(data[at : at + size]) == data[at + size : at + size + 3]:
                return at
        at -= 1
    return None


def _wavpack_ends(data, f, at: int, read: Header) -> bool:
    """Whether the last WavPack block of samples before the tags at the file's end ends there (or where
    the blocks of no samples after it begin: the wavpack program keeps the chunks after the data chunk
    of the WAV it encoded in one), of the last of the samples the stream at `at` declares."""
    end = _trailing_tags(f, len(data))[0]
    low = max(at, end - WAVPACK_TAIL)
    for _ in range(8):
        last = data.rfind(b"wvpk", low, end)  # (a MiB at a time, from the end)
        block = data[last : last + 32] if last >= 0 else b""
        if len(block) < 32 or last + 8 + int.from_bytes(block[4:8], "little") != end:
            return False
        if int.from_bytes(block[20:24], "little"):
            return int.from_bytes(block[16:20], "little") + int.from_bytes(block[20:24], "little") == read.samples
        end = last  # (a block of metadata alone: the one before it)
    return False


WAVPACK_TAIL = 4 << 20
"""The bytes at a file's end its last WavPack block is looked for in (a block is a second or so of
audio: under 1 MiB for 8 channels of 24 bits)."""


def _past_tags(data, pos: int, *, footers: bool = True) -> int:
    """Where the bytes at `pos` (where a part's declared bytes end) go on past the tags a part may carry
    after them (an ID3v2 tag, an APEv2 tag with its header or of a footer alone, an ID3v1 tag, a RIFF
    chunk's pad byte). Without `footers`, an APEv2 tag of a footer alone is not looked for (a MiB read)."""
    for _ in range(8):
        head = data[pos : pos + 32]
        if head[:3] == b"ID3" and id3v2_length(head):
            pos += id3v2_length(head)
        elif head[:8] == b"APETAGEX" and int.from_bytes(head[20:24], "little") & 1 << 29:  # (a header: its length on)
            pos += 32 + int.from_bytes(head[12:16], "little")
        elif head[:3] == b"TAG" and data[pos + 128 : pos + 132][:4] in JOINED_KINDS:
            pos += 128
        elif head[:1] == b"\0" and data[pos + 1 : pos + 5] in JOINED_KINDS:
            pos += 1
        elif footers and head[:4] not in JOINED_KINDS and (footer := data[pos : pos + APE_ITEMS].find(b"APETAGEX")) >= 0 and (
                32 - int.from_bytes(data[pos + footer + 12 : pos + footer + 16], "little") == -footer):  # fmt: skip
            pos += footer + 32  # (an APEv2 tag of a footer alone: its items from `pos` on, then the footer)
        else:
            return pos
    return pos


APE_ITEMS = 1 << 20
"""The bytes an APEv2 tag without a header is looked for in after a part (its items, then its footer)."""


def _header_at(data, at: int) -> tuple[int, tuple[str, str], Header] | None:
    """(where, kind, its header read) of a stream of any kind of `JOINED_KINDS` that begins at `at`;
    None where none does."""
    kind = JOINED_KINDS.get(data[at : at + 4])
    read = _HEADERS[kind[0]](data, at) if kind is not None else None
    return (at, kind, read) if read is not None else None


SEARCH_BLOCK = 1 << 20
"""Bytes read at a time while a next part's header is looked for (`_Bytes`)."""


class _Bytes:
    """The bytes of the open file `f` of `size` bytes, as the headers and the search for them read
    them (``data[a:b]``, ``data[i]``, ``find``, ``rfind``), read with ``os.pread`` a `SEARCH_BLOCK` at
    a time (the last one kept), not through a memory map: each page of a mapping read counts in the
    process's resident memory until it is unmapped (and the kernel maps the cached pages around
    each one read), so that probing a 1 GB FLAC (its whole audio searched) or WavPack (each
    block's header read) raised a scan worker's peak RSS by 1 GB (the scan's ``peak_rss``; a Dask
    worker's ``--memory-limit`` counts it too)."""

    def __init__(self, f, size: int):
        self.fd, self.size = f.fileno(), size
        self.at, self.buf = 0, b""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if isinstance(key, int):
            one = self[key : key + 1]
            if not one:
                raise IndexError(key)
            return one[0]
        start, stop = key.start or 0, min(self.size, self.size if key.stop is None else key.stop)
        if stop <= start:
            return b""
        if self.at <= start and stop <= self.at + len(self.buf):
            return self.buf[start - self.at : stop - self.at]
        return os.pread(self.fd, stop - start, start)

    def find(self, magic: bytes, start: int) -> int:
        """Where `magic` is first from `start` on; -1 where nowhere."""
        pos = max(start, 0)
        while pos + len(magic) <= self.size:
            if not self.at <= pos <= self.at + len(self.buf) - len(magic):
                self.at, self.buf = pos, os.pread(self.fd, SEARCH_BLOCK, pos)
                if len(self.buf) < len(magic):
                    return -1
            at = self.buf.find(magic, pos - self.at)
            if at >= 0:
                return self.at + at
            pos = self.at + len(self.buf) - len(magic) + 1
        return -1

    def rfind(self, magic: bytes, low: int, high: int) -> int:
        """Where `magic` is last wholly within ``[low, high)``; -1 where nowhere."""
        end = min(high, self.size)
        while end - low >= len(magic):
            start = max(low, end - SEARCH_BLOCK)
            at = self[start:end].rfind(magic)
            if at >= 0:
                return start + at
            if start == low:
                return -1
            end = start + len(magic) - 1
        return -1


def _id3v2_before(data, pos: int, low: int) -> int:
    """Where an ID3v2 tag that ends at ``pos`` begins (the tag a joined part carries in front of its
    stream), not before ``low``; ``pos`` where none does."""
    at = pos
    for _ in range(64):
        at = data.rfind(b"ID3", max(low, pos - (64 << 20)), at)
        if at < 0:
            return pos
        if at + id3v2_length(data[at : at + 10]) == pos:
            return at
    return pos


class Header(NamedTuple):
    """What a stream's header at a place declares."""

    rate: int
    channels: int
    samples: int | None
    audio: int
    """Where its audio begins: the next stream of its kind is looked for from there."""
    end: int | None
    """Where its bytes end (a WAV's RIFF size, a DSF's file size...); None where it declares none, or
    a size that does not hold its audio."""
    audio_end: int | None = None
    """Where its audio chunk ends (a WAV's data chunk, an AIFF's SSND): a part found there is the next
    one, whatever its RIFF or FORM size says (a WAV whose RIFF size, wrong, holds a copy joined after
    its audio)."""


def _flac_header(data, at: int) -> Header | None:
    """A FLAC's ``fLaC`` and STREAMINFO (of a right rate and block sizes) at `at`; its audio begins
    after its metadata blocks."""
    head = data[at : at + 42]
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0 or head[5:8] != b"\x00\x00\x22":
        return None
    low, high = int.from_bytes(head[8:10], "big"), int.from_bytes(head[10:12], "big")
    bits = int.from_bytes(head[18:26], "big")
    rate, channels, total = bits >> 44, ((bits >> 41) & 7) + 1, bits & ((1 << 36) - 1)
    if not 16 <= low <= high or not 1 <= rate <= 655350:
        return None
    pos, last = at + 4, False
    while not last and pos + 4 <= len(data):  # (the metadata blocks: a cover may hold any bytes)
        last = bool(data[pos] & 0x80)
        pos += 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
    return Header(rate, channels, total or None, min(pos, len(data)), None)


def _wav_header(data, at: int) -> Header | None:
    """A RIFF WAVE header at `at` (its ``fmt `` chunk, then its ``data`` chunk, among the chunks its
    RIFF size holds), or an RF64 one (its ``ds64`` chunk first, whose sizes are the RIFF's and the
    data chunk's); its audio begins at its data chunk's, its bytes end where its RIFF size says."""
    magic = data[at : at + 4]
    if magic not in (b"RIFF", b"RF64") or data[at + 8 : at + 12] != b"WAVE":
        return None
    riff, big_data = int.from_bytes(data[at + 4 : at + 8], "little"), None
    if magic == b"RF64":  # (its sizes 0xFFFFFFFF: those of its ds64 chunk, the first)
        if data[at + 12 : at + 16] != b"ds64" or int.from_bytes(data[at + 16 : at + 20], "little") < 24:
            return None
        riff = int.from_bytes(data[at + 20 : at + 28], "little")
        big_data = int.from_bytes(data[at + 28 : at + 36], "little")
    declared = at + 8 + riff
    rate = channels = align = per_second = 0
    pcm, fact = True, None
    pos = at + 12
    for _ in range(256):  # (its chunks, up to its data chunk, whatever its RIFF size: a wrong one holds none)
        if pos + 8 > len(data):
            return None
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind == b"fmt " and length >= 16:
            pcm, channels, rate, per_second, align = _wav_format(data, pos + 8, length)
        elif kind == b"fact" and length >= 4:
            fact = int.from_bytes(data[pos + 8 : pos + 12], "little")
        elif kind == b"data":
            if big_data is not None and length == 0xFFFFFFFF:
                length = big_data
            if not rate or not channels or not align or length in (0, 0xFFFFFFFF):
                return None
            samples, ends = _wav_samples(pcm, length, align, fact, rate, per_second), pos + 8 + length
            return Header(rate, channels, samples, pos + 8, declared if declared >= ends else None, ends)
        pos += 8 + length + (length & 1)
    return None


def _wav_format(data, at: int, length: int) -> tuple[bool, int, int, int, int]:
    """(PCM-like, channels, rate, bytes a second, block align) of a WAV's or Wave64's format chunk whose
    body begins at `at`."""
    tag = int.from_bytes(data[at : at + 2], "little")
    if tag == 0xFFFE and length >= 40:  # (WAVE_FORMAT_EXTENSIBLE: its subformat's tag)
        tag = int.from_bytes(data[at + 24 : at + 26], "little")
    return (tag in WAV_PCM_TAGS, int.from_bytes(data[at + 2 : at + 4], "little"),
            int.from_bytes(data[at + 4 : at + 8], "little"), int.from_bytes(data[at + 8 : at + 12], "little"),
            int.from_bytes(data[at + 12 : at + 14], "little"))  # fmt: skip


def _wav_samples(pcm: bool, length: int, align: int, fact: int | None, rate: int, per_second: int) -> int | None:
    """The samples of a WAV's or Wave64's data chunk of `length` bytes."""
    if pcm:
        return length // align
    # (a block of ADPCM, GSM, MP3... holds many samples: its fact chunk's count, else its byte rate's)
    return fact if fact else length * rate // per_second if per_second else None


WAV_PCM_TAGS = (1, 3, 6, 7)
"""The format tags of a WAV whose samples are each its block align's bytes (PCM, float, A-law, µ-law);
another's (ADPCM, GSM, MP3) blocks hold many: its length is its ``fact`` chunk's."""
W64_GUID = bytes.fromhex("f3acd3118cd100c04f8edb8a")
"""The last 12 bytes of Wave64's GUIDs of its ``wave``, ``fmt ``, ``fact`` and ``data`` (after those 4 bytes)."""
W64_RIFF = b"riff" + bytes.fromhex("2e91cf11a5d628db04c10000")


def _w64_header(data, at: int) -> Header | None:
    """A Sony Wave64 header at `at` (its ``riff`` and ``wave`` GUIDs, its ``fmt `` chunk, then its
    ``data`` chunk, each of a GUID and a 64-bit size that counts its 24 bytes, 8-byte aligned, among
    the chunks its riff size holds); its audio begins at its data chunk's, its bytes end where its
    riff size says."""
    if data[at : at + 16] != W64_RIFF or data[at + 24 : at + 40] != b"wave" + W64_GUID:
        return None
    declared = at + int.from_bytes(data[at + 16 : at + 24], "little")
    rate = channels = align = per_second = 0
    pcm, fact = True, None
    pos = at + 40
    for _ in range(256):
        if pos + 24 > len(data):
            return None
        guid, length = data[pos : pos + 16], int.from_bytes(data[pos + 16 : pos + 24], "little")
        if length < 24:
            return None
        if guid == b"fmt " + W64_GUID and length >= 40:
            pcm, channels, rate, per_second, align = _wav_format(data, pos + 24, length - 24)
        elif guid == b"fact" + W64_GUID and length >= 28:
            fact = int.from_bytes(data[pos + 24 : pos + 28], "little")
        elif guid == b"data" + W64_GUID:
            if not rate or not channels or not align:
                return None
            samples, ends = _wav_samples(pcm, length - 24, align, fact, rate, per_second), pos + length
            return Header(rate, channels, samples, pos + 24, declared if declared >= ends else None, ends)
        pos += (length + 7) & ~7
    return None


AIFF_PCM_TYPES = (b"NONE", b"sowt", b"twos", b"raw ", b"in24", b"in32", b"42ni", b"23ni", b"fl32", b"FL32",
                  b"fl64", b"FL64", b"alaw", b"ALAW", b"ulaw", b"ULAW")  # fmt: skip
"""The compression types of an AIFF-C whose COMM frame count is its samples' (of ``ima4``, ``MAC3``, ``GSM ``...
it counts packets of many: its length not known)."""


def _aiff_header(data, at: int) -> Header | None:
    """An AIFF or AIFF-C header at `at` (``FORM``, its ``COMM`` chunk, then its ``SSND`` chunk, among
    the chunks its FORM size holds); its audio begins at its SSND chunk's, its bytes end where its
    FORM size says."""
    if data[at : at + 4] != b"FORM" or data[at + 8 : at + 12] not in (b"AIFF", b"AIFC"):
        return None
    declared = at + 8 + int.from_bytes(data[at + 4 : at + 8], "big")
    rate = channels = frames = 0
    pos = at + 12
    for _ in range(256):
        if pos + 8 > len(data):
            return None
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        if kind == b"COMM" and length >= 18:
            channels = int.from_bytes(data[pos + 8 : pos + 10], "big")
            frames = int.from_bytes(data[pos + 10 : pos + 14], "big")
            if data[at + 8 : at + 12] == b"AIFC" and length >= 22 and data[pos + 26 : pos + 30] not in AIFF_PCM_TYPES:
                frames = None  # (ima4, MACE, GSM...: packets, not samples)
            exponent, mantissa = int.from_bytes(data[pos + 16 : pos + 18], "big") & 0x7FFF, data[pos + 18 : pos + 26]
            rate = round(int.from_bytes(mantissa, "big") * 2.0 ** (exponent - 16383 - 63)) if len(mantissa) == 8 else 0
        elif kind == b"SSND":
            if not 1 <= rate <= 10_000_000 or not channels:
                return None
            ends = pos + 8 + length
            return Header(rate, channels, frames, pos + 16, declared if declared >= ends else None, ends)
        pos += 8 + length + (length & 1)
    return None


WAVPACK_RATES = (6000, 8000, 9600, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000, 192000)


def _wavpack_header(data, at: int) -> Header | None:
    """A WavPack stream's first block at `at` (``wvpk``, a version of 0x402 to 0x410, block index 0,
    the flag of a first block of its samples: a file of more channels holds several blocks of index
    0, of which one so flagged); of a standard rate (a custom one, in a metadata sub-block, is not
    read here: None)."""
    head = data[at : at + 32]
    if len(head) < 32 or head[:4] != b"wvpk" or not 0x402 <= int.from_bytes(head[8:10], "little") <= 0x410:
        return None
    total, index = int.from_bytes(head[12:16], "little"), int.from_bytes(head[16:20], "little")
    flags = int.from_bytes(head[24:28], "little")
    code = (flags >> 23) & 0xF
    if index != 0 or not flags & 0x800 or code >= len(WAVPACK_RATES):
        return None
    return Header(WAVPACK_RATES[code], 1 if flags & 4 else 2, total if total != 0xFFFFFFFF else None, at + 32, None)


def _tta_header(data, at: int) -> Header | None:
    """A TTA header at `at` (``TTA1``, its CRC-32 right); its bytes end after the frames its seek table
    (after the header, of a right CRC-32) declares, as ffmpeg's ``tta.c`` counts them (None where the
    table is not whole)."""
    head = data[at : at + 22]
    if len(head) < 22 or head[:4] != b"TTA1" or zlib.crc32(head[:18]) != int.from_bytes(head[18:22], "little"):
        return None
    channels, rate = int.from_bytes(head[6:8], "little"), int.from_bytes(head[10:14], "little")
    samples = int.from_bytes(head[14:18], "little")
    if not rate or not channels:
        return None
    per_frame = rate * 256 // 245
    frames = -(-samples // per_frame) if per_frame else 0
    table = data[at + 22 : at + 26 + 4 * frames] if 0 < frames <= TTA_MAX_FRAMES else b""
    declared = None
    if len(table) == 4 + 4 * frames and zlib.crc32(table[:-4]) == int.from_bytes(table[-4:], "little"):
        declared = at + 22 + len(table) + sum(int.from_bytes(table[i : i + 4], "little") for i in range(0, 4 * frames, 4))
    return Header(rate, channels, samples, at + 22, declared)


TTA_MAX_FRAMES = 1 << 20
"""The frames of a TTA's seek table read at most (1.04 s each: 12 days)."""


def _dsf_header(data, at: int) -> Header | None:
    """A DSF header at `at` (its ``DSD `` chunk of 28 bytes, which declares the file's size, metadata
    included; its ``fmt `` chunk of raw DSD; its ``data`` chunk); its audio begins at its data chunk's,
    of the DSD rate and samples its format declares (ffmpeg decodes it at an eighth of that rate)."""
    head = data[at : at + 92]
    if len(head) < 92 or head[:4] != b"DSD " or int.from_bytes(head[4:12], "little") != 28 or head[28:32] != b"fmt ":
        return None
    size = int.from_bytes(head[32:40], "little")
    channels, rate = int.from_bytes(head[52:56], "little"), int.from_bytes(head[56:60], "little")
    samples = int.from_bytes(head[64:72], "little")
    body = at + 28 + size
    if size < 52 or int.from_bytes(head[44:48], "little") != 0 or not 1 <= channels <= 6 or not rate:
        return None
    if data[body : body + 4] != b"data":
        return None
    declared, ends = at + int.from_bytes(head[12:20], "little"), body + int.from_bytes(data[body + 4 : body + 12], "little")
    return Header(rate, channels, samples, body + 12, declared if declared >= ends else None, ends)


def _tak_header(data, at: int) -> Header | None:
    """A TAK stream's ``tBaK`` and metadata blocks at `at` (each a type byte and a 3-byte size), its
    STREAMINFO of a right CRC-24 (ffmpeg's ``takdec.c`` reads them); its audio begins after its last
    metadata block (type 0). A TAK's header declares no size: the next part is looked for."""
    if data[at : at + 4] != b"tBaK":
        return None
    pos, info = at + 4, None
    for _ in range(64):
        kind, length = data[pos] & 0x7F if pos < len(data) else 0, int.from_bytes(data[pos + 1 : pos + 4], "little")
        if pos + 4 > len(data):
            return None
        if kind == 0:
            if info is None:
                return None
            return Header(*info, pos + 4, None)
        block = data[pos + 4 : pos + 4 + length]
        if kind == 1:  # STREAMINFO
            if len(block) < 13 or _crc24(block[:-3]) != block[-3:]:
                return None
            bits = int.from_bytes(block[:-3], "little")
            samples = (bits >> 14) & ((1 << 35) - 1)
            rate, channels = ((bits >> 52) & ((1 << 18) - 1)) + 6000, ((bits >> 75) & 0xF) + 1
            info = (rate, channels, samples or None)
        pos += 4 + length
    return None


def _crc24(block: bytes) -> bytes:
    """TAK's CRC-24 (OpenPGP's: polynomial 0x864CFB, from 0xB704CE), as TAK stores it."""
    crc = 0xB704CE
    for byte in block:
        crc ^= byte << 16
        for _ in range(8):
            crc = ((crc << 1) ^ (0x864CFB if crc & 0x800000 else 0)) & 0xFFFFFF
    return crc.to_bytes(3, "little")


def _ape_header(data, at: int) -> Header | None:
    """A Monkey's Audio header of version 3.98 or later at `at` (``MAC ``, its descriptor, which declares
    the bytes of its header, seek table, WAV header, frames and terminating data, then its header:
    blocks per frame, frames, channels, rate); its audio begins after its WAV header, its bytes end
    after its terminating data (its APEv2 tag after them). An older version's header is not read."""
    head = data[at : at + 52]
    if len(head) < 52 or head[:4] != b"MAC " or int.from_bytes(head[4:6], "little") < 3980:
        return None
    described, header, seek, wav, low, high, terminating = (int.from_bytes(head[i : i + 4], "little")
                                                            for i in range(8, 36, 4))  # fmt: skip
    info = data[at + described : at + described + 24]
    if described < 52 or header < 24 or len(info) < 24:
        return None
    per_frame, final, frames = (int.from_bytes(info[i : i + 4], "little") for i in (4, 8, 12))
    channels, rate = int.from_bytes(info[18:20], "little"), int.from_bytes(info[20:24], "little")
    if not frames or not 1 <= final <= per_frame or not 1 <= channels <= 32 or not rate:
        return None
    audio = at + described + header + seek + wav
    return Header(rate, channels, (frames - 1) * per_frame + final, audio, audio + (high << 32 | low) + terminating)


_HEADERS = {"FLAC": _flac_header, "WAV": _wav_header, "RF64": _wav_header, "Wave64": _w64_header,
            "AIFF": _aiff_header, "WavPack": _wavpack_header, "TTA": _tta_header, "DSF": _dsf_header,
            "TAK": _tak_header, "Monkey's Audio": _ape_header}  # fmt: skip

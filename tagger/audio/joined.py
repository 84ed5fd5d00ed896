"""Files that are two files or more joined byte-wise (``cat a.flac b.flac > ab.flac``: a badly joined
download, a "gapless album" tool): FLAC, WAV, AIFF, WavPack and TTA streams one after another, found by
their headers, looked for from where each one's audio begins (`_joined_parts`). libsndfile and ffmpeg decode the
first stream alone, without a word; each part is decoded on its own by ffmpeg (`JoinedPart`:
`tagger.audio.decoders._parts_blocks`), so that the file is analysed whole."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from tagger.audio.endtags import _trailing_tags
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

    @property
    def seconds(self) -> float | None:
        return self.samples / self.rate if self.samples is not None else None


JOINED_KINDS = {b"fLaC": ("FLAC", "flac"), b"RIFF": ("WAV", "wav"), b"FORM": ("AIFF", "aiff"),
                b"wvpk": ("WavPack", "wv"), b"TTA1": ("TTA", "tta")}  # fmt: skip
"""The first bytes of each kind of stream looked for (its name, ffmpeg's demuxer of it)."""
MAX_PARTS = 1000
"""Parts read at most (a file of more is taken as what the first `MAX_PARTS` say)."""
DECODING = 1
"""The version of tagger's decoding recorded with each track it analyses (``tracks.decoding``,
revision 0012): 1 decodes every part of a file of streams joined byte-wise (`_joined_parts`; MP3
files joined: `tagger.audio.mp3length._mp3_decoded_in_part`), of which a tagger before it decoded
the first alone. A track of an older decoding whose file `decoded_otherwise` names is analysed again."""
MP3_SUFFIXES = (".mp3", ".mp2", ".mpga")


def decoded_otherwise(path: Path) -> str | None:
    """Why the decoding of `DECODING` reads the file otherwise than a tagger of an older one did, which
    decoded the first of its streams alone: ``2 FLAC files joined one after another``; None for a
    file both read alike (one that cannot be read too: its next analysis says why). Reads the 4
    bytes of its kind, and the file's bytes for a kind that can be joined (`_joined_parts`: 50 ms for
    a 10-minute FLAC in the page cache), or an MP3's frames at a few places (`_mp3_decoded_in_part`)."""
    parts = _joined_parts(path)
    if parts:
        return f"{len(parts)} {_joined_kind(path)[0]} files joined one after another"  # type: ignore[index]
    if path.suffix.lower() in MP3_SUFFIXES and _joined_kind(path) is None:
        from tagger.audio.mp3length import _mp3_decoded_in_part  # (only for MP3s)

        return _mp3_decoded_in_part(path)
    return None


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
    """The streams of a file that holds two or more of one kind (`JOINED_KINDS`) one after another:
    each one's header (`_HEADERS`) found by searching the file's bytes from the audio of the one
    before (`_Bytes`, a MiB at a time: 50 ms for a 10-minute FLAC of 53 MB, read from the page cache; a WAV or AIFF whose
    RIFF or FORM size is the file's is not searched), as a FLAC's frames declare no size and a part cut short
    declares more bytes than it holds (a download that stopped, then joined); a part ends where the
    next begins (before the ID3v2 tag in front of it), its tags at its end left out (ID3v1, APEv2:
    `_trailing_tags`). () for a file of one stream, of another kind, or one that cannot be read."""
    kind = _joined_kind(path)
    if kind is None:
        return ()
    magic = next(m for m, k in JOINED_KINDS.items() if k == kind)
    header = _HEADERS[kind[0]]
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 64:
                return ()
            first = id3v2_end(f)
            f.seek(first)
            head = f.read(8)
            order = {"WAV": "little", "AIFF": "big"}.get(kind[0])
            if order and first + 8 + int.from_bytes(head[4:8], order) == size:  # type: ignore[arg-type]
                return ()  # (the RIFF/FORM size is the file's: one WAV or AIFF, whose audio is not searched)
            data = _Bytes(f, size)  # (read a block at a time: `_Bytes`)
            found = []  # (where, rate, channels, samples)
            read = header(data, first)
            at = first
            while read is not None and len(found) < MAX_PARTS:
                found.append((at, *read[:3]))
                read, at = None, data.find(magic, read[3])
                while at >= 0 and read is None:
                    read = header(data, at)
                    at = at if read is not None else data.find(magic, at + 1)
            if len(found) < 2:
                return ()
            parts = []
            for i, (at, rate, channels, samples) in enumerate(found):
                end = _id3v2_before(data, found[i + 1][0], at) if i + 1 < len(found) else len(data)
                # (the tags after each part's audio, ID3v1, APEv2, an appended ID3v2, are not given to ffmpeg)
                parts.append(JoinedPart(at, max(at, _trailing_tags(f, end)[0]), rate, channels, samples))
            return tuple(parts)
    except (OSError, ValueError):
        return ()


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


Header = tuple[int, int, "int | None", int]
"""What a stream's header at a place declares: (rate, channels, samples or None, where its audio
begins: the next stream is looked for from there)."""


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
    return rate, channels, total or None, min(pos, len(data))


def _wav_header(data, at: int) -> Header | None:
    """A RIFF WAVE header at `at` (its ``fmt `` chunk, then its ``data`` chunk, among the chunks its
    RIFF size holds); its audio begins at its data chunk's."""
    if data[at : at + 4] != b"RIFF" or data[at + 8 : at + 12] != b"WAVE":
        return None
    end = min(at + 8 + int.from_bytes(data[at + 4 : at + 8], "little"), len(data))
    rate = channels = align = per_second = 0
    pcm, fact = True, None
    pos = at + 12
    for _ in range(256):
        if pos + 8 > end:
            return None
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind == b"fmt " and length >= 16:
            tag = int.from_bytes(data[pos + 8 : pos + 10], "little")
            if tag == 0xFFFE and length >= 40:  # (WAVE_FORMAT_EXTENSIBLE: its subformat's tag)
                tag = int.from_bytes(data[pos + 32 : pos + 34], "little")
            pcm = tag in WAV_PCM_TAGS
            channels = int.from_bytes(data[pos + 10 : pos + 12], "little")
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
            per_second = int.from_bytes(data[pos + 16 : pos + 20], "little")
            align = int.from_bytes(data[pos + 20 : pos + 22], "little")
        elif kind == b"fact" and length >= 4:
            fact = int.from_bytes(data[pos + 8 : pos + 12], "little")
        elif kind == b"data":
            if not rate or not channels or not align or length in (0, 0xFFFFFFFF):
                return None
            if pcm:
                samples = length // align
            else:  # (a block of ADPCM, GSM, MP3... holds many samples: its fact chunk's count, else its byte rate's)
                samples = fact if fact else length * rate // per_second if per_second else None
            return rate, channels, samples, pos + 8
        pos += 8 + length + (length & 1)
    return None


WAV_PCM_TAGS = (1, 3, 6, 7)
"""The format tags of a WAV whose samples are each its block align's bytes (PCM, float, A-law, µ-law);
another's (ADPCM, GSM, MP3) blocks hold many: its length is its ``fact`` chunk's."""
AIFF_PCM_TYPES = (b"NONE", b"sowt", b"twos", b"raw ", b"in24", b"in32", b"42ni", b"23ni", b"fl32", b"FL32",
                  b"fl64", b"FL64", b"alaw", b"ALAW", b"ulaw", b"ULAW")  # fmt: skip
"""The compression types of an AIFF-C whose COMM frame count is its samples' (of ``ima4``, ``MAC3``, ``GSM ``...
it counts packets of many: its length not known)."""


def _aiff_header(data, at: int) -> Header | None:
    """An AIFF or AIFF-C header at `at` (``FORM``, its ``COMM`` chunk, then its ``SSND`` chunk, among
    the chunks its FORM size holds); its audio begins at its SSND chunk's."""
    if data[at : at + 4] != b"FORM" or data[at + 8 : at + 12] not in (b"AIFF", b"AIFC"):
        return None
    end = min(at + 8 + int.from_bytes(data[at + 4 : at + 8], "big"), len(data))
    rate = channels = frames = 0
    pos = at + 12
    for _ in range(256):
        if pos + 8 > end:
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
            return rate, channels, frames, pos + 16
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
    return WAVPACK_RATES[code], 1 if flags & 4 else 2, total if total != 0xFFFFFFFF else None, at + 32


def _tta_header(data, at: int) -> Header | None:
    """A TTA header at `at` (``TTA1``, its CRC-32 right)."""
    head = data[at : at + 22]
    if len(head) < 22 or head[:4] != b"TTA1" or zlib.crc32(head[:18]) != int.from_bytes(head[18:22], "little"):
        return None
    channels, rate = int.from_bytes(head[6:8], "little"), int.from_bytes(head[10:14], "little")
    if not rate or not channels:
        return None
    return rate, channels, int.from_bytes(head[14:18], "little"), at + 22


_HEADERS = {"FLAC": _flac_header, "WAV": _wav_header, "AIFF": _aiff_header, "WavPack": _wavpack_header,
            "TTA": _tta_header}  # fmt: skip

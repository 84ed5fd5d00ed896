"""The raw frame streams read from their frame headers (`_frame_walk`): AAC in ADTS, AC-3 and E-AC-3,
TrueHD and MLP, LOAS (LATM AAC), DTS and DTS-HD. A raw stream declares no length, but each frame's sync header
declares the frame's size: a file that ends before its last frame does (a copy or download that
stopped) is cut short (`_check_raw_end`), and bytes between frames that begin none (lost sync) are
frames lost from its middle (`_check_raw_damage`). ffmpeg said nothing of either (an AC-3 or TrueHD
cut anywhere was stored as a whole track), or refused a LOAS file cut by its last 200 bytes, its
length unknown."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from tagger.audio.endtags import _tag_at, _trailing_tags
from tagger.audio.fileinfo import AudioInfo
from tagger.audio.formats import AUDIO_FORMATS, FORMAT_NAMES
from tagger.audio.losses import _cut_short, _note_or_refuse, _places
from tagger.audio.mp3 import _mp3_layout
from tagger.containers import id3v2_length


RAW_NAMES = {"aac": "AAC (ADTS)", "ac3": "AC-3", "eac3": "E-AC-3", "dts": "DTS",
             **{d: FORMAT_NAMES[d] for d in ("truehd", "mlp", "loas", "dtshd")}}  # fmt: skip
"""The name for users of the stream each demuxer of `RAW_FRAMES` reads (its frames' name in a note)."""


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


class _Frames:
    """The frame headers of one kind of raw stream: `frame` reads the one at ``buf[i]``."""

    codec = ""
    sync: tuple[bytes, ...] = ()
    """Bytes every frame of the kind begins with (or holds at `sync_at`), for finding the next frame
    after bytes that begin none."""
    sync_at = 0
    head = 16
    """Bytes of a frame's start that `frame` reads (at most)."""

    def frame(self, buf: bytes, i: int) -> tuple[int, float] | None:
        """(bytes, seconds) of the frame whose header is at ``buf[i]``; None where none begins there;
        `IndexError` where ``buf`` ends before the header does. Seconds 0.0 for a frame of audio
        that another's time holds (an E-AC-3 dependent substream, a DTS-HD extension substream)."""
        raise NotImplementedError

    def run(self, buf: bytes, i: int, stop: int) -> tuple[int, float, int]:
        """Walk the whole frames from ``buf[i]`` while one begins before `stop` (``buf`` holding
        its header there): (where the walk stopped, the seconds and the bytes of timed frames
        walked). Stops at `stop` or past it, or at bytes that begin no frame."""
        seconds = timed = 0
        while i < stop:
            got = self.frame(buf, i)
            if got is None:
                break
            if got[1]:
                seconds, timed = seconds + got[1], timed + got[0]
            i += got[0]
        return i, seconds, timed


_AC3_RATES = (48_000, 44_100, 32_000)
_AC3_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640)


class _AC3(_Frames):
    """AC-3 (ATSC A/52 table 5.18: the frame size of each frmsizecod and rate, 1,536 samples a
    frame, at half or a quarter of the rate for bsid 9 or 10) and E-AC-3 (its frmsiz field; 256
    samples a block, 1, 2, 3 or 6 blocks), as ffmpeg's ac3 and eac3 readers take both (bsid up to 16)."""

    codec, sync, head = RAW_NAMES["ac3"], (b"\x0b\x77",), 8

    def frame(self, buf: bytes, i: int) -> tuple[int, float] | None:
        if buf[i] != 0x0B or buf[i + 1] != 0x77:
            return None
        bsid = buf[i + 5] >> 3
        if bsid <= 10:
            fscod, code = buf[i + 4] >> 6, buf[i + 4] & 0x3F
            if fscod == 3 or code >= 38:
                return None
            kbps = _AC3_KBPS[code >> 1]
            words = kbps * 2 if fscod == 0 else kbps * 3 if fscod == 2 else kbps * 96_000 // 44_100 + (code & 1)
            # (bsid 9 and 10: the same frames at half and a quarter of the rate, as ffmpeg's ac3_parser.c reads them)
            return 2 * words, (1536 << max(bsid - 8, 0)) / _AC3_RATES[fscod]
        if bsid > 16:
            return None
        self.codec = RAW_NAMES["eac3"]
        strmtyp, substream = buf[i + 2] >> 6, (buf[i + 2] >> 3) & 7
        size = (((buf[i + 2] & 7) << 8 | buf[i + 3]) + 1) * 2
        fscod = buf[i + 4] >> 6
        if strmtyp == 3 or size < 8:
            return None
        if fscod == 3:
            fscod2 = (buf[i + 4] >> 4) & 3
            if fscod2 == 3:
                return None
            rate, blocks = _AC3_RATES[fscod2] // 2, 6
        else:
            rate, blocks = _AC3_RATES[fscod], (1, 2, 3, 6)[(buf[i + 4] >> 4) & 3]
        # (a dependent substream, or an independent one past the first, holds channels of the same time)
        return size, (256 * blocks / rate if strmtyp != 1 and substream == 0 else 0.0)


class _MLP(_Frames):
    """TrueHD and MLP access units: a check nibble and the unit's length in 16-bit words (12 bits),
    and in some a major sync (0xF8726FBA TrueHD, 0xF8726FBB MLP) declaring the rate (40 samples a
    unit at 48 or 44.1 kHz, more at their multiples: 1/1200 or 1/1102.5 s) and the substreams,
    whose headers the check nibble of the others covers (as ffmpeg's ``mlp_parser.c`` checks it)."""

    codec, sync, sync_at, head = RAW_NAMES["truehd"], (b"\xf8\x72\x6f\xba", b"\xf8\x72\x6f\xbb"), 4, 21

    def __init__(self) -> None:
        self.unit = 0.0
        self.substreams = 0

    def frame(self, buf: bytes, i: int) -> tuple[int, float] | None:
        size = ((buf[i] & 0x0F) << 8 | buf[i + 1]) * 2
        if size < 4:
            return None
        if buf[i + 4 : i + 7] == b"\xf8\x72\x6f" and buf[i + 7] in (0xBA, 0xBB):
            ratebits = buf[i + 8 if buf[i + 7] == 0xBA else i + 9] >> 4
            if ratebits == 0xF:
                return None
            self.unit, self.substreams = (1 / 1200 if ratebits < 8 else 1 / 1102.5), buf[i + 20] >> 4
            self.codec = RAW_NAMES["truehd" if buf[i + 7] == 0xBA else "mlp"]
            return size, self.unit
        if not self.unit:
            return None  # (no major sync yet: the rate and substreams not known)
        parity, p = buf[i] ^ buf[i + 1] ^ buf[i + 2] ^ buf[i + 3], i + 4
        for _ in range(self.substreams):
            parity ^= buf[p] ^ buf[p + 1]
            if buf[p] & 0x80:
                parity ^= buf[p + 2] ^ buf[p + 3]
                p += 2
            p += 2
        if ((parity >> 4) ^ parity) & 0xF != 0xF:
            return None
        return size, self.unit

    def run(self, buf: bytes, i: int, stop: int) -> tuple[int, float, int]:
        """`_Frames.run` written out: a TrueHD file of 1 GB is a million access units or ten."""
        units, start, frame, substreams = 0, i, self.frame, range(self.substreams)
        while i < stop:
            if buf[i + 4] == 0xF8 or not self.unit:  # (a major sync, perhaps: read as it says)
                got = frame(buf, i)
                if got is None:
                    break
                units, i = units + 1, i + got[0]
                substreams = range(self.substreams)
                continue
            parity, p = buf[i] ^ buf[i + 1] ^ buf[i + 2] ^ buf[i + 3], i + 4
            for _ in substreams:
                parity ^= buf[p] ^ buf[p + 1]
                if buf[p] & 0x80:
                    parity ^= buf[p + 2] ^ buf[p + 3]
                    p += 2
                p += 2
            size = ((buf[i] & 0x0F) << 8 | buf[i + 1]) * 2
            if ((parity >> 4) ^ parity) & 0xF != 0xF or size < 4:
                break
            units, i = units + 1, i + size
        return i, units * self.unit, i - start


class _Bits:
    """Bits of `data` read most significant first."""

    def __init__(self, data: bytes) -> None:
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def __call__(self, n: int) -> int:
        if n > self.left:
            raise ValueError("past the bytes read")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)


_AAC_RATES = (96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350)


class _LOAS(_Frames):
    """LOAS frames (AAC as digital TV broadcasts it): an 11-bit sync (0x2B7) and the frame's length
    (13 bits, audioMuxLengthBytes); its time from the first frame's StreamMuxConfig (ISO 14496-3
    1.7.3: subframes a frame, the AudioSpecificConfig's core rate and 1,024 or 960 samples a frame,
    SBR's doubling left out as it doubles the rate too)."""

    codec, sync, head = RAW_NAMES["loas"], (b"\x56",), 3

    def __init__(self) -> None:
        self.seconds = 0.0

    def frame(self, buf: bytes, i: int) -> tuple[int, float] | None:
        if buf[i] != 0x56 or buf[i + 1] & 0xE0 != 0xE0:
            return None
        size = 3 + ((buf[i + 1] & 0x1F) << 8 | buf[i + 2])
        if size == 3:
            return None
        if not self.seconds:
            try:
                self.seconds = self._config(buf[i + 3 : i + min(size, 64)])
            except ValueError:
                return None
        return size, self.seconds

    @staticmethod
    def _config(data: bytes) -> float:
        """A frame's seconds from the StreamMuxConfig at the start of an AudioMuxElement."""
        bits = _Bits(data)

        def value() -> int:  # (LatmGetValue)
            return bits(8 * (bits(2) + 1))

        if bits(1):  # (useSameStreamMux: the first frame has to declare it)
            raise ValueError("no StreamMuxConfig")
        version = bits(1)
        if version and bits(1):  # (audioMuxVersionA 1: reserved)
            raise ValueError("a reserved version")
        if version:
            value()  # taraBufferFullness
        bits(1)  # allStreamsSameTimeFraming
        subframes = bits(6) + 1
        bits(4)  # numProgram (the first program's first layer holds the config)
        bits(3)  # numLayer
        if version:
            value()  # ascLen
        kind = bits(5)
        kind = 32 + bits(6) if kind == 31 else kind
        index = bits(4)
        rate = bits(24) if index == 15 else _AAC_RATES[index] if index < len(_AAC_RATES) else 0
        bits(4)  # channelConfiguration
        if kind in (5, 29):  # (SBR, PS: the extension's rate, then the core's object type)
            if bits(4) == 15:
                bits(24)
            kind = bits(5)
            kind = 32 + bits(6) if kind == 31 else kind
        samples = 960 if kind in (1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23) and bits(1) else 1024
        if not rate:
            raise ValueError("no rate")
        return subframes * samples / rate


class _ADTS(_Frames):
    """Raw AAC's ADTS frames (ISO 14496-3 1.A.2): a 12-bit sync (0xFFF), the frame's length (13 bits,
    its header included) and 1 to 4 raw data blocks of 1,024 samples at the core rate its
    sampling_frequency_index names (SBR's doubling left out, as in `_LOAS`). The ID and layer bits
    are not read, as ffmpeg's ADTS reader and decoder read them not (``adts_header.c``): a frame whose
    layer bits are damaged is decoded whole, no damage. The next frame after damage is looked for by
    the sync and layer 0 (`sync`, as ffmpeg's probe of the format looks)."""

    codec, sync, head = RAW_NAMES["aac"], (b"\xff\xf0", b"\xff\xf1", b"\xff\xf8", b"\xff\xf9"), 7  # (layer 0)

    def frame(self, buf: bytes, i: int) -> tuple[int, float] | None:
        if buf[i] != 0xFF or buf[i + 1] & 0xF0 != 0xF0:
            return None
        index, size = buf[i + 2] >> 2 & 0xF, (buf[i + 3] & 3) << 11 | buf[i + 4] << 3 | buf[i + 5] >> 5
        if index >= len(_AAC_RATES) or size < 7:
            return None
        return size, ((buf[i + 6] & 3) + 1) * 1024 / _AAC_RATES[index]


_DTS_RATES = (0, 8000, 16000, 32000, 0, 0, 11025, 22050, 44100, 0, 0, 12000, 24000, 48000, 0, 0)


class _DTS(_Frames):
    """DTS core frames (16-bit big-endian, sync 0x7FFE8001: FSIZE + 1 bytes, 32 samples a block of
    NBLKS + 1) and the DTS-HD extension substreams after them (sync 0x64582025: nuExtSSFsize + 1
    bytes, of the core's time)."""

    codec, sync, head = RAW_NAMES["dts"], (b"\x7f\xfe\x80\x01", b"\x64\x58\x20\x25"), 12

    def frame(self, buf: bytes, i: int) -> tuple[int, float] | None:
        if i + 12 > len(buf):
            raise IndexError("the header goes on past the bytes read")
        sync, bits = buf[i : i + 4], int.from_bytes(buf[i + 4 : i + 12], "big")
        if sync == b"\x7f\xfe\x80\x01":
            blocks, size, rate = (bits >> 50 & 0x7F) + 1, (bits >> 36 & 0x3FFF) + 1, _DTS_RATES[bits >> 26 & 0xF]
            if blocks < 6 or size < 96 or not rate:
                return None
            return size, 32 * blocks / rate
        if sync == b"\x64\x58\x20\x25":
            size = (bits >> 29 & 0xFFFF) + 1 if not bits >> 53 & 1 else (bits >> 21 & 0xFFFFF) + 1
            return (size, 0.0) if size >= 16 else None
        return None


RAW_FRAMES = {"aac": _ADTS, "ac3": _AC3, "eac3": _AC3, "truehd": _MLP, "mlp": _MLP, "loas": _LOAS, "dts": _DTS,
              "dtshd": _DTS}  # fmt: skip
"""The ffmpeg demuxers of raw frame streams whose frame headers are walked (`_frame_walk`)."""
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


def _raw_demuxer(path: Path) -> str | None:
    """The demuxer of `RAW_FRAMES` whose extensions (`AUDIO_FORMATS`) hold the file's; None for another."""
    return next((d for d, exts in AUDIO_FORMATS.items() if path.suffix.lower() in exts and d in RAW_FRAMES), None)


def _raw_not_mp3(path: Path) -> str | None:
    """The ffmpeg demuxer of the raw frame stream (`RAW_FRAMES`) that the name of a file libsndfile
    takes for an MP3 names, where that stream's frames, walked from its start (`_frame_walk`), cover
    more of it than MPEG layer III (or II) frames followed from the first do (`_mp3_layout`): a raw AAC
    (ADTS) whose first frame's layer bits are damaged begins with an MP3 frame's header for
    libsndfile, which decoded 0.02 s of its 6 s and stopped, without a word. None where the name
    names no raw stream or the MP3's frames cover more (an MP3 named ``.aac``)."""
    demuxer = _raw_demuxer(path)
    walk = _frame_walk(path, demuxer) if demuxer else None
    if walk is None:
        return None
    layout = _mp3_layout(path)
    mp3 = 0 if layout is None else layout.walked - sum(b - a for a, b in layout.between)
    raw = walk.end - walk.damaged - sum(b - a for a, b in walk.tags)
    return demuxer if raw > mp3 else None


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


def _check_raw_end(path: Path, meta: AudioInfo, notes: list[str] | None) -> tuple[AudioInfo, FrameWalk | None]:
    """A raw frame stream (`RAW_FRAMES`) that ends inside its last frame (a copy or download that
    stopped) comes under `_note_or_refuse`'s rule, the frame's seconds lost against the length of
    its frames (a DTS-HD file's against its STRMDATA chunk's: `_cut_short`); the decoder is then
    given its whole frames alone (`AudioInfo.feed`), and says nothing of the cut one. ffmpeg had
    decoded an AC-3's cut frame as a frame, dropped a TrueHD's, each without a word, and refused a
    LOAS file for it (``corrupt audio: ffmpeg could not decode 1 of its frames``). Returns `meta` to
    decode with (of the frames' length, not ffprobe's estimate) and the walk, for `_check_raw_damage`."""
    if meta.decoder != "ffmpeg" or meta.feed or meta.demuxer not in RAW_FRAMES:
        return meta, None
    walk = _frame_walk(path, meta.demuxer)
    if walk is None:
        return meta, None
    total = walk.total
    meta = replace(meta, duration=total)  # (not ffprobe's, of the first frames' bit rate, or none)
    if walk.trailing:  # (the decoder, given them, said it could not decode a frame: 0.0 s of 2.0 s lost)
        lost = walk.trailing_seconds
        last = "its last byte begins" if walk.trailing == 1 else f"its last {walk.trailing} bytes begin"
        _note_or_refuse(path, notes, lost=lost, duration=total,
                        note=f"{last} no {walk.codec} frame (a damaged end, or the zeros of a copy or download that "
                             f"stopped): analysed without {_them(walk.trailing)} ({_about(lost, total, note=True)} left out)",
                        refusal=f"corrupt audio: {last} no {walk.codec} frame (a damaged end, or the zeros of a copy or "
                                f"download that stopped); nothing stored, as a result would leave "
                                f"{_about(lost, total, note=False)} out")  # fmt: skip
        return replace(meta, feed=walk.feed), walk
    if not walk.cut:
        # (the tags or padding after its frames not given to the decoder either: an AC-3's ID3v1 tag was
        # 'ffmpeg could not decode 1 of its frames', a note on a whole file, an error for a caller without notes)
        return (replace(meta, feed=walk.feed) if walk.end < path.stat().st_size or walk.tags else meta), walk
    there, declared = walk.cut_bytes
    if not there:  # (its STRMDATA chunk declares more than the file holds)
        _cut_short(path, notes, lost=walk.cut, holds=total - walk.cut, duration=total, whole=False)
    else:
        what = (f"{there} of the {declared} bytes its header declares there" if declared else
                f"inside its header, {_count(there, 'byte')} of it there")  # fmt: skip
        _note_or_refuse(path, notes, lost=walk.cut, duration=total,
                        note=f"its last {walk.codec} frame is cut ({what}: a copy or download that stopped, of which "
                             f"more may be missing, as a raw stream declares no length): analysed without it "
                             f"({walk.cut:.3f} s of {total:.1f} s left out)",
                        refusal=f"cut short: its last {walk.codec} frame is cut ({what}: a copy or download that "
                                f"stopped?); nothing stored, as a result would leave {walk.cut:.3f} s of the "
                                f"{total:.2f} s its frames hold out")  # fmt: skip
    return replace(meta, feed=walk.feed), walk


def _check_raw_damage(path: Path, walk: FrameWalk | None, notes: list[str] | None, noted: int, decoded: float) -> None:
    """Bytes between a raw stream's frames that begin none (a damaged copy: frames lost from its
    middle, which ffmpeg passes over to the next sync, mostly without a word: a TrueHD with 100 KB
    of its middle overwritten was analysed as if whole) under `_note_or_refuse`'s rule; unless the
    decoder said something of them already (more `notes` than `noted`). What is lost: their audio at
    the stream's bytes a second, or what the decoder gave less than the whole frames hold
    (`decoded` seconds), where more (a TrueHD decoder waits for the next major sync)."""
    if walk is None or not walk.damaged or len(notes or ()) > noted:
        return
    lost = max(walk.damaged_seconds, walk.seconds - decoded)
    total = max(walk.total, decoded + lost)
    bytes_ = f"{_count(walk.damaged, 'byte')} between its {walk.codec} frames {'begins' if walk.damaged == 1 else 'begin'}"
    _note_or_refuse(path, notes, lost=lost, duration=total,
                    note=f"{bytes_} no frame (damaged: frames lost from its middle): analysed without "
                         f"{_them(walk.damaged)} ({_about(lost, total, note=True)} left out)",
                    refusal=f"corrupt audio: {bytes_} no frame (damaged: frames lost from its middle); nothing stored, "
                            f"as a result would leave {_about(lost, total, note=False)} out")  # fmt: skip


def _count(n: int, what: str) -> str:
    """``1 byte``, ``2 bytes``."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _them(n: int) -> str:
    return "it" if n == 1 else "them"


def _about(lost: float, total: float, *, note: bool) -> str:
    """``about 0.021 s of 6.0 s``: the seconds lost of a stream's ``total``, shown as more than none
    (one damaged byte was ``about 0.000 s``): a note's in three decimals or more, of the total in one;
    a refusal's both in the fewest that tell what is left from the total (`_places`: ``3.6 s of 6.0 s``)."""
    if note:
        n = next((n for n in range(3, 9) if float(f"{lost:.{n}f}") > 0), 9)
        return f"about {lost:.{n}f} s of {total:.1f} s"
    n = _places(total - lost, total, lost)
    return f"about {lost:.{n}f} s of {total:.{n}f} s"

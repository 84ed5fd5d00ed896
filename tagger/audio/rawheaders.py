"""The frame headers of each kind of raw stream, one class a kind (`_Frames`: `frame` reads the
header at a byte, `run` walks the whole frames of a block): AAC in ADTS (`_ADTS`), AC-3 and E-AC-3
(`_AC3`), TrueHD and MLP (`_MLP`), LOAS (`_LOAS`, its StreamMuxConfig read with `_Bits`), DTS and
DTS-HD (`_DTS`); `RAW_FRAMES`, the ffmpeg demuxer each is read for, and `RAW_NAMES`, their names for
users. The files are walked with them in `tagger.audio.rawwalk`."""

from __future__ import annotations

from tagger.audio.formats import FORMAT_NAMES


RAW_NAMES = {"aac": "AAC (ADTS)", "ac3": "AC-3", "eac3": "E-AC-3", "dts": "DTS",
             **{d: FORMAT_NAMES[d] for d in ("truehd", "mlp", "loas", "dtshd")}}  # fmt: skip
"""The name for users of the stream each demuxer of `RAW_FRAMES` reads (its frames' name in a note)."""


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

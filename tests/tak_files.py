"""TAK files written byte by byte, as ffmpeg's ``libavformat/takdec.c`` and ``libavcodec/takdec.c``
read them (no encoder of ours writes TAK): `tak_file`. Shared by the tests that crawl and analyse
TAK (`test_formats_found`) and that tag it (`test_tags_tak`)."""

from __future__ import annotations

import numpy as np


def _crc24(data: bytes) -> bytes:
    """TAK's CRC-24 (OpenPGP's: polynomial 0x864CFB, from 0xB704CE), as TAK stores it."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc = ((crc << 1) ^ (0x864CFB if crc & 0x800000 else 0)) & 0xFFFFFF
    return crc.to_bytes(3, "little")


class _BitsLE:
    """Bits written least significant first, as TAK's reader takes them."""

    def __init__(self):
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> None:
        self.bits.extend((value >> i) & 1 for i in range(n))

    def bytes(self) -> bytes:
        self.bits.extend([0] * (-len(self.bits) % 8))
        return np.packbits(np.array(self.bits, np.uint8).reshape(-1, 8), axis=1, bitorder="little").tobytes()


_TAK_CODES = [
    (1, 0x1), (2, 0x3), (3, 0x5), (3, 0x3), (4, 0xB), (4, 0x6), (5, 0x16), (5, 0xC), (6, 0x2C), (6, 0x18), (7, 0x58),
    (7, 0x30), (8, 0xB0), (8, 0x60), (9, 0x160), (9, 0xC0), (10, 0x2C0), (10, 0x180), (11, 0x580), (11, 0x300),
    (12, 0xB00), (12, 0x600), (13, 0x1600), (13, 0xC00), (14, 0x2C00), (14, 0x1800), (15, 0x5800), (15, 0x3000),
    (16, 0xB000), (16, 0x6000), (17, 0x16000), (17, 0xC000),
]  # fmt: skip
"""(bits, escape) of TAK's first 32 residual coding modes (ffmpeg's ``xcodes``; mode 1 first): a
value below the escape is its bits alone."""


def _tak_streaminfo(bits: _BitsLE, rate: int, channels: int, samples: int) -> None:
    bits.put(2, 6)  # codec: mono/stereo
    bits.put(0, 4)  # profile
    bits.put(4, 4)  # frames of 4096 samples
    bits.put(samples, 35)
    bits.put(0, 3)  # PCM
    bits.put(rate - 6000, 18)
    bits.put(16 - 8, 5)  # 16-bit
    bits.put(channels - 1, 4)
    bits.put(0, 1)  # no channel layout


def tak_file(path, samples: np.ndarray, rate: int):
    """A TAK file of 16-bit ``samples`` [shape=(n, channels)], written here as ffmpeg's
    ``libavformat/takdec.c`` and ``libavcodec/takdec.c`` read it (no encoder of ours writes TAK):
    ``tBaK``, a STREAMINFO block, then frames of 4096 samples, each with the stream's info in its
    header, a channel's first sample, then its differences (LPC mode 1) in one residual coding mode
    wide enough for all of them, each header and frame ending on its CRC-24."""
    n, channels = samples.shape
    x = samples.astype(np.int64)
    info = _BitsLE()
    _tak_streaminfo(info, rate, channels, n)
    block = info.bytes()
    out = bytearray(b"tBaK" + bytes([1]) + (len(block) + 3).to_bytes(3, "little") + block + _crc24(block) + bytes(4))
    for number, start in enumerate(range(0, n, 4096)):
        frame, last = x[start : start + 4096], start + 4096 >= n
        head = _BitsLE()
        head.put(0xA0FF, 16)  # sync
        head.put(2 | last, 3)  # flags: has info, is last
        head.put(number, 21)
        if last:
            head.put(len(frame) - 1, 14)
            head.put(0, 2)
        _tak_streaminfo(head, rate, channels, n)
        head.put(0, 6)
        header = head.bytes()
        data = _BitsLE()
        for c in range(channels):
            if len(frame) < 16:  # (a frame this short holds its samples as they are)
                for v in frame[:, c].tolist():
                    data.put(v & 0xFFFF, 16)
                continue
            data.put(0, 1)  # no sample shift
            data.put(int(frame[0, c]) & 0xFFFF, 16)
            data.put(1, 2)  # LPC mode 1: the residuals are the differences
            data.put(0, 3)  # one subframe
            data.put(0, 1)  # no filter
            diff = np.diff(frame[:, c])
            zigzag = np.where(diff >= 0, 2 * diff, -2 * diff - 1)
            mode = next(m for m, (_, escape) in enumerate(_TAK_CODES, 1) if escape > int(zigzag.max()))
            data.put(0, 1)  # one coding mode for the subframe
            data.put(mode, 6)
            for v in zigzag.tolist():
                data.put(v, _TAK_CODES[mode - 1][0])
        if channels == 2 and len(frame) >= 16:
            data.put(0, 1)
            data.put(0, 3)  # no decorrelation
        payload = data.bytes()
        out += header + _crc24(header) + payload + _crc24(payload)
    path.write_bytes(bytes(out))
    return path

"""Content hashes of files (model files in the manifest, dataset indexes in evaluation reports), and
the checksum of an Ogg page (`ogg_page_intact`: the audio probe's and the Ogg tag storage's)."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's content as 64 hex digits (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_BITSWAP = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_page_intact(page: bytes) -> bool:
    """Whether ``page``, the bytes of one whole Ogg page, holds the checksum its header stores (CRC-32
    of polynomial 0x04C11DB7, not reflected, over the page with its checksum field zeroed: zlib's
    reflected CRC-32 on bit-swapped bytes). Serves the probe's end-of-stream check and page search
    (`tagger.audio.ogg`) and the Ogg payload digest (`tagger.tags.storage.ogg`)."""
    if len(page) < 27:
        return False
    data = bytes(page[:22]) + b"\0\0\0\0" + bytes(page[26:])
    crc = (~zlib.crc32(data.translate(_BITSWAP), -1)) & 0xFFFFFFFF
    return struct.pack(">I", crc).translate(_BITSWAP) == bytes(page[22:26])

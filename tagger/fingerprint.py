"""A fast content fingerprint that recognises a file after a move or rename.

``fingerprint`` = BLAKE2b (128-bit digest) over the file size (8 bytes, little-endian) followed by
three 64 KiB chunks: the first, the one centred in the middle and the last (a file smaller than
192 KiB is hashed whole). It reads at most 192 KiB whatever the file's size, so a rescan of a large
library stays fast. It is not a full-content hash: two files that differ only outside those chunks
(and have the same size) get the same fingerprint; for audio files (whose encoded frames change
throughout when the audio changes) this is an accepted trade-off. Tag edits usually change the
size or the first chunk and so the fingerprint.

``content_hash`` = BLAKE2b (128-bit digest) over the whole file. A scan stores it with the
fingerprint when it analyses a file or rewrites its tags, so that a new path is taken for a moved
file only when its whole content is the one that went (the old file cannot be read any more).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Generator

from tagger.errors import AudioReadError

CHUNK = 64 * 1024
VERSION = "b2-3x64k"
"""Names the scheme; a change of scheme must change this (and would re-fingerprint every file)."""


def _open_regular(path: str | os.PathLike):
    """``path`` opened for reading when it is a regular file; `AudioReadError` otherwise (a FIFO,
    a device: opening or reading one could block for ever). Opened without blocking, then checked
    on the open file, so that nothing can swap it between the check and the read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AudioReadError(path, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def fingerprint(path: str | os.PathLike, *, chunk: int = CHUNK) -> str:
    """The content fingerprint of a file as 32 hex digits; raises `AudioReadError` if unreadable."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with _open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            h.update(size.to_bytes(8, "little"))
            if size <= 3 * chunk:
                h.update(f.read())
            else:
                for offset in (0, size // 2 - chunk // 2, size - chunk):
                    f.seek(offset)
                    h.update(f.read(chunk))
    except OSError as exc:
        raise AudioReadError(path, f"cannot read file: {exc.strerror or exc}", unreadable=True) from None
    return h.hexdigest()


def content_hash(path: str | os.PathLike, *, block: int = 1 << 20) -> str:
    """BLAKE2b (128-bit) of the whole file as 32 hex digits; raises `AudioReadError` if unreadable."""
    steps = content_hash_steps(path, block=block)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def content_hash_steps(path: str | os.PathLike, *, block: int = 1 << 20) -> Generator[int, None, str]:
    """`content_hash` a block at a time: yields the bytes read so far after each block, and returns
    the hash (for a caller that reports its progress on a large file)."""
    h = hashlib.blake2b(digest_size=16)
    done = 0
    try:
        with _open_regular(path) as f:
            for data in iter(lambda: f.read(block), b""):
                h.update(data)
                done += len(data)
                yield done
    except OSError as exc:
        raise AudioReadError(path, f"cannot read file: {exc.strerror or exc}", unreadable=True) from None
    return h.hexdigest()


def read_back(path: str | os.PathLike, *, size: int | None, mtime: float | None,
              ctime_ns: int | None = None) -> tuple[int, float, str, str] | None:  # fmt: skip
    """(size, mtime, fingerprint, content hash) of the file ``path`` that a tag write has just left
    with ``size`` and ``mtime`` (None: not known, taken from the file) and, when given, the status
    change time ``ctime_ns`` (`tagger.tags.TagChange.ctime_ns`); None when the file is no longer what
    the write left (another program changed it in between, or while it was read here): then it must
    not be recorded as tagger's own. Size and mtime alone cannot tell: another tag write moved over
    it with ``--keep-mtime`` (a second tagger, `untag`) leaves both as they were, the tag's padding
    absorbing the change, but it made its file later. Raises `AudioReadError` when it cannot be read."""

    def now() -> tuple:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise AudioReadError(path, f"cannot stat file: {exc.strerror or exc}") from None
        return st.st_size, st.st_mtime, *(() if ctime_ns is None else (st.st_ctime_ns,))

    left = now() if size is None or mtime is None else (size, mtime, *(() if ctime_ns is None else (ctime_ns,)))
    if now() != left:
        return None
    facts = fingerprint(path), content_hash(path)
    return (*left[:2], *facts) if now() == left else None

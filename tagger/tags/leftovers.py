"""The hidden copies a tag write makes beside its file, and those killed writes left.

A write copies the file to ``.NAME.`` (`temp_prefix`), 8 random letters and `TEMP_SUFFIX`, in the
same folder, holding an exclusive ``flock`` on it until it is done (`tagger.tags.rewrite`); a write
killed meanwhile (``kill -9``, power loss) leaves it there. A scan deletes those of its folders
(`remove_stale_temp_files`), a run of `tag` or `untag` those of the files it visits (`LeftoverCopies`).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable

from tagger.paths import TEMP_SUFFIX, is_temp_name

log = logging.getLogger(__name__)

FRESH_SECONDS = 2.0
"""A temporary file younger than this is left alone even when nobody holds it: its writer may not
have locked it yet."""


def remove_stale_temp_files(paths: Iterable[str | os.PathLike], *, min_age: float | None = None) -> list[str]:
    """Delete leftover temporary files of tag writes that were killed (``kill -9``, power loss).

    Only files whose name matches our exact pattern (`is_temp_name`), regular files (never a
    symlink), at least `min_age` seconds old (`FRESH_SECONDS` by default) and not in use are
    deleted: a write in progress holds an exclusive ``flock`` on its temporary file from the moment
    it creates it, and the kernel drops that lock when the writer dies. Returns the deleted paths; never raises for a file that
    cannot be checked or deleted (it is left alone).
    """
    import fcntl
    import time

    min_age = FRESH_SECONDS if min_age is None else min_age
    removed = []
    for path in map(os.fspath, paths):
        if not is_temp_name(os.path.basename(path)):
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < min_age:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a writer holds it
            now = os.lstat(path)
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                os.unlink(path)
                removed.append(path)
        except OSError:
            pass  # in use (EWOULDBLOCK), already gone, or not ours to delete: left alone
        finally:
            os.close(fd)
    return removed


def temp_prefix(real: str) -> str:
    """The start of the names of the hidden copy and backup link that a write of the file at ``real``
    makes beside it: ``.NAME.`` (the name's first 80 bytes), 8 random letters and `TEMP_SUFFIX` follow."""
    return "." + os.fsencode(os.path.basename(real))[:80].decode("utf-8", "ignore") + "."


class LeftoverCopies:
    """The hidden copies and backup links that killed writes left of the files a run of `tag` or
    `untag` visits (`remove`): deleted as a scan deletes those of its folders (`remove_stale_temp_files`:
    not in use, not just made), each folder listed once."""

    def __init__(self) -> None:
        self._listed: dict[str, list[str]] = {}

    def remove(self, path: str | os.PathLike) -> list[str]:
        """Delete the stale hidden copies of the file ``path`` (of its target, for a symbolic link: the
        copies are made beside it) -> the deleted paths (logged)."""
        real = os.path.realpath(path)
        folder = os.path.dirname(real) or "."
        if folder not in self._listed:
            try:
                self._listed[folder] = [name for name in os.listdir(folder) if is_temp_name(name)]
            except OSError:  # (the write says what is wrong with the folder)
                self._listed[folder] = []
        prefix = temp_prefix(real)
        length = len(prefix) + 8 + len(TEMP_SUFFIX)
        names = [os.path.join(folder, n) for n in self._listed[folder] if n.startswith(prefix) and len(n) == length]
        removed = remove_stale_temp_files(names)
        for name in removed:
            log.info("removed %s, left over by an interrupted tag write", name)
        return removed

"""The hidden copies a tag write makes beside its file, and those killed writes left.

A write copies the file to ``.NAME.`` (`temp_prefix`), 8 random letters and `TEMP_SUFFIX`, in the
same folder, holding an exclusive ``flock`` on it until it is done (`tagger.tags.rewrite`); a write
killed meanwhile (``kill -9``, power loss) leaves it there. A scan deletes those of its folders
(`remove_stale_temp_files`), a run of `tag` or `untag` those of the files it visits (`LeftoverCopies`).

Before the write's last check and its swap of the names, the copy is renamed `swap_name`: its name says
which two files are provably tagger's (the copy's inode; the original's inode, size and mtime). A
write killed between the swap and the swap back leaves under it whatever the swap took from the path,
which may be another program's save moved there after the write's last check: the cleanup deletes
it only where it is one of those two, and keeps anything else as ``NAME.tagger-kept-XXXXXXXX~``. So
for the backup link of the file at the path (`backup_prefix`), which after a plain rename may be the
only name of such a save.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable

from tagger.paths import TEMP_SUFFIX, is_kept_name, is_temp_name

log = logging.getLogger(__name__)

FRESH_SECONDS = 2.0
"""A temporary file younger than this is left alone even when nobody holds it: its writer may not
have locked it yet."""


_SWAP = r"tagger-(?:swap\.(\d+)\.|backup\.)(\d+)\.(\d+)\.(-?\d+)\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX)
"""What follows `temp_prefix` in a `swap_name` (the copy's inode, the original's inode, size and mtime
in ns, the copy's 8 random letters) and in a `backup_prefix`'s name (the same without the copy's)."""
_SWAP_NAME = re.compile(r"\.(.*)\." + _SWAP, re.DOTALL)


def swap_name(tmp: str, prefix: str, copy: os.stat_result, original: os.stat_result) -> str:
    """The name the copy at ``tmp`` (``prefix``, its 8 letters, `TEMP_SUFFIX`) takes before the write's
    last check and its swap of the names: the same folder, prefix and letters, with the copy's inode and
    the inode, size and mtime of the ``original`` it replaces between them, which
    `remove_stale_temp_files` reads."""
    folder, name = os.path.split(tmp)
    return os.path.join(folder, f"{prefix}tagger-swap.{copy.st_ino}.{original.st_ino}.{original.st_size}."
                                f"{original.st_mtime_ns}.{name[len(prefix):]}")  # fmt: skip


def backup_prefix(prefix: str, original: os.stat_result) -> str:
    """The start of the name of the backup link a write makes of the file at the path right before its
    rename (`tagger.tags.filesystem.link_backup`): ``prefix`` and the inode, size and mtime of the
    ``original`` found, which `remove_stale_temp_files` reads (8 random letters and `TEMP_SUFFIX` follow)."""
    return f"{prefix}tagger-backup.{original.st_ino}.{original.st_size}.{original.st_mtime_ns}."


def _provably_ours(name: str, st: os.stat_result) -> bool:
    """Whether the file found as ``st`` under the hidden name ``name`` may be removed: any file under a
    name of the copy's first form (the copy, which the rename to `swap_name` takes away before any swap;
    a backup link an older tagger made); under a `swap_name` the copy named there; under either
    name the original unchanged (size and mtime as found); under a `backup_prefix`'s a file with
    another name still (the path's, or a `swap_name` kept when not ours)."""
    match = _SWAP_NAME.fullmatch(name)
    if match is None:
        return True
    copy, original, size, mtime_ns = (None if group is None else int(group) for group in match.groups()[1:])
    if (st.st_ino, st.st_size, st.st_mtime_ns) == (original, size, mtime_ns):
        return True
    return st.st_ino == copy if copy is not None else st.st_nlink > 1


def remove_stale_temp_files(paths: Iterable[str | os.PathLike], *, min_age: float | None = None) -> list[str]:
    """Delete leftover temporary files of tag writes that were killed (``kill -9``, power loss).

    Only files whose name matches our exact pattern (`is_temp_name`), regular files (never a
    symlink), at least `min_age` seconds old (`FRESH_SECONDS` by default) and not in use are
    deleted: a write in progress holds an exclusive ``flock`` on its temporary file from the moment
    it creates it, and the kernel drops that lock when the writer dies. A file under a `swap_name` that
    is neither the copy nor the original it names (another program's save, which the swap of a write
    killed before its swap back took from the path: was deleted as a copy) is kept as
    ``NAME.tagger-kept-XXXXXXXX~`` beside it (`filesystem.keep_beside`), said in the log. Returns the
    deleted paths; never raises for a file that cannot be checked or deleted (it is left alone).
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
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                continue
            if _provably_ours(os.path.basename(path), held):
                os.unlink(path)
                removed.append(path)
            else:
                _keep(path)
        except OSError:
            pass  # in use (EWOULDBLOCK), already gone, or not ours to delete: left alone
        finally:
            os.close(fd)
    return removed


def kept_not_removed(path: str | os.PathLike) -> bool:
    """Whether `remove_stale_temp_files` would keep the file at ``path`` (a hidden copy's name) as
    ``NAME.tagger-kept-XXXXXXXX~``, not delete it: a regular file under a `swap_name` or backup name that
    is not provably tagger's. What a dry run, which changes no file, says of it."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and not _provably_ours(os.path.basename(os.fsdecode(path)), st)


def _keep(path: str) -> None:
    """Keep the file under the hidden `swap_name` or backup name ``path``, not provably tagger's, as
    ``NAME.tagger-kept-XXXXXXXX~``, said in the log: NAME the name of the file beside it whose copy it
    was (the hidden name holds only its first 80 bytes, those not UTF-8 left out), or where there is
    none (deleted since) what the hidden name holds."""
    from tagger.tags.filesystem import keep_beside

    folder, name = os.path.split(path)
    prefix = "." + _SWAP_NAME.fullmatch(name).group(1) + "."
    try:
        beside = sorted(n for n in os.listdir(folder)
                        if not is_temp_name(n) and not is_kept_name(n) and temp_prefix(n) == prefix)  # fmt: skip
    except OSError:
        beside = []
    kept = keep_beside(path, folder, beside[0] if beside else prefix[1:-1] or "file")
    if kept is None:
        log.warning("%s: left by a tag write that was killed, and not tagger's copy: kept under this name (moving "
                    "it to a name of its own failed; move it away)", path)  # fmt: skip
    else:
        log.warning("%s: left by a tag write that was killed, and not tagger's copy nor the file it replaced (another "
                    "program's save?): kept as %s", path, kept)  # fmt: skip


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
        names = [os.path.join(folder, n) for n in self._listed[folder]
                 if n.startswith(prefix) and (len(n) == length or re.fullmatch(_SWAP, n[len(prefix):]))]  # fmt: skip
        removed = remove_stale_temp_files(names)
        for name in removed:
            log.info("removed %s, left over by an interrupted tag write", name)
        return removed

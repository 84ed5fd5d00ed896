"""The scratch copies of tag writes on a file system that cannot resize files (FAT through fusefat:
`tagger.tags.filesystem.resizes_files`): a whole copy of the music file, made in tagger's own folder
under the system's temporary folder (`folder`: ``$TMPDIR/tagger-scratch-UID``, mode 0700), held
locked (``flock``) while its write uses it (`create`). A write killed meanwhile (SIGKILL, power loss)
left that copy of the user's music in ``$TMPDIR`` for ever; the next write that needs one removes
the copies there that no process holds and that are older than `STALE_SECONDS` (`sweep`): only in
that folder, only names of tagger's pattern (``tagger-XXXXXXXX.tagger-tmp``), only regular files.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile
import time

from tagger.paths import TEMP_SUFFIX

PREFIX = "tagger-"
_NAME = re.compile(re.escape(PREFIX) + r"[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))
"""The exact names `tempfile.mkstemp` gives the scratch copies."""
STALE_SECONDS = 10.0
"""A scratch copy not locked is removed only once it is this old: one just made by `create`, between
its creation and its lock, is not taken for a dead write's."""


def _uid() -> int:
    return os.geteuid()


def folder() -> str:
    """Tagger's scratch folder in the system's temporary folder (made 0700 where missing) -> its path.
    Raises `PermissionError` where that name holds a symbolic link, anything but a folder, or a folder
    another user owns (a temporary folder every user writes: someone else's, which could read or
    replace the copies), saying so; the `OSError` of a folder that cannot be made."""
    uid = _uid()
    path = os.path.join(tempfile.gettempdir(), f"tagger-scratch-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(errno.EPERM, f"{path} is {'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'not a folder'}"
                                           f", not tagger's scratch folder: refused (remove it)")  # fmt: skip
    if st.st_uid != uid:
        raise PermissionError(errno.EPERM, f"{path} is owned by another user (uid {st.st_uid}), not this one (uid "
                                           f"{uid}): refused (remove it)")  # fmt: skip
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)  # (ours, opened to others by hand: the copies are the user's music)
    return path


def create() -> tuple[int, str]:
    """A new scratch copy's file, empty, in `folder` (stale ones removed first: `sweep`) -> its
    descriptor, holding its lock until closed, and its path."""
    where = folder()
    sweep(where)
    fd, path = tempfile.mkstemp(prefix=PREFIX, suffix=TEMP_SUFFIX, dir=where)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "in use" until closed, or its process dead
    return fd, path


def sweep(where: str) -> list[str]:
    """Remove the scratch copies in ``where`` left by writes killed meanwhile: names of tagger's
    pattern, regular files of this user, not locked and not modified for `STALE_SECONDS` -> those
    removed. Anything else is left alone, and a file that cannot be looked at too."""
    removed = []
    try:
        names = os.listdir(where)
    except OSError:
        return removed
    uid, now = _uid(), time.time()
    for name in names:
        if _NAME.fullmatch(name) is None:
            continue
        path = os.path.join(where, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or now - st.st_mtime < STALE_SECONDS:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # (held: a write in use)
            now_there = os.lstat(path)
            if (now_there.st_dev, now_there.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed

"""Files tagger writes where a user asks (`show --plot`, `predict --plot`, `query --output`, reports):
written whole or not at all, and never over a file of the user's.

A music folder holds the user's only copies (cover art, playlists, the music itself) beside the
place a picture or a playlist is asked for; one wrong name must not cost one of them. So an
existing file is replaced only when it is one tagger could have written there (`check_replaceable`
with the caller's test), and every write goes to a temporary file in the same folder first,
moved over the name with one `os.replace` (a crash leaves the old file or the new one, and a
symbolic link at the name is replaced, not written through).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from tagger import signals
from tagger.errors import UserError

HEAD_BYTES = 8192
"""How much of an existing file the tests of `check_replaceable` see."""


def check_replaceable(path: str | os.PathLike, *, ours: Callable[[bytes], bool], what: str) -> Path:
    """`path` as a `Path` when writing `what` there replaces nothing of the user's: it does not exist,
    is an empty file, or a regular file whose first `HEAD_BYTES` bytes `ours` accepts. Otherwise a
    `UserError` naming it and the reason (a folder, a FIFO or device, another kind of file)."""
    path = Path(path)
    _refuse_system_name(path, what=what)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise UserError(f"{path}: cannot write {what} there ({exc.strerror or exc})") from None

    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: is a folder; give a file name for {what}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: not a regular file; {what} is not written there")
    if st.st_size == 0:
        return path
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the file already there ({exc.strerror or exc})") from None
    if not ours(head):
        raise UserError(f"{path}: a file is already there that tagger did not write (not {what}); "
                        "left unchanged: choose another name, or move it away first")  # fmt: skip
    return path


def _refuse_system_name(path: Path, *, what: str) -> None:
    """A `UserError` for a name among the system's devices and state: in ``/dev`` itself or on one of
    the kernel's file systems (`tagger.paths.system_folder`), or a symbolic link leading through such a
    name (``/dev/stdout``, a link to ``/proc/self/fd/1``). The write replaces the name, never writes
    through it: ``query -o /dev/stdout > list.m3u`` run as root replaced the system's ``/dev/stdout``
    link with a file (its target, the redirected file, passed the check as an empty one) and left
    ``list.m3u`` empty. (``/dev/shm``, a tmpfs for files, is not refused.)"""
    from tagger import paths  # (not tagger.crawl, which imports numpy: `query -o` starts without it)

    mounts = paths.mount_points(paths.MOUNTINFO) or {}
    name = paths.absolute(path)  # (not os.path.abspath: `link/../stdout`, link leading into /dev, is /dev/stdout)
    for _ in range(40):  # (the kernel's limit of links followed)
        folder = os.path.realpath(os.path.dirname(name))
        if folder == "/dev" or paths.system_folder(folder, mounts) is not None:
            raise UserError(f"{path}: one of the system's devices or files, not a file of yours; {what} is not "
                            "written there")  # fmt: skip
        try:
            name = os.path.join(folder, os.readlink(name))
        except OSError:  # (not a link, or not there)
            return


def looks_like_text(head: bytes) -> bool:
    """The start of a text file (a playlist, CSV, JSON): no NUL byte, valid UTF-8 (a character cut at
    the end of `head` allowed). Audio, pictures and documents all fail it."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # (only a multi-byte character cut by the read)
    return True


TRACK_LIST_START = re.compile(rb"(\xef\xbb\xbf)?\s*(#EXTM3U|/|path,|PATH |\[\s*(\{|\]|$))")
"""How a track list `tagger query -o` may replace begins (after a UTF-8 BOM and blanks): an extended
M3U playlist, an absolute path (``paths``, ``paths0``, a list from ``find``), the CSV's or the
table's header, a JSON list of objects (or an empty one)."""


def looks_like_path_list(head: bytes) -> bool:
    """The start of a track list as `tagger query` writes one in any format (`TRACK_LIST_START`): a
    playlist, a list of paths one a line or NUL-separated (``--format paths0``), CSV, JSON, a table.
    Other text is the user's (notes, a cue sheet, an ``.ini``, a script): it was replaced as well,
    any text passing for an earlier list."""
    if not TRACK_LIST_START.match(head):
        return False
    return looks_like_text(head) or (head.startswith(b"/") and looks_like_text(head.replace(b"\0", b"\n")))


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[str], None]) -> None:
    """Write `data` (bytes, text as UTF-8, or a function that writes the file whose name it is given)
    to `path` through a temporary file in its folder, moved over `path` once complete. The folder
    must exist: a folder that does not, or where no file can be made (read-only, ``/proc``), is a
    `UserError` naming `path` and the reason (was: an OSError traceback from ``query -o``, ``show
    --plot``). A new file gets the permissions a plain ``open`` would give it, a replaced one keeps its own."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        reason = (f"no file can be made in its folder {path.parent}: {exc.strerror or exc}" if path.parent.is_dir() else
                  f"{path.parent} is not a folder" if path.parent.exists() else f"its folder {path.parent} does not exist")  # fmt: skip
        raise UserError(f"{path}: cannot write it there ({reason})") from None

    def remove() -> None:  # (the stop at once of a second Ctrl-C, or a first under Python's own handler,
        try:  # while the writer waits inside SQLite: `query -o` streams its tracks into the file)
            os.unlink(tmp)
        except OSError:
            pass

    try:
        signals.at_forced_stop(remove)
        try:
            mode = os.stat(path).st_mode & 0o7777  # (a file replaced keeps its permissions)
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        remove()
        raise
    finally:
        signals.at_forced_stop(remove, done=True)


LOCK_NAME = ".tagger.lock"
"""The lock file a run writing into an output folder holds there (`folder_lock`)."""


class FolderBusy(UserError):
    """Another tagger run is writing into the same output folder."""


def lock_holder(fd: int) -> str:
    """The process id a lock file (open as `fd`) names, as its holder wrote it; "" when unreadable
    (the scan's database lock and `folder_lock` both write their holder's)."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


_LOCK_CONTENT = re.compile(rb"\d{1,20}\n?")
"""What a lock file of tagger's holds: nothing, or the PID of the last process that held it."""


def not_a_lock(fd: int) -> str | None:
    """Why the file open as `fd` is not a lock file tagger made (another file of that name, which
    writing a PID into would destroy); None when it is one: empty, or a PID. Shared by the scan's
    database lock and `folder_lock`."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if info.st_size == 0:
        return None
    if info.st_size > 64 or not _LOCK_CONTENT.fullmatch(os.pread(fd, 64, 0)):
        return f"it holds {info.st_size} bytes of other data"
    return None


@contextmanager
def folder_lock(folder: str | os.PathLike, *, what: str):
    """Hold an exclusive ``fcntl.flock`` on ``<folder>/.tagger.lock`` for the duration of the block:
    one run writing into `folder` at a time (`tagger dataset mix`, `tagger evaluate --out`), so two
    runs never interleave their files. The folder must exist. `what`: the command, for the refusal.

    Raises `FolderBusy` (a `UserError`) naming the folder and the holder's PID when another process
    holds it; the refused run writes nothing. The holder writes its PID into the file and removes it
    as it finishes (still holding the lock: a process that locked the removed file sees the name
    gone and tries again), so a finished run leaves nothing behind; the kernel releases the lock of
    a run that dies, however it dies."""
    import errno
    import fcntl

    folder = Path(folder)
    path = folder / LOCK_NAME
    refuse = ("exists and is not tagger's lock ({}); a {} keeps its lock in a file of that name in the folder "
              "it writes, and would overwrite and then remove it: left untouched, move it away (or write elsewhere)")
    while True:
        try:
            # (not through a symbolic link, nor a FIFO or terminal: never anything but a plain file)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UserError(f"{path} {refuse.format('it is a symbolic link', what)}") from None
            raise UserError(f"{folder}: cannot create the lock file {LOCK_NAME} there: {exc.strerror or exc}") from None
        why = not_a_lock(fd)
        if why:
            os.close(fd)
            raise UserError(f"{path} {refuse.format(why, what)}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = lock_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"{path}: cannot lock: {exc.strerror or exc}") from None
            who = f"process {pid}" if pid else "another process"
            raise FolderBusy(f"{folder}: another {what} ({who}) is writing into this folder; nothing was written: "
                             "wait for it to finish (or stop it), then run again") from None  # fmt: skip
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it as it finished: lock the new one
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the PID is only informative
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)

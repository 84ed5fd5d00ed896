"""Paths inside folders (the one test of "this path is that folder, or lies under it"), the names
of tagger's temporary files, where tagger's caches live, and the inode attributes (immutable,
append-only) that forbid writing a file, root included."""

from __future__ import annotations

import os
import re
import struct
import unicodedata
from collections.abc import Iterable

DEFAULT_SETTLE_SECONDS = 10.0
"""The commands' default settle time: a file modified less than this many seconds ago may still be
being written, and is left for a later run (``--settle-seconds``, ``$TAGGER_SETTLE_SECONDS``). Here,
not in `tagger.tags.rewrite`, so that the commands' options read it without importing mutagen and
SQLAlchemy (`tagger.tags`) into every command's start-up."""

TEMP_SUFFIX = ".tagger-tmp"
"""Suffix of the hidden temporary files of an atomic tag write (never an audio extension)."""
_TEMP_NAME = re.compile(r"\..*\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX), re.DOTALL)
"""The exact names `tempfile.mkstemp` gives those files: ``.NAME.XXXXXXXX.tagger-tmp``."""
KEPT_INFIX = ".tagger-kept-"
"""In the name a tag write gives a file it found under its copy's name and could not put back
(``NAME.tagger-kept-XXXXXXXX~``: `tagger.tags.writing._Write._keep`)."""
KEPT_SUFFIX = "~"
"""At the end of that name: the backup files' mark, which beets' default ``ignore`` list (``*~``) skips,
so that ``beet import`` of the folder does not take the kept file for one more track (it reads a file's
type from its content, not its name). Names kept before it (``NAME.tagger-kept-XXXXXXXX``) still count."""
_KEPT_NAME = re.compile(r".*" + re.escape(KEPT_INFIX) + r"[0-9a-f]{8}" + re.escape(KEPT_SUFFIX) + "?", re.DOTALL)


MOUNTINFO = "/proc/self/mountinfo"
"""Linux's list of this process's mounts."""


def mount_points(mountinfo: str = MOUNTINFO) -> dict[str, str] | None:
    """{mount point: file system type} of every mount (the last one mounted at a point wins), read
    from ``mountinfo`` (Linux's ``/proc/self/mountinfo``); None where it cannot be read (another
    system)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, kind = left.split(), right.split()[:1]
        if sep and len(fields) >= 5 and kind:
            # (the kernel writes a space, tab, line break or backslash in a mount point as \ooo)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out[point] = kind[0]
    return out


def on_fuse(real: str, mountinfo: str = MOUNTINFO) -> bool | None:
    """Whether the resolved path ``real`` lies on a FUSE file system (exfat-fuse, fusefat, ntfs-3g,
    sshfs: the type of its deepest mount point in ``mountinfo`` is ``fuse``, ``fuseblk`` or
    ``fuse.*``); None where the mounts cannot be read (another system)."""
    mounts = mount_points(mountinfo)
    if mounts is None:
        return None
    holding = [point for point in mounts if real == point or real.startswith(point.rstrip("/") + "/")]
    kind = mounts[max(holding, key=len)] if holding else ""
    return kind in ("fuse", "fuseblk") or kind.startswith("fuse.")


_FS_IOC_GETFLAGS = (2 << 30) | (struct.calcsize("l") << 16) | (ord("f") << 8) | 1  # _IOR('f', 1, long)
_FIXED_ATTRIBUTES = ((0x10, "immutable (chattr +i)"), (0x20, "append-only (chattr +a)"))


def file_flags(fd: int) -> int | None:
    """The Linux inode flags (``lsattr``) of the file open as ``fd``; None where the file system has none."""
    import fcntl

    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
    except OSError:
        return None
    return int.from_bytes(buf[:4], "little" if struct.pack("=I", 1)[0] else "big")


def inode_flags(path: str) -> int | None:
    """The Linux inode flags (``lsattr``) of the file or folder ``path``; None where it cannot be
    opened or the file system does not say."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return file_flags(fd)
    finally:
        os.close(fd)


def fixed_attribute(path: str) -> str | None:
    """The Linux inode attribute of the file or folder ``path`` that forbids replacing it or a file
    in it, root included (immutable, append-only), in words; None when it has none or the
    filesystem does not say. A rename over such a file, or in such a folder, fails only once the
    copy is written, and an append-only folder keeps the copy and the backup link: their removal
    fails too (`tagger.tags.filesystem.check_writable`); a SQLite database so marked cannot be
    written (`tagger.db.sqlite_files.read_only_reason`)."""
    flags = inode_flags(path)
    return None if flags is None else next((words for bit, words in _FIXED_ATTRIBUTES if flags & bit), None)


def cache_home() -> str | None:
    """The user's cache folder: ``$XDG_CACHE_HOME``, or ``~/.cache`` when that is unset or not an
    absolute path (the XDG specification says to ignore a relative one); None when there is no home
    either (no ``$HOME``, no entry in the user database). Every cache of tagger (exported models,
    training examples, downloaded sample packages, the benchmark's library) lives under its
    ``tagger/`` folder, never under the current folder, which may be the music library."""
    base = os.environ.get("XDG_CACHE_HOME")
    if base and os.path.isabs(base):
        return base
    home = os.path.expanduser("~")
    return os.path.join(home, ".cache") if os.path.isabs(home) else None


SYSTEM_FS_TYPES = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
     "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs", "selinuxfs", "rpc_pipefs",
     "nsfs"}
)  # fmt: skip
"""File system types of the kernel's state and devices (Linux): a crawl never enters their mounts."""


def system_folder(real: str, mounts: dict[str, str]) -> str | None:
    """The type of the kernel's file system (``proc``, ...) that the real path ``real`` is on, by
    the deepest of `mounts` (`tagger.crawl.system_mounts`, `mount_points`) that holds it; None for
    any other file system (``/dev/shm``, a tmpfs mounted inside ``/dev``, is one of those)."""
    point = max((p for p in mounts if is_under(real, p)), key=len, default=None)
    kind = mounts.get(point) if point is not None else None
    return kind if kind in SYSTEM_FS_TYPES else None


def is_temp_name(name: str) -> bool:
    """True for the name of one of tagger's temporary files (``.NAME.XXXXXXXX.tagger-tmp``): the
    crawler skips them, the next scan of their folder deletes stale ones."""
    return _TEMP_NAME.fullmatch(name) is not None


def is_kept_name(name: str) -> bool:
    """True for the name of a file a tag write kept (``NAME.tagger-kept-XXXXXXXX~``, another program's
    or the original, found under its copy's name and not put back; or without the ``~``, as kept before
    `KEPT_SUFFIX`): the crawler passes over it, no cleanup removes it; it is the user's to look at."""
    return _KEPT_NAME.fullmatch(name) is not None


def check_filesystem_encoding() -> None:
    """Raise `UserError` when Python does not read file names as UTF-8 (``PYTHONUTF8=0`` in the C
    locale: ASCII; a legacy locale such as ``LANG=de_DE.ISO-8859-1``: Latin-1). The database holds
    names as UTF-8: under ASCII every name beyond it failed as "not valid UTF-8", and `scan` and
    `tag` ended in a UnicodeEncodeError traceback; under Latin-1 ``Björk.flac`` would read as
    ``BjÃ¶rk.flac``, a new track, its stored one then missing. (Python's UTF-8 mode, on by itself
    in the C and POSIX locales since 3.7, or a UTF-8 locale, reads them right.)"""
    import codecs
    import sys

    from tagger.errors import UserError

    encoding = sys.getfilesystemencoding()
    if codecs.lookup(encoding).name != "utf-8":
        raise UserError(f"Python reads file names as {encoding} here, not UTF-8 (the locale's encoding, or PYTHONUTF8=0): "
                        "tagger would take the names of the library for others; run it with PYTHONUTF8=1 (or in a "
                        "UTF-8 locale)")  # fmt: skip


def absolute(path: str | os.PathLike) -> str:
    """``path`` made absolute, naming what the kernel opens under it: `os.path.abspath`, but the
    ``..`` of a path that goes through a symbolic link first (``Music/link/../song.flac``) leads to
    the parent of the link's target, as ``cat`` and every other program read it, not back to the
    folder holding the link (abspath drops ``link/..`` as text: `untag` rewrote another file than
    the one named, which `show` named, and `scan` stored another folder's files). Symbolic links
    after the last ``..`` are kept as they are (a link to a file stays a link)."""
    path = os.fspath(path)
    parts = path.split(os.sep)
    if ".." not in parts:
        return os.path.abspath(path)
    last = len(parts) - 1 - parts[::-1].index("..")
    head = os.sep.join(parts[: last + 1]) or os.sep
    return os.path.abspath(os.path.join(os.path.realpath(head), *parts[last + 1 :]))


def check_working_folder() -> None:
    """Raise `UserError` when the current folder no longer exists (deleted while a shell was in it,
    as `rm -r` of the folder one is in leaves it): a relative name cannot be found from it, and the
    scan's worker processes cannot start (Python's `multiprocessing` reads the current folder for
    them). Both ended in a `FileNotFoundError` traceback, the latter after the models had loaded."""
    from tagger.errors import UserError

    try:
        os.getcwd()
    except FileNotFoundError:
        raise UserError("the current folder no longer exists (it was deleted while this shell was in it): "
                        "`cd` into a folder that exists and run the command again") from None
    except OSError:  # (unreadable in some other way: relative names may still work; leave it to them)
        pass


def is_utf8(name: str) -> bool:
    """False for a name that is not valid UTF-8 (Python reads its bytes as lone surrogates): the
    database, JSON and playlists cannot hold it exactly."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def nfc(text: str) -> str:
    """``text`` in Unicode's composed form (NFC: ``é`` one character). Names are compared in it where
    they may come in either form: macOS writes them decomposed (NFD: ``e`` and a combining accent),
    Linux keeps whichever bytes it was given, and a user types NFC."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def spelled_on_disk(path: str) -> str:
    """``path`` with each name on its way that does not exist as written replaced by the one entry
    of its folder that is the same name in another Unicode form (`nfc`); ``path`` as it is when it
    exists, or where no entry, or more than one, is that name. Linux opens a file by its exact
    bytes: ``Beyoncé/`` typed as one ``é`` does not open the folder a copy from macOS made, whose
    name holds ``e`` and a combining accent."""
    if path.isascii() or os.path.lexists(path):
        return path
    if path.endswith(os.sep) and path.strip(os.sep):  # ("Beyoncé/", as a shell completes a folder)
        return spelled_on_disk(path.rstrip(os.sep)) + os.sep
    head, name = os.path.split(path)
    if not name or head == path:
        return path
    folder = spelled_on_disk(head) if head else head
    if not os.path.lexists(os.path.join(folder, name)):
        try:
            alike = [entry for entry in os.listdir(folder or os.curdir) if nfc(entry) == nfc(name)]
        except OSError:
            alike = []
        if len(alike) == 1:
            name = alike[0]
    return os.path.join(folder, name)


UNDECODABLE = "the file name is not valid UTF-8 (shown here with \\x escapes"
"""How the error of a file whose name is not UTF-8 begins: the scan stores it under its name with
each such byte written ``\\xNN`` (`escaped_name`)."""


def escaped_name(path: str) -> str:
    """``path`` as the database can hold it: a name that is not valid UTF-8 gets ``\\xNN`` escapes for
    the bytes that are not (a literal backslash is left as it is, so a valid name can spell the same)."""
    if is_utf8(path):
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unescaped_name(stored: str) -> str:
    """The name `escaped_name` wrote as ``stored``: each ``\\x80``..``\\xff`` escape back as the byte it
    stands for (the lone surrogate Python reads it as), so that `tagger.display.named` shows it as it
    shows the file's own name."""
    return re.sub(r"\\x([89a-f][0-9a-f])", lambda m: chr(0xDC00 + int(m.group(1), 16)), stored)


def folder_prefix(folder: str) -> str:
    """``folder`` with exactly one trailing separator: what every path under it starts with."""
    return folder.rstrip(os.sep) + os.sep


def is_under(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies under it (plain string test: give both in the same
    form, e.g. both absolute or both resolved)."""
    return path == folder or path.startswith(folder_prefix(folder))


def under_any(path: str, folders: Iterable[str]) -> bool:
    """True when ``path`` is one of ``folders`` or lies under one of them."""
    return any(is_under(path, f) for f in folders)


class Roots:
    """Folders (or files) of which to tell, for a path, each that it is or lies under (`is_under`),
    in as many steps as the path has parts, not one per folder as `under_any`: a scan of a shell's
    ``*.flac`` has thousands of roots."""

    def __init__(self, roots: Iterable[str]) -> None:
        self._exact = set(roots)
        self._by_prefix: dict[str, list[str]] = {}
        for root in self._exact:
            self._by_prefix.setdefault(folder_prefix(root), []).append(root)

    def holding(self, path: str) -> list[str]:
        """The roots ``path`` is or lies under."""
        found = [path] if path in self._exact else []
        i = path.find(os.sep)
        while i >= 0:
            found += self._by_prefix.get(path[: i + 1], ())
            i = path.find(os.sep, i + 1)
        return found

    def holds(self, path: str) -> bool:
        """Whether ``path`` is or lies under one of the roots (`under_any`)."""
        return bool(self.holding(path))


class Spelling:
    """Whether a path is spelled as its folders list it (`as_listed`), each folder listed once.

    On a drive that ignores case (exFAT, FAT, NTFS mounted for Windows names) ``Song.flac`` still
    opens the file listed as ``song.flac`` after a rename in case only, and through FUSE
    (exfat-fuse) it even has another inode number: only the listing tells that the name is no
    longer the file's own."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str] | None] = {}

    def _listed(self, folder: str) -> frozenset[str] | None:
        if folder not in self._names:
            try:
                self._names[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._names[folder] = None  # cannot be listed: taken as spelled right
        return self._names[folder]

    def as_listed(self, path: str) -> bool:
        """True when every name on the way to the absolute ``path`` is in its folder's listing
        exactly as written (or the folder cannot be listed)."""
        folder, name = os.path.split(path)
        while name:
            names = self._listed(folder or os.sep)
            if names is not None and name not in names:
                return False
            folder, name = os.path.split(folder)
        return True

    def is_file(self, path: str) -> bool:
        """``path`` is a regular file (followed) under this very spelling."""
        return os.path.isfile(path) and self.as_listed(path)


def looks_unmounted(folder: str) -> bool:
    """``folder`` exists and holds nothing at all: what the mount point of a drive that is not
    mounted looks like (a library folder emptied on purpose looks the same, and is then left as it
    was until a file appears in it or the folder goes)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def in_an_empty_folder(folder: str) -> bool:
    """Whether the nearest folder that is there of ``folder`` and those above it is empty, as the
    mount point of a drive not mounted is (and as a folder that cannot be listed counts): a gone
    track's file under it may be on that drive, not gone (the scan's moves and `db prune` leave
    such a track where it is)."""
    return empty_folder_above(folder) is not None


def empty_folder_above(folder: str) -> str | None:
    """The nearest folder that is there of ``folder`` and those above it, where it is empty or
    cannot be listed (`in_an_empty_folder`); None where it holds something."""
    while not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return folder
        folder = parent
    try:
        with os.scandir(folder) as entries:
            return folder if next(entries, None) is None else None
    except OSError:
        return folder

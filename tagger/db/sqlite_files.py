"""The SQLite file behind a library database, checked before anything opens it: another program's
file or database (refused, untouched), a path that is not UTF-8, a file or folder this process cannot
write (opened read-only), a file without tables, and whether its folder can hold SQLite's
shared-memory index (the write-ahead log needs it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tagger.db.migrate import not_a_library
from tagger.db.urls import DB_FILENAME, DatabaseError

_SHARED_MEMORY: dict[str, bool] = {}


def _probe(folder: Path, prefix: str, check) -> bool | None:
    """``check(fd, name)`` of a hidden file made in ``folder`` for it (named ``prefix...``), removed
    after: what a folder's file system does with a file; None where the file cannot be made there
    (a folder not writable): nothing learnt."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
    except OSError:
        return None
    try:
        return check(fd, name)
    finally:
        os.close(fd)
        try:
            os.unlink(name)
        except OSError:
            pass


def shared_memory_works(folder: Path) -> bool:
    """Whether a file in ``folder`` can be sized and mapped shared, as SQLite's write-ahead log needs
    for its ``-shm`` index (once per folder and process). FAT through FUSE (fusefat) refuses
    ``ftruncate``, and there SQLite set WAL mode, then failed every access with "disk I/O error",
    even another process's that would have changed the journal mode back. A folder that cannot be
    probed (not writable) counts as working: SQLite then says what fails."""
    import logging
    import mmap

    def maps_shared(fd: int, _name: str) -> bool:
        try:
            os.write(fd, bytes(mmap.PAGESIZE))  # (written, not mapped, first: a full disk raises here)
        except OSError:
            return True  # a full disk: nothing learnt; SQLite says what fails
        try:
            os.ftruncate(fd, mmap.PAGESIZE)  # (as SQLite sizes its index)
            with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED) as mapped:
                mapped[0] = 1
        except (OSError, ValueError):
            return False
        return True

    key = os.fspath(folder)
    if key not in _SHARED_MEMORY:
        works = _probe(folder, ".tagger-shm-probe-", maps_shared)
        if works is False:
            logging.getLogger("tagger.db").warning(
                "the file system of %s cannot map files shared, which SQLite's write-ahead log needs: "
                "the database there uses a rollback journal", key)  # fmt: skip
        _SHARED_MEMORY[key] = works is not False
    return _SHARED_MEMORY[key]


_WRITES_KEPT: dict[str, bool] = {}


def refuse_losing_file_system(path: Path | None) -> None:
    """Refuse the SQLite file ``path`` on a file system that loses what is written into a file as
    SQLite writes it (`writes_kept`), before anything opens it: the database would be damaged at
    its first commits. FAT through FUSE (fusefat) does: a scan of 90 files with ``--db`` on such a
    drive left `database disk image is malformed`, and every later command failed to open it."""
    if path is None:
        return
    folder = path.expanduser().absolute().parent
    if not writes_kept(folder):
        raise DatabaseError(
            f"cannot keep the database {path} there: the file system of {folder} loses data written into a file "
            "(bytes added after a rewrite of the file's start read back missing, as FAT through fusefat does), so "
            "SQLite's commits would damage it; keep the database on another drive (--db ~/library.db), the music "
            "may stay there"
        )


def writes_kept(folder: Path) -> bool:
    """Whether a file in ``folder`` reads back what was written into it as SQLite writes a database:
    its first page rewritten, then a page added after its end (once per folder and process). fusefat
    drops the bytes added after such a rewrite (the file reads back shorter than its size). A folder
    that cannot be probed (not writable, full) counts as keeping them: SQLite then says what fails.
    Only a folder on a FUSE file system is probed (or where the mounts cannot be read): a kernel
    file system keeps them, and the probe is 12 KiB written beside the database by every command."""
    from tagger.paths import on_fuse

    def reads_back(fd: int, name: str) -> bool:
        try:
            os.write(fd, b"a" * 8192)
            os.pwrite(fd, b"b" * 16, 100)  # (SQLite's change counter, in its header)
            os.pwrite(fd, b"c" * 4096, 8192)  # (a new page)
            with open(name, "rb") as f:
                return f.read() == b"a" * 100 + b"b" * 16 + b"a" * (8192 - 116) + b"c" * 4096
        except OSError:
            return True  # (a full disk: nothing learnt)

    key = os.fspath(folder)
    if key not in _WRITES_KEPT and on_fuse(os.path.realpath(folder)) is False:
        _WRITES_KEPT[key] = True
    if key not in _WRITES_KEPT:
        kept = _probe(folder, ".tagger-write-probe-", reads_back) is not False
        _WRITES_KEPT[key] = kept
    return _WRITES_KEPT[key]


_SQLITE_HEADER = b"SQLite format 3\x00"


def refuse_other_files(path: Path | None) -> None:
    """Refuse a SQLite path that holds a file of something else (``--db notes.txt``, a song): SQLite
    would refuse most, but turns a file of one byte into a database; a folder; a path that is not
    UTF-8 (a SQLAlchemy URL cannot hold it); and the database of another application
    (`not_a_library`), before anything (WAL mode, a migration) changes it. An empty file is what
    SQLite makes of a new database, and is used. A path that is neither a file nor a folder (a disk
    or partition, ``/dev/null``, a FIFO, a socket) is refused too: SQLite opens a device as a file,
    and one whose first bytes are zeros (an ext4 partition's are) reads to it as a new database, so
    `tagger scan --db /dev/sdb1` wrote a database over the partition's file system, its ``-wal``,
    ``-shm`` and ``.lock`` files beside it in ``/dev``."""
    if path is None:
        return  # another database
    refuse_undecodable(path)
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder, not a database file: give --db a file in it (e.g. {path / DB_FILENAME})")
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None  # missing (created), or a dangling link: reported where it is opened
    if mode is not None and not stat.S_ISREG(mode):
        raise DatabaseError(f"{path} is {_kind(mode)}, not a database file; left untouched: give --db a database "
                            "file or a new file name")  # fmt: skip
    if not path.is_file():
        return  # missing (created): reported where it is opened
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError:
        return  # unreadable: reported where it is opened
    if head and not _SQLITE_HEADER.startswith(head):
        raise DatabaseError(f"{path} is not a SQLite database (it does not start with SQLite's header); "
                            "left untouched: give --db a database or a new file name")  # fmt: skip
    schema = _sqlite_schema(path) if head else None
    foreign = None if schema is None else not_a_library(*schema)
    if foreign:
        raise DatabaseError(f"{path} is not a tagger library database ({foreign}); left untouched: "
                            "give --db a library database or a new file name")  # fmt: skip


def refuse_second_names(path: Path | None) -> None:
    """Refuse a SQLite database file that is reached under another name too, before it is opened for
    writing: one with more than one name (hard links), and one mounted on its own (``mount --bind``,
    a container's single-file volume). SQLite keeps a database's write-ahead log and shared-memory
    index beside the name it is opened by (``NAME-wal``, ``NAME-shm``), and the scan lock is beside
    it too (``NAME.lock``): two tagger commands using two of its names (two scans, a scan and a
    ``tag``) each wrote a log of its own into one database, neither seeing the other's (SQLite's
    "How To Corrupt An SQLite Database File", 2.5), and two scans ran at once, each analysing every
    file; a file mounted on its own has its log outside the mounted file (in a container, on a layer
    that goes with it: the transactions the log held are lost with it). A database opened read-only
    (`read_only_sqlite_file`) writes no log and is not refused."""
    if path is None:
        return
    try:
        st = path.stat()
    except OSError:
        return  # missing (created), or unreadable: reported where it is opened
    if not stat.S_ISREG(st.st_mode):
        return
    if st.st_nlink > 1:
        raise DatabaseError(
            f"the database {path} has {st.st_nlink} names (hard links to one file): SQLite keeps its write-ahead "
            "log beside the name it is opened by, and tagger its scan lock, so two commands using two of its names "
            "would write two logs into one database and damage it; left untouched: keep one name (remove the "
            "other links, or make them copies or symbolic links)"
        )
    from tagger.paths import mount_points

    real = os.path.realpath(path)
    if real in (mount_points() or {}):
        raise DatabaseError(
            f"the database {path} is a file mounted there on its own (mount --bind, a container's single-file "
            "volume): SQLite keeps its write-ahead log beside it, outside the mounted file, where a program using "
            "it under its other name does not see it and what it holds can be lost with this folder; left "
            "untouched: mount the folder holding it instead"
        )


def _kind(mode: int) -> str:
    """What a file that is not a regular file or a folder is, in words."""
    if stat.S_ISBLK(mode):
        return "a block device (a disk or a partition)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def refuse_undecodable(path: Path) -> None:
    """Refuse a database path whose names are not UTF-8: a SQLAlchemy URL cannot hold it."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise DatabaseError(f"{shown}: the database path is not UTF-8, which a database URL must be; "
                            "give --db a path of UTF-8 names") from None  # fmt: skip


def _sqlite_schema(path: Path) -> tuple[set[str], list[str]] | None:
    """The table names and ``alembic_version`` rows of the SQLite file `path`, read without writing
    anything (no WAL mode set, no journal left); None when it cannot be read (reported where it is
    opened). Without a write-ahead log holding data, the file alone is read (``immutable``: a WAL
    database opened read-only would leave empty ``-wal``/``-shm`` files beside another program's
    database)."""
    import sqlite3
    from urllib.parse import quote

    wal = Path(f"{path}-wal")
    try:
        logged = wal.is_file() and wal.stat().st_size > 0
    except OSError:
        logged = True
    uri = f"file:{quote(os.fsencode(path.resolve()))}?mode=ro{'' if logged else '&immutable=1'}"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=1)  # (locked: the engine waits, and says so)
    except sqlite3.Error:
        return None
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        revisions = []
        if "alembic_version" in tables:
            revisions = [r for (r,) in con.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return tables, revisions


def read_only_sqlite_file(database: str | None) -> Path | None:
    """The path of an existing SQLite database file that this process cannot write (its folder or
    the file itself not writable, e.g. a read-only mount; the file append-only, ``chattr +a``, which
    `os.access` lets write but nobody can open for writing in place), else None."""
    from tagger.paths import fixed_attribute

    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    if not path.is_file():
        return None
    if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK) and not fixed_attribute(os.fspath(path)):
        return None
    return path.resolve()


def _not_writable(path: Path) -> str | None:
    """Why this process cannot write the SQLite database file `path` (None: it could): its file
    system mounted read-only, an attribute (immutable, append-only) of its folder or of the file,
    or their modes; "for this user" only where the mode is what refuses (was: an immutable file,
    mode -rw-r--r--, was "read-only for this user (mode -rw-r--r--)", which its mode contradicted)."""
    from tagger.paths import fixed_attribute

    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return f"it is on a read-only file system ({path.parent})"
    except OSError:
        pass
    if not os.access(path.parent, os.W_OK):
        attribute = fixed_attribute(os.fspath(path.parent))
        if attribute:
            return f"its folder {path.parent} is {attribute}, and SQLite writes its -wal and -shm files there"
        return f"its folder {path.parent} {_refused_by(path.parent)}, and SQLite writes its -wal and -shm files there"
    attribute = fixed_attribute(os.fspath(path))
    if attribute:
        return f"the file is {attribute}"
    if not os.access(path, os.W_OK):
        return f"the file {_refused_by(path)}"
    return None


def _refused_by(path: Path) -> str:
    """What refuses this user the writing of ``path``, which `os.access` says it may not write: its
    mode ("is read-only for this user (mode ...)"), else something beside the mode (an access
    control list, a security module such as SELinux or AppArmor)."""
    try:
        st = path.stat()
    except OSError:
        return "is read-only for this user"
    mode = stat.filemode(st.st_mode)
    euid = os.geteuid()
    if euid == st.st_uid:
        bit = stat.S_IWUSR
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bit = stat.S_IWGRP
    else:
        bit = stat.S_IWOTH
    if euid != 0 and not st.st_mode & bit:
        return f"is read-only for this user (mode {mode})"
    return (f"may not be written by this user, though its mode ({mode}) allows it: an access control list or a "
            "security policy (SELinux, AppArmor) refuses it")  # fmt: skip


def read_only_reason(path: str | os.PathLike) -> str:
    """Why the SQLite database file `path`, opened read-only (`read_only_path`), cannot be written:
    its file system, its folder or the file itself (`_not_writable`), else the ``mode=ro`` of its
    URL (a ``sqlite:///file:...?mode=ro&uri=true`` given as the database; was "it was opened
    read-only", naming no cause)."""
    file = Path(path)
    return (_not_writable(file) if file.is_file() else None) or "its URL opens it read-only (mode=ro)"


def holds_no_tables(path: Path) -> bool:
    """True for a SQLite file without a table (empty, or a database never migrated): a command that
    only uses a library would migrate it, that is create a library where the user has none."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError:
        return False  # reported where it is opened
    if not head:
        return True
    schema = _sqlite_schema(path) if head == _SQLITE_HEADER else None  # (another file: `refuse_other_files`)
    return schema is not None and not {t for t in schema[0] if not t.startswith("sqlite_")}

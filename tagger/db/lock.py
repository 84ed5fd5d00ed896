"""One scan at a time per library database: the scan locks of SQLite and PostgreSQL.

SQLite: `scan_lock` takes an exclusive ``fcntl.flock`` on ``<database>.lock`` (created when
missing, never deleted: removing a lock file would let two processes lock two different files).
The holder writes its PID into it, so that a second scan refuses with a message naming the process
that holds the database. The kernel releases the lock when the holder exits, however it exits
(``kill -9`` included), so a crashed scan never leaves a stale lock behind. A file of that name
that is not such a lock (empty, or a PID) is never written: the scan refuses, naming it
(`NotOurLock`).

PostgreSQL: a database shared by several machines is locked in the server: a scan holds
``pg_try_advisory_lock(SCAN_LOCK_KEY)`` on a connection of its own for as long as it runs
(`postgres_scan_lock`). The server releases it when that connection ends, however the scan ends
(``kill -9`` and a lost machine included, once the server notices the connection is gone).

Other databases get no lock.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import TaggerError, UserError
from tagger.outputs import lock_holder, not_a_lock

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class DatabaseBusy(UserError):
    """Another scan holds the library database."""


class NotOurLock(UserError):
    """A file where the scan lock goes is not one: the user's own, which the lock would overwrite."""


def _busy(who: str, database, then: str) -> DatabaseBusy:
    """The refusal of a scan lock that `who` holds on `database`; `then`: what to do once it is done."""
    return DatabaseBusy(f"another tagger scan or prune ({who}) is using the database {database}; "
                        f"wait for it to finish (or stop it), then {then}")  # fmt: skip


def real_sqlite_file(url) -> Path | None:
    """The real path of the file SQLite opens for the database ``url`` (`tagger.db.urls.sqlite_file`:
    ``sqlite:///path`` or a ``file:`` URI), else None."""
    from tagger.db.urls import sqlite_file

    db = sqlite_file(url)
    return None if db is None else Path(os.path.realpath(db))


@dataclass(frozen=True)
class WrittenFile:
    """The SQLite file a command writes, as it was found when the command began (None for another
    database): SQLite goes on writing into the file it opened, so a command must see for itself that
    the file at the database's path is still that one (`went`)."""

    path: Path | None
    identity: tuple[int, int] | None

    @classmethod
    def of(cls, url) -> WrittenFile:
        path = real_sqlite_file(url)
        return cls(path, None if path is None else file_id(path))

    def went(self) -> bool:
        """Whether the file at the path is no longer the one found: deleted, moved away, or another
        file moved over it (a backup restored). Never for a database that is not a SQLite file."""
        return self.identity is not None and file_id(self.path) != self.identity


def file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """The file ``path`` leads to (followed), as (device, inode): another file moved over the path has
    another; None where it cannot be read (gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def lock_path(url: str) -> Path | None:
    """Where the scan lock of the database `url` lives (None: not a SQLite file)."""
    db = real_sqlite_file(url)
    return None if db is None else db.with_name(db.name + LOCK_SUFFIX)


SQLITE_COMPANIONS = ("-wal", "-shm", "-journal", LOCK_SUFFIX)
"""The files SQLite (and the scan lock) keep beside a database file."""


def database_files(url: str) -> frozenset[str]:
    """The real paths of the SQLite database `url` and of the files beside it that belong to it
    (write-ahead log, shared memory, rollback journal, scan lock); empty for another database. A
    scan never takes them for music (`--db` inside the scanned folder)."""
    db = real_sqlite_file(url)
    if db is None:
        return frozenset()
    return frozenset([str(db), *(f"{db}{suffix}" for suffix in SQLITE_COMPANIONS)])


@contextmanager
def scan_lock(url: str, *, then: str = "scan again", engine=None):
    """Hold the scan lock of the database `url` for the duration of the block (a scan; and `db
    prune`, which must not delete tracks a scan is restoring meanwhile). ``then``: what the
    refusal tells the user to do once the holder is done. ``engine``: the engine that writes
    (PostgreSQL: each of its commits first checks that the lock is still held, `postgres_scan_lock`).

    Raises `DatabaseBusy` (a `UserError`) naming the holder's PID when another process holds it,
    and `TaggerError` when the lock file cannot be created (e.g. a read-only database folder).
    """
    key = _database_key(url)
    _HELD.add(key)
    try:
        with _scan_lock(url, then=then, engine=engine) as held:
            yield held
    finally:
        _HELD.discard(key)


_HELD: set[tuple] = set()
"""The databases whose scan lock this process holds (`scan_lock_holder` never names itself)."""


def _database_key(url) -> tuple:
    """The database a URL (string or SQLAlchemy URL) names, whatever its driver and spelling."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    file = real_sqlite_file(parsed)
    return (parsed.get_backend_name(), str(file) if file else parsed.database, parsed.host, parsed.port, parsed.username)


@contextmanager
def _scan_lock(url: str, *, then: str, engine):
    path = lock_path(url)
    if path is None:  # PostgreSQL: an advisory lock in the server
        with postgres_scan_lock(url, then=then, guard=engine):
            yield None
        return
    import fcntl

    refuse = ("exists and is not tagger's scan lock ({}); a scan keeps its lock in a file of that name beside "
              "the database and would overwrite it: left untouched, move it away (or give --db another name)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # (not through a symbolic link, nor a terminal made ours: never anything but a plain file)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotOurLock(f"{path} {refuse.format('it is a symbolic link')}") from None
        hint = " (the database folder is read-only)" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else ""
        if hint and path.exists():
            hint = " (the lock file is not writable by this user: run as the user who owns it)"
        raise TaggerError(f"{path}: cannot create the scan lock file: {exc.strerror or exc}{hint}") from None
    try:
        why = not_a_lock(fd)
        if why:
            raise NotOurLock(f"{path} {refuse.format(why)}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TaggerError(f"{path}: cannot lock: {exc.strerror or exc}") from None
            pid = lock_holder(fd)
            who = f"process {pid}" if pid else "another process"
            raise _busy(who, real_sqlite_file(url), then) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the PID is only informative; the lock itself is held
        yield path
    finally:
        os.close(fd)  # releases the flock


def scan_lock_holder(url: str) -> str | None:
    """Who holds the scan lock of the database `url` now, in words (``another tagger scan or prune
    (process 1234) holds it``, and whether that process is stopped), for a command that waited for
    a database lock in vain (`tagger.db.session.database_error`); None when no process holds it or it
    cannot be told, or this process holds it. Looks only: the lock is never taken (a scan starting
    meanwhile must not be refused because of this look)."""
    if _database_key(url) in _HELD:
        return None
    path = lock_path(url)
    if path is None:
        return _postgres_lock_holder(url)
    pid = _flock_holder(path)
    if pid is None or pid == os.getpid():
        return None
    stopped = ""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        if state in (b"T", b"t"):
            stopped = f"; it is stopped (suspended: `fg` in its terminal, or `kill -CONT {pid}`, lets it go on)"
    except (OSError, IndexError):
        pass
    return f"another tagger scan or prune (process {pid}) holds it{stopped}"


def _flock_holder(path: Path) -> int | None:
    """The process holding a ``flock`` on the file `path`, read from ``/proc/locks`` (Linux); None
    when none does, or it cannot be told."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("1: -> FLOCK ...": waiting)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident and fields[4].isdigit() and int(fields[4]):
            return int(fields[4])
    return None


def _postgres_lock_holder(url: str) -> str | None:
    """`scan_lock_holder` on PostgreSQL: the server process and client of the scan lock's session."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    if make_url(url).get_backend_name() != "postgresql":
        return None
    from tagger.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            holder = _scan_lock_owner(conn)
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    if holder is None:
        return None
    return f"another tagger scan or prune ({_postgres_session(holder)}) holds it"


def _postgres_session(holder: tuple) -> str:
    """The PostgreSQL session holding the scan lock (`_scan_lock_owner`), in words."""
    return f"server process {holder[0]}, client {holder[1] or 'local socket'}"


SCAN_LOCK_KEY = 0x7461676765720001
"""The advisory lock key of `tagger scan` (``b"tagger"`` + 1, a signed 64-bit integer)."""


def _scan_lock_owner(conn) -> tuple | None:
    """(server process id, client address or None) of the PostgreSQL session holding the scan lock
    (`SCAN_LOCK_KEY`), as ``conn`` sees it; None when none does."""
    from sqlalchemy import text

    return conn.execute(
        text("SELECT a.pid, host(a.client_addr) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
             "WHERE l.locktype = 'advisory' AND l.granted "
             "AND (l.classid::bigint << 32 | l.objid::bigint) = :k LIMIT 1"),
        {"k": SCAN_LOCK_KEY},
    ).first()  # fmt: skip


@contextmanager
def postgres_scan_lock(url: str, *, then: str = "scan again", guard=None):
    """Hold the scan lock of the PostgreSQL database `url` for the duration of the block.

    Raises `DatabaseBusy` naming the holder (client address and server PID)
    when another scan holds it. Other databases: does nothing.

    ``guard``: an engine whose every commit first checks that the lock is still held. The server
    drops the lock with its connection (a server restart, a terminated backend, a network cut):
    the lock is then taken again on a new connection, or, when another scan took it meanwhile, the
    commit is refused with `DatabaseBusy` (what was committed before stays).
    """
    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield None
        return
    from tagger.db.engine import make_engine
    from tagger.db.urls import shown_url

    where = shown_url(parsed)
    lock = _PostgresLock(make_engine(url), where=where, then=then)
    try:
        conn = lock.take()
        check = lock.check  # before each commit of `guard`
        if guard is not None:
            event.listen(guard, "commit", check)
        try:
            yield conn
        finally:
            if guard is not None:
                event.remove(guard, "commit", check)
            lock.release()
    finally:
        lock.engine.dispose()


@dataclass
class _PostgresLock:
    """The scan lock of one PostgreSQL database, held by a connection of its own (`conn`)."""

    engine: object
    where: str
    """The database as it may be shown (`tagger.db.urls.shown_url`: the password masked)."""
    then: str
    """What a refusal tells the user to do once the holder is done."""
    conn: object = None

    def try_lock(self, failed: Callable[[str], str]):
        """A new connection and whether it took the lock; `DatabaseError` with ``failed(reason)``
        (the server's reason) when it cannot connect."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        from tagger.db.urls import DatabaseError

        try:
            conn = self.engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            if (conn.dialect.server_version_info or (0,)) >= (14,):
                # (idle between the scan's commits: a DBA's idle_session_timeout ended it, and the lock with it)
                conn.exec_driver_sql("SET idle_session_timeout = 0")
            return conn, conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": SCAN_LOCK_KEY})
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DatabaseError(failed(reason)) from None

    def take(self):
        """Take the lock on a new connection and return that connection; `DatabaseBusy` naming the
        session that holds it (server process and client) when another does."""
        conn, got = self.try_lock(lambda reason: f"cannot open the database {self.where}: {reason}")
        if not got:
            holder = _scan_lock_owner(conn)
            conn.close()
            raise _busy(_postgres_session(holder) if holder else "another client", self.where, self.then)
        self.conn = conn
        return conn

    def check(self, _conn) -> None:
        """Before a commit of the guarded engine: whether the lock's connection is still there;
        when it ended (and the lock with it), take the lock again on a new one, or refuse the commit
        (`DatabaseBusy` when another scan took it meanwhile, `DatabaseError` when the server cannot
        be reached)."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.conn.exec_driver_sql("SELECT 1")
            return
        except SQLAlchemyError:
            pass  # the lock's connection is gone, and the lock with it
        try:
            self.conn.close()
        except SQLAlchemyError:
            pass
        where, then = self.where, self.then
        again, got = self.try_lock(lambda reason: f"lost the scan lock of the database {where} (its connection ended) "
                                                  f"and cannot take it again: {reason}; what was stored before is kept, {then}")  # fmt: skip
        if not got:
            again.close()
            raise DatabaseBusy(f"lost the scan lock of the database {where} (its connection ended) and another "
                               f"tagger scan or prune holds it now: stopped; what was stored before is kept, "
                               f"wait for it to finish, then {then}")  # fmt: skip
        self.conn = again
        log.warning("the scan lock's connection to %s ended; the lock was taken again", where)

    def release(self) -> None:
        """Give the lock back and close its connection (a connection already gone took the lock with it)."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": SCAN_LOCK_KEY})
        except SQLAlchemyError:
            pass  # the connection is gone: so is the lock
        self.conn.close()

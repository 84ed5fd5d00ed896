"""The database engine: SQLite in WAL mode where its folder allows (a rollback journal elsewhere, a
read-only file opened read-only), PostgreSQL over UTF-8 with timeouts and keepalives (`make_engine`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from tagger.db.sqlite_files import (
    read_only_sqlite_file,
    refuse_losing_file_system,
    refuse_other_files,
    refuse_second_names,
    shared_memory_works,
)
from tagger.db.urls import DatabaseError, shown_url, sqlite_file
from tagger.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy import Engine

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite command waits for a lock another process holds before it says so."""


def _sqlite_pragmas(dbapi_conn, _record, *, wal: bool = True) -> None:
    """WAL journaling where the database's folder can hold SQLite's shared-memory index
    (`shared_memory_works`); elsewhere a rollback journal, with a full sync at each commit, and a
    database an earlier run left in WAL mode there is taken out of it (possible only while holding
    it exclusively)."""
    cur = dbapi_conn.cursor()
    try:
        if wal:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        else:
            cur.execute("PRAGMA locking_mode=EXCLUSIVE")
            cur.execute("PRAGMA journal_mode=DELETE")
            cur.execute("PRAGMA locking_mode=NORMAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    finally:
        cur.close()


def _sqlite_read_only_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    finally:
        cur.close()


def _sqlite_connect_args() -> dict:
    """``sqlite3.connect``'s arguments for a library file: the busy timeout, and connections whose
    calls in the main thread are known (`tagger.db.sqlite_calls`), so that a second stop signal
    stops a command waiting there for a lock (`tagger.signals.watch_stop_signals`)."""
    from tagger.db.sqlite_calls import Connection

    return {"timeout": BUSY_TIMEOUT_S, "factory": Connection}


def check_folder_can_be_made(folder: Path) -> None:
    """Raise the `DatabaseError` that `make_engine` would raise creating the missing `folder` of a
    SQLite file, without creating anything: its nearest existing parent is a file (``XDG_DATA_HOME``
    naming one), on a read-only file system (a read-only home) or not writable. `tagger scan` asks
    before its models load (seconds, an ONNX export each run where the cache cannot be written)."""
    import errno

    above = folder
    while not above.exists() and above != above.parent:
        above = above.parent
    if above == folder:
        return
    if not above.is_dir():
        code = errno.ENOTDIR
    elif not os.access(above, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(above).f_flag & os.ST_RDONLY else errno.EACCES
    else:
        return
    raise DatabaseError(f"cannot create the database folder {folder}: {os.strerror(code)}")


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL journaling, foreign keys and a busy timeout.

    The parent folder of a SQLite file is created when missing.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"invalid database URL {shown_url(url)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        refuse_other_files(path)
        read_only = read_only_sqlite_file(parsed.database)
        if read_only is not None:
            # A database in a folder (or on a file system) this process cannot write: SQLite could
            # neither set WAL mode nor create its -wal/-shm files, so open it read-only and immutable
            # (nobody can be writing it: a writer would need those files too). Reads work; writes
            # fail with "read-only" and migrations are refused (`ReadOnlyDatabase`).
            wal = Path(f"{read_only}-wal")
            # with a write-ahead log left beside it, the log holds committed data: read it (read-only)
            immutable = {} if wal.is_file() and wal.stat().st_size else {"immutable": "1"}
            # (a URL object, its name not parsed again: the path quoted as SQLite's URI names are, so
            # that a ``?``, ``#`` or ``%`` in it opens this very file)
            query = {"mode": "ro", **immutable, "uri": "true"}
            engine = create_engine(URL.create("sqlite", database=f"file:{quote(os.fspath(read_only))}", query=query),
                                   connect_args=_sqlite_connect_args())  # fmt: skip
            event.listen(engine, "connect", _sqlite_read_only_pragmas)
            return engine
        refuse_second_names(path)
        if path is not None:
            folder = path.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the database folder {folder}: {exc.strerror or exc}") from None
        refuse_losing_file_system(path)
        engine = create_engine(url, connect_args=_sqlite_connect_args())
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, wal=_wal_works(path)))
        return engine
    if parsed.drivername == "postgresql" and _installed("psycopg") and not _installed("psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # plain postgresql:// with psycopg 3 (tagger[postgres])
    postgres = parsed.get_backend_name() == "postgresql"
    try:
        engine = create_engine(parsed, pool_pre_ping=True, **({"connect_args": libpq_defaults(parsed)} if postgres else {}))
    except (ArgumentError, ModuleNotFoundError) as exc:
        hint = " (pip install 'tagger[postgres]')" if postgres else ""
        raise UserError(f"cannot use database URL {shown_url(parsed)}: {exc}{hint}") from None
    if postgres:
        event.listen(engine, "connect", functools.partial(_refuse_narrow_encoding, shown=shown_url(parsed)))
        event.listen(engine, "connect", _postgres_lock_timeout)
    return engine


def _wal_works(path: Path | None) -> bool:
    """Whether the SQLite database ``path`` (None: not a file) is to use a write-ahead log:
    where its folder can hold SQLite's shared-memory index (`shared_memory_works`)."""
    return path is None or shared_memory_works(path.expanduser().absolute().parent)


def connect_sqlite(path: Path):
    """A ``sqlite3`` connection to the SQLite library file ``path`` (absolute, writable: not one
    `read_only_sqlite_file` names), set up as each connection of `make_engine`'s engine for it is
    (the busy timeout, `_sqlite_pragmas`): what ``tagger query`` reads through without SQLAlchemy
    (`tagger.db.session.open_for_reading`). Raises ``sqlite3.Error``."""
    import sqlite3

    connection = sqlite3.connect(os.fspath(path), **_sqlite_connect_args())
    try:
        _sqlite_pragmas(connection, None, wal=_wal_works(path))
    except BaseException:
        connection.close()
        raise
    return connection


def _postgres_lock_timeout(dbapi_conn, _record) -> None:
    """Wait at most `BUSY_TIMEOUT_S` for a lock another session holds, as SQLite does, unless the
    server, database, role or ``PGOPTIONS`` sets a ``lock_timeout`` of its own: PostgreSQL waits for
    ever by default, and a scan suspended with its batch open (Ctrl-Z) or stuck on a lost client
    left `tagger tag` beside it waiting on that track's row lock for as long, holding its file's
    writer lock and temporary copy meanwhile."""
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True  # (a SET outside the connection's first transaction, kept for the session)
    try:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"SELECT set_config('lock_timeout', '{int(BUSY_TIMEOUT_S * 1000)}ms', false) "
                        "WHERE current_setting('lock_timeout') IN ('0', '0ms')")  # fmt: skip
        finally:
            cur.close()
    finally:
        dbapi_conn.autocommit = autocommit


PG_CONNECT_TIMEOUT_S = 30
"""libpq's ``connect_timeout`` unless the URL or ``PGCONNECT_TIMEOUT`` gives one: libpq's own default
is to wait for ever, and a server that takes the connection and never answers hung every command."""

PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 10, "keepalives_count": 6,
                 "tcp_user_timeout": 120_000}  # fmt: skip
"""TCP keepalives (and a limit on unacknowledged data, in ms) for connections to PostgreSQL, unless the
URL sets them: a network cut silently (a laptop's Wi-Fi gone, a NAT entry expired) otherwise stalled
a scan for the system's TCP retransmission time (about 15 minutes) before anything failed; now the
connection fails after about two minutes, and the scan stops with its stored tracks kept (or, for
the scan lock's connection, takes the lock again)."""


def libpq_defaults(parsed) -> dict:
    """The connection arguments tagger gives a PostgreSQL driver (`make_engine`): UTF-8, and, for the
    libpq drivers (psycopg 3, psycopg2), `PG_CONNECT_TIMEOUT_S` and `PG_KEEPALIVES` where neither the
    URL's parameters nor libpq's environment (``PGCONNECT_TIMEOUT``) say otherwise."""
    # (file names are Unicode: a connection in the database's own encoding handed out bytes on
    # SQL_ASCII, and could not send a name outside LATIN1 to a LATIN1 database)
    args: dict = {"client_encoding": "UTF8"}
    if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
        return args
    given = set(parsed.query)
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    args.update({k: v for k, v in PG_KEEPALIVES.items() if k not in given})
    return args


def _refuse_narrow_encoding(dbapi_conn, _record, *, shown: str) -> None:
    """Refuse a PostgreSQL database whose encoding cannot hold every file name (LATIN1, WIN1252,
    ...): a name outside it would fail its track's write and stop the scan. UTF8 holds any name;
    SQL_ASCII stores the bytes as the client (UTF-8 here) sends them."""
    info = getattr(dbapi_conn, "info", None)
    status = getattr(info, "parameter_status", None)
    encoding = status("server_encoding") if status is not None else None
    if isinstance(encoding, bytes):
        encoding = encoding.decode("ascii", "replace")
    if encoding and encoding.upper() not in ("UTF8", "SQL_ASCII"):
        dbapi_conn.close()
        raise DatabaseError(f"the database {shown} has encoding {encoding}, which cannot hold every file name; tagger "
                            "needs UTF8: create the database with ENCODING 'UTF8' (createdb -E UTF8 -T template0), "
                            "then scan into it (a library stored here moves over with pg_dump and pg_restore); "
                            "nothing was written")  # fmt: skip


def read_only_path(engine: Engine) -> str | None:
    """The file of a SQLite database opened read-only by `make_engine`, else None."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.query.get("mode") == "ro" and (url.database or "").startswith("file:"):
        return unquote(url.database[len("file:") :])
    return None


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None

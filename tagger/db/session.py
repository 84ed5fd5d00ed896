"""Opening the library database: URL resolution, engine (SQLite in WAL mode), automatic migrations.

The database is SQLite by default, in the user's data directory (``platformdirs.user_data_dir``,
e.g. ``~/.local/share/tagger/library.db``); ``TAGGER_DB`` or an explicit URL selects any
SQLAlchemy database. The schema is created and upgraded only by the Alembic migrations shipped in
``tagger.migrations`` (the repository's ``migrations/``), applied automatically on first use.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tagger.errors import TaggerError, UserError

DB_ENV = "TAGGER_DB"
DB_FILENAME = "library.db"
BUSY_TIMEOUT_S = 30.0
"""How long a SQLite command waits for a lock another process holds before it says so."""


class DatabaseError(TaggerError):
    """The library database cannot be opened, migrated or written."""


def database_error(url, exc: SQLAlchemyError, *, doing: str, then: str = "") -> DatabaseError:
    """Our error for SQLAlchemy's ``exc``, raised while ``doing`` ("read", "write") the database
    at ``url``: one line naming the database (password hidden) and the driver's reason."""
    return DatabaseError(f"cannot {doing} the database {shown_url(url)}: {driver_reason(exc)}{'; ' + then if then else ''}")


_SECRET_PARAMETER = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")
"""A connection parameter in a URL's query string that holds a secret (libpq's ``password`` and
``sslpassword``)."""


def shown_url(url) -> str:
    """The database URL `url` (a string or SQLAlchemy URL) as it may be printed: the password, in
    its place (``user:***@``) or as a query parameter (``?password=***``, ``sslpassword``), masked;
    a URL SQLAlchemy cannot parse has its ``user:password@`` part masked the same way."""
    try:
        text = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        text = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", str(url))
    return _SECRET_PARAMETER.sub(r"\1***", text)


def driver_reason(exc: Exception) -> str:
    """The first line of the database driver's own message in SQLAlchemy's error ``exc``; SQLite's
    write errors (``disk I/O error``, ``database or disk is full``) name the process's file size
    limit when it has one (``ulimit -f``: a write past it fails with EFBIG, which SQLite reports as
    an I/O error, sending the user to check a disk that is fine)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    if reason in ("disk I/O error", "database or disk is full"):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            reason += f" (this process may write files of at most {limit} bytes: ulimit -f)"
    return reason


def default_db_url() -> str:
    """``$TAGGER_DB``, else SQLite at ``<user data dir>/tagger/library.db``."""
    env = os.environ.get(DB_ENV)
    if env:
        return as_url(env)  # a URL or a plain file path, as with --db
    import platformdirs

    return f"sqlite:///{Path(platformdirs.user_data_dir('tagger', appauthor=False)) / DB_FILENAME}"


def as_url(db: str | os.PathLike | None) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite); None -> `default_db_url`."""
    if db is None:
        return default_db_url()
    text = os.fspath(db)
    if not text.strip():  # (a file named '' is the current folder: SQLite's 'unable to open' named it)
        raise UserError(f"the database name {text!r} is empty: give a SQLite file or a database URL "
                        f"(--db, ${DB_ENV})")  # fmt: skip
    if "://" in text:
        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError) as exc:  # (ValueError: a port that is not a number)
            reason = "its port is not a number" if isinstance(exc, ValueError) else "it is not HOST:PORT/NAME form"
            raise UserError(f"invalid database URL {shown_url(text)}: {reason} (expected e.g. "
                            "postgresql://user@host:5432/name, or a SQLite file path)") from None  # fmt: skip
        name = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and (name in ("", ":memory:") or "mode=memory" in name
                                                      or parsed.query.get("mode") == "memory"):  # fmt: skip
            # (``TAGGER_DB="sqlite:///$DBFILE"`` with $DBFILE unset: a scan analysed and tagged the
            # files, said "1 scanned", exit 0, and its results were gone with the process)
            raise UserError(f"the database URL {shown_url(text)} names no file: SQLite would hold the library in "
                            "memory, lost when tagger exits; give a file (sqlite:////path/library.db, or a plain path)")  # fmt: skip
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def migrations_dir() -> Path:
    """The Alembic scripts: the installed ``tagger/migrations``, else the repository's ``migrations/``."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return here.parent / "migrations"


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


_SHARED_MEMORY: dict[str, bool] = {}


def shared_memory_works(folder: Path) -> bool:
    """Whether a file in ``folder`` can be sized and mapped shared, as SQLite's write-ahead log needs
    for its ``-shm`` index (once per folder and process). FAT through FUSE (fusefat) refuses
    ``ftruncate``, and there SQLite set WAL mode, then failed every access with "disk I/O error",
    even another process's that would have changed the journal mode back. A folder that cannot be
    probed (not writable) counts as working: SQLite then says what fails."""
    import logging
    import mmap
    import tempfile

    key = os.fspath(folder)
    if key not in _SHARED_MEMORY:
        works = True
        try:
            fd, name = tempfile.mkstemp(prefix=".tagger-shm-probe-", dir=folder)
        except OSError:
            fd = None
        if fd is not None:
            try:
                os.write(fd, bytes(mmap.PAGESIZE))  # (written, not mapped, first: a full disk raises here)
            except OSError:
                fd_written = False  # a full disk: nothing learnt; SQLite says what fails
            else:
                fd_written = True
            try:
                if fd_written:
                    os.ftruncate(fd, mmap.PAGESIZE)  # (as SQLite sizes its index)
                    with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED) as mapped:
                        mapped[0] = 1
            except (OSError, ValueError):
                works = False
                logging.getLogger("tagger.db").warning(
                    "the file system of %s cannot map files shared, which SQLite's write-ahead log needs: "
                    "the database there uses a rollback journal", key)  # fmt: skip
            finally:
                os.close(fd)
                try:
                    os.unlink(name)
                except OSError:
                    pass
        _SHARED_MEMORY[key] = works
    return _SHARED_MEMORY[key]


def _sqlite_read_only_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    finally:
        cur.close()


def sqlite_file(url) -> Path | None:
    """The file of a SQLite URL (None for another database, an in-memory one or a URI)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # reported by `make_engine`
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


_SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_other_files(path: Path | None) -> None:
    """Refuse a SQLite path that holds a file of something else (``--db notes.txt``, a song): SQLite
    would refuse most, but turns a file of one byte into a database; a folder; a path that is not
    UTF-8 (a SQLAlchemy URL cannot hold it); and the database of another application
    (`not_a_library`), before anything (WAL mode, a migration) changes it. An empty file is what
    SQLite makes of a new database, and is used."""
    if path is None:
        return  # another database
    _refuse_undecodable(path)
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder, not a database file: give --db a file in it (e.g. {path / DB_FILENAME})")
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


def _refuse_undecodable(path: Path) -> None:
    """Refuse a database path whose names are not UTF-8: a SQLAlchemy URL cannot hold it."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise DatabaseError(f"{shown}: the database path is not UTF-8, which a database URL must be; "
                            "give --db a path of UTF-8 names") from None  # fmt: skip


OUR_TABLE = "tracks"
"""A table every revision of tagger's schema has: a database with an ``alembic_version`` but no
such table is another program's (Alembic is common)."""


def not_a_library(tables: set[str], revisions: list[str]) -> str | None:
    """Why a database is not one tagger may use or migrate: tables but no schema revision of ours (a
    migration would add our tables among another program's), or another program's Alembic revision
    (a database without ``tracks``); None for a library database or an empty one."""
    tables = {t for t in tables if not t.startswith("sqlite_")}
    others = sorted(tables - {"alembic_version"})
    if not others or (revisions and OUR_TABLE in tables):
        return None
    if OUR_TABLE in tables:  # (a copy made without alembic_version: no migration knows where it stands)
        return "it holds tagger's tables but no schema revision (its alembic_version table is missing or empty)"
    shown = others[:5] + ([f"... ({len(others) - 5} more)"] if len(others) > 5 else [])
    return f"it holds the table(s) {', '.join(shown)} of another program"


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


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL journaling, foreign keys and a busy timeout.

    The parent folder of a SQLite file is created when missing.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"invalid database URL {shown_url(url)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        _refuse_other_files(path)
        read_only = _read_only_sqlite_file(parsed.database)
        if read_only is not None:
            # A database in a folder (or on a file system) this process cannot write: SQLite could
            # neither set WAL mode nor create its -wal/-shm files, so open it read-only and immutable
            # (nobody can be writing it: a writer would need those files too). Reads work; writes
            # fail with "read-only" and migrations are refused (`ReadOnlyDatabase`).
            wal = Path(f"{read_only}-wal")
            # with a write-ahead log left beside it, the log holds committed data: read it (read-only)
            immutable = "" if wal.is_file() and wal.stat().st_size else "&immutable=1"
            engine = create_engine(f"sqlite:///file:{read_only}?mode=ro{immutable}&uri=true",
                                   connect_args={"timeout": BUSY_TIMEOUT_S})  # fmt: skip
            event.listen(engine, "connect", _sqlite_read_only_pragmas)
            return engine
        if path is not None:
            folder = path.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the database folder {folder}: {exc.strerror or exc}") from None
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        wal = path is None or shared_memory_works(path.expanduser().absolute().parent)
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, wal=wal))
        return engine
    if parsed.drivername == "postgresql" and _installed("psycopg") and not _installed("psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # plain postgresql:// with psycopg 3 (tagger[postgres])
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        hint = " (pip install 'tagger[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise UserError(f"cannot use database URL {shown_url(parsed)}: {exc}{hint}") from None


def read_only_path(engine: Engine) -> str | None:
    """The file of a SQLite database opened read-only by `make_engine`, else None."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.query.get("mode") == "ro" and (url.database or "").startswith("file:"):
        return url.database[len("file:") :]
    return None


def _read_only_sqlite_file(database: str | None) -> Path | None:
    """The path of an existing SQLite database file that this process cannot write (its folder or
    the file itself not writable, e.g. a read-only mount), else None."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    if not path.is_file():
        return None
    if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
        return None
    return path.resolve()


def _not_writable(path: Path) -> str | None:
    """Why this process cannot write the SQLite database file `path` (None: it could)."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return f"it is on a read-only file system ({path.parent})"
    except OSError:
        pass
    if not os.access(path.parent, os.W_OK):
        return f"its folder {path.parent} is read-only for this user, and SQLite writes its -wal and -shm files there"
    if not os.access(path, os.W_OK):
        try:
            mode = f" (mode {stat.filemode(path.stat().st_mode)})"
        except OSError:
            mode = ""
        return f"the file is read-only for this user{mode}"
    return None


def read_only_reason(path: str | os.PathLike) -> str:
    """Why the SQLite database file `path`, opened read-only (`read_only_path`), cannot be written:
    its file system, its folder or the file itself (`_not_writable`)."""
    file = Path(path)
    return (_not_writable(file) if file.is_file() else None) or "it was opened read-only"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(create_engine("sqlite://"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _script_head() -> str | None:
    """The single head revision of the migration scripts, read from their ``revision`` and
    ``down_revision`` lines without importing Alembic; None when that is not clear-cut (then Alembic
    decides)."""
    import ast
    import re

    revs, downs = set(), set()
    try:
        for path in (migrations_dir() / "versions").glob("*.py"):
            text = path.read_text(encoding="utf-8")
            rev = re.search(r"^revision\s*(?::[^=]+)?=\s*(.+)$", text, re.M)
            down = re.search(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", text, re.M)
            if rev is None:
                continue
            revs.add(ast.literal_eval(rev.group(1).strip()))
            value = ast.literal_eval(down.group(1).strip()) if down else None
            downs.update(value if isinstance(value, (tuple, list)) else [value])
    except (OSError, ValueError, SyntaxError, TypeError):
        return None
    heads = revs - downs
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """True when the database is certainly at the scripts' head (a cheap check that spares commands
    like ``tagger query`` the Alembic import); False means "ask Alembic". A database that cannot be
    read (locked past the busy timeout, damaged) raises SQLAlchemy's error at once (was: taken for
    "ask Alembic", which waited for the lock a second time)."""
    from sqlalchemy import inspect, text

    head = _script_head()
    if head is None:
        return False
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    return len(rows) == 1 and rows[0][0] == head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return current_revision_of(conn)


def _shown(engine: Engine) -> str:
    return shown_url(engine.url)


@contextmanager
def _one_transaction(conn):
    """Run the block in one database transaction, DDL included: committed at the end, rolled back
    whole on any error (a full disk half-way through a migration leaves the database as it was).

    pysqlite opens transactions only before INSERT/UPDATE/DELETE and commits before other
    statements, so DDL would autocommit one statement at a time: for SQLite the driver's own
    transaction handling is switched off (``isolation_level = None``) and ``BEGIN IMMEDIATE`` is
    issued here. PostgreSQL has transactional DDL as it is.

    SQLite's foreign keys are off during the block (SQLite's own procedure for schema changes): a
    migration that copies a table in batch mode drops the old one, and with foreign keys on that
    drop deletes its rows first, cascading to every row that references them (was: all detections,
    segments and window scores deleted by a copy of ``tracks``). The references are checked before
    the commit (`ForeignKeyViolation`: rolled back)."""
    if conn.dialect.name != "sqlite":
        with conn.begin():
            yield
        return
    dbapi = conn.connection.driver_connection
    saved = dbapi.isolation_level
    dbapi.isolation_level = None
    try:
        foreign_keys = dbapi.execute("PRAGMA foreign_keys").fetchone()[0]
        dbapi.execute("PRAGMA foreign_keys=OFF")  # (a no-op inside a transaction: before BEGIN)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield
                broken = dbapi.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    table, rowid, parent, _ = broken[0]
                    raise ForeignKeyViolation(
                        f"{len(broken)} row(s) would reference rows that do not exist (the first: row {rowid} "
                        f"of {table}, to {parent})"
                    )
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            dbapi.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    finally:
        dbapi.isolation_level = saved


class OwnObjectUnfit(Exception):
    """A view or trigger made by hand does not fit the migrated schema (rolled back)."""


def _set_aside_own_objects(conn) -> list[tuple[str, str, str]]:
    """SQLite: drop the views and triggers of the database (tagger makes none: the user's own) for
    the migration, and return ``(type, name, sql)`` of each for `_restore_own_objects`. A step that
    copies a table (batch mode) drops it: its triggers went with it, unsaid, and a view on it stopped
    the step on "error in view NAME: no such table: main.tracks". Elsewhere: nothing (PostgreSQL
    keeps them through a step, or refuses it naming them: `_dependents`)."""
    if conn.dialect.name != "sqlite":
        return []
    own = [tuple(row) for row in conn.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') AND sql IS NOT NULL "
        "ORDER BY type = 'trigger', rowid")]  # fmt: skip
    for kind, name, _ in reversed(own):
        conn.exec_driver_sql(f'DROP {kind.upper()} IF EXISTS "{name.replace(chr(34), chr(34) * 2)}"')
    return own


def _restore_own_objects(conn, own: list[tuple[str, str, str]]) -> None:
    """Create again, as they were written, the views and triggers `_set_aside_own_objects` dropped,
    and check them against the new schema (SQLite creates a view of a column that is gone without a
    word: the rename of a scratch table makes it check every view and trigger); `OwnObjectUnfit`
    naming the first that no longer fits (the migration is rolled back)."""
    if not own:
        return

    def unfit(kind: str, name: str, reason: str) -> OwnObjectUnfit:
        return OwnObjectUnfit(
            f"the {kind} {name}, made by hand, does not fit the new schema ({reason}): save its definition "
            f"(sqlite3 DATABASE '.schema {name}'), drop it (DROP {kind.upper()} {name}), run the command again, then "
            "create it again to fit the new schema"
        )

    for kind, name, sql in own:
        try:
            conn.exec_driver_sql(sql)
        except SQLAlchemyError as exc:
            raise unfit(kind, name, driver_reason(exc)) from None
    conn.exec_driver_sql('CREATE TABLE "_tagger_schema_check" (x)')
    try:
        conn.exec_driver_sql('ALTER TABLE "_tagger_schema_check" RENAME TO "_tagger_schema_checked"')
    except SQLAlchemyError as exc:
        found = re.match(r"error in (view|trigger) (.+?): (.*)", driver_reason(exc))
        if found is None:
            raise
        raise unfit(*found.groups()) from None
    conn.exec_driver_sql('DROP TABLE "_tagger_schema_checked"')


def _dependents(exc) -> str:
    """The objects the database server names as depending on what a migration step changes
    (PostgreSQL's DETAIL: "view my_ok depends on column format of table tracks"); empty if none."""
    detail = getattr(getattr(getattr(exc, "orig", None), "diag", None), "message_detail", None) or ""
    lines = [line.strip() for line in detail.splitlines() if "depends on" in line]
    return "; ".join(lines[:3]) + ("; ..." if len(lines) > 3 else "")


class ForeignKeyViolation(Exception):
    """A migration left rows referencing rows that do not exist (rolled back)."""


def _check_known_revision(conn, cfg) -> None:
    """Refuse, in one line, a database whose schema revision these scripts do not know (it was
    made or upgraded by a newer tagger), and another program's database (`not_a_library`)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from sqlalchemy import inspect

    from tagger import __version__

    script = ScriptDirectory.from_config(cfg)
    current = MigrationContext.configure(conn).get_current_heads()
    foreign = not_a_library(set(inspect(conn).get_table_names()), list(current))
    if foreign:
        raise DatabaseError(
            f"the database {_shown(conn.engine)} is not a tagger library database ({foreign}); left untouched: "
            "give --db a library database or an empty one"
        )
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise DatabaseError(
            f"the database {_shown(conn.engine)} has schema revision {', '.join(unknown)}, which tagger "
            f"{__version__} does not know (it knows up to {script.get_current_head()}): it was made by a newer "
            "tagger; use that version (or a later one) with this database"
        )


def upgrade(engine: Engine, *, revision: str = "head") -> str | None:
    """Apply the migrations up to `revision`, all in one transaction (`_one_transaction`: they
    apply whole or not at all); returns the revision the database is at.

    Raises `DatabaseError` when the database cannot be migrated or its revision is unknown."""
    from alembic import command
    from alembic.util import CommandError

    cfg = alembic_config(engine)
    start = None
    try:
        with engine.connect() as conn:
            _check_known_revision(conn, cfg)
            start = current_revision_of(conn)
            conn.rollback()  # end the check's read transaction: the migration opens its own
            with _one_transaction(conn):
                cfg.attributes["connection"] = conn
                cfg.attributes["applied"] = []  # filled by migrations/env.py, step by step
                own = _set_aside_own_objects(conn)
                command.upgrade(cfg, revision)
                _restore_own_objects(conn, own)
    except OwnObjectUnfit as exc:
        at = f", at revision {start}" if start else ""
        raise DatabaseError(f"cannot migrate the database {_shown(engine)} to revision {revision if revision != 'head' else head_revision()}: "
                            f"{exc}; it was left as it was{at}") from None  # fmt: skip
    except (SQLAlchemyError, CommandError, ForeignKeyViolation) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        detail = _dependents(exc)
        step = _failed_step(cfg, start, revision)
        at = f", at revision {start}" if start else ""
        hint = ""
        if step and detail:  # (PostgreSQL: a view, rule or trigger made by hand on what the step changes)
            reason = f"{reason} ({detail})"
            hint = ". That object was made by hand: save its definition, drop it, run the command again, then create it again"
        elif step and HAND_MADE.search(reason):
            hint = (f". Its schema is not the one revision {start or 'base'} made (a table, column, index, view "
                    "or trigger added or dropped by hand?): undo that change, or restore a backup, and run the command again")  # fmt: skip
        raise DatabaseError(
            f"cannot migrate the database {_shown(engine)}{step}: {reason}; it was left as it was{at}{hint}"
        ) from None
    return current_revision(engine)


HAND_MADE = re.compile(r"already exists|duplicate column|no such (table|column|index)|error in (view|trigger)|"
                       r"does not exist|depends on", re.I)  # fmt: skip
"""The errors of a migration step meeting a schema that is not the one of its revision (SQLite's and
PostgreSQL's words)."""


def current_revision_of(conn) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _failed_step(cfg, start: str | None, target: str) -> str:
    """`` (step 0002: its title)``, the migration step that failed: the one after those applied, of
    the steps from `start` to `target`; empty when not known."""
    from alembic.script import ScriptDirectory

    try:
        script = ScriptDirectory.from_config(cfg)
        steps = list(reversed(list(script.iterate_revisions(target, start or "base"))))
        done = len(cfg.attributes.get("applied") or [])
        if done >= len(steps):
            return ""
        failed = steps[done]
    except Exception:  # noqa: BLE001 - the message goes on without the step
        return ""
    title = (failed.doc or "").strip().splitlines()[0].rstrip(".") if failed.doc else ""
    return f" (step {failed.revision}" + (f": {title})" if title else ")")


@dataclass
class Database:
    """An open library database: its engine and a session factory."""

    url: str
    engine: Engine
    sessionmaker: sessionmaker

    @contextmanager
    def session(self):
        """A session committed on success, rolled back on error."""
        with self.sessionmaker() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()

    def require_writable(self, *, command: str) -> None:
        """Refuse `command` (one that writes the database) when the database was opened read-only
        (`make_engine`: a file or folder this user cannot write), before it locks or changes
        anything: one `DatabaseError` naming the file and why (was: the scan loaded its models,
        created its lock file beside the database, then failed at its first write)."""
        path = read_only_path(self.engine)
        if path is None:
            return
        raise DatabaseError(f"the database {path} cannot be written ({read_only_reason(path)}): `tagger {command}` writes "
                            "it and changed nothing; `query`, `show`, `stats` and `errors` read it as it is")  # fmt: skip


def _holds_no_tables(path: Path) -> bool:
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
    schema = _sqlite_schema(path) if head == _SQLITE_HEADER else None  # (another file: `_refuse_other_files`)
    return schema is not None and not {t for t in schema[0] if not t.startswith("sqlite_")}


def open_database(db: str | os.PathLike | None = None, *, migrate: bool = True, create: bool = True) -> Database:
    """Open (and by default create or upgrade to the latest schema) the library database.

    ``create=False`` (the commands that only use a library: query, show, stats, tag, ...): a SQLite
    file that does not exist, or holds no table (an empty file), is an error, not a new empty
    database (nor a new folder) made at a mistyped path."""
    url = as_url(db)
    if not create:
        path = sqlite_file(url)
        if path is not None:
            _refuse_undecodable(path)
        if path is not None and (not path.exists() or _holds_no_tables(path)):
            empty = "" if not path.exists() else " (an empty file)" if not path.stat().st_size else " (a database without tables)"
            raise DatabaseError(f"no library database at {path}{empty}: `tagger scan FOLDER` creates it (or give --db)")
    engine = make_engine(url)
    if migrate:
        try:
            needs = not _at_head(engine) and current_revision(engine) != head_revision()
        except SQLAlchemyError as exc:
            raise database_error(engine.url, exc, doing="open") from None
        if needs and read_only_path(engine) is not None:
            try:  # a newer tagger's database, or another program's, is that first: no writable place helps
                with engine.connect() as conn:
                    _check_known_revision(conn, alembic_config(engine))
            except SQLAlchemyError as exc:
                raise database_error(engine.url, exc, doing="open") from None
            raise DatabaseError(
                f"the database {read_only_path(engine)} cannot be written ({read_only_reason(read_only_path(engine))}) "
                f"and is at schema revision {current_revision(engine)}; this tagger needs {head_revision()}: open it "
                "once where this user can write it"
            )
        if needs:
            upgrade(engine)
    return Database(url=url, engine=engine, sessionmaker=sessionmaker(engine, class_=Session, expire_on_commit=False))

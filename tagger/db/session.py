"""Opening the library database: `open_database`, which checks the file, opens it with the engine
(`tagger.db.engine`) and migrates it when needed; `database_error`, the one-line error for a
driver's failure.

The database is SQLite by default, in the user's data directory (``platformdirs.user_data_dir``,
e.g. ``~/.local/share/tagger/library.db``); ``TAGGER_DB`` or an explicit URL selects any
SQLAlchemy database (`tagger.db.urls`). The schema is created and upgraded only by the Alembic
migrations shipped in ``tagger.migrations`` (the repository's ``migrations/``), applied
automatically on first use (`tagger.db.migrate`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.db import engine as db_engine
from tagger.db.engine import make_engine, read_only_path
from tagger.db.migrate import (alembic_config, at_head, check_known_revision, current_revision, head_revision,
                               sqlite_at_head, upgrade)  # fmt: skip
from tagger.db.sql import AlchemyReader, Reader, SqliteReader
from tagger.db.sqlite_files import (holds_no_tables, read_only_reason, read_only_sqlite_file, refuse_other_files,
                                    refuse_losing_file_system, refuse_second_names, refuse_undecodable)  # fmt: skip
from tagger.db.urls import DB_ENV, DatabaseError, as_url, driver_reason, plain_sqlite_file, shown_url, sqlite_file

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import Engine


def database_error(url, exc: Exception, *, doing: str, then: str = "") -> DatabaseError:
    """Our error for SQLAlchemy's ``exc`` (or ``sqlite3``'s), raised while ``doing`` ("read", "write") the database
    at ``url``: one line naming the database (password hidden) and the driver's reason. A lock
    waited for in vain (SQLite's "database is locked", PostgreSQL's lock timeout) names the tagger
    scan or prune holding the database, when one does (`tagger.db.lock.scan_lock_holder`)."""
    reason = driver_reason(exc)
    if reason.startswith(LOCK_WAITS):
        holder = _lock_holder(url) or f"another program or tagger command held it past the {db_engine.BUSY_TIMEOUT_S:g} s wait"
        reason += f" ({holder})"
    return DatabaseError(f"cannot {doing} the database {shown_url(url)}: {reason}{'; ' + then if then else ''}")


LOCK_WAITS = ("database is locked", "database table is locked", "canceling statement due to lock timeout")
"""The drivers' words for a lock another connection held past the wait (SQLite's busy timeout,
PostgreSQL's ``lock_timeout``)."""


def _lock_holder(url) -> str | None:
    from tagger.db.lock import scan_lock_holder

    try:
        return scan_lock_holder(url if isinstance(url, str) else url.render_as_string(hide_password=False))
    except Exception:  # noqa: BLE001 - only a detail of the message: the error itself goes on
        return None


@dataclass
class Database:
    """An open library database: its engine and a session factory (made when first asked for: the
    commands that only read use the engine, and never import SQLAlchemy's ORM)."""

    url: str
    engine: Engine

    @functools.cached_property
    def sessionmaker(self):
        from sqlalchemy.orm import Session, sessionmaker

        return sessionmaker(self.engine, class_=Session, expire_on_commit=False)

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

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A `tagger.db.sql.Reader` on a connection of the engine, released when the block ends."""
        with self.engine.connect() as conn:
            yield AlchemyReader(conn)

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


def open_database(db: str | os.PathLike | None = None, *, migrate: bool = True, create: bool = True) -> Database:
    """Open (and by default create or upgrade to the latest schema) the library database.

    ``create=False`` (the commands that only use a library: query, show, stats, tag, ...): a SQLite
    file that does not exist, or holds no table (an empty file), is an error, not a new empty
    database (nor a new folder) made at a mistyped path."""
    from sqlalchemy.exc import SQLAlchemyError

    url = as_url(db)
    if not create:
        _refuse_no_library(sqlite_file(url), given=db is not None)
    engine = make_engine(url)
    if migrate:
        try:
            current = at_head(engine)
            before = None if current else current_revision(engine)
            needs = not current and before != head_revision()
        except SQLAlchemyError as exc:
            raise database_error(engine.url, exc, doing="open") from None
        if needs and read_only_path(engine) is not None:
            try:  # a newer tagger's database, or another program's, is that first: no writable place helps
                with engine.connect() as conn:
                    check_known_revision(conn, alembic_config(engine))
            except SQLAlchemyError as exc:
                raise database_error(engine.url, exc, doing="open") from None
            raise DatabaseError(
                f"the database {read_only_path(engine)} cannot be written ({read_only_reason(read_only_path(engine))}) "
                f"and is at schema revision {current_revision(engine)}; this tagger needs {head_revision()}: open it "
                "once where this user can write it"
            )
        if needs:
            after = upgrade(engine)
            if before is not None:  # (a new database made is no upgrade)
                log.warning("upgraded the library database %s from schema revision %s to %s: %s", shown_url(url), before,
                            after, no_way_back(before))  # fmt: skip
    return Database(url=url, engine=engine)


def no_way_back(before: str) -> str:
    """What a command that upgraded a library database's schema from revision ``before`` says of it:
    a tagger of that revision refuses it from now on (a user going back to it learned so only then)."""
    return f"a tagger that knows only revision {before} can no longer open it"


def _refuse_no_library(path: Path | None, *, given: bool) -> None:
    """Refuse (`DatabaseError`) a SQLite file ``path`` that does not exist or holds no table (an
    empty file), or whose name is not UTF-8: a command that only uses a library would make one.
    ``given``: the database was named (``--db``), not ``$TAGGER_DB``'s or the default."""
    if path is None:
        return
    refuse_undecodable(path)
    if not path.exists() or holds_no_tables(path):
        empty = "" if not path.exists() else " (an empty file)" if not path.stat().st_size else " (a database without tables)"
        if given:  # (it said "or give --db" to one who had given it, found in this morning's walk-through)
            import shlex

            hint = f"is the name mistyped? `tagger scan FOLDER --db {shlex.quote(os.fspath(path))}` creates it"
        elif os.environ.get(DB_ENV):
            hint = f"${DB_ENV} names it; `tagger scan FOLDER` creates it (or give --db)"
        else:
            hint = "`tagger scan FOLDER` creates it (or give --db)"
        raise DatabaseError(f"no library database at {path}{empty}: {hint}")


@dataclass
class SqliteLibrary:
    """A SQLite library database open for reading through Python's ``sqlite3`` alone
    (`open_for_reading`): SQLAlchemy is not imported. One connection, set up as the engine's
    (`tagger.db.engine.connect_sqlite`), holding nothing between two `reader` blocks."""

    url: str
    connection: sqlite3.Connection

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A `tagger.db.sql.Reader` on the connection; any transaction ended when the block ends (as
        SQLAlchemy's pool does with a connection given back)."""
        try:
            yield SqliteReader(self.connection)
        finally:
            self.connection.rollback()

    def close(self) -> None:
        self.connection.close()


def open_for_reading(db: str | os.PathLike | None = None) -> Database | SqliteLibrary:
    """The library database for a command that only reads it (``tagger query``, ``show``, ``stats``,
    ``errors``): a SQLite file named
    by a path (or a plain ``sqlite:////path`` URL), writable and at the latest schema revision, is
    opened with ``sqlite3`` alone (`SqliteLibrary`), after the checks `open_database` makes before it
    opens one (no such file, no tables, another program's file: the same errors); a database that
    cannot be read is the same one line. Any other (PostgreSQL, a SQLite URI or URL with options, a
    read-only file, one to migrate or refuse) is `open_database(db, create=False)`'s."""
    import sqlite3

    url = as_url(db)
    path = plain_sqlite_file(url)
    if path is None or read_only_sqlite_file(os.fspath(path)) is not None:
        return open_database(db, create=False)
    _refuse_no_library(path, given=db is not None)
    refuse_other_files(path)
    refuse_second_names(path)
    refuse_losing_file_system(path)
    connection = None
    try:
        connection = db_engine.connect_sqlite(path)
        current = sqlite_at_head(connection)
    except sqlite3.Error as exc:
        if connection is not None:
            connection.close()
        raise database_error(url, exc, doing="open") from None
    if not current:
        connection.close()
        return open_database(db, create=False)
    return SqliteLibrary(url=url, connection=connection)

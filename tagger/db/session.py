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
import os
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from tagger.db import engine as db_engine
from tagger.db.engine import make_engine, read_only_path
from tagger.db.migrate import alembic_config, at_head, check_known_revision, current_revision, head_revision, upgrade
from tagger.db.sqlite_files import holds_no_tables, read_only_reason, refuse_undecodable
from tagger.db.urls import DatabaseError, as_url, driver_reason, shown_url, sqlite_file


def database_error(url, exc: SQLAlchemyError, *, doing: str, then: str = "") -> DatabaseError:
    """Our error for SQLAlchemy's ``exc``, raised while ``doing`` ("read", "write") the database
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
    url = as_url(db)
    if not create:
        path = sqlite_file(url)
        if path is not None:
            refuse_undecodable(path)
        if path is not None and (not path.exists() or holds_no_tables(path)):
            empty = "" if not path.exists() else " (an empty file)" if not path.stat().st_size else " (a database without tables)"
            raise DatabaseError(f"no library database at {path}{empty}: `tagger scan FOLDER` creates it (or give --db)")
    engine = make_engine(url)
    if migrate:
        try:
            needs = not at_head(engine) and current_revision(engine) != head_revision()
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
            upgrade(engine)
    return Database(url=url, engine=engine)

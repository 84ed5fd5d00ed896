"""The schema migrations: Alembic's scripts and revisions, the cheap "at the latest revision?" check,
and `upgrade` (all steps in one transaction; the user's own SQLite views and triggers set aside and
restored; a database that is another program's or a newer tagger's refused; a failed step named).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.db.urls import DatabaseError, driver_reason, shown_url

if TYPE_CHECKING:
    from sqlalchemy import Engine


def migrations_dir() -> Path:
    """The Alembic scripts: the installed ``tagger/migrations``, else the repository's ``migrations/``."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return here.parent / "migrations"


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


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

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


def at_head(engine: Engine) -> bool:
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
        return _is_head(conn.execute(text(_REVISIONS)).fetchall(), head)


def sqlite_at_head(connection) -> bool:
    """`at_head` on a ``sqlite3`` connection (``tagger query`` without SQLAlchemy); raises
    ``sqlite3.Error`` as that raises SQLAlchemy's."""
    head = _script_head()
    if head is None:
        return False
    if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone() is None:
        return False
    return _is_head(connection.execute(_REVISIONS).fetchall(), head)


_REVISIONS = "SELECT version_num FROM alembic_version"


def _is_head(rows: list, head: str) -> bool:
    """Whether the rows of ``alembic_version`` say the database is at ``head`` (one row, that one)."""
    return len(rows) == 1 and rows[0][0] == head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return current_revision_of(conn)


def _shown(engine: Engine) -> str:
    return shown_url(engine.url)


MIGRATION_LOCK_KEY = 0x7461676765720002
"""The advisory lock key a PostgreSQL migration holds for its transaction (`_one_transaction`;
the scan's is `tagger.db.lock.SCAN_LOCK_KEY`): two clients migrating one database take turns."""


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
    the commit (`ForeignKeyViolation`: rolled back).

    On PostgreSQL the transaction first takes `MIGRATION_LOCK_KEY`: a second client migrating the
    same database waits for the first's commit, then reads the revision it left (was: it waited
    for the first's tables, then failed on them as already there). SQLite's ``BEGIN IMMEDIATE``
    does the same."""
    if conn.dialect.name != "sqlite":
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # (the turn is waited for however long the other migration takes: the connection's
                # lock_timeout, for locks a paused scan may hold, is set back once it is taken)
                wait = conn.exec_driver_sql("SHOW lock_timeout").scalar()
                conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
                conn.exec_driver_sql("SELECT set_config('lock_timeout', %(wait)s, true)", {"wait": wait})
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
    from sqlalchemy.exc import SQLAlchemyError

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


def check_known_revision(conn, cfg) -> None:
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
    from sqlalchemy.exc import SQLAlchemyError

    cfg = alembic_config(engine)
    start = None
    try:
        with engine.connect() as conn:
            check_known_revision(conn, cfg)
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
        elif step and getattr(getattr(exc, "orig", None), "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            hint = (". The role this command connects as may not change the schema (a read-only role?): run `tagger "
                    "db upgrade` once as the database's owner, then this role can use it")  # fmt: skip
        elif step and HAND_MADE.search(reason):
            hint = (f". Its schema is not the one revision {start or 'base'} made (a table, column, index, view "
                    "or trigger added or dropped by hand?): undo that change, or restore a backup, and run the command again")  # fmt: skip
        raise DatabaseError(
            f"cannot migrate the database {_shown(engine)}{step}: {reason}; it was left as it was{at}{hint}"
        ) from None
    return current_revision(engine)


_INSUFFICIENT_PRIVILEGE = "42501"
"""PostgreSQL's SQLSTATE for ``permission denied`` and ``must be owner of table``: a role that may read
and write the library, not change its schema, meeting an older revision (was the server's words alone)."""

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
    title = _step_title(failed.doc or "", failed.path)
    return f" (step {failed.revision}" + (f": {title})" if title else ")")


_LONGEST_TITLE = 100
"""The most characters of a migration step's first sentence shown as its title in an error."""


def _step_title(doc: str, path: str | None) -> str:
    """A migration step's short title for an error message: the first sentence of its docstring
    (``Track when a file went missing; index fingerprints (moved-file lookup)``) where it is at most
    `_LONGEST_TITLE` characters, else the short name of its file (``rewrite hash`` for
    ``0006_rewrite_hash.py``); empty where it has neither. Was: the docstring's first line, which
    cut a long sentence mid-way (``step 0006: Store, ... the copy's content hash, so that``)."""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    sentence = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0].rstrip(".")
    if sentence and len(sentence) <= _LONGEST_TITLE:
        return sentence
    name = Path(path).stem if path else ""
    return re.sub(r"^\d+_", "", name).replace("_", " ").strip() or sentence

"""The library database as the commands open it (`tagger.cli.library`, `tagger.cli.scan`,
`tagger.cli.db`, `tagger.cli.tags`): the ``--db`` option's help (`DB_HELP`), a session or a reader
given and the database closed after (`_with_session`, `_reading`), a database that cannot be read
said in one line naming it (`_database`).
"""

from __future__ import annotations

import contextlib

DB_HELP = "Database: SQLAlchemy URL or SQLite file (default: $TAGGER_DB, else library.db in the user data folder)."


def _open(db: str | None, *, create: bool = False):
    """The library database; only `scan` creates one (``create``)."""
    from tagger.db.session import open_database

    return open_database(db, create=create)


def _with_session(db: str | None, read, *, locked: str | None = None, command: str = ""):
    """Open the library database, return `read(session)`, and close the database (`_session`)."""
    with _session(db, locked=locked, command=command) as s:
        return read(s)


def _reading(db: str | None, read):
    """Open the library database for reading (`_database`: a SQLite library through ``sqlite3``
    alone), return `read(reader)` (a `tagger.db.sql.Reader`), and close the database."""
    with _database(db, reading=True) as database, database.reader() as reader:
        return read(reader)


@contextlib.contextmanager
def _session(db: str | None, *, locked: str | None = None, command: str = ""):
    """Open the library database, give a session, and close the database when the block ends
    (`_database`). ``locked``: hold the scan lock meanwhile (a change no scan may run beside), the
    refusal telling the user to do that once the scan is done; a read-only database refuses
    ``command`` first."""
    from tagger.db.lock import scan_lock

    with _database(db) as database:
        if locked:  # (a change: refused on a read-only database before the lock file is made)
            database.require_writable(command=command)
        with scan_lock(database.url, then=locked, engine=database.engine) if locked else contextlib.nullcontext(), database.session() as s:
            yield s


@contextlib.contextmanager
def _database(db: str | None, *, reading: bool = False):
    """Open the library database, give it, and close it when the block ends (``reading``: for a
    command that only reads it, through ``sqlite3`` alone where it can be, `open_for_reading`). A
    database that cannot be read (damaged, locked, gone) is one line naming it, not the driver's
    traceback."""
    from tagger.db.session import database_error, open_for_reading
    from tagger.db.urls import is_driver_error

    database = open_for_reading(db) if reading else _open(db)
    try:
        yield database
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        raise database_error(database.url, exc, doing="read") from None
    finally:
        database.close()


def known_models(database, named=()) -> set[str]:
    """The model versions whose fields tagger takes for its own (`tagger.model.folders.known_model_versions`):
    ``untag`` removes, and a scan's and ``tag``'s writes overwrite, only fields whose INSTRUMENTS_MODEL is
    one of them: those ``named`` (untag's --model-version, the scan's own model) and every one the library
    database ``database`` records (None: no database at hand; one that cannot be read adds none, said in a line)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.cli.app import echo
    from tagger.db.listing import model_version_names
    from tagger.model.folders import known_model_versions

    recorded: set[str] = set()
    if database is not None:
        try:
            with database.reader() as reader:
                recorded = model_version_names(reader)
        except SQLAlchemyError as exc:
            echo(f"tagger: note: the library database's model versions cannot be read ({exc.__class__.__name__}): "
                 "only the models found here and --model-version count as tagger's", err=True)  # fmt: skip
    return known_model_versions(named=named, recorded=recorded)

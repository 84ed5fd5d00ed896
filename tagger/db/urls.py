"""Database URLs: the default library, a plain path or a SQLAlchemy URL taken as one, the file of a
SQLite URL, and how a URL and the driver's errors are shown (passwords masked; `DatabaseError`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tagger.errors import TaggerError, UserError

DB_ENV = "TAGGER_DB"
DB_FILENAME = "library.db"


class DatabaseError(TaggerError):
    """The library database cannot be opened, migrated or written."""


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

    return sqlite_url(Path(platformdirs.user_data_dir("tagger", appauthor=False)) / DB_FILENAME)


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
    return sqlite_url(Path(text).expanduser().resolve())


def sqlite_url(path: str | os.PathLike) -> str:
    """The SQLAlchemy URL of the SQLite file ``path``, its name escaped where a URL would read it
    otherwise: SQLAlchemy takes a ``?`` for the start of the URL's options and decodes ``%XX``, so
    ``--db 'my?lib.db'`` stored the library in a file named ``my``, and ``--db 50%41.db`` in
    ``50A.db``. Every other character is left as it is (the URL still reads as the path)."""
    return "sqlite:///" + os.fspath(path).replace("%", "%25").replace("?", "%3F")


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

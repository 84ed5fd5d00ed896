"""Database URLs: the default library, a plain path or a SQLAlchemy URL taken as one, the file of a
SQLite URL, and how a URL and the driver's errors are shown (passwords masked; `DatabaseError`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.errors import TaggerError, UserError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

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
    a URL SQLAlchemy cannot parse has its password masked the same way (`_masked_user_info`). A
    SQLite file is named as it is (SQLAlchemy percent-encodes it: ``Biblioth%C3%A8que%3A2`` for
    ``Bibliothèque:2``, a name no file has)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        text = parsed.render_as_string(hide_password=True)
        if _at_in_password(parsed):
            text = _masked_user_info(parsed.render_as_string(hide_password=False))
        elif parsed.get_backend_name() == "sqlite" and parsed.database:
            head, sep, query = parsed.set(database="").render_as_string(hide_password=True).partition("?")
            text = f"{head}{parsed.database}{sep}{query}"
    except (ArgumentError, ValueError, TypeError):
        text = _masked_user_info(str(url))
    return _SECRET_PARAMETER.sub(r"\1***", text)


def _masked_user_info(text: str) -> str:
    """``text`` with the password masked: everything between ``scheme://user:`` and the last ``@``
    of the authority, which ends at the first ``/`` after the password's first ``@`` (a password
    holding an ``@`` is masked whole, ``user:p@ss:word@host``). Host, port and path are shown:
    ``postgresql://u:p@host:abc/db@x`` was shown as ``postgresql://u:***@x``, the host and the port
    the message complained of masked with the password (the ``@`` of the path taken for its end)."""
    return re.sub(r"(://[^:/@?#]*:)[^@?#]*@(?:[^/@?#]*@)*", r"\1***@", text)


def _at_in_password(parsed: URL) -> bool:
    """Whether the URL's host holds an ``@``: a password with an ``@`` not written ``%40``, whose
    part after it SQLAlchemy (and libpq) read as the host (``user:p@ss@host`` is the host
    ``ss@host``): the driver's "failed to resolve host 'ss@host'" printed it."""
    return "@" in (parsed.host or "")


def _at_before_port(text: str) -> bool:
    """Whether a URL whose port is no number has an ``@`` in its password, a ``:`` after it:
    ``user:p@ss:word@host`` is read as the host ``ss`` and the port ``word@host`` (was refused as
    "its port is not a number", the password's ``@`` unnamed)."""
    match = re.search(r"://[^:/@?#]*:([^/?#]*)@", text)
    return match is not None and "@" in match.group(1)


_AT_IN_PASSWORD = ("its password holds an '@', which a URL writes as %40 (or keep the password out of the URL: "
                   "~/.pgpass or PGPASSWORD)")  # fmt: skip


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


def is_driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a database's error: SQLAlchemy's (looked for only where SQLAlchemy was
    imported: none can come from elsewhere) or Python's ``sqlite3``'s (`tagger.db.sql.SqliteReader`)."""
    import sqlite3
    import sys

    alchemy = sys.modules.get("sqlalchemy.exc")
    return isinstance(exc, sqlite3.Error) or (alchemy is not None and isinstance(exc, alchemy.SQLAlchemyError))


def default_db_url() -> str:
    """``$TAGGER_DB``, else SQLite at ``<user data dir>/tagger/library.db``."""
    env = os.environ.get(DB_ENV)
    if env:
        return as_url(env)  # a URL or a plain file path, as with --db
    import platformdirs

    try:
        folder = platformdirs.user_data_dir("tagger", appauthor=False)
    except RuntimeError:  # (platformdirs: no home folder to expand '~' to; was a traceback)
        raise UserError(f"no home folder to keep the library database in ($HOME is not set, and user {os.getuid()} has "
                        f"no entry in the user database): set HOME or XDG_DATA_HOME, or give --db or ${DB_ENV}") from None  # fmt: skip
    return sqlite_url(Path(folder) / DB_FILENAME)


def as_url(db: str | os.PathLike | None) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite); None -> `default_db_url`."""
    if db is None:
        return default_db_url()
    text = os.fspath(db)
    if not text.strip():  # (a file named '' is the current folder: SQLite's 'unable to open' named it)
        raise UserError(f"the database name {text!r} is empty: give a SQLite file or a database URL "
                        f"(--db, ${DB_ENV})")  # fmt: skip
    if "://" in text:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError) as exc:  # (ValueError: a port that is not a number)
            if isinstance(exc, ValueError) and _at_before_port(text):
                raise UserError(f"invalid database URL {shown_url(text)}: {_AT_IN_PASSWORD}") from None
            reason = "its port is not a number" if isinstance(exc, ValueError) else "it is not HOST:PORT/NAME form"
            raise UserError(f"invalid database URL {shown_url(text)}: {reason} (expected e.g. "
                            "postgresql://user@host:5432/name, or a SQLite file path)") from None  # fmt: skip
        if _at_in_password(parsed):
            raise UserError(f"invalid database URL {shown_url(text)}: {_AT_IN_PASSWORD}")
        name = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and (name in ("", ":memory:") or "mode=memory" in name
                                                      or parsed.query.get("mode") == "memory"):  # fmt: skip
            # (``TAGGER_DB="sqlite:///$DBFILE"`` with $DBFILE unset: a scan analysed and tagged the
            # files, said "1 scanned", exit 0, and its results were gone with the process)
            raise UserError(f"the database URL {shown_url(text)} names no file: SQLite would hold the library in "
                            "memory, lost when tagger exits; give a file (sqlite:////path/library.db, or a plain path)")  # fmt: skip
        if parsed.get_backend_name() == "sqlite" and name.startswith("~"):
            # (SQLite opens a URL's name as written: ``sqlite:///~/lib.db`` is ``./~/lib.db``, a folder
            # named ``~`` under the current one, while the checks before it read ``$HOME/lib.db``)
            raise UserError(f"the database URL {shown_url(text)} begins its file name with '~', which a URL does not "
                            f"expand (SQLite would open a folder named '~' under the current one): write the path in "
                            f"full, sqlite:///{Path(name).expanduser()}, or give the plain path, {name}")  # fmt: skip
        if parsed.get_backend_name() == "sqlite":
            _refuse_folder_name(name, shown=shown_url(text))
            _refuse_blank_end(name, shown=shown_url(text))
        return text
    _refuse_folder_name(text, shown=text)
    _refuse_blank_end(text, shown=text)
    return sqlite_url(Path(text).expanduser().resolve())


def _refuse_blank_end(name: str, *, shown: str) -> None:
    """A `UserError` for the name of a SQLite file not there yet that ends in a blank or a control
    character: ``TAGGER_DB`` read from an environment file written on Windows ends in a carriage
    return (one with a stray space or line break likewise), and a scan made a new, empty library
    database ``library.db\r`` beside the user's, analysing the whole library again into it."""
    full = os.path.expanduser(name)
    if name and (name[-1].isspace() or not name[-1].isprintable()) and not os.path.lexists(full):
        what = {"\r": "a carriage return (a file of settings written on Windows?)", "\n": "a line break",
                " ": "a space", "\t": "a tab"}.get(name[-1], f"the character {name[-1]!a}")  # fmt: skip
        raise UserError(f"the database name {shown} ends in {what}, and no such file exists: give the name without it "
                        f"({full.rstrip()})")  # fmt: skip


def _refuse_folder_name(name: str, *, shown: str) -> None:
    """A `UserError` for a SQLite file name written as a folder's (ending in ``/``, ``/.`` or ``/..``):
    ``--db ~/tagger/`` for a folder not there yet made a database file named ``tagger`` (the slash
    dropped as the path was resolved), and ``--db lib.db/`` opened ``lib.db``, where every program
    that opens the name refuses it (not a folder). A folder that exists is refused by its kind, as
    any name of one (`tagger.db.engine.make_engine`)."""
    full = os.path.expanduser(name)
    if name.endswith(("/", "/.", "/..")) and not os.path.isdir(full):
        file = full.rstrip("/")
        example = file if name.endswith("/") and os.path.isfile(file) else os.path.join(full, DB_FILENAME)
        raise UserError(f"the database name {shown} ends in '{name[name.rindex('/'):]}', naming a folder, where "
                        f"tagger keeps its library in a file: give a file name (e.g. {example})")  # fmt: skip


def sqlite_url(path: str | os.PathLike) -> str:
    """The SQLAlchemy URL of the SQLite file ``path``, its name escaped where a URL would read it
    otherwise: SQLAlchemy takes a ``?`` for the start of the URL's options and decodes ``%XX``, so
    ``--db 'my?lib.db'`` stored the library in a file named ``my``, and ``--db 50%41.db`` in
    ``50A.db``. Every other character is left as it is (the URL still reads as the path)."""
    return "sqlite:///" + os.fspath(path).replace("%", "%25").replace("?", "%3F")


def sqlite_file(url) -> Path | None:
    """The file SQLite opens for the URL ``url`` (a string or SQLAlchemy URL), as it is written (a
    leading ``~`` expanded, not resolved); None for another database, an in-memory or temporary one,
    or a URL SQLAlchemy cannot parse (reported by `tagger.db.engine.make_engine`).

    With ``uri=true`` SQLAlchemy hands the name to SQLite as a URI: ``file:lib.db?mode=ro&uri=true``
    names ``lib.db``, as SQLite reads it (an empty or ``localhost`` authority, ``%XX`` decoded; no
    file for ``mode=memory``, ``:memory:`` or an empty path). Without it the name is the file's,
    ``file:`` and all. The one reading of a URL's file: the checks before SQLite opens it
    (`tagger.db.sqlite_files`), the scan lock beside it and the files a scan leaves out (`tagger.db.lock`)
    all see the file SQLite opens (was: a URI skipped every check, so ``--db
    'sqlite:///file:/dev/null?uri=true'`` made ``/dev/null-journal``)."""
    plain = plain_sqlite_file(url) if isinstance(url, str) else None
    if plain is not None:
        return plain
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if not (_uri_flag(parsed) and database.startswith("file:")):
        return Path(database).expanduser()
    from urllib.parse import unquote

    name = database[len("file:") :].split("#", 1)[0]
    if name.startswith("//"):  # (``file://localhost/path`` or ``file:///path``)
        authority, _slash, rest = name[2:].partition("/")
        if authority not in ("", "localhost"):
            return None  # (SQLite refuses it: "invalid uri authority")
        name = "/" + rest
    name = unquote(name)
    modes = parsed.query.get("mode", ())
    if not name or name == ":memory:" or "memory" in ((modes,) if isinstance(modes, str) else modes):
        return None
    return Path(name)


def plain_sqlite_file(url: str) -> Path | None:
    """The file of ``url`` when it is a SQLite URL of an absolute path with no options
    (``sqlite:////music/library.db``: what `sqlite_url` makes of a path), read as SQLAlchemy reads
    it (its ``%XX`` decoded) without importing SQLAlchemy; else None (another URL: `sqlite_file`
    asks SQLAlchemy)."""
    from urllib.parse import unquote

    if not url.startswith("sqlite:///") or "?" in url:
        return None
    name = unquote(url[len("sqlite:///") :])
    return Path(name) if name.startswith("/") else None


def _uri_flag(parsed: URL) -> bool:
    """Whether SQLAlchemy's SQLite driver opens the URL's name as a SQLite URI (``uri=true``)."""
    from sqlalchemy.util import asbool

    flag = parsed.query.get("uri")
    try:
        return flag is not None and asbool(flag)  # (a repeated ``uri``, a tuple, is true to it, as to SQLAlchemy)
    except ValueError:
        return False  # (SQLAlchemy refuses the URL: nothing is opened)

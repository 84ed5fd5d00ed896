"""SQL text with named parameters, written once and run on either connection a command holds.

The filter's conditions (`tagger.db.filter`) and the reads of ``tagger query`` (`tagger.db.queries`)
are `Sql` values: text with ``:name`` parameters, which Python's ``sqlite3`` takes as it is and
SQLAlchemy's ``text()`` takes on every database. A `Reader` runs them: `SqliteReader` on a
``sqlite3`` connection (``query`` on a SQLite library: SQLAlchemy is not imported, about half of
the whole process's instructions), `AlchemyReader` on a SQLAlchemy Session or Connection
(PostgreSQL, and wherever a session is open already: ``tag``, ``untag``, ``scan``). `as_clause`
gives the same text to a SQLAlchemy statement.
"""

from __future__ import annotations

import functools
import itertools
from collections import namedtuple
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_MISSING = "missing"
STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_MISSING)
"""The values of ``tracks.status`` (`tagger.db.tables`)."""

_names = itertools.count()


@dataclass(frozen=True)
class Sql:
    """A piece of SQL: ``text`` with ``:name`` parameters, and their values (``params``)."""

    text: str
    params: Mapping[str, Any] = field(default_factory=dict)


def sql(template: str, *args) -> Sql:
    """`Sql` from ``template``, each ``{}`` in it filled in turn by an argument: an `Sql` goes in as
    it is (its parameters with it), any other value as a parameter of a name of its own (unique in
    the process: pieces made apart can be put together)."""
    pieces = template.split("{}")
    if len(pieces) != len(args) + 1:
        raise ValueError(f"{len(pieces) - 1} places for {len(args)} values in {template!r}")
    text = [pieces[0]]
    params: dict[str, Any] = {}
    for arg, after in zip(args, pieces[1:]):
        if isinstance(arg, Sql):
            text.append(arg.text)
            params.update(arg.params)
        else:
            name = f"p{next(_names)}"
            text.append(f":{name}")
            params[name] = arg
        text.append(after)
    return Sql("".join(text), params)


def joined(separator: str, pieces: Iterable[Sql]) -> Sql:
    """The pieces joined by ``separator`` (``" AND "``), each in parentheses."""
    pieces = list(pieces)
    return sql(separator.join("({})" for _ in pieces), *pieces)


PER_STATEMENT = 200
"""How many items (paths, ids) one statement asks for at most (`chunks`): a condition or value per
item of a long list in one statement is refused, SQLite's expression deeper than 1,000 levels ("Expression
tree is too large (maximum depth 1000)": 1,000 paths OR'd) or more than 999 values before 3.32,
PostgreSQL's more than 65,535 values; a file or folder of a filter is three values and an OR."""


IN_LIST = 500
"""How many values one ``IN (...)`` list of a statement holds at most (`chunks`): one bound value
each, within SQLite's 999 before 3.32."""


def chunks(items: Sequence, size: int = PER_STATEMENT) -> list[Sequence]:
    """``items`` in consecutive pieces of at most ``size`` (none for no items): a long list (a
    shell's ``*.flac`` of 12,000 files) asked for in several statements (`PER_STATEMENT`)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def as_clause(piece: Sql):
    """The SQLAlchemy ``text()`` clause of ``piece``, in parentheses (SQLAlchemy puts none around a
    text it combines), its values bound: a condition of a statement built with SQLAlchemy (the
    scan's `tagger.db.filter.under_clause`)."""
    from sqlalchemy import text

    return text(f"({piece.text})").bindparams(**piece.params)


class Reader:
    """Runs `Sql` on one connection: ``dialect`` (``"sqlite"``, ``"postgresql"``), `rows` (every
    row, each with its columns as attributes) and `partitions` (the rows `batch` at a time, from one
    statement: how a query reads a database other than SQLite, `tagger.db.listing._pages`)."""

    dialect: str

    def rows(self, statement: Sql) -> list:
        raise NotImplementedError

    def tuples(self, statement: Sql) -> list:
        """`rows`, each row a plain tuple where that is cheaper (``sqlite3``)."""
        return self.rows(statement)

    def partitions(self, statement: Sql, batch: int) -> Iterator[list]:
        raise NotImplementedError


class SqliteReader(Reader):
    """A `Reader` on a ``sqlite3`` connection: each row a named tuple of its columns (their names
    as the statement's ``AS`` gives them)."""

    dialect = "sqlite"

    def __init__(self, connection) -> None:
        self.connection = connection

    def rows(self, statement: Sql) -> list:
        cursor = self.connection.execute(statement.text, statement.params)
        try:
            row = _row_type(tuple(d[0] for d in cursor.description))
            return [row._make(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def tuples(self, statement: Sql) -> list:
        cursor = self.connection.execute(statement.text, statement.params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]):
    """The named tuple of a statement's columns (one unnamed, ``count(*)``, or named twice: ``_2``)."""
    return namedtuple("Row", names, rename=True)


class AlchemyReader(Reader):
    """A `Reader` on a SQLAlchemy Session or Connection: the statement as ``text()``, its rows
    SQLAlchemy's (the driver's values, as ``sqlite3`` gives them: no type of a column applied)."""

    def __init__(self, connection) -> None:
        self.connection = connection
        dialect = getattr(connection, "dialect", None)
        self.dialect = (dialect or connection.get_bind().dialect).name

    def rows(self, statement: Sql) -> list:
        from sqlalchemy import text

        return self.connection.execute(text(statement.text), statement.params).all()

    def partitions(self, statement: Sql, batch: int) -> Iterator[list]:
        from sqlalchemy import text

        result = self.connection.execute(text(statement.text).execution_options(yield_per=batch), statement.params)
        yield from result.partitions()


def reader_of(connection) -> Reader:
    """``connection`` as a `Reader`: itself when it is one, else a SQLAlchemy Session or Connection
    wrapped (`AlchemyReader`)."""
    return connection if isinstance(connection, Reader) else AlchemyReader(connection)

"""SQLite connections whose calls in the main thread are known (`Connection`, the ``factory`` of every
connection tagger opens to a library file): while SQLite waits in its busy handler for a lock another
process holds (up to `tagger.db.engine.BUSY_TIMEOUT_S`), the main thread is inside SQLite's C code,
where no Python signal handler runs and ``Connection.interrupt()`` does not end the wait (SQLite
3.40: the busy handler does not look at it). `tagger.signals.watch_stop_signals` reads `main_call`
to stop the command at once on a second signal there."""

from __future__ import annotations

import sqlite3
import threading

_calls = [0, 0]
"""[the number of calls into SQLite the main thread is in (0 or 1; more while one calls another),
the count of its outermost calls so far]: written by the main thread only."""


def main_call() -> int | None:
    """Which outermost call into SQLite the main thread is in (a number that changes with each such
    call), or None where it is in none."""
    depth, count = _calls
    return count if depth else None


def _call(method, *args):
    if threading.current_thread() is not threading.main_thread():
        return method(*args)
    if not _calls[0]:
        _calls[1] += 1
    _calls[0] += 1
    try:
        return method(*args)
    finally:
        _calls[0] -= 1


class Cursor(sqlite3.Cursor):
    """A cursor whose statements count as calls into SQLite (`main_call`)."""

    def execute(self, *args):
        return _call(super().execute, *args)

    def executemany(self, *args):
        return _call(super().executemany, *args)

    def executescript(self, *args):
        return _call(super().executescript, *args)


class Connection(sqlite3.Connection):
    """A connection whose statements, commits and rollbacks count as calls into SQLite (`main_call`);
    its cursors are `Cursor`s."""

    def cursor(self, factory=Cursor):
        return super().cursor(factory)

    def execute(self, *args):
        return _call(super().execute, *args)

    def executemany(self, *args):
        return _call(super().executemany, *args)

    def executescript(self, *args):
        return _call(super().executescript, *args)

    def commit(self):
        return _call(super().commit)

    def rollback(self):
        return _call(super().rollback)

"""One scan at a time per PostgreSQL database: a session-level advisory lock.

SQLite databases are locked with a file next to them (`tagger.library.lock`); a PostgreSQL
database is shared by several machines, so the lock lives in the server: a scan holds
``pg_try_advisory_lock(SCAN_LOCK_KEY)`` on a connection of its own for as long as it runs. The
server releases it when that connection ends, however the scan ends (``kill -9`` and a lost
machine included, once the server notices the connection is gone).
"""

from __future__ import annotations

from contextlib import contextmanager

SCAN_LOCK_KEY = 0x7461676765720001
"""The advisory lock key of `tagger scan` (``b"tagger"`` + 1, a signed 64-bit integer)."""


@contextmanager
def postgres_scan_lock(url: str):
    """Hold the scan lock of the PostgreSQL database `url` for the duration of the block.

    Raises `tagger.library.lock.DatabaseBusy` naming the holder (client address and server PID)
    when another scan holds it. Other databases: does nothing.
    """
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield None
        return
    from tagger.db.session import DatabaseError, make_engine
    from tagger.library.lock import DatabaseBusy

    where = parsed.render_as_string(hide_password=True)
    engine = make_engine(url)
    try:
        try:
            conn = engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": SCAN_LOCK_KEY})
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DatabaseError(f"cannot open the database {where}: {reason}") from None
        if not got:
            holder = conn.execute(
                text("SELECT a.pid, host(a.client_addr), a.application_name FROM pg_locks l "
                     "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                     "AND (l.classid::bigint << 32 | l.objid::bigint) = :k LIMIT 1"),
                {"k": SCAN_LOCK_KEY},
            ).first()  # fmt: skip
            conn.close()
            who = f"server process {holder[0]}, client {holder[1] or 'local socket'}" if holder else "another client"
            raise DatabaseBusy(
                f"another tagger scan ({who}) is using the database {where}; "
                "wait for it to finish (or stop it), then scan again"
            )
        try:
            yield conn
        finally:
            try:
                conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": SCAN_LOCK_KEY})
            except SQLAlchemyError:
                pass  # the connection is gone: so is the lock
            conn.close()
    finally:
        engine.dispose()

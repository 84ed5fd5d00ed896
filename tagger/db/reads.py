"""What every read of the library database shares: the latest scan's model version (what *stale* is
measured against), the folders scans were given, the known families in their order, the path order (bytewise on every database)
a stored time as a datetime, and a track's stored window scores unpacked. Used by `tagger.db.listing`, `tagger.db.detail` and
`tagger.db.queries`.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING

from tagger.db.sql import Reader, Sql, reader_of
from tagger.instruments import FAMILIES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def latest_model_version_id(session: Session | Reader) -> int | None:
    """The model version of the most recent scan (what "stale" is measured against)."""
    rows = reader_of(session).rows(Sql("SELECT model_version_id FROM scans ORDER BY id DESC LIMIT 1"))
    return rows[0][0] if rows else None


def scanned_roots(session: Session | Reader) -> list[str]:
    """Every folder (or file) a scan of this database was given, sorted."""
    return sorted({r for (text,) in reader_of(session).rows(Sql("SELECT roots FROM scans")) for r in json.loads(text)})


def known_families(session: Session | Reader) -> list[str]:
    """The canonical families plus any family a stored model version knows, in canonical order first."""
    out = list(FAMILIES)
    for (fams,) in reader_of(session).rows(Sql("SELECT families FROM model_versions")):
        out += [f for f in json.loads(fams) if f not in out]
    return out


def _family_order(session: Session) -> dict[str, int]:
    return {f: i for i, f in enumerate(known_families(session))}


def by_path(session: Session):
    """ORDER BY path, bytewise on every database (`path_key`), as a SQLAlchemy clause."""
    from sqlalchemy import literal_column

    return literal_column(path_key(reader_of(session).dialect))


def path_key(dialect: str) -> str:
    """The path to sort by (and compare with), bytewise on every database: SQLite compares text
    bytewise, PostgreSQL would use its locale's collation (e.g. en_US puts ``/m/a`` before
    ``/m/B``), so there the ``C`` collation is asked for."""
    if dialect == "postgresql":
        return 'tracks.path COLLATE "C"'
    return "tracks.path"


def _datetime(value) -> _dt.datetime | None:
    """A stored time as the database driver gives it (SQLite: the text SQLAlchemy's ``DateTime``
    writes, ``2026-12-07 01:47:12.123456``; PostgreSQL: a datetime) as a datetime."""
    return _dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def unpack_window_scores(*, families: str, n_windows: int, starts: bytes, scores: bytes):
    """A ``window_scores`` row's columns as ``(families, starts, scores)``: a list of names, float32
    [shape=(n,)] and float32 [shape=(n, n_families)] (NaN rows: silent windows)."""
    import numpy as np

    names = json.loads(families)
    return (names, np.frombuffer(starts, dtype="<f4").astype(np.float32),
            np.frombuffer(scores, dtype="<f2").astype(np.float32).reshape(n_windows, len(names)))  # fmt: skip

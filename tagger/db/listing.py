"""The tracks a query or a tag write selects, read many at a time: ``tagger query``'s
(`stream_tracks`: 500 per short transaction, its SQL written once for ``sqlite3`` and SQLAlchemy;
`scored_families`, the score columns of a CSV), the library's (`find_tracks`, `iter_tracks`), and
the results a tag write checks (`tracks_to_tag`, `StoredResults`), and the files as tagger's own tag
writes left them, which `tagger untag` need not wait for (`recorded_as_tagged`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tagger.db import sql as Q
from tagger.db.filter import Candidate, TrackFilter
from tagger.db.reads import _datetime, _family_order, known_families, latest_model_version_id, path_key
from tagger.db.sql import Reader, Sql, joined, reader_of, sql

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class TrackSummary:
    """One track as `find_tracks` returns it (the ``query --format json`` objects)."""

    path: str
    duration: float | None
    format: str | None
    instruments: list[str]
    scores: dict[str, float]
    model_version: str | None
    stale: bool
    analysed_in_part: str | None = None
    """What the scan said of the file analysed without a small part it could not decode (`tracks.analysed_in_part`)."""

    def to_dict(self) -> dict:
        """`dataclasses.asdict`'s dict, built by hand: asdict deep-copies every value, a third of a
        10,000-track ``query --format json`` (the fields are flat values, a list and a dict)."""
        return {
            "path": self.path, "duration": self.duration, "format": self.format, "instruments": list(self.instruments),
            "scores": dict(self.scores), "model_version": self.model_version, "stale": self.stale,
            "analysed_in_part": self.analysed_in_part,
        }  # fmt: skip


def find_tracks(session: Session, *, where: TrackFilter | None = None) -> list[TrackSummary]:
    """Analysed tracks that the filter ``where`` selects (`tagger.db.filter.TrackFilter`, e.g.
    ``TrackFilter.of(has=["flute"], path_glob="*/Jazz/*")``; None: every track), sorted by path.
    Family names must be known to a stored model.
    """
    return list(iter_tracks(session, where=where))


STREAM_BATCH = 500
"""Tracks read from the database at a time by `iter_tracks` (their detections in one query)."""


def iter_tracks(session: Session, *, where: TrackFilter | None = None,
                batch: int = STREAM_BATCH) -> Iterator[TrackSummary]:  # fmt: skip
    """`find_tracks`, read from the database `batch` tracks at a time while the caller goes through
    them (the session must stay open meanwhile): memory does not grow with the library (a JSON
    query of 200,000 tracks held them all at once, 711 MiB). The filter is checked (unknown family:
    `UserError`) before this returns."""
    return (summary for summary, _ in _select(session, where, batch=batch))


@dataclass(frozen=True)
class StoredResults:
    """Which results of a track were read, and the file they were made from, as the database held
    them: `tagger.db.writes.record_rewrite` records the tags written from them as current only while
    the track still holds these (a scan storing new results meanwhile changes ``analysed_at`` and
    ``scan_id``) and its file's size, mtime and fingerprint are still these; a tag write refuses a
    file whose fingerprint is not this one (another file of the same size and mtime moved over it)."""

    track_id: int
    model_version_id: int | None
    scan_id: int | None
    analysed_at: _dt.datetime | None
    size: int
    mtime: float
    fingerprint: str
    rewrite_hash: str | None = None
    """`tagger.db.models.Track.rewrite_hash`: a `tag` run was moving a copy that hashes to it over the
    file when it stopped (`tagger.db.writes.recover_rewrite`)."""
    content_hash: str | None = None
    """The hash of the whole file the results are of (None: not known)."""
    ctime_ns: int | None = None
    """The file's ctime when its facts were recorded (None: not known): a file of another ctime (put
    there by a rename or a copy: two stems of one size, mtime and fingerprint swapped by name) must
    hash to ``content_hash`` too."""
    audio_digest: str | None = None
    """The hash of the bytes that carry the file's audio (`tagger.tags.audio_digest`; None: not known,
    or a format without it): a file changed since in its tags alone hashes to it still."""
    tags_current: bool = False
    """`tagger.db.models.Track.tags_current`: the file's tags were recorded as holding these results,
    its facts (size, mtime, ctime) those tagger recorded after its own tag write (or those a
    tag-writing scan analysed, once the file had settled): a file found exactly so is no file still
    being written (`tagger.tags.batch.as_tagger_left_it`)."""
    written_ctime_ns: int | None = None
    """`tagger.db.models.Track.written_ctime_ns`: the ctime tagger's own last write (a tag write,
    `tagger untag`) left the file with; where it is ``ctime_ns``, the facts are those that write left,
    whatever the tags hold now (None: no such write recorded)."""


@dataclass
class TrackToTag:
    """An analysed track as `tracks_to_tag` returns it: its results and what a tag write checks."""

    path: str
    instruments: list[str]
    scores: dict[str, float]
    model_version: str
    size: int
    mtime: float
    families: tuple[str, ...]
    """The families of the model that produced the results."""
    stored: StoredResults | None = None
    """Which results these are and the file they were made from."""


def tracks_to_tag(session: Session, where: TrackFilter) -> list[TrackToTag]:
    """The analysed tracks ``where`` selects that have a model version, with the size and mtime
    recorded at analysis and their model's families (what a tag write checks), sorted by path."""
    out = []
    for summary, row in _select(session, where, stored=True):
        if summary.model_version:
            stored = StoredResults(row.id, row.model_version_id, row.scan_id, _datetime(row.analysed_at), row.size,
                                   row.mtime, row.fingerprint, row.rewrite_hash, row.content_hash, row.ctime_ns,
                                   row.audio_digest, bool(row.tags_current), row.written_ctime_ns)  # fmt: skip
            out.append(TrackToTag(summary.path, summary.instruments, summary.scores, summary.model_version,
                                  row.size, row.mtime, tuple(json.loads(row.families or "[]")), stored))  # fmt: skip
    return out


RecordedFacts = tuple[int, float, int, "str | None"]
"""A file's size, mtime and ctime (ns) as the library database recorded them, and its analysed
fingerprint (`recorded_as_tagged`)."""


def recorded_as_tagged(reader: Reader, where: TrackFilter) -> dict[str, RecordedFacts]:
    """The tracks under ``where``'s paths whose tags the library database (read through ``reader``)
    records as current (`StoredResults.tags_current`), or whose facts it records as those tagger's
    own last write left (`StoredResults.written_ctime_ns`: an `untag`'s, a `tag --from-json`'s),
    by path: the size, mtime and ctime their file had when that was recorded, right after tagger's
    own write (or as a tag-writing scan found the file settled). A file found exactly so has been
    written by no program since (any write changes its ctime): `tagger untag` does not wait for it to
    settle (`tagger.tags.remove_instruments`' ``recorded``), and its fingerprint is the one checked
    again where a FUSE file system gives it another number meanwhile. Only the paths are filtered: the
    families of ``where`` are not read. The paths are asked for a few hundred at a time
    (`TrackFilter.by_paths`): one condition per file of ``tagger untag *.flac`` in one query failed
    from 1,000 files on ("Expression tree is too large (maximum depth 1000)"), and ``--db`` with it
    untagged nothing."""
    out: dict[str, RecordedFacts] = {}
    for part in TrackFilter(paths=where.paths).by_paths():  # (no paths: every track)
        conds = [Sql("(tracks.tags_current = TRUE OR tracks.written_ctime_ns = tracks.ctime_ns) "
                     "AND tracks.ctime_ns IS NOT NULL"), *part.clauses(reader.dialect)]  # fmt: skip
        rows = reader.tuples(sql("SELECT tracks.path, tracks.size, tracks.mtime, tracks.ctime_ns, tracks.fingerprint "
                                 "FROM tracks WHERE {}", joined(" AND ", conds)))  # fmt: skip
        out.update((path, (int(size), float(mtime), int(ctime_ns), fingerprint or None))
                   for path, size, mtime, ctime_ns, fingerprint in rows)  # fmt: skip
    return out


def model_version_names(reader: Reader) -> set[str]:
    """The version of every model whose results the library database (read through ``reader``)
    records or recorded (`model_versions`, whose rows nothing deletes: a version stays once a scan
    used it, its tracks since pruned or analysed again by another): fields a file holds with one of them as
    INSTRUMENTS_MODEL are tagger's, which `tagger untag` removes."""
    return {str(version).strip() for (version,) in reader.tuples(sql("SELECT version FROM model_versions"))}


def _select(session: Session, where: TrackFilter | None, *, batch: int = STREAM_BATCH,
            stored: bool = False) -> Iterator[tuple[TrackSummary, object]]:  # fmt: skip
    """The tracks ``where`` selects with their row (with ``stored``, the columns of `StoredResults`
    too), read `batch` at a time in the session's transaction as they are gone through; the filter
    is checked at the call (None: every track)."""
    if where is None:
        where = TrackFilter()
    reader = reader_of(session)
    where.check(known_families(reader))
    return _pages(lambda: contextlib.nullcontext(reader), where, batch=batch, order=_family_order(reader), stored=stored)


def stream_tracks(database, *, where: TrackFilter, batch: int = STREAM_BATCH, scores: bool = True,
                  instruments: bool = True) -> Iterator[TrackSummary]:  # fmt: skip
    """`iter_tracks` on the library database ``database`` (`tagger.db.session.Database`, or
    `tagger.db.session.SqliteLibrary`), each `batch` of tracks read in
    a short transaction of its own, closed before the tracks are handed over: a caller that pauses
    between them (a query writing to a pager, or a pipe nobody reads) holds no lock nor snapshot of
    the database, so a scan's commits go on beside it (on a rollback-journal database, a FAT drive,
    the read held SQLite's shared lock, and a scan's commit failed after waiting for it).

    Each track is read whole (its row and detections) in one transaction and matches the filter
    then; the tracks come sorted by path, each path once (each batch starts after the last path
    of the one before). A change committed between two batches shows in the tracks not yet read:
    a track a scan moves meanwhile from a path after the last one read to one before it is left
    out, and one moved the other way is listed under both names. ``scores`` False: ``scores`` left
    empty, and only the detections of the families present read (a table's ``instruments``: a third
    of the rows); with ``instruments`` False too, no detections read (``instruments`` empty as well:
    a list of paths, or what the width of a table's columns needs). The filter is checked (unknown
    family: `UserError`) before this returns."""
    with database.reader() as reader:
        where.check(known_families(reader))
        order = _family_order(reader)
    pages = _pages(database.reader, where, batch=batch, order=order, scores=scores, instruments=instruments)
    return (summary for summary, _ in pages)


def scored_families(database, *, where: TrackFilter) -> list[str]:
    """The families scored for the analysed tracks that the SQL conditions of ``where`` select (its
    parts checked in Python, ``--path-glob``, left aside: a superset), in the known families'
    order: the score columns of ``query --format csv``, known before its first row is written."""
    found: set[str] = set()
    with database.reader() as reader:
        for part in where.by_paths():  # (a few hundred paths a statement)
            selected = joined(" AND ", [sql("tracks.status = {}", Q.STATUS_OK), *part.clauses(reader.dialect)])
            found.update(family for (family,) in reader.rows(sql(
                "SELECT DISTINCT scored.family AS family FROM detections AS scored "
                "WHERE scored.track_id IN (SELECT tracks.id FROM tracks WHERE {})", selected)))  # fmt: skip
        order = _family_order(reader)
    return sorted(found, key=lambda f: (order.get(f, len(order)), f))


_PAGE_COLUMNS = ("tracks.id", "tracks.path", "tracks.duration", "tracks.format", "tracks.model_version_id",
                 "tracks.analysed_in_part", "model_versions.version")  # fmt: skip
"""The columns of a query's page of tracks (`_pages`)."""
_STORED_COLUMNS = ("tracks.size", "tracks.mtime", "tracks.fingerprint", "tracks.scan_id", "tracks.analysed_at",
                   "tracks.rewrite_hash", "tracks.content_hash", "tracks.ctime_ns", "tracks.audio_digest",
                   "tracks.tags_current", "tracks.written_ctime_ns", "model_versions.families")  # fmt: skip
"""The columns `tracks_to_tag` reads besides (`StoredResults`)."""


def _pages(connect, where: TrackFilter, *, batch: int, order: dict[str, int], scores: bool = True,
           instruments: bool = True, stored: bool = False) -> Iterator[tuple[TrackSummary, object]]:  # fmt: skip
    """The tracks ``where`` selects, with their row, sorted by path, read `batch` rows at a time
    (their detections as `stream_tracks` reads them for ``scores`` and ``instruments``; with ``stored``, the row's columns that `StoredResults`
    holds too) through ``connect()``, a context manager giving a
    `tagger.db.sql.Reader`. SQLite: each batch read through a ``connect()`` of its own, released
    before its tracks are yielded (keyset on the path, walked along its unique index). Other
    databases (PostgreSQL: a reader there blocks no writer) read one statement through one
    ``connect()``, `batch` rows at a time (their collation is not the path index's, so each batch
    would sort the whole table).

    A filter of more paths than one statement can hold (`TrackFilter.by_paths`: ``tagger tag
    *.flac`` of 1,000 files or more, refused by SQLite as "Expression tree is too large") is read a
    few hundred paths at a time, and its tracks, held until all are read, come sorted by path, each
    once (a file given and its folder given in another part)."""
    parts = where.by_paths()
    if len(parts) > 1:
        found: dict[str, tuple[TrackSummary, object]] = {}
        for part in parts:
            for summary, row in _pages(connect, part, batch=batch, order=order, scores=scores,
                                       instruments=instruments, stored=stored):  # fmt: skip
                found.setdefault(summary.path, (summary, row))
        yield from (found[path] for path in sorted(found))  # (code points: UTF-8's bytewise order, `path_key`'s)
        return
    after: str | None = None
    # Plain rows, not ORM objects: a 10,000-track library answers in tens of milliseconds. The
    # columns only `tracks_to_tag` needs are left out of a query's (``analysed_at``'s text turned
    # into a datetime for every row took a fifth of a 10,000-track ``tagger query``).
    columns = ", ".join(f"{c} AS {c.split('.')[1]}" for c in (*_PAGE_COLUMNS, *(_STORED_COLUMNS if stored else ())))
    while True:
        with connect() as reader:
            dialect = reader.dialect
            key = path_key(dialect)
            # (status || '': not the status index, which SQLite took, sorting every track for each batch)
            status = "tracks.status || ''" if dialect == "sqlite" else "tracks.status"
            conds = [sql(f"{status} = {{}}", Q.STATUS_OK), *where.clauses(dialect)]
            if after is not None:  # (keyset paging: the path is unique)
                conds.append(sql(f"{key} > {{}}", after))
            stmt = sql(f"SELECT {columns} FROM tracks LEFT OUTER JOIN model_versions ON model_versions.id = "
                       f"tracks.model_version_id WHERE {{}} ORDER BY {key}", joined(" AND ", conds))  # fmt: skip
            if dialect != "sqlite":
                for part in reader.partitions(stmt, batch):
                    yield from _summaries(reader, part, where, order=order, scores=scores, instruments=instruments)
                return
            page = reader.rows(sql(f"{{}} LIMIT {int(batch):d}", stmt))
            if not page:
                return
            after = page[-1].path
            summaries = _summaries(reader, page, where, order=order, scores=scores, instruments=instruments)
        yield from summaries
        if len(page) < batch:
            return


def _summaries(reader: Reader, page, where: TrackFilter, *, order: dict[str, int], scores: bool,
               instruments: bool = True) -> list[tuple[TrackSummary, object]]:  # fmt: skip
    """The tracks of the rows ``page`` that the parts of ``where`` SQL cannot check select, with
    their detections read through ``reader`` (every one with ``scores``; else those of the families
    present with ``instruments``; else none)."""
    in_python = where.python_only(reader.dialect)
    rows = [r for r in page if all(p.match(Candidate(r.path, ())) for p in in_python)]
    dets: dict[int, list[tuple[int, str, bool, float]]] = {}
    if rows and (scores or instruments):
        last = len(order)
        # (the ids are the database's integers, written into the text: one statement, not one
        # parameter per track)
        ids = ", ".join(str(int(r.id)) for r in rows)
        only_present = "" if scores else " AND present = TRUE"
        # (all rows at once: one by one through the Result took a fifth of a 10,000-track query;
        # plain tuples, not named ones: 21,000 of them for a 2,106-track JSON query)
        for tid, fam, present, score in reader.tuples(Sql(
                f"SELECT track_id, family, present, score FROM detections WHERE track_id IN ({ids}){only_present}")):  # fmt: skip
            dets.setdefault(tid, []).append((order.get(fam, last), fam, present, score))
    latest = latest_model_version_id(reader)
    out = []
    for r in rows:
        ds = sorted(dets.get(r.id, ()))  # (in the families' order: a track has each family once)
        summary = TrackSummary(
            path=r.path,
            duration=r.duration,
            format=r.format,
            instruments=[fam for _, fam, present, _ in ds if present],
            scores={fam: score for _, fam, _, score in ds} if scores else {},
            model_version=r.version,
            stale=r.model_version_id != latest,
            analysed_in_part=r.analysed_in_part,
        )
        out.append((summary, r))
    return out

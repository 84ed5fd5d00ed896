"""Read (and prune) the library database: every query the CLI needs, returning plain values.

A track's results are *stale* when they come from another model version than the one used by the
latest scan. Queries only consider analysed tracks (status ``ok``) unless they say otherwise.

What ``tagger query``, ``show``, ``stats`` and ``errors`` read (`stream_tracks`, `scored_families`,
`track_detail`, `library_stats`, `failed_tracks`, with `known_families` and
`latest_model_version_id`) is SQL text written once (`tagger.db.sql`), run by Python's ``sqlite3``
on a SQLite library (`tagger.db.session.open_for_reading`: SQLAlchemy is not imported) and by
SQLAlchemy elsewhere; the writes and the ORM reads (`track_timeline`, `prune_missing`) import
SQLAlchemy where they use it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tagger.db import sql as Q
from tagger.db.filter import Candidate, TrackFilter, storable_name
from tagger.db.sql import Reader, Sql, joined, reader_of, sql
from tagger.errors import UserError
from tagger.instruments import FAMILIES

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


@dataclass
class FamilyDetail:
    family: str
    present: bool
    score: float
    coverage: float
    segments: list[list[float]] = field(default_factory=list)


@dataclass
class TrackDetail:
    """One track with everything stored about it (the ``show --json`` object)."""

    path: str
    status: str
    error: str | None
    size: int
    mtime: float
    fingerprint: str
    duration: float | None
    format: str | None
    sample_rate: int | None
    channels: int | None
    windows: int
    silent_windows: int
    model_version: str | None
    stale: bool
    analysed_at: str | None
    instruments: list[str]
    families: list[FamilyDetail]
    analysed_in_part: str | None = None
    """What the scan said of the file analysed without a small part it could not decode."""

    def to_dict(self) -> dict:
        return asdict(self)


def latest_model_version_id(session: Session | Reader) -> int | None:
    """The model version of the most recent scan (what "stale" is measured against)."""
    rows = reader_of(session).rows(Sql("SELECT model_version_id FROM scans ORDER BY id DESC LIMIT 1"))
    return rows[0][0] if rows else None


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


def _present(track, order: dict[str, int]) -> list[str]:
    return sorted((d.family for d in track.detections if d.present), key=lambda f: order.get(f, len(order)))


def find_tracks(
    session: Session,
    *,
    has: Sequence[str] = (),
    lacks: Sequence[str] = (),
    min_score: float | None = None,
    path_glob: str | None = None,
    where: TrackFilter | None = None,
) -> list[TrackSummary]:
    """Analysed tracks that the filter ``where`` selects, sorted by path. Without it: every family
    in `has` present (with score >= `min_score` when given) and no family in `lacks` present;
    optionally only paths matching the shell pattern `path_glob` (matched against the whole
    absolute path, e.g. ``'*/Jazz/*'`` or ``'*.flac'``). Family names must be known to a stored model.
    """
    return list(iter_tracks(session, has=has, lacks=lacks, min_score=min_score, path_glob=path_glob, where=where))


STREAM_BATCH = 500
"""Tracks read from the database at a time by `iter_tracks` (their detections in one query)."""


def iter_tracks(
    session: Session,
    *,
    has: Sequence[str] = (),
    lacks: Sequence[str] = (),
    min_score: float | None = None,
    path_glob: str | None = None,
    where: TrackFilter | None = None,
    batch: int = STREAM_BATCH,
) -> Iterator[TrackSummary]:
    """`find_tracks`, read from the database `batch` tracks at a time while the caller goes through
    them (the session must stay open meanwhile): memory does not grow with the library (a JSON
    query of 200,000 tracks held them all at once, 711 MiB). The filter is checked (unknown family:
    `UserError`) before this returns."""
    return (summary for summary, _ in _select(session, where, batch=batch, has=has, lacks=lacks, min_score=min_score,
                                              path_glob=path_glob))  # fmt: skip


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
                                   row.audio_digest)  # fmt: skip
            out.append(TrackToTag(summary.path, summary.instruments, summary.scores, summary.model_version,
                                  row.size, row.mtime, tuple(json.loads(row.families or "[]")), stored))  # fmt: skip
    return out


def _datetime(value) -> _dt.datetime | None:
    """A stored time as the database driver gives it (SQLite: the text SQLAlchemy's ``DateTime``
    writes, ``2026-12-07 01:47:12.123456``; PostgreSQL: a datetime) as a datetime."""
    return _dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def scanned_roots(session: Session) -> list[str]:
    """Every folder (or file) a scan of this database was given, sorted."""
    return sorted({r for (text,) in reader_of(session).rows(Sql("SELECT roots FROM scans")) for r in json.loads(text)})


def _select(session: Session, where: TrackFilter | None, *, batch: int = STREAM_BATCH, stored: bool = False,
            **options) -> Iterator[tuple[TrackSummary, object]]:  # fmt: skip
    """The tracks ``where`` selects with their row (with ``stored``, the columns of `StoredResults`
    too), read `batch` at a time in the session's transaction as they are gone through; the filter
    is checked at the call."""
    if where is None:
        where = TrackFilter.of(**options)
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
    with database.reader() as reader:
        selected = joined(" AND ", [sql("tracks.status = {}", Q.STATUS_OK), *where.clauses(reader.dialect)])
        found = {family for (family,) in reader.rows(sql(
            "SELECT DISTINCT scored.family AS family FROM detections AS scored "
            "WHERE scored.track_id IN (SELECT tracks.id FROM tracks WHERE {})", selected))}  # fmt: skip
        order = _family_order(reader)
    return sorted(found, key=lambda f: (order.get(f, len(order)), f))


_PAGE_COLUMNS = ("tracks.id", "tracks.path", "tracks.duration", "tracks.format", "tracks.model_version_id",
                 "tracks.analysed_in_part", "model_versions.version")  # fmt: skip
"""The columns of a query's page of tracks (`_pages`)."""
_STORED_COLUMNS = ("tracks.size", "tracks.mtime", "tracks.fingerprint", "tracks.scan_id", "tracks.analysed_at",
                   "tracks.rewrite_hash", "tracks.content_hash", "tracks.ctime_ns", "tracks.audio_digest",
                   "model_versions.families")  # fmt: skip
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
    would sort the whole table)."""
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


def stored_name(session: Session, path: str) -> str:
    """The name the database stores the track at ``path`` under: ``path`` itself when a track has it,
    else the one stored name that is ``path`` in another Unicode form (`tagger.paths.nfc`: a file
    copied from macOS is stored decomposed, NFD, where a user types NFC; its file may be gone, so
    that no name on disk tells the form), else ``path``. Two such stored names are refused, naming
    them. Raises `UserError` for a name that is not UTF-8 (`storable_name`)."""
    from tagger.display import named
    from tagger.paths import nfc

    reader = reader_of(session)
    path = storable_name(path)
    if path.isascii() or reader.rows(sql("SELECT id FROM tracks WHERE path = {}", path)):
        return path
    # (the stored name starts as the typed one does up to its first letter that is not ASCII, but
    # for the letter before it, which an accent may compose with)
    common = path[: max(0, next(i for i, c in enumerate(path) if not c.isascii()) - 1)]
    pattern = common.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"  # ('/' escapes: LIKE's own)
    stored = [name for (name,) in reader.rows(sql("SELECT path FROM tracks WHERE path LIKE {} ESCAPE '/'", pattern))]
    alike = [name for name in stored if nfc(name) == nfc(path)]
    if len(alike) > 1:
        raise UserError(f"{named(path)}: the library holds {len(alike)} tracks of this name in different Unicode forms "
                        f"({', '.join(ascii(a) for a in alike)}): give the name in the form it has on disk")  # fmt: skip
    return alike[0] if alike else path


def not_stored(path: str) -> UserError:
    """The error for a `path` the library holds no track of: a folder is not a track (`tagger show
    ~/Music/album` said to scan the folder, scanned already), a name that is nothing is no file."""
    if os.path.isdir(path):
        return UserError(f"{path}: is a folder; give one of its files (`tagger query --path-glob "
                         f"'{path}/*'` lists its tracks)")  # fmt: skip
    if not os.path.lexists(path):
        return UserError(f"{path}: not in the library database, and no such file")
    from tagger.crawl import is_audio_file

    if os.path.isfile(path) and not is_audio_file(path):  # (`show cover.jpg` said to scan its folder, scanned already)
        return UserError(f"{path}: not in the library database: not an audio file tagger reads (by its name and "
                         f"first bytes), so no scan stores it")  # fmt: skip
    return UserError(f"{path}: not in the library database (scan its folder with `tagger scan`)")


_DETAIL_COLUMNS = ("id", "path", "status", "error", "size", "mtime", "fingerprint", "duration", "format", "sample_rate",
                   "channels", "windows", "silent_windows", "model_version_id", "analysed_at", "analysed_in_part")  # fmt: skip
"""The columns of ``tracks`` that `track_detail` reads."""


def track_detail(session: Session | Reader, *, path: str) -> TrackDetail:
    """Everything stored about the track at `path`; raises `UserError` if the database lacks it.
    ``session``: a `tagger.db.sql.Reader`, or a Session or a Connection (``tagger show`` reads
    through ``sqlite3`` alone, as ``query`` does)."""
    reader = reader_of(session)
    found = reader.rows(sql(f"SELECT {', '.join(_DETAIL_COLUMNS)} FROM tracks WHERE path = {{}}", stored_name(reader, path)))
    if not found:
        raise not_stored(path)
    t = found[0]
    detections = reader.rows(sql("SELECT family, present, score, coverage FROM detections WHERE track_id = {}", t.id))
    segments = reader.rows(sql('SELECT family, start, "end" FROM segments WHERE track_id = {}', t.id))
    version = None if t.model_version_id is None else reader.rows(
        sql("SELECT version FROM model_versions WHERE id = {}", t.model_version_id))[0][0]  # fmt: skip
    order = _family_order(reader)
    segs: dict[str, list[list[float]]] = {}
    for family, start, end in sorted(segments, key=lambda row: row.start):
        segs.setdefault(family, []).append([start, end])
    ranked = sorted(detections, key=lambda row: order.get(row.family, len(order)))
    fams = [FamilyDetail(r.family, bool(r.present), r.score, r.coverage, segs.get(r.family, [])) for r in ranked]
    return TrackDetail(
        path=t.path,
        status=t.status,
        error=t.error,
        size=t.size,
        mtime=t.mtime,
        fingerprint=t.fingerprint,
        duration=t.duration,
        format=t.format,
        sample_rate=t.sample_rate,
        channels=t.channels,
        windows=t.windows,
        silent_windows=t.silent_windows,
        model_version=version,
        stale=t.status == Q.STATUS_OK and t.model_version_id != latest_model_version_id(reader),
        analysed_at=_datetime(t.analysed_at).isoformat(timespec="seconds") + "Z" if t.analysed_at else None,
        instruments=[r.family for r in ranked if r.present],
        families=fams,
        analysed_in_part=t.analysed_in_part if t.status == Q.STATUS_OK else None,
    )


def track_timeline(session: Session, *, path: str):
    """The stored window scores of the track at `path` as a `tagger.timeline.Timeline`.

    Raises `UserError` when the database lacks the track, when it could not be analysed, or when it
    was analysed before the database kept window scores (revision 0003): then it needs a rescan.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from tagger.db import models as M
    from tagger.timeline import Timeline, thresholds_from_json

    t = session.scalar(
        select(M.Track).where(M.Track.path == stored_name(session, path))
        .options(selectinload(M.Track.detections), selectinload(M.Track.segments))
    )
    if t is None:
        raise not_stored(path)
    if t.status != M.STATUS_OK:
        raise UserError(f"{path}: has no results ({t.status}{': ' + t.error if t.error else ''})")
    w = t.window_scores
    if w is None:
        raise UserError(
            f"{path}: analysed before the database kept window scores, so there is no timeline to draw; it needs "
            f"a rescan (the next analysis of the file stores them), or draw it now with `tagger predict FILE --plot OUT.png`"
        )
    families, starts, scores = w.unpack()
    mv = t.model_version
    segs: dict[str, list[tuple[float, float]]] = {}
    for g in sorted(t.segments, key=lambda g: g.start):
        segs.setdefault(g.family, []).append((g.start, g.end))
    return Timeline(
        path=t.path,
        model_version=mv.version if mv else None,
        families=families,
        starts=starts,
        scores=scores,
        thresholds=thresholds_from_json(families, json.loads(mv.thresholds)) if mv else {},
        segments=segs,
        present=_present(t, _family_order(session)),
        duration=t.duration,
        window_seconds=w.window_seconds,
    )


def library_stats(session: Session | Reader) -> dict:
    """Totals, tracks per family and co-occurrence of families (the ``stats --json`` object)."""
    reader = reader_of(session)
    ok = sql("tracks.status = {}", Q.STATUS_OK)
    present = "present = TRUE"
    by_status = dict(tuple(r) for r in reader.rows(Sql("SELECT status, count(*) FROM tracks GROUP BY status")))
    latest = latest_model_version_id(reader)
    stale = reader.rows(sql("SELECT count(*) FROM tracks WHERE {} AND (model_version_id != {} OR model_version_id IS NULL)",
                            ok, latest))[0][0] if latest is not None else 0  # fmt: skip
    audio = reader.rows(sql("SELECT coalesce(sum(duration), 0.0) FROM tracks WHERE {}", ok))[0][0]
    order = _family_order(reader)
    per_family = dict(tuple(r) for r in reader.rows(sql(
        f"SELECT detections.family, count(*) FROM detections JOIN tracks ON tracks.id = detections.track_id "
        f"WHERE {{}} AND detections.{present} GROUP BY detections.family", ok)))  # fmt: skip
    none = reader.rows(sql(f"SELECT count(*) FROM tracks WHERE {{}} AND NOT EXISTS (SELECT 1 FROM detections WHERE "
                           f"detections.track_id = tracks.id AND detections.{present})", ok))[0][0]  # fmt: skip
    pairs = reader.rows(sql(
        f"SELECT d1.family, d2.family, count(*) FROM detections AS d1 JOIN detections AS d2 ON d2.track_id = d1.track_id "
        f"AND d2.{present} JOIN tracks ON tracks.id = d1.track_id WHERE {{}} AND d1.{present} GROUP BY d1.family, d2.family",
        ok))  # fmt: skip
    fams = sorted(per_family, key=lambda f: order.get(f, len(order)))
    co = {a: {b: 0 for b in fams} for a in fams}
    for a, b, n in pairs:
        co[a][b] = n
    versions = reader.rows(sql(
        "SELECT model_versions.version, model_versions.manifest_hash, count(tracks.id) FROM model_versions "
        "LEFT OUTER JOIN tracks ON tracks.model_version_id = model_versions.id AND {} "
        "GROUP BY model_versions.id ORDER BY model_versions.id", ok))  # fmt: skip
    scans = reader.rows(Sql("SELECT started_at, finished_at, scanned, skipped, failed FROM scans ORDER BY id DESC LIMIT 1"))
    last_scan = scans[0] if scans else None
    return {
        "tracks": {
            "total": sum(by_status.values()),
            "ok": by_status.get(Q.STATUS_OK, 0),
            "error": by_status.get(Q.STATUS_ERROR, 0),
            "missing": by_status.get(Q.STATUS_MISSING, 0),
            "stale": stale,
            "no_instrument": none,
        },
        "audio_seconds": round(float(audio or 0.0), 3),
        "families": {f: per_family[f] for f in fams},
        "cooccurrence": co,
        "model_versions": [{"version": v, "manifest_hash": h, "tracks": n} for v, h, n in versions],
        "last_scan": None
        if last_scan is None
        else {
            "started_at": _datetime(last_scan.started_at).isoformat(timespec="seconds") + "Z",
            "finished_at": _datetime(last_scan.finished_at).isoformat(timespec="seconds") + "Z" if last_scan.finished_at else None,
            "scanned": last_scan.scanned,
            "skipped": last_scan.skipped,
            "failed": last_scan.failed,
        },
    }


def failed_tracks(session: Session | Reader) -> list[dict]:
    """Files that could not be analysed: ``[{"path", "error", "when"}]`` sorted by path."""
    reader = reader_of(session)
    rows = reader.rows(sql(f"SELECT path, error, updated_at FROM tracks WHERE status = {{}} ORDER BY {path_key(reader.dialect)}",
                           Q.STATUS_ERROR))  # fmt: skip
    return [{"path": p, "error": e or "", "when": _datetime(w).isoformat(timespec="seconds") + "Z"} for p, e, w in rows]


@dataclass(frozen=True)
class Pruned:
    """What `prune_missing` did: the paths of the tracks deleted and of those kept."""

    removed: list[str]
    kept: list[str]


def prune_missing(session: Session) -> Pruned:
    """Delete the tracks marked missing (with their results) whose file is still gone. A track is
    kept when its file is there again (moved back, a drive mounted again since the scan: the next
    scan restores it; a symbolic link whose target is out of reach counts as there) or when a
    folder a scan was given and that holds it is empty, as the mount point of a drive that is not
    mounted is (`tagger.paths.looks_unmounted`). A folder or anything else that is no regular file,
    found where the file was, is not the file. Raises `UserError` where Python does not read file
    names as UTF-8 (`tagger.paths.check_filesystem_encoding`)."""
    from sqlalchemy import select

    from tagger.db import tables as T
    from tagger.paths import check_filesystem_encoding, folder_prefix, looks_unmounted

    check_filesystem_encoding()
    rows = session.execute(
        select(T.tracks.c.id, T.tracks.c.path).where(T.tracks.c.status == T.STATUS_MISSING).order_by(by_path(session))
    ).all()
    empty = tuple(folder_prefix(root) for root in scanned_roots(session) if looks_unmounted(root))
    removed, kept, ids = [], [], []
    for tid, path in rows:
        dangling = os.path.islink(path) and not os.path.exists(path)
        if os.path.isfile(path) or dangling or path.startswith(empty):
            kept.append(path)
        else:
            removed.append(path)
            ids.append(tid)
    delete_tracks(session, ids)
    return Pruned(removed=removed, kept=kept)


def delete_tracks(session: Session, ids: Sequence[int]) -> None:
    """Delete these tracks with everything stored for them (not committed)."""
    from sqlalchemy import delete

    from tagger.db import tables as T

    for i in range(0, len(ids), 500):
        batch = ids[i : i + 500]
        session.execute(delete(T.segments).where(T.segments.c.track_id.in_(batch)))
        session.execute(delete(T.window_scores).where(T.window_scores.c.track_id.in_(batch)))
        session.execute(delete(T.detections).where(T.detections.c.track_id.in_(batch)))
        session.execute(delete(T.tracks).where(T.tracks.c.id.in_(batch)))

"""Read (and prune) the library database: every query the CLI needs, returning plain values.

A track's results are *stale* when they come from another model version than the one used by the
latest scan. Queries only consider analysed tracks (status ``ok``) unless they say otherwise.

What ``tagger query``, ``show``, ``stats`` and ``errors`` read (`stream_tracks`, `scored_families`,
`track_detail`, `library_stats`, `failed_tracks`, with `known_families` and
`latest_model_version_id`) is SQL text written once (`tagger.db.sql`), run by Python's ``sqlite3``
on a SQLite library (`tagger.db.session.open_for_reading`: SQLAlchemy is not imported) and by
SQLAlchemy elsewhere; the writes and the ORM reads (`track_timeline`, `prune_missing`) import
SQLAlchemy where they use it.

The reads live beside this module by what they read: `tagger.db.listing`, the tracks a query or a
tag write selects, many at a time; `tagger.db.detail`, one track (``show``); `tagger.db.reads`,
what every read shares (the families' order, the latest model version, the path order). This
module holds the library's totals, failures and pruning (``stats``, ``errors``, ``db prune``) and
exports the others' names (`__all__`), as callers import them from here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagger.db import sql as Q
from tagger.db.detail import (
    FamilyDetail,
    TrackDetail,
    not_stored,
    stored_name,
    track_detail,
    track_timeline,
)
from tagger.db.listing import (
    STREAM_BATCH,
    StoredResults,
    TrackSummary,
    TrackToTag,
    find_tracks,
    iter_tracks,
    scored_families,
    stream_tracks,
    tracks_to_tag,
)
from tagger.db.reads import (
    _datetime, _family_order, by_path, known_families, latest_model_version_id, path_key, scanned_roots,
)  # fmt: skip
from tagger.db.sql import Reader, Sql, reader_of, sql

__all__ = [
    "STREAM_BATCH", "FamilyDetail", "Pruned", "StoredResults", "TrackDetail", "TrackSummary", "TrackToTag",
    "_family_order", "by_path", "delete_tracks", "failed_tracks", "find_tracks", "iter_tracks", "known_families",
    "failed_under", "latest_model_version_id", "library_stats", "not_stored", "path_key", "prune_missing", "scanned_roots",
    "scored_families", "stored_name", "stream_tracks", "track_detail", "track_timeline", "tracks_to_tag",
]  # fmt: skip

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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


def failed_under(session: Session | Reader, paths: Sequence[str]) -> list[tuple[str, str]]:
    """(path, error) of the files at or under ``paths`` that could not be analysed, sorted by path
    (a few hundred paths a statement: `tagger.db.sql.chunks`), each once (a file and its folder both
    given, asked for in two statements)."""
    from tagger.db.filter import under_any_clause
    from tagger.db.sql import chunks

    reader = reader_of(session)
    found: dict[str, str] = {}
    for part in chunks(list(paths)):
        found.update((p, e or "") for p, e in reader.rows(sql("SELECT path, error FROM tracks WHERE status = {} AND ({})",
                                                              Q.STATUS_ERROR, under_any_clause(part, reader.dialect))))  # fmt: skip
    return sorted(found.items())


@dataclass(frozen=True)
class Pruned:
    """What `prune_missing` did: the paths of the tracks deleted and of those kept."""

    removed: list[str]
    kept: list[str]
    not_audio: list[str] = field(default_factory=list)
    """The failed tracks deleted of files whose names say they hold no audio (stored by scans before
    f316081, which no scan updates or removes any more)."""
    away: dict[str, str] = field(default_factory=dict)
    """Of the kept tracks, those kept for an empty folder: path -> that folder (the nearest folder of
    the path still there: the track's own, a scanned root or a folder between)."""


def prune_missing(session: Session) -> Pruned:
    """Delete the tracks marked missing (with their results) whose file is still gone. A track is
    kept when its file is there again (moved back, a drive mounted again since the scan: the next
    scan restores it; a symbolic link whose target is out of reach counts as there) or when
    the nearest folder of its path that is still there is empty or cannot be listed
    (`tagger.paths.empty_folder_above`),
    as the mount point of a drive that is not mounted is, a scanned root (``/media/music``) or a
    folder inside one (``~/Music/NAS``): a track is deleted once that folder holds something or is
    gone (``away`` names the folder). A folder or anything else that is no regular file,
    found where the file was, is not the file. Raises `UserError` where Python does not read file
    names as UTF-8 (`tagger.paths.check_filesystem_encoding`).

    Also deleted: the failed tracks of files whose names say they hold no audio (`notes.txt`,
    `cover.jpg`: `tagger.crawl.NON_AUDIO_EXTENSIONS`), which scans before f316081 stored for the files
    a shell's ``~/Music/*`` named; a scan leaves such a file out now, so nothing else ever removes its
    track, which holds no result, only the reason it failed."""
    from sqlalchemy import select

    from tagger.crawl import NON_AUDIO_EXTENSIONS
    from tagger.db import tables as T
    from tagger.paths import check_filesystem_encoding, empty_folder_above

    check_filesystem_encoding()
    rows = session.execute(
        select(T.tracks.c.id, T.tracks.c.path).where(T.tracks.c.status == T.STATUS_MISSING).order_by(by_path(session))
    ).all()
    empty_above = functools.cache(empty_folder_above)  # (one look per folder, not per track)
    removed, kept, ids, away = [], [], [], {}
    for tid, path in rows:
        dangling = os.path.islink(path) and not os.path.exists(path)
        if os.path.isfile(path) or dangling:
            kept.append(path)
        elif (folder := empty_above(os.path.dirname(path))) is not None:
            kept.append(path)
            away[path] = folder
        else:
            removed.append(path)
            ids.append(tid)
    failed = session.execute(
        select(T.tracks.c.id, T.tracks.c.path).where(T.tracks.c.status == T.STATUS_ERROR).order_by(by_path(session))
    ).all()
    not_audio = [(tid, path) for tid, path in failed if os.path.splitext(path)[1].lower() in NON_AUDIO_EXTENSIONS]
    delete_tracks(session, ids + [tid for tid, _ in not_audio])
    return Pruned(removed=removed, kept=kept, not_audio=[path for _, path in not_audio], away=away)


def delete_tracks(session: Session, ids: Sequence[int]) -> None:
    """Delete these tracks with everything stored for them (not committed)."""
    from sqlalchemy import delete

    from tagger.db import tables as T

    for batch in Q.chunks(list(ids), Q.IN_LIST):
        session.execute(delete(T.segments).where(T.segments.c.track_id.in_(batch)))
        session.execute(delete(T.window_scores).where(T.window_scores.c.track_id.in_(batch)))
        session.execute(delete(T.detections).where(T.detections.c.track_id.in_(batch)))
        session.execute(delete(T.tracks).where(T.tracks.c.id.in_(batch)))

"""Analyse a given list of files through the scan and read back each file's stored result.

For callers that hold their own list of files (the beets plugin, ``beetsplug/instruments.py``):
the files go through `tagger.library.scan.scan` (same models, same incremental database keyed by
file: a file already analysed and unchanged is not analysed again), then each file's result is
read from the database. A file that is missing or could not be analysed gets its reason as a
value; nothing here raises for one bad file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from tagger.db import models as M
from tagger.db.session import Database
from tagger.errors import TaggerError
from tagger.library.scan import Analyser, ScanSummary, scan


@dataclass
class FileResult:
    """What the database holds about one file after `analyse_files`."""

    path: str
    instruments: list[str] = field(default_factory=list)
    """The families present, in canonical order (empty when none was found, or on error)."""
    model_version: str | None = None
    error: str | None = None
    """Why the file has no result (unreadable, missing, ...); None when it has one."""
    analysed: bool = False
    """True when this call analysed it (False: its stored result was reused)."""

    @property
    def ok(self) -> bool:
        return self.error is None


def analyse_files(
    paths: Iterable[str | os.PathLike],
    *,
    db: Database,
    analyser: Analyser,
    jobs: int | None = None,
    rescan_stale: bool = False,
    retry_errors: bool = False,
) -> tuple[ScanSummary | None, dict[str, FileResult]]:
    """Scan `paths` (files) into `db` and return the scan's summary (None when no file exists)
    and each file's `FileResult`, keyed by its absolute path."""
    wanted = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
    results: dict[str, FileResult] = {}
    present = []
    for p in dict.fromkeys(wanted):
        if os.path.isfile(p):
            present.append(p)
        else:
            results[p] = FileResult(p, error="no such file")
    summary = None
    if present:
        summary = scan(present, db=db, analyser=analyser, jobs=jobs, rescan_stale=rescan_stale, retry_errors=retry_errors)
    with db.session() as s:
        started = s.get(M.Scan, summary.scan_id).started_at if summary else None
        for i in range(0, len(present), 500):
            chunk = present[i : i + 500]
            tracks = s.scalars(select(M.Track).where(M.Track.path.in_(chunk)).options(selectinload(M.Track.detections)))
            for t in tracks:
                results[t.path] = _result(t, since=started)
    for p in present:
        results.setdefault(p, FileResult(p, error="not analysed (not an audio file?)"))
    return summary, results


def _result(track: M.Track, *, since) -> FileResult:
    analysed = since is not None and track.analysed_at is not None and track.analysed_at >= since
    if track.status != M.STATUS_OK:
        return FileResult(track.path, error=track.error or track.status, analysed=analysed)
    return FileResult(
        track.path,
        instruments=[d.family for d in track.detections if d.present],  # stored in the model's (canonical) order
        model_version=track.model_version.version if track.model_version else None,
        analysed=analysed,
    )


def record_rewrite(db: Database, path: str | os.PathLike) -> bool:
    """After another program rewrote a file's tags (not its audio), store the file's new size,
    mtime, fingerprint and content hash, so that the next scan sees it unchanged. False when the
    database does not know the file or it cannot be read."""
    from tagger.db import writes

    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
        with db.session() as s:
            return writes.record_rewrite(s, path=path, size=st.st_size, mtime=st.st_mtime) is writes.Recorded.FILE
    except (OSError, TaggerError):
        return False

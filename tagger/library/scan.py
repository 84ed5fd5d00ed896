"""The scan pipeline: crawl, decide what to (re)analyse, analyse in workers, aggregate, store.

1. **Plan** (main process): crawl the folders; for each audio file compare size, mtime and content
   fingerprint with the database. Unchanged files are skipped; a new path whose fingerprint matches
   a track whose file is gone is a *move* (the row follows the file, no re-analysis); a copy of an
   analysed file gets a copy of its results. Tracks whose results come from another model version
   are *stale*: skipped unless ``rescan_stale``.
2. **Analyse**: worker processes (``jobs``; 0 = in the main process) decode, resample, window and
   compute features (`tagger.library.analyse`), one file at a time, streaming windows through a
   bounded queue, so memory stays bounded whatever the number and length of files. The main
   process runs the analyser (the `Ensemble`, or any object with its interface) on batches of
   windows, aggregates each finished file with `tagger.aggregate.aggregate` and writes it. With a
   ``backend`` (`tagger.library.distributed.DaskBackend`) a cluster's workers do the analysis and
   run the model; they return window probabilities, aggregated and written here the same way.
3. **Store**: only the main process writes, in batched transactions (every `commit_every` tracks
   or `commit_seconds`). A track's row, detections and segments are written in one transaction, so
   a scan killed at any moment (SIGKILL included) leaves only whole tracks; the next scan skips
   them and does the rest.
4. **Missing**: tracks under the scanned folders whose file was not found are marked ``missing``
   (`prune` deletes them).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from tagger.aggregate import TrackResult
from tagger.db import models as M
from tagger.db.filter import under_clause
from tagger.db.sql import as_clause
from tagger.db.lock import scan_lock
from tagger.db.writes import compact_scan_roots
from tagger.db.scan_writer import FileState, ScanWriter, mark_missing
from tagger.db.scan_writer import register_model as _register_model
from tagger.db.session import Database
from tagger.db.session import database_error
from tagger.errors import UserError
from tagger.library.analyse import AnalysisConfig, peak_rss
from tagger.crawl import CrawlReport
from tagger.library.messages import RemoteResult
from tagger.library.plan import after_crawl, check_roots, defer_unsettled, plan_files
from tagger.library.defaults import DEFAULT_FILE_TIMEOUT
from tagger.library.runner import Runner, aggregation_params
from tagger.library.workers import workers_within_fd_limit
from tagger.library.state import (  # noqa: F401  (the scan's public names)
    AnalysedFile,
    Analyser,
    OnTrack,
    Progress,
    ScanInterrupted,
    ScanSummary,
    StopSignals,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FILE_TIMEOUT", "AnalysedFile", "Analyser", "OnTrack", "Progress", "RemoteBackend", "ScanInterrupted",
    "ScanSummary", "check_jobs", "check_roots", "default_jobs", "register_model", "scan", "tag_writer",
]  # fmt: skip


def register_model(session, analyser: Analyser) -> M.ModelVersion:
    """The database row of the analyser's model version (created on first use)."""
    return _register_model(session, analyser, aggregation_params(analyser))


def _under(root: str, session):
    """SQL condition: the track's path is `root` or lies under folder `root` (`tagger.db.filter.under_clause`)."""
    return as_clause(under_clause(root, session.get_bind().dialect.name))


class RemoteBackend(Protocol):
    """Analyses files elsewhere (`tagger.library.distributed`): calls ``store(index, result)`` in the
    calling thread for each finished file, ``result`` as `tagger.library.remote.analyse_remote`
    returns it, and ``poll()`` (which raises `ScanInterrupted` on a stop signal) while it waits;
    a file whose analysis runs past ``file_timeout`` seconds (None: no limit) is stored as an error."""

    def run(self, paths: Sequence[str], *, analyser: Analyser, config: AnalysisConfig, predict_batch: int,
            store: Callable[[int, RemoteResult], None], poll: Callable[[], None] | None = None,
            file_timeout: float | None = None) -> None: ...  # fmt: skip



def tag_writer(
    *, model_version: str, dry_run: bool = False, id3v23: bool = False, keep_mtime: bool = False, scores: bool = False,
    settle_seconds: float = 0.0, models: Collection[str] | None = None,
) -> OnTrack:  # fmt: skip
    """An ``on_track`` hook writing the detected instruments into each file with `tagger.tags`.

    A file that changed since it was analysed (another size, mtime or fingerprint; another inode
    or ctime, and a whole content that is not the one analysed), or less than ``settle_seconds`` ago, or that
    another program has open for writing, is refused (TagWriteError); per-family scores are written
    only when `scores` is true; without it, scores a file already holds are kept while they are the
    result's (an earlier scan with scores wrote them), and removed otherwise. Family names are those of the model that produced the result,
    and so is INSTRUMENTS_MODEL: ``model_version`` (the scan's), or the result's own ``model_version``
    where it has one (a stale track's stored results, written back by `TagHook.retag` where another
    program removed them: a file whose fields name another model version is left as it is).
    ``models``: the model versions known to be tagger's (`write_instruments`' ``models``): a file whose
    INSTRUMENTS_MODEL is none of them (nor the one written) is left as it is, its change's ``kept`` saying why.
    """
    from tagger import tags

    def write(path: str, result: TrackResult, analysed: AnalysedFile):
        return tags.write_instruments(
            path, instruments=result.instruments, model_version=result.model_version or model_version,
            scores=result.scores if scores else None, current_scores=None if scores else result.scores,
            over_other_model=result.model_version is None, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run,
            expected=(analysed.size, analysed.mtime), fingerprint=analysed.fingerprint, inode=analysed.inode,
            content_hash=analysed.content_hash, ctime_ns=analysed.ctime_ns,
            settle_seconds=0.0 if analysed.own_write else settle_seconds,
            families=result.families, models=models,
        )  # fmt: skip

    return write


def default_jobs() -> int:
    return os.cpu_count() or 1


JOBS_PER_CORE = 4
"""The most worker processes a scan starts per core (each decodes one file, about 100 MB)."""


def check_jobs(jobs: int | None) -> int:
    """The number of worker processes for ``jobs`` (None or -1: one per core; 0: none, all in this
    process). Raises `UserError` for a number below -1 or above `JOBS_PER_CORE` per core: a scan of
    a large library would start that many processes (``--jobs 100000``)."""
    if jobs is None or jobs == -1:
        return default_jobs()
    most = JOBS_PER_CORE * default_jobs()
    if not 0 <= jobs <= most:
        raise UserError(f"--jobs {jobs}: give a number of worker processes from 0 (none: all in one process) to {most} "
                        f"({JOBS_PER_CORE} per core), or -1 for one per core")  # fmt: skip
    return int(jobs)


def _exclusive(func):
    """Run a scan holding its database's scan lock (`tagger.db.lock`: a second scan of the same
    SQLite database refuses, naming the first one's PID); a database that cannot be written (disk
    full, read-only location, ...) ends the scan with one clear `DatabaseError`, everything
    committed before kept. The roots are checked first (`check_roots`)."""

    @functools.wraps(func)
    def wrapper(roots, *, db: Database, **kwargs):
        roots = check_roots(roots)
        db.require_writable(command="scan")
        with scan_lock(db.url, engine=db.engine):
            try:
                return func(roots, db=db, **kwargs)
            except SQLAlchemyError as exc:
                then = "everything stored before is kept, scan again once this is fixed"
                raise database_error(db.url, exc, doing="write", then=then) from None

    return wrapper


@_exclusive
def scan(
    roots: Sequence[str | os.PathLike],
    *,
    db: Database,
    analyser: Analyser,
    jobs: int | None = None,
    rescan_stale: bool = False,
    retry_errors: bool = False,
    quick: bool = False,
    include_hidden: bool = False,
    follow_external_symlinks: bool = False,
    file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
    commit_every: int = 50,
    commit_seconds: float = 5.0,
    predict_batch: int = 64,
    progress: Callable[[Progress], None] | None = None,
    on_track: OnTrack | None = None,
    backend: RemoteBackend | None = None,
    settle_seconds: float = 0.0,
    keep_temp_files: bool = False,
) -> ScanSummary:
    """Scan folders (or files) into the database; see the module docstring.

    Parameters
    ----------
    jobs : worker processes (None or -1 = all cores; 0 = analyse in this process, for debugging;
        at most `JOBS_PER_CORE` per core: `check_jobs`).
    rescan_stale : re-analyse tracks whose results come from another model version, and those analysed
        before the database kept window scores (revision 0003).
    retry_errors : re-analyse unchanged files that failed before.
    quick : trust size and mtime (do not read the fingerprint of files whose size and mtime match).
    follow_external_symlinks : also follow symbolic links that point outside the scanned folders.
    file_timeout : seconds a worker may spend on a file without progress (a hung decoder) before it
        is killed and replaced and the file recorded as an error; None = no limit. With a `backend`:
        seconds its worker may run the file's task (its worker is then restarted).
    backend : analyse on a cluster instead of local processes (`tagger.library.distributed.DaskBackend`);
        planning, database writes, tags, progress and the summary stay in this process.
    on_track : called after each analysed track is stored (e.g. `tag_writer`); also for the unchanged
        tracks whose tags do not hold their results yet (``tracks.tags_current``: a tag write that
        failed, a dry run, a scan without tags), so that a tag write is retried until it succeeds.

    SIGINT, SIGTERM and SIGHUP (in the main thread) stop the scan: the files already analysed are
    stored, the workers stopped, and `ScanInterrupted` raised.
    settle_seconds : leave new or changed files modified less than this many seconds ago for a
        later scan (they may still be being written; ``summary.deferred`` says which). The CLI
        passes `tagger.tags.DEFAULT_SETTLE_SECONDS` when it writes tags.
    keep_temp_files : leave the temporary files of killed tag writes where they are, only listing
        them in ``summary.temp_files`` (a dry run changes no file; otherwise stale ones are deleted).
    """
    jobs = check_jobs(jobs)
    with StopSignals() as stop:
        return _scan(roots, db=db, analyser=analyser, jobs=jobs, rescan_stale=rescan_stale, retry_errors=retry_errors,
                     quick=quick, include_hidden=include_hidden, follow_external_symlinks=follow_external_symlinks,
                     file_timeout=file_timeout, commit_every=commit_every, commit_seconds=commit_seconds,
                     predict_batch=predict_batch, progress=progress, on_track=on_track, backend=backend,
                     settle_seconds=settle_seconds, keep_temp_files=keep_temp_files, stop=stop)  # fmt: skip


def _scan(roots: list[str], *, db: Database, analyser: Analyser, jobs, rescan_stale: bool, retry_errors: bool,
          quick: bool, include_hidden: bool, follow_external_symlinks: bool, file_timeout, commit_every: int,
          commit_seconds: float, predict_batch: int, progress, on_track: OnTrack | None, backend,
          settle_seconds: float, keep_temp_files: bool, stop: StopSignals) -> ScanSummary:  # fmt: skip
    t0 = time.monotonic()
    with db.session() as s:
        mv = register_model(s, analyser)
        # (only the roots no earlier scan was given: their union, all that is read of them, is the same,
        # and a beets library's `beet instruments`, whose roots are its items, added every item's path
        # again at every run: 4-5 MB for 50,000 items; the records an older tagger made so are compacted)
        given = compact_scan_roots(s)
        scan_row = M.Scan(roots=json.dumps([r for r in roots if r not in given]), model_version_id=mv.id)
        s.add(scan_row)
        s.flush()
        mv_id, scan_id = mv.id, scan_row.id
    summary = ScanSummary(scan_id=scan_id, model_version=analyser.version)
    writer = ScanWriter(db=db, scan_id=scan_id, model_version_id=mv_id, summary=summary,
                        commit_every=commit_every, commit_seconds=commit_seconds)  # fmt: skip
    crawled = CrawlReport()
    retag: list[FileState] = []
    try:
        if on_track is not None:  # files in formats without tags that this tagger may have learned
            from tagger.tags.rewrite import formats_signature

            writer.retag_untaggable(formats_signature())
        with writer.clock("plan"):
            work = plan_files(roots, writer=writer, mv_id=mv_id, rescan_stale=rescan_stale, retry_errors=retry_errors,
                              quick=quick, include_hidden=include_hidden, progress=progress, t0=t0,
                              follow_external_symlinks=follow_external_symlinks, crawled=crawled,
                              retag=retag if on_track is not None else None, stop=stop)  # fmt: skip
        after_crawl(crawled, summary, keep_temp_files=keep_temp_files)
        summary.unfollowed = list(dict.fromkeys(crawled.external_links))
        summary.not_audio = list(dict.fromkeys(crawled.not_audio))
        work = defer_unsettled(work, settle_seconds, summary)
        writer.commit()
        runner = Runner(analyser=analyser, writer=writer, predict_batch=predict_batch, on_track=on_track,
                        progress=progress, total=len(work), t0=t0, stop=stop)  # fmt: skip
        runner.file_timeout = file_timeout
        if backend is not None and work:
            runner.run_remote(work, backend)
        else:
            jobs, fewer = workers_within_fd_limit(min(jobs, len(work)))
            if fewer:
                log.warning("%s", fewer)
            if jobs == 0:
                runner.run_inline(work)
            else:
                runner.run_processes(work, jobs=jobs)
        # (files whose tags another program just rewrote wait as new ones do: a tag write would be
        # refused as "still being written?" and counted a failure; tags_current false, the next scan writes them)
        runner.retag(defer_unsettled(retag, settle_seconds, summary))
        writer.commit()
        missing = mark_missing(writer.session, roots=roots, seen=writer.seen,
                               unlisted=[folder for folder, _ in crawled.unreadable],
                               unfollowed=crawled.external_links)  # fmt: skip
        summary.missing, summary.empty_roots, summary.merged = missing.marked, missing.kept, missing.merged
        summary.duplicates = missing.duplicates
    except ScanInterrupted:
        # Asked to stop: the open batch holds only whole tracks (each checked in between two
        # files), so it is stored; files still being analysed are redone by the next scan.
        try:
            writer.commit()
        finally:
            writer.abort()
        raise
    except BaseException:
        # Interrupted or failed: drop the uncommitted batch (it may hold a track being written);
        # everything committed stays, and the next scan redoes the rest.
        writer.abort()
        raise
    summary.wall_seconds = time.monotonic() - t0
    writer.finish()
    summary.peak_rss["main"] = peak_rss()
    return summary

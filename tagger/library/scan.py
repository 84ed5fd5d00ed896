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

import filecmp
import functools
import json
import logging
import multiprocessing as mp
import os
import queue as _queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tagger import constants as C
from tagger.aggregate import DEFAULT_AGGREGATION, FamilyResult, TrackResult, aggregate
from tagger.db import models as M
from tagger.db.session import Database, DatabaseError
from tagger.errors import TaggerError, UserError
from tagger.library.analyse import AnalysisConfig, analyse_file, peak_rss, worker_main
from tagger.library.crawl import CrawlReport, crawl
from tagger.library.fingerprint import fingerprint
from tagger.library.lock import scan_lock

log = logging.getLogger(__name__)

DEFAULT_FILE_TIMEOUT = 300.0
"""Seconds a worker may go without progress on one file (see ``scan(file_timeout=...)``)."""


class Analyser(Protocol):
    """What the scan needs from a model (the `tagger.model.ensemble.Ensemble` interface)."""

    families: tuple[str, ...]
    thresholds: np.ndarray
    feature_config: object

    @property
    def version(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def aggregation(self) -> dict: ...
    def predict_features(self, feats: np.ndarray) -> np.ndarray: ...


@dataclass
class Progress:
    """Where a scan stands (passed to the ``progress`` callback)."""

    phase: str
    """'plan' (checking files) or 'analyse'."""
    files_done: int = 0
    files_total: int | None = None
    audio_seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class ScanSummary:
    """What a scan did."""

    scan_id: int
    model_version: str
    found: int = 0
    """Audio files found under the folders."""
    scanned: int = 0
    """Files analysed successfully."""
    failed: int = 0
    skipped: int = 0
    """Unchanged files not re-analysed (including stale ones left alone)."""
    stale: int = 0
    """Skipped files whose results come from another model version (see ``rescan_stale``)."""
    moved: int = 0
    copied: int = 0
    missing: int = 0
    """Tracks newly marked missing."""
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    tags_written: int = 0
    """Files whose tags were written (or would be, in a dry run) by the ``on_track`` hook."""
    tag_errors: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of the new or changed files left for a later scan: modified less than the
    settle time ago, they may still be being written (nothing is stored for them)."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage. Analysis (``decode``, ``resample``, ``framing``, ``features``, and
    ``wait``: workers blocked on a full result queue) is summed over the worker processes; the rest is
    the main process's: ``plan`` (crawl, fingerprints), ``inference``, ``aggregation``, ``database``,
    ``tags`` and ``idle`` (waiting for the workers)."""
    peak_rss: dict = field(default_factory=dict)
    """Peak resident memory in bytes: ``main`` (this process) and ``workers`` (one value per worker)."""

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Nothing failed: no file nor folder in ``errors``, no tag write in ``tag_errors``."""
        return not self.errors and not self.tag_errors and not self.failed

    def to_dict(self) -> dict:
        out = asdict(self)
        out["errors"] = [{"path": p, "error": e} for p, e in self.errors]
        out["deferred"] = [{"path": p, "reason": r} for p, r in self.deferred]
        out["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        out["realtime_factor"] = round(self.realtime_factor, 2)
        out["audio_seconds"] = round(self.audio_seconds, 3)
        out["wall_seconds"] = round(self.wall_seconds, 3)
        return out


@dataclass
class _Work:
    path: str
    size: int
    mtime: float
    fingerprint: str
    track_id: int | None


class ScanInterrupted(TaggerError):
    """The scan was asked to stop (SIGINT, SIGTERM or SIGHUP); what was analysed before is stored."""

    def __init__(self, signum: int, stored: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
        super().__init__(f"interrupted ({name}): the {stored} file(s) analysed by this scan are stored; "
                         "scan again to continue")  # fmt: skip


class _StopSignals:
    """While a scan runs (in the main thread): the first SIGINT, SIGTERM or SIGHUP asks it to stop;
    the scan then stores the files already analysed, stops its workers and raises `ScanInterrupted`
    (within about a second). A second signal interrupts at once (KeyboardInterrupt). A signal that
    was ignored before the scan (``nohup``) stays ignored."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saved: dict = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.NAMES:
            sig = getattr(signal, name, None)
            if sig is None or signal.getsignal(sig) is signal.SIG_IGN:
                continue
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


@dataclass
class _Pending:
    work: _Work
    meta: dict = field(default_factory=dict)
    starts: list = field(default_factory=list)
    silent: list = field(default_factory=list)
    probs: list = field(default_factory=list)


class RemoteBackend(Protocol):
    """Analyses files elsewhere (`tagger.library.distributed`): calls ``store(index, result)`` in the
    calling thread for each finished file, ``result`` as `tagger.library.distributed.analyse_remote`
    returns it."""

    def run(self, paths: Sequence[str], *, analyser: Analyser, config: AnalysisConfig, predict_batch: int,
            store: Callable[[int, dict], None]) -> None: ...  # fmt: skip


OnTrack = Callable[[str, TrackResult, tuple[int, float]], object]
"""Called in the main process after a track's results are stored (e.g. to write tags), with the
file's path, its result and the (size, mtime) it had when it was analysed.

It may raise `TaggerError` (logged, counted in ``tag_errors``). When it returns an object with a
true ``changed`` attribute it counts in ``tags_written``; with a true ``written`` attribute the
file was rewritten, so the track's size, mtime and fingerprint are refreshed (the next scan then
sees the file unchanged).
"""


def tag_writer(
    *, model_version: str, dry_run: bool = False, id3v23: bool = False, keep_mtime: bool = False, scores: bool = False,
    settle_seconds: float = 0.0,
) -> OnTrack:  # fmt: skip
    """An ``on_track`` hook writing the detected instruments into each file with `tagger.tags`.

    A file that changed since it was analysed, or less than ``settle_seconds`` ago, or that another
    program has open for writing, is refused (TagWriteError); per-family scores are written only
    when `scores` is true. Family names are those of the model that produced the result.
    """
    from tagger import tags

    def write(path: str, result: TrackResult, expected: tuple[int, float]):
        return tags.write_instruments(
            path, instruments=result.instruments, model_version=model_version,
            scores=result.scores if scores else None, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run,
            expected=expected, settle_seconds=settle_seconds, families=result.families,
        )  # fmt: skip

    return write


def default_jobs() -> int:
    return os.cpu_count() or 1


def register_model(session: Session, analyser: Analyser) -> M.ModelVersion:
    """The database row of the analyser's model version (created on first use)."""
    row = session.scalar(
        select(M.ModelVersion).where(M.ModelVersion.version == analyser.version, M.ModelVersion.manifest_hash == analyser.hash)
    )
    if row is None:
        fams = list(analyser.families)
        row = M.ModelVersion(
            version=analyser.version,
            manifest_hash=analyser.hash,
            families=json.dumps(fams),
            thresholds=json.dumps({f: round(float(t), 6) for f, t in zip(fams, np.asarray(analyser.thresholds))}),
            aggregation=json.dumps(aggregation_params(analyser), sort_keys=True),
        )
        session.add(row)
        session.flush()
    return row


def aggregation_params(analyser: Analyser) -> dict:
    """The aggregation rule's parameters: the model's calibrated ones over the defaults."""
    params = dict(DEFAULT_AGGREGATION)
    params.update({k: v for k, v in (analyser.aggregation or {}).items() if k in DEFAULT_AGGREGATION})
    return params


def _under(root: str, session: Session):
    """SQL condition: the track's path is `root` or lies under folder `root`.

    SQLite compares text bytewise, so a range scan on the path index does it; other databases may
    use locale collations, so there the prefix is compared exactly with ``substr``.
    """
    prefix = root.rstrip(os.sep) + os.sep
    if session.get_bind().dialect.name == "sqlite":
        inside = (M.Track.path >= prefix) & (M.Track.path < prefix[:-1] + chr(ord(os.sep) + 1))
    else:
        inside = func.substr(M.Track.path, 1, len(prefix)) == prefix
    return inside | (M.Track.path == root)


def check_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    """The folders (or files) to scan in canonical form: absolute, every symbolic link resolved, so
    that a library scanned through a link and directly is one library, its tracks stored once.

    Raises `UserError` for a root that does not exist or is neither a folder nor a regular file
    (checked before a scan creates or locks anything)."""
    out = []
    for root in roots:
        path = os.path.abspath(os.path.expanduser(os.fspath(root)))
        real = os.path.realpath(path)
        if not os.path.exists(real):
            raise UserError(f"no such file or folder: {path}")
        if not (os.path.isdir(real) or os.path.isfile(real)):
            raise UserError(f"{path}: not a folder nor a regular file")
        if real not in out:
            out.append(real)
    return out


def _exclusive(func):
    """Run a scan holding its database's scan lock (`tagger.library.lock`: a second scan of the same
    SQLite database refuses, naming the first one's PID); a database that cannot be written (disk
    full, read-only location, ...) ends the scan with one clear `DatabaseError`, everything
    committed before kept. The roots are checked first (`check_roots`)."""

    @functools.wraps(func)
    def wrapper(roots, *, db: Database, **kwargs):
        roots = check_roots(roots)
        with scan_lock(db.url):
            try:
                return func(roots, db=db, **kwargs)
            except SQLAlchemyError as exc:
                from sqlalchemy.engine import make_url

                where = make_url(db.url).render_as_string(hide_password=True)
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise DatabaseError(
                    f"cannot write the database {where}: {reason}; everything stored before is kept, "
                    "scan again once this is fixed"
                ) from None

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
) -> ScanSummary:
    """Scan folders (or files) into the database; see the module docstring.

    Parameters
    ----------
    jobs : worker processes (None or negative = all cores; 0 = analyse in this process, for debugging).
    rescan_stale : re-analyse tracks whose results come from another model version.
    retry_errors : re-analyse unchanged files that failed before.
    quick : trust size and mtime (do not read the fingerprint of files whose size and mtime match).
    follow_external_symlinks : also follow symbolic links that point outside the scanned folders.
    file_timeout : seconds a worker may spend on a file without progress (a hung decoder) before it
        is killed and replaced and the file recorded as an error; None = no limit. Worker processes only.
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
    """
    with _StopSignals() as stop:
        return _scan(roots, db=db, analyser=analyser, jobs=jobs, rescan_stale=rescan_stale, retry_errors=retry_errors,
                     quick=quick, include_hidden=include_hidden, follow_external_symlinks=follow_external_symlinks,
                     file_timeout=file_timeout, commit_every=commit_every, commit_seconds=commit_seconds,
                     predict_batch=predict_batch, progress=progress, on_track=on_track, backend=backend,
                     settle_seconds=settle_seconds, stop=stop)  # fmt: skip


def _scan(roots: list[str], *, db: Database, analyser: Analyser, jobs, rescan_stale: bool, retry_errors: bool,
          quick: bool, include_hidden: bool, follow_external_symlinks: bool, file_timeout, commit_every: int,
          commit_seconds: float, predict_batch: int, progress, on_track: OnTrack | None, backend,
          settle_seconds: float, stop: _StopSignals) -> ScanSummary:  # fmt: skip
    t0 = time.monotonic()
    jobs = default_jobs() if jobs is None or jobs < 0 else int(jobs)
    with db.session() as s:
        mv = register_model(s, analyser)
        scan_row = M.Scan(roots=json.dumps(roots), model_version_id=mv.id)
        s.add(scan_row)
        s.flush()
        mv_id, scan_id = mv.id, scan_row.id
    summary = ScanSummary(scan_id=scan_id, model_version=analyser.version)
    writer = _Writer(db=db, scan_id=scan_id, model_version_id=mv_id, summary=summary,
                     commit_every=commit_every, commit_seconds=commit_seconds)  # fmt: skip
    crawled = CrawlReport()
    retag: list[_Work] = []
    try:
        with writer.clock("plan"):
            work = _plan(roots, writer=writer, mv_id=mv_id, rescan_stale=rescan_stale, retry_errors=retry_errors,
                         quick=quick, include_hidden=include_hidden, progress=progress, t0=t0,
                         follow_external_symlinks=follow_external_symlinks, crawled=crawled,
                         retag=retag if on_track is not None else None, stop=stop)  # fmt: skip
        _after_crawl(crawled, summary)
        work = _defer_unsettled(work, settle_seconds, summary)
        writer.commit()
        runner = _Runner(analyser=analyser, writer=writer, predict_batch=predict_batch, on_track=on_track,
                         progress=progress, total=len(work), t0=t0, stop=stop)  # fmt: skip
        runner.file_timeout = file_timeout
        if backend is not None and work:
            runner.run_remote(work, backend)
        elif jobs == 0 or len(work) == 0:
            runner.run_inline(work)
        else:
            runner.run_processes(work, jobs=min(jobs, len(work)))
        runner.retag(retag)
        writer.commit()
        summary.missing = _mark_missing(writer.session, roots=roots, seen=writer.seen,
                                        unlisted=[folder for folder, _ in crawled.unreadable])  # fmt: skip
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


class _StageClock:
    """Adds the wall time of ``with clock(stage):`` blocks to a dict; nested blocks count for the
    outermost stage only (a commit inside ``store_result`` is database time once)."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.depth = 0

    @contextmanager
    def __call__(self, stage: str):
        if self.depth:
            yield
            return
        self.depth += 1
        t = time.perf_counter()
        try:
            yield
        finally:
            self.depth -= 1
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t


_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _single_threaded_children():
    """Environment for starting worker processes: one BLAS/OpenMP thread each (numpy reads it when
    it loads, before a worker's own code runs); the workers are the parallelism. Values the user
    set are kept."""
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    for k in _THREAD_ENV:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Writer:
    """The main process's database writer: one session, batched commits."""

    def __init__(self, *, db: Database, scan_id: int, model_version_id: int, summary: ScanSummary,
                 commit_every: int, commit_seconds: float) -> None:  # fmt: skip
        self.session: Session = db.sessionmaker()
        self.scan_id = scan_id
        self.mv_id = model_version_id
        self.summary = summary
        self.commit_every = max(1, commit_every)
        self.commit_seconds = commit_seconds
        self.dirty = 0
        self.last_commit = time.monotonic()
        self.seen: set[str] = set()
        self.clock = _StageClock(summary.stage_seconds)

    def touch(self) -> None:
        self.dirty += 1
        if self.dirty >= self.commit_every or time.monotonic() - self.last_commit >= self.commit_seconds:
            self.commit()

    def maybe_commit(self) -> None:
        """Commit a pending batch that has waited `commit_seconds` (a long file keeps none waiting)."""
        if self.dirty and time.monotonic() - self.last_commit >= self.commit_seconds:
            self.commit()

    def commit(self) -> None:
        with self.clock("database"):
            self._commit()

    def _commit(self) -> None:
        scan = self.session.get(M.Scan, self.scan_id)
        s = self.summary
        scan.scanned, scan.skipped, scan.failed = s.scanned, s.skipped, s.failed
        scan.moved, scan.missing, scan.stale, scan.audio_seconds = s.moved, s.missing, s.stale, s.audio_seconds
        self.session.commit()
        self.dirty = 0
        self.last_commit = time.monotonic()

    def finish(self) -> None:
        try:
            scan = self.session.get(M.Scan, self.scan_id)
            scan.finished_at = M.utcnow()
            self.commit()
        finally:
            self.session.close()

    def abort(self) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def track_for(self, work: _Work) -> M.Track:
        track = self.session.get(M.Track, work.track_id) if work.track_id is not None else None
        if track is None:
            track = self.session.scalar(select(M.Track).where(M.Track.path == work.path))
        if track is None:
            track = M.Track(path=work.path, size=work.size, mtime=work.mtime, fingerprint=work.fingerprint)
            self.session.add(track)
        return track

    def store_result(self, work: _Work, meta: dict, result: TrackResult, duration: float, *,
                     touch: bool = True) -> M.Track:  # fmt: skip
        """Add a track's results to the open batch (``touch=False``: the caller commits, via `touch`, later).
        Its tags are not current until a tag write says so."""
        track = self.track_for(work)
        self._set_file(track, work, meta)
        track.duration = duration
        track.status, track.error, track.error_transient = M.STATUS_OK, None, False
        track.tags_current = False
        track.windows, track.silent_windows = result.windows, result.silent_windows
        track.model_version_id = self.mv_id
        track.analysed_at = M.utcnow()
        _replace_results(self.session, track, result)
        self.summary.scanned += 1
        self.summary.audio_seconds += duration
        if touch:
            self.touch()
        return track

    def store_error(self, work: _Work, meta: dict, reason: str, *, transient: bool = False) -> None:
        """Record a failed file; a `transient` error (the file changed or vanished while it was read)
        is retried by the next scan and never follows a moved or copied file."""
        track = self.track_for(work)
        self._set_file(track, work, meta)
        track.status, track.error, track.error_transient = M.STATUS_ERROR, reason, transient
        track.tags_current = False
        track.model_version_id = None
        track.analysed_at = M.utcnow()
        if track.id is not None:
            self.session.execute(delete(M.Detection).where(M.Detection.track_id == track.id))
            self.session.execute(delete(M.Segment).where(M.Segment.track_id == track.id))
            self.session.execute(delete(M.WindowScores).where(M.WindowScores.track_id == track.id))
            self.session.expire(track, ["detections", "segments", "window_scores"])
        self.summary.failed += 1
        self.summary.errors.append((work.path, reason))
        self.touch()

    def refresh_file(self, work: _Work) -> None:
        """Record a file's new size, mtime and fingerprint after we rewrote it (tags)."""
        try:
            st = os.stat(work.path)
            fp = fingerprint(work.path)
        except (OSError, TaggerError) as exc:
            log.warning("%s: cannot re-read after writing tags: %s", work.path, exc)
            return
        track = self.track_for(work)
        track.size, track.mtime, track.fingerprint = st.st_size, st.st_mtime, fp
        self.touch()

    def _set_file(self, track: M.Track, work: _Work, meta: dict) -> None:
        track.path, track.size, track.mtime, track.fingerprint = work.path, work.size, work.mtime, work.fingerprint
        track.format = meta.get("format", track.format)
        track.sample_rate = meta.get("sample_rate", track.sample_rate)
        track.channels = meta.get("channels", track.channels)
        track.scan_id = self.scan_id
        track.missing_since = None
        track.updated_at = M.utcnow()


def _replace_results(session: Session, track: M.Track, result: TrackResult) -> None:
    if track.id is not None:
        session.execute(delete(M.Detection).where(M.Detection.track_id == track.id))
        session.execute(delete(M.Segment).where(M.Segment.track_id == track.id))
        session.execute(delete(M.WindowScores).where(M.WindowScores.track_id == track.id))
        session.expire(track, ["detections", "segments", "window_scores"])
        session.flush()
    for r in result.results:
        track.detections.append(M.Detection(family=r.family, present=r.present, score=r.score, coverage=r.coverage))
        for a, b in r.segments:
            track.segments.append(M.Segment(family=r.family, start=a, end=b))
    if result.window_scores is not None:
        track.window_scores = M.WindowScores.pack(families=result.families, starts=result.window_starts,
                                                  scores=result.window_scores, window_seconds=C.WINDOW_SECONDS)  # fmt: skip


def _copy_results(session: Session, src: M.Track, dst: M.Track) -> None:
    for d in src.detections:
        dst.detections.append(M.Detection(family=d.family, present=d.present, score=d.score, coverage=d.coverage))
    for g in src.segments:
        dst.segments.append(M.Segment(family=g.family, start=g.start, end=g.end))
    if src.window_scores is not None:
        w = src.window_scores
        dst.window_scores = M.WindowScores(families=w.families, window_seconds=w.window_seconds, n_windows=w.n_windows,
                                           starts=w.starts, scores=w.scores)  # fmt: skip


def _restored_status(track: M.Track) -> str:
    return M.STATUS_ERROR if track.error else M.STATUS_OK


def _same_content(a: str, b: str) -> bool:
    """True when files `a` and `b` hold the same bytes (a fingerprint reads only three chunks)."""
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _plan(roots, *, writer: _Writer, mv_id: int, rescan_stale: bool, retry_errors: bool, quick: bool,
          include_hidden: bool, progress, t0: float, follow_external_symlinks: bool = False,
          crawled: CrawlReport | None = None, retag: list[_Work] | None = None,
          stop: _StopSignals | None = None) -> list[_Work]:  # fmt: skip
    """Crawl and decide per file; moves, copies and touched files are written here. Unchanged
    tracks of this model whose tags do not hold their results are added to `retag` (when given)."""
    s = writer.session
    summary = writer.summary
    work: list[_Work] = []
    existing: dict[str, tuple] = {}
    for root in roots:
        cond = _under(root, s)
        for row in s.execute(
            select(M.Track.path, M.Track.id, M.Track.size, M.Track.mtime, M.Track.fingerprint, M.Track.status,
                   M.Track.model_version_id, M.Track.error_transient, M.Track.tags_current).where(cond)  # fmt: skip
        ):
            existing[row[0]] = tuple(row[1:])
    last_report = 0.0

    def needs_analysis(status: str, track_mv: int | None, transient: bool = False) -> bool:
        if status == M.STATUS_ERROR:
            return retry_errors or transient
        if track_mv != mv_id:
            if rescan_stale:
                return True
            summary.stale += 1
        return False

    for p in crawl(roots, include_hidden=include_hidden, follow_external_symlinks=follow_external_symlinks,
                   report=crawled):  # fmt: skip
        if stop is not None and stop.requested:
            raise ScanInterrupted(stop.signum, 0)
        path = str(p)
        shown = _storable(path)
        writer.seen.add(shown)
        summary.found += 1
        if shown != path:
            w = _Work(shown, 0, 0.0, "", existing.get(shown, (None,))[0])
            writer.store_error(w, {}, "the file name is not valid UTF-8 (shown here with \\x escapes); "
                                      "rename the file to analyse it")  # fmt: skip
            continue
        if progress is not None and time.monotonic() - last_report > 0.2:
            last_report = time.monotonic()
            progress(Progress(phase="plan", files_done=summary.found, elapsed=time.monotonic() - t0))
        try:
            st = os.stat(path)
        except OSError as exc:
            w = _Work(path, 0, 0.0, "", existing.get(path, (None,))[0])
            writer.store_error(w, {}, f"cannot stat file: {exc.strerror or exc}", transient=True)
            continue
        size, mtime = st.st_size, st.st_mtime
        row = existing.get(path)
        try:
            if quick and row is not None and row[1] == size and row[2] == mtime and row[4] != M.STATUS_MISSING:
                fp = row[3]
            else:
                fp = fingerprint(path)
        except TaggerError as exc:
            writer.store_error(_Work(path, size, mtime, "", row[0] if row else None), {}, getattr(exc, "reason", str(exc)),
                               transient=True)  # cannot read it now: cheap to try again
            continue
        if row is not None:
            track_id, old_size, old_mtime, old_fp, status, track_mv, transient, tags_current = row
            if old_size == size and old_fp == fp:
                if old_mtime != mtime or status == M.STATUS_MISSING:
                    track = s.get(M.Track, track_id)
                    track.mtime = mtime
                    if status == M.STATUS_MISSING:
                        status = track.status = _restored_status(track)
                        track.missing_since = None
                    track.updated_at = M.utcnow()
                    writer.touch()
                if needs_analysis(status, track_mv, transient):
                    work.append(_Work(path, size, mtime, fp, track_id))
                else:
                    summary.skipped += 1
                    if retag is not None and status == M.STATUS_OK and track_mv == mv_id and not tags_current:
                        retag.append(_Work(path, size, mtime, fp, track_id))
                continue
            work.append(_Work(path, size, mtime, fp, track_id))
            continue
        # A path the database does not know: moved, copied or new.
        candidates = s.scalars(
            select(M.Track).where(M.Track.fingerprint == fp, M.Track.size == size, M.Track.path != path).order_by(M.Track.id)
        ).all()
        # A transient error belongs to the old file's read, not to its content: it never follows a
        # moved or copied file (that file is analysed as new; the old row goes missing).
        gone = [t for t in candidates if (t.status == M.STATUS_MISSING or not os.path.exists(t.path))
                and not (t.error and t.error_transient)]  # fmt: skip
        if gone:
            track = gone[0]
            old_path = track.path
            if track.status == M.STATUS_MISSING:
                track.status = _restored_status(track)
            track.path, track.mtime, track.missing_since, track.updated_at = path, mtime, None, M.utcnow()
            writer.seen.discard(old_path)
            existing.pop(old_path, None)
            summary.moved += 1
            log.debug("moved: %s -> %s", old_path, path)
            writer.touch()
            if needs_analysis(track.status, track.model_version_id):
                work.append(_Work(path, size, mtime, fp, track.id))
            else:
                summary.skipped += 1
                if (retag is not None and track.status == M.STATUS_OK and track.model_version_id == mv_id
                        and not track.tags_current):  # fmt: skip
                    retag.append(_Work(path, size, mtime, fp, track.id))
            continue
        # A copy gets its original's results only when their whole contents are the same: files that
        # differ outside the fingerprint's three chunks are different audio, analysed on their own.
        done = [t for t in candidates if t.status == M.STATUS_OK and t.model_version_id == mv_id
                and _same_content(t.path, path)]  # fmt: skip
        if done:
            src = done[0]
            dst = M.Track(path=path, size=size, mtime=mtime, fingerprint=fp, duration=src.duration, format=src.format,
                          sample_rate=src.sample_rate, channels=src.channels, status=M.STATUS_OK,
                          windows=src.windows, silent_windows=src.silent_windows, model_version_id=mv_id,
                          scan_id=writer.scan_id, analysed_at=src.analysed_at,
                          tags_current=src.tags_current)  # fmt: skip (the same bytes: the same tags)
            s.add(dst)
            _copy_results(s, src, dst)
            summary.copied += 1
            summary.skipped += 1
            writer.touch()
            if retag is not None and not dst.tags_current:
                retag.append(_Work(path, size, mtime, fp, None))
            continue
        work.append(_Work(path, size, mtime, fp, None))
    return work


def _defer_unsettled(work: list[_Work], settle_seconds: float, summary: ScanSummary) -> list[_Work]:
    """The files to analyse now: those modified less than ``settle_seconds`` ago are left out
    (nothing is stored for them, so the next scan finds them new or changed and analyses them)."""
    from tagger.tags import unsettled_reason

    if settle_seconds <= 0:
        return work
    now = time.time()
    kept = []
    for w in work:
        reason = unsettled_reason(w.mtime, settle_seconds, now=now)
        if reason is None:
            kept.append(w)
        else:
            summary.deferred.append((w.path, reason))
    return kept


def _storable(path: str) -> str:
    """`path` as the database can hold it: a name that is not valid UTF-8 gets ``\\xNN`` escapes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _after_crawl(crawled: CrawlReport, summary: ScanSummary) -> None:
    """Report the folders that could not be listed; delete temp files of killed tag writes."""
    from tagger.tags import remove_stale_temp_files

    for folder, reason in crawled.unreadable:
        summary.errors.append((_storable(folder), f"cannot list the folder: {reason}; its files were left as they are"))
    for path in remove_stale_temp_files(crawled.temp_files):
        log.info("removed %s, left over by an interrupted tag write", path)


def _mark_missing(session: Session, *, roots: Iterable[str], seen: set[str], unlisted: Sequence[str] = ()) -> int:
    """Mark missing the tracks under `roots` whose file is gone (not those under `unlisted` folders,
    which could not be listed: their files may well be there)."""
    n = 0
    now = M.utcnow()
    unlisted_prefixes = tuple(f.rstrip(os.sep) + os.sep for f in unlisted)
    for root in roots:
        cond = _under(root, session) & (M.Track.status != M.STATUS_MISSING)
        gone = [tid for tid, path in session.execute(select(M.Track.id, M.Track.path).where(cond))
                if path not in seen and not path.startswith(unlisted_prefixes) and not os.path.exists(path)]  # fmt: skip
        for i in range(0, len(gone), 500):
            session.execute(
                update(M.Track)
                .where(M.Track.id.in_(gone[i : i + 500]))
                .values(status=M.STATUS_MISSING, missing_since=now, updated_at=now)
            )
        n += len(gone)
    session.commit()
    return n


class _Runner:
    """Feeds work to the workers, runs the analyser on batches of windows, stores finished files."""

    def __init__(self, *, analyser: Analyser, writer: _Writer, predict_batch: int, on_track: OnTrack | None,
                 progress, total: int, t0: float, stop: _StopSignals | None = None) -> None:  # fmt: skip
        self.stop = stop if stop is not None else _StopSignals()
        self.analyser = analyser
        self.writer = writer
        self.predict_batch = max(1, predict_batch)
        self.on_track = on_track
        self.progress = progress
        self.total = total
        self.t0 = t0
        self.done = 0
        self.pending: dict[int, _Pending] = {}
        self.params = aggregation_params(analyser)
        self.config = AnalysisConfig(
            features=analyser.feature_config.to_dict(),
            hop_seconds=float((analyser.aggregation or {}).get("hop_seconds", C.WINDOW_SECONDS)),
        )
        self.families = tuple(analyser.families)
        self.thresholds = np.asarray(analyser.thresholds, dtype=np.float32)
        self.last_report = 0.0
        self.deaths = 0
        self.worker_rss: dict[int, int] = {}  # worker pid -> peak resident bytes it reported
        self.file_timeout: float | None = DEFAULT_FILE_TIMEOUT
        self.progressed: dict[int, float] = {}  # task id -> when a worker last reported on it
        self.last_check = time.monotonic()

    def check_stop(self) -> None:
        """Raise `ScanInterrupted` when a stop was requested (called between files, when every track
        in the open batch is whole)."""
        if self.stop.requested:
            raise ScanInterrupted(self.stop.signum, self.writer.summary.scanned + self.writer.summary.failed)

    # -- message handling -------------------------------------------------------------------------
    def handle(self, messages: list[tuple]) -> None:
        """Apply a list of worker messages in order; windows are predicted together in one batch."""
        wins = [m for m in messages if m[0] == "windows" and m[1] in self.pending and len(m[4])]
        probs_list: list[np.ndarray] = []
        if wins:
            feats = np.concatenate([m[4] for m in wins])
            with self.writer.clock("inference"):
                probs = np.asarray(self.analyser.predict_features(feats), dtype=np.float32).reshape(len(feats), -1)
            splits = np.cumsum([len(m[4]) for m in wins])[:-1]
            probs_list = list(np.split(probs, splits))
        by_msg = {id(m): p for m, p in zip(wins, probs_list)}
        for m in messages:
            kind, task_id = m[0], m[1]
            pend = self.pending.get(task_id)
            if pend is None:
                continue
            if kind == "info":
                pend.meta = m[2]
            elif kind == "windows":
                starts, silent = m[2], m[3]
                full = np.zeros((len(starts), len(self.families)), dtype=np.float32)
                if id(m) in by_msg:
                    full[~silent] = by_msg[id(m)]
                pend.starts.append(np.asarray(starts) / C.SAMPLE_RATE)
                pend.silent.append(np.asarray(silent, dtype=bool))
                pend.probs.append(full)
            elif kind == "done":
                if len(m) > 3:
                    self._add_worker_stats(m[3])
                self.finish(task_id, samples=int(m[2]))
            elif kind == "error":
                self.fail(task_id, str(m[2]))
        self.writer.maybe_commit()

    def _add_worker_stats(self, stats: dict) -> None:
        summary = self.writer.summary
        for stage, sec in (stats.get("seconds") or {}).items():
            summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + float(sec)
        pid = stats.get("pid")
        if pid is not None and pid != os.getpid():
            self.worker_rss[pid] = max(self.worker_rss.get(pid, 0), int(stats.get("maxrss") or 0))
            summary.peak_rss["workers"] = sorted(self.worker_rss.values(), reverse=True)

    def finish(self, task_id: int, *, samples: int) -> None:
        changed = _changed_during_analysis(self.pending[task_id].work)
        if changed is not None:
            self.fail(task_id, changed, transient=True)
            return
        pend = self.pending.pop(task_id)
        duration = samples / C.SAMPLE_RATE
        if pend.starts:
            probs, silent, starts = np.concatenate(pend.probs), np.concatenate(pend.silent), np.concatenate(pend.starts)
        else:
            probs = np.zeros((0, len(self.families)), dtype=np.float32)
            silent, starts = np.zeros(0, dtype=bool), np.zeros(0)
        with self.writer.clock("aggregation"):
            result = aggregate(probs, silent, starts, families=self.families, thresholds=self.thresholds,
                               duration=duration, **self.params)  # fmt: skip
        # With a tag hook, the batch is committed only after the tags are written: a scan killed in
        # between has not stored the track, so the next scan analyses it (and tags it) again.
        with self.writer.clock("database"):
            track = self.writer.store_result(pend.work, pend.meta, result, duration, touch=self.on_track is None)
        self.done += 1
        if self.on_track is not None:
            self._write_tags(track, pend.work, result)
        self.report()

    def _write_tags(self, track: M.Track, work: _Work, result: TrackResult) -> None:
        """Call the tag hook; the track's ``tags_current`` records whether the file's tags now hold
        `result` (false after a failed write or a dry run that found changes: the next scan retries)."""
        try:
            with self.writer.clock("tags"):
                change = self.on_track(work.path, result, (work.size, work.mtime))
        except TaggerError as exc:
            log.warning("%s", exc)
            self.writer.summary.tag_errors += 1
        else:
            changed, written = getattr(change, "changed", False), getattr(change, "written", False)
            if changed:
                self.writer.summary.tags_written += 1
            track.tags_current = bool(written or not changed)
            if written:
                with self.writer.clock("database"):
                    self.writer.refresh_file(work)
        self.writer.touch()

    def retag(self, work: list[_Work]) -> None:
        """Write the stored results of unchanged tracks into their files (their tags did not hold them)."""
        by_family = {f: i for i, f in enumerate(self.families)}
        for w in work:
            self.check_stop()
            track = self.writer.track_for(w)
            results = sorted(
                (FamilyResult(d.family, d.present, d.score, d.coverage) for d in track.detections),
                key=lambda r: by_family.get(r.family, len(by_family)),
            )
            result = TrackResult(families=self.families, results=results, windows=track.windows,
                                 silent_windows=track.silent_windows)  # fmt: skip
            self._write_tags(track, w, result)

    def run_remote(self, work: list[_Work], backend: RemoteBackend) -> None:
        """Files analysed by `backend` (window probabilities computed there); aggregated and stored here."""
        self.report(force=True)

        def store(task_id: int, result: dict) -> None:
            self.check_stop()
            pend = self.pending[task_id] = _Pending(work[task_id], meta=result.get("meta") or {})
            if "error" in result:
                self.fail(task_id, str(result["error"]))
            else:
                pend.starts.append(np.asarray(result["starts"]) / C.SAMPLE_RATE)
                pend.silent.append(np.asarray(result["silent"], dtype=bool))
                pend.probs.append(np.asarray(result["probs"], dtype=np.float32))
                if result.get("stats"):
                    self._add_worker_stats(result["stats"])
                self.finish(task_id, samples=int(result["samples"]))
            self.writer.maybe_commit()

        backend.run([w.path for w in work], analyser=self.analyser, config=self.config,
                    predict_batch=self.predict_batch, store=store)  # fmt: skip

    def fail(self, task_id: int, reason: str, *, transient: bool = False) -> None:
        pend = self.pending.pop(task_id)
        with self.writer.clock("database"):
            self.writer.store_error(pend.work, pend.meta, reason, transient=transient)
        self.done += 1
        self.report()

    def report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self.last_report > 0.2 or self.done == self.total:
            self.last_report = now
            self.progress(Progress(phase="analyse", files_done=self.done, files_total=self.total,
                                   audio_seconds=self.writer.summary.audio_seconds, elapsed=now - self.t0))  # fmt: skip

    # -- execution ----------------------------------------------------------------------------------
    def run_inline(self, work: list[_Work]) -> None:
        self.report(force=True)
        for task_id, w in enumerate(work):
            self.check_stop()
            self.pending[task_id] = _Pending(w)
            batch: list[tuple] = []
            n = 0
            for msg in analyse_file(task_id, w.path, config=self.config):
                batch.append(msg)
                if msg[0] == "windows":
                    n += len(msg[4])
                if n >= self.predict_batch:
                    self.handle(batch)
                    batch, n = [], 0
            self.handle(batch)

    def run_processes(self, work: list[_Work], *, jobs: int) -> None:
        ctx = mp.get_context("spawn")
        tasks = ctx.Queue()
        results = ctx.Queue(maxsize=4 * jobs)

        def start():
            proc = ctx.Process(target=worker_main, args=(tasks, results, self.config, os.getpid()), daemon=True)
            with _single_threaded_children():
                proc.start()
            return proc

        procs = [start() for _ in range(jobs)]
        holder: dict[int, int] = {}  # worker pid -> task id it works on
        next_task = 0
        max_ahead = 2 * jobs
        self.report(force=True)
        stopping = False
        try:
            while next_task < len(work) or self.pending:
                self.check_stop()
                while next_task < len(work) and len(self.pending) < max_ahead:
                    self.pending[next_task] = _Pending(work[next_task])
                    tasks.put((next_task, work[next_task].path))
                    next_task += 1
                try:
                    with self.writer.clock("idle"):
                        first = results.get(timeout=0.5)
                except _queue.Empty:
                    self._check_workers(procs, holder, start)
                    continue
                batch, n = [first], len(first[4]) if first[0] == "windows" else 0
                while n < self.predict_batch:
                    try:
                        m = results.get_nowait()
                    except _queue.Empty:
                        break
                    batch.append(m)
                    if m[0] == "windows":
                        n += len(m[4])
                now = time.monotonic()
                for m in batch:
                    if m[0] == "start":
                        holder[m[2]] = m[1]
                    self.progressed[m[1]] = now
                self.handle([m for m in batch if m[0] != "start"])
                if now - self.last_check >= 1.0:  # busy workers must not hide a dead or hung one
                    self._check_workers(procs, holder, start)
        except BaseException:
            stopping = True  # interrupted or failed: the workers' files in progress are dropped
            raise
        finally:
            _stop_workers(procs, tasks, now=stopping)
            tasks.close()
            results.close()
            tasks.join_thread()
            results.cancel_join_thread()

    def _check_workers(self, procs: list, holder: dict[int, int], start: Callable[[], object]) -> None:
        """A worker that died (e.g. a decoder crash) fails the file it held and is replaced; so does a
        worker that made no progress on its file for `file_timeout` seconds (a hung decoder), after
        being stopped (SIGTERM, which also ends its decoder subprocess; SIGKILL if that is ignored)."""
        now = self.last_check = time.monotonic()
        for i, p in enumerate(procs):
            if p.is_alive():
                task_id = holder.get(p.pid)
                if (self.file_timeout is not None and task_id in self.pending
                        and now - self.progressed.get(task_id, now) > self.file_timeout):  # fmt: skip
                    log.warning("scan worker %s: no progress on %s for %g s; restarting it",
                                p.pid, self.pending[task_id].work.path, self.file_timeout)  # fmt: skip
                    _stop_process(p)
                    holder.pop(p.pid, None)
                    self.fail(task_id, f"timed out after {self.file_timeout:g} s without progress (a hung decoder?)")
                    procs[i] = start()
                continue
            task_id = holder.pop(p.pid, None)
            log.warning("scan worker %s died (exit code %s)", p.pid, p.exitcode)
            if task_id is not None and task_id in self.pending:
                self.fail(task_id, f"the decoder crashed (worker exit code {p.exitcode})")
            else:
                self.deaths += 1
                if self.deaths > 2 * len(procs):
                    raise TaggerError(f"scan workers keep exiting (last exit code {p.exitcode}); see the log above")
            procs[i] = start()


def _changed_during_analysis(work: _Work) -> str | None:
    """Why the results of `work` must not be stored (its file changed or vanished meanwhile), or None."""
    try:
        st = os.stat(work.path)
    except FileNotFoundError:
        return "the file disappeared while it was being analysed"
    except OSError as exc:
        return f"cannot stat the file after analysis: {exc.strerror or exc}"
    if st.st_size == work.size and st.st_mtime == work.mtime:
        return None
    if st.st_size == work.size and work.fingerprint:
        try:
            if fingerprint(work.path) == work.fingerprint:
                return None  # only touched
        except TaggerError:
            pass
    return "the file changed while it was being analysed; the next scan analyses it again"


def _stop_workers(procs: list, tasks, *, now: bool) -> None:
    """End the worker processes: after their current file (a ``None`` task each), or, `now`, at once
    (SIGTERM: a worker unwinds, ending its decoder subprocess, without flushing its queue), then
    SIGKILL for any still there after a grace period."""
    if now:
        for p in procs:
            if p.is_alive():
                p.terminate()
    else:
        for _ in procs:
            tasks.put(None)
    deadline = time.monotonic() + (1.0 if now else 5.0)
    for p in procs:
        p.join(timeout=max(0.05, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)


def _stop_process(proc, grace: float = 2.0) -> None:
    """Stop a worker: SIGTERM (it exits cleanly, ending its decoder subprocess), then SIGKILL."""
    proc.terminate()
    proc.join(timeout=grace)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=grace)

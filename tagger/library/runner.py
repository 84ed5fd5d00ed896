"""The scan's runner (main process): feeds files to the workers (or analyses them in this process,
or hands them to a cluster), runs the analyser on batches of windows, assembles each finished file
(`tagger.library.assemble.TrackAssembler`), stores it and calls the tag hook.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait

import numpy as np

from tagger import constants as C
from tagger.aggregate import DEFAULT_AGGREGATION, FamilyResult, TrackResult
from tagger.db import models as M
from tagger.db.scan_writer import FileState, ScanWriter
from tagger.errors import AudioReadError, TaggerError, UntaggableError
from tagger.library.analyse import AnalysisConfig, analyse_file, worker_main
from tagger.library.assemble import TrackAssembler
from tagger.library.defaults import DEFAULT_FILE_TIMEOUT
from tagger.fingerprint import content_hash, fingerprint, read_back
from tagger.library.messages import Done, Failed, FileInfo, Message, RemoteResult, Started, Windows
from tagger.library.state import AnalysedFile, Analyser, OnTrack, Progress, ScanInterrupted, StopSignals
from tagger.library.workers import Worker, start_worker, stop_process, stop_workers

log = logging.getLogger("tagger.library.scan")

START_TIMEOUT = 120.0
"""Seconds a new worker may take to start (imports, warm-up) and claim its first file, when the file
timeout is shorter: on a loaded machine start-up alone can take tens of seconds."""

TASKS_AHEAD = 2
"""Files sent to a worker at once: the one it analyses and the next, waiting in its pipe so that it
goes on without waiting for the main process (not near the end of a scan: `Runner._feed`)."""


def aggregation_params(analyser: Analyser) -> dict:
    """The aggregation rule's parameters: the model's calibrated ones over the defaults."""
    params = dict(DEFAULT_AGGREGATION)
    params.update({k: v for k, v in (analyser.aggregation or {}).items() if k in DEFAULT_AGGREGATION})
    return params


class _Pending:
    """A file being analysed: what the planning found, and its assembler."""

    def __init__(self, work: FileState, assembler: TrackAssembler) -> None:
        self.work = work
        self.assembler = assembler

    @property
    def meta(self) -> dict:
        return self.assembler.meta


class Runner:
    """Feeds work to the workers, runs the analyser on batches of windows, stores finished files."""

    def __init__(self, *, analyser: Analyser, writer: ScanWriter, predict_batch: int, on_track: OnTrack | None,
                 progress, total: int, t0: float, stop: StopSignals | None = None) -> None:  # fmt: skip
        self.stop = stop if stop is not None else StopSignals()
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
    def new_pending(self, work: FileState) -> _Pending:
        return _Pending(work, TrackAssembler(families=self.families, thresholds=self.thresholds, params=self.params))

    def handle(self, messages: list[Message]) -> None:
        """Apply a list of worker messages in order; windows are predicted together in one batch."""
        wins = [m for m in messages if isinstance(m, Windows) and m.task_id in self.pending and len(m.features)]
        probs_list: list[np.ndarray] = []
        if wins:
            feats = np.concatenate([m.features for m in wins])
            with self.writer.clock("inference"):
                probs = np.asarray(self.analyser.predict_features(feats), dtype=np.float32).reshape(len(feats), -1)
            probs_list = list(np.split(probs, np.cumsum([len(m.features) for m in wins])[:-1]))
        by_msg = {id(m): p for m, p in zip(wins, probs_list)}
        for m in messages:
            pend = self.pending.get(m.task_id)
            if pend is None:
                continue
            if isinstance(m, FileInfo):
                pend.assembler.meta = m.meta
            elif isinstance(m, Windows):
                pend.assembler.add_scored(m.starts, m.silent, by_msg.get(id(m)))
            elif isinstance(m, Done):
                self._add_worker_stats(m.stats)
                self.finish(m.task_id, samples=int(m.samples), note=m.note)
            elif isinstance(m, Failed):
                self.fail_file(m.task_id, str(m.reason), unreadable=m.unreadable)
        self.writer.maybe_commit()

    def _add_worker_stats(self, stats: dict | None) -> None:
        if not stats:
            return
        summary = self.writer.summary
        for stage, sec in (stats.get("seconds") or {}).items():
            summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + float(sec)
        pid = stats.get("pid")
        if pid is not None and pid != os.getpid():
            self.worker_rss[pid] = max(self.worker_rss.get(pid, 0), int(stats.get("maxrss") or 0))
            summary.peak_rss["workers"] = sorted(self.worker_rss.values(), reverse=True)

    def finish(self, task_id: int, *, samples: int, note: str = "") -> None:
        pending = self.pending[task_id]
        changed = changed_during_analysis(pending.work, (pending.meta or {}).get("content_hash"))
        if changed is not None:  # (its stored results, if any, stay until the next scan analyses it)
            self.fail(task_id, changed, transient=True, keep_results=True)
            return
        duration = samples / C.SAMPLE_RATE
        try:
            with self.writer.clock("aggregation"):
                result = self.pending[task_id].assembler.result(samples=samples)
        except AudioReadError as exc:  # (NaN scores: the file fails, the scan goes on)
            self.fail(task_id, exc.reason)
            return
        pend = self.pending.pop(task_id)
        # With a tag hook, the track is committed before its tags are written (``tags_current``
        # false): a file never holds results the database lacks (a full disk, a lock held past the
        # wait, a kill). A scan stopped before the write writes the tags next time without
        # re-analysis; one stopped after it, before its new file facts are committed, finds the file
        # changed and analyses it again.
        with self.writer.clock("database"):
            track = self.writer.store_result(pend.work, pend.meta, result, duration, touch=self.on_track is None,
                                             note=note)
            if self.on_track is not None:
                self.writer.commit()
        if note:
            self.writer.summary.analysed_in_part.append((pend.work.path, note))
        self.done += 1
        if self.on_track is not None:
            self._write_tags(track, pend.work, result)
        self.report()

    def _write_tags(self, track: M.Track, work: FileState, result: TrackResult) -> None:
        """Call the tag hook with the file as it was analysed (the hook's write refuses another file
        moved over it since); the track's ``tags_current`` records whether the file's tags now hold
        `result` (false after a failed write or a dry run that found changes: the next scan retries)."""
        analysed = AnalysedFile(size=work.size, mtime=work.mtime, fingerprint=work.fingerprint or None,
                                inode=None if work.inode is None else (work.device, work.inode),
                                content_hash=track.content_hash, ctime_ns=work.ctime_ns)  # fmt: skip
        try:
            with self.writer.clock("tags"):
                change = self.on_track(work.path, result, analysed)
        except UntaggableError as exc:  # nothing to write: its results are in the database
            self.writer.summary.untaggable.append((work.path, exc.reason))
            track.tags_current = True  # (until a tagger that can tag more: `retag_untaggable`)
            from tagger.tags.rewrite import formats_signature

            track.untaggable_formats = formats_signature()
        except TaggerError as exc:
            log.debug("%s", exc)
            self.writer.summary.tag_errors += 1
            self.writer.summary.tag_failures.append((work.path, getattr(exc, "reason", str(exc))))
        else:
            changed, written = getattr(change, "changed", False), getattr(change, "written", False)
            track.untaggable_formats = None
            if changed:
                self.writer.summary.tags_written += 1
            track.tags_current = bool(written or not changed)
            if written and not self._refresh(work, change):
                track.tags_current = False  # the next scan looks at the file again
        self.writer.touch()

    def _refresh(self, work: FileState, change) -> bool:
        """Record the file's new size, mtime, fingerprint and content hash after the tag hook rewrote
        it; False (nothing recorded: the database keeps the file's old facts, so the next scan sees
        it changed) when it cannot be read, or is no longer what the write left: another program
        changed it right after (`tagger.fingerprint.read_back`)."""
        try:
            facts = read_back(work.path, size=getattr(change, "size", None), mtime=getattr(change, "mtime", None),
                              ctime_ns=getattr(change, "ctime_ns", None))
        except TaggerError as exc:
            log.warning("%s: cannot re-read after writing tags: %s", work.path, exc)
            return False
        if facts is None:
            log.warning("%s: changed by another program right after its tags were written; left for the next scan",
                        work.path)  # fmt: skip
            return False
        with self.writer.clock("database"):
            size, mtime, fp, digest = facts
            self.writer.refresh_file(work, size=size, mtime=mtime, fingerprint=fp, content_hash=digest,
                                     ctime_ns=getattr(change, "ctime_ns", None),
                                     audio_digest=getattr(change, "audio_digest", None))
        return True

    def retag(self, work: list[FileState]) -> None:
        """Write the stored results of unchanged tracks into their files (their tags did not hold them)."""
        by_family = {f: i for i, f in enumerate(self.families)}
        for w in work:
            self.check_stop()
            # (read without flushing the previous file's new facts: a flush takes SQLite's write lock,
            # which the tag write below would then hold; they go in with the batch's commit)
            with self.writer.session.no_autoflush:
                track = self.writer.track_for(w)
                results = sorted(
                    (FamilyResult(d.family, d.present, d.score, d.coverage) for d in track.detections),
                    key=lambda r: by_family.get(r.family, len(by_family)),
                )
            result = TrackResult(families=self.families, results=results, windows=track.windows,
                                 silent_windows=track.silent_windows)  # fmt: skip
            # The file was planned at the start of the scan: another file of the same size and mtime
            # moved over it since would pass the tag write's own size/mtime check.
            changed = changed_during_analysis(w, track.content_hash)
            if changed is not None and self._tagged_meanwhile(track, w.path):
                continue  # (`tagger tag` wrote and recorded it since the plan: done, not an error)
            if changed is not None:
                self.writer.summary.tag_errors += 1
                self.writer.summary.tag_failures.append((w.path, changed.replace("being analysed", "scanned")))
                track.tags_current = False
                continue
            self._write_tags(track, w, result)

    def _tagged_meanwhile(self, track: M.Track, path: str) -> bool:
        """Whether the track, read again, is recorded as tagged for the file as it is now (size, mtime
        and ctime): another tagger command wrote its tags and recorded the file it left since the plan."""
        session = self.writer.session
        with session.no_autoflush:
            session.refresh(track)
        try:
            st = os.stat(path)
        except OSError:
            return False
        return bool(track.tags_current and track.status == M.STATUS_OK and track.model_version_id == self.writer.mv_id
                    and (track.size, track.mtime) == (st.st_size, st.st_mtime)
                    and track.ctime_ns is not None and track.ctime_ns == st.st_ctime_ns)  # fmt: skip

    def run_remote(self, work: list[FileState], backend) -> None:
        """Files analysed by `backend` (window probabilities computed there); aggregated and stored here."""
        self.report(force=True)

        def store(task_id: int, result: RemoteResult) -> None:
            self.check_stop()
            pend = self.pending[task_id] = self.new_pending(work[task_id])
            pend.assembler.meta = result.meta or {}
            if result.error is not None:
                self.fail_file(task_id, str(result.error), unreadable=result.unreadable)
            else:
                pend.assembler.add(result.starts, result.silent, result.probs)
                self._add_worker_stats(result.stats)
                self.finish(task_id, samples=int(result.samples), note=result.note)
            self.writer.maybe_commit()

        def poll() -> None:  # while the cluster holds every file in flight
            self.check_stop()
            self.writer.maybe_commit()  # (was: the batch waited, uncommitted, for the next file back)

        backend.run([w.path for w in work], analyser=self.analyser, config=self.config,
                    predict_batch=self.predict_batch, store=store, poll=poll, file_timeout=self.file_timeout)  # fmt: skip

    def fail_file(self, task_id: int, reason: str, *, unreadable: bool = False) -> None:
        """Record the analysis of a file as failed for `reason`, or, when the file changed or vanished
        meanwhile (another program rewriting it makes the decoder fail), as changed: its decoder's
        complaint says nothing of the file as it is now; the next scan analyses it again. A file
        whose bytes could not be read (``unreadable``: an I/O error, a failing drive) is such an
        error too: its stored results stay, and the next scan tries it again."""
        pend = self.pending[task_id]
        changed = changed_during_analysis(pend.work, (pend.meta or {}).get("content_hash"))
        if changed is not None:
            self.fail(task_id, changed, transient=True, keep_results=True)
        elif unreadable:
            self.fail(task_id, reason, transient=True, keep_results=True)
        else:
            self.fail(task_id, reason)

    def fail(self, task_id: int, reason: str, *, transient: bool = False, keep_results: bool = False) -> None:
        pend = self.pending.pop(task_id)
        with self.writer.clock("database"):
            self.writer.store_error(pend.work, pend.meta, reason, transient=transient, keep_results=keep_results)
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
    def run_inline(self, work: list[FileState]) -> None:
        self.report(force=True)
        for task_id, w in enumerate(work):
            self.check_stop()
            self.pending[task_id] = self.new_pending(w)
            batch: list[Message] = []
            n = 0
            for msg in analyse_file(task_id, w.path, config=self.config):
                batch.append(msg)
                if isinstance(msg, Windows):
                    n += len(msg.features)
                if n >= self.predict_batch:
                    self.handle(batch)
                    batch, n = [], 0
            self.handle(batch)

    def run_processes(self, work: list[FileState], *, jobs: int) -> None:
        """Analyse `work` in `jobs` worker processes (`tagger.library.analyse.worker_main`), each with
        a pipe of its own to this process (`tagger.library.workers.Worker`): up to `TASKS_AHEAD`
        files are sent to a worker ahead, and its claims and messages are read from all the pipes
        at once (`multiprocessing.connection.wait`). The workers share no queue or lock, so a worker
        killed at any moment (the OOM killer, ``kill -9``, a decoder crashing in-process) stops
        nothing but itself: its pipe ends, the file it had claimed fails, the files sent to it that
        it had not opened go to the others, and a new worker takes its place (`_check_workers`)."""
        ctx = mp.get_context("spawn")

        def start() -> Worker:
            return start_worker(ctx, worker_main, (self.config, os.getpid()))

        workers = [start() for _ in range(jobs)]
        todo: deque[int] = deque(range(len(work)))  # not sent, or sent to a worker that died before opening it
        self.report(force=True)
        stopping = False
        try:
            while todo or self.pending:
                self.check_stop()
                self._feed(workers, todo, work)
                with self.writer.clock("idle"):
                    ready = wait([w.conn for w in workers if not w.ended], timeout=0.5)
                batch = self._receive(workers, ready)
                self.handle([m for m in batch if not isinstance(m, Started)])
                # (busy workers must not hide a dead or hung one)
                if not batch or any(w.ended for w in workers) or time.monotonic() - self.last_check >= 1.0:
                    self._check_workers(workers, todo, start)
        except BaseException:
            stopping = True  # interrupted or failed: the workers' files in progress are dropped
            raise
        finally:
            stop_workers(workers, now=stopping)

    def _feed(self, workers: list[Worker], todo: deque[int], work: list[FileState]) -> None:
        """Send each worker without a file its next one; then, while more files are left than
        workers, one more each, up to `TASKS_AHEAD` (it waits in the worker's pipe, so that the
        worker goes on without waiting for the main process). Near the end of the scan no file is
        sent ahead: it could wait there behind a long file while another worker sits idle."""
        for slot in range(TASKS_AHEAD):
            for w in workers:
                if not todo or (slot and len(todo) <= len(workers)):
                    return
                if w.ended or len(w.sent) > slot:
                    continue
                task_id = todo[0]
                try:
                    w.conn.send((task_id, work[task_id].path))
                except OSError:  # gone: `_check_workers` replaces it
                    w.ended = True
                    continue
                todo.popleft()
                if not w.sent:
                    w.given = time.monotonic()
                w.sent.append(task_id)
                if task_id not in self.pending:
                    self.pending[task_id] = self.new_pending(work[task_id])

    def _receive(self, workers: list[Worker], ready: list) -> list[Message]:
        """Read the messages waiting on the workers' pipes, one read per ready pipe in turn
        (`tagger.library.workers.MessageReader`: never waiting for a message a worker has only
        partly written), until they hold `predict_batch` windows or no pipe is ready. A pipe that
        ends (a message cut short included) marks its worker `ended`."""
        by_conn = {w.conn: w for w in workers}
        batch: list[Message] = []
        n = 0
        while ready:
            for conn in ready:
                for m in self._read(by_conn[conn]):
                    batch.append(m)
                    n += len(m.features) if isinstance(m, Windows) else 0
            if n >= self.predict_batch:
                break
            ready = wait([w.conn for w in workers if not w.ended], timeout=0)
        return batch

    def _read(self, w: Worker) -> list[Message]:
        """The messages one read of worker `w`'s pipe completed, its claims and finished files
        noted; none when the pipe ended (then `w` is marked ended)."""
        try:
            messages = w.reader.read()
        except OSError:  # (as good as ended)
            messages = None
        except Exception as exc:  # not a message (unpickling failed): the worker is stopped and replaced
            log.warning("scan worker %s sent something that is not a message: %r", w.pid, exc)
            messages = None
        if messages is None:  # the worker is gone (maybe killed in the middle of a message)
            w.ended = True
            return []
        w.heard = time.monotonic()
        for m in messages:
            self.progressed[m.task_id] = w.heard
            if isinstance(m, Started):
                w.current = m.task_id
            elif isinstance(m, (Done, Failed)):
                if m.task_id in w.sent:
                    w.sent.remove(m.task_id)
                if w.current == m.task_id:
                    w.current = None
                self.deaths = 0  # the workers do work: deaths until now were not a worker that cannot start
        return messages

    def _drain(self, w: Worker) -> None:
        """Handle what a dead worker wrote before it died (its pipe read to its end)."""
        batch: list[Message] = []
        while not w.ended and w.conn.poll(0):
            batch.extend(self._read(w))
        self.handle([m for m in batch if not isinstance(m, Started)])

    def _check_workers(self, workers: list[Worker], todo: deque[int], start: Callable[[], Worker]) -> None:
        """A worker that died (e.g. a decoder crash, or killed) fails the file it had claimed and is
        replaced; so does a worker that made no progress on its file for `file_timeout` seconds (a
        hung decoder), after being stopped (SIGTERM, which also ends its decoder subprocess; SIGKILL
        if that is ignored). The files sent to either that it had not opened go back to `todo`.
        Everything a dead worker wrote before it died is handled first: its last claim names the
        file it held. Deaths without a file, more than twice the workers with no file finished in
        between, end the scan (workers that cannot start)."""
        now = self.last_check = time.monotonic()
        for i, w in enumerate(workers):
            if not w.ended and w.proc.is_alive():
                task_id = w.current
                if (self.file_timeout is not None and task_id in self.pending
                        and now - self.progressed.get(task_id, now) > self.file_timeout):  # fmt: skip
                    log.warning("scan worker %s: no progress on %s for %g s; restarting it",
                                w.pid, self.pending[task_id].work.path, self.file_timeout)  # fmt: skip
                    stop_process(w.proc)
                    w.conn.close()
                    self._requeue(w, todo)
                    self.fail_file(task_id, f"timed out after {self.file_timeout:g} s without progress (a hung decoder?)")
                    workers[i] = start()
                elif task_id is None and w.sent:
                    self._check_silent(w, todo, now, len(workers))
                    if w.ended:
                        workers[i] = start()
                continue
            self._drain(w)
            # A worker stopped by the signal that stops the scan (SIGTERM to the process group) fails
            # no file: the scan stops here, and the next one analyses the files in progress.
            self.check_stop()
            stop_process(w.proc)  # (its pipe ended: it is exiting; reaped here, no zombie left)
            w.conn.close()
            self._requeue(w, todo)
            task_id = w.current
            log.warning("scan worker %s died (exit code %s)", w.pid, w.proc.exitcode)
            if task_id is not None and task_id in self.pending:
                self.fail_file(task_id, f"the decoder crashed (worker exit code {w.proc.exitcode})")
            else:
                self.deaths += 1
                if self.deaths > 2 * len(workers):
                    raise TaggerError(f"scan workers keep exiting (last exit code {w.proc.exitcode}); see the log above")
            workers[i] = start()

    def _check_silent(self, w: Worker, todo: deque[int], now: float, n_workers: int) -> None:
        """A worker that holds files it has not claimed and has said nothing for the file timeout
        (for `START_TIMEOUT` at least, if it has never spoken: it may still be starting up; that
        one also without a file timeout, which is for files) is
        stopped (paused by SIGSTOP or a debugger, or hung in its start-up) and marked `ended`; its
        files go back to `todo` (it opened none: none fails). Such workers, more than twice the
        workers with no file finished in between, end the scan: they cannot start."""
        limit = self.file_timeout if w.heard is not None else max(self.file_timeout or 0.0, START_TIMEOUT)
        if limit is None or now - w.silent_since() <= limit:
            return
        what = "after it started" if w.heard is None else "while it held files it had not taken"
        log.warning("scan worker %s: said nothing for %g s %s; restarting it", w.pid, limit, what)
        stop_process(w.proc)
        w.conn.close()
        w.ended = True
        self._requeue(w, todo)
        self.deaths += 1
        if self.deaths > 2 * n_workers:
            raise TaggerError(f"scan workers keep hanging before they take a file (the last, process {w.pid}, said "
                              f"nothing for {limit:g} s {what}); see the log above")  # fmt: skip

    @staticmethod
    def _requeue(w: Worker, todo: deque[int]) -> None:
        """The files sent to a worker that is gone and that it had not opened: first in line again."""
        todo.extendleft(reversed(w.unclaimed()))
        w.sent.clear()


def changed_during_analysis(work: FileState, whole: str | None = None) -> str | None:
    """Why the results of `work` must not be stored (its file changed or vanished meanwhile), or None.

    Size and mtime alone do not tell: another file of the same size and mtime moved over it (``mv``
    of a file unpacked from the same archive) has another inode. Another inode, mtime or ctime
    (``touch``, ``chmod``, written in place with its mtime set back) counts as unchanged only while
    the fingerprint is (not the inode alone: some network and FUSE filesystems number their files
    anew from one look to the next), and, for another inode or ctime, while the whole content hashes
    to ``whole`` (the hash of the bytes analysed, when known): two stems silent where the fingerprint
    reads have the same fingerprint, and one written over the other in place keeps its inode."""
    changed = "the file changed while it was being analysed; the next scan analyses it again"
    try:
        st = os.stat(work.path)
    except FileNotFoundError:
        return "the file disappeared while it was being analysed"
    except OSError as exc:
        return f"cannot stat the file after analysis: {exc.strerror or exc}"
    same_inode = work.inode is None or (st.st_dev, st.st_ino) == (work.device, work.inode)
    same_ctime = work.ctime_ns is None or st.st_ctime_ns == work.ctime_ns
    if st.st_size == work.size and st.st_mtime == work.mtime and same_ctime and same_inode:
        return None
    if st.st_size == work.size and work.fingerprint:
        try:
            if fingerprint(work.path) == work.fingerprint and ((same_inode and same_ctime) or whole is None
                                                               or content_hash(work.path) == whole):
                return None  # only touched (or numbered anew)
        except TaggerError:
            pass
    return changed

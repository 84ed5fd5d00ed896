"""The scan's runner (main process): feeds files to the workers (or analyses them in this process,
or hands them to a cluster), runs the analyser on batches of windows, assembles each finished file
(`tagger.library.assemble.TrackAssembler`), stores it and calls the tag hook. The worker processes'
supervision is `tagger.library.supervisor`'s, the tag writes `tagger.library.taghook`'s (both mixed
into `Runner`).
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

from tagger import constants as C
from tagger.aggregate import aggregation_params as _params
from tagger.db.scan_writer import FileState, ScanWriter
from tagger.errors import AudioReadError, TaggerError
from tagger.fingerprint import fingerprint
from tagger.library.analyse import AnalysisConfig, analyse_file
from tagger.library.assemble import TrackAssembler
from tagger.library.defaults import DEFAULT_FILE_TIMEOUT
from tagger.library.messages import Done, Failed, FileInfo, Message, RemoteResult, Windows
from tagger.library.recheck import changed_during_analysis
from tagger.library.state import Analyser, OnTrack, Progress, ScanInterrupted, StopSignals
from tagger.library.supervisor import WorkerSupervisor
from tagger.library.taghook import TagHook


DECODERS_FAILURES = ("decoding failed: ", "ffmpeg could not decode the file", "ffmpeg did not exit after decoding",
                     "ffprobe timed out", "ffprobe returned unreadable metadata", "not a readable audio file (",
                     "libsndfile, reading it as an MP3, stopped")  # fmt: skip
"""How the reasons begin that a decoding library gave, not tagger's own checks of the audio
(`tagger.audio.decoders`, `tagger.audio.probe`, `tagger.audio.mp3`): on a cluster worker they may be
that machine's ffmpeg or libsndfile (another build, a broken install) as much as the file's. Not
'not a readable audio file: ' (a header running past the file's end: tagger's own reading of it)."""


def where_it_failed(result: RemoteResult) -> str:
    """`` (on the Dask worker ADDRESS)`` for the error of `result` that may be its worker's, not the
    file's: one it could not read (missing from its mount, a read error) or its decoders' failure;
    "" for the others (tagger's checks of the audio: the same on every machine)."""
    mine = result.unreadable or (result.error or "").startswith(DECODERS_FAILURES)
    return f" (on the Dask worker {result.worker})" if mine and result.worker else ""


def aggregation_params(analyser: Analyser) -> dict:
    """The aggregation rule's parameters: the model's calibrated ones over the defaults."""
    return _params(analyser.aggregation)


def another_file(work: FileState, result: RemoteResult) -> str | None:
    """Why a cluster worker's `result` is not of the file the plan found at its path (the worker
    read another file there: another mount, a stale copy; its fingerprint differs), or None. A
    result without a fingerprint (the worker could not read the file) is the file's own error.

    Only where the client, reading the file again now, does not find the worker's fingerprint either:
    the plan's may be the one stored (``--quick``: size, mtime and ctime as stored), which a file
    written in place with its size and mtime kept (a tag editor keeping the mtime, on a drive whose
    ctime is the mtime) no longer has; such a file was refused at every ``--quick`` Dask scan as "read
    another file", though the worker read the client's very file (a local scan analyses it). A file
    changed since the plan is `changed_during_analysis`'s, checked before its results are stored."""
    if result.fingerprint is None or not work.fingerprint or result.fingerprint == work.fingerprint:
        return None
    try:
        if fingerprint(work.path) == result.fingerprint:
            return None
    except (TaggerError, OSError):
        pass  # (the client cannot read it now: nothing shows the worker read the client's file)
    return (f"the Dask worker {result.worker or '(unknown)'} read another file at this path (its size or content "
            "differ from the client's): mount the library at the same path on every machine; nothing was stored "
            "for it, the next scan tries it again")  # fmt: skip


class _Pending:
    """A file being analysed: what the planning found, and its assembler."""

    def __init__(self, work: FileState, assembler: TrackAssembler) -> None:
        self.work = work
        self.assembler = assembler

    @property
    def meta(self) -> dict:
        return self.assembler.meta


class Runner(TagHook, WorkerSupervisor):
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
                if self.stop.requested:
                    # (a decoder that fails once a stop was asked, ended by the stop: the ffmpeg
                    # decoding the file, when Ctrl-C reached it in the scan's process group, exit code
                    # 255, stored the file as an error it never had, a lasting one the next scan
                    # passed over. Not stored: the next scan analyses it.)
                    self.pending.pop(m.task_id)
                    continue
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

    def run_remote(self, work: list[FileState], backend) -> None:
        """Files analysed by `backend` (window probabilities computed there); aggregated and stored here."""
        self.report(force=True)

        def store(task_id: int, result: RemoteResult) -> None:
            self.check_stop()
            pend = self.pending[task_id] = self.new_pending(work[task_id])
            pend.assembler.meta = result.meta or {}
            other = another_file(work[task_id], result)
            if other is not None:  # (its facts are another file's: none of them is stored)
                pend.assembler.meta = {}
                self.fail(task_id, changed_during_analysis(pend.work) or other, transient=True, keep_results=True)
            elif result.error is not None:  # (one the worker could not read or decode: its mount's, its ffmpeg's maybe; named)
                self.fail_file(task_id, f"{result.error}{where_it_failed(result)}", unreadable=result.unreadable)
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
        # (asked as the last file was stored, its tag write or its commit: the backend's loop ended with
        # nothing left in flight, and the scan as finished, exit 0, the stop unheard)
        self.check_stop()

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
        """Analyse `work` in this process (``--jobs 0``). A stop is looked at between the messages of a
        file, which is then left to the next scan as a worker's file is (it was looked at before each
        file alone: a Ctrl-C went unheard until a long file was done, and during the last file not at
        all, the scan ending as finished, exit 0), and the stop ends the decoder reading the file."""
        from tagger.audio.plumbing import ending_decoders

        self.report(force=True)
        with ending_decoders() as end, self.stop.calling(end):
            # (the stop ends the file's ffprobe or ffmpeg: the scan waited for an ffprobe, up to its 60 s
            # timeout, or a hung ffmpeg; the decoder's failure, the stop's, is not stored)
            self._run_inline(work)

    def _run_inline(self, work: list[FileState]) -> None:
        for task_id, w in enumerate(work):
            self.check_stop()
            self.pending[task_id] = self.new_pending(w)
            batch: list[Message] = []
            n = 0
            with contextlib.closing(analyse_file(task_id, w.path, config=self.config)) as messages:  # (its decoder ended)
                for msg in messages:
                    self.check_stop()  # (the file's track not stored: `pending` only)
                    # (a long file keeps no batch waiting, as the workers' messages do not: was held
                    # through its whole analysis, SQLite's write lock with it, and PostgreSQL's
                    # idle_in_transaction_session_timeout ended the connection and the scan)
                    self.writer.maybe_commit()
                    batch.append(msg)
                    if isinstance(msg, Windows):
                        n += len(msg.features)
                    if n >= self.predict_batch:
                        self.handle(batch)
                        batch, n = [], 0
            self.handle(batch)
        self.check_stop()  # (asked during the last file: it is stored whole, the scan still stopped)

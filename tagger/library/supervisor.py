"""The scan's worker processes supervised (main process): files fed to them ahead, their messages
read from all their pipes at once, and a worker that dies, hangs or never starts stopped and
replaced, its files failed or sent to another (`WorkerSupervisor.run_processes`). The processes
themselves are `tagger.library.workers`'; what they run, `tagger.library.analyse.worker_main`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait

from tagger.db.scan_writer import FileState
from tagger.errors import TaggerError
from tagger.library.analyse import worker_main
from tagger.library.messages import Done, Failed, Message, Started, Windows
from tagger.library.workers import Worker, start_worker, stop_process, stop_workers

log = logging.getLogger("tagger.library.scan")

START_TIMEOUT = 120.0
"""Seconds a new worker may take to start (imports, warm-up) and claim its first file, when the file
timeout is shorter: on a loaded machine start-up alone can take tens of seconds."""

TASKS_AHEAD = 2
"""Files sent to a worker at once: the one it analyses and the next, waiting in its pipe so that it
goes on without waiting for the main process (not near the end of a scan: `WorkerSupervisor._feed`)."""


class WorkerSupervisor:
    """The worker processes of `tagger.library.runner.Runner` (mixed into it: uses its ``config``,
    ``pending``, ``predict_batch``, ``file_timeout``, ``progressed``, ``deaths``, ``last_check`` and
    ``writer``, and hands messages to its ``handle`` and failures to its ``fail_file``)."""

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
            # (asked with the last file's messages: a failure then is not stored, `Runner.handle`, and
            # the loop ended as if the scan were done, exit 0, the file neither stored nor counted)
            self.check_stop()
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

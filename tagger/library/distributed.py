"""A scan's analysis on a Dask distributed cluster (``tagger scan --backend dask --scheduler URL``).

Division of labour
------------------
- **Workers** do everything that costs CPU, one task per file: decode, resample, window and compute
  features (the same `tagger.library.analyse.analyse_file` steps as local worker processes), then
  run the model on the file's windows (`tagger.library.remote`, what a worker runs). Each worker
  process loads the model once (cached per process, see `tagger.library.remote._worker_analyser`)
  and refuses to work when its model's manifest hash differs from the client's. A task returns
  plain values (a dict of small numpy arrays: per-window probabilities, window starts, silence
  flags, stream facts) or the file's error, as a value: a bad file never raises.
- **The client** (the `tagger scan` process) plans the scan, submits tasks with a bounded number in
  flight, and for every finished file aggregates the window probabilities, writes the database
  (the only writer) and writes the tags, through the same code as a local scan
  (`tagger.library.scan`), so incremental logic, progress and the summary are identical.

Workers read the files from shared storage under the **same absolute paths** as the client (mount
the library at the same place on every machine); the client writes the tags, so it needs write
access to the files. Nothing here imports dask, TensorFlow or the database at import time.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tagger.errors import TaggerError, UserError
from tagger.library.analyse import AnalysisConfig
from tagger.library.messages import RemoteResult
from tagger.library.remote import (AnalyserSpec, analyse_remote, code_digest, decoding_stack, fingerprint_or_none,
                                   worker_check, worker_stats)

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "AnalyserSpec", "ClusterError", "DaskBackend", "SLOWEST_READ", "analyse_remote",
           "check_scheduler_address", "task_limit", "worker_check", "worker_stats"]

BACKENDS = ("local", "dask")

_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$")


def check_scheduler_address(address: str) -> str:
    """A Dask scheduler address as ``PROTOCOL://HOST:PORT`` (``tcp://`` when none is given);
    raises `UserError` for anything else, before any connection is tried."""
    m = _ADDRESS.match(address.strip())
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise UserError(f"invalid Dask scheduler address {address!r}: expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
    return address.strip() if m.group(1) else f"tcp://{address.strip()}"


class ClusterError(TaggerError):
    """The Dask cluster cannot be reached, or its workers cannot analyse (e.g. another model)."""



@dataclass
class DaskBackend:
    """Analyse a scan's files on a Dask cluster; pass as ``scan(..., backend=DaskBackend(...))``.

    ``scheduler``: the scheduler address (``tcp://host:8786``), or an existing
    ``distributed.Client``. ``spec``: how workers load the analyser (its expected hash is filled
    in from the client's analyser). ``in_flight``: tasks in flight per worker thread (2 keeps
    every worker busy while results travel).
    """

    scheduler: object
    spec: AnalyserSpec = field(default_factory=AnalyserSpec)
    in_flight: int = 2
    connect_timeout: float = 10.0
    retries: int = 1
    worker_timeout: float = 60.0
    """Seconds the scan waits with no worker connected to the scheduler (all gone: killed, machines
    lost) before it stops with `ClusterError`; a nanny restarting its worker takes a few seconds."""
    check_timeout: float = 600.0
    """Seconds the workers may take to load the model and answer the check before a scan."""

    def __post_init__(self) -> None:
        if isinstance(self.scheduler, str):
            self.scheduler = check_scheduler_address(self.scheduler)

    def run(self, paths: Sequence[str], *, analyser, config: AnalysisConfig, predict_batch: int,
            store: Callable[[int, RemoteResult], None], poll: Callable[[], None] | None = None,
            file_timeout: float | None = None) -> None:  # fmt: skip
        """Analyse `paths` on the cluster; calls ``store(index, result)`` in this thread as files finish,
        and ``poll()`` about every 0.1 s while it waits for them (it may raise to stop the scan: a
        Ctrl-C is then heard while every file in flight is still being analysed).

        ``file_timeout``: seconds a worker may run one file's task (a hung decoder: a stalled
        network mount), plus a second per megabyte of the file (`SLOWEST_READ`: a worker sends no
        progress, so a long file must not look hung), before the file is stored as an error, its
        task cancelled and the worker restarted (by its nanny; a worker without one is closed);
        None: no limit.

        Raises `ClusterError` when the scheduler cannot be reached, no worker can analyse, a
        worker has another model than `analyser`, or no worker is left for `worker_timeout` seconds.
        The tasks still in flight when it returns or raises are cancelled.
        """
        Client, KilledWorker, as_completed = _import_distributed()
        from tagger import __version__

        spec = AnalyserSpec(**{**self.spec.__dict__, "expected_hash": analyser.hash, "expected_version": analyser.version,
                               "expected_tagger": __version__,
                               "expected_code": code_digest()})  # fmt: skip
        own = not hasattr(self.scheduler, "submit")
        client = self._connect(Client) if own else self.scheduler
        tasks = _Tasks(client, paths, spec=spec, config=config, predict_batch=predict_batch, retries=self.retries,
                       file_timeout=file_timeout)  # fmt: skip
        try:
            threads, stacks = self._check_workers(client, spec, paths[0] if paths else None, poll)
            first = [f for f in (tasks.submit_next() for _ in range(max(1, self.in_flight * threads))) if f is not None]
            futures = as_completed(first, loop=client.loop)
            idle = _Idle(client, self.worker_timeout, poll, died_under=lambda: _died_under(tasks))
            while tasks.index or tasks.suspects:  # (a cancelled task may stay in `futures`; a suspect may wait for a worker)
                if not futures.has_ready():
                    if idle.wait(len(tasks.index)):  # (`poll` may raise; so does a cluster without a worker)
                        _end_alone_at_its_death(tasks, futures, idle, store)
                        if file_timeout is not None:
                            self._time_out_overdue(client, tasks, futures, idle, store)
                        tasks.top_up(futures, self.in_flight * idle.threads)  # (workers that joined since)
                    continue
                fut = next(futures)
                if fut.key not in tasks.index:
                    continue  # a task given up on (`_give_up`), cancelled
                done = tasks.finished(fut, KilledWorker)
                if done is not None:  # (None: its worker died with other files in flight; tried alone later)
                    stacks.compare_late(done[1])
                    store(*done)
                idle.reset()
                tasks.submit_into(futures)
            for i, died, ran in tasks.stranded:  # (no worker to try them alone on: see `alone_worker`)
                if ran is not None and _stopped_gracefully(client, died, tasks.paths[i], warn=False):
                    ran = None  # (a stop, not a death: which file it ran tells nothing)
                store(i, RemoteResult(tasks.paths[i], error=stranded(ran), unreadable=True, worker=died))
            _await_ends(tasks.ending, poll)  # (before its client is closed: a restart not yet asked would be lost)
        finally:
            if tasks.index:  # stopped early (error, Ctrl-C): the cluster drops the rest
                client.cancel([f for _, f in tasks.index.values()])
            if own:
                client.close()

    def _connect(self, client_class):
        """A client of the scheduler at the address `scheduler`, made here (and closed by `run`);
        `ClusterError` when it cannot be reached within `connect_timeout`."""
        try:
            return client_class(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot reach the Dask scheduler {self.scheduler}: {reason}") from None

    def _time_out_overdue(self, client, tasks: _Tasks, futures, idle: _Idle, store: Callable[[int, RemoteResult], None]) -> None:
        """Store as an error each file whose task a worker has run past its limit (`task_limit`),
        give that worker up (`_give_up`: restarted or closed) and submit the next file in its place."""
        try:
            overdue = _overdue(client, tasks.index, tasks.limits)
        except Exception as exc:  # noqa: BLE001 - said once (`_unanswered`); the futures report a scheduler gone
            _unanswered(tasks, "which files run past the file timeout", "no file is timed out", exc)
            return
        for key, worker, seconds in overdue:
            i, fut, _ = tasks.take(key)
            ending = self._give_up(client, fut, worker, tasks.restarting())
            store(i, RemoteResult(tasks.paths[i], error=f"timed out after {seconds:.0f} s on the Dask worker "
                                                        f"{worker} (a hung decoder?)"))  # fmt: skip
            if ending is None:
                _leave_stuck(client, tasks, worker, tasks.paths[i], key)
            else:
                tasks.ending.append(ending)
            idle.reset()
            tasks.submit_into(futures)

    def _gather_checks(self, client, checks: dict, poll: Callable[[], None] | None) -> dict:
        """The reports of the checks (`worker_check`, one pinned to each worker); a check whose
        worker left the scheduler is dropped (pinned, it would wait for that worker for ever).
        Raises `ClusterError` when no worker is left, or when the checks take `check_timeout`."""
        reports, pending = {}, dict(checks)
        try:
            self._await_checks(client, pending, reports, poll)
        finally:
            if pending:  # (stopped: Ctrl-C, too slow)
                client.cancel(list(pending.values()))
        if not reports:
            raise ClusterError("every Dask worker left the scheduler while it loaded the model: nothing was analysed; "
                               "see their logs (killed for memory?)")  # fmt: skip
        return reports

    def _await_checks(self, client, pending: dict, reports: dict, poll: Callable[[], None] | None) -> None:
        started = checked = time.monotonic()
        while pending:
            for w, fut in list(pending.items()):
                if fut.done():
                    del pending[w]
                    try:
                        reports[w] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - said in the report
                        reports[w] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if not pending:
                break
            time.sleep(0.05)
            if poll is not None:
                poll()
            now = time.monotonic()
            if now - checked >= 1.0 and getattr(client, "status", "running") == "running":
                checked = now  # (not while reconnecting to a lost scheduler: its futures come back cancelled)
                present = set(client.scheduler_info(n_workers=-1).get("workers") or ())
                for w in [w for w in pending if w not in present]:
                    log.warning("dask: the worker %s left during its check (killed while loading the model?); "
                                "the scan goes on without it", w)  # fmt: skip
                    pending.pop(w).cancel()
            if now - started >= self.check_timeout:
                raise ClusterError(f"the Dask worker(s) {', '.join(sorted(pending))} did not load the model and answer "
                                   f"within {self.check_timeout:.0f} s: nothing was analysed; see their logs")  # fmt: skip

    def _give_up(self, client, fut, worker: str, restarting: set[str]) -> threading.Thread | None:
        """Cancel a task that has run past the file timeout, then restart its worker (its thread is
        still stuck in the file: it would take no other task): by its nanny, or, without one, close
        it (the scheduler sends it nothing more; its process is left to whoever started it). The
        restart runs in a thread of its own (`_end_worker`), returned: the scan goes on meanwhile, and
        waits for it at its end (`_await_ends`). None, the worker left as it is (`_leave_stuck`): it has
        no nanny and no other worker is running; closing it left the cluster without any, and the scan
        stopped 60 s later saying every worker had left. A worker without a nanny in `restarting` (being
        closed, `_Tasks.restarting`) is not another: two files past their timeout at the same check (a
        stalled mount under both workers) closed both, the scheduler still listing the first running."""
        fut.cancel()  # (first: the scheduler would hand the task to the next worker)
        workers = client.scheduler_info(n_workers=-1).get("workers") or {}
        nanny = bool((workers.get(worker) or {}).get("nanny"))
        others = [w for w, info in workers.items() if w != worker and (info or {}).get("status") not in CLOSING
                  and (w not in restarting or (info or {}).get("nanny"))]  # (a nanny's worker comes back; one closed does not)
        if not nanny and not others:
            return None
        log.warning("dask: the worker %s ran one file past the file timeout: %s", worker,
                    "restarting it" if nanny else "closing it (it has no nanny; its process may still be stuck)")  # fmt: skip
        ending = threading.Thread(target=_end_worker, args=(client, worker, nanny, self.connect_timeout * 3),
                                  name=f"tagger-restart-{worker}", daemon=True)  # fmt: skip
        ending.start()
        return ending

    def _check_workers(self, client, spec: AnalyserSpec, sample_path: str | None,
                       poll: Callable[[], None] | None = None) -> tuple[int, _Stacks]:  # fmt: skip
        """Every worker loads the analyser, agrees with the client and sees the files; returns the
        number of worker threads and the comparison of their decoding libraries. A worker that leaves during its check (killed while it loads the
        model) is left out; ``poll()`` is called while the checks run (a Ctrl-C is heard)."""
        try:
            client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"no Dask worker joined the scheduler within {self.connect_timeout:.0f} s: {exc}") from None
        # One task pinned to each worker (not client.run: loading TensorFlow would block the
        # worker's event loop and its heartbeats).
        workers = list(client.nthreads())
        sample_fingerprint = fingerprint_or_none(sample_path) if sample_path is not None else None
        checks = [client.submit(worker_check, spec, sample_path, sample_fingerprint=sample_fingerprint,
                                key=f"tagger-check-{w}-{os.urandom(4).hex()}",
                                workers=[w], allow_other_workers=False, pure=False) for w in workers]  # fmt: skip
        reports = self._gather_checks(client, dict(zip(workers, checks)), poll)
        bad = {w: r["error"] for w, r in reports.items() if not r["ok"]}
        if bad:
            raise ClusterError("; ".join(f"worker {w}: {e}" for w, e in sorted(bad.items())))
        stacks = _Stacks()
        stacks.compare(reports)
        log.info("dask: %d worker(s) ready with model %s", len(reports), spec.expected_version)
        return max(1, sum(client.nthreads().values())), stacks


def _leave_stuck(client, tasks: _Tasks, worker: str, path: str, key: str) -> None:
    """Leave the last worker, one without a nanny, with a thread stuck in the file at `path` (the
    task `key`; `DaskBackend._give_up` returned None): its other threads go on with the scan, and a
    warning names the worker and the file; once every one of its threads is stuck (`_threads_stuck`,
    as the worker says), `ClusterError` naming its files. It stopped the scan at its first stuck
    file, though its other threads could analyse the rest (a worker of ``--nthreads 8``: one hung
    file left the whole library unanalysed)."""
    stuck = tasks.stuck.setdefault(worker, [])
    stuck.append(path)
    counted = _threads_stuck(client, worker, key)
    busy, threads = counted if counted is not None else (len(stuck), _threads_of(client, worker, len(stuck)))
    advice = ("run the workers under a nanny (dask worker without --no-nanny), which restarts a worker stuck in a "
              "file, or start more workers")  # fmt: skip
    if busy < threads:
        log.warning("dask: the worker %s ran %s past the file timeout and is the last worker left, with no nanny to "
                    "restart it: its thread stuck in the file is left as it is (%d of its %d threads stuck) and the "
                    "others go on; restart the worker after the scan, and %s", worker, path, busy, threads,
                    advice)  # fmt: skip
        return
    files = stuck[0] if len(stuck) == 1 else f"{', '.join(stuck[:-1])} and {stuck[-1]}"
    before = busy - len(stuck)
    files += f", and {before} more since an earlier scan" if before > 0 else ""
    raise ClusterError(f"the Dask worker {worker} ran {path} past the file timeout and is the last worker left, with "
                       f"no nanny to restart it: {'its thread' if threads == 1 else f'each of its {threads} threads'} "
                       f"is stuck in a file ({files}: a hung decoder? a stalled mount?); it is left running, as "
                       "closing it would leave the cluster without a worker; the results stored so far are kept: "
                       f"restart it, {advice}, and run the scan again")  # fmt: skip


def _threads_stuck(client, worker: str, key: str) -> tuple[int, int] | None:
    """(threads stuck, threads) of `worker`, as the worker says: its threads that run a task the
    scheduler cancelled (a file given up on, in this scan or one before it, whose thread never came
    back) or the task `key` (given up on just now: the cancelling may not have reached the worker).
    Counted by this scan alone, a thread left stuck by the scan before (the worker not restarted,
    as the warning asked) went uncounted: the last thread's file stuck then was a warning, and the
    files given the worker after it waited behind it for ever, the scan with them; a thread whose
    file came back since was counted stuck. None where the worker does not answer within 10 s."""

    def count(key: str, dask_worker=None) -> tuple[int, int]:  # (on the worker: nested, so pickled by value)
        running = dask_worker.state.executing  # (cancelled tasks still running are kept there)
        return sum(1 for ts in running if ts.state == "cancelled" or ts.key == key), dask_worker.state.nthreads

    try:
        out = client.run(count, key, workers=[worker], callback_timeout=10)
    except Exception as exc:  # noqa: BLE001 - counted by this scan's files alone
        log.debug("dask: cannot ask the worker %s how many of its threads are stuck: %s", worker, exc)
        return None
    return tuple(out[worker]) if worker in out else None


def _threads_of(client, worker: str, default: int) -> int:
    """The threads of `worker` as the scheduler knows them; `default` where it cannot say."""
    try:
        return int(client.nthreads().get(worker) or 1)
    except Exception as exc:  # noqa: BLE001 - a scheduler going away is reported by the futures
        log.debug("dask: cannot ask the scheduler how many threads the worker %s has: %s", worker, exc)
        return default


def _end_worker(client, worker: str, nanny: bool, timeout: float) -> None:
    """Restart `worker` by its nanny (waiting up to `timeout` s for it), or close it where it has none.
    A nanny that does not answer (paused, its machine stopped) held the scan for the whole `timeout`
    (30 s by default), deaf to Ctrl-C, storing nothing, when this ran in the scan's thread. Its
    nanny not answering is a warning: the scheduler then drops the worker, whose process may be
    left stuck in the file (was: said nowhere, the restart's answer unread).
    Without a nanny the worker is retired (the results it holds for the client moved to another
    worker first); a retirement the scheduler gives up (no other running worker to take them: the
    others paused or being retired) left the worker running with its thread stuck in the file,
    without a word: it was given the next files, which waited behind that thread for ever (their
    timeout counts from when they start), and the scan with them. It is then closed at once
    (`_close_at_once`: the results it held are computed again elsewhere, no death counted), with a
    warning."""
    try:
        if nanny:
            out = client.restart_workers([worker], timeout=timeout, raise_for_error=False)
            if isinstance(out, dict) and out.get(worker) == "timed out":
                log.warning("dask: the nanny of the worker %s did not answer within %.0f s (paused? its machine "
                            "stopped?): the scheduler dropped the worker, whose process may still be stuck in the "
                            "file", worker, timeout)  # fmt: skip
        else:
            out = client.retire_workers([worker], close_workers=True)
            if isinstance(out, dict) and worker not in out and _close_at_once(client, worker) == "OK":
                log.warning("dask: the scheduler gave up the retirement of the worker %s (no other running worker "
                            "could take the results it holds): closed at once instead, those results to be computed "
                            "again; its process may still be stuck in the file", worker)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the scan goes on with the other workers
        closed = getattr(client, "status", "running") in ("closing", "closed")  # (the scan over, its client closed)
        (log.debug if closed else log.warning)("dask: cannot restart the worker %s: %s", worker, exc)


def _close_at_once(client, worker: str) -> str:
    """Remove `worker` from the scheduler and close it, whatever it holds: "OK", or "already-removed"
    where it had left. Its removal is an expected one: the tasks it held run again elsewhere, and no
    death is counted against them (none of them hung it)."""

    async def close(address: str, dask_scheduler=None) -> str:  # (on the scheduler: nested, so pickled by value)
        return await dask_scheduler.remove_worker(address, stimulus_id=f"tagger-file-timeout-{address}", expected=True,
                                                  close=True)  # fmt: skip

    return client.run_on_scheduler(close, worker)


def _await_ends(ending: list[threading.Thread], poll: Callable[[], None] | None) -> None:
    """Wait for the restarts of timed-out workers still under way (`_end_worker`) once every file is
    stored, calling ``poll()`` meanwhile (a Ctrl-C stops the wait). A scan that ended at once closed
    its client under them: a restart whose request (two calls to the scheduler) had not yet gone out
    was dropped, and the worker left stuck in its file for the next scan."""
    for t in ending:
        if t.is_alive():
            log.info("dask: waiting for the restart of the worker %s (it ran a file past the file timeout)",
                     t.name.removeprefix("tagger-restart-"))  # fmt: skip
        while t.is_alive():
            t.join(0.1)
            if poll is not None:
                poll()


NAMED = 4
"""Workers a warning names before 'and N more' (`_Stacks`: a cluster of 8 processes on each of 4 machines)."""


@dataclass
class _Stacks:
    """A scan's comparison of its workers' decoding libraries (`decoding_stack`: ffmpeg, libsndfile,
    soxr...) with the client's: a worker whose versions differ may decode a file a little differently
    from the others and from a local scan (tagger's own code and the model must be the same; these
    may differ). Each difference is warned of once a scan, naming the workers that have it: it was
    warned of once per worker, the same line for each process of a machine (``--nworkers 8``) and
    again for each worker a nanny restarted or that joined later."""

    compared: set = field(default_factory=set)
    """The workers compared (the start-up check's, then those of the results)."""
    warned: set = field(default_factory=set)
    """The differences warned of: tuples of (library, the worker's version, the client's)."""

    def compare(self, reports: dict) -> None:
        """Compare the workers of `reports` (address -> a report with their ``stack``); warn of each
        difference not warned of yet."""
        mine = decoding_stack()
        found: dict[tuple, list[str]] = {}
        for w, report in sorted(reports.items()):
            self.compared.add(w)
            theirs = report.get("stack") or {}
            other = tuple((name, theirs[name], mine.get(name, "missing")) for name in sorted(theirs)
                          if theirs[name] != mine.get(name, "missing"))  # fmt: skip
            if other:
                found.setdefault(other, []).append(w)
        for other, workers in found.items():
            if other in self.warned:
                log.debug("dask: the worker(s) %s decode with the other versions warned of", ", ".join(workers))
                continue
            self.warned.add(other)
            named = ", ".join(workers[:NAMED]) + (f" and {len(workers) - NAMED} more" if len(workers) > NAMED else "")
            log.warning("dask: the worker%s %s decode%s with %s: %s results may differ a little from the client's and "
                        "from a local scan's; install the same versions on every machine (warned once a scan)",
                        "s" if len(workers) > 1 else "", named, "" if len(workers) > 1 else "s",
                        ", ".join(f"{name} {theirs} (the client's {mine})" for name, theirs, mine in other),
                        "their" if len(workers) > 1 else "its")  # fmt: skip

    def compare_late(self, result: RemoteResult) -> None:
        """`compare` for the worker of `result` when it is one not compared yet (it joined the cluster
        after the start-up check, and is given files since 2d81c3e; or a nanny restarted it)."""
        if result.worker and result.stack is not None and result.worker not in self.compared:
            self.compare({result.worker: {"stack": result.stack}})


def _import_distributed():
    """dask.distributed's ``Client``, ``KilledWorker`` and ``as_completed``, imported when a scan
    uses the cluster; a `UserError` saying what to install when it is missing."""
    try:
        from distributed import Client, KilledWorker, as_completed
    except ImportError:
        raise UserError("the dask backend needs dask.distributed: pip install 'tagger[dask]'") from None
    return Client, KilledWorker, as_completed


@dataclass
class _Tasks:
    """A scan's files as tasks on the cluster: submitted one at a time, in order, and followed while
    they are in flight."""

    client: object
    paths: Sequence[str]
    spec: AnalyserSpec
    config: AnalysisConfig
    predict_batch: int
    retries: int
    file_timeout: float | None
    index: dict = field(default_factory=dict)
    """Task key -> (position in paths, future), for the tasks in flight."""
    limits: dict = field(default_factory=dict)
    """Task key -> seconds its worker may run it (`task_limit`; only with a file timeout)."""
    suspects: list = field(default_factory=list)
    """(position in paths, address of the last worker that died, whether it died running this file:
    `_ran_at_death`) of the files whose every worker died
    while other files were in flight beside them: each is tried again alone on the cluster, on one
    worker (`alone_worker`), once the others are done."""
    alone: dict = field(default_factory=dict)
    """Key -> the worker it is pinned to, of the tasks submitted alone (a suspect's): their workers'
    deaths are their own."""
    stranded: list = field(default_factory=list)
    """The suspects left when no worker could try them alone (`alone_worker`), as in `suspects`."""
    unanswered: set = field(default_factory=set)
    """The questions the scheduler could not answer once, already warned of (`_unanswered`)."""
    ending: list = field(default_factory=list)
    """The threads restarting (or closing) the workers given up on (`DaskBackend._give_up`)."""
    stuck: dict = field(default_factory=dict)
    """Worker address -> the files whose threads are stuck there, left as they are (`_leave_stuck`: the
    last worker, without a nanny)."""

    def __post_init__(self) -> None:
        self._todo = iter(enumerate(self.paths))

    def submit_next(self):
        """Submit the next file's task (`analyse_remote`) and return its future; then, with nothing
        else in flight, the next suspect's, alone; None when every file has been submitted."""
        nxt = next(self._todo, None)
        alone = nxt is None
        pinned = {}
        if alone:
            if not self.suspects or self.index:
                return None
            restarting = self.restarting()
            workers = {w: info for w, info in (self.client.scheduler_info(n_workers=-1).get("workers") or {}).items()
                       if (info or {}).get("status") not in CLOSING}  # (one being stopped would leave under it)
            if not workers or not set(workers) - restarting:
                return None  # (a nanny restarting the worker the last one killed, or one a file hung: tried once back)
            workers = {w: info for w, info in workers.items() if w not in restarting}
            worker = alone_worker(workers)
            if worker is None:
                self.stranded.extend(self.suspects)
                self.suspects.clear()
                return None
            i = self.suspects.pop(0)[0]
            nxt = (i, self.paths[i])
            pinned = {"workers": [worker], "allow_other_workers": False}  # (one death, one worker: then it is stopped)
        i, path = nxt
        fut = self.client.submit(analyse_remote, path, spec=self.spec, config=self.config, predict_batch=self.predict_batch,
                                 key=f"tagger-analyse-{i}-{os.urandom(4).hex()}", pure=False,
                                 retries=self.retries, **pinned)  # fmt: skip
        self.index[fut.key] = (i, fut)
        if alone:
            self.alone[fut.key] = pinned["workers"][0]
        if self.file_timeout is not None:
            self.limits[fut.key] = task_limit(path, self.file_timeout)
        return fut

    def restarting(self) -> set[str]:
        """The workers whose restart (or closing) is under way (`ending`: a file ran past its timeout
        there). A suspect pinned to one right after its file timed out (the scheduler still lists it
        running) died with the restart, and was stored as crashed where the worker could not say it
        was closing (its nanny killing it)."""
        return {t.name.removeprefix("tagger-restart-") for t in self.ending if t.is_alive()}

    def top_up(self, futures, n: int) -> None:
        """Submit files until `n` are in flight (workers joined the cluster after the scan began:
        the in-flight limit set at its start kept them idle)."""
        while len(self.index) < n:
            nxt = self.submit_next()
            if nxt is None:
                return
            futures.add(nxt)

    def submit_into(self, futures) -> None:
        """Submit the next file's task, if a file is left, and add it to `futures` (``as_completed``)."""
        nxt = self.submit_next()
        if nxt is not None:
            futures.add(nxt)

    def take(self, key: str) -> tuple[int, object, bool]:
        """Remove the task `key` from those in flight, with what is kept of it (`limits`, `alone`:
        kept for every file of the scan, they grew by 140 bytes a file, 140 MB for a million):
        its position in paths, its future, and the worker it was pinned to alone ("": not alone)."""
        i, fut = self.index.pop(key)
        self.limits.pop(key, None)
        return i, fut, self.alone.pop(key, "")

    def finished(self, fut, killed_worker: type[Exception]) -> tuple[int, RemoteResult] | None:
        """The position and result of the file whose task `fut` has finished (no longer in flight).
        Every worker that tried it having died (`killed_worker`) is the file's error, as a decoder
        crash is locally, when the file was alone on the cluster; otherwise (the scheduler counts a
        worker's death against every task it held, the one that killed it and those queued beside
        it) the file becomes a suspect, tried again alone later, and this returns None. Any other
        failure of the task is the cluster's, and a worker that cannot analyse at all
        (`RemoteResult.fatal`) stops the scan too: both raise `ClusterError`."""
        i, _, alone = self.take(fut.key)
        try:
            result = fut.result()
        except killed_worker as exc:
            last = getattr(getattr(exc, "last_worker", None), "address", None)
            if not alone or _stopped_gracefully(self.client, last or alone, self.paths[i]):
                self.suspects.append((i, last or alone, None if alone else _ran_at_death(exc, fut.key)))
                fut.release()
                return None
            result = crashed(self.paths[i], last or alone)
        except Exception as exc:  # the task never raises for a file: the cluster itself failed
            raise ClusterError(f"the Dask cluster failed while analysing {self.paths[i]}{_erred_on(self.client, fut.key)}: "
                               f"{type(exc).__name__}: {exc} (the results stored so far are kept: run the scan "
                               "again)") from None  # fmt: skip
        fut.release()
        if result.fatal is not None:
            raise ClusterError(result.fatal)
        return i, result


STRANDED = ("not analysed: the Dask worker analysing it died (a decoder crash or out of memory, of this file or of one "
            "in flight beside it), and no worker was left to try it alone without risking the last one (the workers "
            "have no nanny to restart them); the next scan tries it again")
"""The reason of a suspect that no worker could try alone (`alone_worker`): a transient error,
its stored results kept; the scan names the worker that died after it. `stranded` tells the file the
worker ran from those beside it where the scheduler knew."""


def stranded(ran: bool | None) -> str:
    """`STRANDED`, or where the scheduler knew which file the worker ran when it died (`_ran_at_death`),
    saying whether it was this file or another beside it: the same words for every file the worker
    held left the one that killed it untold from the others (a cluster without nannies down to its
    last worker, where no retry alone tells them apart)."""
    if ran is None:
        return STRANDED
    return STRANDED.replace("(a decoder crash or out of memory, of this file or of one in flight beside it)",
                            "while it ran this file (a decoder crash or out of memory?)" if ran else
                            "while it ran another file in flight beside it (a decoder crash or out of memory)")  # fmt: skip


def _ran_at_death(exc: Exception, key: str) -> bool | None:
    """Whether the worker whose death failed the task `key` (``KilledWorker.last_worker``, the
    scheduler's copy of it) was running that task when it died, by the tasks its last heartbeat said
    it ran (a file that ran a heartbeat long: 0.5 s on a small cluster); None where it said none."""
    running = getattr(getattr(exc, "last_worker", None), "executing", None) or {}
    return (key in running) if running else None


def crashed(path: str, worker: str) -> RemoteResult:
    """The result of a file that killed `worker` while it was alone on the cluster: its own error."""
    return RemoteResult(path, error="the decoder crashed or ran out of memory (every Dask worker analysing it "
                                    f"died{f', the last {worker}' if worker else ''}; see their logs)", worker=worker)


def _end_alone_at_its_death(tasks: _Tasks, futures, idle: _Idle, store: Callable[[int, RemoteResult], None]) -> None:
    """Store as crashed each file tried alone whose worker died under it once, and cancel its task: the
    scheduler would run it again (up to allowed-failures times, the task pinned to a worker a nanny
    restarts under another address, or waiting for a gone one for ever), each run killing another
    worker. A task alone whose worker left the scheduler without dying under it is tried again, as is
    one whose worker was stopped under it (`_stopped_gracefully`: Dask counts that as a death too)."""
    if not tasks.alone:
        return

    def deaths(keys: list, dask_scheduler=None) -> dict:  # (on the scheduler: nested, so pickled by value)
        out = {}
        for key in keys:
            ts = dask_scheduler.tasks.get(key)
            if ts is not None:
                out[key] = (ts.suspicious, ts.state)
        return out

    try:
        seen = tasks.client.run_on_scheduler(deaths, list(tasks.alone))
    except Exception as exc:  # noqa: BLE001 - said once (`_unanswered`); the futures report a scheduler gone
        _unanswered(tasks, "whether a worker died under a file tried alone",
                    "such a file is not stopped at its first death (Dask tries it again up to its allowed-failures)", exc)
        return
    for key, (suspicious, state) in seen.items():
        if suspicious or state == "no-worker":
            i, fut, worker = tasks.take(key)
            fut.cancel()
            if suspicious and not _stopped_gracefully(tasks.client, worker, tasks.paths[i]):
                store(i, crashed(tasks.paths[i], worker))
            else:
                tasks.suspects.append((i, worker, None))
            idle.reset()
            tasks.submit_into(futures)


CLOSING = ("closing", "closing_gracefully")
"""The statuses a Dask worker reports to the scheduler once it is asked to stop (`Worker.close`,
`Worker.close_gracefully`): by a Ctrl-C or SIGTERM on ``dask worker``, its owner, a cluster
scaling down, its ``--lifetime``. A worker that dies (a crash, a kill, its nanny ending it for its
memory) reports none before it leaves. One started with ``--no-nanny`` that a signal stops reports
it while it runs a tagger file (`tagger.library.remote.reporting_stops`: distributed 2026.8 broke
its connection to the scheduler before it closed, and its stop read as a death)."""


def _stopped_gracefully(client, worker: str, path: str, *, warn: bool = True) -> bool:
    """Whether `worker` left the scheduler because it was asked to stop, not because it died: it reported
    a `CLOSING` status first, as the scheduler's events of the worker say. The scheduler counts both
    as a death against the tasks the worker held (distributed 2026.8: ``Scheduler.remove_worker``
    without ``expected``), so a file tried alone on a worker stopped under it was stored as crashed
    (a lasting error) where the file had done nothing. Logs a warning naming the worker and `path`
    when it was (with `warn`); False when the scheduler cannot say (the file is then stored as
    crashed, as before).
    Only the events since the worker joined count: a worker restarted by its nanny at a fixed port
    (``--worker-port``) has the address of the one before, whose own stop (a file timeout's restart)
    made every later death there read as a stop, and a file that killed it tried alone there for ever.
    Only its latest status counts: a retirement the scheduler gives up (``retire_workers`` with no
    other worker to take the data it holds) sets the worker running again after closing_gracefully."""
    try:
        events = client.get_events(worker)
    except Exception as exc:  # noqa: BLE001 - a scheduler going away is reported by the futures
        log.debug("dask: cannot ask the scheduler how the worker %s left: %s", worker, exc)
        return False
    stopped = False
    for _, msg in events or ():  # (oldest first; the topic is the address, kept across the workers that had it)
        if isinstance(msg, dict) and msg.get("action") == "add-worker":
            stopped = False  # (a worker that joined at this address since: what came before was another's)
        elif isinstance(msg, dict) and msg.get("action") == "worker-status-change":
            stopped = msg.get("status") in (*CLOSING, "closed")  # (its latest: a retirement given up sets it running)
    if stopped and warn:
        log.warning("dask: the worker %s was stopped (not a crash) while it analysed %s alone; the file is tried "
                    "again on another worker", worker, path)  # fmt: skip
    return stopped


def alone_worker(workers: dict) -> str | None:
    """Of `workers` (the scheduler's, by address), the one to try a suspect alone on: one whose nanny
    restarts it should the file kill it; without one, any worker but the last one left (a worker
    started with ``--no-nanny`` that dies stays dead: the last one killed by a retry left the
    cluster without any, the scan stopped or finished with none, and the next scan had none).
    None: no such worker."""
    nannied = sorted(w for w, info in workers.items() if (info or {}).get("nanny"))
    if nannied:
        return nannied[0]
    return sorted(workers)[0] if len(workers) > 1 else None


def _unanswered(tasks: _Tasks, question: str, meanwhile: str, exc: Exception) -> None:
    """Warn, once a scan for each `question`, that the scheduler could not answer it: it runs a function
    tagger sends it (``run_on_scheduler``), which a scheduler on another Python version than the
    client's cannot load; what tagger then goes without (`meanwhile`) went without a word in the
    log's default level (the file timeout silently off). A connection that fails (an `OSError`:
    ``CommClosedError``, a timeout) is a scheduler going away, which the futures report: a debug line,
    as before c8f75af (its warning blamed the Python versions beside the scan's own error)."""
    if question in tasks.unanswered or isinstance(exc, OSError):
        log.debug("dask: cannot ask the scheduler %s: %s", question, exc)
        return
    tasks.unanswered.add(question)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    log.warning("dask: cannot ask the scheduler %s (%s%s): %s while it cannot answer (a scheduler on another Python "
                "version than the client's cannot load tagger's question; warned once a scan)", question,
                type(exc).__name__, f": {reason}" if reason else "", meanwhile)  # fmt: skip


def _erred_on(client, key: str) -> str:
    """`` on the Dask worker(s) ADDRESS...`` where the task `key` raised (a worker's model runtime
    failing: which machine), as the scheduler knows it; "" where it does not."""

    def erred(key: str, dask_scheduler=None) -> list[str]:  # (on the scheduler: nested, so pickled by value)
        ts = dask_scheduler.tasks.get(key)
        return sorted(ts.erred_on or ()) if ts is not None else []

    try:
        workers = client.run_on_scheduler(erred, key)
    except Exception as exc:  # noqa: BLE001 - the scheduler gone: the error is said without it
        log.debug("dask: cannot ask the scheduler where %s failed: %s", key, exc)
        return ""
    return f" on the Dask worker{'s' if len(workers) > 1 else ''} {', '.join(workers)}" if workers else ""


def _died_under(tasks: _Tasks) -> str:
    """``; the workers died under PATH (N deaths), ...`` of the files in flight whose workers died while
    they held them (the scheduler's suspicious count of their tasks), most deaths first: where the
    last worker died (one started with ``--no-nanny``, which stays dead; or the files' deaths short of
    allowed-failures, the scheduler giving each to the next worker), the scan stopped saying every
    worker had left, naming no file, and the next scan ran the file that killed them again. "" where
    none, or where the scheduler cannot say."""

    def deaths(keys: list, dask_scheduler=None) -> dict:  # (on the scheduler: nested, so pickled by value)
        return {key: dask_scheduler.tasks[key].suspicious for key in keys if key in dask_scheduler.tasks}

    try:
        seen = tasks.client.run_on_scheduler(deaths, list(tasks.index))
    except Exception as exc:  # noqa: BLE001 - the error is said without them
        log.debug("dask: cannot ask the scheduler which files the workers died under: %s", exc)
        return ""
    died = sorted((-n, tasks.index[key][0]) for key, n in seen.items() if n and key in tasks.index)
    if not died:
        return ""
    return ("; the workers died under " + ", ".join(f"{tasks.paths[i]} ({-n} death{'s' if n < -1 else ''})" for n, i in died)
            + " (a decoder crash or out of memory: see their logs; the file that kills its worker kills the next ones "
              "it is given)")  # fmt: skip


SLOWEST_READ = 1_000_000
"""Bytes a second a Dask worker is allowed, beyond the file timeout, to read and analyse a file: a
task sends no progress, so a 3 GB DSD file over a slow share (which a local worker's ``Reading``
messages keep alive) was stored as an error at every scan once it ran past the file timeout."""


def task_limit(path: str, timeout: float) -> float:
    """Seconds a worker may run the task of the file at `path`: the file timeout, plus a second per
    `SLOWEST_READ` bytes of the file (as the client sees it; none when it cannot)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    return timeout + size / SLOWEST_READ


def _overdue(client, index: dict, limits: dict) -> list[tuple[str, str, float]]:
    """``(key, worker, seconds)`` of the tasks in `index` that a worker has been running for more
    than their `limits` (seconds, by task key), as the scheduler knows from the workers'
    heartbeats (a task waiting for its turn on a worker is not counted). Raises what
    ``run_on_scheduler`` raises when the scheduler cannot answer."""

    def executing(dask_scheduler=None) -> dict:  # (on the scheduler: nested, so pickled by value)
        import time as clock

        now = clock.time()
        return {ts.key: (ws.address, seconds + max(0.0, now - ws.last_seen))
                for ws in dask_scheduler.workers.values() for ts, seconds in ws.executing.items()}  # fmt: skip

    running = client.run_on_scheduler(executing)
    return [(key, worker, seconds) for key, (worker, seconds) in running.items()
            if key in index and seconds > limits.get(key, float("inf"))]  # fmt: skip


class _Idle:
    """Waiting for a result: calls ``poll`` every wait, and checks about every second that the
    scheduler still has a worker; raises `ClusterError` once it has had none for ``timeout`` s,
    naming the files the workers died under (``died_under()``, `_died_under`)."""

    def __init__(self, client, timeout: float, poll: Callable[[], None] | None,
                 died_under: Callable[[], str] = lambda: "") -> None:  # fmt: skip
        self.client, self.timeout, self.poll, self.died_under = client, timeout, poll, died_under
        self.checked = time.monotonic()
        self.none_since: float | None = None
        self.threads = 0
        """The worker threads the scheduler had at the last check."""

    def reset(self) -> None:
        self.none_since = None

    def wait(self, in_flight: int) -> bool:
        """Wait a little; True when the cluster was checked (about every second) and has a worker."""
        time.sleep(0.05)
        if self.poll is not None:
            self.poll()
        now = time.monotonic()
        if now - self.checked < 1.0:
            return False
        self.checked = now
        if getattr(self.client, "status", "running") != "running":
            return False  # reconnecting to a lost scheduler: its futures are cancelled, and reported as such
        info = self.client.scheduler_info(n_workers=0)
        workers = info.get("n_workers", len(info.get("workers") or ()))
        self.threads = int(info.get("total_threads") or workers)
        if workers:
            self.none_since = None
            return True
        if self.none_since is None:
            self.none_since = now
            log.warning("dask: no worker is connected to the scheduler; waiting up to %.0f s for one", self.timeout)
        elif now - self.none_since >= self.timeout:
            raise ClusterError(f"every Dask worker left the scheduler (none for {self.timeout:.0f} s) with {in_flight} "
                               f"file(s) in flight{self.died_under()}: the results stored so far are kept; start workers "
                               "and run the scan again")  # fmt: skip
        return False

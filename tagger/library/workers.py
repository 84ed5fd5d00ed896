"""The scan's worker processes: started single-threaded, each with a pipe of its own to the scan,
stopped after their file or at once.

Supervision (a dead worker fails its file and is replaced; a worker without progress for the
file timeout is stopped and replaced) is `tagger.library.supervisor.WorkerSupervisor`'s (part of
the scan's `tagger.library.runner.Runner`), which knows the files.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from collections import deque
from contextlib import contextmanager
from multiprocessing.reduction import ForkingPickler


_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

FDS_PER_WORKER = 3
"""File descriptors the scan holds per worker: its pipe end and its process's sentinel (3 measured
while one starts), with one to spare."""
FDS_SPARE = 10
"""File descriptors kept free for the scan's own files while its workers run: the database, its
journal and lock, a tag write's file and its copy, a replaced worker's start."""


def workers_within_fd_limit(jobs: int) -> tuple[int, str | None]:
    """``jobs``, or fewer worker processes: as many as the open-file limit (``ulimit -n``, the soft
    RLIMIT_NOFILE) leaves room for, beside the files open now and `FDS_SPARE`; and, when fewer, why
    (for a warning). With ``ulimit -n 32``, ``--jobs 8`` failed at the fourth worker's start with a
    traceback ("Too many open files")."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return jobs, None
    try:
        used = len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
    except OSError:
        return jobs, None
    room = max(0, (soft - used - FDS_SPARE) // FDS_PER_WORKER)
    if room >= jobs:
        return jobs, None
    said = f"{room} worker process(es)" if room else "no worker process (all in this one)"
    return room, (f"scanning with {said} instead of {jobs}: the open-file limit (ulimit -n {soft}, {used} open) "
                  "leaves no room for more")  # fmt: skip


@contextmanager
def single_threaded_children():
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


class MessageReader:
    """The scan's reading of one worker's pipe, which never blocks: each `read` (called when
    ``multiprocessing.connection.wait`` finds the pipe readable) reads once what the pipe holds and
    returns the messages it completed. A message the worker has only partly written (a worker
    paused by SIGSTOP or a debugger, or descheduled while swapping, in the middle of a write)
    waits in the buffer: the scan goes on with the other workers, and the file timeout stops this
    one. (``Connection.recv`` would wait for the rest, for ever if the worker never writes it.)

    The worker writes with ``Connection.send``; its framing, kept by CPython for wire compatibility
    between versions, is a 4-byte big-endian signed length (-1 then an 8-byte length for messages
    over 2 GiB) and the pickled message."""

    CHUNK = 1 << 16

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.missing = 0
        """Bytes of the next message not read yet (0: its length is not known yet)."""

    def read(self) -> list | None:
        """The messages completed by one read of the pipe (maybe none); None when the pipe ended
        (a message cut short is dropped). Raises OSError when it cannot be read."""
        data = os.read(self.fd, max(self.CHUNK, self.missing))
        if not data:
            return None
        self.buf += data
        out, pos, end = [], 0, len(self.buf)
        while True:
            head = 4
            if end - pos < head:
                break
            (size,) = struct.unpack_from("!i", self.buf, pos)
            if size == -1:
                head = 12
                if end - pos < head:
                    break
                (size,) = struct.unpack_from("!Q", self.buf, pos + 4)
            if end - pos < head + size:
                self.missing = head + size - (end - pos)
                break
            out.append(ForkingPickler.loads(self.buf[pos + head : pos + head + size]))
            pos += head + size
            self.missing = 0
        del self.buf[:pos]
        return out


class Worker:
    """A worker process and the scan's end of the pipe that only the two of them share: the scan
    sends its tasks on it; the worker sends back, in order, its claim of each file (`Started`,
    written before it opens the file) and the file's messages, each written whole by the worker's
    own thread before it goes on. The scan reads them with `reader` (`MessageReader`), never
    waiting on one worker.

    Nothing is shared between workers (no queue, no lock): a worker killed at any moment, in the
    middle of writing a message included, takes only its own pipe with it, which then reads as
    ended (`ended`), and its last claim tells which file it held."""

    def __init__(self, proc, conn) -> None:
        self.proc = proc
        self.conn = conn
        self.reader = MessageReader(conn.fileno()) if conn is not None else None
        self.sent: deque[int] = deque()
        """Task ids sent to it and not finished, in the order it takes them."""
        self.current: int | None = None
        """The task it claimed (opened) and has not finished."""
        self.ended = False
        """Its pipe ended (EOF, or a message cut short): the worker is gone."""
        self.started = time.monotonic()
        self.heard: float | None = None
        """When its last message came (None: it has sent none, it may still be starting up)."""
        self.given: float = self.started
        """When it was last given a task while it held none (an idle worker owes no word)."""

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def silent_since(self) -> float:
        """Since when it owes a claim of the tasks it holds (`sent`) and has said nothing."""
        return max(self.given, self.heard or self.started)

    def unclaimed(self) -> list[int]:
        """The tasks sent to it that it has not opened (another worker can take them)."""
        return [t for t in self.sent if t != self.current]


def start_worker(ctx, target, args: tuple) -> Worker:
    """Start ``target(conn, *args)`` in a process of the multiprocessing context `ctx` (spawn), with
    `conn` its end of a new pipe; only the worker keeps that end, so its death ends the pipe."""
    ours, theirs = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=target, args=(theirs, *args), daemon=True)
    with single_threaded_children():
        proc.start()
    theirs.close()
    return Worker(proc, ours)


def stop_workers(workers: list[Worker], *, now: bool) -> None:
    """End the worker processes: after their current file (a ``None`` task each), or, `now`, at once
    (SIGTERM: a worker unwinds, ending its decoder subprocess, without writing what it had left),
    then SIGKILL for any still there after a grace period; their pipes are closed."""
    procs = [w.proc for w in workers]
    if now:
        for p in procs:
            _terminate(p)
    else:
        for w in workers:
            try:
                w.conn.send(None)
            except OSError:  # (gone already)
                pass
    deadline = time.monotonic() + (1.0 if now else 5.0)
    for p in procs:
        p.join(timeout=max(0.05, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)
    for w in workers:
        w.conn.close()


def _terminate(proc) -> None:
    """SIGTERM, and SIGCONT so that a worker paused (SIGSTOP, a debugger) acts on it now and exits
    cleanly, ending its decoder subprocess, rather than wait for SIGKILL."""
    if proc.is_alive():
        proc.terminate()
        try:
            os.kill(proc.pid, signal.SIGCONT)
        except (ProcessLookupError, AttributeError):  # (gone already; no SIGCONT on Windows)
            pass


def stop_process(proc, grace: float = 2.0) -> None:
    """Stop a worker: SIGTERM (it exits cleanly, ending its decoder subprocess), then SIGKILL."""
    if proc.is_alive():
        _terminate(proc)
        proc.join(timeout=grace)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=grace)

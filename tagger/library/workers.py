"""The scan's worker processes: started single-threaded, stopped after their file or at once.

Supervision (a dead worker fails its file and is replaced; a worker without progress for the
file timeout is stopped and replaced) is `tagger.library.runner.Runner`'s, which knows the files.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager


_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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


def stop_workers(procs: list, tasks, *, now: bool) -> None:
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


def stop_process(proc, grace: float = 2.0) -> None:
    """Stop a worker: SIGTERM (it exits cleanly, ending its decoder subprocess), then SIGKILL."""
    proc.terminate()
    proc.join(timeout=grace)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=grace)

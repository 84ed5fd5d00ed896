"""What a Dask cluster's worker runs for a scan (``tagger scan --backend dask``): the task per file
(`analyse_remote`: decode, window, features and the model, its result returned as a value), the
check before a scan (`worker_check`), what a worker process has done (`worker_stats`), and how a
worker gets its analyser (`AnalyserSpec`, loaded once per process and refused where it is not the
client's: `_worker_analyser`). The client that submits them is `tagger.library.distributed`.
Nothing here imports dask, TensorFlow or the database at import time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from tagger.errors import ModelError, TaggerError, UserError
from tagger.fingerprint import fingerprint
from tagger.library.analyse import AnalysisConfig, analyse_file
from tagger.library.assemble import score_blocks
from tagger.library.messages import Done, Failed, FileInfo, RemoteResult


@dataclass(frozen=True)
class AnalyserSpec:
    """How a worker gets the analyser (picklable, small).

    ``models``: `tagger.model.ensemble.Ensemble.load` of ``model_dir`` (None: the worker's default,
    ``$TAGGER_MODELS`` or the shipped models). ``factory``: ``"package.module:callable"`` called
    with ``kwargs`` (any object with the `tagger.library.scan.Analyser` interface; used by tests).
    ``expected_hash`` / ``expected_version``: what the client's analyser reports; a worker whose
    analyser differs refuses to work, as does one whose tagger is not ``expected_tagger``.
    """

    kind: str = "models"
    model_dir: str | None = None
    families: tuple[str, ...] | None = None
    factory: str | None = None
    kwargs: tuple = ()
    expected_hash: str | None = None
    expected_version: str | None = None
    expected_tagger: str | None = None
    """The client's tagger version: a worker running another refuses (its decoding, features or
    aggregation inputs may differ from the client's, and would mix into one database)."""
    expected_code: str | None = None
    """The client's `code_digest`: a worker whose tagger source files differ under the same version
    number (a checkout at another commit, local changes) refuses too."""

    def key(self) -> tuple:
        return (self.kind, self.model_dir, self.families, self.factory, self.kwargs)


_ANALYSERS: dict[tuple, object] = {}
_LOCK = threading.Lock()
_FILES = [0]
"""Files this worker process has analysed (`worker_stats`)."""


def _limit_inference_threads(worker=None) -> int | None:
    """Size the model's thread pools (ONNX Runtime or TensorFlow) to this Dask worker's threads
    (``--nthreads``), not to all the machine's cores: with one worker process per core they would
    otherwise oversubscribe it. Variables the user set are left alone. `worker`: the Dask worker
    (found from a task's context when None). Returns the size, or None when not in a worker."""
    try:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        n = int(worker.state.nthreads)
    except Exception:  # not inside a Dask worker
        return None
    from tagger.model.backends import limit_threads

    limit_threads(n)
    return n


_STOPS_LOCK = threading.Lock()
_STOPS = {"tasks": 0, "signalled": False}
"""The tagger tasks running in this process (`reporting_stops`), and whether a stop signal came."""
_OURS: dict = {}
"""Signal number -> (tagger's handler, ``dask worker``'s it stands in front of), while installed."""
_CLOSING: set = set()
"""The worker closings a stop signal began (kept referenced until done)."""


@contextlib.contextmanager
def reporting_stops(worker=None):
    """While a tagger task runs in a ``dask worker --no-nanny`` process, make a stop signal (SIGINT,
    SIGTERM) close its worker first, telling the scheduler it is closing, as ``dask worker`` does for
    a worker under a nanny; then hand the signal to ``dask worker``'s own handler. Without a nanny,
    distributed 2026.8's ``dask worker`` ends its event loop at the signal, which breaks the worker's
    connection before it closes: its stop read as a death (`_stopped_gracefully` in
    `tagger.library.distributed` finds no closing status), and a file it ran alone was stored as
    'the decoder crashed'. Only over ``dask worker``'s own handlers (`distributed._signals`), only
    without a nanny, only from the main thread (the worker's event loop there: `_set_stop_handlers`):
    any other process's handlers are left alone. Once no tagger task runs in the process, its
    handlers are ``dask worker``'s own again: a shared worker's other work, after a scan, stops as
    ``dask worker`` made it. A second signal goes straight to ``dask worker``'s handler (its quicker
    exit). `worker`: the Dask worker (found from a task's context when None)."""
    try:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        loop = None if worker.nanny else worker.loop
    except Exception:  # noqa: BLE001 - not inside a Dask worker
        loop = None
    if loop is None:
        yield
        return
    with _STOPS_LOCK:
        _STOPS["tasks"] += 1
    _update_stop_handlers(loop, worker)
    try:
        yield
    finally:
        with _STOPS_LOCK:
            _STOPS["tasks"] -= 1
        _update_stop_handlers(loop, worker)


def _update_stop_handlers(loop, worker) -> None:
    try:
        loop.add_callback(_set_stop_handlers, worker)
    except RuntimeError:  # (its event loop closed: the worker is gone)
        pass


def _set_stop_handlers(worker) -> None:
    """`reporting_stops`'s handlers, installed while a tagger task runs and removed after, from the
    worker's event loop (the main thread under ``dask worker``, the only thread that may set them).
    Each call reads the count of tasks when it runs, so the last one called leaves them right."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    with _STOPS_LOCK:
        wanted = _STOPS["tasks"] > 0 and not _STOPS["signalled"]
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        installed = _OURS.get(signum)
        if installed is not None:
            ours, theirs = installed
            if current is ours and wanted:
                continue
            _OURS.pop(signum, None)
            if current is ours:
                signal.signal(signum, theirs)
                continue
        if wanted and callable(current) and getattr(current, "__module__", None) == "distributed._signals":
            ours = _close_first(current, worker)
            _OURS[signum] = (ours, current)
            signal.signal(signum, ours)


def _close_first(theirs, worker):
    """A stop signal's handler that closes `worker`, then calls ``dask worker``'s handler `theirs`."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()

    async def close_then(signum, frame) -> None:
        try:
            await asyncio.wait_for(worker.close(timeout=10, executor_wait=False, nanny=False,
                                                reason=f"signal-{signum}"), 15)  # fmt: skip
        except Exception:  # noqa: BLE001 - dask worker's own stop follows
            pass
        finally:
            theirs(signum, frame)

    def start(signum, frame) -> None:
        task = loop.create_task(close_then(signum, frame))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    def on_stop(signum, frame) -> None:
        _STOPS["signalled"] = True  # (no lock in a signal handler: the main thread it stopped may hold it)
        _OURS.pop(signum, None)
        signal.signal(signum, theirs)  # (a second signal: dask worker's own handler, its quicker exit)
        loop.call_soon_threadsafe(start, signum, frame)

    return on_stop


def _load_analyser(spec: AnalyserSpec, worker=None):
    if spec.kind == "models":
        from tagger.model.backends import quiet_tensorflow

        quiet_tensorflow()
        _limit_inference_threads(worker)
        from tagger.model.ensemble import Ensemble

        return Ensemble.load(spec.model_dir, families=spec.families)
    if spec.kind == "factory" and spec.factory:
        module, _, name = spec.factory.partition(":")
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj(**dict(spec.kwargs))
    raise UserError(f"unknown analyser spec {spec!r}")


def _check_tagger(spec: AnalyserSpec) -> None:
    """Raise `UserError` when this worker runs another tagger version than the client's, or the same
    version number with other source files."""
    from tagger import __version__

    if spec.expected_tagger is not None and __version__ != spec.expected_tagger:
        raise UserError(f"the worker runs tagger {__version__}, the client {spec.expected_tagger}: install the same "
                        "tagger version on every machine")  # fmt: skip
    mine = code_digest()
    if spec.expected_code is not None and mine is not None and mine != spec.expected_code:
        raise UserError(f"the worker runs tagger {__version__} with other source files than the client's (code "
                        f"{mine[:12]}, the client's {spec.expected_code[:12]}: another commit or local changes): "
                        "install the same tagger version on every machine")  # fmt: skip


def code_digest(folder: str | None = None) -> str | None:
    """BLAKE2b (32 hex digits) over the relative paths and bytes of the ``.py`` files of the tagger
    package at `folder` (not hidden ones: an editor's ``.#name.py`` lock, a dangling link; not those of
    `MAPPED_IN`) (None: this process's; computed once), or None where it has none (compiled only).
    The version number alone does not tell two checkouts at different commits apart."""
    if folder is None:
        import tagger

        folder = os.path.dirname(os.path.abspath(tagger.__file__))
    return _code_digest(folder)


MAPPED_IN = ("migrations", "models")
"""The package's folders that an installation maps in from outside tagger/ (pyproject's package-dir:
the Alembic scripts and the models, as tagger.migrations and tagger.models), left out of
`code_digest`: a checkout has no tagger/migrations, a ``pip install .`` does, and the same commit
installed both ways must have one digest (the models are checked by their manifest hash)."""


@functools.lru_cache(maxsize=4)
def _code_digest(folder: str) -> str | None:
    h, found = hashlib.blake2b(digest_size=16), False
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (top == folder and d in MAPPED_IN))
        for name in sorted(f for f in files if f.endswith(".py") and not f.startswith(".")):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/").encode()
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:  # (not a module Python could import either: a dangling link)
                continue
            h.update(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(8, "little") + data)
            found = True
    return h.hexdigest() if found else None


def _worker_analyser(spec: AnalyserSpec, worker=None):
    """The worker process's analyser for `spec` (loaded once); raises `ModelError` on a mismatch
    (and `UserError` when the worker runs another tagger version)."""
    _check_tagger(spec)
    with _LOCK:
        analyser = _ANALYSERS.get(spec.key())
        if analyser is not None and spec.expected_hash is not None and analyser.hash != spec.expected_hash:
            analyser = None  # the model folder may have been replaced since: load it again
        if analyser is None:
            analyser = _ANALYSERS[spec.key()] = _load_analyser(spec, worker)
    if spec.expected_hash is not None and analyser.hash != spec.expected_hash:
        raise ModelError(
            spec.model_dir or "(worker default models)",
            f"the worker's model is {analyser.version} with manifest hash {analyser.hash[:16]}..., the client's is "
            f"{spec.expected_version} with {spec.expected_hash[:16]}...: install the same models on every machine",
        )
    return analyser


def worker_check(spec: AnalyserSpec, sample_path: str | None = None, dask_worker=None, *,
                 sample_fingerprint: str | None = None) -> dict:  # fmt: skip
    """Run on every worker before a scan (as a task, or by ``client.run``, which passes
    `dask_worker`): load the analyser and report what it is (or why not); with `sample_path`, also
    check that the worker sees that file (shared storage), and with `sample_fingerprint` (the
    client's), that it is the client's file there, not another one (another mount, a stale copy)."""
    try:
        a = _worker_analyser(spec, dask_worker)
    except (TaggerError, ImportError, OSError) as exc:
        return {"ok": False, "error": str(exc), "pid": os.getpid()}
    if sample_path is not None and not os.access(sample_path, os.R_OK):
        return {"ok": False, "pid": os.getpid(), "error": f"cannot read {sample_path} (mount the library at the same "
                "path on every worker machine, readable by the worker)"}  # fmt: skip
    if sample_path is not None and sample_fingerprint is not None and fingerprint_or_none(sample_path) != sample_fingerprint:
        return {"ok": False, "pid": os.getpid(), "error": f"sees another file at {sample_path} than the client does "
                "(another size or content: mount the library at the same path on every worker machine)"}  # fmt: skip
    return {"ok": True, "version": a.version, "hash": a.hash, "pid": os.getpid(), "stack": decoding_stack()}


def decoding_stack() -> dict[str, str]:
    """The versions of what turns a file into model input beside tagger's own code (computed once
    per process): ffmpeg, libsndfile, soundfile, soxr, NumPy, SciPy (``"missing"`` where absent).
    Machines whose versions differ may decode a file a little differently."""
    return dict(_decoding_stack())


@functools.lru_cache(maxsize=1)
def _decoding_stack() -> tuple:
    import subprocess

    out = {"numpy": np.__version__}
    for name, attrs in (("scipy", ("__version__",)), ("soxr", ("__version__",)),
                        ("soundfile", ("__version__", "__libsndfile_version__"))):  # fmt: skip
        try:
            module = importlib.import_module(name)
        except ImportError:
            out[name] = "missing"
            continue
        for attr in attrs:
            out["libsndfile" if attr == "__libsndfile_version__" else name] = str(getattr(module, attr, "unknown"))
    try:
        line = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
        out["ffmpeg"] = line.split()[2] if line.startswith("ffmpeg version ") else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        out["ffmpeg"] = "missing"
    return tuple(sorted(out.items()))


def worker_stats() -> dict:
    """What this worker process has done: ``{"pid", "files"}`` (``client.run(worker_stats)``)."""
    return {"pid": os.getpid(), "files": _FILES[0]}


def analyse_remote(path: str, *, spec: AnalyserSpec, config: AnalysisConfig, predict_batch: int = 64) -> RemoteResult:
    """One file, start to finish, on a worker: the task a scan submits.

    Returns a `RemoteResult`: the window probabilities (zeros for silent windows), the sample
    count and the per-stage ``stats``; or its ``error`` for a file that cannot be analysed; or
    ``fatal`` when this worker cannot analyse at all (model missing or another model): the client
    then stops the scan. The scores are assembled into a track result by the client
    (`tagger.library.assemble.TrackAssembler`), as for a local scan.
    """
    with reporting_stops():
        return _analyse_remote(path, spec=spec, config=config, predict_batch=predict_batch)


def _analyse_remote(path: str, *, spec: AnalyserSpec, config: AnalysisConfig, predict_batch: int) -> RemoteResult:
    try:
        analyser = _worker_analyser(spec)
    except (TaggerError, ImportError, OSError) as exc:
        return RemoteResult(path, fatal=f"the Dask worker {_worker_name()}: {exc}", worker=_worker_name())
    _FILES[0] += 1
    seen, worker = fingerprint_or_none(path), _worker_name()
    n_fam = len(analyser.families)
    meta: dict = {}
    starts, silent, probs = [], [], []
    inference = [0.0]

    def predict(feats: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = np.asarray(analyser.predict_features(feats), dtype=np.float32).reshape(len(feats), n_fam)
        inference[0] += time.perf_counter() - t
        return out

    def on_block(msg, active) -> None:
        nonlocal meta
        if isinstance(msg, FileInfo):
            meta = msg.meta
            return
        s = np.asarray(msg.silent, dtype=bool)
        full = np.zeros((len(s), n_fam), dtype=np.float32)
        if active is not None:
            full[~s] = active
        starts.append(np.asarray(msg.starts, dtype=np.int64))
        silent.append(s)
        probs.append(full)

    end = score_blocks(analyse_file(0, path, config=config), predict, batch=predict_batch, on_block=on_block)
    if isinstance(end, Failed):
        return RemoteResult(path, meta=meta, error=str(end.reason), unreadable=end.unreadable, fingerprint=seen,
                            worker=worker, stack=decoding_stack())  # fmt: skip
    if not isinstance(end, Done):
        return RemoteResult(path, meta=meta, error="the analysis ended without a result", fingerprint=seen, worker=worker,
                            stack=decoding_stack())  # fmt: skip
    stats = dict(end.stats or {})
    stats["seconds"] = {**(stats.get("seconds") or {}), "inference": inference[0]}
    return RemoteResult(
        path, meta=meta, samples=int(end.samples), stats=stats, note=end.note,
        starts=np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64),
        silent=np.concatenate(silent) if silent else np.zeros(0, dtype=bool),
        probs=np.concatenate(probs) if probs else np.zeros((0, n_fam), dtype=np.float32),
        fingerprint=seen, worker=worker, stack=decoding_stack(),
    )  # fmt: skip


def fingerprint_or_none(path: str) -> str | None:
    """The file's fingerprint as this worker sees it (192 KiB read), or None when it cannot read it
    (the analysis then says why)."""
    try:
        return fingerprint(path)
    except (TaggerError, OSError):
        return None


def _worker_name() -> str:
    """This Dask worker's address, or (outside a worker) this host and process."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # noqa: BLE001 - not inside a Dask worker
        return f"{socket.gethostname()} (pid {os.getpid()})"

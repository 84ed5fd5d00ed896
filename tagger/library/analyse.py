"""The per-file work of a scan, run in worker processes: decode, resample, window, features.

Nothing here imports TensorFlow or opens the database: a worker streams one file at a time through
`analyse_file`, which yields plain-value messages (never raises), and sends them on its own pipe
to the main process, which reads them as it goes (the main process runs the ensemble and writes
the database).

The messages are the small dataclasses of `tagger.library.messages` (`Started`, `Reading`,
`FileInfo`, `Windows`, `Done`, `Failed`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np

from tagger import constants as C
from tagger.errors import TaggerError
from tagger.fingerprint import content_hash_steps
from tagger.library.messages import Done, Failed, FileInfo, Message, Reading, Started, Windows


MIN_SECONDS = 0.1
"""Shorter files are an error ("too short to analyse"): they hold nothing to recognise."""


@dataclass(frozen=True)
class AnalysisConfig:
    """What a worker needs to turn a file into model input (picklable)."""

    features: dict
    """`tagger.features.FeatureConfig` as a dict."""
    hop_seconds: float = C.WINDOW_SECONDS
    silence_dbfs: float = C.SILENCE_DBFS
    batch_size: int = 32


def analyse_file(task_id: int, path: str, *, config: AnalysisConfig) -> Iterator[Message]:
    """Stream the messages for one file (see the module docstring); never raises for a bad file."""
    from tagger import audio
    from tagger import features as F

    cfg = F.FeatureConfig.from_dict(config.features)
    counted = [0]
    clock = time.perf_counter
    seconds = {"decode": 0.0, "resample": 0.0, "framing": 0.0, "features": 0.0}
    notes: list[str] = []

    def counting(blocks):
        for block in blocks:
            counted[0] += len(block)
            yield block

    try:
        t = clock()
        digest = yield from _read_whole(task_id, path)
        audio_digest = yield from _digest_audio(task_id, path)  # (from the page cache, as a rule)
        meta = audio.info(path)
        seconds["decode"] += clock() - t
        yield FileInfo(task_id, {"format": meta.format, "sample_rate": meta.sample_rate,
                                 "channels": meta.channels, "duration": meta.duration,
                                 "content_hash": digest, "audio_digest": audio_digest})  # fmt: skip

        def analysed(silence_dbfs: float) -> Iterator[tuple[Windows, float]]:
            """The file's `Windows` messages, the silence floor at `silence_dbfs`, each with its
            loudest window's level (dBFS)."""
            frames = audio.frame_windows(
                counting(audio.stream(path, meta=meta, timings=seconds, notes=notes)),
                hop_samples=int(round(config.hop_seconds * C.SAMPLE_RATE)),
                silence_dbfs=silence_dbfs,
                batch_size=config.batch_size,
            )
            while True:
                t, before = clock(), seconds["decode"] + seconds["resample"]
                w = next(frames, None)
                seconds["framing"] += clock() - t - (seconds["decode"] + seconds["resample"] - before)
                if w is None:
                    return
                t = clock()
                active = ~w.silent
                if active.any():
                    feats = F.compute(windows=w.audio[active], config=cfg)
                else:
                    feats = np.zeros((0, *cfg.shape), dtype=np.float32)
                seconds["features"] += clock() - t
                yield Windows(task_id, w.start, w.silent, feats), float(w.level.max(initial=-np.inf))

        # The messages of a file silent so far are held back: a file silent throughout, but not empty
        # (`quiet_floor`), is analysed again under a floor of its own level.
        held: list[Windows] | None = []
        loudest, told = -np.inf, time.monotonic()
        for msg, level in analysed(config.silence_dbfs):
            if held is not None and not msg.silent.all():
                yield from held
                held = None
            if held is None:
                yield msg
                continue
            held.append(msg)
            loudest = max(loudest, level)
            if time.monotonic() - told >= 1.0:  # (progress: a long silence is no hung decoder)
                told = time.monotonic()
                yield Reading(task_id, 0)
        floor = None if held is None else quiet_floor(loudest, silence_dbfs=config.silence_dbfs)
        if floor is None:
            yield from held or ()
        else:
            counted[0] = 0
            notes.clear()
            yield from (msg for msg, _ in analysed(floor))
        if counted[0] < MIN_SECONDS * C.SAMPLE_RATE:
            yield Failed(task_id, f"too short to analyse: {counted[0] / C.SAMPLE_RATE:.3f} s of audio "
                                  f"(at least {MIN_SECONDS:g} s needed)")  # fmt: skip
            return
        yield Done(task_id, counted[0], {"seconds": seconds, "pid": os.getpid(), "maxrss": peak_rss()}, "; ".join(notes))
    except TaggerError as exc:
        yield Failed(task_id, getattr(exc, "reason", None) or str(exc), unreadable=getattr(exc, "unreadable", False))
    except MemoryError:
        yield Failed(task_id, "out of memory while decoding")
    except Exception as exc:  # a worker returns every failure as a value, never raises
        yield Failed(task_id, f"unexpected {type(exc).__name__}: {exc}")


def quiet_floor(loudest: float, *, silence_dbfs: float = C.SILENCE_DBFS) -> float | None:
    """The silence floor (dBFS) of a file whose every window is below `silence_dbfs`, the loudest at
    `loudest` dBFS: `C.QUIET_RANGE_DB` below that window, not below `C.QUIET_FLOOR_DBFS`; None where
    even the loudest is under that (silence, hiss, dither: the file stays silent).

    Such a file (a transfer made at too low a gain, music at -66 dBFS RMS) was all silent windows,
    stored with no instruments, though the shipped models score it as its louder copy (their features
    are relative to each window's maximum). A file with any window at or above `silence_dbfs` keeps
    that floor: quieter windows of an ordinary file (the hiss before a tape's music, a fade) are not
    analysed."""
    if not loudest >= C.QUIET_FLOOR_DBFS or loudest >= silence_dbfs:
        return None
    return max(loudest - C.QUIET_RANGE_DB, C.QUIET_FLOOR_DBFS)


def _read_whole(task_id: int, path: str) -> Generator[Reading, None, str]:
    """The file's content hash, read whole before decoding (the decoder then reads it from cache),
    with a `Reading` message each second meanwhile: a large file on slow storage (a 3 GB DSD file
    at 10 MB/s takes 300 s, the default file timeout) must not be taken for a hung decoder."""
    steps, last = content_hash_steps(path), time.monotonic()
    while True:
        try:
            done = next(steps)
        except StopIteration as end:
            return end.value
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            yield Reading(task_id, done)


def _digest_audio(task_id: int, path: str) -> Generator[Reading, None, str | None]:
    """`tagger.tags.audio_digest_or_none` of the file, computed in a thread of its own while this one sends a `Reading`
    message each second in which it hashed more bytes (as `_read_whole` does): a large file that the
    page cache could not keep is read again, and must not be taken for a hung decoder (a read that
    makes no progress sends nothing: the file timeout still stops it)."""
    import threading

    from tagger.tags import audio_digest_or_none

    done, out = [0], [None]

    def run() -> None:
        out[0] = audio_digest_or_none(path, progress=lambda n: done.__setitem__(0, done[0] + n))

    thread = threading.Thread(target=run, name="audio-digest", daemon=True)
    thread.start()
    told = 0
    while True:
        thread.join(1.0)
        if not thread.is_alive():
            return out[0]
        if done[0] != told:
            told = done[0]
            yield Reading(task_id, told)


def _warm_up(config: AnalysisConfig) -> None:
    """Import the decoders and compute one window's features, so that a worker's first file is not
    charged with start-up time (the scan's per-file timeout measures files, not imports)."""
    from tagger import audio  # noqa: F401
    from tagger import features as F
    from tagger import tags  # noqa: F401  (`audio_digest_or_none`)

    cfg = F.FeatureConfig.from_dict(config.features)
    try:
        F.compute(windows=np.zeros((1, C.WINDOW_SAMPLES), dtype=np.float32), config=cfg)
    except Exception:  # only a warm-up: a real file reports any real problem
        pass


def peak_rss() -> int:
    """Peak resident memory of this process in bytes (0 where unknown).

    Linux's ``VmHWM`` first: ``getrusage``'s peak survives ``exec``, so a spawned worker would report
    the RSS of the process it was forked from."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except (ImportError, OSError):
        return 0


def _exit_on_sigterm(signum, _frame) -> None:
    # SystemExit unwinds the generators, whose cleanup kills a running decoder subprocess.
    raise SystemExit(128 + signum)


def die_with_parent(parent: int | None = None) -> None:
    """Make this process die (SIGKILL) when its parent does, however the parent ends (``kill -9``
    included): Linux ``PR_SET_PDEATHSIG``. When the parent `parent` is already gone (it died before
    the request took effect), exit at once. Elsewhere a no-op: the worker loop's parent check is
    the fallback."""
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        except (OSError, AttributeError):
            pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def worker_main(conn, config: AnalysisConfig, parent: int | None = None) -> None:
    """Worker process loop: take ``(task_id, path)`` from `conn` (this worker's own pipe to the scan,
    `tagger.library.workers.Worker`) until ``None``; send the file's messages back on it.

    Each file's `Started` is sent before the file is opened: a decoder that kills its worker at once
    must not leave the scan without word of which file the worker held. Every message is written
    whole by this thread before the next step (no sender thread, and no lock or queue shared with
    the other workers: a worker killed in the middle of a write cuts only its own pipe short). A
    message waits until the scan reads it, which bounds the memory of a scan that falls behind.

    Dies with the parent process `parent` (the scan; `die_with_parent`), and as a fallback exits by
    itself when it finds its parent gone or its pipe closed. Never blocks at exit: the scan reads
    every message of a file before it sends ``None``; when it stops early it stops the worker.
    """
    import signal

    parent = os.getppid() if parent is None else parent
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # stopped by the scan (a hung file): exit cleanly
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is the main process's to handle
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _warm_up(config)  # imports and first-call compilation happen before the file timeout counts

    try:
        while True:
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return
                continue
            item = conn.recv()
            if item is None:
                return
            task_id, path = item
            conn.send(Started(task_id, os.getpid()))  # (in the pipe before the file is opened)
            waited = 0.0
            for msg in analyse_file(task_id, path, config=config):
                if isinstance(msg, Done):
                    msg.stats["seconds"]["wait"] = waited
                t = time.perf_counter()
                conn.send(msg)
                waited += time.perf_counter() - t
    except (EOFError, OSError):  # the scan closed its end of the pipe, or is gone
        return

"""What crosses the process boundary between a scan's workers and its main process: one small
frozen dataclass per message (cheap to pickle), never a positional tuple.

A worker sends, per file: `Started` (worker processes only), any number of `Reading`, `FileInfo`,
any number of `Windows` (`Reading` before them too while a file silent so far is held back),
then exactly one of `Done` or `Failed`. Every message names its ``task_id`` (the index of the file
in the scan's work list) and its ``kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

import numpy as np


@dataclass(frozen=True)
class Started:
    """A worker process took the file (so a dead or hung worker can be matched to its file)."""

    kind: ClassVar[str] = "start"
    task_id: int
    pid: int


@dataclass(frozen=True)
class Reading:
    """The worker is reading the file whole before decoding it (its content hash, then the bytes that
    carry its audio for their digest; ``bytes_read`` counts those of the read under way), or decoding
    a file silent so far whose windows it holds back (``bytes_read`` 0: `analyse_file`), about once
    a second: progress, so that a large file on slow storage, or a long silence, is not taken for a
    hung decoder."""

    kind: ClassVar[str] = "reading"
    task_id: int
    bytes_read: int


@dataclass(frozen=True)
class FileInfo:
    """The file's format as probed: ``{"format", "sample_rate", "channels", "duration", "content_hash",
    "audio_digest"}`` (the hash of the whole file as the worker read it: `tagger.fingerprint.content_hash`;
    the hash of its audio bytes, tags excluded: `tagger.tags.audio_digest`, None where it has none)."""

    kind: ClassVar[str] = "info"
    task_id: int
    meta: dict


@dataclass(frozen=True, eq=False)
class Windows:
    """A block of consecutive windows of the file."""

    kind: ClassVar[str] = "windows"
    task_id: int
    starts: np.ndarray
    """[shape=(n,), int64] first sample of each window at 16 kHz."""
    silent: np.ndarray
    """[shape=(n,), bool] windows below the silence threshold (not scored)."""
    features: np.ndarray
    """[shape=(k, bins, frames), float32] the features of the k non-silent windows only."""


@dataclass(frozen=True)
class Done:
    """The file decoded to ``samples`` samples at 16 kHz; nothing else follows for this task."""

    kind: ClassVar[str] = "done"
    task_id: int
    samples: int
    stats: dict = field(default_factory=dict)
    """``{"seconds": {"decode", "resample", "framing", "features"[, "wait"]}, "pid", "maxrss"}``: time
    spent on the file per stage (``decode`` includes reading the whole file for its content hash;
    ``wait``: waiting for the scan to read a message, in a worker process) and the process's peak resident
    memory so far in bytes."""
    note: str = ""
    """What the user should know about a file analysed in part (damaged frames left out:
    `tagger.audio.stream`'s ``notes``); "" for none."""


@dataclass(frozen=True)
class Failed:
    """The file cannot be analysed (``reason`` for the user); nothing else follows for this task."""

    kind: ClassVar[str] = "error"
    task_id: int
    reason: str
    unreadable: bool = False
    """The file's bytes could not be read (`tagger.errors.AudioReadError.unreadable`): may pass."""


Message = Union[Started, Reading, FileInfo, Windows, Done, Failed]


@dataclass(frozen=True, eq=False)
class RemoteResult:
    """One file analysed on a cluster worker (`tagger.library.remote.analyse_remote`), model
    included: its window probabilities, or why it failed (``error``: this file; ``fatal``: this
    worker cannot analyse at all, e.g. another model, and the scan stops)."""

    path: str
    meta: dict = field(default_factory=dict)
    starts: np.ndarray | None = None
    """[shape=(n,), int64] first sample of each window at 16 kHz."""
    silent: np.ndarray | None = None
    """[shape=(n,), bool]."""
    probs: np.ndarray | None = None
    """[shape=(n, n_families), float32] zeros for silent windows."""
    samples: int = 0
    stats: dict = field(default_factory=dict)
    note: str = ""
    """As `Done.note`."""
    error: str | None = None
    unreadable: bool = False
    """As `Failed.unreadable`: the ``error`` is that the file's bytes could not be read (may pass)."""
    fatal: str | None = None
    fingerprint: str | None = None
    """`tagger.fingerprint.fingerprint` of the file as the worker saw it before analysing it (None:
    it could not read it): the client takes the result only where it is its own file's."""
    worker: str = ""
    """Which worker analysed it (its Dask address, or its host and process), for the messages."""
    stack: dict | None = None
    """The worker's `tagger.library.remote.decoding_stack` (ffmpeg, libsndfile... versions): the client
    warns of a worker whose versions differ from its own, once per worker, one that joined the
    cluster after the start-up check included."""

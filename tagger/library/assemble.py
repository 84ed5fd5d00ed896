"""The one track assembler: window scores -> arrays -> `tagger.aggregate.aggregate` -> track result.

Every way of analysing a file ends here: the local scan (`tagger.library.runner`), the Dask backend
(`tagger.library.distributed`, whose workers return window probabilities) and ``tagger predict``
(`analyse_track`, one file in this process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from tagger import constants as C
from tagger.aggregate import TrackResult, aggregate
from tagger.errors import AudioReadError
from tagger.library.messages import Done, Failed, FileInfo, Message, Windows


class TrackAssembler:
    """Collects one file's window scores, block by block, and aggregates them into a `TrackResult`."""

    def __init__(self, *, families: Sequence[str], thresholds, params: dict) -> None:
        self.families = tuple(families)
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.params = dict(params)
        self.meta: dict = {}
        self._starts: list[np.ndarray] = []
        self._silent: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []

    def add(self, starts, silent, probs) -> None:
        """A block of windows: ``starts`` [shape=(n,)] first sample at 16 kHz, ``silent``
        [shape=(n,), bool], ``probs`` [shape=(n, n_families)] (zeros for silent windows)."""
        self._starts.append(np.asarray(starts) / C.SAMPLE_RATE)
        self._silent.append(np.asarray(silent, dtype=bool))
        self._probs.append(np.asarray(probs, dtype=np.float32).reshape(len(self._silent[-1]), len(self.families)))

    def add_scored(self, starts, silent, active_probs) -> None:
        """A block whose non-silent windows only were scored (``active_probs`` [shape=(k, n_families)])."""
        silent = np.asarray(silent, dtype=bool)
        full = np.zeros((len(silent), len(self.families)), dtype=np.float32)
        if active_probs is not None and len(active_probs):
            full[~silent] = active_probs
        self.add(starts, silent, full)

    def result(self, *, samples: int) -> TrackResult:
        """The aggregated result of the file, which decoded to ``samples`` samples at 16 kHz.

        Raises `AudioReadError` (without a path: the caller names the file) when a scored window's
        probability is NaN or infinite: such a score is no answer, and nothing of it is stored."""
        if self._starts:
            probs, silent = np.concatenate(self._probs), np.concatenate(self._silent)
            starts = np.concatenate(self._starts)
        else:
            probs = np.zeros((0, len(self.families)), dtype=np.float32)
            silent, starts = np.zeros(0, dtype=bool), np.zeros(0)
        bad = ~np.isfinite(probs[~silent]).all(axis=1)
        if bad.any():
            raise AudioReadError(None, f"the model gave NaN or infinite scores for {int(bad.sum())} of its "
                                       f"{int((~silent).sum())} windows; nothing stored for it")  # fmt: skip
        return aggregate(probs, silent, starts, families=self.families, thresholds=self.thresholds,
                         duration=samples / C.SAMPLE_RATE, **self.params)  # fmt: skip


def score_blocks(messages: Iterable[Message], predict: Callable[[np.ndarray], np.ndarray], *, batch: int,
                 on_block: Callable[[Windows, np.ndarray | None], None]) -> Message | None:  # fmt: skip
    """Run ``predict`` over the `Windows` of one file's messages in batches of about ``batch``
    windows, calling ``on_block(windows, active_probs)`` in order; returns the final `Done` or
    `Failed` message (None if the stream ended without one). `FileInfo` goes to ``on_block`` too
    (with None)."""
    waiting: list[Windows] = []
    n = 0

    def flush() -> None:
        nonlocal n
        scored = [w for w in waiting if len(w.features)]
        out: list = []
        if scored:
            probs = np.asarray(predict(np.concatenate([w.features for w in scored])), dtype=np.float32)
            out = np.split(probs.reshape(sum(len(w.features) for w in scored), -1),
                           np.cumsum([len(w.features) for w in scored])[:-1])  # fmt: skip
        by_block = {id(w): p for w, p in zip(scored, out)}
        for w in waiting:
            on_block(w, by_block.get(id(w)))
        waiting.clear()
        n = 0

    for msg in messages:
        if isinstance(msg, Windows):
            waiting.append(msg)
            n += len(msg.features)
            if n >= batch:
                flush()
        elif isinstance(msg, FileInfo):
            on_block(msg, None)
        elif isinstance(msg, (Done, Failed)):
            flush()
            return msg
    flush()
    return None


def analyse_track(path: str | os.PathLike, ensemble, *, hop_seconds: float = C.WINDOW_SECONDS,
                  batch_size: int = 64, notes: list[str] | None = None) -> TrackResult:  # fmt: skip
    """Analyse one file in this process (``tagger predict``): the scan's worker steps, the model on
    batches of windows, the track assembler. Silent windows are not scored. What the user should
    know about a file analysed in part (`tagger.audio.stream`'s ``notes``, the scan's
    ``analysed_in_part``) is appended to ``notes``.

    Raises `AudioReadError` when the file cannot be decoded.
    """
    from tagger.library.analyse import AnalysisConfig, analyse_file

    config = AnalysisConfig(features=ensemble.feature_config.to_dict(), hop_seconds=hop_seconds, batch_size=batch_size)
    assembler = TrackAssembler(families=ensemble.families, thresholds=ensemble.thresholds, params=ensemble.aggregation)

    def on_block(msg, probs) -> None:
        if isinstance(msg, Windows):
            assembler.add_scored(msg.starts, msg.silent, probs)

    end = score_blocks(analyse_file(0, os.fspath(path), config=config),
                       lambda feats: ensemble.predict_features(feats, batch_size=batch_size),
                       batch=batch_size, on_block=on_block)  # fmt: skip
    if isinstance(end, Failed):
        raise AudioReadError(path, end.reason)
    if isinstance(end, Done) and end.note and notes is not None:
        notes.append(end.note)
    try:
        return assembler.result(samples=end.samples if isinstance(end, Done) else 0)
    except AudioReadError as exc:
        raise AudioReadError(path, exc.reason) from None

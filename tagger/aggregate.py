"""Per-track aggregation of window probabilities into instrument presence.

The rule (parameters stored in the model manifest under "aggregation", calibrated on validation
data, never on test data):

- Silent windows are ignored; a track with only silent windows has no instruments.
- A window *detects* a family when its probability reaches the family's threshold.
- A family's track score is the `quantile` (default 0.9) of its probabilities over the non-silent
  windows: a high quantile, so a family playing in part of a track counts while a single spurious
  window in a long track does not.
- The family is *present* when the score reaches the threshold and at least `min_windows` windows
  detect it (or every non-silent window, for a track with fewer windows than that).
- coverage = share of non-silent windows that detect the family; segments = runs of detecting
  windows (gaps of up to `merge_gap` windows bridged), in seconds.

The result also keeps the window scores it was computed from (``window_starts``,
``window_scores``), which the database stores for the timeline picture (`tagger.timeline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tagger import constants as C

DEFAULT_AGGREGATION = {"quantile": 0.9, "min_windows": 1, "merge_gap": 1}


def aggregation_params(given: dict | None) -> dict:
    """The rule's parameters: a model's calibrated ones (its manifest's "aggregation", or the JSON a
    model version row stores) over the defaults; other keys (``hop_seconds``) left out."""
    params = dict(DEFAULT_AGGREGATION)
    params.update({k: v for k, v in (given or {}).items() if k in DEFAULT_AGGREGATION})
    return params


@dataclass
class FamilyResult:
    family: str
    present: bool
    score: float
    coverage: float
    segments: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class TrackResult:
    families: tuple[str, ...]
    results: list[FamilyResult]
    windows: int
    silent_windows: int
    window_starts: np.ndarray | None = field(default=None, repr=False, compare=False)
    """np.ndarray [shape=(windows,)]: each window's start in seconds."""
    window_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    """np.ndarray [shape=(windows, len(families)), dtype=float32]: the window probabilities; NaN
    in the rows of silent windows (not scored)."""
    duration: float | None = None
    """The track's length in seconds, when known."""
    model_version: str | None = None
    """The version of the model that produced these results, where it is not the scan's: the stored
    results of a stale track (another model version's) that a tag-writing scan writes back into its
    file (`tagger.library.taghook.TagHook.retag`), named by their own model in INSTRUMENTS_MODEL.
    None: the scan's model."""

    @property
    def instruments(self) -> list[str]:
        """Present families in canonical order."""
        return [r.family for r in self.results if r.present]

    @property
    def scores(self) -> dict[str, float]:
        return {r.family: r.score for r in self.results}


def aggregate(
    probs: np.ndarray,
    silent: np.ndarray,
    starts: np.ndarray,
    *,
    families: Sequence[str],
    thresholds: np.ndarray,
    duration: float | None = None,
    quantile: float = DEFAULT_AGGREGATION["quantile"],
    min_windows: int = DEFAULT_AGGREGATION["min_windows"],
    merge_gap: int = DEFAULT_AGGREGATION["merge_gap"],
    window_seconds: float = C.WINDOW_SECONDS,
) -> TrackResult:
    """Aggregate one track.

    Parameters
    ----------
    probs : np.ndarray [shape=(n_windows, n_families)]
    silent : np.ndarray [shape=(n_windows,), dtype=bool]
    starts : np.ndarray [shape=(n_windows,)] window start times in seconds
    duration : track length in seconds (clips the last segment); None = no clipping
    """
    probs = np.asarray(probs, dtype=np.float32).reshape(len(silent), len(families))
    silent = np.asarray(silent, dtype=bool)
    starts = np.asarray(starts, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float32)
    active = ~silent
    p = probs[active]
    t = starts[active]
    results = []
    for j, fam in enumerate(families):
        if len(p) == 0:
            results.append(FamilyResult(fam, False, 0.0, 0.0))
            continue
        col = p[:, j]
        detect = col >= thresholds[j]
        score = float(np.quantile(col, quantile)) if len(col) > 1 else float(col[0])
        present = bool(score >= thresholds[j] and detect.sum() >= min(min_windows, len(col)))
        segments = _segments(t[detect], window_seconds=window_seconds, merge_gap=merge_gap, duration=duration)
        results.append(FamilyResult(fam, present, round(score, 4), round(float(detect.mean()), 4), segments))
    scores = probs.copy()
    scores[silent] = np.nan
    return TrackResult(tuple(families), results, windows=len(silent), silent_windows=int(silent.sum()),
                       window_starts=starts, window_scores=scores, duration=duration)  # fmt: skip


def _segments(
    starts: np.ndarray, *, window_seconds: float, merge_gap: int, duration: float | None
) -> list[tuple[float, float]]:
    if len(starts) == 0:
        return []
    segs: list[list[float]] = []
    for s in np.sort(starts):
        end = s + window_seconds
        if segs and s <= segs[-1][1] + merge_gap * window_seconds + 1e-6:
            segs[-1][1] = max(segs[-1][1], end)
        else:
            segs.append([float(s), float(end)])
    if duration is not None:
        segs = [[a, min(b, duration)] for a, b in segs if a < duration]
    return [(round(a, 3), round(b, 3)) for a, b in segs]


def aggregate_range(
    scores: np.ndarray,
    starts: np.ndarray,
    *,
    start: float,
    end: float | None,
    families: Sequence[str],
    thresholds: np.ndarray,
    duration: float | None = None,
    window_seconds: float = C.WINDOW_SECONDS,
    **params,
) -> TrackResult:
    """The track rule (`aggregate`, the one every track is aggregated with) over the part of a track
    from ``start`` to ``end`` seconds (None: its end), from the window scores stored for the whole
    track: a cue sheet's track of an album image. ``duration``: the whole track's length, which
    the last part's segments are cut to.

    The part takes the windows whose middle lies in it (each window counts in one part only); a part
    shorter than that takes the windows that overlap it. Segments stay in the whole file's time,
    cut to the part.

    Parameters
    ----------
    scores : np.ndarray [shape=(n_windows, n_families)] NaN in the rows of silent windows
    starts : np.ndarray [shape=(n_windows,)] window starts in seconds
    """
    scores = np.asarray(scores, dtype=np.float32)
    starts = np.asarray(starts, dtype=np.float64)
    stop = np.inf if end is None else end
    middle = starts + window_seconds / 2
    chosen = (middle >= start) & (middle < stop)
    if not chosen.any():
        chosen = (starts < stop) & (starts + window_seconds > start)
    part, part_starts = scores[chosen], starts[chosen]
    silent = np.isnan(part).all(axis=1) if part.size else np.zeros(len(part), dtype=bool)
    result = aggregate(np.nan_to_num(part, nan=0.0), silent, part_starts, families=families, thresholds=thresholds,
                       duration=duration if end is None else end, window_seconds=window_seconds, **params)  # fmt: skip
    for r in result.results:
        r.segments = [(max(a, round(start, 3)), b) for a, b in r.segments if b > start]
    return result

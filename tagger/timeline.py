"""The timeline picture of one track: where each instrument family plays.

One lane per family, the time axis shared: the family's window scores as a step curve (each window
drawn over its hop), its decision threshold as a dashed line, its detected segments shaded, and
its name marked when the family is present in the track. The title gives the file's name and the
model version. Drawn with matplotlib's Agg canvas (no display); PNG or SVG by the output's
extension.

`Timeline` is what is drawn; `from_result` builds it from a fresh analysis (`tagger predict`),
`tagger.db.detail.track_timeline` from the library database (`tagger show`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.display import shown
from tagger.errors import UserError

FORMATS = (".png", ".svg")
DPI = 100
WIDTH = 12.0
"""Figure width in inches (1200 px at `DPI`)."""
LANE_HEIGHT = 0.55
HEADER_HEIGHT = 1.0
"""Inches above and below the lanes: title, time axis, legend."""


@dataclass
class Timeline:
    """The window scores of one track and what the model decided from them."""

    path: str
    model_version: str | None
    families: list[str]
    starts: np.ndarray
    """np.ndarray [shape=(n_windows,)]: window starts in seconds."""
    scores: np.ndarray
    """np.ndarray [shape=(n_windows, n_families)]: probabilities; NaN for silent windows."""
    thresholds: dict[str, float]
    segments: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    duration: float | None = None
    window_seconds: float = C.WINDOW_SECONDS


def from_result(path: str | os.PathLike, result, *, thresholds: Sequence[float], model_version: str | None) -> Timeline:
    """The timeline of a `tagger.aggregate.TrackResult` (which keeps its window scores)."""
    if result.window_scores is None:
        raise UserError(f"{path}: the result holds no window scores")
    return Timeline(
        path=os.fspath(path),
        model_version=model_version,
        families=list(result.families),
        starts=np.asarray(result.window_starts, dtype=np.float32),
        scores=np.asarray(result.window_scores, dtype=np.float32),
        thresholds={f: float(t) for f, t in zip(result.families, np.asarray(thresholds, dtype=float))},
        segments={r.family: list(r.segments) for r in result.results if r.segments},
        present=list(result.instruments),
        duration=result.duration,
    )


MARK = "tagger timeline"
"""Written into every picture's metadata (PNG ``Software``, SVG ``Creator``): a picture tagger drew is
the only existing file a new one replaces."""


def check_output(path: str | os.PathLike) -> Path:
    """`path` as a `Path`, refused (UserError) unless it ends in .png or .svg and no file is there but
    an earlier timeline (`MARK`): a cover.png or anything else of the user's is never drawn over."""
    from tagger.outputs import check_replaceable

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"{path}: the picture must be a .png or .svg file")
    return check_replaceable(path, ours=lambda head: MARK.encode() in head, what="a timeline picture")


def figure_size(n_families: int) -> tuple[float, float]:
    """(width, height) in inches of the figure for `n_families` lanes."""
    return WIDTH, HEADER_HEIGHT + LANE_HEIGHT * max(1, n_families)


def draw(timeline: Timeline, out: str | os.PathLike, *, dpi: int = DPI) -> np.ndarray:
    """Draw `timeline` into `out` (.png or .svg); returns the scores drawn.

    The returned array [shape=(n_families, n_windows)] holds, lane by lane from the top, the values
    the step curves were drawn from (NaN where a window is silent), so a caller can check the
    picture against the stored scores. A PNG is exactly ``figure_size(n) * dpi`` pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = check_output(out)
    fams = list(timeline.families)
    starts = np.asarray(timeline.starts, dtype=np.float64)
    scores = np.asarray(timeline.scores, dtype=np.float32).reshape(len(starts), len(fams))
    step = _step(starts, timeline.window_seconds)
    end = float(timeline.duration or (starts[-1] + step if len(starts) else 0.0)) or timeline.window_seconds
    edges = np.append(starts, starts[-1] + step) if len(starts) else np.zeros(1)

    width, height = figure_size(len(fams))
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    top = 1 - 0.55 / height
    bottom = 0.55 / height
    axes = fig.subplots(len(fams), 1, sharex=True, squeeze=False,
                        gridspec_kw={"hspace": 0.08, "top": top, "bottom": bottom, "left": 0.09, "right": 0.985})[:, 0]  # fmt: skip
    drawn = np.full((len(fams), len(starts)), np.nan, dtype=np.float32)
    colours = _colours(len(fams))
    for j, (ax, fam) in enumerate(zip(axes, fams)):
        col = scores[:, j]
        drawn[j] = col
        present = fam in timeline.present
        colour = colours[j]
        for a, b in timeline.segments.get(fam, ()):
            ax.axvspan(a, b, color=colour, alpha=0.18, lw=0)
        if len(col):
            steps = np.append(col, col[-1])
            ax.fill_between(edges, np.nan_to_num(steps), step="post", color=colour, alpha=0.85 if present else 0.35, lw=0)
            ax.step(edges, steps, where="post", color=colour, lw=0.9)
        silent = np.isnan(col)
        for s, e in zip(starts[silent], starts[silent] + step):
            ax.axvspan(s, e, color="0.85", lw=0, zorder=0)
        thr = timeline.thresholds.get(fam)
        if thr is not None:
            ax.axhline(thr, color="k", ls="--", lw=0.8)
        ax.set_ylim(0, 1.02)
        ax.set_yticks([])
        ax.set_xlim(0, end)
        ax.set_ylabel(fam, rotation=0, ha="right", va="center", fontsize=9, fontweight="bold" if present else "normal")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel("time (s)")
    name = shown(os.path.basename(timeline.path))  # (one line; a name that is not UTF-8 with \x escapes)
    found = ", ".join(timeline.present) or "no instrument"
    # parse_math=False: a name holding "$" ("x$^$y.flac") is text, not mathtext that fails to parse
    fig.suptitle(f"{name}  ·  model {shown(timeline.model_version or '?')}  ·  {found}", fontsize=10,
                 y=1 - 0.12 / height, parse_math=False)
    fig.text(0.01, 0.06 / height, "step curve: window score (0-1); dashed: threshold; shaded: detected segments; "
             "grey: silent; bold name: present", ha="left", va="bottom", fontsize=7, color="0.3")  # fmt: skip
    from tagger.outputs import write_atomic

    kind = out.suffix.lower().lstrip(".")
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": MARK} if kind == "png" else {"Creator": MARK}
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format=kind, metadata=metadata))
    return drawn


def _step(starts: np.ndarray, window_seconds: float) -> float:
    """How wide a window is drawn: the hop between windows (the window length when there is one)."""
    if len(starts) > 1:
        hop = float(np.median(np.diff(starts)))
        if hop > 0:
            return min(hop, window_seconds)
    return window_seconds


def _colours(n: int) -> list:
    """A colour per lane: matplotlib's tab10 without its grey, the colour of silent windows (its eighth
    colour drew the eighth family, reed, whose scores then looked like silence), a dark indigo in its place."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    palette = [cmap(i) for i in range(10)]
    palette[7] = colormaps["tab20b"](0)
    return [palette[i % 10] for i in range(n)]


def thresholds_from_json(families: Sequence[str], thresholds: Mapping[str, float]) -> dict[str, float]:
    """The thresholds of `families` from a model version's JSON object (missing ones left out)."""
    return {f: float(thresholds[f]) for f in families if f in thresholds}

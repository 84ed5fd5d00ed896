"""The report's figures (PNG), drawn with matplotlib's Agg canvas (no display, no pyplot state).

matplotlib is imported inside the functions, so importing this module stays cheap. Each function
takes the results of `tagger.evaluate.protocols` and returns the path it wrote.

- `metrics_vs_level`: Jaccard accuracy, Hamming accuracy and EMR against polyphony level, with the
  paper's published accuracy and EMR (the paper's Fig. 6).
- `family_vs_level`: one line per family of a per-family metric against level (Figs. 7-8).
- `level_confusions`: the 2x2 confusion matrix of every family at one level (Figs. 9-14).
- `solo_confusion`: the family confusion matrix of the solo test.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tagger.evaluate import paper

DPI = 110


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def _values(levels: Mapping[str, dict], getter) -> np.ndarray:
    out = []
    for k in levels:
        v = getter(levels[k])
        out.append(np.nan if v is None else float(v))
    return np.array(out, dtype=np.float64)


def metrics_vs_level(levels: Mapping[str, dict], *, path: str | os.PathLike, title: str | None = None) -> Path:
    """Fig. 6: our Jaccard accuracy, Hamming accuracy and EMR per level, and the paper's."""
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    x = np.array([int(k) for k in levels])
    for key, label, marker in (("jaccard", "accuracy (Jaccard), ours", "o"), ("hamming", "Hamming accuracy, ours", "s"), ("emr", "exact match ratio, ours", "^")):
        ax.plot(x, 100 * _values(levels, lambda v, key=key: v[key]), marker=marker, label=label)
    px = [k for k in x if k in paper.LEVEL_ACCURACY]
    ax.plot(px, [100 * paper.LEVEL_ACCURACY[k] for k in px], "k--", marker="o", mfc="none", label="accuracy, paper (Table V)")
    ax.plot(px, [100 * paper.LEVEL_EMR[k] for k in px], "k:", marker="^", mfc="none", label="EMR, paper (Table V)")
    ax.set_xlabel("polyphony level (number of instruments in the mixture)")
    ax.set_ylabel("score (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(x)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "Recognition of instrument families against polyphony level")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return _save(fig, path)


METRIC_NAMES = {
    "accuracy": "per-family accuracy (TP+TN)/n",
    "tpr": "true-positive rate TP/(TP+FN)",
    "fpr": "false-positive rate FP/(FP+TN)",
}


def family_vs_level(
    levels: Mapping[str, dict], families: Sequence[str], *, metric: str, path: str | os.PathLike
) -> Path:
    """Figs. 7-8: one line per family of `metric` ('accuracy', 'tpr' or 'fpr') against level.

    Levels where the metric is undefined for a family (TPR at level 0, FPR at the top level) leave a gap.
    """
    from matplotlib import colormaps

    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    x = np.array([int(k) for k in levels])
    cmap = colormaps["tab10"]
    markers = "osD^vP*Xh<>"
    for i, fam in enumerate(families):
        y = 100 * _values(levels, lambda v, fam=fam: v["families"][fam][metric])
        ax.plot(x, y, marker=markers[i % len(markers)], markersize=4, color=cmap(i % 10), label=fam, alpha=0.85)
    ax.set_xlabel("polyphony level (number of instruments in the mixture)")
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(x)
    ax.grid(True, alpha=0.3)
    name = METRIC_NAMES.get(metric, metric)
    ax.set_title(f"{name[:1].upper()}{name[1:]} of each family against polyphony level")
    ax.legend(title="family", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return _save(fig, path)


def level_confusions(level: str | int, entry: dict, families: Sequence[str], *, path: str | os.PathLike) -> Path:
    """Figs. 9-14: each family's 2x2 confusion matrix at one level, counts and row shares."""
    cols = 5
    rows = max(1, math.ceil(len(families) / cols))
    fig = _figure(2.3 * cols, 2.4 * rows + 0.6)
    for i, fam in enumerate(families):
        ax = fig.add_subplot(rows, cols, i + 1)
        cm = np.array(entry["families"][fam]["confusion"], dtype=np.float64)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for r in range(2):
            for c in range(2):
                ax.text(c, r, f"{int(cm[r, c])}", ha="center", va="center", color="white" if share[r, c] > 0.6 else "black")
        ax.set_xticks([0, 1], ["absent", "present"], fontsize="small")
        ax.set_yticks([0, 1], ["absent", "present"] if i % cols == 0 else ["", ""], fontsize="small")
        ax.set_title(fam, fontsize="medium")
        if i % cols == 0:
            ax.set_ylabel("true", fontsize="small")
        if i >= len(families) - cols:
            ax.set_xlabel("predicted", fontsize="small")
    fig.suptitle(
        f"Level {int(level)}: per-family confusion matrices over {entry['n']} mixtures "
        "(counts; colour = share of the true row)"
    )
    return _save(fig, path)


def solo_confusion(confusion: dict, *, path: str | os.PathLike) -> Path:
    """The solo test's family confusion matrix (rows true family, columns predicted, plus 'none')."""
    counts = np.array(confusion["counts"], dtype=np.float64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    rows, cols = confusion["rows"], confusion["columns"]
    fig = _figure(0.6 * len(cols) + 2.5, 0.55 * len(rows) + 1.8)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for r in range(counts.shape[0]):
        for c in range(counts.shape[1]):
            if counts[r, c]:
                ax.text(c, r, f"{int(counts[r, c])}", ha="center", va="center", fontsize="small",
                        color="white" if share[r, c] > 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted family ('none': no family above its threshold)")
    ax.set_ylabel("true family")
    ax.set_title("Solo test: confusion matrix (counts; colour = share of the true family's notes)")
    fig.colorbar(im, ax=ax, label="share of row")
    return _save(fig, path)


def write_plots(plot_dir: str | os.PathLike, *, solo=None, polyphony=None) -> dict[str, Path]:
    """Every figure of a report; `solo`/`polyphony` are the report's results (or None)."""
    out = Path(plot_dir)
    files: dict[str, Path] = {}
    if solo is not None:
        files["solo_confusion"] = solo_confusion(solo.metrics["confusion"], path=out / "solo_confusion.png")
    if polyphony is not None:
        levels = polyphony.metrics["levels"]
        fams = polyphony.predictions.families
        files["metrics_vs_level"] = metrics_vs_level(levels, path=out / "metrics_vs_level.png")
        for metric in ("accuracy", "tpr", "fpr"):
            files[f"family_{metric}_vs_level"] = family_vs_level(
                levels, fams, metric=metric, path=out / f"family_{metric}_vs_level.png"
            )
        for k, entry in levels.items():
            name = f"confusion_level_{int(k):02d}"
            files[name] = level_confusions(k, entry, fams, path=out / f"{name}.png")
    return files

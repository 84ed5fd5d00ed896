"""The paper's two evaluation protocols, run on any scorer (`Scorer`: families, thresholds, predict).

- **Solo test** (Table VI): every note of a split, scored one by one (`evaluate_solo`); per-family
  precision, recall, F1, support, accuracy, macro and weighted averages, and the family confusion
  matrix (`solo_metrics`).
- **Polyphony levels** (Table V): per level k (0..10), N mixtures of k notes of distinct families,
  drawn with a seed from the split and rendered in memory (`tagger.data.mix`), or read from a mixture
  folder written by `tagger dataset mix` (``labels.json``) (`evaluate_polyphony`, `polyphony_metrics`).

The decision thresholds are the scorer's (the model manifest's); nothing here looks at the test
labels before deciding. `Predictions` hold what the model said, from which every number can be
recomputed. The numbers themselves come from `tagger.evaluate.metrics`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tagger import constants as C
from tagger.data import mix as M
from tagger.data.nsynth import NoteDataset, load_note_audio
from tagger.errors import DatasetError, UserError
from tagger.evaluate import metrics as MX
from tagger.evaluate.defaults import DEFAULT_BATCH, DEFAULT_PER_LEVEL, DEFAULT_SEED, DEFAULT_SPLIT  # noqa: F401
from tagger.instruments import from_bits
from tagger.outputs import write_atomic

log = logging.getLogger(__name__)


Progress = Callable[[int, int], None]
"""progress(done, total), called after each batch."""


class Scorer(Protocol):
    """What evaluation needs of a model (`tagger.model.ensemble.Ensemble` is one)."""

    families: tuple[str, ...]
    thresholds: np.ndarray

    def predict(self, windows: np.ndarray) -> np.ndarray: ...


# --- predictions ------------------------------------------------------------------------------


@dataclass
class Predictions:
    """What a model said about a set of examples, in the model's family order."""

    families: tuple[str, ...]
    ids: list[str]
    """note_str of a solo note, or the mixture's file name."""
    levels: np.ndarray
    """[shape=(n,), dtype=int64] number of instruments in each example."""
    truth: np.ndarray
    """[shape=(n, n_families), dtype=uint8] presence labels."""
    scores: np.ndarray
    """[shape=(n, n_families), dtype=float32] ensemble probabilities."""
    thresholds: np.ndarray
    """[shape=(n_families,)] the manifest thresholds the decisions used."""

    @property
    def decisions(self) -> np.ndarray:
        """[shape=(n, n_families), dtype=uint8] score >= threshold."""
        return (self.scores >= self.thresholds).astype(np.uint8)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictions to `path` (.npz) whole or not at all (a temporary file renamed over it)."""
        path = Path(path)
        arrays = dict(families=np.array(self.families, dtype=str), ids=np.array(self.ids, dtype=str), levels=self.levels,
                      truth=self.truth, scores=self.scores, thresholds=self.thresholds, decisions=self.decisions)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # (a file object: savez would add ".npz" to the temporary name)
                np.savez_compressed(fh, **arrays)

        write_atomic(path, save)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictions:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    families=tuple(str(f) for f in data["families"]),
                    ids=[str(i) for i in data["ids"]],
                    levels=data["levels"].astype(np.int64),
                    truth=data["truth"].astype(np.uint8),
                    scores=data["scores"].astype(np.float32),
                    thresholds=data["thresholds"].astype(np.float32),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(path, f"cannot read saved predictions: {exc}") from None


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _score(
    scorer: Scorer,
    items: Sequence,
    load: Callable[[Sequence], np.ndarray],
    *,
    batch_size: int,
    progress: Progress | None,
) -> np.ndarray:
    """Scores of `items`, decoding and predicting `batch_size` windows at a time to bound memory."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    out = [np.zeros((0, len(scorer.families)), dtype=np.float32)]
    done = 0
    for chunk in _batches(items, batch_size):
        windows = load(chunk)
        scores = np.asarray(scorer.predict(windows), dtype=np.float32)
        if scores.shape != (len(chunk), len(scorer.families)):
            raise UserError(f"the model returned scores of shape {scores.shape} for {len(chunk)} windows")
        out.append(scores)
        done += len(chunk)
        if progress is not None:
            progress(done, len(items))
    return np.concatenate(out)


def _family_index(families: Sequence[str]) -> dict[str, int]:
    return {f: i for i, f in enumerate(families)}


def _relabel(bits: str, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """A label bit string over `source` families as a presence array over `target` families."""
    present = {f for f, b in zip(source, from_bits(bits, families=source)) if b}
    return np.array([1 if f in present else 0 for f in target], dtype=np.uint8)


# --- solo test --------------------------------------------------------------------------------


@dataclass
class SoloResult:
    predictions: Predictions
    metrics: dict
    notes_cut: list[dict] = field(default_factory=list)
    """The notes longer than the window, scored on their first 4 s (`load_note_audio`'s `cut`)."""


def solo_metrics(predictions: Predictions) -> dict:
    """Every solo-test number from saved predictions (the report's ``solo`` section)."""
    fams = predictions.families
    truth_index = np.argmax(predictions.truth, axis=1)
    pred_index = MX.single_label_predictions(scores=predictions.scores, thresholds=predictions.thresholds)
    cm = MX.solo_confusion_matrix(truth_index=truth_index, pred_index=pred_index, n_families=len(fams))
    decisions = predictions.decisions
    top1 = MX.oracle_count_predictions(truth=predictions.truth, scores=predictions.scores)
    return {
        "n": len(predictions.ids),
        "single_label": MX.classification_report(cm, fams),
        "ranking": {"top1_accuracy": MX.exact_match_ratio(truth=predictions.truth, pred=top1)},
        "confusion": {"rows": list(fams), "columns": [*fams, MX.NONE_LABEL], "counts": cm.tolist()},
        "multilabel": {
            **MX.multilabel_summary(truth=predictions.truth, pred=decisions),
            "families": MX.family_table(MX.family_counts(truth=predictions.truth, pred=decisions), fams),
        },
    }


def evaluate_solo(
    scorer: Scorer,
    dataset: NoteDataset,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    max_notes: int | None = None,
    seed: int = DEFAULT_SEED,
) -> SoloResult:
    """Score every note of `dataset` whose family the model knows (the Table VI protocol), or a
    seeded uniform sample of `max_notes` of them (for models too slow to score them all)."""
    fams = tuple(scorer.families)
    index = _family_index(fams)
    notes = [n for n in dataset.notes if n.family in index]
    if not notes:
        raise DatasetError(dataset.root, f"no notes of the model's families ({', '.join(fams)}) to test on")
    if max_notes is not None and max_notes < len(notes):
        keep = np.sort(np.random.default_rng(seed).choice(len(notes), size=max_notes, replace=False))
        notes = [notes[i] for i in keep]
    truth = np.zeros((len(notes), len(fams)), dtype=np.uint8)
    truth[np.arange(len(notes)), [index[n.family] for n in notes]] = 1
    cut: list[dict] = []
    scores = _score(scorer, notes, lambda chunk: load_note_audio(chunk, cut=cut), batch_size=batch_size, progress=progress)
    preds = Predictions(
        families=fams,
        ids=[n.note_str for n in notes],
        levels=np.ones(len(notes), dtype=np.int64),
        truth=truth,
        scores=scores,
        thresholds=np.asarray(scorer.thresholds, dtype=np.float32),
    )
    return SoloResult(predictions=preds, metrics=solo_metrics(preds), notes_cut=cut)


# --- polyphony levels ---------------------------------------------------------------------------


@dataclass
class PolyphonyResult:
    predictions: Predictions
    metrics: dict
    source: dict = field(default_factory=dict)
    """How the mixtures were made: per_level, seed, levels, settings or the manifest read."""


def polyphony_metrics(predictions: Predictions) -> dict:
    """Every polyphony number from saved predictions (the report's ``polyphony`` section)."""
    fams = predictions.families
    levels = MX.per_level(levels=predictions.levels, truth=predictions.truth, pred=predictions.decisions, families=fams)
    oracle = MX.oracle_count_predictions(truth=predictions.truth, scores=predictions.scores)
    ranked = MX.per_level(levels=predictions.levels, truth=predictions.truth, pred=oracle, families=fams)
    return {
        "n": len(predictions.ids),
        "levels": {str(k): v for k, v in levels.items()},
        "overall": MX.overall(levels),
        "family_overall": MX.family_overall(levels, fams),
        "oracle_count": {
            "levels": {str(k): {m: v[m] for m in ("jaccard", "emr")} for k, v in ranked.items()},
            "overall": MX.overall(ranked, keys=("jaccard", "emr")),
        },
    }


def _restrict(dataset: NoteDataset, families: Sequence[str]) -> NoteDataset:
    keep = set(families)
    return NoteDataset(
        root=dataset.root,
        notes=[n for n in dataset.notes if n.family in keep],
        negatives=dataset.negatives,
        families=tuple(families),
    )


def _read_mixture_windows(records: Sequence[dict], *, padded: list[dict] | None = None,
                          cut: list[dict] | None = None) -> np.ndarray:  # fmt: skip
    """The first 4 s window of each mixture file [shape=(n, WINDOW_SAMPLES)]. A clip shorter than the
    window is padded with silence (as a scan pads a track's last window) and, when `padded` is
    given, listed there with its length; a clip longer than the window (by more than 10 ms, as its
    container gives its length) is scored on its first window and, when `cut` is given, listed there
    with its length. A file with no audio at all, or one of more than 1% NaN or infinite samples
    (which `tagger predict` refuses too; was: scored as silence, a right answer at level 0), is an
    `AudioReadError` from `audio.load`, which decodes each file to its end for its checks."""
    from tagger import audio

    out = np.zeros((len(records), C.WINDOW_SAMPLES), dtype=np.float32)
    for i, rec in enumerate(records):
        clip = audio.load(rec["path"], max_seconds=C.WINDOW_SECONDS, checked=True)  # (was: a WAV of NaN read as silence)
        if len(clip) < C.WINDOW_SAMPLES and padded is not None:
            padded.append({"file": rec["file"], "seconds": round(len(clip) / C.SAMPLE_RATE, 3)})
        elif cut is not None:
            length = audio.info(rec["path"]).duration
            if length is not None and length > C.WINDOW_SECONDS + 0.01:
                cut.append({"file": rec["file"], "seconds": round(length, 3)})
        out[i, : len(clip)] = clip[: C.WINDOW_SAMPLES]
    return out


def _render_windows(records: Sequence[dict], *, cut: list[dict] | None = None) -> np.ndarray:
    """The mixtures of `records` rendered from their notes; the notes longer than the window listed in `cut`."""
    if not records:
        return np.zeros((0, C.WINDOW_SAMPLES), np.float32)
    return np.stack([M.render_mixture(r, cut=cut) for r in records])


def evaluate_polyphony(
    scorer: Scorer,
    source: NoteDataset | dict,
    *,
    per_level: int = DEFAULT_PER_LEVEL,
    levels: Sequence[int] | None = None,
    seed: int = DEFAULT_SEED,
    settings: M.MixSettings = M.MixSettings(),
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> PolyphonyResult:
    """Score mixtures per polyphony level (the Table V protocol).

    `source` is a note dataset (mixtures are drawn with `seed` and rendered in memory, `per_level`
    per level, levels 0..n_families by default) or a mixture manifest from
    `tagger.data.mix.read_manifest` (its files are read; `levels` filters them, `per_level`, `seed`
    and `settings` are those of the manifest).
    """
    fams = tuple(scorer.families)
    if isinstance(source, NoteDataset):
        if per_level < 1:
            raise UserError(f"per_level must be at least 1, got {per_level}")
        ds = _restrict(source, fams)
        lv = list(range(len(fams) + 1)) if levels is None else sorted(set(levels))
        if lv and (min(lv) < 0 or max(lv) > len(fams)):
            raise UserError(f"polyphony levels run from 0 to {len(fams)}, got {lv}")
        try:
            records = M.draw_mixtures(ds, per_level=per_level, levels=lv, seed=seed, settings=settings)
        except DatasetError as exc:
            playing = sum(1 for notes in ds.by_family().values() if notes)
            raise DatasetError(exc.path, f"{exc.reason}; choose fewer levels, e.g. 0-{playing}") from None
        source_families: Sequence[str] = ds.families
        notes_cut: list[dict] = []  # (filled while the notes are read: the report's data.notes_cut)

        def load(chunk):
            return _render_windows(chunk, cut=notes_cut)

        info = {
            "kind": "rendered",
            "per_level": per_level,
            "seed": seed,
            "levels": lv,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.__dict__.items()},
            "notes_cut": notes_cut,
        }
    else:
        source_families = list(source.get("families") or [])
        records = list(source["mixtures"])
        if levels is not None:
            wanted = set(levels)
            records = [r for r in records if _record_level(r, source_families) in wanted]
        if not records:
            raise UserError(no_mixtures_at(source, levels))
        unknown = sorted(set(source_families) - set(fams))
        if unknown:
            log.warning("the model has no classifier for %s; those instruments are scored as distractors", unknown)
        padded: list[dict] = []  # (filled while the files are read: the report's "padded" and "cut")
        cut: list[dict] = []

        def load(chunk):
            return _read_mixture_windows(chunk, padded=padded, cut=cut)

        info = {
            "kind": "manifest",
            "per_level": source.get("per_level"),
            "seed": source.get("seed"),
            "levels": sorted({_record_level(r, source_families) for r in records}),
            "settings": source.get("settings"),
            "mixed_from": source.get("source"),
        }
    truth = np.stack([_relabel(r["label"], source_families, fams) for r in records]) if records else np.zeros((0, len(fams)), np.uint8)
    scores = _score(scorer, records, load, batch_size=batch_size, progress=progress)
    preds = Predictions(
        families=fams,
        ids=[r["file"] for r in records],
        levels=np.array([_record_level(r, source_families) for r in records], dtype=np.int64),
        truth=truth,
        scores=scores,
        thresholds=np.asarray(scorer.thresholds, dtype=np.float32),
    )
    if info["kind"] == "manifest":
        info["padded"] = {"count": len(padded), "window_seconds": C.WINDOW_SECONDS, "files": padded}
        info["cut"] = {"count": len(cut), "window_seconds": C.WINDOW_SECONDS, "files": cut}
        for clips, what in ((padded, "shorter than the %g s window were evaluated padded with silence"),
                            (cut, "longer than the %g s window were scored on their first window only")):  # fmt: skip
            if clips:
                log.warning("%d mixture(s) " + what + ": %s", len(clips), C.WINDOW_SECONDS,
                            ", ".join(p["file"] for p in clips[:5]) + (" ..." if len(clips) > 5 else ""))  # fmt: skip
    return PolyphonyResult(predictions=preds, metrics=polyphony_metrics(preds), source=info)


def no_mixtures_at(manifest: dict, levels: Sequence[int] | None) -> str | None:
    """Why a mixture manifest (`tagger.data.mix.read_manifest`) has nothing to score at `levels`
    (None: every level), naming the levels it has; None where it has mixtures there."""
    from tagger.evaluate.render import format_levels

    families = list(manifest.get("families") or [])
    has = sorted({_record_level(r, families) for r in manifest["mixtures"]})
    if has and (levels is None or set(levels) & set(has)):
        return None
    asked = f"at level(s) {format_levels(levels)}" if levels is not None else "at all"
    return f"the mixture manifest has no mixtures {asked}" + (f"; its mixtures are of level(s) {format_levels(has)}" if has else "")


def _record_level(record: dict, families: Sequence[str]) -> int:
    if "level" in record:
        return int(record["level"])
    return int(from_bits(record["label"], families=families).sum())


def data_kind(path: str | os.PathLike) -> str:
    """'notes' for an NSynth-format folder (examples.json), 'mixtures' for a mixture folder or its
    labels.json; raises `UserError` otherwise."""
    p = Path(path)
    if p.is_file() and p.name == M.MANIFEST:
        return "mixtures"
    if (p / "examples.json").is_file():
        return "notes"
    if (p / M.MANIFEST).is_file() or (p / M.INCOMPLETE).exists():  # (the latter: `read_manifest` says why it is no set)
        return "mixtures"
    raise UserError(
        f"{p}: neither a note dataset (examples.json) nor a mixture folder (labels.json); "
        "render one with `tagger dataset render` or `tagger dataset mix`"
    )

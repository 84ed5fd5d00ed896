"""`tagger evaluate` as a library: score a model on solo notes and polyphonic mixtures, write a report.

Two protocols of the paper:

- **Solo test** (Table VI): every note of a split, scored one by one; per-family precision, recall,
  F1, support, accuracy, macro and weighted averages, and the family confusion matrix.
- **Polyphony levels** (Table V): per level k (0..10), N mixtures of k notes of distinct families,
  drawn with a seed from the split and rendered in memory (`tagger.data.mix`), or read from a mixture
  folder written by `tagger dataset mix` (``labels.json``).

The decision thresholds are the ones recorded in the model manifest; nothing here looks at the test
labels before deciding. The report folder holds ``report.json`` (every number, NaN as null),
``report.md`` (tables with the paper's numbers beside ours), the raw predictions
(``*_predictions.npz``: ids, levels, truth, scores, decisions) from which every number can be
recomputed, and the plots under ``plots/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tagger import constants as C
from tagger.data import mix as M
from tagger.data.nsynth import PAPER_SOURCES, NoteDataset, load_note_audio
from tagger.errors import DatasetError, UserError
from tagger.evaluate import metrics as MX
from tagger.evaluate import paper
from tagger.instruments import from_bits

log = logging.getLogger(__name__)

DEFAULT_PER_LEVEL = 100
DEFAULT_SEED = 0
DEFAULT_SPLIT = "test"
DEFAULT_BATCH = 64
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
SOLO_PREDICTIONS = "solo_predictions.npz"
POLYPHONY_PREDICTIONS = "polyphony_predictions.npz"

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
        path = Path(path)
        np.savez_compressed(
            path,
            families=np.array(self.families, dtype=str),
            ids=np.array(self.ids, dtype=str),
            levels=self.levels,
            truth=self.truth,
            scores=self.scores,
            thresholds=self.thresholds,
            decisions=self.decisions,
        )
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
    scores = _score(scorer, notes, load_note_audio, batch_size=batch_size, progress=progress)
    preds = Predictions(
        families=fams,
        ids=[n.note_str for n in notes],
        levels=np.ones(len(notes), dtype=np.int64),
        truth=truth,
        scores=scores,
        thresholds=np.asarray(scorer.thresholds, dtype=np.float32),
    )
    return SoloResult(predictions=preds, metrics=solo_metrics(preds))


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


def _read_mixture_windows(records: Sequence[dict]) -> np.ndarray:
    from tagger import audio

    out = np.zeros((len(records), C.WINDOW_SAMPLES), dtype=np.float32)
    for i, rec in enumerate(records):
        clip = audio.load(rec["path"], max_seconds=C.WINDOW_SECONDS)
        out[i, : len(clip)] = clip[: C.WINDOW_SAMPLES]
    return out


def _render_windows(records: Sequence[dict]) -> np.ndarray:
    return np.stack([M.render_mixture(r) for r in records]) if records else np.zeros((0, C.WINDOW_SAMPLES), np.float32)


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
            raise UserError(f"--per-level must be at least 1, got {per_level}")
        ds = _restrict(source, fams)
        lv = list(range(len(fams) + 1)) if levels is None else sorted(set(levels))
        if lv and (min(lv) < 0 or max(lv) > len(fams)):
            raise UserError(f"polyphony levels run from 0 to {len(fams)}, got {lv}")
        try:
            records = M.draw_mixtures(ds, per_level=per_level, levels=lv, seed=seed, settings=settings)
        except DatasetError as exc:
            playing = sum(1 for notes in ds.by_family().values() if notes)
            raise DatasetError(exc.path, f"{exc.reason}; choose fewer levels, e.g. --levels 0-{playing}") from None
        source_families: Sequence[str] = ds.families
        load = _render_windows
        info = {
            "kind": "rendered",
            "per_level": per_level,
            "seed": seed,
            "levels": lv,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.__dict__.items()},
        }
    else:
        source_families = list(source.get("families") or [])
        records = list(source["mixtures"])
        if levels is not None:
            wanted = set(levels)
            records = [r for r in records if _record_level(r, source_families) in wanted]
        if not records:
            raise UserError("the mixture manifest has no mixtures at the requested levels")
        unknown = sorted(set(source_families) - set(fams))
        if unknown:
            log.warning("the model has no classifier for %s; those instruments are scored as distractors", unknown)
        load = _read_mixture_windows
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
    return PolyphonyResult(predictions=preds, metrics=polyphony_metrics(preds), source=info)


def _record_level(record: dict, families: Sequence[str]) -> int:
    if "level" in record:
        return int(record["level"])
    return int(from_bits(record["label"], families=families).sum())


# --- the whole evaluation ----------------------------------------------------------------------


def data_kind(path: str | os.PathLike) -> str:
    """'notes' for an NSynth-format folder (examples.json), 'mixtures' for a mixture folder or its
    labels.json; raises `UserError` otherwise."""
    p = Path(path)
    if p.is_file() and p.name == M.MANIFEST:
        return "mixtures"
    if (p / "examples.json").is_file():
        return "notes"
    if (p / M.MANIFEST).is_file():
        return "mixtures"
    raise UserError(
        f"{p}: neither a note dataset (examples.json) nor a mixture folder (labels.json); "
        "render one with `tagger dataset render` or `tagger dataset mix`"
    )


def format_levels(levels: Sequence[int]) -> str:
    """[0..10] -> '0-10'; [1, 3, 5] -> '1,3,5' (what --levels reads back)."""
    lv = sorted(set(int(v) for v in levels))
    if len(lv) > 1 and lv == list(range(lv[0], lv[-1] + 1)):
        return f"{lv[0]}-{lv[-1]}"
    return ",".join(str(v) for v in lv)


def rerun_command(
    *,
    data: str | os.PathLike,
    model_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    kind: str,
    split: str,
    per_level: int,
    seed: int,
    levels: Sequence[int] | None,
    solo: bool,
    acoustic_only: bool,
    solo_notes: int | None = None,
) -> str:
    """The `tagger evaluate` command line that repeats an evaluation, every setting spelled out."""
    args = ["tagger", "evaluate", os.fspath(data)]
    if model_dir is not None:
        args += ["--models", os.fspath(model_dir)]
    args += ["--out", os.fspath(out_dir)]
    if kind == "notes":
        args += ["--split", split, "--per-level", str(per_level), "--seed", str(seed)]
    if levels is not None:
        args += ["--levels", format_levels(levels)]
    if not solo and kind == "notes":
        args.append("--no-solo")
    if solo and solo_notes is not None and kind == "notes":
        args += ["--solo-notes", str(solo_notes)]
    if acoustic_only and kind == "notes":
        args.append("--acoustic-only")
    return shlex.join(args)


@dataclass
class Report:
    """A finished evaluation: the report's JSON content and the files written."""

    data: dict
    out_dir: Path
    files: dict[str, Path]
    solo: SoloResult | None
    polyphony: PolyphonyResult | None


def _model_info(scorer: Scorer, model_dir: str | os.PathLike | None) -> dict:
    manifest = getattr(scorer, "manifest", None) or {}
    from tagger.model.ensemble import manifest_hash

    return {
        "dir": os.fspath(getattr(scorer, "model_dir", model_dir) or ""),
        "version": manifest.get("version"),
        "manifest_sha256": manifest_hash(manifest) if manifest else None,
        "architecture": manifest.get("architecture"),
        "recipe": manifest.get("recipe"),
        "families": list(scorer.families),
        "thresholds": {f: float(t) for f, t in zip(scorer.families, np.asarray(scorer.thresholds))},
        "thresholds_source": "model manifest (calibrated at training time; not tuned on the evaluation data)",
    }


def evaluate(
    data: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    model_dir: str | os.PathLike | None = None,
    scorer: Scorer | None = None,
    split: str = DEFAULT_SPLIT,
    per_level: int = DEFAULT_PER_LEVEL,
    seed: int = DEFAULT_SEED,
    levels: Sequence[int] | None = None,
    solo: bool = True,
    solo_notes: int | None = None,
    polyphony: bool = True,
    acoustic_only: bool = False,
    settings: M.MixSettings = M.MixSettings(),
    batch_size: int = DEFAULT_BATCH,
    plots: bool = True,
    progress: Callable[[str], Progress | None] | None = None,
) -> Report:
    """Evaluate a model on `data` (note dataset or mixture folder) and write the report to `out_dir`.

    `scorer` defaults to `Ensemble.load(model_dir)` (the shipped models when `model_dir` is None).
    `progress(stage)` may return a progress callback for the stage ('solo', 'polyphony').
    A mixture folder has no solo notes, so only the polyphony part runs on it. `solo_notes` limits
    the solo test to a seeded sample of that many notes (default: every note of the split).
    """
    from tagger.model.ensemble import sha256_file

    if solo_notes is not None and solo_notes < 1:
        raise UserError(f"--solo-notes must be at least 1, got {solo_notes}")

    kind = data_kind(data)
    data_path = Path(data)
    sources = PAPER_SOURCES if acoustic_only else None
    # Read and check the data before loading the model (TensorFlow start-up is the slow part).
    if kind == "notes":
        ds = NoteDataset.load(data_path, split=split, sources=sources)
        meta_file = data_path / "examples.json"
        if not ds.notes:
            which = "acoustic notes" if acoustic_only else "notes"
            raise DatasetError(data_path, f"no {which} of the known families in split {split!r} (pick another with --split)")
    else:
        manifest = M.read_manifest(data_path)
        meta_file = data_path if data_path.is_file() else data_path / M.MANIFEST
    if not polyphony and (not solo or kind == "mixtures"):
        raise UserError("nothing to evaluate: the polyphony levels are off and there is no solo test to run")
    if scorer is None:
        from tagger.model.ensemble import Ensemble

        scorer = Ensemble.load(model_dir)
    stage = progress or (lambda _name: None)
    solo_result = poly_result = None
    if kind == "notes":
        if not set(scorer.families) <= set(ds.families):  # a model with families beyond the canonical ten
            ds = NoteDataset.load(data_path, split=split, sources=sources, families=scorer.families)
        ds = _restrict(ds, scorer.families)
        if not ds.notes:
            raise DatasetError(data_path, f"no notes of the model's families ({', '.join(scorer.families)}) in split {split!r}")
        if polyphony:  # first: a level the split cannot fill fails before the solo test has run
            poly_result = evaluate_polyphony(
                scorer, ds, per_level=per_level, levels=levels, seed=seed, settings=settings,
                batch_size=batch_size, progress=stage("polyphony"),
            )  # fmt: skip
        if solo:
            solo_result = evaluate_solo(
                scorer, ds, batch_size=batch_size, progress=stage("solo"), max_notes=solo_notes, seed=seed
            )
    else:
        poly_result = evaluate_polyphony(scorer, manifest, levels=levels, batch_size=batch_size, progress=stage("polyphony"))
    if solo_result is None and poly_result is None:
        raise UserError("nothing to evaluate: both the solo test and the polyphony levels are off")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if solo_result is not None:
        files["solo_predictions"] = solo_result.predictions.save(out / SOLO_PREDICTIONS)
    if poly_result is not None:
        files["polyphony_predictions"] = poly_result.predictions.save(out / POLYPHONY_PREDICTIONS)
    if plots:
        from tagger.evaluate import plots as P

        files.update(P.write_plots(out / PLOTS_DIR, solo=solo_result, polyphony=poly_result))

    from tagger import __version__ as tagger_version

    content = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tagger_version": tagger_version,
        "command": rerun_command(
            data=data, model_dir=model_dir, out_dir=out_dir, kind=kind, split=split, per_level=per_level,
            seed=seed, levels=levels, solo=solo, acoustic_only=acoustic_only, solo_notes=solo_notes,
        ),  # fmt: skip
        "model": _model_info(scorer, model_dir),
        "data": {
            "path": str(data_path.resolve()),
            "kind": kind,
            "split": split if kind == "notes" else None,
            "acoustic_only": acoustic_only if kind == "notes" else None,
            "sha256": sha256_file(meta_file),
        },
        "paper": paper.as_dict(),
        "solo": solo_result.metrics if solo_result is not None else None,
        "polyphony": {"source": poly_result.source, **poly_result.metrics} if poly_result is not None else None,
        "files": {k: str(v.relative_to(out)) for k, v in sorted(files.items())},
    }
    content = jsonable(content)
    json_path = out / REPORT_JSON
    _atomic_write(json_path, json.dumps(content, indent=1, allow_nan=False) + "\n")
    md_path = out / REPORT_MD
    _atomic_write(md_path, render_markdown(content))
    files["json"], files["markdown"] = json_path, md_path
    return Report(data=content, out_dir=out, files=files, solo=solo_result, polyphony=poly_result)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def jsonable(value):
    """NaN -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


# --- rendering ---------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 1) -> str:
    """0.973 -> '97.3%'; None/NaN -> 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict) -> str:
    """report.md from the report's content (the same dict that report.json holds)."""
    model, data = report["model"], report["data"]
    fams = model["families"]
    lines = [
        "# tagger evaluation report",
        "",
        f"- Model: `{model['version']}` ({model.get('architecture') or '?'}), manifest sha256 "
        f"`{(model.get('manifest_sha256') or '?')[:16]}`, from `{model['dir']}`",
        f"- Data: `{data['path']}` ({'note dataset' if data['kind'] == 'notes' else 'mixture folder'}"
        + (f", split `{data['split']}`" + (", acoustic sources only" if data.get("acoustic_only") else "") if data["kind"] == "notes" else "")
        + f"), sha256 of its index `{data['sha256'][:16]}`",
        f"- Created {report['created']} by tagger {report['tagger_version']}",
        "- Rerun:",
        "",
        "```sh",
        report["command"],
        "```",
        "",
        "Decision thresholds come from the model manifest (calibrated on validation data when the model",
        "was trained); this evaluation tunes nothing on the data it scores.",
        "",
    ]
    lines += _table(["family", *fams], [["threshold", *(_num(model["thresholds"][f]) for f in fams)]])
    lines.append("")
    files = report.get("files", {})
    solo = report.get("solo")
    if solo:
        sl = solo["single_label"]
        lines += [
            "## Solo test (the paper's Table VI)",
            "",
            f"{solo['n']} single notes. Each note gets one predicted family: the highest-scoring family among",
            "those whose score reaches their threshold, or *none* when no family does (counted as a miss).",
            "",
        ]
        rows = [
            [f, _num(v["precision"]), _num(v["recall"]), _num(v["f1"]), v["support"]] for f, v in sl["families"].items()
        ]
        rows.append(["**accuracy**", "", "", _num(sl["accuracy"]), sl["macro_avg"]["support"]])
        for name in ("macro_avg", "weighted_avg"):
            avg = sl[name]
            rows.append([name.replace("_", " "), _num(avg["precision"]), _num(avg["recall"]), _num(avg["f1"]), avg["support"]])
        lines += _table(["family", "precision", "recall", "F1", "support"], rows)
        lines += [
            "",
            f"Accuracy: ours **{pct(sl['accuracy'])}**, the paper's {pct(report['paper']['solo_accuracy'], 0)} "
            f"(on NSynth test notes; not the same notes). Notes with no family above threshold: {sl['none']}.",
            "",
            f"Ranking alone, thresholds aside: the highest-scoring family is the right one for "
            f"{pct(solo['ranking']['top1_accuracy'])} of the notes.",
            "",
            "Confusion matrix (rows: true family, columns: predicted family):",
            "",
        ]
        cm = solo["confusion"]
        lines += _table(["true \\ predicted", *cm["columns"]], [[r, *row] for r, row in zip(cm["rows"], cm["counts"])])
        ml = solo["multilabel"]
        lines += [
            "",
            "Each classifier on its own (thresholded decisions; a note may get several families or none): "
            f"exact match {pct(ml['emr'])}, Jaccard {pct(ml['jaccard'])}, Hamming {pct(ml['hamming'])}.",
            "",
        ]
        lines += _table(
            ["family", "accuracy", "TPR", "FPR", "precision", "F1", "support"],
            [
                [f, pct(v["accuracy"]), pct(v["tpr"]), pct(v["fpr"]), pct(v["precision"]), pct(v["f1"]), v["support"]]
                for f, v in ml["families"].items()
            ],
        )
        if "solo_confusion" in files:
            lines += ["", f"![Solo confusion matrix]({files['solo_confusion']})"]
        lines.append("")
    poly = report.get("polyphony")
    if poly:
        src = poly["source"]
        pap = report["paper"]
        made = (
            f"{src['per_level']} mixtures per level drawn with seed {src['seed']} and rendered in memory"
            if src["kind"] == "rendered"
            else f"mixtures read from the folder's labels.json (made with seed {src.get('seed')}, {src.get('per_level')} per level)"
        )
        lines += [
            "## Polyphony levels (the paper's Table V and Fig. 6)",
            "",
            f"{poly['n']} mixtures; level k sums k notes of k distinct families; {made}.",
            "Overall = the unweighted mean over levels, as the paper computes it.",
            "",
        ]
        if sorted(int(k) for k in poly["levels"]) != sorted(int(k) for k in pap["level_accuracy"]):
            lines += [
                f"Only levels {format_levels([int(k) for k in poly['levels']])} were run: our overall values "
                "are not comparable with the paper's (levels 0-10).",
                "",
            ]
        rows = []
        for k, v in poly["levels"].items():
            rows.append([
                k, v["n"], pct(v["jaccard"]), pct(pap["level_accuracy"].get(k), 0), pct(v["hamming"]),
                pct(v["emr"]), pct(pap["level_emr"].get(k), 0),
            ])  # fmt: skip
        ov = poly["overall"]
        rows.append([
            "**overall**", poly["n"], pct(ov["jaccard"]), pct(pap["overall_accuracy"], 0), pct(ov["hamming"]),
            pct(ov["emr"]), pct(pap["overall_emr"], 0),
        ])  # fmt: skip
        lines += _table(
            ["level", "n", "accuracy (Jaccard)", "paper accuracy", "Hamming accuracy", "EMR", "paper EMR"], rows
        )
        oc = poly.get("oracle_count")
        if oc:
            lines += [
                "",
                "Ranking alone, thresholds aside: keeping each mixture's k highest-scoring families, k being its",
                "true number of families (an oracle count no tagger has), gives per level",
                "",
            ]
            lines += _table(
                ["", *oc["levels"], "overall"],
                [
                    ["Jaccard", *(pct(v["jaccard"]) for v in oc["levels"].values()), pct(oc["overall"]["jaccard"])],
                    ["EMR", *(pct(v["emr"]) for v in oc["levels"].values()), pct(oc["overall"]["emr"])],
                ],
            )
        if "metrics_vs_level" in files:
            lines += ["", f"![Metrics against polyphony level]({files['metrics_vs_level']})"]
        level_keys = list(poly["levels"])
        for key, title in (
            ("accuracy", "Per-family accuracy (share of mixtures where the family's bit is right)"),
            ("tpr", "Per-family true-positive rate TP/(TP+FN) (n/a: the family is in no mixture of the level)"),
            ("fpr", "Per-family false-positive rate FP/(FP+TN) (n/a: the family is in every mixture of the level)"),
        ):
            lines += ["", f"### {title}", ""]
            rows = [
                [f, *(pct(poly["levels"][k]["families"][f][key], 0) for k in level_keys), pct(poly["family_overall"][f][key], 0)]
                for f in fams
            ]
            lines += _table(["family", *(f"L{k}" for k in level_keys), "mean"], rows)
            if f"family_{key}_vs_level" in files:
                lines += ["", f"![{title}]({files[f'family_{key}_vs_level']})"]
        grids = [(k, files[f"confusion_level_{int(k):02d}"]) for k in level_keys if f"confusion_level_{int(k):02d}" in files]
        if grids:
            lines += ["", "### Per-family confusion matrices per level (Figs. 9-14)", ""]
            lines += [f"- level {k}: [{path}]({path})" for k, path in grids]
        lines.append("")
    lines += [
        "## What the metrics mean",
        "",
        "- **Accuracy (Jaccard)**: per mixture |true ∩ predicted| / |true ∪ predicted|, averaged; a mixture with",
        "  no instrument and no prediction scores 1. The paper calls it multilabel accuracy.",
        "- **Hamming accuracy**: share of the 10 presence bits that are right, over all mixtures.",
        "- **EMR** (exact match ratio): share of mixtures whose whole set of families is right.",
        "- **TPR** = TP/(TP+FN): of the mixtures that contain the family, the share where it was found.",
        "- **FPR** = FP/(FP+TN): of the mixtures without the family, the share where it was reported.",
        "- Per-family **accuracy** = (TP+TN)/n. Confusion matrices are [[TN, FP], [FN, TP]].",
        "",
    ]
    return "\n".join(lines)


def summary_lines(report: dict) -> list[str]:
    """A short plain-text summary for the end of the command."""
    lines = [f"model {report['model']['version']} on {report['data']['path']}"]
    solo = report.get("solo")
    if solo:
        sl = solo["single_label"]
        lines.append(
            f"solo test: {solo['n']} notes, accuracy {pct(sl['accuracy'])} (paper {pct(report['paper']['solo_accuracy'], 0)}), "
            f"macro F1 {_num(sl['macro_avg']['f1'])}"
        )
    poly = report.get("polyphony")
    if poly:
        pap = report["paper"]
        lines.append(f"{'level':>5} {'n':>5} {'Jaccard':>8} {'paper':>6} {'Hamming':>8} {'EMR':>7} {'paper':>6}")
        for k, v in poly["levels"].items():
            lines.append(
                f"{k:>5} {v['n']:>5} {pct(v['jaccard']):>8} {pct(pap['level_accuracy'].get(k), 0):>6} "
                f"{pct(v['hamming']):>8} {pct(v['emr']):>7} {pct(pap['level_emr'].get(k), 0):>6}"
            )
        ov = poly["overall"]
        lines.append(
            f"{'all':>5} {poly['n']:>5} {pct(ov['jaccard']):>8} {pct(pap['overall_accuracy'], 0):>6} "
            f"{pct(ov['hamming']):>8} {pct(ov['emr']):>7} {pct(pap['overall_emr'], 0):>6}"
        )
    return lines

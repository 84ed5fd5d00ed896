"""`tagger evaluate` as a library: run the protocols on a model and write the report folder.

`evaluate` checks the data, loads the model (after the data: TensorFlow start-up is the slow part),
runs the solo test and the polyphony levels (`tagger.evaluate.protocols`) and writes the report
folder: ``report.json`` (every number, NaN as null), ``report.md`` (tables with the paper's numbers
beside ours, `tagger.evaluate.render`), the raw predictions (``*_predictions.npz``: ids, levels,
truth, scores, decisions) from which every number can be recomputed, and the plots under ``plots/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.data import mix as M
from tagger.data.examples import rendered_soundfonts
from tagger.data.nsynth import PAPER_SOURCES, NoteDataset
from tagger.errors import DatasetError, UserError
from tagger.evaluate import paper
from tagger.evaluate.protocols import (
    DEFAULT_BATCH,
    DEFAULT_PER_LEVEL,
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    PolyphonyResult,
    Progress,
    Scorer,
    SoloResult,
    _restrict,
    data_kind,
    evaluate_polyphony,
    evaluate_solo,
    no_mixtures_at,
)
from tagger.evaluate.render import render_markdown
from tagger.hashing import sha256_file
from tagger.outputs import folder_lock, write_atomic

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
SOLO_PREDICTIONS = "solo_predictions.npz"
POLYPHONY_PREDICTIONS = "polyphony_predictions.npz"

log = logging.getLogger(__name__)


@dataclass
class Report:
    """A finished evaluation: the report's JSON content and the files written."""

    data: dict
    out_dir: Path
    files: dict[str, Path]
    solo: SoloResult | None
    polyphony: PolyphonyResult | None


MODEL_MANIFEST = "manifest.json"
"""A model folder's manifest (`tagger.model.manifest.MANIFEST`, which evaluate does not import: the
model package imports evaluate's metrics)."""


def _model_info(scorer: Scorer) -> dict:
    """What the report says of the model: an `Ensemble`'s directory, manifest and its sha256 (of
    manifest.json, as `tagger --version` prints it; the scorer's `hash`, of the manifest's content,
    where its folder holds none), or only the families and thresholds of another scorer."""
    manifest = getattr(scorer, "manifest", None) or {}
    model_dir = getattr(scorer, "model_dir", None)
    digest = getattr(scorer, "hash", None) if manifest else None
    if manifest and model_dir and os.path.isfile(Path(model_dir) / MODEL_MANIFEST):
        digest = sha256_file(Path(model_dir) / MODEL_MANIFEST)
    return {
        "dir": os.fspath(model_dir or ""),
        "version": manifest.get("version"),
        "manifest_sha256": digest,
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
    scorer: Scorer | Callable[[], Scorer],
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
    command: str | None = None,
) -> Report:
    """Evaluate a model on `data` (note dataset or mixture folder) and write the report to `out_dir`.

    `scorer`: the model (e.g. `tagger.model.ensemble.Ensemble`), or a function returning it, called
    once the data are checked (so that a data error does not wait for TensorFlow to start).
    `progress(stage)` may return a progress callback for the stage ('solo', 'polyphony').
    A mixture folder has no solo notes, so only the polyphony part runs on it. `solo_notes` limits
    the solo test to a seeded sample of that many notes (default: every note of the split).
    `command`: how to repeat this evaluation (the CLI's command line), shown in the report.
    """
    if solo_notes is not None and solo_notes < 1:
        raise UserError(f"solo_notes must be at least 1, got {solo_notes}")
    out = Path(out_dir)
    check_out_dir(out)  # before the work: a report with nowhere to go must not cost an evaluation
    source = _read_data(data, split=split, acoustic_only=acoustic_only, levels=levels)
    if not polyphony and (not solo or source.kind == "mixtures"):
        raise UserError("nothing to evaluate: the polyphony levels are off and there is no solo test to run")
    created = _make_out_dir(out)
    try:
        with folder_lock(out, what="tagger evaluate"):  # held from before the model loads to the last file
            check_out_dir(out)  # (again: what is in the folder may have changed until the lock was held)
            if not hasattr(scorer, "predict"):  # a loader
                scorer = scorer()
            stage = progress or (lambda _name: None)
            source.seen_by_model = seen_by_model(getattr(scorer, "manifest", None) or {}, source)
            for line in source.seen_by_model:
                log.warning("%s", line)
            if source.kind == "notes":
                ds, source.left_out = _notes_for_model(source, scorer)
                solo_result, poly_result = _run_on_notes(
                    scorer, ds, solo=solo, solo_notes=solo_notes, polyphony=polyphony, per_level=per_level,
                    levels=levels, seed=seed, settings=settings, batch_size=batch_size, stage=stage,
                )  # fmt: skip
                source.notes_cut = _notes_cut(solo_result, poly_result)
            else:
                solo_result = None
                poly_result = evaluate_polyphony(scorer, source.manifest, levels=levels, batch_size=batch_size, progress=stage("polyphony"))
            if solo_result is None and poly_result is None:
                raise UserError("nothing to evaluate: both the solo test and the polyphony levels are off")
            return _write_report(out, scorer, source, solo_result, poly_result, plots=plots, command=command)
    finally:
        if created:
            try:
                out.rmdir()  # a run that wrote nothing leaves no empty folder
            except OSError:
                pass


@dataclass
class _Data:
    """The evaluation data as read before the model loads: a note dataset's split or a mixture folder's manifest."""

    path: Path
    kind: str  # 'notes' or 'mixtures' (`data_kind`)
    meta_file: Path  # the file whose hash the report gives: examples.json or the mixture manifest
    split: str
    sources: Sequence[str] | None  # the instrument sources kept (`PAPER_SOURCES` with acoustic_only)
    acoustic_only: bool
    notes: NoteDataset | None = None
    manifest: dict | None = None
    left_out: dict | None = None  # the notes the evaluation leaves out, once the model is known (`_left_out`)
    notes_cut: dict | None = None  # the notes longer than the window, scored on their first 4 s (`_notes_cut`)
    seen_by_model: list[str] | None = None  # why the model's figures on these data are optimistic (`seen_by_model`)


def _read_data(data: str | os.PathLike, *, split: str, acoustic_only: bool, levels: Sequence[int] | None = None) -> _Data:
    """Read and check the data before the model loads (TensorFlow start-up is the slow part): a note
    dataset must hold notes of the known families in `split` (acoustic ones with `acoustic_only`),
    else `DatasetError`; a mixture folder must have a readable manifest (`mix.read_manifest`) with
    mixtures at `levels` (None: at any level)."""
    kind = data_kind(data)
    data_path = Path(data)
    sources = PAPER_SOURCES if acoustic_only else None
    if kind == "notes":
        ds = NoteDataset.load(data_path, split=split, sources=sources)
        if not ds.notes:
            which = "acoustic notes" if acoustic_only else "notes"
            raise DatasetError(data_path, f"no {which} of the known families in split {split!r}{ds.split_choices()}")
        return _Data(data_path, kind, data_path / "examples.json", split, sources, acoustic_only, notes=ds)
    manifest = M.read_manifest(data_path)
    meta_file = data_path if data_path.is_file() else data_path / M.MANIFEST
    why = no_mixtures_at(manifest, levels)  # (before the model loads; was: after, naming no file)
    if why:
        raise DatasetError(meta_file, why)
    return _Data(data_path, kind, meta_file, split, sources, acoustic_only, manifest=manifest)


def _make_out_dir(out: Path) -> bool:
    """Make the report folder (and those above it); whether this run created it, so that a run
    that writes nothing removes it again. A folder that cannot be made is a `UserError`."""
    created = not out.is_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot make the report folder: {exc.strerror or exc}") from None
    return created


def _notes_for_model(source: _Data, scorer: Scorer) -> tuple[NoteDataset, dict]:
    """The notes the model is judged on: those of its own families (read again from the dataset
    when it has families beyond the canonical ten); none of them in the split is a `DatasetError`.
    With them, what the report says of the split's notes left out (`_left_out`)."""
    ds = source.notes
    if not set(scorer.families) <= set(ds.families):  # a model with families beyond the canonical ten
        ds = NoteDataset.load(source.path, split=source.split, sources=source.sources, families=scorer.families)
    kept = _restrict(ds, scorer.families)
    if not kept.notes:
        raise DatasetError(source.path, f"no notes of the model's families ({', '.join(scorer.families)}) in split {source.split!r}")
    return kept, _left_out(ds, scorer.families)


def _left_out(ds: NoteDataset, families: Sequence[str]) -> dict:
    """The notes of the split (and sources) read that the evaluation leaves out, and why: those of
    NSynth's synth_lead family (``synth_lead``: the paper's exclusion) and those of a family that
    is not one of the model's (``other_families``, notes per family: a rendered dataset's negatives,
    or a typo such as "kazoo" in examples.json, which was dropped without a word)."""
    keep = set(families)
    other = Counter(n.family for n in [*ds.notes, *ds.negatives] if n.family not in keep)
    return {"synth_lead": ds.synth_lead, "other_families": dict(sorted(other.items()))}


def seen_by_model(manifest: dict, source: _Data) -> list[str]:
    """Why a model's figures on `source` are optimistic, a line per reason: its manifest records the
    dataset it was trained and calibrated on (``data``, or each member's under ``data.members`` for
    an averaged ensemble), and `source` is that dataset's train split (trained on), its valid split
    (the split that chose the thresholds and validated the training) or any split of it for a
    production fit (``all_instruments``: every instrument heard); a mixture folder as the note
    dataset and split it was mixed from (its labels.json's ``source`` and ``split``). Empty where
    none applies or it cannot be told.

    The manifest names the dataset by its folder's name alone (`tagger.model.record`), so the data
    are taken for it by that name (of the path given or of the folder it leads to), unless both
    record the SoundFonts rendered (render.json) and they differ: a copy renamed is not recognised."""
    if source.kind == "notes":
        root, split = source.path, source.split
    else:
        mixed_from = (source.manifest or {}).get("source")
        if not isinstance(mixed_from, str) or not mixed_from:
            return []
        root, split = Path(mixed_from), (source.manifest or {}).get("split")
    from tagger.paths import absolute

    names = {Path(absolute(root)).name, Path(os.path.realpath(root)).name}
    rendered = rendered_soundfonts(root)  # (never a FIFO's read: evaluate waited on one for ever)
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    members = data.get("members") if isinstance(data.get("members"), list) else []
    records = [(None, data), *((m.get("version"), m) for m in members if isinstance(m, dict))]
    found: dict[tuple[str, str], list] = {}  # (why, the dataset's name) -> the members it holds for (None: the model)
    for member, rec in records:
        name = rec.get("dataset")
        if not isinstance(name, str) or not name or name not in names or (rendered and rec.get("render") and rec["render"] != rendered):
            continue
        why = "all" if rec.get("all_instruments") else split if split in ("train", "valid") else None
        if why is not None and member not in found.setdefault((why, name), []):
            found[(why, name)].append(member)
    lines = []
    for (why, name), members in found.items():  # (one line for the members that share a reason: was one per member)
        named_members = ", ".join(repr(m) for m in members)
        who = f"the model {manifest.get('version')!r}" + (
            "" if None in members else f" (its member{'s' if len(members) > 1 else ''} {named_members})")
        mixed = "" if source.kind == "notes" else f" (the mixtures were mixed from {root})"
        if why == "all":
            reason = (f"{who} was trained on every instrument of {name!r}, each split's included (a production fit: "
                      f"data.all_instruments in its manifest)")  # fmt: skip
            split_said = f"its {split} split" if split else "it"
        elif why == "train":
            reason, split_said = f"{who} was trained on the train split of {name!r}", "it"
        else:
            reason = f"the valid split of {name!r} chose the decision thresholds of {who} and validated its training"
            split_said = "it"
        lines.append(f"{reason}: figures on {split_said}{mixed} are optimistic, not a measure of instruments it never heard")
    return lines


def _notes_cut(solo: SoloResult | None, poly: PolyphonyResult | None) -> dict:
    """The notes of a note dataset longer than the window (read for it alone, scored and mixed on
    their first 4 s; an NSynth note lasts 4 s), each once, as report.json's ``data.notes_cut`` (the
    command's summary names the first five: no warning besides, which would come just before it)."""
    files = {c["file"]: c for c in [*(solo.notes_cut if solo else []), *(poly.source.pop("notes_cut", []) if poly else [])]}
    cut = [files[name] for name in sorted(files)]
    return {"count": len(cut), "window_seconds": C.WINDOW_SECONDS, "files": cut}


def _run_on_notes(
    scorer: Scorer,
    ds: NoteDataset,
    *,
    solo: bool,
    solo_notes: int | None,
    polyphony: bool,
    per_level: int,
    levels: Sequence[int] | None,
    seed: int,
    settings: M.MixSettings,
    batch_size: int,
    stage: Callable[[str], Progress | None],
) -> tuple[SoloResult | None, PolyphonyResult | None]:
    """Run the protocols that are on for a note dataset: the polyphony levels first (a level the
    split cannot fill fails before the solo test has run), then the solo test."""
    solo_result = poly_result = None
    if polyphony:
        poly_result = evaluate_polyphony(
            scorer, ds, per_level=per_level, levels=levels, seed=seed, settings=settings,
            batch_size=batch_size, progress=stage("polyphony"),
        )  # fmt: skip
    if solo:
        solo_result = evaluate_solo(scorer, ds, batch_size=batch_size, progress=stage("solo"), max_notes=solo_notes, seed=seed)
    return solo_result, poly_result


def _write_report(
    out: Path,
    scorer: Scorer,
    source: _Data,
    solo_result: SoloResult | None,
    poly_result: PolyphonyResult | None,
    *,
    plots: bool,
    command: str | None,
) -> Report:
    """Write the report folder: the `INCOMPLETE` mark first (and an earlier report.json/report.md
    removed, so that a run stopped half-way leaves no report beside predictions it does not
    describe), then the predictions, the plots, report.json and report.md, and the mark removed last."""
    write_atomic(out / INCOMPLETE, "a tagger evaluate writing its report (or interrupted): rerun it\n")
    for name in (REPORT_JSON, REPORT_MD):
        (out / name).unlink(missing_ok=True)
    files: dict[str, Path] = {}
    if solo_result is not None:
        files["solo_predictions"] = solo_result.predictions.save(out / SOLO_PREDICTIONS)
    if poly_result is not None:
        files["polyphony_predictions"] = poly_result.predictions.save(out / POLYPHONY_PREDICTIONS)
    if plots:
        from tagger.evaluate import plots as P

        files.update(P.write_plots(out / PLOTS_DIR, solo=solo_result, polyphony=poly_result))
    content = jsonable(_report_content(out, scorer, source, solo_result, poly_result, files=files, command=command))
    json_path = out / REPORT_JSON
    write_atomic(json_path, json.dumps(content, indent=1, allow_nan=False) + "\n")
    md_path = out / REPORT_MD
    write_atomic(md_path, render_markdown(content))
    files["json"], files["markdown"] = json_path, md_path
    (out / INCOMPLETE).unlink()
    return Report(data=content, out_dir=out, files=files, solo=solo_result, polyphony=poly_result)


def _report_content(
    out: Path,
    scorer: Scorer,
    source: _Data,
    solo_result: SoloResult | None,
    poly_result: PolyphonyResult | None,
    *,
    files: dict[str, Path],
    command: str | None,
) -> dict:
    """report.json's content before `jsonable`: when and by what it was made, the model, the data
    (and the hash of its metadata file), the paper's numbers, ours, and the files beside it."""
    from tagger import __version__ as tagger_version

    notes = source.kind == "notes"
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tagger_version": tagger_version,
        "command": command,
        "model": _model_info(scorer),
        "data": {
            "path": str(source.path.resolve()),
            "kind": source.kind,
            "split": source.split if notes else None,
            "acoustic_only": source.acoustic_only if notes else None,
            "left_out": source.left_out if notes else None,
            "notes_cut": source.notes_cut if notes else None,
            "seen_by_model": source.seen_by_model or [],
            "sha256": sha256_file(source.meta_file),
        },
        "paper": paper.as_dict(),
        "solo": solo_result.metrics if solo_result is not None else None,
        "polyphony": {"source": poly_result.source, **poly_result.metrics} if poly_result is not None else None,
        "files": {k: str(v.relative_to(out)) for k, v in sorted(files.items())},
    }


INCOMPLETE = ".report.incomplete"
"""Written before a report's files, removed after them: a folder an interrupted `evaluate` wrote to."""
REPORT_FILES = (REPORT_JSON, REPORT_MD, SOLO_PREDICTIONS, POLYPHONY_PREDICTIONS, PLOTS_DIR)
"""The names a report folder's files take."""


def check_out_dir(out: Path) -> None:
    """Refuse a report folder that is a file, or that holds files under a report's names
    (`REPORT_FILES`: a user's own report.md, a plots/ folder) but no earlier tagger report, which
    the new report would overwrite. A folder of other files, or an earlier report's, is fine."""
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise UserError(f"{out}: --out exists and is not a folder; nothing was written")
    above = next((p for p in out.parents if p.exists()), None)
    if not out.exists() and above is not None and not above.is_dir():
        raise UserError(f"{out}: --out lies under {above}, which is not a folder; nothing was written")
    if not out.is_dir() or _is_report(out / REPORT_JSON) or (out / INCOMPLETE).is_file():
        return
    taken = [name for name in REPORT_FILES if (out / name).exists() or (out / name).is_symlink()]
    if taken:
        raise UserError(f"{out}: holds {', '.join(taken)} but no earlier tagger report that would be replaced; "
                        "nothing was written: choose a new or empty folder for --out")  # fmt: skip


def _is_report(path: Path) -> bool:
    """Whether `path` is a report.json written by `evaluate`."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # (RecursionError: nested thousands deep, no report)
        return False
    return isinstance(data, dict) and {"tagger_version", "model", "data", "paper", "files"} <= data.keys()


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

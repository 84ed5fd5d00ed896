"""`tagger evaluate`: the paper's solo test and polyphony levels, written as a report folder."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, handle_errors, quiet_tensorflow
from tagger.errors import UserError
from tagger.evaluate.defaults import DEFAULT_BATCH, DEFAULT_PER_LEVEL, DEFAULT_SEED, DEFAULT_SPLIT


@app.command("evaluate")
@handle_errors
def evaluate(
    data: Path = typer.Argument(
        ..., parser=F.path, help="A note dataset folder (examples.json) or a mixture folder (labels.json)."
    ),
    models: Path = typer.Option(None, "--models", parser=F.path, help="Model directory (default: the shipped models)."),
    out: Path = typer.Option(
        ..., "--out", parser=F.path, help="Report folder to write (report.json, report.md, plots/)."
    ),
    split: str = typer.Option(DEFAULT_SPLIT, "--split", help="Split of a note dataset to test on (refused for a mixture "
                                                             "folder, as --per-level, --seed, --solo-notes and --acoustic-only are)."),
    per_level: int = typer.Option(DEFAULT_PER_LEVEL, "--per-level", help="Mixtures per polyphony level drawn from a note dataset."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Seed of a note dataset's mixture draw."),
    levels: str = typer.Option(None, "--levels", help="Polyphony levels, e.g. '0-10' or '1,2,3' (default: all)."),
    no_solo: bool = typer.Option(False, "--no-solo", help="Skip the solo test."),
    solo_notes: int = typer.Option(
        None, "--solo-notes", help="Solo test on a seeded sample of this many notes (default: every note of the split)."
    ),
    acoustic_only: bool = typer.Option(False, "--acoustic-only", help="The paper's filter: a note dataset's acoustic notes only."),
    batch_size: int = typer.Option(DEFAULT_BATCH, "--batch-size", help="Windows scored at a time (bounds memory)."),
) -> None:
    """Score a model on solo notes (Table VI) and mixtures of 0..10 families (Table V); write a report.

    Thresholds come from the model manifest; nothing is tuned on the test data.
    """
    from tqdm import tqdm

    from tagger.cli.dataset import parse_levels
    from tagger.evaluate import report as R
    from tagger.evaluate.protocols import data_kind
    from tagger.evaluate.render import summary_lines

    level_list = parse_levels(levels) if levels else None
    for flag, value in (("--per-level", per_level), ("--solo-notes", solo_notes), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    quiet_tensorflow()
    bars: list = []

    def stage(name: str):
        bar = tqdm(total=None, unit="window", desc=name, disable=None, leave=False)
        bars.append(bar)

        said = [-1]

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
            tenth = done * 10 // max(total, 1)
            if bar.disable and tenth > said[0]:  # not a terminal (a log file): progress as lines, every 10%
                said[0] = tenth
                echo(f"{name}: {done}/{total} windows", err=True)

        return progress

    def load_model():
        from tagger.model.ensemble import Ensemble

        return Ensemble.load(models)

    kind = data_kind(data)
    if kind == "mixtures":  # (its mixtures are made: these were ignored without a word, the report not what was asked)
        given = [flag for flag, on in (("--split", split != DEFAULT_SPLIT), ("--per-level", per_level != DEFAULT_PER_LEVEL),
                                       ("--seed", seed != DEFAULT_SEED), ("--acoustic-only", acoustic_only),
                                       ("--solo-notes", solo_notes is not None)) if on]  # fmt: skip
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UserError(f"{data}: a mixture folder is scored as its labels.json made it; {', '.join(given)} {verb} "
                            "to a note dataset only (examples.json): evaluate the note dataset, or `tagger dataset "
                            "mix` it again with the settings wanted")  # fmt: skip
    command = rerun_command(
        data=data, models=models, out=out, kind=kind, split=split, per_level=per_level, seed=seed,
        levels=level_list, solo=not no_solo, acoustic_only=acoustic_only, solo_notes=solo_notes,
    )  # fmt: skip
    try:
        result = R.evaluate(
            data, out_dir=out, scorer=load_model, split=split, per_level=per_level, seed=seed, levels=level_list,
            solo=not no_solo, solo_notes=solo_notes, acoustic_only=acoustic_only, batch_size=batch_size, progress=stage,
            command=command,
        )  # fmt: skip
    finally:
        for bar in bars:
            bar.close()
    for line in summary_lines(result.data):
        echo(line)
    echo(f"report: {result.files['markdown']}")


def rerun_command(
    *,
    data: str | os.PathLike,
    models: str | os.PathLike | None,
    out: str | os.PathLike,
    kind: str,
    split: str,
    per_level: int,
    seed: int,
    levels: Sequence[int] | None,
    solo: bool,
    acoustic_only: bool,
    solo_notes: int | None = None,
) -> str:
    """The `tagger evaluate` command line that repeats an evaluation, every setting spelled out
    (`kind`: 'notes' or 'mixtures', as `data_kind` says; a mixture folder has no split or solo test)."""
    from tagger.evaluate.render import format_levels  # (start-up: every command registers this module)

    args = ["tagger", "evaluate", os.fspath(data)]
    if models is not None:
        args += ["--models", os.fspath(models)]
    args += ["--out", os.fspath(out)]
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

"""`tagger evaluate`: the paper's solo test and polyphony levels, written as a report folder."""

from __future__ import annotations

from pathlib import Path

import typer

from tagger.cli.app import app, handle_errors, quiet_tensorflow
from tagger.errors import UserError
from tagger.evaluate.report import DEFAULT_PER_LEVEL, DEFAULT_SEED, DEFAULT_SPLIT


@app.command("evaluate")
@handle_errors
def evaluate(
    data: Path = typer.Argument(..., help="A note dataset folder (examples.json) or a mixture folder (labels.json)."),
    models: Path = typer.Option(None, "--models", help="Model directory (default: the shipped models)."),
    out: Path = typer.Option(..., "--out", help="Report folder to write (report.json, report.md, plots/)."),
    split: str = typer.Option(DEFAULT_SPLIT, "--split", help="Split of a note dataset to test on."),
    per_level: int = typer.Option(DEFAULT_PER_LEVEL, "--per-level", help="Mixtures per polyphony level."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Seed of the mixture draw."),
    levels: str = typer.Option(None, "--levels", help="Polyphony levels, e.g. '0-10' or '1,2,3' (default: all)."),
    no_solo: bool = typer.Option(False, "--no-solo", help="Skip the solo test."),
    solo_notes: int = typer.Option(
        None, "--solo-notes", help="Solo test on a seeded sample of this many notes (default: every note of the split)."
    ),
    acoustic_only: bool = typer.Option(False, "--acoustic-only", help="The paper's filter: acoustic notes only."),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows scored at a time (bounds memory)."),
) -> None:
    """Score a model on solo notes (Table VI) and mixtures of 0..10 families (Table V); write a report.

    Thresholds come from the model manifest; nothing is tuned on the test data.
    """
    from tqdm import tqdm

    from tagger.cli.dataset import parse_levels
    from tagger.evaluate import report as R

    try:
        level_list = parse_levels(levels) if levels else None
    except ValueError:
        raise UserError(f"--levels: expected e.g. '0-10' or '1,2,3', got {levels!r}") from None
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
                typer.echo(f"{name}: {done}/{total} windows", err=True)

        return progress

    try:
        result = R.evaluate(
            data, out_dir=out, model_dir=models, split=split, per_level=per_level, seed=seed, levels=level_list,
            solo=not no_solo, solo_notes=solo_notes, acoustic_only=acoustic_only, batch_size=batch_size, progress=stage,
        )  # fmt: skip
    finally:
        for bar in bars:
            bar.close()
    for line in R.summary_lines(result.data):
        typer.echo(line)
    typer.echo(f"report: {result.files['markdown']}")

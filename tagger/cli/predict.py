"""`tagger predict`: print the instruments of audio files (no database)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from tagger.cli.app import app, fail, handle_errors, quiet_tensorflow


def iter_audio_paths(paths: list[Path]):
    """Files given directly, and audio files (by extension) found recursively in folders."""
    from tagger.audio import AUDIO_EXTENSIONS

    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                        yield Path(root) / name
        else:
            yield p


@app.command("predict")
@handle_errors
def predict(
    paths: list[Path] = typer.Argument(..., help="Audio files or folders."),
    models: Path = typer.Option(None, "--models", help="Model directory (default: the shipped models)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    hop: float = typer.Option(4.0, help="Seconds between window starts."),
) -> None:
    """Print the instrument families present in each file and per-family scores."""
    quiet_tensorflow()
    from tagger.analysis import analyse_file
    from tagger.errors import AudioReadError
    from tagger.model.ensemble import Ensemble

    ensemble = Ensemble.load(models)
    failed = 0
    for path in iter_audio_paths(paths):
        try:
            result = analyse_file(path, ensemble, hop_seconds=hop)
        except AudioReadError as exc:
            failed += 1
            typer.echo(f"tagger: error: {exc}", err=True)
            continue
        if as_json:
            row = {
                "path": str(path),
                "instruments": result.instruments,
                "scores": {f: round(s, 4) for f, s in result.scores.items()},
                "windows": result.windows,
            }
            typer.echo(json.dumps(row))
        else:
            found = ", ".join(result.instruments) or "(no instrument)"
            scores = " ".join(f"{f}={s:.2f}" for f, s in result.scores.items())
            typer.echo(f"{path}: {found}\n    {scores}")
    if failed:
        raise fail(f"{failed} file(s) could not be read", 1)

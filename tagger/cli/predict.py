"""`tagger predict`: print the instruments of audio files (no database)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, fail, handle_errors, quiet_tensorflow
from tagger.constants import WINDOW_SECONDS
from tagger.display import named


def iter_audio_paths(paths: list[Path], *, problems: list[str] | None = None):
    """Audio files found in folders (the scan's crawler), and files given directly (checked when read).

    ``problems``, when given, collects one line per folder the crawl could not list (its files were
    not seen), per link out of a folder not followed and per folder given that holds no audio file."""
    from tagger.crawl import CrawlReport, crawl

    for p in paths:
        if p.is_dir():
            report = CrawlReport()
            found = 0
            for found, path in enumerate(crawl([p], report=report), 1):
                yield path
            if problems is not None:
                problems.extend(f"error: {named(folder)}: cannot list the folder: {reason}; its files were not analysed"
                                for folder, reason in report.unreadable)  # fmt: skip
                problems.extend(f"warning: {named(link)}: a symbolic link pointing outside {named(p)} (to "
                                f"{named(os.path.realpath(link))}); not followed: give it by name to predict it"
                                for link in report.external_links)  # fmt: skip
                if not found and not report.unreadable:
                    problems.append(f"warning: {named(p)}: no audio file in this folder")
        else:
            yield p


def _facts(path: Path, *, before: dict | None = None) -> dict:
    """The file's size, mtime, ctime and content fingerprint (named as `PredictionRow`'s fields),
    which `tagger tag --from-json` checks so that a file changed since is not given these results.
    With ``before`` (the facts before the analysis), raises `AudioReadError` when the file changed
    while it was analysed, and adds the hash of its whole content: a file of another ctime when
    `tag` runs (written over in place with its mtime set back, other audio where the fingerprint does
    not read) must still hash to it. (The ctime unchanged, the bytes hashed after the analysis are
    the ones analysed.)"""
    from tagger.errors import AudioReadError
    from tagger.fingerprint import content_hash, fingerprint

    try:
        st = os.stat(path)
    except OSError as exc:
        raise AudioReadError(path, f"cannot stat: {exc.strerror or exc}") from None
    facts = {"size": st.st_size, "mtime": st.st_mtime, "ctime_ns": st.st_ctime_ns, "fingerprint": fingerprint(path)}
    if before is not None:
        if facts != before:
            raise AudioReadError(path, "the file changed while it was analysed; run predict again")
        facts["content_hash"] = content_hash(path)
        if os.stat(path).st_ctime_ns != st.st_ctime_ns:
            raise AudioReadError(path, "the file changed while it was analysed; run predict again")
    return facts


def _cue_tracks(path: Path, result, ensemble, *, folders: dict) -> dict:
    """The tracks of the file's cue sheet, each with its families from the windows just analysed
    (`tagger.db.detail.cue_track_details`, as ``tagger show`` gives them from the stored ones), as
    ``show --json``'s keys ``cue_sheet``, ``cue_tracks`` (`CueTrackDetail`) and ``cue_note``; {} for a
    file without a cue sheet (its output unchanged). A cue sheet that cannot be used gives no tracks
    and a note saying why: the file is still predicted as one track. ``folders``: kept over the
    files, so that a folder's ``.cue`` files are read once (`tagger.cuesheet.find_cue_sheet`)."""
    import numpy as np

    from tagger.db.detail import cue_track_details, fitting_cue_sheet

    source, tracks, note = fitting_cue_sheet(path, duration=result.duration, folders=folders,
                                            without="the file is predicted as one track")
    if source is None and note is None:
        return {}
    found = []
    if tracks:
        found = cue_track_details(tracks, scores=result.window_scores, starts=result.window_starts, families=result.families,
                                  thresholds=np.asarray(ensemble.thresholds, dtype=np.float32), params=dict(ensemble.aggregation),
                                  duration=result.duration, window_seconds=WINDOW_SECONDS,
                                  order={f: i for i, f in enumerate(result.families)})  # fmt: skip
    return {"cue_sheet": source, "cue_tracks": found, "cue_note": note}


@app.command("predict")
@handle_errors
def predict(
    paths: list[Path] = typer.Argument(..., parser=F.path, help="Audio files or folders."),
    models: Path = typer.Option(None, "--models", parser=F.path, help="Model directory (default: the shipped models)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    hop: float = typer.Option(WINDOW_SECONDS, help="Seconds between window starts."),
    plot: Path = typer.Option(
        None, "--plot", parser=F.path, help="Draw the file's timeline (window scores, thresholds, segments) into this .png or .svg (one file only)."
    ),
) -> None:
    """Print the instrument families present in each file and per-family scores."""
    quiet_tensorflow()
    from tagger.db.detail import cue_json
    from tagger.library.assemble import analyse_track
    from tagger.errors import AudioReadError, UserError
    from tagger.model.ensemble import Ensemble
    from tagger.paths import absolute, is_utf8
    from tagger.tags.rows import PredictionRow

    if any(str(p) == "-" for p in paths) and not os.path.lexists("-"):  # (`ffmpeg ... -f wav - | tagger predict -`)
        raise UserError("'-': no such file; tagger predict reads files, not standard input: write the audio to a "
                        "file and give its name")  # fmt: skip
    if not 0.05 <= hop <= 3600:  # (nan fails too)
        raise UserError(f"--hop {hop:g}: give the seconds between window starts, from 0.05 to 3600")
    if plot is not None:
        from tagger import timeline

        timeline.check_output(plot)
        if len(paths) != 1 or paths[0].is_dir():
            raise UserError("--plot draws one file: give exactly one audio file")
    ensemble = Ensemble.load(models)
    failed = 0
    problems: list[str] = []
    cue_folders: dict = {}
    for path in iter_audio_paths(paths, problems=problems):
        if as_json and not is_utf8(str(path)):  # (json.dumps would write a lone surrogate, which strict parsers refuse)
            failed += 1
            echo(f"tagger: error: {named(path)}: the file name is not valid UTF-8, which JSON cannot hold exactly; "
                 "rename the file (or run without --json)", err=True)  # fmt: skip
            continue
        try:
            before = _facts(path) if as_json else None
            notes: list[str] = []
            result = analyse_track(path, ensemble, hop_seconds=hop, notes=notes)
            facts = _facts(path, before=before) if as_json else None
        except AudioReadError as exc:
            failed += 1
            echo(f"tagger: error: {exc}", err=True)
            continue
        for note in notes:  # (as `tagger show` says it of a track the scan analysed in part)
            echo(f"tagger: warning: {named(path)}: analysed in part: {note}", err=True)
        if plot is not None:
            timeline.draw(timeline.from_result(path, result, thresholds=ensemble.thresholds, model_version=ensemble.version), plot)
            echo(f"timeline written to {plot}", err=True)
        cue = _cue_tracks(path, result, ensemble, folders=cue_folders)
        if as_json:
            row = PredictionRow(
                path=absolute(path), instruments=result.instruments,
                scores={f: round(s, 4) for f, s in result.scores.items()}, windows=result.windows,
                model_version=ensemble.version, families=list(ensemble.families), **facts,
            )  # fmt: skip
            echo(json.dumps(row.to_dict() | (cue_json(cue["cue_sheet"], cue["cue_tracks"], cue["cue_note"]) if cue else {})))
        else:
            from tagger.library.report import all_silent_note

            found = ", ".join(result.instruments) or ("(no instrument)" + all_silent_note(result.windows, result.silent_windows))
            scores = " ".join(f"{f}={s:.2f}" for f, s in result.scores.items())
            echo(f"{named(path)}: {found}")
            echo(f"    {scores}")
            if cue:
                from tagger.library.report import render_cue

                for line in render_cue(cue["cue_sheet"], cue["cue_tracks"], cue["cue_note"]).splitlines():
                    if line:
                        echo(f"    {line}")
    unlisted = 0
    for line in problems:  # (after the files: a folder's listing ends with its walk)
        unlisted += line.startswith("error:")
        echo(f"tagger: {line}", err=True)
    if failed or unlisted:
        raise fail(" and ".join([f"{failed} file(s) could not be read"] * bool(failed)
                                + [f"{unlisted} folder(s) could not be listed"] * bool(unlisted)), 1)  # fmt: skip

"""`tagger scan`: every audio file under the paths given analysed into the library database.

Thin: the command parses its flags, calls `tagger.library.scan.scan` and renders the result; its
steps (`_scan_scheduler`, `_load_for_scan`, `_ScanBars`, `_scan_backend`, `_scan_notes`,
`_scan_totals`) are here. TensorFlow is imported only when it loads the models.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, echo_some, handle_errors, quiet_tensorflow_for
from tagger.cli.database import DB_HELP, _open, known_models
from tagger.display import named, named_failed
from tagger.library.defaults import DEFAULT_FILE_TIMEOUT
from tagger.paths import DEFAULT_SETTLE_SECONDS


def _open_for_scan(db: str | None):
    """The library database a scan writes, refused when it cannot be written
    (`Database.require_writable`); None when its SQLite file does not exist yet (made once the
    models have loaded: a scan that cannot load them leaves no empty library behind)."""
    from tagger.db.engine import check_folder_can_be_made
    from tagger.db.urls import as_url, sqlite_file

    path = sqlite_file(as_url(db))
    if path is not None and not path.exists():
        check_folder_can_be_made(path.parent)  # (nothing made yet: a folder that cannot be, refused now)
        return None
    database = _open(db, create=True)
    try:
        database.require_writable(command="scan")
    except BaseException:
        database.close()
        raise
    return database


@app.command("scan")
@handle_errors
def scan(
    paths: list[Path] = typer.Argument(..., parser=F.path, help="Music folders (or files) to scan recursively."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    models: Path = typer.Option(
        None, "--models", parser=F.path, help="Model directory (default: $TAGGER_MODELS or the shipped models)."
    ),
    jobs: int = typer.Option(
        None, "--jobs", "-j",
        help="Worker processes decoding audio (default or -1: all cores; 0: none, all in one process; at most 4 per core).",
    ),  # fmt: skip
    rescan_stale: bool = typer.Option(False, "--rescan-stale", help="Re-analyse tracks analysed by another model version (or before the database kept window scores)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Re-analyse unchanged files that failed before."),
    quick: bool = typer.Option(False, "--quick", help="Trust size+mtime+ctime: skip the content fingerprint of unchanged files."),
    include_hidden: bool = typer.Option(False, "--include-hidden", help="Also enter hidden folders and files."),
    follow_external_symlinks: bool = typer.Option(
        False, "--follow-external-symlinks", help="Also follow symbolic links that point outside the scanned folders."
    ),
    file_timeout: float = typer.Option(
        None, "--file-timeout", callback=F.seconds,
        help="Seconds a worker may go without progress on one file (a hung decoder) before the file fails "
        f"(default {DEFAULT_FILE_TIMEOUT:g}; 0: no limit; with --backend dask: seconds a worker may run one file, plus one per MB).",
    ),  # fmt: skip
    write_tags: bool = typer.Option(
        True, "--write-tags/--no-write-tags", help="Write INSTRUMENTS/INSTRUMENTS_MODEL tags into each analysed file."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report the tag changes, write none (nor delete leftover "
                                 "temp files); the analysis is stored in the database."),
    scores: bool = typer.Option(False, "--scores", help="Also write per-family scores (INSTRUMENTS_SCORES) into the "
                                "files this scan tags; files tagged before are left as they are: tagger tag --scores."),
    id3v23: bool = typer.Option(False, "--id3v23", help="Write ID3v2.3 instead of ID3v2.4 into the MP3/WAV/AIFF files "
                                "this scan tags (files tagged before: tagger tag --id3v23)."),
    keep_mtime: bool = typer.Option(False, "--keep-mtime", help="Keep each file's modification time when tagging."),
    settle_seconds: float = typer.Option(
        DEFAULT_SETTLE_SECONDS, "--settle-seconds", envvar="TAGGER_SETTLE_SECONDS", callback=F.seconds,
        help="When writing tags, leave new or changed files modified less than this many seconds ago "
        "(they may still be being written) for a later scan.",
    ),  # fmt: skip
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    backend: str = typer.Option(
        "local", "--backend", help="Where files are analysed: local (worker processes) or dask (a Dask cluster)."
    ),
    scheduler: str = typer.Option(
        None, "--scheduler", envvar="TAGGER_DASK_SCHEDULER",
        help="Dask scheduler address for --backend dask, e.g. tcp://10.0.0.5:8786 (default: $TAGGER_DASK_SCHEDULER).",
    ),  # fmt: skip
) -> None:
    """Analyse every audio file under PATHS into the library database (incremental and resumable)."""
    # (the steps: _scan_scheduler, _load_for_scan, _ScanBars, _scan_backend, the scan itself,
    # _scan_notes and _scan_totals)
    scheduler = _scan_scheduler(backend, scheduler)
    from tagger.library.scan import check_jobs, check_roots, tag_writer
    from tagger.library.scan import scan as run_scan

    paths = check_roots(paths)  # before anything is loaded, created or locked
    check_jobs(jobs)
    database, ensemble = _load_for_scan(db, models)
    bars = _ScanBars()
    cluster = _scan_backend(backend, scheduler, models=models, ensemble=ensemble)
    hook = (
        tag_writer(model_version=ensemble.version, dry_run=dry_run, scores=scores, id3v23=id3v23, keep_mtime=keep_mtime,
                   settle_seconds=settle_seconds, models=known_models(database, [ensemble.version]))  # fmt: skip
        if write_tags
        else None
    )
    try:
        summary = run_scan(
            paths, db=database, analyser=ensemble, jobs=jobs, rescan_stale=rescan_stale, retry_errors=retry_errors,
            quick=quick, include_hidden=include_hidden, progress=bars, on_track=hook,
            follow_external_symlinks=follow_external_symlinks, backend=cluster,
            settle_seconds=settle_seconds if write_tags else 0.0, keep_temp_files=dry_run,
            **({} if file_timeout is None else {"file_timeout": file_timeout or None}),
        )  # fmt: skip
    finally:
        bars.close()
        database.close()
    if as_json:
        echo(json.dumps(summary.to_dict(), indent=1), lines=True)
        if not summary.ok:
            raise typer.Exit(1)
        return
    _scan_notes(summary, dry_run=dry_run)
    _scan_totals(summary, write_tags=write_tags, dry_run=dry_run, settle_seconds=settle_seconds,
                 rescan_stale=rescan_stale)  # fmt: skip
    if not summary.ok:  # a file, a folder or a tag write failed: scripts (cron) must see it
        raise typer.Exit(1)


def _scan_scheduler(backend: str, scheduler: str | None) -> str | None:
    """Refuse an unknown ``--backend``, and ``--backend dask`` without a scheduler; the scheduler's
    address checked (dask) or as given."""
    from tagger.errors import UserError
    from tagger.library.distributed import BACKENDS, check_scheduler_address

    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "dask" and not scheduler:
        raise UserError("--backend dask needs --scheduler tcp://HOST:PORT (or $TAGGER_DASK_SCHEDULER)")
    if backend == "dask":
        scheduler = check_scheduler_address(scheduler)
    return scheduler


def _load_for_scan(db: str | None, models: Path | None):
    """(the library database, the ensemble): a database that cannot be written is refused before
    the models load; a new SQLite file is made only once they have loaded; the database is closed
    again when they cannot be."""
    database = _open_for_scan(db)  # (a read-only one refused before the models load: seconds for nothing)
    try:
        quiet_tensorflow_for(models)
        from tagger.model.ensemble import Ensemble

        ensemble = Ensemble.load(models)
        database = database or _open(db, create=True)
    except BaseException:
        if database is not None:
            database.close()
        raise
    return database, ensemble


class _ScanBars:
    """The scan's progress: one bar per phase ("check" while planning, "scan" while analysing, with
    the hours of audio and the real-time factor), the previous one closed when the next begins;
    silent when standard error is not a terminal."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, p) -> None:
        from tqdm import tqdm

        bar = self.bars.get(p.phase)
        if bar is None:
            for other in self.bars.values():
                other.close()
            desc = "check" if p.phase == "plan" else "scan"
            bar = self.bars[p.phase] = tqdm(total=p.files_total, unit="file", desc=desc, disable=None, file=sys.stderr,
                                            dynamic_ncols=True)  # fmt: skip
        if p.phase == "analyse":
            bar.set_postfix_str(f"{p.audio_seconds / 3600:.2f} h audio, {p.realtime_factor:.1f}x real time", refresh=False)
        bar.update(p.files_done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _scan_backend(backend: str, scheduler: str | None, *, models: Path | None, ensemble):
    """The Dask cluster files are analysed on (``--backend dask``), None for local workers."""
    if backend != "dask":
        return None
    from tagger.library.distributed import AnalyserSpec, DaskBackend

    # Workers load the same model directory (shared storage) or, without --models, their own
    # default models; either way they must have the client's manifest hash.
    spec = AnalyserSpec(model_dir=str(Path(ensemble.model_dir).resolve()) if models is not None else None)
    return DaskBackend(scheduler, spec=spec)


def _scan_notes(summary, *, dry_run: bool) -> None:
    """One line per file the scan has something to say about: failed, left for later, analysed in
    part, analysed again as an older tagger analysed it in part or stored it all silent, not tagged, in a format without tags, a symbolic link out of the scanned folders, an empty root, a leftover temp file (``--dry-run``),
    a track that took a file's real name, a duplicate track removed."""
    for path, reason in summary.errors:
        echo(f"tagger: failed {named_failed(path, reason)}: {reason}", err=True)
    # (each was named on a line of its own: a folder of new files being copied in buried the summary)
    echo_some([f"tagger: skipped {named(path)}: {reason}" for path, reason in summary.deferred],
              more="file(s) changed within the settle time, left for a later scan")  # fmt: skip
    for path, note in summary.analysed_in_part:
        echo(f"tagger: warning: {named(path)}: {note}", err=True)
    echo_some([f"tagger: {named(path)}: analysed again: {why}" for path, why in summary.decoded_anew],
              more="file(s) an older tagger analysed in part (files joined one after another) or stored all silent, analysed again")  # fmt: skip
    for path, reason in summary.tag_failures:
        echo(f"tagger: tags not written {named(path)}: {reason}", err=True)
    echo_some([f"tagger: kept {named(path)}: {reason}" for path, reason in summary.tags_kept],
              more="file(s) kept, their fields not provably tagger's (--json names them)")  # (said again each scan)  # fmt: skip
    echo_some([f"tagger: no tags for {named(path)}: {reason}; its instruments are in the database"
               for path, reason in summary.untaggable], more="file(s) in formats without tags (their instruments are in the database)")  # fmt: skip
    # (a link to another disk was left out with a line in -v's log alone: its music never scanned, without a word)
    echo_some([f"tagger: not followed: {named(path)}, a symbolic link pointing outside the scanned folders (to "
               f"{named(os.path.realpath(path))}); --follow-external-symlinks scans what it leads to"
               for path in summary.unfollowed], more="symbolic link(s) pointing outside the scanned folders, not followed")  # fmt: skip
    echo_some([f"tagger: not scanned: {named(path)}: not an audio file (its name says so: "
               f"{os.path.splitext(path)[1].lower()})" for path in summary.not_audio],
              more="file(s) given whose names say they hold no audio, not scanned")  # fmt: skip
    for path, kept in summary.empty_roots:
        echo(f"tagger: warning: {named(path)} is empty (a drive not mounted?): its {kept} track(s) were kept, "
                   "not marked missing", err=True)  # fmt: skip
    for path in summary.temp_files if dry_run else ():
        echo(f"tagger: would remove {named(path)}, left over by an interrupted tag write (unless in use)")
    for old, new in summary.relinked:
        echo(f"tagger: {named(old)} leads through a symbolic link to {named(new)}: its track is stored under that name now")
    # (a folder mounted at two places and scanned under each name by turns: every track, at every scan)
    echo_some([f"tagger: {named(old)} is the file {named(new)} under another name (a folder mounted at two places?): "
               "its track is stored under the name this scan found now" for old, new in summary.renamed],
              more="track(s) stored under the name this scan found their files by (a folder mounted at two places?)")  # fmt: skip
    for path in summary.merged:
        echo(f"tagger: {named(path)} is a link to a file of the library: its duplicate track was removed "
             "(the file's own track holds its results)")  # fmt: skip
    for path in summary.duplicates:
        echo(f"tagger: {named(path)} is a second name of a file this scan found under another (a folder mounted twice, or "
             "a name in other case on a drive that ignores case?): "
             "its duplicate track was removed (the track under the name the scan found holds its results)")  # fmt: skip


def _scan_totals(summary, *, write_tags: bool, dry_run: bool, settle_seconds: float, rescan_stale: bool) -> None:
    """The closing counts: files scanned, skipped, failed, moved and missing, the audio and time,
    the new files that are copies of analysed ones, the files that kept their results after another program's tag write, the tags written, the
    leftover temporary copies deleted, the files left for later, and the stale tracks to rescan."""
    echo(
        f"{summary.scanned} scanned, {summary.skipped} skipped unchanged ({summary.stale} stale), "
        f"{summary.failed} failed, {summary.moved} moved, {summary.missing} newly missing; "
        f"{summary.audio_seconds / 3600:.2f} h audio in {summary.wall_seconds:.1f} s"
        # (a scan that analysed nothing said `(0.0x real time)`, as if it had crawled through the audio)
        + (f" ({summary.realtime_factor:.1f}x real time)" if summary.audio_seconds else "")
    )
    if summary.copied:  # (counted in "skipped unchanged" alone: a new file, a copy, said nothing of itself)
        echo(f"{summary.copied} new file(s) holding exactly an analysed file's content (a copy) got a copy of its "
             "results (not analysed again)")  # fmt: skip
    if summary.retagged:
        echo(f"{summary.retagged} file(s) whose tags were rewritten since the last scan (by another program, "
             f"or tagger untag or tag --from-json) kept their results (the same audio: "
             "not analysed again)")  # fmt: skip
    if write_tags:
        verb = "would be tagged" if dry_run else "tagged"
        untaggable = f", {len(summary.untaggable)} in formats without tags" if summary.untaggable else ""
        kept = f", {len(summary.tags_kept)} kept (fields not provably tagger's, see above)" if summary.tags_kept else ""
        echo(f"tags: {summary.tags_written} {verb}, {summary.tag_errors} failed{untaggable}{kept}")
    if summary.temp_files and not dry_run:  # (--json alone named them: the summary said nothing of a deletion)
        echo(f"{len(summary.temp_files)} leftover temporary file(s) of interrupted tag writes (.tagger-tmp) deleted (--json names them)")
    if summary.deferred:
        echo(f"{len(summary.deferred)} file(s) changed in the last {settle_seconds:g} s were left for a later scan")
    if summary.stale and not rescan_stale:
        # (it said only "run `tagger scan --rescan-stale`", whose models a scan given --models need not have)
        echo(f"{summary.stale} track(s) were analysed by another model version than this scan's "
             f"({summary.model_version}): the same scan with --rescan-stale analyses them with it")  # fmt: skip

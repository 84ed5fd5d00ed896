"""`tagger scan|query|show|stats|errors` and `tagger db upgrade|prune`: the library database.

Thin: each command parses its flags, calls one function of `tagger.library` / `tagger.db` and
renders the result. TensorFlow is imported only by `scan` (when it loads the models).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, echo_data, echo_some, handle_errors, quiet_tensorflow_for, stdout_encoding
from tagger.display import named, named_failed
from tagger.library.defaults import DEFAULT_FILE_TIMEOUT
from tagger.paths import DEFAULT_SETTLE_SECONDS

DB_HELP = "Database: SQLAlchemy URL or SQLite file (default: $TAGGER_DB, else library.db in the user data folder)."

db_app = typer.Typer(help="Manage the library database (schema upgrades, pruning).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _open(db: str | None, *, create: bool = False):
    """The library database; only `scan` creates one (``create``)."""
    from tagger.db.session import open_database

    return open_database(db, create=create)


def _with_session(db: str | None, read, *, locked: str | None = None, command: str = ""):
    """Open the library database, return `read(session)`, and close the database (`_session`)."""
    with _session(db, locked=locked, command=command) as s:
        return read(s)


def _reading(db: str | None, read):
    """Open the library database for reading (`_database`: a SQLite library through ``sqlite3``
    alone), return `read(reader)` (a `tagger.db.sql.Reader`), and close the database."""
    with _database(db, reading=True) as database, database.reader() as reader:
        return read(reader)


@contextlib.contextmanager
def _session(db: str | None, *, locked: str | None = None, command: str = ""):
    """Open the library database, give a session, and close the database when the block ends
    (`_database`). ``locked``: hold the scan lock meanwhile (a change no scan may run beside), the
    refusal telling the user to do that once the scan is done; a read-only database refuses
    ``command`` first."""
    from tagger.db.lock import scan_lock

    with _database(db) as database:
        if locked:  # (a change: refused on a read-only database before the lock file is made)
            database.require_writable(command=command)
        with scan_lock(database.url, then=locked, engine=database.engine) if locked else contextlib.nullcontext(), database.session() as s:
            yield s


@contextlib.contextmanager
def _database(db: str | None, *, reading: bool = False):
    """Open the library database, give it, and close it when the block ends (``reading``: for a
    command that only reads it, through ``sqlite3`` alone where it can be, `open_for_reading`). A
    database that cannot be read (damaged, locked, gone) is one line naming it, not the driver's
    traceback."""
    from tagger.db.session import database_error, open_for_reading
    from tagger.db.urls import is_driver_error

    database = open_for_reading(db) if reading else _open(db)
    try:
        yield database
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        raise database_error(database.url, exc, doing="read") from None
    finally:
        database.close()


def _not_the_database(output: Path, db: str | None, *, what: str) -> None:
    """A `UserError` where `output` (`query -o`, `show --plot`) names the library database or a file
    beside it that belongs to it (its write-ahead log, shared memory, rollback journal, scan lock):
    these hold text or nothing at times (the lock a PID, an empty log), which the output's own check
    would take for an earlier list and replace (`query -o library.db.lock` made every later scan
    refuse the lock). Compared by the real path of the name's folder: a link at the name is replaced,
    never written through."""
    from tagger.db.lock import LOCK_SUFFIX, database_files, real_sqlite_file
    from tagger.db.urls import as_url
    from tagger.errors import UserError

    url = as_url(db)
    if os.path.join(os.path.realpath(output.parent), output.name) not in database_files(url):
        return
    database = real_sqlite_file(url)
    kinds = {"-wal": "write-ahead log", "-shm": "shared-memory index", "-journal": "rollback journal",
             LOCK_SUFFIX: "scan lock"}  # fmt: skip
    kind = next((k for suffix, k in kinds.items() if output.name.endswith(database.name + suffix)), None)
    whose = f"the {kind} of the library database {named(database)}" if kind else "the library database"
    raise UserError(f"{named(output)}: is {whose}; {what} is not written there: choose another name")


def _make_folder(folder: Path) -> None:
    """Make ``folder`` (and the folders above it) where it is not there yet; `UserError` naming it
    where it cannot be made."""
    from tagger.errors import UserError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot make the folder ({exc.strerror or exc})") from None


def _abspath(path: Path) -> str:
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def _either_name(path: Path, read):
    """``read(name)`` of the track of `path`: under its real path (where a scan stores a file reached
    through a link inside the library), else under the name as given, where a scan with
    ``--follow-external-symlinks`` stores a file reached through a link out of the scanned folders
    (`show` resolved that link and found no track of a file `query` lists). A `UserError` of both
    is the first's."""
    from tagger.errors import UserError

    real, given = _abspath(path), os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        return read(real)
    except UserError:
        if given == real:
            raise
        try:
            return read(given)
        except UserError:
            pass
        raise


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
                   settle_seconds=settle_seconds)  # fmt: skip
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
    part, not tagged, in a format without tags, a symbolic link out of the scanned folders, an empty root, a leftover temp file (``--dry-run``),
    a track that took a file's real name, a duplicate track removed."""
    for path, reason in summary.errors:
        echo(f"tagger: failed {named_failed(path, reason)}: {reason}", err=True)
    # (each was named on a line of its own: a folder of new files being copied in buried the summary)
    echo_some([f"tagger: skipped {named(path)}: {reason}" for path, reason in summary.deferred],
              more="file(s) changed within the settle time, left for a later scan")  # fmt: skip
    for path, note in summary.analysed_in_part:
        echo(f"tagger: warning: {named(path)}: {note}", err=True)
    for path, reason in summary.tag_failures:
        echo(f"tagger: tags not written {named(path)}: {reason}", err=True)
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
        echo(f"tags: {summary.tags_written} {verb}, {summary.tag_errors} failed{untaggable}")
    if summary.temp_files and not dry_run:  # (--json alone named them: the summary said nothing of a deletion)
        echo(f"{len(summary.temp_files)} leftover temporary file(s) of interrupted tag writes (.tagger-tmp) deleted (--json names them)")
    if summary.deferred:
        echo(f"{len(summary.deferred)} file(s) changed in the last {settle_seconds:g} s were left for a later scan")
    if summary.stale and not rescan_stale:
        # (it said only "run `tagger scan --rescan-stale`", whose models a scan given --models need not have)
        echo(f"{summary.stale} track(s) were analysed by another model version than this scan's "
             f"({summary.model_version}): the same scan with --rescan-stale analyses them with it")  # fmt: skip


@app.command("query")
@handle_errors
@F.filter_options()
def query(
    where: dict = F.FILTER,
    fmt: str = typer.Option(
        None, "--format", "-f", show_default=False,
        help="table, json, csv, paths (one a line), paths0 (NUL-separated, for xargs -0) or m3u "
             "(default: by -o's extension, .m3u/.m3u8, .csv or .json; else table).",
    ),  # fmt: skip
    output: Path = typer.Option(
        None, "--output", "-o", parser=F.output, help="Write to this file instead of stdout (e.g. a .m3u); - is stdout."
    ),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    cue_tracks: bool = typer.Option(
        False, "--cue-tracks",
        help="List the tracks of album images' cue sheets whose own families match (table or json), not whole files.",
    ),  # fmt: skip
) -> None:
    """List the analysed tracks matching every condition."""
    from tagger.db.listing import scored_families, stream_tracks
    from tagger.errors import UserError
    from tagger.library.report import FORMAT_OF_SUFFIX, QUERY_FORMATS, SHOWN, iter_rendered, left_out, table_widths

    if cue_tracks:
        return _query_cue_tracks(where, fmt=fmt, output=output, db=db)
    if fmt is None:  # (-o flute.m3u without --format wrote a table into a playlist no player reads)
        fmt = FORMAT_OF_SUFFIX.get(output.suffix.lower(), "table") if output is not None else "table"
    if fmt not in QUERY_FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(QUERY_FORMATS)}")
    where_given, where = where, F.track_filter(**where)
    if output is not None:
        from tagger.outputs import check_replaceable, looks_like_path_list, write_atomic

        _not_the_database(output, db, what="a track list")
        output = check_replaceable(output, ours=looks_like_path_list, what="a track list (text)")
    counts = {"tracks": 0, "left out": 0}

    def counted(tracks):
        for t in tracks:
            counts["tracks"] += 1
            counts["left out"] += left_out((t,), fmt)
            yield t

    # (read from the database as it is written, piece by piece, each in a short transaction of its own:
    # never every track, nor the whole text, at once, and no lock held while the output waits)
    with _database(db, reading=True) as database:
        tracks = stream_tracks(database, where=where, scores="scores" in SHOWN[fmt], instruments="instruments" in SHOWN[fmt])
        # (the CSV's score columns, and the widths of the table's, known before the first row)
        families = scored_families(database, where=where) if fmt == "csv" else None
        encoding = stdout_encoding() if output is None else None  # (a table printed escaped is padded so)
        widths = (table_widths(stream_tracks(database, where=where, scores=False, instruments=False), encoding=encoding)
                  if fmt == "table" else None)  # fmt: skip
        pieces = iter_rendered(counted(tracks), fmt=fmt, families=families, widths=widths, encoding=encoding)
        if output is not None:

            def write(name: str) -> None:
                with open(name, "w", encoding="utf-8", newline="") as f:
                    f.writelines(pieces)

            _make_folder(output.parent)  # (as --plot, reports and datasets do: `-o lists/organ.m3u`)
            write_atomic(output, write)
        elif fmt == "table":  # (for a person, wherever it goes)
            for piece in pieces:
                echo(piece, nl=False, lines=True)
        else:
            for piece in pieces:
                echo_data(piece, end={"paths0": "\0", "json": None}.get(fmt, "\n"))
    if output is not None:
        skipped = counts["left out"]
        but = f" ({skipped} left out: a name holding a line break)" if skipped else ""
        echo(f"{counts['tracks'] - skipped} track(s) written to {output}{but}", err=True)
    elif fmt == "table" and not counts["tracks"]:  # (a person's table said nothing at all, not even its header)
        conditions = any(v not in (None, (), []) for v in where_given.values())
        echo("no analysed track matches these conditions" if conditions else
             "no analysed track in the library database (tagger scan PATH analyses a folder)", err=True)  # fmt: skip


def _query_cue_tracks(where_given: dict, *, fmt: str | None, output: Path | None, db: str | None) -> None:
    """``query --cue-tracks``: the cue tracks whose families match, as a table or JSON on stdout; a
    line on stderr for each cue sheet that gave no tracks."""
    from tagger.db.detail import cue_tracks_matching
    from tagger.errors import UserError
    from tagger.library.report import CUE_TRACK_FORMATS, render_cue_matches

    fmt = fmt or "table"
    if fmt not in CUE_TRACK_FORMATS:
        raise UserError(f"--cue-tracks lists tracks inside files: --format {' or '.join(CUE_TRACK_FORMATS)}, not {fmt!r}")
    if output is not None:
        raise UserError("--cue-tracks prints to stdout: redirect it (> FILE) instead of -o")
    where = F.track_filter(**where_given)
    matches, notes = _reading(db, lambda conn: cue_tracks_matching(conn, where))
    for path, note in notes:
        echo(f"tagger: warning: {named(path)}: cue sheet: {note}", err=True)
    text = render_cue_matches(matches, fmt=fmt)
    if fmt == "table":
        echo(text, nl=False, lines=True)
        if not matches:
            echo("no cue track matches these conditions", err=True)
    else:
        echo_data(text, end=None)


@app.command("show")
@handle_errors
def show(
    path: Path = typer.Argument(..., parser=F.path, help="An audio file in the library."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: Path = typer.Option(
        None, "--plot", parser=F.path, help="Also draw the track's timeline (window scores, thresholds, segments) into this .png or .svg."
    ),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """One track: per family presence, score, coverage and the time ranges where it plays.

    An album image with a cue sheet (a .cue beside it that names it, or embedded in a FLAC): each of
    its tracks with its families too, from the stored window scores."""
    from tagger.db.detail import track_detail, track_timeline, with_cue_tracks
    from tagger.library.report import render_detail

    if plot is not None:
        from tagger import timeline

        _not_the_database(plot, db, what="a timeline picture")
        timeline.check_output(plot)
        timeline.draw(_either_name(path, lambda name: _with_session(db, lambda s: track_timeline(s, path=name))), plot)
        echo(f"timeline written to {plot}", err=True)
    detail = _either_name(path, lambda name: _reading(db, lambda conn: with_cue_tracks(conn, track_detail(conn, path=name))))
    echo(json.dumps(detail.to_dict(), indent=1) if as_json else render_detail(detail), nl=as_json, lines=True)


@app.command("stats")
@handle_errors
def stats(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Tracks per family, co-occurrence of families, totals."""
    from tagger.db.queries import library_stats
    from tagger.library.report import render_stats

    result = _reading(db, library_stats)
    echo(json.dumps(result, indent=1) if as_json else render_stats(result), nl=as_json, lines=True)


@app.command("errors")
@handle_errors
def errors(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """List the files that could not be analysed, with the reason."""
    from tagger.db.queries import failed_tracks
    from tagger.library.report import render_errors

    rows = _reading(db, failed_tracks)
    echo(json.dumps(rows, indent=1) if as_json else render_errors(rows), nl=as_json, lines=True)
    if not rows and not as_json:  # (it printed nothing at all)
        echo("no file in the library database failed to be analysed", err=True)


@db_app.command("upgrade")
@handle_errors
def db_upgrade(db: str = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Create the database or apply pending schema migrations."""
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.db.migrate import current_revision, upgrade
    from tagger.db.engine import make_engine
    from tagger.db.session import no_way_back
    from tagger.db.urls import as_url, shown_url

    url = as_url(db)
    engine = make_engine(url)
    try:
        try:
            before = current_revision(engine)
        except SQLAlchemyError:
            before = None  # (`upgrade` says why it cannot be read)
        revision = upgrade(engine)
    finally:
        engine.dispose()
    note = f" (upgraded from revision {before}: {no_way_back(before)})" if before not in (None, revision) else ""
    echo(f"{shown_url(url)}: at revision {revision}{note}")  # (the URL given: a read-only database's engine has another)


@db_app.command("prune")
@handle_errors
def db_prune(
    as_json: bool = typer.Option(False, "--json", help="Print the removed paths as JSON."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Delete the tracks marked missing (files deleted since they were scanned) and their results.

    A track whose file is there again, or whose scanned folder is empty (a drive not mounted?), is
    kept. Also deletes the failed tracks of files whose names say they hold no audio (notes.txt,
    cover.jpg: stored by older versions, never scanned now)."""
    from tagger.db.queries import prune_missing

    # (a scan restoring a moved track meanwhile would have it deleted by the ids read before)
    pruned = _with_session(db, prune_missing, locked="prune again", command="db prune")
    if as_json:
        echo(json.dumps({"removed": pruned.removed, "kept": pruned.kept, "not_audio": pruned.not_audio}, indent=1), lines=True)
        return
    for path in pruned.kept:
        echo(f"tagger: kept {named(path)}: its file is there again, or its folder is empty (a drive not mounted?)",
                   err=True)  # fmt: skip
    echo(f"{len(pruned.removed)} missing track(s) removed, {len(pruned.kept)} kept"
         + (f"; {len(pruned.not_audio)} failed track(s) of files whose names say they hold no audio removed (--json "
            "names them)" if pruned.not_audio else ""))  # fmt: skip

"""`tagger tag` and `tagger untag`: write the detected instruments into the files, or remove them.

Thin: parse flags, call `tagger.tags`, render one line per changed or skipped file and a summary.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, echo_some, fail, handle_errors
from tagger.cli.database import known_models
from tagger.display import named
from tagger.paths import DEFAULT_SETTLE_SECONDS

log = logging.getLogger("tagger.tags")

SETTLE_HELP = (
    "Leave alone files modified less than this many seconds ago (they may still be being written); "
    "a later run changes them."
)
FOLLOW_HELP = "Also change files reached through symbolic links that point outside the given folders."


def settle_option():
    return typer.Option(DEFAULT_SETTLE_SECONDS, "--settle-seconds", envvar="TAGGER_SETTLE_SECONDS", callback=F.seconds,
                        help=SETTLE_HELP)  # fmt: skip


def _values(state) -> str:
    return ", ".join(state.instruments) or ("(no instrument)" if state.tagged else "-")


def _was(before, after, *, converted: str | None = None) -> str:
    """What a tag write changed, for its line: the instruments before, and what else changed where
    they did not (`tagged a.flac: organ (was: organ)` said nothing of the scores `--scores` added, nor
    of the ID3v2.4 tag `--id3v23` made ID3v2.3: ``converted``, `tagger.tags.TagChange.converted`)."""
    notes = []
    if before.tagged and before.instruments == after.instruments:
        if before.scores is None and after.scores is not None:
            notes.append("scores added")
        elif before.scores is not None and after.scores is None:
            notes.append("scores removed")
        elif before.scores != after.scores:
            notes.append("scores updated")
        if before.model_version not in (None, after.model_version):
            notes.append(f"model was {before.model_version}")
        if converted:
            notes.append(converted)
    return "; ".join([_values(before), *notes])


def _render(results, *, verb: str, dry_run: bool, stop=None, recorded: bool = False, own=None) -> None:
    """One line per changed or skipped file, a summary (and a line counting the files recognised as
    changed since they were analysed in their tags alone: `tagger.tags.TagChange.retagged`), exit code
    1 when a file was skipped, or when a file written (or found holding its results) could not be
    recorded as current: the error that follows its result, said as such (`tagger: not recorded
    PATH: ...`), the file counted once (was: `tagger: skipped PATH: tags written, but ...`, and
    counted twice, tagged and skipped). A file in a format that holds no tags tagger writes is not skipped:
    `tag` says so and counts it, `untag` counts it unchanged (tagger never wrote into it), as it does
    an empty file (`EmptyFileError`: 0 bytes, no tags at all). ``stop``: the run's `StopSignals`; a run it
    stopped (SIGINT, SIGTERM, SIGHUP: after the file it was writing) ends with its summary, a line
    saying so and exit code 128 + the signal number (``recorded``: the files written are recorded
    in the library database). ``own``: the run's `tagger.tags.database.OwnWrites`, whose failure to
    record (the database could not be written) is said in a line; the writes stand."""
    import signal

    from tagger.errors import EmptyFileError, TagWriteError, UntaggableError

    done = unchanged = skipped = retagged = unrecorded = kept = 0
    untaggable: list[str] = []
    counted = None  # (the path of the last file counted as tagged or unchanged)
    for result in results:
        retagged += bool(getattr(result, "retagged", False))
        if isinstance(result, (UntaggableError, EmptyFileError)) and verb == "untag":
            unchanged += 1  # (an empty file holds no fields of tagger's: was skipped, every untag of its folder exit 1)
            log.debug("no tags of tagger's in %s", result)
        elif isinstance(result, UntaggableError):
            untaggable.append(f"tagger: no tags for {result}")
        elif isinstance(result, TagWriteError) and result.path == counted:
            # what followed the write of a file counted above (`tags written, but a scan stored new
            # results for it meanwhile ...`): not a second file, nor a skipped one
            unrecorded += 1
            echo(f"tagger: not recorded {result}", err=True)
        elif isinstance(result, TagWriteError):
            skipped += 1
            echo(f"tagger: skipped {result}", err=True)
        elif getattr(result, "kept", None):
            kept += 1
            echo(f"tagger: kept {named(result.path)}: {result.kept}", err=True)
        elif not result.changed:
            unchanged += 1
            counted = result.path
            log.debug("unchanged %s", result.path)
        else:
            done += 1
            counted = result.path
            label = f"would {verb}" if dry_run else f"{verb}ged"
            if verb == "tag":
                echo(f"{label} {named(result.path)}: {_values(result.after)} (was: {_was(result.before, result.after, converted=result.converted)})")
            else:
                echo(f"{label} {named(result.path)} (removed: {_values(result.before)})")
    past = f"{verb}ged"  # verb is "tag" or "untag"
    summary = f"{done} {'would be ' + past if dry_run else past}, {unchanged} unchanged, {skipped} skipped"
    echo_some(untaggable, more="file(s) in formats without tags")
    summary += f", {len(untaggable)} in formats without tags" if untaggable else ""
    summary += f", {kept} kept (fields not provably tagger's, see above)" if kept else ""
    summary += f"; {unrecorded} not recorded in the database as current (see above)" if unrecorded else ""
    echo(summary, err=True)
    if retagged:
        echo(f"{retagged} file(s) whose tags were rewritten since the last scan (by another program, or tagger untag or "
             f"tag --from-json) recognised by their audio, the same as analysed"
             f"{': nothing recorded (dry run)' if dry_run else ', their new size and mtime recorded'}", err=True)  # fmt: skip
    if own is not None and own.failed:
        echo(f"tagger: note: {own.failed}; the writes from there on are not recorded in it, so the next command waits "
             "the settle time for them", err=True)  # fmt: skip
    if stop is not None and stop.requested:
        name = signal.Signals(stop.signum).name
        done_so_far = ("nothing was written" if dry_run else
                       f"the files {past} are whole{' and recorded' if recorded else ''}, the rest left as they were")
        raise fail(f"interrupted ({name}): stopped after the file it was on; {done_so_far}; run it again to continue",
                   128 + stop.signum)  # fmt: skip
    if skipped or unrecorded:
        raise typer.Exit(1)


@app.command("tag")
@handle_errors
@F.filter_options(old_names=True)
def tag(
    paths: list[Path] = typer.Argument(
        None, parser=F.path, help="Only files (or folders of files) among the analysed tracks."
    ),
    where: dict = F.FILTER,
    db: str = typer.Option(None, "--db", help="Library database URL or SQLite file (default: $TAGGER_DB or the user data dir); "
                                              "with --from-json, the one that records the files written, and whose record of them spares "
                                              "waiting for a file tagger just wrote, where there is one."),
    from_json: Path = typer.Option(
        None, "--from-json", parser=F.path, help="Take the predictions from this `tagger predict --json` output instead of the database."
    ),
    model_version: str = typer.Option(
        None, "--model-version", help="INSTRUMENTS_MODEL for --from-json rows without one (default: the shipped model's)."
    ),
    scores: bool = typer.Option(False, "--scores", help="Also write per-family scores (INSTRUMENTS_SCORES)."),
    id3v23: bool = typer.Option(False, "--id3v23", help="Write ID3v2.3 instead of ID3v2.4 (MP3, WAV, AIFF)."),
    keep_mtime: bool = typer.Option(False, "--keep-mtime", help="Keep each file's modification time."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would change; write nothing."),
    settle_seconds: float = settle_option(),
    follow_external_symlinks: bool = typer.Option(False, "--follow-external-symlinks", help=FOLLOW_HELP),
) -> None:
    """Write INSTRUMENTS (and INSTRUMENTS_MODEL) into the files from stored results, without re-analysis.

    The tracks are chosen with the options of `tagger query` (--has, --lacks, --min-score, --path-glob)."""
    from tagger import tags
    from tagger.errors import UserError
    from tagger.library.state import StopSignals

    for path in paths or ():
        if not path.exists():
            raise UserError(f"no such file or folder: {path}")
    where = F.track_filter(**where, paths=paths)
    options = dict(scores=scores, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run, settle_seconds=settle_seconds,
                   follow_external_symlinks=follow_external_symlinks)  # fmt: skip
    if from_json is not None:
        version = model_version if model_version is not None else _shipped_model_version()
        rows = tags.load_predictions_jsonl(from_json, model_version=version, override=model_version is not None)
        if rows.rejected and not rows.predictions:  # (the wrong file given? one line, not one per line)
            more = len(rows.rejected) - 1
            raise UserError(f"{rows.rejected[0]}" + (f" (and {more} more bad line{'s' * (more > 1)})" if more else ""))
        predictions = tags.select_predictions(rows.predictions, where=where)
        if not predictions:
            for rejected in rows.rejected:
                echo(f"tagger: skipped {rejected}", err=True)
            raise fail("no analysed track matches", 1)
        roots = paths or [tags.rows_folder(predictions, source=from_json)]
        # (the library database, where there is one, records the files written: `untag` right after
        # does not wait for them; was: every one skipped as "changed 1 s ago, still being written?";
        # and tells the files as tagger's own last write left them, which need not settle either)
        # (a --dry-run opens it too: the model versions it records are tagger's, written over as by the real run)
        database = _library_at_hand(db, settle_seconds=settle_seconds)
        try:
            recorded = _recorded_as_tagged(database, db, roots) if database is not None and settle_seconds > 0 else None
            own = None if database is None or dry_run else _own_writes(database)
            with StopSignals() as stop:
                written = tags.write_predictions(predictions, roots=roots, stop=lambda: stop.requested,
                                                 recorded=recorded, models=known_models(database), **options)  # fmt: skip
                written = written if own is None else own.record(written)
                _render(itertools.chain(rows.rejected, written), verb="tag", dry_run=dry_run, stop=stop,
                        own=own)  # (bad rows first)  # fmt: skip
        finally:
            if database is not None:
                database.close()
        return
    from tagger.db.session import open_database

    database = open_database(db, create=False)
    try:
        if not dry_run:  # (it records each rewritten file: refused before any file is touched)
            database.require_writable(command="tag")
        with StopSignals() as stop:
            results = tags.tag_from_database(database, where=where, stop=lambda: stop.requested,
                                             models=known_models(database), **options)  # fmt: skip
            _render(results, verb="tag", dry_run=dry_run, stop=stop, recorded=True)
    finally:
        database.close()


def _shipped_model_version() -> str | None:
    """The shipped model's version from its manifest (no TensorFlow), or None when there is none."""
    from tagger.errors import ModelError

    try:
        from tagger.model.folders import default_model_dir
        from tagger.model.manifest import read_manifest

        return str(read_manifest(default_model_dir())["version"])
    except ModelError:
        return None


@app.command("untag")
@handle_errors
def untag(
    paths: list[Path] = typer.Argument(..., parser=F.path, help="Audio files or folders (recursively)."),
    db: str = typer.Option(
        None, "--db", help="Library database URL or SQLite file whose tag writes are not waited for, and which "
                           "records the files untagged (default: $TAGGER_DB or the user data dir, where there is one)."),
    keep_mtime: bool = typer.Option(False, "--keep-mtime", help="Keep each file's modification time."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would change; write nothing."),
    settle_seconds: float = settle_option(),
    follow_external_symlinks: bool = typer.Option(False, "--follow-external-symlinks", help=FOLLOW_HELP),
    include_hidden: bool = typer.Option(False, "--include-hidden", help="Also enter hidden folders and files "
                                        "(which a scan with --include-hidden tags)."),
    model_version: list[str] = typer.Option(
        [], "--model-version", help="Also take fields whose INSTRUMENTS_MODEL is this for tagger's (repeatable): by "
                                    "default only the versions of the models found and of those the library database "
                                    "records are; fields of any other are kept, someone else's."),
) -> None:
    """Remove exactly the fields tagger wrote, nothing else.

    INSTRUMENTS, INSTRUMENTS_MODEL, INSTRUMENTS_SCORES; INSTRUMENTS_COPIES and the unchanged copies
    of another tag's fields it lists. A file exactly as the library database recorded it after
    tagger's own write is not waited for (--settle-seconds); each file untagged is recorded there, so
    that `tagger tag` right after does not wait for it either. Fields whose INSTRUMENTS_MODEL names no
    model tagger knows (the models found, the library database's, --model-version) are kept, said per file."""
    from tagger import tags
    from tagger.library.state import StopSignals

    # (a --dry-run opens it too: the model versions it records are tagger's, removed as by the real run)
    database = _library_at_hand(db, settle_seconds=settle_seconds)
    try:
        recorded = _recorded_as_tagged(database, db, paths) if database is not None and settle_seconds > 0 else None
        own = None if database is None or dry_run else _own_writes(database)
        with StopSignals() as stop:
            results = tags.remove_all(
                paths, keep_mtime=keep_mtime, dry_run=dry_run, settle_seconds=settle_seconds,
                follow_external_symlinks=follow_external_symlinks, stop=lambda: stop.requested, recorded=recorded,
                include_hidden=include_hidden, models=known_models(database, model_version),
            )  # fmt: skip
            _render(results if own is None else own.record(results), verb="untag", dry_run=dry_run, stop=stop,
                    own=own)  # fmt: skip
    finally:
        if database is not None:
            database.close()


def _library_at_hand(db: str | None, *, settle_seconds: float):
    """The library database `untag` and `tag --from-json` read (the facts recorded after tagger's own
    writes, which need not settle) and record their writes in (`tagger.tags.database.OwnWrites`), open;
    None where there is none. ``db`` None: the default database ($TAGGER_DB, or the user data
    folder's) where there is one; none there, or one that cannot be opened (a line says why), is
    None: every recent file is waited for, and nothing recorded, as before; so is a default database
    at an older schema revision, which only a command told of it (``--db``, a scan) upgrades. A ``--db``
    given that cannot be opened is the command's error, no file changed."""
    from tagger.db.session import open_database
    from tagger.db.urls import as_url, sqlite_file
    from tagger.errors import TaggerError, UserError

    if db is not None:
        return open_database(db, create=False)
    try:
        url = as_url(None)
    except UserError:  # (no home folder, nor $TAGGER_DB: no library database)
        return None
    default = sqlite_file(url)
    if default is not None and not default.exists():
        return None
    waits = "every file changed within the settle time is left for a later run, and " if settle_seconds > 0 else ""
    try:
        database = open_database(None, create=False, migrate=False)
    except TaggerError as exc:
        echo(f"tagger: note: {exc}; so {waits}this run's writes are not recorded in it", err=True)
        return None
    # (a database not asked for is not upgraded for this bookkeeping: an upgrade cannot be undone, and an
    # older tagger would no longer open it; was: upgraded, with scan's warning; `--db` names it: upgraded)
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.db.migrate import alembic_config, at_head, check_known_revision, current_revision, head_revision
    from tagger.db.session import database_error
    from tagger.db.urls import shown_url

    try:
        if at_head(database.engine):
            return database
        # (a newer tagger's database, or another program's, is its own line, as a scan's refusal says it;
        # was: "is at schema revision 0099 ... a scan upgrades it", which a scan refuses)
        with database.engine.connect() as conn:
            check_known_revision(conn, alembic_config(database.engine))
        revision = current_revision(database.engine)
        if revision == head_revision():  # (at_head's False is "ask Alembic")
            return database
    except (SQLAlchemyError, TaggerError) as exc:
        database.close()
        problem = database_error(database.url, exc, doing="open") if isinstance(exc, SQLAlchemyError) else exc
        echo(f"tagger: note: {problem}; so {waits}this run's writes are not recorded in it", err=True)
        return None
    database.close()
    echo(f"tagger: note: the library database {shown_url(database.url)} is at schema revision {revision}, this "
         f"tagger's is {head_revision()}; not upgraded by this command (a scan, or this command with --db, "
         f"upgrades it): so {waits}this run's writes are not recorded in it", err=True)  # fmt: skip
    return None


def _own_writes(database):
    """`tagger.tags.database.OwnWrites` on ``database``, or None (a line says why) where it cannot be
    written (a read-only file): the run's writes are then not recorded, the next command waits for them."""
    from tagger.db.engine import read_only_path
    from tagger.db.sqlite_files import read_only_reason
    from tagger.tags.database import OwnWrites

    path = read_only_path(database.engine)
    if path is not None:
        echo(f"tagger: note: the database {path} cannot be written ({read_only_reason(path)}): this run's writes are "
             "not recorded in it, so the next command waits the settle time for them", err=True)  # fmt: skip
        return None
    return OwnWrites(database)


def _recorded_as_tagged(database, db: str | None, paths: list[Path]) -> dict:
    """The facts the library database ``database`` records of the files under ``paths`` after tagger's
    own writes (`tagger.db.listing.recorded_as_tagged`), which `untag` need not wait for. One that
    cannot be read is the command's error where it was given (``db``), and no facts otherwise (a
    line says why): every recent file is waited for, as before. Paths whose names are not UTF-8 have
    no tracks there and are left out of the query."""
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.db.filter import TrackFilter
    from tagger.db.listing import recorded_as_tagged
    from tagger.db.session import database_error
    from tagger.errors import UserError

    usable = []
    for path in paths:
        try:
            usable.append(TrackFilter.of(paths=[path]).paths)
        except UserError:
            continue
    if not usable:
        return {}
    where = TrackFilter(paths=tuple(dict.fromkeys(form for forms in usable for form in forms)))
    try:
        with database.reader() as reader:
            return recorded_as_tagged(reader, where)
    except SQLAlchemyError as exc:
        error = database_error(database.url, exc, doing="read", then="no file was changed" if db is not None else "")
        if db is not None:
            raise error from None
        echo(f"tagger: note: {error}; so every file changed within the settle time is left for a later run", err=True)
        return {}

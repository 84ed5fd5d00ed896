"""`tagger query|show|stats|errors`: what the library database holds.

Thin: each command parses its flags, calls one function of `tagger.library` / `tagger.db` and
renders the result. `tagger scan` is `tagger.cli.scan`, `tagger db upgrade|prune` `tagger.cli.db`;
how the commands open the database, `tagger.cli.database`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, echo_data, handle_errors, stdout_encoding
from tagger.cli.database import DB_HELP, _database, _reading, _with_session
from tagger.display import named


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
        if conditions:
            echo("no analysed track matches these conditions", err=True)
        else:  # (a database holding only failed files was said to need a scan, as an empty one)
            from tagger.db.queries import failed_tracks

            failed = len(_reading(db, failed_tracks))
            echo("no analysed track in the library database " + (
                f"({failed} file(s) could not be analysed: tagger errors lists them)" if failed
                else "(tagger scan PATH analyses a folder)"), err=True)  # fmt: skip


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

    An album image with a cue sheet (a .cue beside it or in the folder above that names it, or one
    embedded in a FLAC or an APEv2 tag): each of its tracks with its families too, from the stored
    window scores, and the audio before its first track as track 0 where it holds a window."""
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

"""`tagger db upgrade|prune`: the library database's schema upgraded, its missing tracks pruned.

Thin: each command parses its flags, calls one function of `tagger.db` and renders the result.
"""

from __future__ import annotations

import json

import typer

from tagger.cli.app import app, echo, handle_errors
from tagger.cli.database import DB_HELP, _with_session
from tagger.display import named

db_app = typer.Typer(help="Manage the library database (schema upgrades, pruning).", no_args_is_help=True)
app.add_typer(db_app, name="db")


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

    A track whose file is there again, or whose nearest folder still there is empty (a drive not
    mounted?), is kept, the folder named. Also deletes the failed tracks of files whose names say they hold no audio (notes.txt,
    cover.jpg: stored by older versions, never scanned now)."""
    from tagger.db.queries import prune_missing

    # (a scan restoring a moved track meanwhile would have it deleted by the ids read before)
    pruned = _with_session(db, prune_missing, locked="prune again", command="db prune")
    if as_json:
        echo(json.dumps({"removed": pruned.removed, "kept": pruned.kept, "not_audio": pruned.not_audio}, indent=1), lines=True)
        return
    for path in pruned.kept:
        why = (f"{named(pruned.away[path])} is empty or cannot be listed (a drive not mounted?)" if path in pruned.away
               else "its file is there again")  # fmt: skip
        echo(f"tagger: kept {named(path)}: {why}", err=True)
    echo(f"{len(pruned.removed)} missing track(s) removed, {len(pruned.kept)} kept"
         + (f"; {len(pruned.not_audio)} failed track(s) of files whose names say they hold no audio removed (--json "
            "names them)" if pruned.not_audio else ""))  # fmt: skip

"""Options shared by several commands: the track filter of ``query`` and ``tag`` is declared once.

`FilterOptions` holds the typer option declarations; a command lists them as parameters
(``has: list[str] = F.has()``) and builds the filter with `track_filter`.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from tagger.paths import spelled_on_disk

HAS_HELP = "Family that must be present (repeatable)."
LACKS_HELP = "Family that must be absent (repeatable)."
MIN_SCORE_HELP = "Minimum score of every --has family."
PATH_GLOB_HELP = ("Shell pattern on the whole absolute path, e.g. '*/Jazz/*' (* also matches /); case-sensitive "
                  "('*/[Jj]azz/*' for either), accented letters matched in either Unicode form (NFC or NFD).")


def has():
    return typer.Option(None, "--has", help=HAS_HELP)


def lacks():
    return typer.Option(None, "--lacks", help=LACKS_HELP)


def min_score():
    return typer.Option(None, "--min-score", help=MIN_SCORE_HELP)


def path_glob():
    return typer.Option(None, "--path-glob", help=PATH_GLOB_HELP)


def old_has():
    """``tag --query-has``: the old name of ``--has`` (hidden alias)."""
    return typer.Option(None, "--query-has", hidden=True, help=HAS_HELP)


def old_lacks():
    """``tag --query-lacks``: the old name of ``--lacks`` (hidden alias)."""
    return typer.Option(None, "--query-lacks", hidden=True, help=LACKS_HELP)


def track_filter(*, has=None, lacks=None, min_score=None, path_glob=None, paths=None):
    """The `tagger.db.filter.TrackFilter` of a command's filter options."""
    from tagger.db.filter import TrackFilter

    return TrackFilter.of(has=has, lacks=lacks, min_score=min_score, path_glob=path_glob, paths=paths)


def path(value) -> Path:
    """The typer ``parser`` of every file or folder argument and option: a name that is empty (or
    only blanks) is refused, exit 2, instead of read as ``.``, the current folder (``tagger scan
    "$MUSIC"`` with ``$MUSIC`` unset scanned, and tagged, whatever folder the shell was in). A name
    that is not there as typed but is there in another Unicode form (typed NFC, copied from macOS
    in NFD) is taken in the form on disk (`tagger.paths.spelled_on_disk`)."""
    if isinstance(value, Path):
        return value  # a default
    if not str(value).strip():
        raise typer.BadParameter(f"{str(value)!r} is an empty name (it would mean the current folder): give a path")
    return Path(spelled_on_disk(str(value)))


def seconds(value: float | None) -> float | None:
    """The typer ``callback`` of a number of seconds: 0 or more, and finite. ``--settle-seconds inf``
    (or ``$TAGGER_SETTLE_SECONDS=inf``) left every file, of any age, alone for ever; a NaN was
    refused by typer's range check without its value named."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value:g}: give a finite number of seconds, 0 or more")
    return value

"""Options shared by several commands: the track filter of ``query`` and ``tag`` is declared once;
an option's default is the library's (`default`), not written again.

`FILTER_OPTIONS` lists the filter's options; a command that selects tracks is decorated with
`filter_options`, which puts them in the place of its parameter ``where`` and calls it with their
values, from which it builds the filter (`track_filter`). A new filter option is one entry of
`FILTER_OPTIONS`: every such command gets it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import re
from collections.abc import Callable
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


FILTER_OPTIONS: dict[str, tuple[object, Callable[[], typer.models.OptionInfo]]] = {
    "has": (list[str], has), "lacks": (list[str], lacks), "min_score": (float, min_score),
    "path_glob": (str, path_glob),
}  # fmt: skip
"""The filter's options, in the order a command lists them: parameter name -> (its type, its
declaration); each name is a keyword of `track_filter`."""
OLD_FILTER_OPTIONS: dict[str, tuple[str, Callable[[], typer.models.OptionInfo]]] = {
    "query_has": ("has", old_has), "query_lacks": ("lacks", old_lacks),
}  # fmt: skip
"""Hidden old names of filter options (``tag --query-has``): parameter name -> (the option whose
values it adds to, its declaration)."""
FILTER = object()
"""The default of a command's parameter ``where``, which `filter_options` replaces."""


def filter_options(*, old_names: bool = False):
    """Decorator of a command that selects tracks: its parameter ``where`` (``where: dict = F.FILTER``)
    is replaced by the filter's options (`FILTER_OPTIONS`; with ``old_names`` their hidden old names
    too, `OLD_FILTER_OPTIONS`), in its place, and the command is called with ``where`` holding their
    values by name (an old name's added to its option's): ``track_filter(**where)``."""
    added = {name: kind for name, (kind, _) in FILTER_OPTIONS.items()}
    olds = OLD_FILTER_OPTIONS if old_names else {}

    def decorate(command):
        signature = inspect.signature(command)
        params = []
        for param in signature.parameters.values():
            if param.name != "where":
                params.append(param)
                continue
            params += [param.replace(name=name, default=declare(), annotation=kind)
                       for name, (kind, declare) in FILTER_OPTIONS.items()]  # fmt: skip
            params += [param.replace(name=name, default=declare(), annotation=list[str])
                       for name, (_, declare) in olds.items()]  # fmt: skip

        @functools.wraps(command)
        def run(*args, **kwargs):
            where = {name: kwargs.pop(name) for name in FILTER_OPTIONS}
            for name, (option, _) in olds.items():
                old = kwargs.pop(name)
                if old:
                    where[option] = [*(where[option] or ()), *old]
            return command(*args, where=where, **kwargs)

        run.__signature__ = signature.replace(parameters=params)
        run.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "where"}, **added,
                               **{name: list[str] for name in olds}}  # fmt: skip
        return run

    return decorate


def track_filter(*, paths=None, **options):
    """The `tagger.db.filter.TrackFilter` of a command's filter options (``options``, by the names of
    `FILTER_OPTIONS`: `TrackFilter.of`'s keywords) and ``paths``."""
    from tagger.db.filter import TrackFilter

    return TrackFilter.of(**options, paths=paths)


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
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", str(value)) and not os.path.lexists(str(value)):
        # (a Path drops the second slash: 'http:/host/a.mp3: cannot read file: No such file or directory')
        raise typer.BadParameter(f"{value} is a URL: tagger reads files and folders only (download or mount it first)")
    return Path(spelled_on_disk(str(value)))


def output(value) -> Path | None:
    """The typer ``parser`` of an output file option (`query -o`): `path`'s, but ``-`` is stdout
    (None), as curl's, wget's and sort's ``-o -`` (a file of that name: ``./-``)."""
    return None if value == "-" else path(value)


def seconds(value: float | None) -> float | None:
    """The typer ``callback`` of a number of seconds: 0 or more, and finite. ``--settle-seconds inf``
    (or ``$TAGGER_SETTLE_SECONDS=inf``) left every file, of any age, alone for ever; a NaN was
    refused by typer's range check without its value named."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value:g}: give a finite number of seconds, 0 or more")
    return value


def default(settings, name: str):
    """The default of field ``name`` of the dataclass ``settings`` (e.g. ``TrainSettings``): the
    default of the option that sets it, so that a default is written once, in the library (its
    ``--help`` shows it). ``settings`` lives in a module without numpy (`tagger.model.settings`):
    every command's options are read when any command starts."""
    field = {f.name: f for f in dataclasses.fields(settings)}[name]
    if field.default is dataclasses.MISSING:
        raise ValueError(f"{settings.__name__}.{name} has no plain default")
    return field.default


VALUE_NAMES = {
    "--has": "FAMILY", "--lacks": "FAMILY", "--family": "FAMILY", "--min-score": "X", "--path-glob": "PATTERN",
    "--output": "FILE", "--plot": "FILE", "--from-json": "FILE", "--soundfont": "FILE",
    "--models": "DIR", "--out": "DIR", "--data": "DIR", "--valid": "DIR", "--reference": "DIR", "--salamander": "DIR",
    "--settle-seconds": "SECONDS", "--file-timeout": "SECONDS", "--hop": "SECONDS", "--max-onset": "SECONDS",
    "--scheduler": "URL", "--leave-out": "SOURCE", "--model-version": "VERSION", "--level-weights": "WEIGHTS",
    "--trunk-filters": "FILTERS", "--gain-db": "LOW,HIGH", "--pitch-range": "LOW,HIGH",
}  # fmt: skip
"""The name ``--help`` gives the value of an option whose own name does not say it (``--has FAMILY``),
by the option's long name (it means one thing in every command); see `value_name`."""


def value_name(param) -> str:
    """What a command's ``--help`` writes for the value of ``param`` (a click parameter): nothing for a
    flag (``--dry-run``); an argument's name (``PATHS...`` when it takes several); an option's value as
    `VALUE_NAMES` names it, else ``N`` for a whole number, ``X`` for another number, else the option's
    long name (``--db DB``, ``--format FORMAT``)."""
    if getattr(param, "param_type_name", "") == "argument":
        return param.name.upper() + ("..." if param.nargs != 1 else "")
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    long = max(param.opts, key=len)
    if long in VALUE_NAMES:
        return VALUE_NAMES[long]
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)  # (typer 0.29's)
    kind = getattr(annotation, "__name__", None) or getattr(getattr(param, "type", None), "name", "")  # (click's)
    if kind in ("int", "integer"):
        return "N"
    if kind == "float":
        return "X"
    return long.lstrip("-").replace("-", "_").upper()


def name_values(command) -> None:
    """Give every parameter of ``command`` and of its subcommands, the help option included, the name
    its ``--help`` writes for its value (`value_name`), where its declaration gives none
    (``typer.Option(metavar=...)``). typer 0.29 writes the value's Python type instead, each flag's
    too (``--dry-run <bool>``, ``--has <list[str]>``, ``--db <str>``), and the arguments of a usage
    line braced (``{paths}...``); typer 0.12's click writes ``--db TEXT``, ``--jobs INTEGER``."""
    commands = [command]
    while commands:
        command = commands.pop()
        commands += getattr(command, "commands", {}).values()
        for param in command.params:
            _name_value(param)
        if not getattr(command, "values_named", False):
            command.get_help_option = functools.partial(_named_help, made=command.get_help_option)
            command.values_named = True


def _name_value(param):
    """``param`` with its value named (`name_values`)."""
    if param.metavar is None:
        param.metavar = value_name(param)
    if getattr(param, "param_type_name", "") == "argument":
        # (typer 0.29 writes an argument's type beside its name, and braces it in the usage line)
        param.display_type_rich = lambda ctx: None
        param.get_usage_pieces = lambda ctx: [param.metavar if param.required else f"[{param.metavar}]"]
    return param


def _named_help(ctx, *, made):
    """The command's help option (made for each run), its value named by `_name_value` (none: a flag)."""
    option = made(ctx)
    return option if option is None else _name_value(option)

"""Command-line interface: one thin module per command group, registered on one typer app.

Importing a command module must stay cheap (no TensorFlow): heavy imports happen inside commands.
A run imports only the module of the command it invokes (`only_invoked`); ``tagger.cli.app``, the
application as Python code uses it (``from tagger.cli import app``), has every command.
"""

from __future__ import annotations

from tagger.cli.app import app as _app

# (the module `tagger.cli.app`, which its first import bound here: `app` is `__getattr__`'s; bound by
# none where this runs again, `importlib.reload`, or in a copy outside sys.modules, as typer's own CLI
# runs it: ``typer tagger.cli utils docs``)
globals().pop("app", None)

COMMANDS = {
    "train": "train", "combine": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "scan": "scan",
    "query": "library", "show": "library", "stats": "library", "errors": "library",
    "tag": "tags", "untag": "tags",
    "dataset": "dataset",
    "db": "db",
}  # fmt: skip
"""Every command and command group by its name on the command line, and the module of `tagger.cli`
that registers it on the app, in the order ``tagger --help`` lists them (typer lists the groups
after the commands). A new command gets its line here (`tests/test_imports.py` checks that the
two agree)."""


def __getattr__(name: str):
    """``tagger.cli.app``: the typer app with every command registered."""
    if name == "app":
        _register()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, ``app`` among them (typer's own CLI looks for it there)."""
    return sorted({*globals(), "app"})


def _register() -> None:
    """Register every command, in the order of `COMMANDS` whichever command module was imported first."""
    for module in dict.fromkeys(COMMANDS.values()):
        _load(module)
    order = list(COMMANDS)
    for registered in (_app.registered_commands, _app.registered_groups):
        registered.sort(key=lambda info: order.index(info.name) if info.name in order else len(order))


def _load(module: str) -> None:
    """Import the command module ``tagger.cli.MODULE``, which registers its commands (none where it is missing)."""
    import importlib

    try:
        importlib.import_module(f"tagger.cli.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tagger.cli.{module}":
            raise


def _main_sqlite_call() -> int | None:
    """`tagger.db.sqlite_calls.main_call`, imported once a stop signal asks for it."""
    from tagger.db.sqlite_calls import main_call

    return main_call()


def main() -> None:
    import sys

    from tagger.cli.app import standard_streams
    from tagger.signals import watch_stop_signals

    standard_streams()
    watch_stop_signals(_main_sqlite_call)  # (a second Ctrl-C stops a command that waits for a locked SQLite database)
    only_invoked(_app, sys.argv[1:])()


def only_invoked(typer_app, args: list[str]):
    """``typer_app`` with only the command or command group that ``args`` (a command line after the
    program's name) invoke, when they name one of its own (its options are flags: the first word
    that is not an option names the command); else ``typer_app`` itself, every command registered.
    Only that command's module is imported (`COMMANDS`: the others' imports and definitions took
    about 9 ms of a ``tagger query`` that uses none of them), and typer builds a click command of
    it alone (of every command registered, with every option: 13-15 ms). The help, usage lines and
    errors of the command invoked are the same (none names the other commands); an unknown
    command, or none, still gets the whole app (its list of commands, ``--help``)."""
    import copy

    at = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    word = args[at] if at is not None and set(args[:at]) <= _plain_root_flags(typer_app) else None
    if word in COMMANDS:  # (``tagger --help query``: None, the root's help lists every command)
        _load(COMMANDS[word])  # (which registers it)
    commands = [c for c in typer_app.registered_commands if c.name is not None and c.name == word]
    groups = [g for g in typer_app.registered_groups if g.name is not None and g.name == word]
    if not commands and not groups:
        _register()
        return typer_app
    trimmed = copy.copy(typer_app)
    trimmed.registered_commands, trimmed.registered_groups = commands, groups
    return trimmed


def _plain_root_flags(typer_app) -> set[str]:
    """The names of the root options that may stand before the command in a trimmed app (`only_invoked`):
    the flags that are not eager. An eager one (``--help``, ``--version``) acts on the root before the
    command is read: ``tagger --help query`` prints the root's help, whose list of commands must be whole."""
    import inspect

    import typer.models

    callback = typer_app.registered_callback.callback if typer_app.registered_callback else None
    if callback is None:
        return set()
    return {name for p in inspect.signature(callback).parameters.values()
            if isinstance(p.default, typer.models.OptionInfo) and not p.default.is_eager
            for name in p.default.param_decls}  # fmt: skip


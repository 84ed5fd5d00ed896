"""Command-line interface: one thin module per command group, registered on one typer app.

Importing a command module must stay cheap (no TensorFlow): heavy imports happen inside commands.
"""

from __future__ import annotations

from tagger.cli.app import app

COMMAND_MODULES = ("dataset", "train", "predict", "evaluate", "scan", "library", "db", "tags")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"tagger.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tagger.cli.{name}":
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
    _register()
    only_invoked(app, sys.argv[1:])()


def only_invoked(typer_app, args: list[str]):
    """``typer_app`` with only the command or command group that ``args`` (a command line after the
    program's name) invoke, when they name one of its own (its options are flags: the first word
    that is not an option names the command); else ``typer_app`` itself. typer builds a click
    command of every command registered, with every option, on each run: 13-15 ms of a
    ``tagger query`` that uses one of them. The help, usage lines and errors of the command
    invoked are the same (none names the other commands); an unknown command, or none, still gets
    the whole app (its list of commands, ``--help``)."""
    import copy

    at = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if at is None or not set(args[:at]) <= _plain_root_flags(typer_app):
        return typer_app  # (``tagger --help query``: the root's help, listing every command)
    word = args[at]
    commands = [c for c in typer_app.registered_commands if c.name is not None and c.name == word]
    groups = [g for g in typer_app.registered_groups if g.name is not None and g.name == word]
    if not commands and not groups:
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


_register()

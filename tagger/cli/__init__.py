"""Command-line interface: one thin module per command group, registered on one typer app.

Importing a command module must stay cheap (no TensorFlow): heavy imports happen inside commands.
"""

from __future__ import annotations

from tagger.cli.app import app

COMMAND_MODULES = ("dataset", "train", "predict", "evaluate", "library", "tags")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"tagger.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tagger.cli.{name}":
                raise


def main() -> None:
    from tagger.cli.app import standard_streams

    standard_streams()
    _register()
    app()


_register()

"""Every command's ``--help`` names the values a user types as the README's synopses do
(``--has FAMILY``, ``--jobs N``, ``PATHS...``), writes nothing after a flag, and no Python type.

typer 0.29 wrote each value's Python type instead: ``--dry-run <bool>`` (as if the flag took a
value), ``--has <list[str]>``, ``--db <str>``, ``--models <Path>``, and ``{paths}...`` in the usage
line (`tagger.cli.options.name_values`)."""

from __future__ import annotations

import re

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from tagger.cli import app


def _commands(command, words=()):
    yield words
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*words, name))


COMMANDS = list(_commands(typer.main.get_command(app)))
PYTHON_TYPES = re.compile(r"<(bool|str|int|float|Path|list\[[^>]*\])>|\{[A-Za-z_]+\}")


def _help(words, option="--help", *, rich=True, monkeypatch=None):
    if not rich:
        monkeypatch.setattr(typer.core, "HAS_RICH", False)
    r = CliRunner().invoke(app, [*words, option], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, (words, r.output)
    return " ".join(r.output.replace("│", " ").split())  # (rich's table, one line)


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_every_command_help_names_values_not_python_types(rich, monkeypatch):
    assert {"scan", "query", "train", "dataset", "db"} <= {w[0] for w in COMMANDS if w}
    assert ("dataset", "mix") in COMMANDS and ("db", "prune") in COMMANDS
    for words in COMMANDS:
        for option in ("--help", "-h"):
            text = _help(words, option, rich=rich, monkeypatch=monkeypatch)
            assert "Usage:" in text and not PYTHON_TYPES.search(text), (words, option, text)


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_help_names_values_as_the_readme(rich, monkeypatch):
    sep = "( -[a-z])? " if rich else " "  # (rich: the option, its short name, then its value)
    expected = {
        ("scan",): ["scan [OPTIONS] PATHS...", "--db DB", "--models DIR", "--jobs N", "--settle-seconds SECONDS",
                    "--file-timeout SECONDS", "--scheduler URL"],
        ("query",): ["--has FAMILY", "--lacks FAMILY", "--min-score X", "--path-glob PATTERN", "--format FORMAT",
                     "--output FILE", "--db DB"],
        ("tag",): ["tag [OPTIONS] [PATHS...]", "--from-json FILE"],
        ("show",): ["show [OPTIONS] PATH", "--plot FILE"],
        ("combine",): ["combine [OPTIONS] MEMBERS...", "--out DIR"],
        ("dataset", "mix"): ["mix [OPTIONS] ROOT OUT", "--per-level N", "--pitch-range LOW,HIGH"],
        ("train",): ["--family FAMILY", "--learning-rate X"],
    }  # fmt: skip
    for words, names in expected.items():
        text = _help(words, rich=rich, monkeypatch=monkeypatch)
        for name in names:
            option, _, value = name.partition(" ")
            pattern = re.escape(name) if "[" in name or not option.startswith("-") else (
                re.escape(option) + sep + re.escape(value))
            assert re.search(pattern, text), (words, name, text)
    # a flag: nothing after it (the next word is its help, or the flag's other name)
    text = _help(("scan",), rich=rich, monkeypatch=monkeypatch)
    assert re.search(r"--dry-run Report the tag changes", text), text
    assert re.search(r"--write-tags( /)? --no-write-tags Write", text), text
    assert re.search(r"(-h, --help|--help -h) Show this message", text), text


def test_an_error_names_the_argument_as_the_usage_line():
    r = CliRunner().invoke(app, ["scan"])
    assert r.exit_code == 2 and "Missing argument 'PATHS...'" in r.output, r.output

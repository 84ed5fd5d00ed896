"""Every command's ``--help`` names the values a user types as the README's synopses do
(``--has FAMILY``, ``--jobs N``, ``PATHS...``), writes nothing after a flag, and no Python type.

typer 0.29 wrote each value's Python type instead: ``--dry-run <bool>`` (as if the flag took a
value), ``--has <list[str]>``, ``--db <str>``, ``--models <Path>``, and ``{paths}...`` in the usage
line (`tagger.cli.options.name_values`)."""

from __future__ import annotations

import re
from pathlib import Path

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


README = Path(__file__).resolve().parent.parent / "README.md"
DOCS = sorted((README.parent / "docs").glob("*.md"))
"""The rest of the documentation, whose command lines are checked as README's are."""


def _options(words) -> set[str]:
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


def _readme_command_lines() -> list[str]:
    """Each ``tagger ...`` command line the README and the files of ``docs/`` show: the lines of
    their code blocks (``\\`` continuations joined) and their one-line code spans."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in (README, *DOCS))
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S))
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()] + spans
    return [part.split("#")[0] for line in lines for part in re.split(r"&&|;|\|", line)]


def test_readme_command_lines_use_options_their_command_has():
    """Every ``--option`` a README command line gives ``tagger CMD`` is one of that command's (found
    auditing the README: none was wrong, and this keeps it so as options are renamed)."""
    commands = {w for w in COMMANDS if w}
    removed = {(("train",), "--augment")}  # (History: an option tried and reverted, said so there)
    seen, wrong = 0, []
    for line in _readme_command_lines():
        for m in re.finditer(r"(?:^|[\s/(])tagger ([a-z]+)( [a-z]+)?((?: \S+)*)", line):
            words = (m.group(1), *(m.group(2).split() if m.group(2) else ()))
            rest = m.group(3)
            if words not in commands:
                words, rest = words[:1], f"{m.group(2) or ''}{rest}"
                if words not in commands:
                    continue
            seen += 1
            wrong += [(words, o, line) for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest)
                      if o != "--help" and o not in _options(words) and (words, o) not in removed]
    assert seen > 50 and not wrong, wrong


def test_readme_scan_synopsis_names_every_scan_option():
    text = README.read_text(encoding="utf-8")
    synopsis = re.search(r"\*\*`tagger scan PATH\.\.\. (.*?)`\*\*", text).group(1)
    named = set(re.findall(r"--[a-z][a-z0-9-]*", synopsis))
    assert _options(("scan",)) - {"--help", "--write-tags"} <= named, _options(("scan",)) - named


def test_every_command_is_one_line_in_its_groups_help():
    """A group's ``--help`` lists each command by its docstring's first paragraph, line breaks kept:
    untag's and db prune's ran on over two lines, broken mid-sentence at any width."""
    for words in COMMANDS:
        r = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert r.exit_code == 0, (words, r.output)
        box = r.output.split("Commands", 1)[1].split("╰", 1)[0] if "Commands" in r.output else ""
        listed = [line for line in box.splitlines()[1:] if line.startswith("│")]
        assert listed or not box, (words, r.output)
        wrapped = [line for line in listed if line[2:3] == " "]  # (a continuation: spaces, no name)
        assert not wrapped, (words, wrapped)


def test_documentation_links_lead_to_files_and_every_part_is_linked():
    """README lists the files of ``docs/`` (the sections moved there, which README's summaries link
    to): every relative link of README and of those files names a file that is there, and README
    links every one of them."""
    linked, broken = set(), []
    for path in (README, *DOCS):
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("#"):
                continue
            file = (path.parent / target.split("#")[0]).resolve()
            if path == README:
                linked.add(file)
            if not file.is_file():
                broken.append((path.name, target))
    assert DOCS and not broken, broken
    assert {d.resolve() for d in DOCS} <= linked, sorted(d.name for d in DOCS if d.resolve() not in linked)

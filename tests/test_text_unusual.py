"""Text that is valid but unusual: names copied from macOS (Unicode NFD, where a user types NFC),
names that are not UTF-8, an output whose encoding is not UTF-8, tag values written by other
programs. Each answer is the right one, or one line saying why there is none; never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tone_signal, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger.cli import app
from tagger.db.session import open_database
from tagger.library.scan import scan

ROOT = Path(__file__).resolve().parent.parent


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


ARTIST, TITLE = "Beyoncé", "Café.flac"
"""A folder and a file named in NFD on disk, as files copied from macOS are; typed in NFC."""


def _library(root: Path, db_path: Path) -> dict[str, str]:
    """A scanned library: {key: stored path} of a flute in an NFD folder and file, a bass with a
    Japanese name, and a file whose name is not UTF-8 (stored as an error)."""
    (root / nfd(ARTIST)).mkdir(parents=True)
    paths = {
        "nfd": str(write_audio(root / nfd(ARTIST) / nfd(TITLE), tone_signal([FREQ["flute"]], seconds=2.0))),
        "japanese": str(write_audio(root / "ネコ.flac", tone_signal([FREQ["bass"]], seconds=2.0))),
    }
    latin1 = os.fsencode(root) + b"/caf\xe9.flac"
    with open(paths["japanese"], "rb") as src, open(latin1, "wb") as dst:
        dst.write(src.read())
    paths["latin1"] = os.fsdecode(latin1)
    database = open_database(db_path)
    try:
        scan([root], db=database, analyser=FakeAnalyser(), jobs=0)
    finally:
        database.close()
    return paths


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    base = tmp_path_factory.mktemp("text")
    paths = _library(base / "music", base / "lib.db")
    return str(base / "lib.db"), paths


def run(*args: str):
    return CliRunner().invoke(app, list(args))


# -- 1: Unicode normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize("form", [nfc, nfd])
def test_path_glob_matches_a_name_typed_in_either_unicode_form(library, form):
    """A name stored in NFD (copied from macOS) was not found by a pattern typed in NFC."""
    db, paths = library
    r = run("query", "--db", db, "--path-glob", f"*/{form(ARTIST)}/*", "-f", "paths")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [paths["nfd"]]  # the name as stored, which opens the file
    r = run("query", "--db", db, "--path-glob", f"*{form('é')}.flac", "-f", "paths")
    assert r.output.splitlines() == [paths["nfd"]]


def test_path_glob_is_case_sensitive_and_its_help_says_so(library):
    db, paths = library
    r = run("query", "--db", db, "--path-glob", f"*/{nfc(ARTIST).lower()}/*", "-f", "paths")
    assert r.exit_code == 0 and r.output == ""
    r = run("query", "--db", db, "--path-glob", "*/[Bb]eyonc*/*", "-f", "paths")
    assert r.output.splitlines() == [paths["nfd"]]
    help_text = " ".join(run("query", "--help").output.split())
    assert "case-sensitive" in help_text and "NFC" in help_text

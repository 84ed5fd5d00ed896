"""Defects found by attacking the tool (2026-12-06), each kept fixed here: a damaged or busy
database is one line naming it, a `tag` run whose database cannot record a rewrite stops before
the next file, and a FIFO given as a file is refused instead of read for ever. (The ID3 frames a
tag write used to rename or drop are in `test_tags_id3_versions.py`.)"""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from conftest import tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.cli import app
from tagger.db.session import open_database
from tagger.errors import AudioReadError
from tagger.fingerprint import content_hash, fingerprint
from tagger.library.scan import scan


def _library(tmp_path, names=("a.flac",)):
    music = tmp_path / "music"
    files = [write_audio(music / name, tone_signal([110.0 * (i + 1)], seconds=4.0)) for i, name in enumerate(names)]
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # analysed, no tags written
    db.close()
    return music, files, dbfile


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback: our exit
    lines = [line for line in result.output.splitlines() if line.startswith("tagger: error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_damaged_database_page_is_one_line_naming_it_for_every_command(tmp_path):
    music, (song,), dbfile = _library(tmp_path)
    con = sqlite3.connect(dbfile)
    con.execute("pragma wal_checkpoint(TRUNCATE)")
    page_size = con.execute("pragma page_size").fetchone()[0]
    root = con.execute("select rootpage from sqlite_master where name = 'tracks'").fetchone()[0]
    con.close()
    with open(dbfile, "r+b") as f:  # overwrite the tracks table's root page header
        f.seek(page_size * (root - 1) + 8)
        f.write(b"\xff" * 200)
    runner = CliRunner()
    for command in (["stats"], ["query", "--has", "bass"], ["show", str(song)], ["tag", str(music)]):
        result = runner.invoke(app, [*command, "--db", str(dbfile), "--settle-seconds", "0"] if command[0] == "tag"
                               else [*command, "--db", str(dbfile)])  # fmt: skip
        _one_line_error(result, str(dbfile), "malformed")
    assert not tags.read_instruments(song).tagged


def test_tag_stops_at_the_first_rewrite_the_database_cannot_record(tmp_path, monkeypatch):
    from tagger.db import writes

    music, files, dbfile = _library(tmp_path, names=("a.flac", "b.flac", "c.flac"))

    def locked(*args, **kwargs):
        raise OperationalError("UPDATE tracks", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(writes, "record_rewrite", locked)
    result = CliRunner().invoke(app, ["tag", str(music), "--db", str(dbfile), "--settle-seconds", "0"])
    _one_line_error(result, str(dbfile), "database is locked", "are written but not recorded", "left alone")
    tagged = [f for f in files if tags.read_instruments(f).tagged]
    assert len(tagged) == 1  # the file whose rewrite could not be recorded; no other was touched
    assert f"tagged {tagged[0]}" in result.output
    assert f"the tags of {tagged[0]} are written" in result.output


def _returns_within(seconds: float, func, *args):
    """``func(*args)``'s result or exception, failing the test if it blocks longer than ``seconds``."""
    out: dict = {}

    def run():
        try:
            out["value"] = func(*args)
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{func.__name__} blocked on {args}"
    return out


@pytest.mark.parametrize("read", [content_hash, fingerprint])
def test_a_fifo_is_refused_not_read_for_ever(tmp_path, read):
    fifo = tmp_path / "song.mp3"
    os.mkfifo(fifo)
    out = _returns_within(10, read, fifo)
    assert isinstance(out.get("error"), AudioReadError) and f"{fifo}: not a regular file" in str(out["error"])
    song = write_audio(tmp_path / "real.flac", tone_signal([440.0], seconds=1.0))
    assert len(_returns_within(10, read, song)["value"]) == 32  # a regular file still reads

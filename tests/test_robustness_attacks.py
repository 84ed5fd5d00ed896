"""Defects found by attacking the tool (2026-12-06), each kept fixed here, one test each: the
database (damaged, busy, mistyped, not a database, an unmounted drive's empty folder, `prune`),
what a scan records after its own tag writes (a change right after, scores of `tag --scores`,
new audio where the fingerprint does not read), paths (FIFOs, links to folders and to files,
escape sequences in names and tags), and inputs that must be one line (tampered manifests, the
ONNX cache, environment and options, prediction rows, NSynth folders, chained Ogg files). The ID3
frames a tag write used to rename or drop are in `test_tags_id3_versions.py`."""

from __future__ import annotations

import os
import re
import sqlite3
import threading

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from conftest import UNTAG_KNOWN, tone_signal, write_audio
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


@pytest.mark.parametrize("record", ["record_rewrite", "record_pending"])
def test_tag_stops_at_the_first_rewrite_the_database_cannot_record(tmp_path, monkeypatch, record):
    # record_pending: the copy's hash, recorded before the rename (the next `tag` recognises the file)
    from tagger.db import writes

    music, files, dbfile = _library(tmp_path, names=("a.flac", "b.flac", "c.flac"))

    def locked(*args, **kwargs):
        raise OperationalError("UPDATE tracks", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(writes, record, locked)
    result = CliRunner().invoke(app, ["tag", str(music), "--db", str(dbfile), "--settle-seconds", "0"])
    tagged = [f for f in files if tags.read_instruments(f).tagged]
    if record == "record_pending":
        _one_line_error(result, str(dbfile), "database is locked", f"{files[0]} and the files after it were left alone")
        assert tagged == [] and not list(music.glob(".*tagger-tmp"))
        return
    _one_line_error(result, str(dbfile), "database is locked", "are written but not recorded", "left alone")
    assert len(tagged) == 1  # the file whose rewrite could not be recorded; no other was touched
    assert f"tagged {tagged[0]}" in result.output
    assert f"the tags of {tagged[0]} are written but not recorded (the next `tagger tag` records them)" in result.output
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["tag", str(music), "--db", str(dbfile), "--settle-seconds", "0"])
    assert result.exit_code == 0, result.output  # the first file recognised, the others tagged
    assert all(tags.read_instruments(f).tagged for f in files)


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


def _scan(music, dbfile):
    db = open_database(dbfile)
    try:
        return scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        db.close()


def _stored(dbfile) -> dict[str, tuple[str, list[str]]]:
    """path -> (status, instruments) of every track."""
    from sqlalchemy import select

    from tagger.db import models as M
    from tagger.db.queries import track_detail

    db = open_database(dbfile)
    try:
        with db.session() as s:
            paths = list(s.scalars(select(M.Track.path)))
            return {p: (d.status, list(d.instruments)) for p in paths for d in [track_detail(s, path=p)]}
    finally:
        db.close()


def test_new_audio_where_the_fingerprint_does_not_read_is_analysed_again(tmp_path):
    from tagger.fingerprint import CHUNK

    music = tmp_path / "music"
    song = write_audio(music / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    other = write_audio(tmp_path / "other.wav", tone_signal([4000.0], seconds=40.0))  # string, same size
    assert _scan(music, tmp_path / "lib.db").scanned == 1
    assert _stored(tmp_path / "lib.db")[str(song)][1] == ["bass"]
    data, new = bytearray(song.read_bytes()), other.read_bytes()
    size, mid = len(data), len(data) // 2 - CHUNK // 2
    for start, end in ((CHUNK, mid), (mid + CHUNK, size - CHUNK)):  # all but the three fingerprinted chunks
        data[start:end] = new[start:end]
    song.write_bytes(bytes(data))  # same size, same fingerprint, another mtime
    again = _scan(music, tmp_path / "lib.db")
    assert (again.scanned, again.skipped) == (1, 0)
    assert "string" in _stored(tmp_path / "lib.db")[str(song)][1]


def test_an_empty_library_folder_keeps_its_tracks_and_prune_keeps_files_that_are_back(tmp_path):
    from tagger.db.queries import prune_missing

    drive = tmp_path / "drive"
    files = [write_audio(drive / name, tone_signal([110.0], seconds=4.0)) for name in ("a.flac", "b.flac")]
    dbfile = tmp_path / "lib.db"
    _scan(drive, dbfile)
    away = tmp_path / "away"
    away.mkdir()
    for f in files:  # the drive unmounted: its mount point is an empty folder
        f.rename(away / f.name)
    result = CliRunner().invoke(app, ["scan", str(drive), "--db", str(dbfile), "--jobs", "0", "--no-write-tags"])
    assert result.exit_code == 0, result.output
    assert f"{drive} is empty (a drive not mounted?): its 2 track(s) were kept" in result.output
    assert "0 newly missing" in result.output
    assert {status for status, _ in _stored(dbfile).values()} == {"ok"}

    write_audio(drive / "c.wav", tone_signal([1000.0], seconds=4.0))  # not empty: the gone files go missing
    assert _scan(drive, dbfile).missing == 2
    (away / "a.flac").rename(files[0])  # one comes back before the prune
    db = open_database(dbfile)
    try:
        with db.session() as s:
            pruned = prune_missing(s)
    finally:
        db.close()
    assert (pruned.removed, pruned.kept) == ([str(files[1])], [str(files[0])])
    assert _stored(dbfile)[str(files[0])] == ("missing", ["bass"])  # kept, results and all, until a scan


def test_tag_finds_the_tracks_of_a_folder_given_through_a_link_and_says_when_none_match(tmp_path):
    real = tmp_path / "real"
    song = write_audio(real / "t.flac", tone_signal([110.0], seconds=4.0))
    link = tmp_path / "link"
    link.symlink_to(real)
    _scan(link, tmp_path / "lib.db")  # stored under the real path
    runner = CliRunner()
    for given in (link, link / "t.flac"):
        result = runner.invoke(app, ["tag", str(given), "--db", str(tmp_path / "lib.db"), "--settle-seconds", "0",
                                     "--dry-run"])  # fmt: skip
        assert result.exit_code == 0 and f"would tag {song}" in result.output, result.output
    outside = write_audio(tmp_path / "outside.flac", tone_signal([110.0], seconds=4.0))
    result = runner.invoke(app, ["tag", str(outside), "--db", str(tmp_path / "lib.db"), "--settle-seconds", "0"])
    _one_line_error(result, "no analysed track matches under", str(outside))
    assert not tags.read_instruments(outside).tagged
    write_audio(real / "new.flac", tone_signal([110.0], seconds=4.0))
    unknown = link / "new.flac"  # not analysed, given through the link: named once, as given
    result = runner.invoke(app, ["tag", str(unknown), "--db", str(tmp_path / "lib.db"), "--settle-seconds", "0"])
    _one_line_error(result, f"no analysed track matches under {unknown}: scan it first")


def test_a_file_of_something_else_given_as_the_database_is_left_untouched(tmp_path):
    for content in (b"\n", b"my notes\n"):
        notes = tmp_path / "notes.txt"
        notes.write_bytes(content)
        for command in (["stats"], ["query"], ["db", "prune"]):
            result = CliRunner().invoke(app, [*command, "--db", str(notes)])
            _one_line_error(result, f"{notes} is not a SQLite database")
        assert notes.read_bytes() == content


def test_a_link_to_a_file_of_the_library_is_one_track_and_no_false_failure(tmp_path):
    from tagger.library.scan import tag_writer

    music = tmp_path / "music"
    song = write_audio(music / "x.flac", tone_signal([110.0], seconds=4.0))
    (music / "alias.flac").symlink_to("x.flac")
    hidden = write_audio(music / ".hidden" / "h.flac", tone_signal([1000.0], seconds=4.0))
    (music / "h-link.flac").symlink_to(hidden)  # the only way the walk reaches this file
    db = open_database(tmp_path / "lib.db")
    try:
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    finally:
        db.close()
    assert (summary.found, summary.scanned, summary.failed, summary.tag_errors) == (2, 2, 0, 0), summary.errors
    assert sorted(_stored(tmp_path / "lib.db")) == [str(music / "h-link.flac"), str(song)]
    assert tags.read_instruments(song).instruments == ["bass"]


def test_a_track_stored_under_a_link_to_a_file_the_scan_sees_is_merged_into_the_file(tmp_path):
    # Stored as a track of its own while the walk did not reach the file (an older tagger did so
    # for every link to a library file): once the file is scanned under its own name, the link's
    # row is a duplicate (was: kept for ever, status ok, counted twice in stats and queries). The
    # file new to the database, the link's row takes its name (results kept); the file changed
    # since, analysed as new, the link's row is deleted.
    music = tmp_path / "music"
    hidden = write_audio(music / ".hidden" / "h.flac", tone_signal([110.0], seconds=4.0))
    changed = write_audio(music / ".hidden" / "c.flac", tone_signal([110.0], seconds=5.0))
    other = write_audio(music / "other.flac", tone_signal([1000.0], seconds=4.0))
    (music / "alias.flac").symlink_to(hidden)
    (music / "calias.flac").symlink_to(changed)
    (music / "kept.flac").symlink_to(other)  # a link whose file is scanned: never stored, nothing to merge
    dbfile = tmp_path / "lib.db"
    _scan(music, dbfile)
    assert sorted(_stored(dbfile)) == [str(music / "alias.flac"), str(music / "calias.flac"), str(other)]
    write_audio(changed, tone_signal([4000.0], seconds=6.0))
    result = CliRunner().invoke(app, ["scan", str(music), "--db", str(dbfile), "--jobs", "0", "--no-write-tags",
                                      "--include-hidden", "--settle-seconds", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{music / 'alias.flac'} leads through a symbolic link to {hidden}: its track is stored under" in result.output
    assert f"{music / 'calias.flac'} is a link to a file of the library: its duplicate track was removed" in result.output
    assert "0 newly missing" in result.output
    assert sorted(_stored(dbfile)) == [str(changed), str(hidden), str(other)]
    assert {status for status, _ in _stored(dbfile).values()} == {"ok"}


def test_a_folder_is_found_under_its_own_name_even_when_a_link_to_it_sorts_first(tmp_path):
    # `alink -> real`: the walk met the link first and stored the file as alink/x.flac, which
    # `show real/x.flac` and `tag real` then could not find, and a scan of `real` stored it twice.
    from tagger.crawl import crawl

    music = tmp_path / "music"
    song = write_audio(music / "real" / "x.flac", tone_signal([110.0], seconds=4.0))
    (music / "alink").symlink_to("real")
    hidden = write_audio(music / ".stash" / "y.flac", tone_signal([1000.0], seconds=4.0))
    (music / "hlink").symlink_to(".stash")  # the only way the walk reaches this folder: through the link
    (music / "real" / "back").symlink_to("../alink")  # a link to a link of the same folder
    assert [str(p) for p in crawl([music])] == [str(song), str(music / "hlink" / "y.flac")]
    dbfile = tmp_path / "lib.db"
    _scan(music, dbfile)
    result = CliRunner().invoke(app, ["show", str(song), "--db", str(dbfile)])
    assert result.exit_code == 0, result.output
    _scan(music / "real", dbfile)
    assert sorted(_stored(dbfile)) == [str(music / "hlink" / "y.flac"), str(song)]
    assert hidden.exists()
    con = sqlite3.connect(dbfile)  # as an older tagger stored it: under the link's name
    con.execute("update tracks set path = ? where path = ?", (str(music / "alink" / "x.flac"), str(song)))
    con.commit()
    con.close()
    summary = _scan(music, dbfile)
    assert (summary.relinked, summary.merged) == ([(str(music / "alink" / "x.flac"), str(song))], [])
    assert sorted(_stored(dbfile)) == [str(music / "hlink" / "y.flac"), str(song)]


def test_db_prune_waits_for_no_scan_it_refuses_while_one_holds_the_database(tmp_path):
    # A prune beside a scan read the missing tracks' ids, waited for the scan's write lock, then
    # deleted by id the tracks the scan had just restored as moved: their results lost.
    from tagger.db.lock import scan_lock

    music = tmp_path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=4.0))
    dbfile = tmp_path / "lib.db"
    _scan(music, dbfile)
    song.rename(tmp_path / "away.flac")
    write_audio(music / "b.flac", tone_signal([1000.0], seconds=4.0))
    _scan(music, dbfile)
    assert _stored(dbfile)[str(song)][0] == "missing"
    with scan_lock(f"sqlite:///{dbfile}"):  # a scan running
        result = CliRunner().invoke(app, ["db", "prune", "--db", str(dbfile)])
    _one_line_error(result, "another tagger scan or prune", "then prune again")
    assert str(song) in _stored(dbfile)  # nothing deleted
    result = CliRunner().invoke(app, ["db", "prune", "--db", str(dbfile)])
    assert result.exit_code == 0 and "1 missing track(s) removed" in result.output, result.output
    assert str(song) not in _stored(dbfile)


def test_escape_sequences_in_file_names_and_tags_never_reach_the_terminal(tmp_path):
    music = tmp_path / "music"
    title = "\x1b]0;OWNED\x07"
    song = write_audio(music / f"\x1b[31mred\x1b[0m{title}.flac", tone_signal([110.0], seconds=4.0))
    (music / f"{title}bad.mp3").write_bytes(b"not audio " * 100)
    dbfile = str(tmp_path / "lib.db")
    runner = CliRunner()
    outputs = [runner.invoke(app, ["scan", str(music), "--db", dbfile, "--jobs", "0", "--no-write-tags"]).output]
    for command in (["errors"], ["query"], ["show", str(song)]):
        outputs.append(runner.invoke(app, [*command, "--db", dbfile]).output)
    import mutagen

    audio = mutagen.File(str(song))
    audio["INSTRUMENTS"] = [f"{title}brass"]
    audio["INSTRUMENTS_MODEL"] = ["m-1"]  # (tagger's fields only with the model beside them)
    audio.save()
    os.utime(song, (1, 1))  # an old file: past the settle time
    outputs.append(runner.invoke(app, ["untag", *UNTAG_KNOWN, str(music), "--dry-run"]).output)
    for out in outputs:
        assert "\x1b" not in out and "\x07" not in out, out
    assert "\\x1b[31mred" in outputs[2] and "\\x1b]0;OWNED\\x07" in outputs[1], outputs
    assert "\\x1b]0;owned\\x07brass" in outputs[-1], outputs[-1]  # (family names are read lower-cased)


def test_a_mistyped_database_path_is_an_error_not_a_new_empty_library(tmp_path):
    typo = tmp_path / "typo" / "libary.db"
    for command in (["stats"], ["query"], ["errors"], ["show", str(tmp_path / "x.flac")], ["tag"], ["db", "prune"]):
        result = CliRunner().invoke(app, [*command, "--db", str(typo)])
        _one_line_error(result, f"no library database at {typo}: is the name mistyped? `tagger scan FOLDER --db {typo}` "
                                "creates it")  # fmt: skip
        assert "or give --db" not in result.output  # (said to one who had given it, found in the walk-through)
    assert not (tmp_path / "typo").exists()


def test_the_missing_database_error_says_where_its_name_came_from(tmp_path, monkeypatch):
    """Without --db, the hint to give it stays; $TAGGER_DB is named when it names the database."""
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "env.db"))
    _one_line_error(CliRunner().invoke(app, ["stats"]), f"no library database at {tmp_path / 'env.db'}: $TAGGER_DB names "
                                                        "it; `tagger scan FOLDER` creates it (or give --db)")  # fmt: skip
    monkeypatch.delenv("TAGGER_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    _one_line_error(CliRunner().invoke(app, ["stats"]), f"no library database at {tmp_path / 'xdg' / 'tagger' / 'library.db'}: "
                                                        "`tagger scan FOLDER` creates it (or give --db)")  # fmt: skip


def test_a_change_right_after_a_scans_tag_write_is_not_recorded_as_taggers_own(tmp_path):
    from tagger.library.scan import tag_writer

    music = tmp_path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=4.0))
    writer = tag_writer(model_version="fake-1")

    def another_program_right_after(path, result, expected):
        change = writer(path, result, expected)
        tags.remove_instruments(path)  # e.g. `tagger untag` or a tag editor, in the same instant
        return change

    db = open_database(tmp_path / "lib.db")
    try:
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=another_program_right_after)
        assert not tags.read_instruments(song).tagged
        again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    finally:
        db.close()
    assert again.tags_written == 1  # the database did not claim tags the file lacked
    assert tags.read_instruments(song).instruments == ["bass"]


def test_scores_written_by_tag_survive_the_next_plain_scan(tmp_path):
    from tagger.library.scan import tag_writer

    music, (song,), dbfile = _library(tmp_path)
    result = CliRunner().invoke(app, ["tag", str(music), "--db", str(dbfile), "--scores", "--settle-seconds", "0"])
    assert result.exit_code == 0, result.output
    assert tags.read_instruments(song).scores
    db = open_database(dbfile)
    try:
        later = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    finally:
        db.close()
    assert (later.skipped, later.tags_written) == (1, 0)
    assert tags.read_instruments(song).scores  # not rewritten without them


@pytest.mark.parametrize("change, says", [
    (lambda m: [], "a manifest is a JSON object, not list"),
    (lambda m: None, "a manifest is a JSON object, not NoneType"),
    (lambda m: {**m, "classifiers": []}, "classifiers must be an object"),
    (lambda m: {**m, "aggregation": "x"}, "aggregation must be an object"),
    (lambda m: {**m, "aggregation": {**m.get("aggregation", {}), "quantile": 2}}, "aggregation quantile is 2"),
    (lambda m: {**m, "aggregation": {"hop_seconds": "x"}}, "aggregation hop_seconds is 'x'"),
    (lambda m: {**m, "aggregation": {"hop_seconds": 0}}, "aggregation hop_seconds is 0"),
    (lambda m: {**m, "families": None}, "families must be a list of names, not None"),
    (lambda m: {**m, "families": []}, "families must be a list of names, not \\[\\]"),
    (lambda m: {**m, "families": ["bass", ["flute"]]}, "families must be a list of names"),
    (lambda m: {**m, "families": ["bass", "bass"]}, "lists a family twice"),
    (lambda m: {**m, "features": 1}, "features must be an object, not 1"),
    (lambda m: {**m, "version": {}}, "version must be a name, not {}"),
])  # fmt: skip
def test_a_tampered_manifest_is_refused_at_load_in_one_line(tmp_path, change, says):
    import json
    from pathlib import Path

    from tagger.errors import ModelError
    from tagger.model.ensemble import read_manifest

    shipped = json.loads((Path(__file__).resolve().parents[1] / "models" / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(change(shipped)))
    with pytest.raises(ModelError, match=f"{tmp_path / 'manifest.json'}: .*{says}"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("key, value", [("n_mels", "64"), ("n_mels", 0), ("fmin", None), ("fmin", 9000.0),
                                        ("top_db", 0), ("top_db", [80]), ("harmonic", "yes")])  # fmt: skip
def test_feature_settings_no_tagger_computes_are_refused_at_load(tmp_path, key, value):
    # Before: the model loaded, then every file failed part-way through the scan with a TypeError
    # (n_mels '64', fmin None), or silently scored NaN features (top_db 0), or took "yes" for True.
    import json
    from pathlib import Path

    from tagger.errors import ModelError
    from tagger.model.ensemble import Ensemble

    shipped = json.loads((Path(__file__).resolve().parents[1] / "models" / "manifest.json").read_text())
    shipped["features"][key] = value
    (tmp_path / "manifest.json").write_text(json.dumps(shipped))
    with pytest.raises(ModelError, match=f"{tmp_path / 'manifest.json'}: feature setting {key}="):
        Ensemble.load(tmp_path)


def test_a_manifest_number_too_long_to_read_is_invalid_json(tmp_path):
    from tagger.errors import ModelError
    from tagger.model.ensemble import read_manifest

    (tmp_path / "manifest.json").write_text('{"format": 1, "version": ' + "9" * 5000 + "}")
    with pytest.raises(ModelError, match="invalid manifest JSON"):  # was: a ValueError's traceback
        read_manifest(tmp_path)


def test_a_deeply_nested_manifest_is_invalid_json_not_a_recursion_error(tmp_path):
    from tagger.errors import ModelError
    from tagger.model.ensemble import read_manifest

    (tmp_path / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelError, match="invalid manifest JSON"):
        read_manifest(tmp_path)


def test_a_bad_thread_count_in_the_environment_is_named(monkeypatch):
    from tagger.errors import UserError
    from tagger.model import backends as B

    monkeypatch.setenv(B.THREADS_ENV, "abc")
    with pytest.raises(UserError, match=r"\$TAGGER_INFERENCE_THREADS is 'abc'"):
        B.default_threads()


@pytest.mark.parametrize("hop", ["0", "-1", "nan", "inf"])
def test_a_nonsense_hop_is_the_options_error_not_the_files(tmp_path, fake_models, hop):
    song = write_audio(tmp_path / "a.flac", tone_signal([110.0], seconds=4.0))
    result = CliRunner().invoke(app, ["predict", str(song), "--hop", hop])
    _one_line_error(result, f"--hop {float(hop):g}")
    assert str(song) not in result.output


def test_a_prediction_row_whose_instruments_are_not_names_is_named_by_file_and_line(tmp_path):
    song = write_audio(tmp_path / "a.flac", tone_signal([110.0], seconds=4.0))
    rows = tmp_path / "found.jsonl"
    rows.write_text('{"path": "%s", "instruments": [5], "model_version": "m-1"}\n' % song)
    result = CliRunner().invoke(app, ["tag", "--from-json", str(rows), "--settle-seconds", "0"])
    _one_line_error(result, f"{rows} line 1", "'instruments' is a list of family names, got [5]")
    assert not tags.read_instruments(song).tagged


def _nsynth(root, records: dict, split=None):
    import json

    (root / "audio").mkdir(parents=True)
    (root / "examples.json").write_text(json.dumps(records))
    if split is not None:
        (root / "split.json").write_bytes(split)
    return root


GOOD_NOTE = {"pitch": 60, "velocity": 100, "instrument_family_str": "flute", "instrument_source_str": "acoustic",
             "instrument_str": "flute_acoustic_000", "note_str": "flute_acoustic_000-060-100"}  # fmt: skip


@pytest.mark.parametrize("change, says", [
    ({"pitch": "abc"}, "pitch is 'abc', expected a whole number"),
    ({"pitch": None}, "pitch is None, expected a whole number"),
    ({"program": "x"}, "program is 'x', expected a whole number"),
    ({"note_str": 12}, "note_str is 12, expected a name"),
    ({"instrument_str": ["a"]}, "instrument_str is ['a'], expected a name"),
    ({"instrument_family_str": None}, "instrument_family_str is None, expected a name"),
])  # fmt: skip
def test_a_malformed_nsynth_record_is_one_line_naming_examples_json(tmp_path, change, says):
    root = _nsynth(tmp_path / "nsynth-test", {"k": {**GOOD_NOTE, **change}})
    result = CliRunner().invoke(app, ["dataset", "split", str(root)])
    _one_line_error(result, f"{root / 'examples.json'}: note 'k': {says}")


def test_a_record_that_is_no_object_and_a_broken_split_file_are_named(tmp_path):
    from tagger.data.nsynth import NoteDataset, load_note_audio
    from tagger.errors import DatasetError

    with pytest.raises(DatasetError, match="note 'k' is int, not a note record"):
        NoteDataset.load(_nsynth(tmp_path / "a", {"k": 5}))
    for split, says in ((b'{"instruments": ["a"]}', "invalid split file"), (b"\xff\xfe", "invalid split file"),
                        (b'{"instruments": {"flute_acoustic_000": 3}}', "is in split 3")):  # fmt: skip
        root = _nsynth(tmp_path / f"b{len(split)}{split[:1].hex()}", {"k": GOOD_NOTE}, split=split)
        with pytest.raises(DatasetError, match=f"split.json: {says}" if "split 3" not in says else says):
            NoteDataset.load(root)
    notes = NoteDataset.load(_nsynth(tmp_path / "c", {"k": GOOD_NOTE})).notes
    with pytest.raises(DatasetError, match="flute_acoustic_000-060-100.wav: note audio file is missing"):
        load_note_audio(notes)


@pytest.mark.parametrize("ext", ["ogg", "opus"])
def test_a_chained_ogg_file_is_analysed_whole_not_its_first_stream(tmp_path, ext):
    import subprocess

    from tagger import audio

    parts = []
    for i, (freq, seconds, rate) in enumerate(((440, 1, 44100), (660, 12, 48000))):
        part = tmp_path / f"part{i}.{ext}"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}:r={rate}",
                        str(part)], check=True)  # fmt: skip
        parts.append(part)
    chained = tmp_path / f"chained.{ext}"
    chained.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    assert audio.info(parts[1]).decoder == "soundfile"  # one stream: libsndfile, as before
    assert audio.info(chained).decoder == "ffmpeg"
    assert abs(len(audio.load(chained)) / 16_000 - 13.0) < 0.1  # both streams (libsndfile stopped after 1 s)


@pytest.mark.parametrize("codecs", [("libvorbis", "libopus", "libvorbis"), ("libopus", "libvorbis"), ("libvorbis", "flac")])
def test_a_chained_ogg_file_of_two_codecs_is_an_error_not_its_first_part(tmp_path, db, codecs):
    """A chained Ogg whose streams change codec (Vorbis, then Opus): ffmpeg 5.1 stops where the codec
    changes without a word, and 3 s of a 9 s file were analysed and stored as the whole track; it is
    an error naming the codecs now. A chain of one codec is still decoded whole."""
    import subprocess

    from tagger import audio
    from tagger.errors import AudioReadError
    from tagger.library.scan import scan

    music = tmp_path / "music"
    music.mkdir()
    data = b""
    for i, codec in enumerate(codecs):
        part = tmp_path / f"part{i}.ogg"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=f={440 * (i + 1)}:d=3:r=48000",
                        "-c:a", codec, str(part)], check=True)  # fmt: skip
        data += part.read_bytes()
    chained = music / "chained.ogg"
    chained.write_bytes(data)
    names = {"libvorbis": "Vorbis", "libopus": "Opus", "flac": "FLAC"}
    says = f"a chained Ogg file of streams of different codecs ({names[codecs[0]]}, then {names[codecs[1]]}): "
    with pytest.raises(AudioReadError, match=re.escape(says)):
        audio.info(chained)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 1 and says in str(summary.errors)
    again, one = tmp_path / "again.ogg", tmp_path / "one.ogg"  # (of its own serial number: a chain of one codec)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=f=330:d=3:r=48000", "-c:a", codecs[0],
                    str(again)], check=True)  # fmt: skip
    one.write_bytes((tmp_path / "part0.ogg").read_bytes() + again.read_bytes())
    assert abs(len(audio.load(one)) / 16_000 - 6.0) < 0.1


def test_an_unknown_family_in_a_prediction_row_is_named_by_file_and_line(tmp_path):
    song = write_audio(tmp_path / "a.flac", tone_signal([110.0], seconds=4.0))
    rows = tmp_path / "found.jsonl"
    rows.write_text('\n{"path": "%s", "instruments": ["kazoo"], "model_version": "m-1"}\n' % song)
    result = CliRunner().invoke(app, ["tag", "--from-json", str(rows), "--settle-seconds", "0"])
    _one_line_error(result, f"{rows} line 2: {song}: unknown instrument family 'kazoo'")
    assert not tags.read_instruments(song).tagged

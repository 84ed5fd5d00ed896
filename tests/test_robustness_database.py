"""Defects found by attacking the library database (2026-12-06), each kept fixed here: another
program's database, an empty file, a folder or a path that is not UTF-8 given as the database, a
full disk while a scan writes tags, and a database inside the folder being scanned."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from conftest import library_of_a_newer_tagger, tone_signal, write_audio
from test_robustness_attacks import _library, _one_line_error
from tagger.cli import app
from tagger.db.filter import TrackFilter
from tagger.db.migrate import upgrade
from tagger.db.urls import DatabaseError


def _commands(music, song):
    """Every command that opens the library database, with its arguments."""
    return [["stats"], ["query"], ["show", str(song)], ["errors"], ["db", "prune"],
            ["tag", str(music), "--settle-seconds", "0"], ["scan", str(music), "--jobs", "0"], ["db", "upgrade"]]  # fmt: skip


def _other_program(path, *, wal: bool = False, alembic: bool = False) -> bytes:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    con.execute("INSERT INTO contacts VALUES ('Ann', '555')")
    if alembic:  # another program migrated by Alembic, at a revision of its own
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        con.execute("INSERT INTO alembic_version VALUES ('3f2a9c')")
    con.commit()
    con.close()
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["plain", "wal", "alembic"])
def test_another_programs_database_is_refused_by_every_command_and_left_untouched(tmp_path, fake_models, kind):
    # was: every command migrated it (our tables added among the program's, in WAL mode from then
    # on), and an Alembic database of another program was called "made by a newer tagger"
    music, (song,), _ = _library(tmp_path)
    other = tmp_path / "contacts.db"
    content = _other_program(other, wal=kind == "wal", alembic=kind == "alembic")
    for command in _commands(music, song):
        result = CliRunner().invoke(app, [*command, "--db", str(other)])
        _one_line_error(result, f"{other} is not a tagger library database", "contacts", "left untouched")
        assert other.read_bytes() == content, command
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("contacts")) == ["contacts.db"], command


def test_another_programs_database_is_refused_before_a_migration_on_any_server(tmp_path):
    # the same check where the database is not a SQLite file we can look into first (PostgreSQL)
    path = tmp_path / "contacts.db"
    _other_program(path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseError, match=r"is not a tagger library database \(it holds the table\(s\) contacts"):
            upgrade(engine)
    finally:
        engine.dispose()
    con = sqlite3.connect(path)
    assert [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["contacts"]
    con.close()


def test_an_empty_file_is_no_library_for_the_commands_that_only_use_one(tmp_path, fake_models):
    # was: `stats`, `query`, `tag`, `db prune` ... migrated it into a new, empty library
    music, (song,), _ = _library(tmp_path)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for command in _commands(music, song)[:-2]:
        result = CliRunner().invoke(app, [*command, "--db", str(empty)])
        _one_line_error(result, f"no library database at {empty} (an empty file)")
        assert empty.read_bytes() == b"", command
    result = CliRunner().invoke(app, ["scan", str(music), "--jobs", "0", "--no-write-tags", "--db", str(empty)])
    assert result.exit_code == 0, result.output  # scan makes its library in it, as in a new file
    assert CliRunner().invoke(app, ["query", "--format", "paths", "--db", str(empty)]).output == f"{song}\n"


def test_a_folder_or_a_path_that_is_not_utf8_as_the_database_is_one_line(tmp_path, fake_models):
    # was: "unable to open database file"; and a traceback for a name that is not UTF-8, after
    # an empty database had been made there
    music, (song,), _ = _library(tmp_path)
    folder = tmp_path / "dbs"
    folder.mkdir()
    for command in _commands(music, song):
        _one_line_error(CliRunner().invoke(app, [*command, "--db", str(folder)]), f"{folder} is a folder")
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.db")
    for command in _commands(music, song):
        result = CliRunner().invoke(app, [*command, "--db", odd])
        _one_line_error(result, "caf\\xe9.db: the database path is not UTF-8")
    assert os.listdir(folder) == []


def _made_beside(path) -> list[str]:
    """The files SQLite or tagger would make beside the database ``path`` that are there."""
    return [name for name in (f"{path}-journal", f"{path}-wal", f"{path}-shm", f"{path}.lock") if os.path.lexists(name)]


def test_a_device_or_a_fifo_as_the_database_is_refused_and_left_untouched(tmp_path, fake_models):
    """`--db /dev/null` (or `TAGGER_DB` naming it): every command failed with "cannot migrate the
    database sqlite:////dev/null: disk I/O error", having made a `/dev/null-journal` (as root, in
    /dev); a FIFO likewise. Refused in one line now, nothing made beside it."""
    music, (song,), _ = _library(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for db, kind in (("/dev/null", "a character device"), (str(fifo), "a FIFO (named pipe)")):
        before = _made_beside(db)
        for command in _commands(music, song):
            result = CliRunner().invoke(app, [*command, "--db", db])
            _one_line_error(result, f"{db} is {kind}, not a database file; left untouched")
        assert _made_beside(db) == before


def test_a_sqlite_uri_as_the_database_gets_the_checks_of_the_file_it_names(tmp_path, fake_models, monkeypatch):
    """`--db 'sqlite:///file:/dev/null?uri=true'` skipped every check of the file (`sqlite_file` gave
    no file for a `file:` URI): it failed with "disk I/O error" having made `/dev/null-journal`, and
    another program's database named by a URI was not refused as one (the reviewer's cases). The
    checks, the scan lock and the files a scan leaves out see the file SQLite opens now."""
    from pathlib import Path

    from tagger.db.lock import database_files, lock_path
    from tagger.db.urls import sqlite_file

    music, (song,), dbfile = _library(tmp_path)
    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    other = tmp_path / "other program.db"
    content = _other_program(other)
    cases = [(f"sqlite:///file:{fifo}?uri=true", f"{fifo} is a FIFO (named pipe), not a database file; left untouched"),
             ("sqlite:///file:other%20program.db?mode=ro&uri=true", "other program.db is not a tagger library database"),
             (f"sqlite:///file://localhost{other}?uri=true", f"{other} is not a tagger library database")]  # fmt: skip
    if os.path.exists("/dev/null"):
        cases.append(("sqlite:///file:/dev/null?uri=true", "/dev/null is a character device, not a database file"))
    for url, message in cases:
        before = _made_beside(sqlite_file(url))
        for command in _commands(music, song):
            result = CliRunner().invoke(app, [*command, "--db", url])
            _one_line_error(result, message)
        assert _made_beside(sqlite_file(url)) == before
    assert other.read_bytes() == content and _made_beside(other) == []
    # the library itself, named by a URI: read, its scan lock and companions beside it
    url = f"sqlite:///file:{dbfile}?uri=true"
    result = CliRunner().invoke(app, ["query", "--db", url, "--format", "paths"])
    assert result.exit_code == 0 and result.output == f"{song}\n", result.output
    assert lock_path(url) == Path(f"{os.path.realpath(dbfile)}.lock") and str(os.path.realpath(dbfile)) in database_files(url)
    # without uri=true SQLite opens the name as it is, "file:" and all; memory and temporary names are no file
    assert sqlite_file("sqlite:///file:lib.db") == Path("file:lib.db")
    for url in ("sqlite:///file::memory:?uri=true", "sqlite:///file:lib.db?mode=memory&uri=true", "sqlite:///file:?uri=true"):
        assert sqlite_file(url) is None and lock_path(url) is None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None,
                    reason="needs root, losetup and mkfs.ext4")  # fmt: skip
def test_a_scan_never_writes_its_database_over_a_disk_partition(tmp_path, fake_models):
    """`tagger scan --db /dev/sdb1` (a slip of the tab key, a `TAGGER_DB` left naming a drive) wrote a
    SQLite database over the partition: SQLite opens a device as a file, the first 1,024 bytes of an
    ext4 file system are zeros, which it took for a new database, and its pages went over the
    superblock (`e2fsck`: "Bad magic number in super-block"), with `-wal`, `-shm` and `.lock` files
    made in /dev. Found with an ext4 image on a loop device. Refused now, the device untouched."""
    music, (song,), _ = _library(tmp_path)
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    before = image.read_bytes()
    made = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"no loop device: {made.stderr.strip()}")
    device = made.stdout.strip()
    try:
        for command in (["scan", str(music), "--jobs", "0"], ["db", "upgrade"], ["query"]):
            result = CliRunner().invoke(app, [*command, "--db", device])
            _one_line_error(result, f"{device} is a block device (a disk or a partition), not a database file")
        assert _made_beside(device) == []
    finally:
        for name in _made_beside(device):  # (what the old code left in /dev)
            os.unlink(name)
        subprocess.run(["losetup", "-d", device], check=True)
    assert image.read_bytes() == before


@pytest.mark.parametrize("name", ["my?lib.db", "50%41.db", "a#b%3F.db"])
def test_a_database_file_name_holding_url_characters_is_the_file_named(tmp_path, fake_models, monkeypatch, name):
    """A plain path given as `--db` went into a SQLAlchemy URL as it was: a `?` began the URL's
    options, so `--db 'my?lib.db'` stored the library in a file named `my`, and `%41` was decoded,
    `--db 50%41.db` making `50A.db` (found trying odd characters in `--db`). The file named is the
    database now, read-only too (a `file:` URI, where SQLite reads `?`, `#` and `%` likewise)."""
    from pathlib import Path

    from tagger.db import engine as E

    music, (song,), _ = _library(tmp_path)
    folder = tmp_path / "dbs"
    folder.mkdir()
    db = folder / name
    result = CliRunner().invoke(app, ["scan", str(music), "--jobs", "0", "--no-write-tags", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert db.is_file() and all(entry.startswith(name) for entry in os.listdir(folder)), os.listdir(folder)
    result = CliRunner().invoke(app, ["query", "--db", str(db), "--format", "paths"])
    assert result.exit_code == 0 and result.output == f"{song}\n", result.output
    # opened read-only (a folder this user cannot write: as root, said so here)
    monkeypatch.setattr(E, "read_only_sqlite_file", lambda database: Path(database))
    result = CliRunner().invoke(app, ["query", "--db", str(db), "--format", "paths"])
    assert result.exit_code == 0 and result.output == f"{song}\n", result.output
    result = CliRunner().invoke(app, ["scan", str(music), "--jobs", "0", "--db", str(db)])
    _one_line_error(result, f"the database {db} cannot be written")
    assert all(entry.startswith(name) for entry in os.listdir(folder)), os.listdir(folder)


def test_a_scan_whose_commits_fail_never_leaves_tags_for_results_it_did_not_store(tmp_path, monkeypatch):
    # A full disk (or a lock held past the wait) from the 4th commit on (the 1st ends the write
    # before the plan, the 2nd the plan's). Was: the tracks of the open batch were tagged before
    # their commit, so the files held results the database lacked.
    from sqlalchemy.exc import OperationalError

    from conftest import track_instruments
    from library_fakes import FREQ, FakeAnalyser
    from tagger import tags
    from tagger.db.scan_writer import ScanWriter
    from tagger.db.session import open_database
    from tagger.library.scan import scan, tag_writer

    music = tmp_path / "music"
    files = [write_audio(music / f"t{i:02}.wav", tone_signal([FREQ["bass"] + 7 * i], seconds=4.0)) for i in range(12)]
    commit = ScanWriter._commit
    calls = []

    def full(self):
        calls.append(1)
        if len(calls) > 3:
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database or disk is full"))
        commit(self)

    monkeypatch.setattr(ScanWriter, "_commit", full)
    db = open_database(tmp_path / "lib.db")
    hook = tag_writer(model_version="fake-1", settle_seconds=0.0)
    try:
        with pytest.raises(DatabaseError, match="database or disk is full; everything stored before is kept"):
            scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=hook, commit_every=5)
        stored = track_instruments(db)
        tagged = {str(f): tags.read_instruments(f) for f in files if tags.read_instruments(f).tagged}
        assert tagged, "the scan tagged no file before the disk filled: the test proves nothing"
        assert all(str(f) in stored and stored[str(f)] == list(t.instruments) for f, t in tagged.items()), (tagged, stored)
        monkeypatch.undo()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=hook)  # resumes
        assert summary.failed == 0 and summary.scanned + summary.skipped == len(files)
        assert all(tags.read_instruments(f).instruments == ["bass"] for f in files)
        assert all(v == ["bass"] for v in track_instruments(db).values()) and len(track_instruments(db)) == len(files)
    finally:
        db.close()


@pytest.mark.parametrize("name", ["library.flac", "sub/library.db"])
def test_a_database_inside_the_scanned_folder_is_not_scanned(tmp_path, name):
    # was: a database named like a song was analysed (an error row for it), its -wal and lock with it
    from conftest import track_rows
    from library_fakes import FakeAnalyser
    from tagger.db.session import open_database
    from tagger.library.scan import scan, tag_writer

    music = tmp_path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=4.0))
    dbfile = music / name
    dbfile.parent.mkdir(exist_ok=True)
    db = open_database(dbfile)
    try:
        for _ in range(2):
            summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
            assert (summary.found, summary.failed) == (1, 0), summary.errors
            assert set(track_rows(db)) == {str(song)}
    finally:
        db.close()
    con = sqlite3.connect(dbfile)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


def test_a_database_without_tables_is_no_library_either(tmp_path):
    # (what a scan killed before its first migration commits, or `sqlite3 x.db 'PRAGMA journal_mode=WAL'`, leaves)
    path = tmp_path / "lib.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    content = path.read_bytes()
    assert content
    result = CliRunner().invoke(app, ["stats", "--db", str(path)])
    _one_line_error(result, f"no library database at {path} (a database without tables)")
    assert path.read_bytes() == content


def test_a_newer_taggers_database_opened_read_only_is_called_that(tmp_path):
    # was: "is in a read-only folder and at schema revision 0099; this tagger needs 0007: open it
    # once where it can be written" (where it would then be refused as a newer tagger's)
    path = library_of_a_newer_tagger(tmp_path / "lib.db")
    content = path.read_bytes()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"  # (what a read-only folder or mount gets; root writes anywhere)
    result = CliRunner().invoke(app, ["stats", "--db", read_only])
    _one_line_error(result, "has schema revision 0099, which tagger", "made by a newer tagger")
    assert "read-only folder" not in result.output and path.read_bytes() == content


def test_a_library_copied_without_its_schema_revision_is_refused_as_such(tmp_path):
    # (a migration would fail half-way on "table tracks already exists"; it is not another program's)
    music, _, dbfile = _library(tmp_path)
    con = sqlite3.connect(dbfile)
    con.execute("DROP TABLE alembic_version")
    con.commit()
    con.close()
    content = dbfile.read_bytes()
    result = CliRunner().invoke(app, ["stats", "--db", str(dbfile)])
    _one_line_error(result, f"{dbfile} is not a tagger library database (it holds tagger's tables but no schema revision")
    assert dbfile.read_bytes() == content


def test_a_database_locked_by_another_program_is_waited_for_once(tmp_path, monkeypatch):
    # was: the cheap "at the latest revision?" check took the lock error for "ask Alembic", which
    # waited for the lock a second time: `tagger stats` said so after twice the busy timeout
    from tagger.db import engine as E
    from tagger.db import session as S

    music, _, dbfile = _library(tmp_path)
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.2)
    asked = []
    monkeypatch.setattr(S, "current_revision", lambda engine: asked.append(engine) or None)
    holder = sqlite3.connect(dbfile, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE tracks SET error = NULL")  # holds the write lock, readers shut out too
        with pytest.raises(DatabaseError, match=f"cannot open the database sqlite:///{dbfile}: database is locked"):
            S.open_database(dbfile, create=False)
        assert asked == []  # the lock was waited for once, by the first look
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    S.open_database(dbfile, create=False).close()


@pytest.mark.parametrize("how", ["deleted", "replaced", "moved"])
def test_a_database_deleted_or_replaced_during_a_scan_stops_it(tmp_path, how):
    # was: SQLite wrote on into the file that went, and the scan reported every file scanned and
    # tagged, exit 0, with the results in no database
    from library_fakes import FakeAnalyser
    from tagger import tags
    from tagger.db.session import open_database
    from tagger.library.scan import scan, tag_writer

    music = tmp_path / "music"
    files = [write_audio(music / f"t{i}.flac", tone_signal([110.0 + 20 * i], seconds=4.0)) for i in range(4)]
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    write = tag_writer(model_version="fake-1")

    def hook(path, result, analysed):
        change = write(path, result, analysed)
        if path == str(files[0]) and how == "moved":  # (its folder renamed: the log and all went with it)
            tmp_path.joinpath("db").mkdir()
            for name in ("lib.db", "lib.db-wal", "lib.db-shm"):
                (tmp_path / name).rename(tmp_path / "db" / name)
        elif path == str(files[0]):
            for name in ("lib.db", "lib.db-wal", "lib.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)
            if how == "replaced":  # (a backup restored over it)
                open_database(dbfile).close()
        return change

    try:
        with pytest.raises(DatabaseError) as stopped:
            scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=hook)
    finally:
        db.close()
    # was, of a database moved away whole: "its results since then are in no database"
    assert str(stopped.value).startswith(f"the database {dbfile} was deleted, moved or replaced while the scan wrote "
                                         "it: stopped; what it stored went with the file that was there (a file "
                                         "moved away holds it)"), str(stopped.value)  # fmt: skip
    assert [tags.read_instruments(f).tagged for f in files] == [True, False, False, False]
    if how == "moved":  # and so it does
        moved = open_database(tmp_path / "db" / "lib.db", create=False)
        with moved.session() as s:
            assert s.connection().exec_driver_sql("SELECT count(*) FROM tracks").scalar() == 1
        moved.close()


@pytest.mark.parametrize("how", ["deleted", "replaced", "moved"])
@pytest.mark.parametrize("when", ["between files", "before the rename", "after the rename"])
def test_a_database_deleted_or_replaced_during_tag_stops_it(tmp_path, monkeypatch, how, when):
    # was: `tagger tag` recorded each write on into the file that went and said `3 tagged`, exit 0,
    # with the records in no database at that path (found attacking tagger with outside edits: a
    # library.db removed, or restored from a backup, while `tag` ran); a scan stopped there already
    from library_fakes import FakeAnalyser
    from tagger import tags
    from tagger.db.session import open_database
    from tagger.library.scan import scan
    from tagger.tags import filesystem, writing

    music = tmp_path / "music"
    files = [write_audio(music / f"t{i}.flac", tone_signal([110.0 + 20 * i], seconds=3.0)) for i in range(3)]
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    db.close()

    def go():
        if how == "moved":
            dbfile.rename(tmp_path / "elsewhere.db")
            return
        for name in ("lib.db", "lib.db-wal", "lib.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        if how == "replaced":  # (a backup restored over it)
            open_database(dbfile).close()

    def at(module, name):  # `go` inside module.name, at the write of t1 (its second call)
        original, calls = getattr(module, name), []

        def hooked(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:
                go()
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, hooked)

    if when == "before the rename":
        at(writing, "_verify")  # (the copy verified)
    elif when == "after the rename":
        at(filesystem, "fsync_dir")  # (the folder flushed after the rename)
    run = tags.tag_from_database(open_database(dbfile, create=False), where=TrackFilter.of(paths=[music]))
    assert next(run).written  # t0, recorded
    if when == "between files":
        go()
    written = when == "after the rename"
    if written:
        assert next(run).written  # t1 written, then the run stops before recording it
    with pytest.raises(DatabaseError) as stopped:
        next(run)
    said = (f"the tags of {files[1]} are written but not recorded" if written
            else f"{files[1]} and the files after it were left alone")  # fmt: skip
    assert f"the database {dbfile} was deleted, moved or replaced while `tagger tag` recorded" in str(stopped.value)
    assert said in str(stopped.value), str(stopped.value)
    assert [tags.read_instruments(f).tagged for f in files] == [True, written, False]
    assert not list(music.glob(".*tagger-tmp"))


@pytest.mark.parametrize("kind", ["notes", "link", "fifo"])
def test_a_users_own_file_where_the_scan_lock_goes_is_never_overwritten(tmp_path, fake_models, kind):
    # was: `scan` and `db prune` opened `<db>.lock` whatever it was, truncated it and wrote their PID
    # into it (through a symbolic link too): the user's file of that name was lost
    music, (song,), _ = _library(tmp_path)
    dbfile, lock, notes = tmp_path / "mine.db", tmp_path / "mine.db.lock", tmp_path / "notes.txt"
    notes.write_text("my notes, not a lock\n")
    if kind == "notes":
        lock.write_text("12 bars of blues\n")
    elif kind == "link":
        lock.symlink_to(notes)
    else:
        os.mkfifo(lock)
    why = {"notes": "it holds 17 bytes of other data", "link": "it is a symbolic link", "fifo": "it is not a regular file"}
    for command in (["scan", str(music), "--jobs", "0", "--no-write-tags"], ["db", "prune"]):
        result = CliRunner().invoke(app, [*command, "--db", str(dbfile)])
        _one_line_error(result, f"{lock} exists and is not tagger's scan lock ({why[kind]})", "left untouched")
    assert notes.read_text() == "my notes, not a lock\n"
    if kind == "notes":
        assert lock.read_text() == "12 bars of blues\n"
    lock.unlink()
    result = CliRunner().invoke(app, ["scan", str(music), "--jobs", "0", "--no-write-tags", "--db", str(dbfile)])
    assert result.exit_code == 0, result.output
    assert lock.read_text().strip().isdigit()  # tagger's own lock, holding a PID, is taken again
    result = CliRunner().invoke(app, ["db", "prune", "--db", str(dbfile)])
    assert result.exit_code == 0, result.output


def _as_another_user(run):
    """``run()`` in a child process of user nobody (65534), as a user who does not own the files
    (this is root: root writes anything); here when this is not root. Returns what it returns. (The
    child is forked, not started: it could not read this Python where it is installed.)"""
    import pickle
    import traceback

    if os.geteuid() != 0:
        return run()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = pickle.dumps(("ok", run()))
        except BaseException:  # noqa: BLE001 - handed to the parent
            out, status = pickle.dumps(("failed", traceback.format_exc())), 1
        finally:
            try:
                with os.fdopen(write, "wb") as f:
                    f.write(out)
            finally:
                os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        kind, value = pickle.loads(f.read())
    os.waitpid(pid, 0)
    assert kind == "ok", value
    return value


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_read_only_database_answers_reads_and_refuses_writes_in_one_line(tmp_path, fake_models, where):
    # A database file of mode 0444, or in a folder of mode 0555, used by a user who does not own it.
    # Was: `scan` loaded its models, made its lock file beside the database, then stopped at its
    # first write on SQLite's "attempt to write a readonly database"; `tag` the same.
    import shutil
    import tempfile
    from pathlib import Path

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    home = Path(tempfile.mkdtemp(prefix="tagger-ro-"))  # (tmp_path is not open to other users)
    try:
        os.chmod(home, 0o755)
        music, (song,), dbfile = _library(home)
        reads = [["query"], ["query", "--format", "json"], ["show", str(song)], ["stats"], ["errors"]]
        writes = [["scan", str(music), "--jobs", "0"], ["db", "prune"], ["tag", str(music)]]
        # as the owner: the answers, and every command once (the child imports nothing it cannot read)
        copy = tmp_path / "copy.db"
        shutil.copy(dbfile, copy)
        for command in writes[:2] + [["tag", str(music), "--dry-run"]]:
            CliRunner().invoke(app, [*command, "--db", str(copy)])
        answers = [CliRunner().invoke(app, [*command, "--db", str(dbfile)]).output for command in reads]
        if os.geteuid() == 0:
            for name in [music, *music.iterdir()]:
                os.chown(name, 65534, 65534)  # the music is theirs: only the database stops them
        if where == "file":
            (home / "lib.db.lock").unlink()  # (was made again by the refused scan)
            os.chmod(dbfile, 0o444)
            os.chmod(home, 0o777)
        else:
            os.chmod(home, 0o555)
        before, content = sorted(os.listdir(home)), dbfile.read_bytes()

        def run_all():
            results = [CliRunner().invoke(app, [*c, "--db", str(dbfile)]) for c in reads + writes]
            return [(r.exit_code, r.output, repr(r.exception)) for r in results], sorted(os.listdir(home))

        results, after = _as_another_user(run_all)
        for command, answer, (code, output, _) in zip(reads, answers, results):
            assert code == 0 and output == answer, (command, output)
        for command, (code, output, exception) in zip(writes, results[len(reads) :]):
            lines = output.strip().splitlines()
            assert code == 1 and "SystemExit" in exception and len(lines) == 1, (command, output)
            assert lines[0].startswith(f"tagger: error: the database {dbfile} cannot be written ("), lines[0]
            assert f"`tagger {' '.join(command[:2]) if command[0] == 'db' else command[0]}` writes it and changed nothing" in lines[0]
            assert ("the file is read-only for this user (mode -r--r--r--)" if where == "file" else
                    f"its folder {home} is read-only for this user") in lines[0]  # fmt: skip
        assert after == before  # no -wal, -shm, -journal or lock file left behind
        assert dbfile.read_bytes() == content
    finally:
        os.chmod(home, 0o755)
        shutil.rmtree(home)


def test_a_scan_refuses_a_read_only_database_before_it_loads_its_models(tmp_path, monkeypatch):
    # was: the models were loaded (a few seconds for the real ones), then the scan refused
    from library_fakes import FakeAnalyser

    from tagger.model.ensemble import Ensemble

    music, _, dbfile = _library(tmp_path)
    loads = []
    monkeypatch.setattr(Ensemble, "load", classmethod(lambda cls, *a, **k: loads.append(a) or FakeAnalyser()))
    content = dbfile.read_bytes()
    read_only = f"sqlite:///file:{dbfile}?mode=ro&uri=true"
    result = CliRunner().invoke(app, ["scan", str(music), "--jobs", "0", "--db", read_only])
    _one_line_error(result, f"the database {dbfile} cannot be written", "`tagger scan` writes it and changed nothing")
    assert loads == [] and dbfile.read_bytes() == content


@pytest.mark.parametrize("why", ["immutable", "append-only", "mode=ro"])
def test_a_database_written_by_nobody_says_why_not_for_this_user(tmp_path, why):
    # was: an immutable file (chattr +i), which root cannot write either, of mode -rw-r--r--, was "the
    # file is read-only for this user (mode -rw-r--r--)", which its mode contradicted; a writable file
    # opened through a `mode=ro` URI was "it was opened read-only", naming no cause; an append-only
    # file (chattr +a), which `os.access` lets write but no one can open for writing in place, was
    # opened as a writable one: `db prune` and `untag` said nothing, a scan loaded its models and
    # stopped on SQLite's "attempt to write a readonly database"
    music, _, dbfile = _library(tmp_path)
    content = dbfile.read_bytes()
    db = f"sqlite:///file:{dbfile}?mode=ro&uri=true" if why == "mode=ro" else str(dbfile)
    flag = {"immutable": "i", "append-only": "a"}.get(why)
    if flag:
        if shutil.which("chattr") is None:
            pytest.skip("needs chattr")
        made = subprocess.run(["chattr", f"+{flag}", str(dbfile)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make an {why} file here: {made.stderr.strip()}")
    try:
        refused = CliRunner().invoke(app, ["db", "prune", "--db", db])
        noted = CliRunner().invoke(app, ["untag", str(music), "--db", db])
    finally:
        if flag:
            subprocess.run(["chattr", f"-{flag}", str(dbfile)], check=True)
    reason = {"immutable": "(the file is immutable (chattr +i))", "append-only": "(the file is append-only (chattr +a))",
              "mode=ro": "(its URL opens it read-only (mode=ro))"}[why]  # fmt: skip
    _one_line_error(refused, f"the database {dbfile} cannot be written {reason}: `tagger db prune` writes it")
    assert noted.exit_code == 0, noted.output
    assert f"tagger: note: the database {dbfile} cannot be written {reason}: this run's writes" in noted.output
    assert "for this user" not in refused.output + noted.output
    assert dbfile.read_bytes() == content


def test_a_database_refused_to_this_user_by_more_than_its_mode_says_so(tmp_path, monkeypatch):
    # an access control list or a security module refusing a file its mode lets this user write:
    # not "read-only for this user (mode -rw-r--r--)", which the mode contradicts
    from tagger.db import sqlite_files

    _, _, dbfile = _library(tmp_path)
    refused = os.access
    monkeypatch.setattr(sqlite_files.os, "access", lambda p, m, **k: os.fspath(p) != str(dbfile) and refused(p, m, **k))
    os.chmod(dbfile, 0o644)
    reason = sqlite_files.read_only_reason(dbfile)
    assert reason == ("the file may not be written by this user, though its mode (-rw-r--r--) allows it: an access "
                      "control list or a security policy (SELinux, AppArmor) refuses it"), reason  # fmt: skip


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_read_only_database_at_an_old_revision_names_what_is_read_only(where):
    # was: "is in a read-only folder" for a file of mode 0444 in a folder anyone may write
    import shutil
    import tempfile
    from pathlib import Path

    from tagger.db.session import open_database

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    home = Path(tempfile.mkdtemp(prefix="tagger-ro-"))  # (tmp_path is not open to other users)
    try:
        dbfile = home / "lib.db"
        library_of_a_newer_tagger(dbfile, revision="0008")  # (an older tagger's revision, as it happens)
        os.chmod(dbfile, 0o444 if where == "file" else 0o644)
        os.chmod(home, 0o777 if where == "file" else 0o555)

        def opened():
            try:
                open_database(dbfile).close()
            except DatabaseError as exc:
                return str(exc)

        message = _as_another_user(opened)
        assert message is not None and f"the database {dbfile} cannot be written (" in message, message
        assert ("(the file is read-only for this user (mode -r--r--r--))" if where == "file" else
                f"its folder {home} is read-only for this user") in message  # fmt: skip
        assert "at schema revision 0008; this tagger needs" in message
    finally:
        os.chmod(home, 0o755)
        shutil.rmtree(home)


def test_a_sqlite_url_of_a_name_beginning_with_a_tilde_is_refused_saying_how_to_write_it(tmp_path, fake_models, monkeypatch):
    """`--db sqlite:///~/lib.db`: SQLite opens a URL's name as written, `./~/lib.db` (a folder named
    `~` under the current one), while the checks before it read `$HOME/lib.db`; a scan failed with
    'unable to open database file' after those checks. Refused in one line naming both ways to write
    it, before anything is made; the plain path `~/lib.db` is expanded as ever."""
    music, (song,), _ = _library(tmp_path)
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    for command in (["scan", str(music), "--jobs", "0", "--no-write-tags"], ["query"]):
        result = CliRunner().invoke(app, [*command, "--db", "sqlite:///~/lib.db"])
        _one_line_error(result, "the database URL sqlite:///~/lib.db begins its file name with '~', which a URL does "
                                f"not expand (SQLite would open a folder named '~' under the current one): write the "
                                f"path in full, sqlite:///{home}/lib.db, or give the plain path, ~/lib.db")  # fmt: skip
    assert os.listdir(here) == [] and os.listdir(home) == []
    result = CliRunner().invoke(app, ["scan", str(music), "--jobs", "0", "--no-write-tags", "--db", "~/lib.db"])
    assert result.exit_code == 0 and (home / "lib.db").is_file(), result.output


def test_a_database_with_two_names_is_refused_by_every_command_that_writes_it(tmp_path, fake_models):
    """A database file hard-linked under a second name (`ln lib.db other/lib.db`, a `cp -al`
    snapshot of a home folder): SQLite keeps the write-ahead log beside the name it opens, and the
    scan lock was beside it too, so a scan through each name ran at once, each analysing every file,
    and each wrote its own log into the one database (SQLite's "How To Corrupt An SQLite Database
    File", 2.5): found by the red team running two scans, one by each name. Every command refuses
    it in one line, before it writes anything beside either name (one that this user can only read,
    which SQLite opens read-only and writes no log for, is still read)."""
    from library_fakes import FakeAnalyser

    from tagger.db.lock import scan_lock
    from tagger.db.session import open_database
    from tagger.db.urls import as_url
    from tagger.library.scan import scan

    music, (song,), dbfile = _library(tmp_path)
    second = tmp_path / "other" / "lib.db"
    second.parent.mkdir()
    os.link(dbfile, second)
    content = dbfile.read_bytes()
    with scan_lock(as_url(dbfile)):  # a scan through the first name is running
        with pytest.raises(DatabaseError, match=rf"the database {second} has 2 names \(hard links to one file\)"):
            scan([music], db=open_database(second), analyser=FakeAnalyser(), jobs=0)
    for command in _commands(music, song):  # (before: each ran, a scan by the second name beside the first)
        for name in (dbfile, second):
            result = CliRunner().invoke(app, [*command, "--db", str(name)])
            _one_line_error(result, f"the database {name} has 2 names", "left untouched: keep one name")
    assert dbfile.read_bytes() == content
    assert sorted(p.name for p in second.parent.iterdir()) == ["lib.db"]  # no -wal, -shm or .lock by it
    second.unlink()  # one name again: used as before
    result = CliRunner().invoke(app, ["query", "--db", str(dbfile), "--format", "paths"])
    assert result.exit_code == 0 and result.output.strip() == str(song.resolve()), result.output


def test_a_database_file_mounted_on_its_own_is_refused(tmp_path):
    """A database file bind-mounted over a name on its own (`-v /host/lib.db:/data/lib.db`, a
    container's single-file volume): SQLite's write-ahead log goes beside the name it opens, outside
    the mounted file, where the host's commands do not see it and a container's removal takes the
    transactions it holds. Refused in one line, nothing written beside it (was: used). (In a mount
    namespace of its own, which goes away with the process.)"""
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    _, _, dbfile = _library(tmp_path)
    mounted = tmp_path / "container" / "lib.db"
    mounted.parent.mkdir()
    mounted.touch()
    content = dbfile.read_bytes()
    script = ("import sys\nfrom tagger.db.session import open_database\nfrom tagger.db.urls import DatabaseError\n"
              "try:\n    open_database(sys.argv[1]).close()\nexcept DatabaseError as exc:\n    print(exc)\n")  # fmt: skip
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
                            str(dbfile), str(mounted), sys.executable, "-c", script, str(mounted)],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0 and "mount" in probe.stderr:
        pytest.skip(f"cannot make a bind mount here: {probe.stderr.strip()}")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(f"the database {mounted} is a file mounted there on its own (mount --bind, "), probe.stdout
    assert "left untouched: mount the folder holding it instead" in probe.stdout
    assert dbfile.read_bytes() == content and sorted(p.name for p in mounted.parent.iterdir()) == ["lib.db"]

"""The library database: schema only through Alembic migrations, no drift, upgrades keep data."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from conftest import library_of_a_newer_tagger
from old_databases import check_upgraded, expected_at_head, table_rows, write_database_at
from tagger.cli import app
from tagger.db import models as M
from tagger.db.migrate import current_revision, head_revision, migrations_dir, upgrade
from tagger.db.engine import make_engine
from tagger.db.session import open_database
from tagger.db.urls import DatabaseError, as_url, default_db_url


def test_migrations_folder_is_found_and_has_its_revisions():
    d = migrations_dir()
    assert (d / "env.py").is_file() and (d / "script.py.mako").is_file()
    assert len(list((d / "versions").glob("0*.py"))) >= 2
    assert head_revision() == HEAD


def test_migrated_schema_equals_the_orm_models(tmp_path):
    engine = make_engine(as_url(tmp_path / "lib.db"))
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), M.Base.metadata)
        assert diff == []
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    names = set(inspect(engine).get_table_names())
    assert {"tracks", "scans", "detections", "segments", "model_versions", "alembic_version"} <= names
    engine.dispose()


def test_upgrade_from_first_revision_keeps_data(tmp_path):
    engine = make_engine(as_url(tmp_path / "old.db"))
    upgrade(engine, revision="0001")
    assert current_revision(engine) == "0001"
    cols = {c["name"] for c in inspect(engine).get_columns("tracks")}
    assert "missing_since" not in cols
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO model_versions (id, version, manifest_hash, families, thresholds, aggregation, created_at) "
                 "VALUES (1, 'v1', 'h1', '[\"bass\"]', '{\"bass\": 0.5}', '{}', :now)"), {"now": now})  # fmt: skip
        for i, (path, status) in enumerate([("/m/a.flac", "ok"), ("/m/b.mp3", "missing")], start=1):
            conn.execute(
                text("INSERT INTO tracks (id, path, size, mtime, fingerprint, status, windows, silent_windows, "
                     "model_version_id, first_seen_at, updated_at) VALUES (:id, :p, 10, 1.5, :fp, :st, 3, 0, 1, :now, :now)"),
                {"id": i, "p": path, "fp": f"fp{i}", "st": status, "now": now},
            )  # fmt: skip
        conn.execute(text("INSERT INTO detections (track_id, family, present, score, coverage) VALUES (1, 'bass', 1, 0.9, 0.5)"))
        conn.execute(text("INSERT INTO segments (track_id, family, start, \"end\") VALUES (1, 'bass', 0.0, 8.0)"))
    engine.dispose()

    db = open_database(tmp_path / "old.db")  # applies 0002 to 0012 automatically
    assert current_revision(db.engine) == head_revision()
    with db.session() as s:
        a = s.scalar(select(M.Track).where(M.Track.path == "/m/a.flac"))
        b = s.scalar(select(M.Track).where(M.Track.path == "/m/b.mp3"))
        assert a.missing_since is None and b.missing_since == now
        assert a.content_hash is None and b.content_hash is None  # unknown until analysed again
        assert a.rewrite_hash is None  # no `tag` run was stopped at a rename
        assert [(d.family, d.present, d.score) for d in a.detections] == [("bass", True, 0.9)]
        assert [(g.start, g.end) for g in a.segments] == [(0.0, 8.0)]
        assert a.model_version.version == "v1"
    indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("tracks")}
    assert "ix_tracks_fingerprint" in indexes
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), M.Base.metadata) == []
    db.close()


def test_upgrade_to_0007_marks_the_files_an_older_tagger_found_without_tags(tmp_path):
    """Tracks that tagger 0006 recorded as tagged although their format holds no tags it wrote (a
    Matroska file, say) are marked so that the next tag-writing scan tries them once more; tracks in
    the formats it tagged, and tracks whose tags were not current, are left as they were."""
    engine = make_engine(as_url(tmp_path / "old.db"))
    upgrade(engine, revision="0006")
    now = dt.datetime(2026, 12, 1)
    rows = [("/m/a.mka", 1), ("/m/b.FLAC", 1), ("/m/c.webm", 0), ("/m/d.wv", 1), ("/m/e.caf", 1)]
    with engine.begin() as conn:
        for i, (path, current) in enumerate(rows, start=1):
            conn.execute(
                text("INSERT INTO tracks (id, path, size, mtime, fingerprint, status, windows, silent_windows, first_seen_at, "
                     "updated_at, tags_current) VALUES (:id, :p, 10, 1.5, 'fp', 'ok', 3, 0, :now, :now, :cur)"),
                {"id": i, "p": path, "now": now, "cur": current},
            )  # fmt: skip
    engine.dispose()
    db = open_database(tmp_path / "old.db")
    with db.session() as s:
        got = dict(s.execute(select(M.Track.path, M.Track.untaggable_formats)).all())
    assert got == {"/m/a.mka": "0006", "/m/b.FLAC": None, "/m/c.webm": None, "/m/d.wv": None, "/m/e.caf": "0006"}
    db.close()


def test_db_upgrade_command_creates_and_is_idempotent(tmp_path):
    path = tmp_path / "sub" / "lib.db"
    runner = CliRunner()
    for _ in range(2):
        r = runner.invoke(app, ["db", "upgrade", "--db", str(path)])
        assert r.exit_code == 0, r.output
        assert f"at revision {HEAD}" in r.output
    assert path.is_file()


def test_a_sqlite_database_is_named_as_its_file_is_named(tmp_path):
    """`db upgrade` and the database errors named a SQLite file through SQLAlchemy's rendering of
    its URL, which percent-encodes the file name: `sqlite:////music/Bibliothe%CC%80que%3A2/lib.db`
    for `Bibliothèque:2`, a name no file has. Found running the README's commands on a folder with
    an accent and a colon. The file name is shown as it is; a password still masked."""
    from tagger.db.urls import shown_url

    folder = tmp_path / "Bibliothèque: 2 #1"
    folder.mkdir()
    r = CliRunner().invoke(app, ["db", "upgrade", "--db", str(folder / "lib.db")])
    assert r.exit_code == 0 and r.output == f"sqlite:///{folder}/lib.db: at revision {HEAD}\n", r.output
    (folder / "bad.db").write_bytes(b"SQLite format 3\0" + bytes(200))
    r = CliRunner().invoke(app, ["query", "--db", str(folder / "bad.db")])
    assert r.exit_code == 1 and f"the database sqlite:///{folder}/bad.db: " in r.output, r.output
    assert shown_url("sqlite:///file:/m/a b.db?mode=ro&uri=true") == "sqlite:///file:/m/a b.db?mode=ro&uri=true"
    assert shown_url("postgresql://u:secret@h/db?sslmode=require") == "postgresql://u:***@h/db?sslmode=require"


def test_an_unparsable_url_shows_its_host_and_port_with_only_the_password_masked(tmp_path):
    """A URL SQLAlchemy cannot parse was masked from ``user:`` to the last ``@`` before its query,
    past the ``/`` of its path: ``postgresql://u:secret@host:abc/db@x`` was refused as
    ``postgresql://u:***@x: its port is not a number``, the host and the port it complained of
    hidden (found this morning). Only the password is masked; one holding an ``@`` still whole."""
    from tagger.db.urls import shown_url

    r = CliRunner().invoke(app, ["stats", "--db", "postgresql://u:secret@host:abc/db@x"])
    assert r.exit_code == 1, r.output
    assert "invalid database URL postgresql://u:***@host:abc/db@x: its port is not a number" in r.output, r.output
    assert "secret" not in r.output
    assert shown_url("postgresql://u:se@cr:et@host:abc/db") == "postgresql://u:***@host:abc/db"
    assert shown_url("postgresql://u:se/cret@host:abc/db@x") == "postgresql://u:***@host:abc/db@x"
    assert shown_url("postgresql://u:se@cret@host/db@x") == "postgresql://u:***@host/db%40x"


def test_database_location_env_and_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGGER_DB", "sqlite:///" + str(tmp_path / "env.db"))
    assert default_db_url() == "sqlite:///" + str(tmp_path / "env.db")
    assert as_url(None) == default_db_url()
    monkeypatch.delenv("TAGGER_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'xdg' / 'tagger' / 'library.db'}"
    assert as_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_bad_database_url_is_a_user_error(tmp_path):
    r = CliRunner().invoke(app, ["stats", "--db", "nosuchdialect://x"])
    assert r.exit_code == 1
    assert "tagger: error:" in r.output


def test_deleting_a_track_cascades_to_its_results(tmp_path):
    db = open_database(tmp_path / "c.db")
    with db.session() as s:
        t = M.Track(path="/x.wav", size=1, mtime=1.0, fingerprint="f")
        t.detections.append(M.Detection(family="bass", present=True, score=1.0, coverage=1.0))
        t.segments.append(M.Segment(family="bass", start=0.0, end=4.0))
        s.add(t)
    with db.session() as s:
        s.execute(text("DELETE FROM tracks"))
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM detections")) == 0
        assert s.scalar(text("SELECT count(*) FROM segments")) == 0
    db.close()


def test_a_migration_failing_midway_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    """A full disk half-way through creating the schema used to leave some tables behind, and every
    later open failed with "table model_versions already exists": the migrations are one transaction."""
    from alembic.ddl.impl import DefaultImpl
    from sqlalchemy.exc import OperationalError

    real_create_table = DefaultImpl.create_table
    calls = []

    def create_table_then_fail(self, table, *args, **kwargs):
        calls.append(table.name)
        if len(calls) > 1:
            raise OperationalError("CREATE TABLE", {}, Exception("database or disk is full"))
        return real_create_table(self, table, *args, **kwargs)

    monkeypatch.setattr(DefaultImpl, "create_table", create_table_then_fail)
    path = tmp_path / "lib.db"
    with pytest.raises(DatabaseError, match="database or disk is full; it was left as it was"):
        open_database(path)
    assert calls[0] == "model_versions" and len(calls) == 2
    engine = make_engine(as_url(path))
    assert inspect(engine).get_table_names() == []  # the first table was rolled back with the rest
    engine.dispose()

    monkeypatch.setattr(DefaultImpl, "create_table", real_create_table)  # the disk has room again
    db = open_database(path)
    assert current_revision(db.engine) == head_revision()
    with db.session() as s:
        assert s.scalar(select(M.Track).limit(1)) is None
    db.close()


def test_a_database_from_a_newer_tagger_is_one_line_naming_the_revision(tmp_path):
    path = library_of_a_newer_tagger(tmp_path / "lib.db")
    with pytest.raises(DatabaseError, match=r"schema revision 0099, which tagger .* does not know \(it knows up to 0012\)"):
        open_database(path)
    r = CliRunner().invoke(app, ["stats", "--db", str(path)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: error: ") and "newer tagger" in lines[0], r.output


def test_tagger_db_env_accepts_a_plain_file_path_like_the_db_option(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "x.db"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'x.db'}"
    r = CliRunner().invoke(app, ["stats", "--json"])  # a read command never creates a database
    assert r.exit_code == 1 and f"no library database at {tmp_path / 'x.db'}" in r.output, r.output
    assert not (tmp_path / "x.db").exists()
    assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0  # creates it, as scan does
    r = CliRunner().invoke(app, ["stats", "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x.db").is_file()


HEAD = "0012"
"""The shipped migrations' head (checked by `test_migrations_folder_is_found_and_has_its_revisions`)."""
TEST_STEP = "0100"
"""The revision of a test's own migration after `HEAD` (`migrations_with`)."""


# -- every old revision, with a library in it (`old_databases`) -----------------------------------------
OLD_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011")


@pytest.mark.parametrize("revision", OLD_REVISIONS)
def test_a_library_of_every_old_revision_is_upgraded_by_a_command_with_every_row_kept(tmp_path, revision):
    """A library as the tagger of each older revision stored it (analysed, failed and missing tracks,
    two model versions, detections, segments, window scores where the revision has them) is upgraded by
    the first command that opens it; each row keeps every value, each new column gets what its
    migration gives it, and query and show give the old results."""
    url = as_url(tmp_path / "old.db")
    written = write_database_at(url, revision)
    check_upgraded(url, written, revision, cli_db=str(tmp_path / "old.db"))


def test_a_failed_step_is_named_by_a_whole_short_title():
    """A failed migration step was named by its docstring's first line, cut mid-sentence: "(step
    0006: Store, before `tagger tag` moves its verified copy over a file, the copy's content hash,
    so that)" (found this morning). It is named by its first sentence where that is short, else by
    its file's short name."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from tagger.db.migrate import _step_title, alembic_config

    steps = ScriptDirectory.from_config(alembic_config(create_engine("sqlite://")))
    titles = {s.revision: _step_title(s.doc or "", s.path) for s in steps.walk_revisions()}
    assert titles["0002"] == "Track when a file went missing; index fingerprints (moved-file lookup)"
    assert titles["0005"] == "content hash" and titles["0006"] == "rewrite hash"
    assert _step_title("Add a column.\n\nMore words.", None) == "Add a column"
    assert _step_title("", "/m/0011_new_things.py") == "new things" and _step_title("", None) == ""


def test_an_upgrade_failing_at_a_later_step_leaves_the_old_revision_with_its_rows(tmp_path, monkeypatch):
    """Steps 0004 to 0006 applied, 0007 fails (a full disk): the database is at 0003 as it was, not
    half-migrated, and the next command upgrades it whole."""
    from alembic.ddl.impl import DefaultImpl
    from sqlalchemy.exc import OperationalError


    url = as_url(tmp_path / "old.db")
    written = write_database_at(url, "0003")
    real_add_column = DefaultImpl.add_column
    added = []

    def add_column(self, table_name, column, *args, **kwargs):
        added.append(column.name)
        if column.name == "untaggable_formats":
            raise OperationalError("ALTER TABLE", {}, Exception("database or disk is full"))
        return real_add_column(self, table_name, column, *args, **kwargs)

    monkeypatch.setattr(DefaultImpl, "add_column", add_column)
    with pytest.raises(DatabaseError, match=r"\(step 0007: untaggable formats\): database or disk is full; it was left as it was, at revision 0003$"):
        open_database(tmp_path / "old.db")
    assert added == ["tags_current", "error_transient", "content_hash", "rewrite_hash", "untaggable_formats"]
    engine = make_engine(url)
    assert current_revision(engine) == "0003"
    assert "tags_current" not in {c["name"] for c in inspect(engine).get_columns("tracks")}
    for table, rows in written.items():
        assert [{k: r[k] for k in rows[0]} for r in table_rows(engine, table)] == rows, table
    engine.dispose()
    monkeypatch.setattr(DefaultImpl, "add_column", real_add_column)  # the disk has room again
    check_upgraded(url, written, "0003")


def migrations_with(tmp_path, monkeypatch, body: str):
    """The shipped migrations and a revision `TEST_STEP` after their head whose ``upgrade()`` runs `body`."""
    import shutil
    import textwrap

    import tagger.db.migrate as migrate

    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    (folder / "versions" / f"{TEST_STEP}_test.py").write_text(
        '"""A test migration."""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f'revision = "{TEST_STEP}"\ndown_revision = "{head}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade() -> None:\n" + textwrap.indent(textwrap.dedent(body), "    ") + "\n"
    )
    monkeypatch.setattr(migrate, "migrations_dir", lambda: folder)


def test_a_migration_copying_the_tracks_table_keeps_the_results_that_reference_it(tmp_path, monkeypatch):
    """SQLite batch mode copies a table to change a column: with foreign keys on, dropping the old
    ``tracks`` deleted its rows first and cascaded to every detection, segment and window score."""

    url = as_url(tmp_path / "lib.db")
    written = expected_at_head(write_database_at(url, HEAD), HEAD)
    migrations_with(tmp_path, monkeypatch, """
        with op.batch_alter_table("tracks", recreate="always") as batch:
            batch.alter_column("format", type_=sa.String(60))
    """)
    db = open_database(tmp_path / "lib.db")
    assert current_revision(db.engine) == TEST_STEP
    for table in ("tracks", "detections", "segments", "window_scores"):
        assert table_rows(db.engine, table) == written[table], table
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again for the commands
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    db.close()


def test_a_migration_leaving_rows_without_their_track_is_rolled_back(tmp_path, monkeypatch):

    url = as_url(tmp_path / "lib.db")
    write_database_at(url, HEAD)
    migrations_with(tmp_path, monkeypatch, """
        op.execute("DELETE FROM tracks WHERE id = 1")
    """)
    with pytest.raises(DatabaseError, match=r"lib.db: \d+ row\(s\) would reference rows that do not exist \(the first: row 1 "
                                             rf"of \w+, to tracks\); it was left as it was, at revision {HEAD}"):  # fmt: skip
        open_database(tmp_path / "lib.db")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert current_revision(engine) == HEAD
        assert conn.exec_driver_sql("SELECT count(*) FROM tracks WHERE id = 1").scalar() == 1
    engine.dispose()


@pytest.mark.parametrize(("revision", "change", "undo"), [
    ("0001", "ALTER TABLE tracks ADD COLUMN missing_since TEXT", "ALTER TABLE tracks DROP COLUMN missing_since"),
    ("0002", "CREATE TABLE window_scores (track_id INTEGER)", "DROP TABLE window_scores"),
    ("0001", "CREATE INDEX ix_tracks_fingerprint ON tracks (fingerprint, size)", "DROP INDEX ix_tracks_fingerprint"),
])  # fmt: skip
def test_a_schema_changed_by_hand_where_a_step_adds_is_one_line_naming_the_step(tmp_path, revision, change, undo):
    """A column, table or index a user added under the name a later revision gives its own: the
    command says which step failed, that the database is as it was, and what to look for."""

    path = tmp_path / "old.db"
    written = write_database_at(as_url(path), revision)
    con = sqlite3.connect(path)
    con.execute(change)
    con.close()
    r = CliRunner().invoke(app, ["stats", "--db", str(path)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: error: cannot migrate the database"), r.output
    assert f"it was left as it was, at revision {revision}" in lines[0] and "by hand" in lines[0]
    assert f"(step {int(revision) + 1:04d}: " in lines[0]
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]
    con.execute(undo)
    con.close()
    check_upgraded(as_url(path), written, revision)


def test_a_users_own_index_column_view_and_trigger_do_not_stop_the_upgrade(tmp_path):

    path = tmp_path / "old.db"
    written = write_database_at(as_url(path), "0001")
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE INDEX my_paths ON tracks (path, status);
        ALTER TABLE tracks ADD COLUMN my_rating INTEGER;
        CREATE VIEW my_ok AS SELECT * FROM tracks WHERE status = 'ok';
        CREATE TABLE my_log (path TEXT);
        CREATE TRIGGER my_trigger AFTER UPDATE OF status ON tracks BEGIN INSERT INTO my_log VALUES (new.path); END;
    """)
    con.close()
    check_upgraded(as_url(path), written, "0001", schema_as_ours=False)
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM my_ok").fetchone()[0] == sum(t["status"] == "ok" for t in written["tracks"])
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master")} >= {"my_paths", "my_ok", "my_log", "my_trigger"}
    con.close()


OWN_OBJECTS = {  # a user's own views and triggers on the table a step copies, and one on another table using it
    "view": "CREATE VIEW my_ok AS SELECT path, format FROM tracks WHERE status = 'ok'",
    "trigger on it": "CREATE TRIGGER my_trigger AFTER UPDATE OF status ON tracks BEGIN INSERT INTO my_log VALUES (new.path); END",
    "trigger using it": "CREATE TRIGGER my_trigger AFTER INSERT ON my_log BEGIN UPDATE tracks SET error = 'seen' WHERE path = new.path; END",
}
COPY_TRACKS = """
    with op.batch_alter_table("tracks", recreate="always") as batch:
        batch.alter_column("format", type_=sa.String(60))
"""


@pytest.mark.parametrize("kind", OWN_OBJECTS)
def test_a_users_view_or_trigger_on_a_table_a_step_copies_is_kept_and_works(tmp_path, monkeypatch, kind):
    """Was: a view on ``tracks`` stopped a step that copies it ("error in view my_ok: no such table:
    main.tracks"), so did a trigger of another table using it, and a trigger on it was dropped with
    the old table without a word."""
    path = tmp_path / "lib.db"
    url = as_url(path)
    written = expected_at_head(write_database_at(url, HEAD), HEAD)
    con = sqlite3.connect(path)
    con.executescript(f"CREATE TABLE my_log (path TEXT); {OWN_OBJECTS[kind]};")
    con.close()
    migrations_with(tmp_path, monkeypatch, COPY_TRACKS)
    db = open_database(path)
    assert current_revision(db.engine) == TEST_STEP
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name LIKE 'my\\_%' ESCAPE '\\' AND name != 'my_log'").scalars().all() == [
            OWN_OBJECTS[kind]]  # fmt: skip
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    for table in ("tracks", "detections", "segments", "window_scores"):
        assert table_rows(db.engine, table) == written[table], table
    first = written["tracks"][0]["path"]
    with db.engine.begin() as conn:  # the object still does its work
        if kind == "view":
            assert conn.exec_driver_sql("SELECT count(*) FROM my_ok").scalar() == sum(t["status"] == "ok" for t in written["tracks"])
        elif kind == "trigger on it":
            conn.exec_driver_sql("UPDATE tracks SET status = 'missing' WHERE path = ?", (first,))
            assert conn.exec_driver_sql("SELECT path FROM my_log").scalars().all() == [first]
        else:
            conn.exec_driver_sql("INSERT INTO my_log VALUES (?)", (first,))
            assert conn.exec_driver_sql("SELECT error FROM tracks WHERE path = ?", (first,)).scalar() == "seen"
    db.close()


def test_a_users_view_that_no_longer_fits_the_new_schema_is_named_and_nothing_is_migrated(tmp_path, monkeypatch):
    path = tmp_path / "lib.db"
    written = write_database_at(as_url(path), HEAD)
    con = sqlite3.connect(path)
    con.execute("CREATE VIEW my_errors AS SELECT path, error FROM tracks WHERE status = 'error'")
    con.close()
    migrations_with(tmp_path, monkeypatch, """
        with op.batch_alter_table("tracks") as batch:
            batch.drop_column("error")
    """)
    r = CliRunner().invoke(app, ["stats", "--db", str(path)])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"tagger: error: cannot migrate the database sqlite:///{path} to revision {TEST_STEP}: the view "
                               "my_errors, made by hand, does not fit the new schema (no such column: error): save its "
                               "definition"), lines[0]  # fmt: skip
    assert "drop it (DROP VIEW my_errors), run the command again" in lines[0]
    assert lines[0].endswith(f"it was left as it was, at revision {HEAD}"), lines[0]
    engine = make_engine(as_url(path))
    with engine.connect() as conn:
        assert current_revision(engine) == HEAD
        assert conn.exec_driver_sql("SELECT count(*) FROM my_errors").scalar() == sum(t["status"] == "error" for t in written["tracks"])
    assert [{k: r[k] for k in written["tracks"][0]} for r in table_rows(engine, "tracks")] == written["tracks"]
    engine.dispose()


def check_audio_digest_step(url: str) -> None:
    """Step 0010 on the library at `url` (empty): it adds ``tracks.audio_digest``, NULL for the tracks
    already there (each is analysed once more when another program rewrites its tags); its downgrade
    drops the column with every other value kept, and the upgrade after it gives the models' schema."""
    from alembic import command

    from tagger.db.migrate import alembic_config

    written = write_database_at(url, "0009")
    engine = make_engine(url)
    try:
        upgrade(engine, revision="0010")
        column = {c["name"]: c for c in inspect(engine).get_columns("tracks")}["audio_digest"]
        assert column["nullable"]
        assert [r["audio_digest"] for r in table_rows(engine, "tracks")] == [None] * len(written["tracks"])
        with engine.begin() as conn:
            conn.execute(text("UPDATE tracks SET audio_digest = :d WHERE id = 1"), {"d": "ab" * 32})
        command.downgrade(alembic_config(engine), "0009")
        assert current_revision(engine) == "0009"
        assert "audio_digest" not in {c["name"] for c in inspect(engine).get_columns("tracks")}
        for table, rows in written.items():
            assert [{k: r[k] for k in rows[0]} for r in table_rows(engine, table)] == rows, table
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), M.Base.metadata) == []
    finally:
        engine.dispose()


def test_step_0010_adds_the_audio_digest_and_its_downgrade_keeps_every_other_value(tmp_path):
    check_audio_digest_step(as_url(tmp_path / "lib.db"))


def check_written_ctime_step(url: str) -> None:
    """Step 0011 on the library at `url` (empty): it adds ``tracks.written_ctime_ns``, NULL for the
    tracks already there (a file tagger tagged before is known by its tags current, as before); its
    downgrade drops the column with every other value kept, and the upgrade after it gives the
    models' schema."""
    from alembic import command

    from tagger.db.migrate import alembic_config

    written = write_database_at(url, "0010")
    engine = make_engine(url)
    try:
        upgrade(engine, revision="0011")
        column = {c["name"]: c for c in inspect(engine).get_columns("tracks")}["written_ctime_ns"]
        assert column["nullable"]
        assert [r["written_ctime_ns"] for r in table_rows(engine, "tracks")] == [None] * len(written["tracks"])
        with engine.begin() as conn:
            conn.execute(text("UPDATE tracks SET written_ctime_ns = :c WHERE id = 1"), {"c": 1_765_000_000_123_456_789})
        assert table_rows(engine, "tracks")[0]["written_ctime_ns"] == 1_765_000_000_123_456_789  # (64 bits)
        command.downgrade(alembic_config(engine), "0010")
        assert current_revision(engine) == "0010"
        assert "written_ctime_ns" not in {c["name"] for c in inspect(engine).get_columns("tracks")}
        for table, rows in written.items():
            assert [{k: r[k] for k in rows[0]} for r in table_rows(engine, table)] == rows, table
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), M.Base.metadata) == []
    finally:
        engine.dispose()


def test_step_0011_adds_the_written_ctime_and_its_downgrade_keeps_every_other_value(tmp_path):
    check_written_ctime_step(as_url(tmp_path / "lib.db"))


def check_decoding_step(url: str) -> None:
    """Step 0012 on the library at `url` (empty): it adds ``tracks.decoding``, NULL for the tracks
    already there (the next scan looks at each analysed file once); its downgrade drops the column
    with every other value kept, and the upgrade after it gives the models' schema."""
    from alembic import command

    from tagger.db.migrate import alembic_config

    written = write_database_at(url, "0011")
    engine = make_engine(url)
    try:
        upgrade(engine, revision="0012")
        column = {c["name"]: c for c in inspect(engine).get_columns("tracks")}["decoding"]
        assert column["nullable"]
        assert [r["decoding"] for r in table_rows(engine, "tracks")] == [None] * len(written["tracks"])
        with engine.begin() as conn:
            conn.execute(text("UPDATE tracks SET decoding = 1 WHERE id = 1"))
        command.downgrade(alembic_config(engine), "0011")
        assert current_revision(engine) == "0011"
        assert "decoding" not in {c["name"] for c in inspect(engine).get_columns("tracks")}
        for table, rows in written.items():
            assert [{k: r[k] for k in rows[0]} for r in table_rows(engine, table)] == rows, table
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), M.Base.metadata) == []
    finally:
        engine.dispose()


def test_step_0012_adds_the_decoding_and_its_downgrade_keeps_every_other_value(tmp_path):
    check_decoding_step(as_url(tmp_path / "lib.db"))


def test_an_upgrade_says_the_older_tagger_can_no_longer_open_the_database(tmp_path, caplog):
    """A library database of an older tagger was upgraded without a word by the first command that
    opened it (`tagger query`), so a user who went back to that tagger learned only then, from its
    refusal, that the database had changed (found upgrading a library of the 2026-12-03 tagger). The
    command says so on stderr, once; `db upgrade` in its line; a new database is no upgrade."""
    import logging

    path = tmp_path / "old.db"
    write_database_at(as_url(path), "0004")
    with caplog.at_level(logging.WARNING, logger="tagger.db.session"):
        open_database(path, create=False).close()
        open_database(path, create=False).close()  # at head now: nothing to say
        open_database(tmp_path / "new.db").close()
    said = [r.getMessage() for r in caplog.records if r.name == "tagger.db.session"]
    assert said == [f"upgraded the library database sqlite:///{path} from schema revision 0004 to {HEAD}: a tagger "
                    "that knows only revision 0004 can no longer open it"], said  # fmt: skip
    other = tmp_path / "other.db"
    write_database_at(as_url(other), "0007")
    r = CliRunner().invoke(app, ["db", "upgrade", "--db", str(other)])
    assert r.exit_code == 0 and r.output == (f"sqlite:///{other}: at revision {HEAD} (upgraded from revision 0007: a "
                                             "tagger that knows only revision 0007 can no longer open it)\n"), r.output  # fmt: skip
    r = CliRunner().invoke(app, ["db", "upgrade", "--db", str(other)])
    assert r.exit_code == 0 and r.output == f"sqlite:///{other}: at revision {HEAD}\n", r.output

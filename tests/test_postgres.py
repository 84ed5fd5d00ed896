"""The library database on a real PostgreSQL server (started by the tests, see `pgserver`): the
migrations, and every command with ``--db postgresql+psycopg://...`` giving what it gives on SQLite."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from library_fakes import BROKEN, EXPECTED, FakeAnalyser, make_library
from pgserver import postgres_url_fixture
from tagger.cli import app
from tagger.db import models as M
from tagger.db.migrate import current_revision, head_revision, upgrade
from tagger.db.engine import make_engine
from tagger.db.session import open_database
from tagger.db.urls import DatabaseError, as_url
from tagger.errors import UserError

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        yield as_url(tmp_path / "lib.db")
    else:
        yield from postgres_url_fixture()


def test_migrated_schema_equals_the_orm_models_on_every_database(any_url):
    engine = make_engine(any_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), M.Base.metadata)
        assert diff == []
    insp = inspect(engine)
    assert {"tracks", "scans", "detections", "segments", "model_versions", "alembic_version"} <= set(insp.get_table_names())
    assert {ix["name"] for ix in insp.get_indexes("tracks")} >= {"ix_tracks_fingerprint", "ix_tracks_status"}
    assert upgrade(engine) == head_revision()  # idempotent
    engine.dispose()


def test_postgres_upgrade_from_first_revision_keeps_data(pg_url):
    import datetime as dt

    engine = make_engine(pg_url)
    assert engine.dialect.name == "postgresql"
    upgrade(engine, revision="0001")
    assert "missing_since" not in {c["name"] for c in inspect(engine).get_columns("tracks")}
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO model_versions (id, version, manifest_hash, families, thresholds, aggregation, created_at) "
                          "VALUES (1, 'v1', 'h1', '[\"bass\"]', '{}', '{}', :now)"), {"now": now})  # fmt: skip
        for i, status in ((1, "ok"), (2, "missing")):
            conn.execute(text("INSERT INTO tracks (id, path, size, mtime, fingerprint, status, windows, silent_windows, "
                              "model_version_id, first_seen_at, updated_at) "
                              "VALUES (:id, :p, 3000000000, 1.5, 'fp', :st, 3, 0, 1, :now, :now)"),
                         {"id": i, "p": f"/m/{i}.flac", "st": status, "now": now})  # fmt: skip
        conn.execute(text("INSERT INTO detections (track_id, family, present, score, coverage) VALUES (1, 'bass', true, 0.9, 0.5)"))
    engine.dispose()
    db = open_database(pg_url)  # applies 0002 to 0012
    assert current_revision(db.engine) == head_revision()
    with db.session() as s:
        a, b = s.scalars(select(M.Track).order_by(M.Track.id)).all()
        assert a.size == 3_000_000_000  # BigInteger: files over 2 GiB
        assert a.missing_since is None and b.missing_since == now
        assert a.content_hash is None
        assert [(d.family, d.present, d.score) for d in a.detections] == [("bass", True, 0.9)]
        s.execute(text("DELETE FROM tracks WHERE id = 1"))  # ON DELETE CASCADE holds on PostgreSQL too
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM detections")) == 0
    db.close()


def test_plain_postgresql_url_uses_psycopg3_and_errors_hide_the_password():
    pytest.importorskip("psycopg")
    engine = make_engine("postgresql://someone@db.example/music")
    assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    engine.dispose()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(DatabaseError) as info:
        open_database(f"postgresql+psycopg://someone:s3cret-pw@127.0.0.1:{port}/music?connect_timeout=3")
    assert "s3cret-pw" not in str(info.value) and "127.0.0.1" in str(info.value)
    with pytest.raises(UserError, match="tagger\\[postgres\\]"):
        make_engine("postgresql+nosuchdriver://u@h/db")


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://someone@127.0.0.1:{port}/music?password=s3cret-pw&connect_timeout=3",
    "postgresql+psycopg://127.0.0.1:{port}/music?user=someone&sslpassword=s3cret-pw&connect_timeout=3",
    "postgresql+psycopg://someone:s3cret-pw@127.0.0.1:{port}/music?password=s3cret-pw&connect_timeout=3",
])  # fmt: skip
def test_a_password_given_as_a_url_parameter_is_never_printed(url, monkeypatch):
    """libpq takes the password as a query parameter too (``?password=``): errors, from the library
    and from every command reading $TAGGER_DB, mask it as they mask ``user:password@``."""
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = url.format(port=s.getsockname()[1])  # nothing listens there
    with pytest.raises(DatabaseError) as info:
        open_database(url)
    assert "s3cret-pw" not in str(info.value) and "127.0.0.1" in str(info.value) and "=***" in str(info.value)
    monkeypatch.setenv("TAGGER_DB", url)
    for args in (["stats"], ["stats", "--json"], ["errors"], ["db", "upgrade"], ["scan", "/nonexistent-dir", "--json"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1 and "s3cret-pw" not in r.output and "tagger: error:" in r.output, (args, r.output)


def test_an_unparsable_database_url_is_refused_without_its_password():
    with pytest.raises(UserError, match="invalid database URL") as info:
        make_engine("://someone:s3cret-pw@db.example/music")
    assert "s3cret-pw" not in str(info.value) and "someone:***@" in str(info.value)


@pytest.mark.parametrize("url", ["postgresql://someone:s3cret-pw@db.example:abc/music",
                                 "postgresql://someone:s3cret-pw@[::1/music", "://someone:s3cret-pw@db.example/music"])
def test_a_database_url_with_a_port_that_is_no_number_is_one_error_line(url, monkeypatch):
    """(was: a ValueError traceback from every command)"""
    with pytest.raises(UserError, match="invalid database URL") as info:
        open_database(url, create=False)
    assert "s3cret-pw" not in str(info.value)
    monkeypatch.setenv("TAGGER_DB", url)
    for args in (["stats"], ["db", "upgrade"], ["query", "--has", "flute"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1 and "tagger: error: invalid database URL" in r.output, (args, r.output)
        assert "Traceback" not in r.output and "s3cret-pw" not in r.output


# -- every command, on PostgreSQL and SQLite -------------------------------------------------------


def run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == code, r.output
    return r.output


def _drop(obj, *keys):
    return {k: v for k, v in obj.items() if k not in keys}


@pytest.mark.parametrize("url", ["postgresql://someone:s3cret@pw-end@127.0.0.1:{port}/music",
                                 "postgresql://someone:s3@cret@pw-end@127.0.0.1/music?connect_timeout=3",
                                 "postgresql://someone:s3cret@pw:end@127.0.0.1:{port}/music"])
def test_a_password_holding_an_at_sign_is_never_printed(url, monkeypatch, tmp_path):
    """A password with an ``@`` not written ``%40`` is read up to that ``@``, the rest of it taken
    for the host: ``failed to resolve host 'pw-end@127.0.0.1'`` printed it (and a ``:`` after it,
    read as a port that is no number, showed it too, then said only "its port is not a number").
    Such a URL is refused in one line saying so, the password masked whole."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = url.format(port=s.getsockname()[1])  # nothing listens there
    with pytest.raises(UserError, match="invalid database URL postgresql://someone:\\*\\*\\*@127.0.0.1") as info:
        open_database(url, create=False)
    assert "pw" not in str(info.value) and "s3" not in str(info.value)
    assert "its password holds an '@', which a URL writes as %40" in str(info.value)
    monkeypatch.setenv("TAGGER_DB", url)
    for args in (["stats"], ["query", "--format", "json"], ["db", "upgrade"], ["scan", str(tmp_path), "--json"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1 and "pw" not in r.output and "tagger: error: invalid database URL" in r.output, (args, r.output)
        assert "its password holds an '@'" in r.output, (args, r.output)


@pytest.mark.parametrize("url", ["postgresql://someone:pw@127.0.0.1:port/music",
                                 "postgresql://someone:pw@127.0.0.1:port/music@home",
                                 "postgresql://someone@127.0.0.1:port/music"])
def test_a_port_that_is_no_number_is_named_so(url):
    """The refusal of a password's ``@`` followed by a ``:`` takes only an ``@`` inside the
    password: a port that is no number, with no ``@`` in the password, is still named so."""
    with pytest.raises(UserError, match="its port is not a number"):
        as_url(url)


@pytest.mark.slow
def test_every_command_on_postgres_gives_what_sqlite_gives(pg_url, tmp_path, fake_models):
    root = tmp_path / "music"
    files = make_library(root)
    sqlite = str(tmp_path / "lib.db")
    out = {}
    for name, db in (("sqlite", sqlite), ("pg", pg_url)):
        summary = json.loads(run("scan", str(root), "--db", db, "--jobs", "0", "--no-write-tags", "--json", code=1))  # broken.mp3 fails: exit 1
        assert (summary["scanned"], summary["failed"], summary["found"]) == (len(EXPECTED), 1, len(EXPECTED) + 1)
        counts = ("model_version", "found", "scanned", "failed", "skipped", "stale", "moved", "copied", "missing",
                  "audio_seconds", "tags_written", "tag_errors", "errors")  # not times or memory
        res = {"summary": {k: summary[k] for k in counts}}
        for fmt in ("table", "json", "csv", "paths", "m3u"):
            res[fmt] = run("query", "--db", db, "--format", fmt)
        res["has"] = run("query", "--db", db, "--has", "flute", "--lacks", "bass", "--min-score", "0.5", "--format", "paths")
        res["glob"] = run("query", "--db", db, "--path-glob", "*/sub/*", "--format", "paths")
        res["show"] = {rel: _drop(json.loads(run("show", files[rel], "--db", db, "--json")), "analysed_at") for rel in files}
        res["show_text"] = run("show", files["duo.flac"], "--db", db).replace(db, "")
        stats = json.loads(run("stats", "--db", db, "--json"))
        res["stats"] = _drop(stats, "last_scan")
        assert stats["last_scan"]["scanned"] == len(EXPECTED)
        res["errors"] = [_drop(e, "when") for e in json.loads(run("errors", "--db", db, "--json"))]
        out[name] = res
    pg, lite = out["pg"], out["sqlite"]
    for key in lite:
        assert pg[key] == lite[key], key
    assert pg["paths"].splitlines() == sorted(files[rel] for rel in EXPECTED)
    assert pg["has"].splitlines() == sorted(files[rel] for rel, f in EXPECTED.items() if "flute" in f and "bass" not in f)
    assert [e["path"] for e in pg["errors"]] == [files[BROKEN]]
    assert pg["show"]["sub/deeper/trio.ogg"]["instruments"] == ["bass", "flute", "string"]

    assert f"at revision {head_revision()}" in run("db", "upgrade", "--db", pg_url)

    # tagger tag from the PostgreSQL database; the next scan sees the rewritten files unchanged.
    from tagger import tags

    run("tag", "--db", pg_url)
    assert tags.read_instruments(files["duo.flac"]).instruments == ["bass", "flute"]
    assert tags.read_instruments(files["duo.flac"]).model_version == "fake-1"
    again = json.loads(run("scan", str(root), "--db", pg_url, "--jobs", "0", "--no-write-tags", "--json"))
    assert (again["scanned"], again["skipped"]) == (0, len(EXPECTED) + 1)

    # A deleted file becomes missing, a move keeps its results, prune removes the missing one.
    os.remove(files["bass.wav"])
    shutil.move(files["duo.flac"], root / "duo-moved.flac")
    again = json.loads(run("scan", str(root), "--db", pg_url, "--jobs", "0", "--no-write-tags", "--json"))
    assert (again["scanned"], again["moved"], again["missing"]) == (0, 1, 1)
    assert json.loads(run("db", "prune", "--db", pg_url, "--json")) == {"removed": [files["bass.wav"]], "kept": [],
                                                                         "not_audio": []}
    moved = json.loads(run("show", str(root / "duo-moved.flac"), "--db", pg_url, "--json"))
    assert moved["instruments"] == ["bass", "flute"]
    run("show", files["bass.wav"], "--db", pg_url, "--json", code=1)


def test_paths_sort_bytewise_on_a_postgres_database_with_a_language_collation(pg_url):
    """A database created with an en-US collation sorts ``/m/a`` before ``/m/B``; tagger's lists
    (query, errors, prune) keep SQLite's bytewise order on it."""
    import psycopg

    from pgserver import postgres_server
    from tagger.db.queries import failed_tracks, find_tracks, prune_missing

    server = postgres_server()
    try:
        url = server.create_database("tagger_icu", "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8' TEMPLATE template0")
    except psycopg.Error as exc:
        pytest.skip(f"this PostgreSQL server has no ICU collations: {exc}")
    paths = ["/m/B.wav", "/m/a.wav", "/m/_x.wav", "/m/Z/b.wav", "/m/z.wav", "/m/\u00e9.wav", "/m/e.wav"]
    db = open_database(url)
    try:
        with db.session() as s:
            for i, p in enumerate(paths):
                status = (M.STATUS_OK, M.STATUS_ERROR, M.STATUS_MISSING)[i % 3]
                s.add(M.Track(path=p, size=1, mtime=1.0, fingerprint=f"f{i}", status=status, error="bad" if i % 3 == 1 else None))
        with db.session() as s:
            collated = list(s.scalars(text("SELECT path FROM tracks ORDER BY path")))
            assert collated != sorted(paths)  # the database's own order is not bytewise
            assert [t.path for t in find_tracks(s)] == sorted(p for i, p in enumerate(paths) if i % 3 == 0)
            assert [e["path"] for e in failed_tracks(s)] == sorted(p for i, p in enumerate(paths) if i % 3 == 1)
            assert prune_missing(s).removed == sorted(p for i, p in enumerate(paths) if i % 3 == 2)
    finally:
        db.close()
        server.drop_database(url)


def test_one_scan_at_a_time_per_postgres_database(pg_url, tmp_path):
    """A second scan of the same PostgreSQL database (from any machine) refuses, naming the first;
    the lock goes with the first scan's connection."""
    from tagger.db.lock import postgres_scan_lock
    from tagger.db.lock import DatabaseBusy, scan_lock
    from tagger.library.scan import scan

    root = tmp_path / "music"
    root.mkdir()
    db = open_database(pg_url)
    with postgres_scan_lock(pg_url) as held:
        assert held is not None
        with pytest.raises(DatabaseBusy, match="another tagger scan or prune \\(server process \\d+, client 127.0.0.1\\)"):
            scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
        with pytest.raises(DatabaseBusy):
            with scan_lock(pg_url):
                pass
    assert scan([root], db=db, analyser=FakeAnalyser(), jobs=0).found == 0  # released: scans again
    other = make_engine(pg_url)  # a lock whose connection dies is released by the server
    with postgres_scan_lock(pg_url) as held:
        with other.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": held.connection.dbapi_connection.info.backend_pid})
    with postgres_scan_lock(pg_url):
        pass
    other.dispose()
    db.close()


def test_the_postgres_scan_lock_on_another_database_or_an_unreachable_server(tmp_path):
    """(Pinned before `postgres_scan_lock` was split into steps.) Another database gets no lock; a
    server that cannot be reached is a `DatabaseError` naming it, its password masked."""
    import socket

    from tagger.db.lock import postgres_scan_lock

    with postgres_scan_lock(as_url(tmp_path / "lib.db")) as held:
        assert held is None
    with socket.socket() as s:  # (a port nothing listens on)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatabaseError, match=rf"^cannot open the database postgresql\+psycopg://tagger:\*\*\*@127.0.0.1:{port}/lib: "):
        with postgres_scan_lock(f"postgresql+psycopg://tagger:secret@127.0.0.1:{port}/lib"):
            raise AssertionError("no lock without a server")


def test_a_scan_lock_that_cannot_be_taken_again_stops_the_next_commit(pg_url):
    """(Pinned before `postgres_scan_lock` was split into steps.) The lock's connection ends and the
    server takes no new one: the next commit of the guarded engine is refused, saying so."""
    from sqlalchemy.engine import make_url

    from tagger.db.lock import postgres_scan_lock

    url = make_url(pg_url)
    name = url.database  # (ALTER DATABASE ... ALLOW_CONNECTIONS from another database: the server's own)
    admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
    guard = make_engine(pg_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as a, guard.connect() as g:
        try:
            with postgres_scan_lock(pg_url, guard=guard, then="run the test again") as held:
                a.execute(text("SELECT pg_terminate_backend(:p)"), {"p": held.connection.dbapi_connection.info.backend_pid})
                a.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                g.execute(text("SELECT 1"))
                with pytest.raises(DatabaseError, match=r"lost the scan lock of the database .* \(its connection ended\) and "
                                                        r"cannot take it again: .*; what was stored before is kept, run the test again"):
                    g.commit()
        finally:
            a.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    admin.dispose()
    guard.dispose()
    with postgres_scan_lock(pg_url):  # (the server had released it with its connection)
        pass


def _terminate_scan_lock_connection(url) -> None:
    """End the server connection that holds the scan lock (as a server restart or a network cut would)."""
    admin = make_engine(url)
    with admin.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
                       "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"))  # fmt: skip
    admin.dispose()


@pytest.mark.parametrize("taken_meanwhile", [False, True])
def test_a_scan_whose_lock_connection_ends_takes_the_lock_again_or_stops(pg_url, tmp_path, taken_meanwhile):
    """The server drops the scan lock with its connection: the scan takes it again before its next
    commit, so a second scan is still refused; when another scan took it meanwhile, the scan stops
    with DatabaseBusy and keeps what it stored (was: it went on writing without any lock)."""
    from library_fakes import make_library
    from tagger.db.lock import DatabaseBusy, postgres_scan_lock
    from tagger.library.scan import scan

    root = tmp_path / "music"
    make_library(root)
    db = open_database(pg_url)
    events, other, stored_files = [], [], []

    def after_each_track(path, result, analysed):  # (called once a track is committed)
        stored_files.append(path)
        if len(stored_files) == 2:
            events.append("cut")
            _terminate_scan_lock_connection(pg_url)
            if taken_meanwhile:  # another scan starts in the gap
                other.append(postgres_scan_lock(pg_url))
                other[0].__enter__()
        elif len(stored_files) == 4 and not taken_meanwhile:
            events.append("second")
            with pytest.raises(DatabaseBusy):
                with postgres_scan_lock(pg_url):
                    pass
    try:
        if taken_meanwhile:
            with pytest.raises(DatabaseBusy, match="lost the scan lock .* another tagger scan or prune holds it now"):
                scan([root], db=db, analyser=FakeAnalyser(), jobs=0, on_track=after_each_track)
        else:
            summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0, on_track=after_each_track)
            assert summary.scanned == len(EXPECTED) and events == ["cut", "second"]
    finally:
        if other:
            other[0].__exit__(None, None, None)
    with db.session() as s:
        stored = s.scalar(text("SELECT count(*) FROM tracks WHERE status = 'ok'"))
    assert stored == (2 if taken_meanwhile else len(EXPECTED))
    with postgres_scan_lock(pg_url):  # released at the end either way
        pass
    db.close()


@pytest.mark.parametrize("revision", ["0001", "0009"])
def test_a_postgres_library_of_an_old_revision_is_upgraded_with_every_row_kept(pg_url, revision):
    """The oldest revision and the one before head, with a library in them (`old_databases`), on
    PostgreSQL: every row keeps its values after the first command's upgrade; query and show agree."""
    from old_databases import check_upgraded, write_database_at

    written = write_database_at(pg_url, revision)
    check_upgraded(pg_url, written, revision)


def test_a_users_view_on_what_a_postgres_step_changes_is_named(pg_url, tmp_path, monkeypatch):
    """Was: "cannot alter type of a column used by a view or rule" alone (the server's first line):
    the view's name, in the server's DETAIL, was left out."""
    from old_databases import table_rows, write_database_at
    from test_db import HEAD, TEST_STEP, migrations_with

    written = write_database_at(pg_url, HEAD)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE VIEW my_formats AS SELECT path, format FROM tracks"))
    migrations_with(tmp_path, monkeypatch, """
        op.alter_column("tracks", "format", type_=sa.String(60))
    """)
    with pytest.raises(DatabaseError) as caught:
        upgrade(engine)
    message = str(caught.value)
    assert f"(step {TEST_STEP}: A test migration): cannot alter type of a column used by a view or rule" in message, message
    assert "rule _RETURN on view my_formats depends on column \"format\"" in message, message
    assert "made by hand: save its definition, drop it, run the command again, then create it again" in message, message
    assert f"; it was left as it was, at revision {HEAD}" in message
    assert current_revision(engine) == HEAD
    assert [{k: r[k] for k in written["tracks"][0]} for r in table_rows(engine, "tracks")] == written["tracks"]
    engine.dispose()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_file_analysed_in_part_says_so_on_postgres_too(pg_url, tmp_path, fake_models):
    from test_library_lifecycle import check_analysed_in_part

    check_analysed_in_part(tmp_path, pg_url)


@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_a_postgres_database_not_in_utf8_keeps_every_file_name_or_is_refused(encoding, tmp_path):
    """Was: a SQL_ASCII database failed every command with a TypeError traceback (psycopg hands out
    bytes there), and a LATIN1 one stopped a scan at the first file whose name it cannot hold with
    a UnicodeEncodeError, every track analysed before it lost. Connections now speak UTF-8: a
    SQL_ASCII database stores and gives back any name; a LATIN1 one is refused in one line, naming
    its encoding, before anything is written."""
    from conftest import tone_signal, write_audio
    from pgserver import postgres_server
    from tagger.library.scan import scan

    names = ["\u0427\u0430\u0439\u043a\u043e\u0432\u0441\u043a\u0438\u0439.wav", "caf\u00e9.wav", "plain.wav"]
    songs = [write_audio(tmp_path / "m" / name, tone_signal([110.0], seconds=4.0)) for name in names]
    server = postgres_server()
    url = server.create_database("tagger_enc", f"ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    try:
        if encoding == "LATIN1":
            with pytest.raises(DatabaseError, match="encoding LATIN1.* UTF8") as info:
                open_database(url)
            assert "ENCODING 'UTF8'" in str(info.value)
            r = CliRunner().invoke(app, ["scan", str(tmp_path / "m"), "--db", url, "--json"])
            assert r.exit_code == 1 and "encoding LATIN1" in r.output and "Traceback" not in r.output, r.output
            import psycopg
            from sqlalchemy.engine import make_url

            u = make_url(url)
            with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as conn:
                assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
            return
        db = open_database(url)
        assert scan([tmp_path / "m"], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 3
        db.close()
        assert run("query", "--db", url, "--format", "paths").splitlines() == sorted(str(p) for p in songs)
        assert json.loads(run("show", str(songs[0]), "--db", url, "--json"))["path"] == str(songs[0])
    finally:
        server.drop_database(url)


def test_two_clients_opening_a_new_postgres_database_at_once_both_get_the_schema(pg_url, tmp_path, monkeypatch):
    """The first command of two machines on a new (or old) library database both migrate it: the
    second waited for the first's tables, then failed with 'duplicate key value violates unique
    constraint "pg_type_typname_nsp_index"'. Migrations now take turns (an advisory lock held for
    the migration's transaction), and the second finds the schema made, however long the first
    takes: the lock wait of tagger's connections (`lock_timeout`, here 0.5 s) does not apply to that
    turn (it did: the second gave up once the first took longer)."""
    import subprocess
    import sys
    import threading
    import time

    from tagger.db import engine as E

    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)  # (the second client's: a thread of this process)

    gate, migrated = tmp_path / "go", tmp_path / "migrated"
    first = subprocess.Popen([sys.executable, "-c", f"""
import os, time
import tagger.db.migrate as m
restore = m._restore_own_objects
def held(conn, own):  # (inside the migration's transaction, every step applied)
    restore(conn, own)
    open({str(migrated)!r}, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:
        time.sleep(0.05)
m._restore_own_objects = held
from tagger.db.session import open_database
open_database({pg_url!r}).close()
"""], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))  # fmt: skip
    outcome = []
    try:
        deadline = time.monotonic() + 60
        while not migrated.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert migrated.exists(), "the first client did not migrate"

        def second():
            try:
                db = open_database(pg_url)
                outcome.append(current_revision(db.engine))
                db.close()
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=second, daemon=True)
        t.start()
        watcher = make_engine(pg_url)
        with watcher.connect() as c:  # the second waits (on a lock) for the first
            while time.monotonic() < deadline and not c.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")):  # fmt: skip
                time.sleep(0.05)
        watcher.dispose()
        time.sleep(1.5)  # (the first takes longer than the second's lock wait)
    finally:
        gate.touch()
    t.join(60)
    assert first.wait(60) == 0
    assert outcome == [head_revision()], outcome


def test_a_postgres_migration_whose_connection_is_cut_is_rolled_back_whole(pg_url, monkeypatch):
    """Its backend terminated (pg_terminate_backend) with every step applied but not committed: one
    error line, the database left at its revision with every row, and the next command migrates it."""
    import tagger.db.migrate as migrate
    from old_databases import table_rows, write_database_at

    written = write_database_at(pg_url, "0001")
    restore = migrate._restore_own_objects

    def cut(conn, own):
        restore(conn, own)
        other = make_engine(pg_url)
        with other.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": conn.connection.dbapi_connection.info.backend_pid})
        other.dispose()

    monkeypatch.setattr(migrate, "_restore_own_objects", cut)
    with pytest.raises(DatabaseError, match="terminating connection .*; it was left as it was, at revision 0001"):
        open_database(pg_url)
    monkeypatch.setattr(migrate, "_restore_own_objects", restore)
    engine = make_engine(pg_url)
    assert current_revision(engine) == "0001"
    assert [{k: r[k] for k in written["tracks"][0]} for r in table_rows(engine, "tracks")] == written["tracks"]
    engine.dispose()
    db = open_database(pg_url)
    assert current_revision(db.engine) == head_revision()
    db.close()


def test_the_scan_lock_outlives_a_servers_idle_session_timeout(pg_url):
    """A DBA's ``idle_session_timeout`` (PostgreSQL 14+) ended the scan lock's connection, idle
    between the scan's commits, and the lock with it: a second scan started then took the lock and
    the first stopped at its next commit. The lock's connection now opts out of that timeout."""
    import time

    from sqlalchemy.engine import make_url

    from tagger.db.lock import DatabaseBusy, postgres_scan_lock

    engine = make_engine(pg_url)
    if engine.dialect.server_version_info is None:
        engine.connect().close()
    if engine.dialect.server_version_info < (14,):
        pytest.skip("idle_session_timeout is PostgreSQL 14's")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        # (2 s: each lock's connection is idle a moment before it opts out, a moment that 500 ms left
        # a loaded machine little room for; the lock is then held idle for longer than that)
        c.exec_driver_sql(f'ALTER DATABASE "{make_url(pg_url).database}" SET idle_session_timeout = 2000')
    engine.dispose()
    with postgres_scan_lock(pg_url):
        time.sleep(3.0)
        with pytest.raises(DatabaseBusy):
            with postgres_scan_lock(pg_url):
                pass


def test_a_postgres_server_that_never_answers_is_an_error_not_a_hang(monkeypatch):
    """A host that takes the TCP connection and then says nothing (a server hung, a firewall that
    drops the replies): libpq waits for ever by default, so every command hung. tagger sets a
    connect timeout (and TCP keepalives for connections cut later) unless the URL or PGCONNECT_TIMEOUT
    gives one; the command ends with one line naming the server."""
    import socket
    import threading

    from tagger.db import engine

    monkeypatch.setattr(engine, "PG_CONNECT_TIMEOUT_S", 2)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # (the kernel completes the handshake; nothing is ever read or sent)
    url = f"postgresql://tagger@127.0.0.1:{silent.getsockname()[1]}/library"
    outcome = []

    def connect():
        try:
            open_database(url)
        except DatabaseError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(60)
    silent.close()
    assert not worker.is_alive(), "opening the database hung on a server that never answers"
    assert len(outcome) == 1 and "127.0.0.1" in outcome[0] and "timeout" in outcome[0].lower(), outcome


@pytest.mark.parametrize(("query", "env", "expected"), [
    ("?keepalives_idle=9", None, 30),
    ("?keepalives_idle=9&connect_timeout=5", None, None),  # (the URL's own goes to libpq as it is)
    ("?keepalives_idle=9", "7", None),  # (libpq reads PGCONNECT_TIMEOUT itself)
])  # fmt: skip
def test_the_connect_timeout_and_keepalives_defer_to_the_users_settings(monkeypatch, query, env, expected):
    from sqlalchemy.engine import make_url

    from tagger.db.engine import libpq_defaults

    if env is None:
        monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("PGCONNECT_TIMEOUT", env)
    args = libpq_defaults(make_url(f"postgresql+psycopg://u@db.example/lib{query}"))
    assert args.get("connect_timeout") == expected
    assert "keepalives_idle" not in args  # the URL's own
    assert args["keepalives"] == 1 and args["tcp_user_timeout"] == 120_000 and args["client_encoding"] == "UTF8"
    assert libpq_defaults(make_url("postgresql+pg8000://u@db.example/lib")) == {"client_encoding": "UTF8"}


def test_step_0010_and_its_downgrade_on_postgres_too(pg_url):
    from test_db import check_audio_digest_step

    check_audio_digest_step(pg_url)


def test_step_0011_and_its_downgrade_on_postgres_too(pg_url):
    from test_db import check_written_ctime_step

    check_written_ctime_step(pg_url)


def test_step_0012_and_its_downgrade_on_postgres_too(pg_url):
    from test_db import check_decoding_step

    check_decoding_step(pg_url)


def test_the_query_sql_selects_the_same_tracks_on_postgres_and_sqlite(pg_url, tmp_path):
    """The filter's conditions and the query's reads are SQL text written once (`tagger.db.sql`),
    run by ``sqlite3`` on SQLite and by SQLAlchemy on PostgreSQL (there: a folder compared with
    ``substr``, the path in the ``C`` collation, the rows streamed in partitions): the same tracks,
    scores and stored results on both, for every filter."""
    import datetime as dt

    from tagger.db.filter import TrackFilter
    from tagger.db.queries import scored_families, stream_tracks, tracks_to_tag
    from tagger.db.session import Database, SqliteLibrary, open_for_reading
    from tagger.library.scan import scan

    root = tmp_path / "music"
    files = make_library(root)
    sqlite = str(tmp_path / "lib.db")
    for db in (sqlite, pg_url):
        database = open_database(db)
        try:
            scan([root], db=database, analyser=FakeAnalyser(), jobs=0)
        finally:
            database.close()
    filters = [{}, {"has": ["flute"], "lacks": ["bass"]}, {"has": ["bass"], "min_score": 0.5}, {"paths": [str(root / "sub")]},
               {"lacks": ["string"], "paths": [str(root / "sub"), files["duo.flac"]]}, {"path_glob": "*/sub/*"}]  # fmt: skip
    for flags in filters:
        where = TrackFilter.of(**flags)
        got = {}
        for db, kind in ((sqlite, SqliteLibrary), (pg_url, Database)):
            database = open_for_reading(db)
            try:
                assert isinstance(database, kind)
                listed = [t.to_dict() for t in stream_tracks(database, where=where, batch=2)]
                families = scored_families(database, where=where)
            finally:
                database.close()
            database = open_database(db)
            try:
                with database.session() as s:
                    to_tag = tracks_to_tag(s, where)
                    stored = {t.path: t.analysed_at for t in s.scalars(select(M.Track))}
            finally:
                database.close()
            assert all(isinstance(t.stored.analysed_at, dt.datetime) and t.stored.analysed_at == stored[t.path] for t in to_tag)
            got[kind] = (listed, families, [(t.path, t.instruments, t.scores, t.families) for t in to_tag])
        assert got[SqliteLibrary] == got[Database], flags
        assert got[Database][0] and [t["path"] for t in got[Database][0]] == [p for p, *_ in got[Database][2]], flags


def test_a_path_too_long_for_the_postgres_index_fails_alone(pg_url, tmp_path, fake_models):
    """PostgreSQL's B-tree index on ``tracks.path`` holds at most 2,704 bytes per entry (after
    compression); Linux allows paths of 4,095. A file under such a long path of varied names stopped
    the whole scan (``index row size 3... exceeds btree version 4 maximum 2704``), its batch lost, at
    every scan: the rest of the library was never stored. Now that file alone fails, named, nothing
    stored for it; a long path that compresses to fit is stored as on SQLite."""
    import random

    from conftest import tone_signal, write_audio

    rng = random.Random(0)
    root = tmp_path / "music"
    varied = root.joinpath(*("".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                                     for _ in range(240)) for _ in range(14)))  # fmt: skip
    repetitive = root.joinpath(*(c * 240 for c in "abcdefghijklmn"))
    paths = {}
    for name, folder, freq in (("short", root, 110.0), ("varied", varied, 1000.0), ("repetitive", repetitive, 4000.0)):
        folder.mkdir(parents=True, exist_ok=True)
        made = write_audio(tmp_path / f"{name}.flac", tone_signal([freq], seconds=5, sr=16000), sr=16000)
        paths[name] = str(folder / f"{name}.flac")
        shutil.move(str(made), paths[name])  # (libsndfile refuses to open so long a name itself)
    assert len(paths["varied"].encode()) > 3400 and len(paths["repetitive"].encode()) > 3400

    for _ in range(2):  # (the next scan the same: the failed file is tried again, the others unchanged)
        summary = json.loads(run("scan", str(root), "--db", pg_url, "--jobs", "0", "--no-write-tags", "--json", code=1))
        assert summary["failed"] == 1 and summary["scanned"] + summary["skipped"] == 2
        [(path, reason)] = [(e["path"], e["error"]) for e in summary["errors"]]
        assert path == paths["varied"]
        assert reason.startswith("the path is too long for the database to index (") and "move it to a shorter path" in reason
        assert run("query", "--db", pg_url, "--format", "paths").splitlines() == sorted([paths["repetitive"], paths["short"]])
        assert json.loads(run("errors", "--db", pg_url, "--json")) == []


def test_a_model_name_longer_than_postgres_holds_is_refused_by_name(pg_url, tmp_path):
    """``model_versions.version`` holds 200 characters and a family 40; SQLite stores longer ones,
    PostgreSQL refused the scan's first commit with ``value too long for type character
    varying(200)``, naming neither (``tagger combine`` without ``--version`` names a model after
    all its members' versions). Now the scan stops before anything is analysed, naming what is too
    long and how to shorten it, with commands that exist (was: ``tagger train average --version``,
    which is no command); the same model scans into SQLite as before."""
    from conftest import tone_signal, write_audio
    from library_fakes import BANDS
    from tagger.library.scan import scan

    write_audio(tmp_path / "music" / "a.flac", tone_signal([110.0], seconds=4.0))
    long_family = {**BANDS, "b" * 41: BANDS["bass"]}
    for analyser, what, n, most, how in ((FakeAnalyser(version="averaged-" + "+".join(["compact-mixture-20261207"] * 9)),
                                          "version name", 233, 200, "give the model a shorter one (tagger combine"),
                                         (FakeAnalyser(bands=long_family), "family name", 41, 40,
                                          "use a model whose family names are shorter")):  # fmt: skip
        db = open_database(pg_url)
        try:
            with pytest.raises(DatabaseError, match=f"the model's {what} .* is {n} characters long, and the "
                                                    f"postgresql database holds at most {most}: ") as refused:
                scan([tmp_path / "music"], db=db, analyser=analyser, jobs=0, on_track=None)
            assert how in str(refused.value)
            for command in re.findall(r"tagger (\w+) --version NAME", str(refused.value)):  # (each advised command exists)
                assert "--version" in CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output, command
            with db.session() as s:
                assert s.scalars(select(M.Track)).all() == [] and s.scalars(select(M.ModelVersion)).all() == []
        finally:
            db.close()
        lite = open_database(tmp_path / f"{n}.db")
        assert scan([tmp_path / "music"], db=lite, analyser=analyser, jobs=0).scanned == 1
        lite.close()


def test_a_read_only_role_meeting_an_older_schema_is_told_who_can_upgrade_it(pg_url):
    """A role that may read the library but not change its schema (``GRANT SELECT``), on a database
    of an older revision: every command tries the migration and stops; it said only the server's
    ``must be owner of table tracks``. It now says to run ``tagger db upgrade`` as the owner, after
    which that role reads the library."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from old_databases import write_database_at

    write_database_at(pg_url, "0005", tracks=3)
    role = f"reader_{uuid.uuid4().hex[:8]}"
    owner = make_url(pg_url)
    args = {"dbname": owner.database, "host": owner.host, "port": owner.port, "user": owner.username,
            "password": owner.password}  # fmt: skip
    try:
        with psycopg.connect(**{k: v for k, v in args.items() if v is not None}, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    except psycopg.Error as exc:
        pytest.skip(f"cannot create a role on this server: {exc}")
    reader = owner.set(username=role, password=None).render_as_string(hide_password=False)
    try:
        with pytest.raises(DatabaseError, match="must be owner of table tracks; it was left as it was, at revision 0005. "
                                                "The role this command connects as may not change the schema"):  # fmt: skip
            open_database(reader, create=False)
        engine = make_engine(pg_url)
        assert upgrade(engine) == head_revision()  # (the owner)
        engine.dispose()
        with psycopg.connect(**{k: v for k, v in args.items() if v is not None}, autocommit=True) as conn:
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")  # (the tables 0006.. rebuilt)
        assert len(run("query", "--db", reader, "--format", "paths").splitlines()) > 0
    finally:
        with psycopg.connect(**{k: v for k, v in args.items() if v is not None}, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")

"""Library databases as the tagger of an older schema revision left them, for the migration tests.

`write_database_at(url, revision, tracks=N)` migrates an empty database to `revision` (Alembic, as
that tagger did), then inserts N tracks the way that tagger stored them (analysed, failed, missing;
detections, segments and window scores of the analysed ones, where the revision has their table),
two model versions and a scan, with only the columns the revision has. It returns the rows written,
per table, as `table_rows` reads them back, plus the values each later revision gives the columns
it adds (`expected_at_head`), so a test compares every row after the upgrade.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import MetaData, Table, insert, inspect, select, text

from tagger.db.migrate import upgrade
from tagger.db.engine import make_engine

FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "vocal")
TABLES = ("model_versions", "scans", "tracks", "detections", "segments", "window_scores")

# (status, error, extension): a cycle of the tracks a library holds
KINDS = (
    ("ok", None, ".flac"),
    ("ok", None, ".MP3"),
    ("error", "cannot decode: invalid data found when processing input", ".ogg"),
    ("missing", None, ".m4a"),
    ("error", "the file disappeared while it was read", ".wav"),
    ("ok", None, ".mka"),  # a format without tags: 0007 marks it when its tags were recorded current
    ("error", "cannot stat: permission denied", ".opus"),
)
TRANSIENT = ("the file disappeared", "the file changed while", "cannot stat")
TAGGED_BY_0006 = (".mp3", ".wav", ".aif", ".aifc", ".aiff", ".dsf", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".m4b",
                  ".mp4", ".alac", ".wma", ".wv", ".ape", ".mpc")  # fmt: skip


def track_path(i: int) -> str:
    return f"/music/Ærtist {i % 5}/Álbum 'x'/{i:06d} – Trăck 100%_{i}{KINDS[i % len(KINDS)][2]}"


def _rows(n_tracks: int, *, detections_per_track: int = len(FAMILIES)) -> dict[str, list[dict]]:
    t0 = dt.datetime(2026, 11, 26, 10, 0, 0, 123456)
    models = [
        {"id": 1, "version": "compact-2026.11", "manifest_hash": "a" * 64, "families": json.dumps(FAMILIES),
         "thresholds": json.dumps({f: 0.5 for f in FAMILIES}), "aggregation": json.dumps({"top_k": 3}), "created_at": t0},
        {"id": 2, "version": "compact-2026.12", "manifest_hash": "b" * 64, "families": json.dumps(FAMILIES),
         "thresholds": json.dumps({f: 0.375 for f in FAMILIES}), "aggregation": "{}", "created_at": t0 + dt.timedelta(days=3)},
    ]  # fmt: skip
    scans = [{"id": 1, "started_at": t0, "finished_at": t0 + dt.timedelta(hours=1), "roots": json.dumps(["/music"]),
              "model_version_id": 2, "scanned": n_tracks, "skipped": 0, "failed": 3, "moved": 1, "missing": 1,
              "stale": 0, "audio_seconds": 123456.75}]  # fmt: skip
    tracks, detections, segments, window_scores = [], [], [], []
    for i in range(n_tracks):
        status, error, ext = KINDS[i % len(KINDS)]
        ok = status == "ok"
        when = t0 + dt.timedelta(seconds=i, microseconds=i % 1000)
        tracks.append({
            "id": i + 1, "path": track_path(i), "size": 3_000_000_000 + i, "mtime": 1_764_000_000.123456 + i,
            "fingerprint": f"{i:064x}", "duration": 180.0 + i / 7 if status != "error" else None,
            "format": ext[1:].lower(), "sample_rate": 44100 if i % 2 else 48000, "channels": 2, "status": status,
            "error": error, "windows": 45 if ok else 0, "silent_windows": i % 3 if ok else 0,
            "model_version_id": (1 if i % 4 == 0 else 2) if ok else None, "scan_id": 1 if i % 3 else None,
            "first_seen_at": when, "analysed_at": when if ok else None, "updated_at": when + dt.timedelta(minutes=1),
            # the columns of later revisions, as the tagger of that revision wrote them
            "missing_since": when + dt.timedelta(minutes=2) if status == "missing" else None,
            "tags_current": ok and i % 2 == 1 or ext == ".mka", "error_transient": bool(error and error.startswith(TRANSIENT)),
            "content_hash": f"{i:064x}"[::-1] if ok else None, "rewrite_hash": f"{i + 7:064x}" if i % 11 == 5 else None,
            "untaggable_formats": "v2:flac,mp3" if ext == ".mka" else None,
        })  # fmt: skip
        if not ok:
            continue
        for k, family in enumerate(FAMILIES[:detections_per_track]):
            score = ((i * 397 + k * 131) % 1000) / 999 + 1e-9 * k
            detections.append({"id": len(detections) + 1, "track_id": i + 1, "family": family, "present": score >= 0.5,
                               "score": score, "coverage": ((i + k) % 10) / 9})  # fmt: skip
            if score >= 0.5:
                segments.append({"id": len(segments) + 1, "track_id": i + 1, "family": family,
                                 "start": 4.0 * (k % 3), "end": 4.0 * (k % 3) + 12.5})  # fmt: skip
        window_scores.append({"track_id": i + 1, "families": json.dumps(FAMILIES), "window_seconds": 4.0, "n_windows": 3,
                              "starts": bytes(range(i % 7, i % 7 + 12)), "scores": bytes([i % 256, 0, 0x7E, 0xFF] * 15)})  # fmt: skip
    return {"model_versions": models, "scans": scans, "tracks": tracks, "detections": detections, "segments": segments,
            "window_scores": window_scores}  # fmt: skip


def expected_at_head(written: dict[str, list[dict]], revision: str) -> dict[str, list[dict]]:
    """The rows `written` at `revision` should be after the upgrade to head: the same values, and in
    each column a later revision added, what that revision's migration gives it."""
    out = {table: [dict(r) for r in rows] for table, rows in written.items()}
    out.setdefault("window_scores", [])
    for t in out["tracks"]:
        if revision < "0002":
            t["missing_since"] = t["updated_at"] if t["status"] == "missing" else None
        if revision < "0004":
            t["tags_current"] = False
            t["error_transient"] = t["status"] == "error" and (t["error"] or "").startswith(TRANSIENT)
        if revision < "0005":
            t["content_hash"] = None
        if revision < "0006":
            t["rewrite_hash"] = None
        if revision < "0007":
            tagged = t["path"].lower().endswith(TAGGED_BY_0006)
            t["untaggable_formats"] = "0006" if t["tags_current"] and not tagged else None
        t["ctime_ns"] = None  # (the rows written hold none of these: what 0008 to 0012 give the old tracks)
        t["analysed_in_part"] = None
        t["audio_digest"] = None
        t["written_ctime_ns"] = None
        t["decoding"] = None
    return out


def write_database_at(url: str, revision: str, *, tracks: int = 14, detections_per_track: int = len(FAMILIES),
                      chunk: int = 5000) -> dict[str, list[dict]]:  # fmt: skip
    """Make the database at `url` (empty) a library at schema `revision` holding `tracks` tracks;
    returns the rows written per table (only the columns the revision has)."""
    engine = make_engine(url)
    try:
        upgrade(engine, revision=revision)
        tables = set(inspect(engine).get_table_names())
        rows = {t: r for t, r in _rows(tracks, detections_per_track=detections_per_track).items() if t in tables}
        with engine.begin() as conn:
            for table, table_rows in rows.items():
                old = Table(table, MetaData(), autoload_with=conn)  # the table as that revision made it
                rows[table] = [{k: v for k, v in r.items() if k in old.c} for r in table_rows]
                for start in range(0, len(rows[table]), chunk):
                    conn.execute(insert(old), rows[table][start : start + chunk])
                if conn.dialect.name == "postgresql" and "id" in old.c and rows[table]:
                    # the rows came with their ids: the sequence goes on after them, as after the tagger's inserts
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
        return rows
    finally:
        engine.dispose()


def table_rows(engine, table: str) -> list[dict]:
    """Every row of `table` (the columns it has), ordered by its key, with their types (datetimes,
    booleans, bytes)."""
    with engine.connect() as conn:
        t = Table(table, MetaData(), autoload_with=conn)
        return [dict(r._mapping) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]


def check_upgraded(url, written, revision, *, cli_db=None, schema_as_ours=True):
    """The database at `url` holding `written` at `revision`, opened by a command (which upgrades it):
    every row is there with its values, the checks of SQLite are clean, query and show answer from it."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.db import models as M
    from tagger.db.migrate import current_revision, head_revision

    runner = CliRunner()
    cli_db = cli_db or url
    r = runner.invoke(app, ["stats", "--db", cli_db])
    assert r.exit_code == 0, r.output
    expected = expected_at_head(written, revision)
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        for table in TABLES:  # (the columns a user added left out)
            assert [{k: r[k] for k in row} for r, row in zip(table_rows(engine, table), expected[table])] == expected[table]
            assert len(table_rows(engine, table)) == len(expected[table]), table
        with engine.connect() as conn:
            if schema_as_ours:
                assert compare_metadata(MigrationContext.configure(conn), M.Base.metadata) == []
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        engine.dispose()
    tracks = {t["id"]: t for t in expected["tracks"]}
    with_bass = {tracks[d["track_id"]]["path"]: d["score"] for d in expected["detections"] if d["family"] == "bass" and d["present"]}
    r = runner.invoke(app, ["query", "--has", "bass", "--format", "json", "--db", cli_db])
    assert r.exit_code == 0, r.output
    assert {row["path"]: row["scores"]["bass"] for row in json.loads(r.output)} == with_bass and with_bass
    r = runner.invoke(app, ["show", track_path(0), "--json", "--db", cli_db])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["status"] == "ok" and shown["model_version"] == "compact-2026.11"
    assert [(f["family"], f["present"], f["score"], f["coverage"]) for f in shown["families"]] == [
        (d["family"], d["present"], d["score"], d["coverage"]) for d in expected["detections"] if d["track_id"] == 1
    ]


def measure(url: str, tracks: int) -> None:
    """Build a library of `tracks` tracks at revision 0001 at `url`, then upgrade it one step at a
    time, printing each step's time and Python memory peak."""
    import time
    import tracemalloc

    t = time.perf_counter()
    write_database_at(url, "0001", tracks=tracks)
    print(f"{tracks} tracks written at revision 0001 in {time.perf_counter() - t:.1f} s", flush=True)
    engine = make_engine(url)
    for revision in ("0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0012"):
        tracemalloc.start()
        t = time.perf_counter()
        upgrade(engine, revision=revision)
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"step {revision}: {seconds:.2f} s, Python memory peak {peak / 1e6:.1f} MB", flush=True)
    engine.dispose()


if __name__ == "__main__":  # python tests/old_databases.py FILE_OR_URL TRACKS (an empty or new database)
    import sys

    from tagger.db.urls import as_url

    measure(as_url(sys.argv[1]), int(sys.argv[2]))

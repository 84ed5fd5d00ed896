"""`tagger query|show|stats|errors|db prune` on a scanned library: every output format, stable JSON."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from library_fakes import BROKEN, EXPECTED, FakeAnalyser, make_library
from tagger.instruments import FAMILIES
from tagger.cli import app
from tagger.db.session import open_database
from tagger.library.scan import scan


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("q") / "music"
    files = make_library(root)
    db_path = root.parent / "lib.db"
    database = open_database(db_path)
    scan([root], db=database, analyser=FakeAnalyser(), jobs=0)
    database.close()
    return str(db_path), files


def run(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def expected_paths(files, pred) -> list[str]:
    return sorted(files[rel] for rel, fams in EXPECTED.items() if pred(set(fams)))


@pytest.mark.parametrize(
    ("flags", "pred"),
    [
        (["--has", "flute"], lambda f: "flute" in f),
        (["--has", "flute", "--has", "string"], lambda f: {"flute", "string"} <= f),
        (["--has", "bass", "--lacks", "string"], lambda f: "bass" in f and "string" not in f),
        (["--lacks", "bass", "--lacks", "flute", "--lacks", "string"], lambda f: not f),
        ([], lambda f: True),
    ],
)
def test_query_conditions(scanned, flags, pred):
    db, files = scanned
    out = run("query", "--db", db, *flags, "--format", "paths")
    assert out.splitlines() == expected_paths(files, pred)


def test_query_json_is_documented_shape(scanned):
    db, files = scanned
    rows = json.loads(run("query", "--db", db, "--has", "bass", "--format", "json"))
    assert [r["path"] for r in rows] == expected_paths(files, lambda f: "bass" in f)
    for r in rows:
        assert set(r) == {"path", "duration", "format", "instruments", "scores", "model_version", "stale", "analysed_in_part"}
        assert r["analysed_in_part"] is None
        assert list(r["scores"]) == ["bass", "flute", "string"]
        assert r["model_version"] == "fake-1" and r["stale"] is False
        assert "bass" in r["instruments"] and r["scores"]["bass"] >= 0.5
    trio = next(r for r in rows if r["path"].endswith("trio.ogg"))
    assert trio["instruments"] == ["bass", "flute", "string"] and trio["format"] == "OGG"
    assert trio["duration"] == pytest.approx(8.0, abs=0.05)


def test_query_csv(scanned):
    db, files = scanned
    rows = list(csv.DictReader(io.StringIO(run("query", "--db", db, "--has", "string", "--format", "csv"))))
    assert [r["path"] for r in rows] == expected_paths(files, lambda f: "string" in f)
    assert set(rows[0]) == {"path", "duration", "format", "instruments", "model_version", "stale",
                            "score_bass", "score_flute", "score_string"}  # fmt: skip
    trio = next(r for r in rows if r["path"].endswith("trio.ogg"))
    assert trio["instruments"] == "bass;flute;string" and float(trio["score_string"]) >= 0.5


def test_query_table(scanned):
    db, files = scanned
    lines = run("query", "--db", db, "--has", "flute", "--lacks", "bass").splitlines()
    assert lines[0].split() == ["PATH", "LENGTH", "INSTRUMENTS"]
    body = {line.split()[0]: line for line in lines[1:]}
    assert sorted(body) == expected_paths(files, lambda f: "flute" in f and "bass" not in f)
    assert "0:06" in body[files["sub/flute.m4a"]] and body[files["more/flute_string.aiff"]].endswith("flute, string")


def test_query_output_never_replaces_a_users_music_or_picture(scanned, tmp_path):
    """`query -o` wrote the track list over whatever file had the name, a song included. An earlier
    track list is replaced whole; a binary file (audio, a picture) or a folder is
    refused and left as it was."""
    db, files = scanned
    song = files["sub/flute.m4a"]
    before = open(song, "rb").read()
    for target in (song, str(tmp_path)):
        r = CliRunner().invoke(app, ["query", "--db", db, "--format", "m3u", "--output", target])
        assert r.exit_code == 1 and target in r.output and "Traceback" not in r.output, r.output
    assert open(song, "rb").read() == before
    old = tmp_path / "old.m3u"
    old.write_text("#EXTM3U\n#EXTINF:1,x\n/gone/x.flac\n" * 50, encoding="utf-8")
    r = CliRunner().invoke(app, ["query", "--db", db, "--has", "flute", "--format", "m3u", "--output", str(old)])
    assert r.exit_code == 0, r.output
    assert "/gone/x.flac" not in old.read_text(encoding="utf-8")  # replaced whole, no tail of the longer old list


def test_query_output_dash_is_stdout(scanned, tmp_path, monkeypatch):
    """`query -o -` wrote a file named '-' in the current folder (found by the red team), where
    curl, wget, sort and most tools read '-' as stdout. It is stdout; './-' is still a file."""
    db, files = scanned
    monkeypatch.chdir(tmp_path)
    out = run("query", "--db", db, "--has", "flute", "--format", "paths", "-o", "-")
    assert sorted(out.splitlines()) == expected_paths(files, lambda f: "flute" in f)
    assert not (tmp_path / "-").exists()
    run("query", "--db", db, "--has", "flute", "--format", "paths", "-o", "./-")
    assert sorted((tmp_path / "-").read_text().splitlines()) == expected_paths(files, lambda f: "flute" in f)


def test_query_output_without_format_takes_its_extensions(scanned, tmp_path):
    """`tagger query --has flute -o flute.m3u` without --format wrote a table (a header, padded
    columns) into the playlist, which no player reads (found by the review of the -o refusals).
    Without --format the extension chooses: .m3u/.m3u8 an M3U, .csv a CSV, .json JSON; any other
    name, and stdout, a table; --format given wins."""
    db, files = scanned
    flute = expected_paths(files, lambda f: "flute" in f)
    for name in ("flute.m3u", "flute.M3U8"):
        run("query", "--db", db, "--has", "flute", "-o", str(tmp_path / name))
        lines = (tmp_path / name).read_text(encoding="utf-8").splitlines()
        assert lines[0] == "#EXTM3U" and sorted(x for x in lines if not x.startswith("#")) == flute
    run("query", "--db", db, "--has", "flute", "-o", str(tmp_path / "flute.json"))
    assert sorted(t["path"] for t in json.loads((tmp_path / "flute.json").read_text())) == flute
    run("query", "--db", db, "--has", "flute", "-o", str(tmp_path / "flute.csv"))
    assert (tmp_path / "flute.csv").read_text().splitlines()[0].startswith("path,")
    run("query", "--db", db, "--has", "flute", "-o", str(tmp_path / "flute.txt"))
    assert (tmp_path / "flute.txt").read_text() == run("query", "--db", db, "--has", "flute")
    run("query", "--db", db, "--has", "flute", "--format", "paths", "-o", str(tmp_path / "paths.m3u"))
    assert sorted((tmp_path / "paths.m3u").read_text().splitlines()) == flute


def test_query_output_replaces_a_track_list_but_no_other_text(scanned, tmp_path):
    """Any text file passed for an earlier list: `query -o notes.txt` (or an album's cue sheet, a
    `desktop.ini`) replaced the user's file with the list. Only text that begins as a track list
    does may be replaced: each format's output by each other's, an extended M3U of another player,
    a list of absolute paths, a JSON list, after a byte-order mark too."""
    db, _files = scanned
    theirs = {"notes.txt": "remember the milk\n", "album.cue": 'PERFORMER "x"\nFILE "a.flac" WAVE\n',
              "desktop.ini": "[.ShellClassInfo]\nIconResource=x\n", "run.sh": "#!/bin/sh\nrm -rf /\n"}  # fmt: skip
    for name, text in theirs.items():
        (tmp_path / name).write_text(text)
        r = CliRunner().invoke(app, ["query", "--db", db, "--format", "m3u", "--output", str(tmp_path / name)])
        assert r.exit_code == 1 and "tagger did not write" in r.output, r.output
        assert (tmp_path / name).read_text() == text
    formats = ("table", "json", "csv", "paths", "paths0", "m3u")
    for before in formats:
        for after in formats:
            out = tmp_path / f"{before}-{after}"
            for fmt in (before, after):
                r = CliRunner().invoke(app, ["query", "--db", db, "--format", fmt, "--output", str(out)])
                assert r.exit_code == 0, (before, after, r.output)
    for text in ("\ufeff#EXTM3U\n#EXTINF:-1,x\nx.mp3\n", "/music/a.flac\n", "[\n  {}\n]\n", "[]"):
        (tmp_path / "other").write_text(text, encoding="utf-8")
        r = CliRunner().invoke(app, ["query", "--db", db, "--format", "paths", "--output", str(tmp_path / "other")])
        assert r.exit_code == 0, (text, r.output)


def test_query_output_and_show_plot_never_replace_the_databases_own_files(scanned, tmp_path):
    """`query -o library.db.lock` replaced the scan lock, a file of text (a PID) that the output's check
    took for an earlier list: every later scan then refused the lock as another program's file, and a
    scan running meanwhile no longer held the lock a second scan opens. The database, its scan lock,
    write-ahead log, shared memory and rollback journal are refused by name, whatever they hold (an
    empty log, a lock not there yet), also through `..` in the folder's name; `show --plot` likewise."""
    db, files = scanned
    copy = tmp_path / "lib.db"
    copy.write_bytes(Path(db).read_bytes())
    lock = tmp_path / "lib.db.lock"
    lock.write_text("4242\n")
    (tmp_path / "sub").mkdir()
    for target, kind in ((lock, "scan lock"), (tmp_path / "lib.db-wal", "write-ahead log"),
                         (tmp_path / "sub" / ".." / "lib.db-journal", "rollback journal"), (copy, "library database")):  # fmt: skip
        r = CliRunner().invoke(app, ["query", "--db", str(copy), "--format", "paths", "--output", str(target)])
        assert r.exit_code == 1 and f"is the {kind}" in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(app, ["show", "--db", str(copy), files["sub/flute.m4a"], "--plot", str(lock)])
    assert r.exit_code == 1 and "is the scan lock" in r.output, r.output
    assert lock.read_text() == "4242\n"
    assert not (tmp_path / "lib.db-wal").exists() and not (tmp_path / "lib.db-journal").exists()
    assert Path(db).read_bytes() == copy.read_bytes()


def test_query_m3u_playlist(scanned, tmp_path):
    db, files = scanned
    out = tmp_path / "flute.m3u"
    CliRunner().invoke(app, ["query", "--db", db, "--has", "flute", "--format", "m3u", "--output", str(out)])
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    entries = list(zip(lines[1::2], lines[2::2]))
    assert [p for _, p in entries] == expected_paths(files, lambda f: "flute" in f)
    for extinf, path in entries:
        assert extinf.startswith("#EXTINF:") and os.path.isfile(path)
        seconds, title = extinf[len("#EXTINF:") :].split(",", 1)
        assert int(seconds) > 0 and title == os.path.splitext(os.path.basename(path))[0]


def test_query_min_score_and_path_glob(scanned):
    db, files = scanned
    all_bass = run("query", "--db", db, "--has", "bass", "--format", "paths").split()
    assert run("query", "--db", db, "--has", "bass", "--min-score", "1", "--format", "paths") == ""
    assert run("query", "--db", db, "--has", "bass", "--min-score", "0.5", "--format", "paths").split() == all_bass
    sub = run("query", "--db", db, "--path-glob", "*/sub/*", "--format", "paths").split()
    assert sub == sorted(p for rel, p in files.items() if rel.startswith("sub/") and rel != BROKEN)
    assert run("query", "--db", db, "--path-glob", "*.flac", "--format", "paths").split() == [files["duo.flac"]]


def test_a_path_glob_through_a_symbolic_link_selects_the_tracks_stored_under_the_real_folder(scanned, tmp_path):
    """A scan stores each track under the real path of its folders, so `--path-glob "$HOME/Music/*"`
    with ~/Music a link to another disk selected nothing (a missing answer, in silence); the glob's
    folder part (what comes before its first wildcard) is now also tried with its links resolved."""
    db, files = scanned
    real = os.path.dirname(files["duo.flac"])
    link = tmp_path / "Music"
    link.symlink_to(real, target_is_directory=True)
    through_link = run("query", "--db", db, "--path-glob", f"{link}/*", "--format", "paths").split()
    assert through_link == run("query", "--db", db, "--path-glob", f"{real}/*", "--format", "paths").split()
    assert files["duo.flac"] in through_link
    sub = run("query", "--db", db, "--path-glob", f"{link}/sub/*", "--format", "paths").split()
    assert sub == sorted(p for rel, p in files.items() if rel.startswith("sub/") and rel != BROKEN)
    assert run("query", "--db", db, "--path-glob", f"{link}/*.flac", "--format", "paths").split() == [files["duo.flac"]]
    assert run("query", "--db", db, "--path-glob", f"{tmp_path}/Musi?/*", "--format", "paths") == ""  # (a wildcard in the folder: as written)


def test_query_rejects_unknown_family_and_format(scanned):
    db, _ = scanned
    r = CliRunner().invoke(app, ["query", "--db", db, "--has", "kazoo"])
    assert r.exit_code == 1 and "unknown instrument family 'kazoo'" in r.output
    r = CliRunner().invoke(app, ["query", "--db", db, "--format", "xml"])
    assert r.exit_code == 1 and "unknown format" in r.output
    for command in (["query"], ["tag", "--dry-run"]):  # was: every track, or none, in silence
        r = CliRunner().invoke(app, [*command, "--db", db, "--min-score", "0.9"])
        assert r.exit_code == 1 and "give --has FAMILY with it" in r.output, r.output
        r = CliRunner().invoke(app, [*command, "--db", db, "--has", "bass", "--min-score", "nan"])
        assert r.exit_code == 1 and "--min-score must be a number, got nan" in r.output, r.output


def test_show_text_and_json(scanned):
    db, files = scanned
    d = json.loads(run("show", "--db", db, files["sub/string.mp3"], "--json"))
    assert d["path"] == files["sub/string.mp3"] and d["status"] == "ok" and d["instruments"] == ["string"]
    assert [f["family"] for f in d["families"]] == ["bass", "flute", "string"]
    string = d["families"][2]
    assert string == {"family": "string", "present": True, "score": string["score"], "coverage": 1.0,
                      "segments": [[0.0, 8.0]]}  # fmt: skip
    assert {"size", "mtime", "fingerprint", "duration", "sample_rate", "channels", "windows", "silent_windows",
            "model_version", "stale", "analysed_at", "error"} <= set(d)  # fmt: skip
    text = run("show", "--db", db, files["sub/string.mp3"])
    assert "instruments: string" in text and "0:00-0:08" in text
    rel = os.path.relpath(files["duo.flac"])
    assert json.loads(run("show", "--db", db, rel, "--json"))["instruments"] == ["bass", "flute"]
    r = CliRunner().invoke(app, ["show", "--db", db, "/nowhere/x.mp3"])
    assert r.exit_code == 1 and "not in the library database, and no such file" in r.output
    # a folder of the library is no track (it said to scan the folder, scanned already)
    folder = os.path.dirname(files["sub/string.mp3"])
    for extra in ([], ["--plot", os.path.join(os.path.dirname(db), "t.png")]):
        r = CliRunner().invoke(app, ["show", "--db", db, folder, *extra])
        assert (r.exit_code, r.output) == (1, f"tagger: error: {folder}: is a folder; give one of its files "
                                              f"(`tagger query --path-glob '{folder}/*'` lists its tracks)\n"), r.output  # fmt: skip


def test_stats(scanned):
    db, _ = scanned
    st = json.loads(run("stats", "--db", db, "--json"))
    counts = {f: sum(f in fams for fams in EXPECTED.values()) for f in ("bass", "flute", "string")}
    assert st["families"] == counts
    assert st["tracks"] == {"total": len(EXPECTED) + 1, "ok": len(EXPECTED), "error": 1, "missing": 0, "stale": 0,
                            "no_instrument": 1}  # fmt: skip
    co = st["cooccurrence"]
    both = sum({"flute", "string"} <= set(f) for f in EXPECTED.values())
    assert co["flute"]["string"] == co["string"]["flute"] == both
    assert all(co[f][f] == counts[f] for f in counts)
    assert st["audio_seconds"] == pytest.approx(63.0, abs=0.4)
    assert st["model_versions"] == [{"version": "fake-1", "manifest_hash": "hash-fake-1", "tracks": len(EXPECTED)}]
    text = run("stats", "--db", db)
    assert f"tracks: {len(EXPECTED) + 1} ({len(EXPECTED)} analysed, 1 failed" in text


def test_errors(scanned):
    db, files = scanned
    rows = json.loads(run("errors", "--db", db, "--json"))
    assert [r["path"] for r in rows] == [files[BROKEN]]
    assert rows[0]["error"] and set(rows[0]) == {"path", "error", "when"}
    assert run("errors", "--db", db).startswith(files[BROKEN] + ": ")


def test_show_of_a_file_that_failed_says_not_analysed(scanned):
    """`tagger show` of a file that could not be analysed said `instruments: (none)`, as of a track
    listened to and found without any (found walking through the README)."""
    db, files = scanned
    text = run("show", "--db", db, files[BROKEN])
    assert "  status: error (" in text and "  instruments: (not analysed)" in text and "(none)" not in text
    assert "  instruments: (none)" not in run("show", "--db", db, files["sub/string.mp3"])


def test_tag_of_a_file_that_failed_says_so_not_scan_it_first(scanned):
    """`tagger tag ~/Music/empty.mp3`, a file the scan found unreadable, said `no analysed track matches
    under ...: scan it first (or check the filter)`, of a file scanned already (found walking through
    the README with a 0-byte .mp3). It names the file and the scan's reason; a filter that selects
    nothing says what it said."""
    db, files = scanned
    broken = files[BROKEN]
    r = CliRunner().invoke(app, ["tag", broken, "--db", db, "--dry-run"])
    error = run("errors", "--db", db, "--json")
    reason = json.loads(error)[0]["error"]
    assert (r.exit_code, r.stderr) == (1, f"tagger: error: no analysed track under {broken}: {broken} could not be "
                                          f"analysed: {reason}; `tagger scan --retry-errors` tries again\n")  # fmt: skip
    r = CliRunner().invoke(app, ["tag", broken, "--db", db, "--dry-run", "--has", "flute"])
    assert r.exit_code == 1 and "matches under" in r.stderr and "scan it first (or check the filter)" in r.stderr


def test_tag_of_a_file_whose_name_says_no_audio_says_no_scan_stores_it(scanned, tmp_path):
    """`tagger tag ~/Music/notes.txt` said 'no analysed track matches under ...: scan it first', and
    `tagger scan ~/Music/notes.txt` answers 'not scanned: ... not an audio file (its name says so:
    .txt)' since f316081: each command sent the user to the other (found reviewing f316081). It
    says what the scan says, and that no scan stores it; a filter or another file named is as before."""
    db, _ = scanned
    notes, cover = tmp_path / "notes.txt", tmp_path / "Cover.JPG"
    notes.write_text("my notes\n")
    cover.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64))
    r = CliRunner().invoke(app, ["tag", str(notes), "--db", db, "--dry-run"])
    assert (r.exit_code, r.stderr) == (1, f"tagger: error: no analysed track under {notes}: {notes}: not an audio file "
                                          "(its name says so: .txt), which no scan stores\n")  # fmt: skip
    r = CliRunner().invoke(app, ["tag", str(notes), str(cover), "--db", db, "--dry-run"])
    assert r.exit_code == 1 and r.stderr.endswith(f"{notes}: not an audio file (its name says so: .txt); {cover}: not an "
                                                  "audio file (its name says so: .jpg), which no scan stores\n"), r.stderr  # fmt: skip
    r = CliRunner().invoke(app, ["tag", str(notes), "--db", db, "--dry-run", "--has", "flute"])
    assert r.exit_code == 1 and "scan it first (or check the filter)" in r.stderr, r.stderr
    song = tmp_path / "new.flac"
    song.write_bytes(b"fLaC" + bytes(60))
    r = CliRunner().invoke(app, ["tag", str(notes), str(song), "--db", db, "--dry-run"])
    assert r.exit_code == 1 and "scan it first (or check the filter)" in r.stderr, r.stderr


def test_tag_of_a_failed_file_named_with_its_folder_among_many_paths_counts_it_once(tmp_path):
    """`tagger tag` of a failed file, 250 other files and the file's folder (more paths than one
    statement holds, `tagger.db.sql.PER_STATEMENT`): the file, under two of the paths asked for in
    two statements, came back twice from `queries.failed_under`, and the error said '2 files there
    could not be analysed' of one file. It names the file, as for the file alone."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp3").write_bytes(b"")
    others = tmp_path / "others"
    others.mkdir()
    names = [others / f"{i:03d}.flac" for i in range(250)]
    for name in names:
        name.write_bytes(b"")
    db_path = tmp_path / "library.db"
    db = open_database(db_path)
    try:
        assert scan([bad], db=db, analyser=FakeAnalyser(), jobs=0).failed == 1
    finally:
        db.close()
    r = CliRunner().invoke(app, ["tag", "--db", str(db_path), "--dry-run", str(bad / "empty.mp3"), *map(str, names), str(bad)])
    assert r.exit_code == 1, r.output
    assert f": {bad / 'empty.mp3'} could not be analysed: " in r.stderr and "2 files" not in r.stderr, r.stderr


def test_a_query_table_that_selects_nothing_says_so_on_stderr(scanned, tmp_path):
    """`tagger query --has vocal` selecting no track printed nothing at all, not even the table's
    header: a new user could not tell an empty answer from a command that did nothing (found walking
    through the README). The table says so on stderr; the formats a script reads stay empty."""
    db, _ = scanned
    r = CliRunner().invoke(app, ["query", "--db", db, "--has", "flute", "--path-glob", "*/nowhere/*"])
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == "no analysed track matches these conditions\n"
    r = CliRunner().invoke(app, ["query", "--db", db, "--has", "flute", "--path-glob", "*/nowhere/*", "-f", "paths"])
    assert r.exit_code == 0 and r.stdout == r.stderr == ""
    empty = str(tmp_path / "empty.db")
    assert CliRunner().invoke(app, ["db", "upgrade", "--db", empty]).exit_code == 0
    r = CliRunner().invoke(app, ["query", "--db", empty])
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == "no analysed track in the library database (tagger scan PATH analyses a folder)\n"


def test_a_query_of_a_database_holding_only_failed_files_says_so_not_to_scan(tmp_path):
    """A database whose every file failed (a scan of broken files, a beets library of them) was said
    to be empty, to be filled with `tagger scan PATH` (found red-teaming the reporting commands on a
    database holding only errors). The line counts the failed files and names `tagger errors`."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.wav", "b.mp3"):
        (bad / name).write_bytes(b"RIFF this is no audio " * 20)
    db_path = tmp_path / "library.db"
    db = open_database(db_path)
    try:
        assert scan([bad], db=db, analyser=FakeAnalyser(), jobs=0, settle_seconds=0).failed == 2
    finally:
        db.close()
    r = CliRunner().invoke(app, ["query", "--db", str(db_path)])
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == "no analysed track in the library database (2 file(s) could not be analysed: tagger errors lists them)\n"


def test_show_of_a_file_no_scan_stores_says_why_and_errors_says_when_none_failed(scanned, tmp_path):
    """`tagger show cover.jpg` (an album's cover, beside the tracks of a scanned folder) said `not in the library
    database (scan its folder with tagger scan)`, which a scan never changes; `tagger errors` with no
    failed file printed nothing at all (found walking through the README)."""
    db, _ = scanned
    cover = tmp_path / "album" / "cover.jpg"
    cover.parent.mkdir()
    cover.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64))
    r = CliRunner().invoke(app, ["show", "--db", db, str(cover)])
    assert r.exit_code == 1
    assert r.stderr == (f"tagger: error: {cover}: not in the library database: not an audio file tagger reads "
                        f"(by its name and first bytes), so no scan stores it\n")  # fmt: skip
    song = cover.parent / "new.flac"  # (an audio file not scanned yet: as before)
    song.write_bytes(b"fLaC" + bytes(60))
    r = CliRunner().invoke(app, ["show", "--db", db, str(song)])
    assert r.exit_code == 1 and "(scan its folder with `tagger scan`)" in r.stderr
    # (one in a hidden folder, or hidden itself, outside every folder scanned: no scan passed it over,
    # its folder is to scan as the new song's is; one a scan passed over: the test after this one)
    for hidden in (tmp_path / "album" / ".hidden" / "sub" / "x.flac", cover.parent / ".y.flac"):
        hidden.parent.mkdir(parents=True, exist_ok=True)
        hidden.write_bytes(b"fLaC" + bytes(60))
        r = CliRunner().invoke(app, ["show", "--db", db, str(hidden)])
        assert (r.exit_code, r.stderr) == (1, f"tagger: error: {hidden}: not in the library database (scan its folder "
                                              "with `tagger scan`)\n")  # fmt: skip
    empty = str(tmp_path / "empty.db")
    assert CliRunner().invoke(app, ["db", "upgrade", "--db", empty]).exit_code == 0
    r = CliRunner().invoke(app, ["errors", "--db", empty])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == "no file in the library database failed to be analysed\n"
    r = CliRunner().invoke(app, ["errors", "--db", empty, "--json"])
    assert r.exit_code == 0 and r.stdout == "[]\n" and r.stderr == ""


def test_show_of_a_new_file_of_a_library_inside_a_hidden_folder_says_to_scan_it(tmp_path):
    """A song in a hidden folder of a library (`~/Music/.hidden`), or hidden itself, which the scan of
    the library passed over without --include-hidden, is named so (ad79e27; `show --plot` alike). A
    library under a hidden folder, scanned by its name (`tagger scan ~/.local/Music`, which enters it
    and passes over only hidden names below it): `show` of a song added since said 'in the hidden
    folder ~/.local, which a scan of a folder above it passes over without --include-hidden', of a
    file the next scan of the library analyses, and named ~/.local for one in ~/.local/Music/.h
    (found reviewing ad79e27 with a library under ~/.local). It says to scan the new song's folder,
    and names the hidden folder below the scanned one."""
    from conftest import tone_signal, write_audio

    lib = tmp_path / ".local" / "Music"
    write_audio(lib / "a.flac", tone_signal([220.0], seconds=1.0))
    db_path = tmp_path / "library.db"
    db = open_database(db_path)
    try:
        assert scan([lib], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 1
    finally:
        db.close()
    new, hid, dot = lib / "new.flac", lib / ".h" / "x.flac", lib / ".y.flac"
    for song in (new, hid, dot):
        write_audio(song, tone_signal([220.0], seconds=1.0))
    r = CliRunner().invoke(app, ["show", "--db", str(db_path), str(new)])
    assert (r.exit_code, r.stderr) == (1, f"tagger: error: {new}: not in the library database (scan its folder with "
                                          "`tagger scan`)\n")  # fmt: skip
    r = CliRunner().invoke(app, ["show", "--db", str(db_path), str(hid)])
    assert (r.exit_code, r.stderr) == (1, f"tagger: error: {hid}: not in the library database: in the hidden folder "
                                          f"{lib / '.h'}, which a scan of a folder above it passes over without "
                                          "--include-hidden\n")  # fmt: skip
    r = CliRunner().invoke(app, ["show", "--db", str(db_path), str(dot), "--plot", str(tmp_path / "t.png")])
    assert (r.exit_code, r.stderr) == (1, f"tagger: error: {dot}: not in the library database: a hidden file, which a "
                                          "scan of a folder above it passes over without --include-hidden\n")  # fmt: skip


def test_a_stale_track_is_shown_as_stale_without_calling_its_models_older(tmp_path):
    """`show` said `(stale: analysed by an older model)` of a track the last scan's models did not
    analyse, which may be the older ones (a scan with --models of another folder, then none), and the
    query table printed ` (stale)` with a leading blank for a track without instruments (found
    walking through the README)."""
    root = tmp_path / "music"
    files = make_library(root)
    database = open_database(tmp_path / "lib.db")
    scan([root], db=database, analyser=FakeAnalyser(version="fake-2"), jobs=0)
    scan([root], db=database, analyser=FakeAnalyser(version="fake-1"), jobs=0, rescan_stale=False)
    database.close()
    db = str(tmp_path / "lib.db")
    text = run("show", "--db", db, files["sub/string.mp3"])
    assert "  model: fake-2  (stale: the last scan ran other models; a scan with them and --rescan-stale analyses it again)" in text
    head, *rows = run("query", "--db", db).splitlines()
    column = head.index("INSTRUMENTS")
    assert rows and all(r.endswith(" (stale)") for r in rows), rows
    bare = [r for r in rows if r[column:] == "(stale)"]  # (no instrument: the note where the column begins)
    assert bare and all(r[column - 2 : column] == "  " for r in bare), rows


def test_db_prune_removes_only_missing_tracks(tmp_path):
    from conftest import tone_signal, write_audio

    music = tmp_path / "m"
    a = write_audio(music / "a.wav", tone_signal([110.0], seconds=4.0))
    b = write_audio(music / "b.wav", tone_signal([1000.0], seconds=4.0))
    db = str(tmp_path / "p.db")
    database = open_database(db)
    scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
    b.unlink()
    scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
    database.close()
    assert json.loads(run("db", "prune", "--db", db, "--json")) == {"removed": [str(b)], "kept": [], "not_audio": []}
    assert run("query", "--db", db, "--format", "paths").split() == [str(a)]
    assert run("db", "prune", "--db", db) == "0 missing track(s) removed, 0 kept\n"


def test_db_prune_removes_the_failed_tracks_of_files_whose_names_say_they_hold_no_audio(tmp_path):
    """Scans before f316081 stored a failed track for a notes.txt or cover.jpg named on the command
    line (``tagger scan ~/Music/*``); scans leave such files out now, and nothing removed those
    tracks while the files stay: `tagger errors` listed them for ever. `db prune` removes them, and
    no other failed track (a broken .wav, an unknown name the scan sniffed)."""
    from sqlalchemy import insert

    from conftest import tone_signal, write_audio
    from tagger.db import tables as T

    music = tmp_path / "m"
    write_audio(music / "a.wav", tone_signal([110.0], seconds=4.0))
    (music / "broken.wav").write_bytes(b"RIFF nothing")
    db = str(tmp_path / "p.db")
    database = open_database(db)
    scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
    old = [music / "notes.txt", music / "Cover.JPG", music / "rip.dat"]  # (as older scans stored them)
    with database.session() as s:
        for path in old:
            path.write_bytes(b"not audio")
            s.execute(insert(T.tracks).values(path=str(path), size=9, mtime=path.stat().st_mtime, fingerprint="x",
                                              status=T.STATUS_ERROR, error="not a readable audio file"))  # fmt: skip
        s.commit()
    database.close()
    failed = [e["path"] for e in json.loads(run("errors", "--db", db, "--json"))]
    assert failed == sorted(map(str, [music / "broken.wav", *old])), failed
    out = run("db", "prune", "--db", db)
    assert out == ("0 missing track(s) removed, 0 kept; 2 failed track(s) of files whose names say they hold no audio "
                   "removed (--json names them)\n"), out  # fmt: skip
    failed = [e["path"] for e in json.loads(run("errors", "--db", db, "--json"))]
    assert failed == [str(music / "broken.wav"), str(music / "rip.dat")], failed
    assert json.loads(run("db", "prune", "--db", db, "--json")) == {"removed": [], "kept": [], "not_audio": []}
    assert all(path.exists() for path in old) and run("query", "--db", db, "--format", "paths").split() == [str(music / "a.wav")]


@pytest.mark.parametrize("command", [[], ["scan"], ["query"], ["show"], ["stats"], ["errors"], ["db"], ["db", "upgrade"], ["db", "prune"]])
def test_every_command_has_help(command):
    out = run(*command, "--help")
    assert "Usage:" in out


@pytest.mark.integration
def test_query_and_workers_do_not_import_tensorflow(scanned, tmp_path):
    db, files = scanned
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tagger.cli import app\n"
        f"r = CliRunner().invoke(app, ['query', '--db', {db!r}, '--has', 'bass', '--format', 'json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "from tagger.library.analyse import AnalysisConfig, analyse_file\n"
        "from tagger.features import FeatureConfig\n"
        f"msgs = list(analyse_file(0, {files['bass.wav']!r}, config=AnalysisConfig(features=FeatureConfig().to_dict())))\n"
        "assert msgs[-1].kind == 'done', msgs[-1]\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _detail_through_the_orm(session, path):
    """`track_detail` as it was read through the ORM (the reference of the Core reading)."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from tagger.db import models as M
    from tagger.db.queries import FamilyDetail, TrackDetail, _family_order, latest_model_version_id

    t = session.scalar(select(M.Track).where(M.Track.path == path)
                       .options(selectinload(M.Track.detections), selectinload(M.Track.segments)))  # fmt: skip
    order = _family_order(session)
    segs: dict = {}
    for g in sorted(t.segments, key=lambda g: g.start):
        segs.setdefault(g.family, []).append([g.start, g.end])
    ranked = sorted(t.detections, key=lambda d: order.get(d.family, len(order)))
    return TrackDetail(
        path=t.path, status=t.status, error=t.error, size=t.size, mtime=t.mtime, fingerprint=t.fingerprint,
        duration=t.duration, format=t.format, sample_rate=t.sample_rate, channels=t.channels, windows=t.windows,
        silent_windows=t.silent_windows, model_version=t.model_version.version if t.model_version else None,
        stale=t.status == M.STATUS_OK and t.model_version_id != latest_model_version_id(session),
        analysed_at=t.analysed_at.isoformat(timespec="seconds") + "Z" if t.analysed_at else None,
        instruments=[d.family for d in ranked if d.present],
        families=[FamilyDetail(d.family, bool(d.present), d.score, d.coverage, segs.get(d.family, [])) for d in ranked],
        analysed_in_part=t.analysed_in_part if t.status == M.STATUS_OK else None,
    )  # fmt: skip


def test_show_reads_without_the_orm_what_the_orm_read(scanned, tmp_path):
    """``tagger show`` reads its track with SQLAlchemy Core (the ORM's import and mapping were about
    80 ms of each run): every field of every track, failed ones and synthesised ones with segments
    included, as the ORM read them."""
    from sqlalchemy import select

    from benchmarks.bench import synth_database
    from tagger.db import tables as T
    from tagger.db.queries import track_detail

    statuses = set()
    for path in (scanned[0], str(synth_database(tmp_path / "lib.db", tracks=40, seed=3))):
        db = open_database(path)
        try:
            with db.session() as s:
                names = list(s.scalars(select(T.tracks.c.path)))
                want = [_detail_through_the_orm(s, name).to_dict() for name in names]
            with db.engine.connect() as conn:
                got = [track_detail(conn, path=name).to_dict() for name in names]
        finally:
            db.close()
        assert len(names) > 5 and got == want
        statuses |= {d["status"] for d in got}
    assert any(f["segments"] for d in got for f in d["families"]) and statuses >= {"ok", "error"}


def test_track_summary_to_dict_is_asdict():
    """`TrackSummary.to_dict` (the ``query --format json`` object) is built by hand for speed: it
    must stay `dataclasses.asdict`, every field in order, values copied."""
    import dataclasses

    from tagger.db.queries import TrackSummary

    t = TrackSummary(path="/m/a.flac", duration=1.5, format="FLAC", instruments=["bass"], scores={"bass": 0.9},
                     model_version="v1", stale=False)  # fmt: skip
    d = t.to_dict()
    assert list(d.items()) == list(dataclasses.asdict(t).items())
    d["instruments"].append("flute")
    d["scores"]["flute"] = 0.1
    assert t.instruments == ["bass"] and t.scores == {"bass": 0.9}


@pytest.mark.parametrize("value", [
    {}, {"a": []}, {"a": {}}, {"n": None, "t": True, "f": False, "i": -3, "big": 10**30},
    {"x": [0.1, -0.0, 1e300, 5e-324, float("nan"), float("inf"), float("-inf"), 2]},
    {"path": "/m/\x00\x1b\"\\\n\u00e9\ud800\U0001f3b5.flac", "scores": {"bass": 0.25, "b\u00e2ss": 1}},
    {"nested": [[1]]}, {"tuple": (1, 2)}, {1: 2}, {"a": {1: 2}}, {"a": {"b": {"c": 1}}},
])  # fmt: skip
def test_query_json_is_json_dumps_indented(value):
    """``query --format json`` writes each track with its own formatter (json's C encoder does not
    indent, and the Python one took a sixth of the whole process on 10,000 tracks): the same text as
    ``json.dumps(..., indent=1)`` for every value, escapes and numbers json writes its own way
    included; what it does not know (nested lists, tuples, other keys) goes to json.dumps."""
    from tagger.library.report import _json_indented

    assert _json_indented(value) == json.dumps(value, indent=1)


@pytest.mark.parametrize("flags", [[], ["--has", "flute", "--lacks", "vocal"], ["--has", "bass", "--min-score", "0.7"]])
def test_each_format_reads_only_the_detections_it_shows_and_writes_what_all_of_them_give(tmp_path, monkeypatch, flags):
    """``query`` reads the detections its format shows (`tagger.library.report.SHOWN`): every one
    for JSON and CSV, the families present for a table, none for a list of paths (all of them were
    read for every format). Each format writes the bytes it writes from tracks read whole
    (`find_tracks`)."""
    from benchmarks.bench import synth_database
    from tagger.db.filter import TrackFilter
    from tagger.db.queries import find_tracks
    from tagger.library.report import QUERY_FORMATS, SHOWN, render_tracks

    assert set(SHOWN) == set(QUERY_FORMATS)
    path = str(synth_database(tmp_path / "lib.db", tracks=700, seed=7))
    db = open_database(path)
    try:
        with db.session() as s:
            where = TrackFilter.of(has=flags[1:2], lacks=flags[3:4] if "--lacks" in flags else (),
                                   min_score=float(flags[3]) if "--min-score" in flags else None)  # fmt: skip
            whole = find_tracks(s, where=where)
    finally:
        db.close()
    assert len(whole) > 50
    reads = _statements(monkeypatch, lambda statement: "FROM detections" in statement and "EXISTS" not in statement)
    for fmt in QUERY_FORMATS:
        reads.clear()
        assert run("query", *flags, "--format", fmt, "--db", path) == render_tracks(whole, fmt=fmt), fmt
        if not SHOWN[fmt]:
            assert reads == [], fmt
        else:
            assert reads and all(("present = TRUE" in r) == ("scores" not in SHOWN[fmt]) for r in reads), (fmt, reads)


def _statements(monkeypatch, keep) -> list[str]:
    """The statements a ``tagger query`` of a SQLite library runs (through ``sqlite3``:
    `tagger.db.sql.SqliteReader`) for which ``keep(text)`` is true, in turn, as the list fills."""
    from tagger.db.sql import SqliteReader

    kept: list[str] = []
    for method in ("rows", "tuples"):

        def counted(self, statement, real=getattr(SqliteReader, method)):
            if keep(statement.text):
                kept.append(statement.text)
            return real(self, statement)

        monkeypatch.setattr(SqliteReader, method, counted)
    return kept


def test_query_reads_the_database_in_pieces_and_writes_the_same_bytes(tmp_path):
    """`find_tracks` loaded every matching track with its detections before the first line was
    written (``query --format json`` of 200,000 tracks: 711 MiB). `iter_tracks` reads them a batch
    at a time as they are gone through, and ``query`` writes the same bytes."""
    from sqlalchemy import event, select

    from benchmarks.bench import synth_database
    from tagger.db import models as M
    from tagger.db.queries import iter_tracks
    from tagger.instruments import FAMILIES

    path = synth_database(tmp_path / "lib.db", tracks=1_200, seed=5)
    db = open_database(str(path))
    reads: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: reads.append(statement) if "FROM detections" in statement else None)  # fmt: skip
    try:
        with db.session() as s:
            seen = []
            for i, t in enumerate(iter_tracks(s, batch=100)):
                assert len(reads) == i // 100 + 1, i  # (the detections of this track's batch read, and no more)
                seen.append(t.to_dict())
            want = []
            for t in s.scalars(select(M.Track).where(M.Track.status == M.STATUS_OK).order_by(M.Track.path)):
                ds = sorted(t.detections, key=lambda d: FAMILIES.index(d.family))
                want.append({"path": t.path, "duration": t.duration, "format": t.format,
                             "instruments": [d.family for d in ds if d.present], "scores": {d.family: d.score for d in ds},
                             "model_version": "bench", "stale": True, "analysed_in_part": None})  # fmt: skip (stale: no scan recorded)
    finally:
        db.close()
    assert len(want) == 1_200 and seen == want
    assert run("query", "--format", "json", "--db", str(path)) == json.dumps(want, indent=1) + "\n"
    assert run("query", "--format", "paths", "--db", str(path)) == "".join(w["path"] + "\n" for w in want)


@pytest.mark.parametrize("fmt", ["json", "csv", "table", "paths"])
def test_every_query_format_is_written_before_every_track_is_read(tmp_path, monkeypatch, fmt):
    """``--format csv`` and ``table`` read every track (scores included) before the first line was
    written, as the column set (CSV) and widths (table) depend on every row: the memory of the whole
    answer at once. The CSV's score columns are now asked of the database first, and the table's
    widths are measured on a first read of the paths and lengths alone: the first 500 tracks' lines
    are written once they are read."""
    from benchmarks.bench import synth_database
    from tagger.cli import library as L
    from tagger.library.report import SHOWN

    path = synth_database(tmp_path / "lib.db", tracks=1_200, seed=5)
    written: list[int] = []

    def listen(statement):
        if SHOWN[fmt]:  # (its detections read a batch at a time; not the CSV columns' query)
            return "FROM detections" in statement and "scored" not in statement
        return "FROM tracks" in statement and "LIMIT" in statement  # (a list of paths reads none: its pages)

    reads = _statements(monkeypatch, listen)
    for name in ("echo", "echo_data"):
        real = getattr(L, name)
        monkeypatch.setattr(L, name, lambda *a, real=real, **k: (written.append(len(reads)), real(*a, **k))[1])
    out = run("query", "--format", fmt, "--db", str(path))
    assert len(reads) == 3 and written[0] <= 1 and len(written) >= 3, (reads, written)  # (3 pieces of 500 tracks)
    whole = CliRunner().invoke(app, ["query", "--format", fmt, "--db", str(path), "--output", str(tmp_path / "out")])
    assert whole.exit_code == 0 and (tmp_path / "out").read_text(encoding="utf-8") == out
    if fmt == "csv":
        assert out.splitlines()[0].split(",")[6:] == [f"score_{f}" for f in FAMILIES]
        assert len(list(csv.DictReader(io.StringIO(out)))) == 1_200
    if fmt == "table":
        lines = out.splitlines()
        col = lines[0].index("LENGTH")  # (every row's length under it: the widths of every row)
        assert len(lines) == 1_201 and col == max(len(line.split("  ")[0]) for line in lines) + 2
        assert all(line[col - 2 : col] == "  " and line[col] != " " for line in lines[1:])


@pytest.mark.parametrize("flags", [{}, {"has": ["flute"], "lacks": ["vocal"]}, {"path_glob": "*/artist-00*"}])
def test_each_page_of_a_query_walks_the_path_index(tmp_path, flags):
    """Each page of 500 tracks is a statement of its own (``path > last ORDER BY path LIMIT 500``).
    SQLite took the status index for it and sorted every analysed track again for each page: a
    200,000-track ``query --format json`` took 116 s instead of 16. Each page now walks the path's
    unique index from where the last one ended, no sort."""
    from sqlalchemy import event

    from benchmarks.bench import synth_database
    from tagger.db.filter import TrackFilter
    from tagger.db.queries import stream_tracks

    db = open_database(str(synth_database(tmp_path / "lib.db", tracks=1_200, seed=5)))
    pages: list[tuple] = []

    def listen(conn, cursor, statement, parameters, *rest):
        if "LIMIT" in statement and "FROM tracks" in statement:
            pages.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        found = list(stream_tracks(db, where=TrackFilter.of(**flags), batch=100))
        event.remove(db.engine, "before_cursor_execute", listen)
        with db.engine.connect() as conn:
            plans = [" / ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)) for sql, params in pages]
    finally:
        db.close()
    assert found and len(pages) >= 2
    for plan in plans:
        assert "TEMP B-TREE" not in plan and "sqlite_autoindex_tracks" in plan, plan


# -- a query whose output is paused (a pager, a pipe nobody reads) -----------------------------------------
_PAUSED_QUERY = """
import runpy, sys
from tagger.db import engine
assert callable(engine.shared_memory_works)  # (replaced where make_engine looks it up)
engine.shared_memory_works = lambda folder: False  # (a FAT drive: a rollback journal, no WAL)
sys.argv = ["tagger", *sys.argv[1:]]
runpy.run_module("tagger", run_name="__main__", alter_sys=True)
"""


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_a_query_paused_in_its_output_does_not_block_a_scan(tmp_path, monkeypatch, fmt):
    """On a database with a rollback journal (a FAT drive, where SQLite's write-ahead log cannot
    work) the query held its read open while its output was written: paused there (``| less``, a
    pipe not read), it held SQLite's shared lock, and a scan's commit waited for it, then failed
    with "database is locked". The query now reads in pages, each in a short transaction."""
    from benchmarks.bench import synth_database
    from tagger.db import engine as E
    from tagger.db import session as S

    monkeypatch.setattr(E, "shared_memory_works", lambda folder: False)
    # (10 s: the query paused in its output holds no lock, so the scan waits for none; the pages it
    # reads before it blocks each hold the shared lock a moment, which a loaded machine may stretch
    # past 1 s. A query that held its read through the pause would still fail the scan)
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 10.0)
    dbfile = synth_database(tmp_path / "lib.db", tracks=3000)
    open_database(dbfile).close()  # (out of WAL mode: a rollback journal from now on)
    music = tmp_path / "music"
    files = make_library(music)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(S.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    query = subprocess.Popen([sys.executable, "-c", _PAUSED_QUERY, "query", "--db", str(dbfile), "--format", fmt],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        head = query.stdout.read(100)  # it is writing; the rest waits in a full pipe, unread
        assert head, query.stderr.read()
        database = open_database(dbfile)
        try:
            summary = scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
        finally:
            database.close()
        assert summary.scanned == len(files) - 1 and summary.errors == [(files[BROKEN], summary.errors[0][1])]
        out = query.stdout.read()  # (not communicate(): it reads past what the buffer holds already)
        err = query.stderr.read()
        query.wait(timeout=60)
    finally:
        query.kill()
        query.wait()
    assert query.returncode == 0, err
    text = (head + out).decode()
    if fmt == "json":
        assert len(json.loads(text)) >= 3000
    elif fmt == "csv":
        assert len(list(csv.DictReader(io.StringIO(text)))) >= 3000
    else:
        assert len(text.splitlines()) >= 3001


def test_a_csv_row_with_a_score_outside_its_columns_says_so(caplog):
    """The CSV's score columns are chosen before its first row (`scored_families`); a track whose
    results a scan stored meanwhile with a model of other families has a score no column holds:
    the row is written with the columns there are, and a warning names the track and the family."""
    from tagger.db.queries import TrackSummary
    from tagger.library.report import iter_rendered

    t = TrackSummary("/m/a.flac", 10.0, "FLAC", ["ukulele"], {"bass": 0.1, "ukulele": 0.9}, "other-2", False)
    with caplog.at_level("WARNING"):
        text = "".join(iter_rendered([t], fmt="csv", families=["bass"]))
    assert text.splitlines() == ["path,duration,format,instruments,model_version,stale,score_bass",
                                 "/m/a.flac,10.0,FLAC,ukulele,other-2,0,0.1"]  # fmt: skip
    assert "'/m/a.flac': its score(s) for ukulele are not in the CSV columns" in caplog.text


def test_query_and_tag_take_the_filter_options_declared_once(monkeypatch):
    """The filter's options are declared once (`cli.options.FILTER_OPTIONS`) and every command that
    selects tracks takes them where its ``where`` stands (query and tag each listed them, and passed
    them on, by hand: a new one had to be added to both); tag also takes their hidden old names."""
    import typer
    import typer.main

    from tagger.cli import options as F

    group = typer.main.get_command(app)
    names = list(F.FILTER_OPTIONS)
    assert [p.name for p in group.commands["query"].params][: len(names)] == names
    tag_params = [p.name for p in group.commands["tag"].params]
    assert tag_params[1 : len(names) + 3] == [*names, "query_has", "query_lacks"]

    # A new entry reaches a decorated command, its values handed over with the others.
    monkeypatch.setitem(F.FILTER_OPTIONS, "genre", (str, lambda: typer.Option(None, "--genre")))
    seen = {}
    one = typer.Typer()

    @one.command()
    @F.filter_options(old_names=True)
    def pick(where: dict = F.FILTER, db: str = typer.Option(None, "--db")) -> None:
        seen.update(where, db=db)

    res = CliRunner().invoke(one, ["--genre", "jazz", "--has", "flute", "--query-has", "organ", "--db", "x.db"])
    assert res.exit_code == 0, res.output
    assert seen == {"has": ["flute", "organ"], "lacks": None, "min_score": None, "path_glob": None, "genre": "jazz",
                    "db": "x.db"}  # fmt: skip


def test_every_library_function_that_selects_tracks_takes_the_one_filter_alone():
    """`find_tracks`, `iter_tracks`, `tag_from_database`, `select_predictions` and
    `predictions_from_database` took the first filters (``has``, ``lacks``, ``paths``, ...) as
    keywords of their own beside ``where=``, which a filter added since reached alone: two ways to
    pass a filter. Each takes the `TrackFilter` as ``where`` and no keyword named as one of its fields."""
    import dataclasses
    import inspect

    from tagger.db.filter import TrackFilter
    from tagger.db.queries import find_tracks, iter_tracks
    from tagger.tags import predictions_from_database, select_predictions, tag_from_database

    filters = {f.name for f in dataclasses.fields(TrackFilter)}
    for function in (find_tracks, iter_tracks, tag_from_database, select_predictions, predictions_from_database):
        parameters = inspect.signature(function).parameters
        assert parameters["where"].kind is inspect.Parameter.KEYWORD_ONLY, function.__name__
        assert not filters & set(parameters), (function.__name__, sorted(filters & set(parameters)))


def test_a_filter_added_in_one_place_is_split_and_read_by_what_reads_a_filter_in_parts(tmp_path):
    """A new filter is a `Part` and a field of `TrackFilter` (marked `PLACE` when it says where a file
    is): what reads a filter in parts asks the filter. `tag` of a folder whose analysed tracks the
    filter leaves out said its one failed file 'could not be analysed' (`_selected_tracks` named the
    conditions that narrow beyond the paths, has, lacks and path_glob, and not a new one);
    ``query --cue-tracks`` split the filter by those names too (`cue_tracks_matching`)."""
    import dataclasses

    from conftest import tone_signal, write_audio
    from tagger.db.filter import PLACE, Candidate, Part, TrackFilter
    from tagger.errors import UserError
    from tagger.tags.database import tag_from_database

    @dataclasses.dataclass(frozen=True)
    class EndsWith(Part):
        suffix: str

        def clause(self, dialect):
            return None

        def match(self, item):
            return item.path.endswith(self.suffix)

    @dataclasses.dataclass(frozen=True)
    class WithSuffix(TrackFilter):
        suffix: str | None = dataclasses.field(default=None, metadata=PLACE)

        @property
        def parts(self):
            return [*super().parts, *([EndsWith(self.suffix)] if self.suffix else [])]

    folder = tmp_path / "music"
    write_audio(folder / "tone.wav", tone_signal([1000.0], seconds=4.5))
    (folder / "empty.mp3").write_bytes(b"")
    db = open_database(tmp_path / "lib.db")
    try:
        assert scan([folder], db=db, analyser=FakeAnalyser(), jobs=0).failed == 1
        where = WithSuffix(has=("flute",), paths=(str(folder),), suffix=".flac")
        assert where.place() == WithSuffix(paths=(str(folder),), suffix=".flac")
        assert where.held() == WithSuffix(has=("flute",))
        assert not where.place().match(Candidate(str(folder / "tone.wav"), ("flute",)))
        assert where.held().match(Candidate(str(folder / "tone.wav"), ("flute",)))
        assert WithSuffix(paths=(str(folder),)).paths_alone and not WithSuffix(paths=(str(folder),), suffix="x").paths_alone
        with pytest.raises(UserError) as err:
            list(tag_from_database(db, where=WithSuffix(paths=(str(folder),), suffix=".flac"), dry_run=True))
        assert "no analysed track matches under" in str(err.value) and "could not be analysed" not in str(err.value)
        assert [c.path for c in tag_from_database(db, where=WithSuffix(paths=(str(folder),), suffix=".wav"),
                                                  dry_run=True)] == [str(folder / "tone.wav")]  # fmt: skip
    finally:
        db.close()


# -- the query of a SQLite library through sqlite3 alone ---------------------------------------------------
@pytest.mark.parametrize("name", ["/m/library.db", "/m/a%25b.db", "/m/a%3Fb.db", "/m/a#b@c:d e.db", "/m/\u00e9t\u00e9/x.db",
                                  "/m/100%zz.db", "/m/a%2Fb.db", "//m/x.db"])  # fmt: skip
def test_a_plain_sqlite_url_names_the_file_sqlalchemy_opens(name):
    """`plain_sqlite_file` reads a ``sqlite:////path`` URL without SQLAlchemy (``tagger query``
    does not import it): the file it names is the one SQLAlchemy's URL names; a URL with options, a
    relative name or another database is left to SQLAlchemy (None)."""
    from sqlalchemy.engine import make_url

    from tagger.db.urls import plain_sqlite_file, sqlite_file, sqlite_url

    url = "sqlite:///" + name
    assert str(plain_sqlite_file(url)) == make_url(url).database == str(sqlite_file(url))
    assert str(plain_sqlite_file(sqlite_url(name))) == name  # (a path as --db gives it, %, ? and all)
    for other in (url + "?mode=ro&uri=true", "sqlite:///relative.db", "sqlite:///file:x.db", "postgresql://u@h/db"):
        assert plain_sqlite_file(other) is None, other


FILTERS = [{}, {"has": ["flute"], "lacks": ["vocal"]}, {"has": ["bass", "string"], "min_score": 0.6},
           {"path_glob": "*/artist-00[13]*"}, {"lacks": ["organ"], "paths": ["/music/artist-002", "/music/artist-004/"]}]  # fmt: skip


@pytest.mark.parametrize("flags", FILTERS)
def test_sqlite3_and_sqlalchemy_read_the_same_tracks(tmp_path, flags):
    """``tagger query`` reads a SQLite library through ``sqlite3`` (`open_for_reading`), other
    commands through SQLAlchemy (`open_database`, a session): the same SQL text (`tagger.db.sql`)
    gives the same tracks, in pages that cross, for every filter and every reading of them."""
    from benchmarks.bench import synth_database
    from tagger.db.filter import TrackFilter
    from tagger.db.queries import find_tracks, scored_families, stream_tracks
    from tagger.db.session import Database, SqliteLibrary, open_for_reading

    path = str(synth_database(tmp_path / "lib.db", tracks=1_200, seed=5))
    where = TrackFilter.of(**flags)
    fast, alchemy = open_for_reading(path), open_database(path)
    try:
        assert isinstance(fast, SqliteLibrary) and isinstance(alchemy, Database)
        with alchemy.session() as s:
            whole = [t.to_dict() for t in find_tracks(s, where=where)]
        assert len(whole) > 30
        for scores, instruments in ((True, True), (False, True), (False, False)):
            got = [[t.to_dict() for t in stream_tracks(db, where=where, batch=100, scores=scores, instruments=instruments)]
                   for db in (fast, alchemy)]  # fmt: skip
            assert got[0] == got[1], (scores, instruments)
            assert got[0] == [{**t, "scores": t["scores"] if scores else {},
                               "instruments": t["instruments"] if instruments else []} for t in whole]  # fmt: skip
        assert scored_families(fast, where=where) == scored_families(alchemy, where=where) != []
    finally:
        fast.close()
        alchemy.close()


def test_the_filter_conditions_are_one_sql_text_with_parameters_of_their_own():
    """Each condition of a filter is SQL text with named parameters (`tagger.db.sql.Sql`): put
    together (two folders, two families) no name is used twice, and a place left without a value
    is refused."""
    from tagger.db.filter import TrackFilter, under_clause
    from tagger.db.sql import joined, sql

    where = TrackFilter(has=("flute", "bass"), lacks=("vocal",), min_score=0.5, paths=("/m/a", "/m/b"))
    for dialect in ("sqlite", "postgresql"):
        whole = joined(" AND ", where.clauses(dialect))
        names = [word[1:] for word in whole.text.replace("(", " ").replace(")", " ").split() if word.startswith(":")]
        assert sorted(names) == sorted(whole.params) and len(set(names)) == len(names) == 2 + 1 + 2 + 2 * (3 if dialect == "sqlite" else 2)
        assert ("substr" in whole.text) == (dialect != "sqlite")
    assert sorted(under_clause("/m/a", "sqlite").params.values()) == ["/m/a", "/m/a/", "/m/a0"]
    with pytest.raises(ValueError):
        sql("a = {} AND b = {}", 1)


def test_a_query_opens_what_sqlite3_alone_cannot_read_through_sqlalchemy(tmp_path):
    """`open_for_reading` opens with ``sqlite3`` only a writable SQLite library at the latest
    revision named by a path: a SQLite URI, and a library to migrate, go through `open_database`
    as before (the URI read, the library migrated), and ``tagger query`` lists the same tracks."""
    from benchmarks.bench import synth_database
    from old_databases import write_database_at
    from tagger.db.queries import find_tracks
    from tagger.db.session import Database, SqliteLibrary, open_for_reading
    from tagger.db.urls import sqlite_url

    path = synth_database(tmp_path / "lib.db", tracks=30, seed=3)
    uri = f"sqlite:///file:{path}?mode=ro&uri=true"
    kinds = {}
    for db in (str(path), sqlite_url(path), uri):
        database = open_for_reading(db)
        kinds[db] = type(database)
        database.close()
    assert kinds == {str(path): SqliteLibrary, sqlite_url(path): SqliteLibrary, uri: Database}
    assert run("query", "--db", uri, "-f", "paths") == run("query", "--db", str(path), "-f", "paths") != ""
    old = tmp_path / "old.db"
    write_database_at(sqlite_url(old), "0001", tracks=5)
    listed = run("query", "--db", str(old), "-f", "paths").splitlines()  # (migrated, then read)
    database = open_for_reading(str(old))
    assert isinstance(database, SqliteLibrary)  # (at the latest revision now)
    database.close()
    database = open_database(str(old))
    try:
        with database.session() as s:
            assert listed == [t.path for t in find_tracks(s)] != []
    finally:
        database.close()


@pytest.mark.parametrize("damage", ["missing", "empty", "no tables", "not sqlite", "damaged", "newer", "other program"])
def test_a_query_refuses_a_database_as_the_other_commands_do(tmp_path, damage):
    """``tagger query``, ``show``, ``stats`` and ``errors`` open a SQLite library without
    SQLAlchemy; a database they cannot use gets the one line that `open_database` (through
    SQLAlchemy, as they did before, and as every other command does) gives, word for word."""
    import sqlite3

    from benchmarks.bench import synth_database
    from conftest import library_of_a_newer_tagger
    from tagger.errors import TaggerError

    path = tmp_path / "lib.db"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "no tables":
        sqlite3.connect(path).execute("PRAGMA user_version = 1").connection.close()
    elif damage == "not sqlite":
        path.write_text("a shopping list\n")
    elif damage == "damaged":
        good = synth_database(tmp_path / "good.db", tracks=20).read_bytes()
        path.write_bytes(good[:100] + bytes(len(good) - 100))
    elif damage == "newer":
        library_of_a_newer_tagger(path)
    elif damage == "other program":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE contacts (name TEXT)")
        con.commit()
        con.close()
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(TaggerError) as refused:
        open_database(str(path), create=False).close()
    for command in (["query"], ["show", str(tmp_path / "song.flac")], ["stats"], ["errors"]):
        r = CliRunner().invoke(app, [*command, "--db", str(path)])
        assert (r.exit_code, r.output) == (1, f"tagger: error: {refused.value}\n"), command
    assert (path.read_bytes() if path.exists() else None) == before


def test_show_stats_and_errors_read_the_same_through_sqlite3_and_sqlalchemy(scanned):
    """``show``, ``stats`` and ``errors`` read a SQLite library through ``sqlite3`` (their SQL text
    run as it is, times as SQLite stores them): what they read is what SQLAlchemy's session reads
    with the same text (times as datetimes), every field, for every track."""
    from tagger.db.queries import failed_tracks, library_stats, track_detail
    from tagger.db.session import SqliteLibrary, open_for_reading

    db, files = scanned
    fast, alchemy = open_for_reading(db), open_database(db)
    try:
        assert isinstance(fast, SqliteLibrary)
        with fast.reader() as reader, alchemy.session() as s:
            stats = library_stats(reader)
            assert stats == library_stats(s) and stats["last_scan"] and stats["tracks"]["error"] == 1
            assert failed_tracks(reader) == failed_tracks(s) != []
            for path in files.values():  # (the file that failed too)
                detail = track_detail(reader, path=path).to_dict()
                assert detail == track_detail(s, path=path).to_dict(), path
                assert detail["analysed_at"] is None or detail["analysed_at"].endswith("Z"), path
    finally:
        fast.close()
        alchemy.close()

"""``tagger show`` of an album image with a cue sheet: each cue track's families, from the stored
window scores by the whole file's rule (`tagger.aggregate.aggregate_range`, `tagger.db.detail.with_cue_tracks`).

The album is generated here with known contents: three 8 s tones of different timbres (bass 110 Hz,
flute 1000 Hz, string 4000 Hz) in one FLAC, scanned with the band-listening fake analyser of
`library_fakes`, so each cue track's family is known.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from library_fakes import FakeAnalyser
from test_cuesheet import ALBUM_CUE, _album
from tagger.cli import app
from tagger.db.detail import track_detail, with_cue_tracks
from tagger.db.session import open_database
from tagger.library.scan import scan


@pytest.fixture
def album(tmp_path):
    music = tmp_path / "music"
    flac = _album(music / "Album.flac")
    (music / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    db = tmp_path / "lib.db"
    database = open_database(db)
    summary = scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and not summary.errors
    yield database, str(db), str(flac)
    database.close()


def _show(db, path, *args):
    r = CliRunner().invoke(app, ["show", "--db", db, path, *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_show_lists_each_cue_track_with_its_families(album):
    _, db, flac = album
    cue = flac[: -len(".flac")] + ".cue"
    out = _show(db, flac)
    assert "instruments: bass, flute, string" in out  # (the whole file, as before)
    assert out.endswith(
        f"\ncue sheet: {cue} (3 tracks)\n"
        "TRACK  FROM  TO    TITLE               INSTRUMENTS\n"
        "#01    0:00  0:08  Low / Bassist       bass\n"
        "#02    0:08  0:16  Middle / The Tones  flute\n"
        "#03    0:16  0:24  High / The Tones    string\n"
    ), out


def test_show_json_has_the_cue_tracks(album):
    _, db, flac = album
    d = json.loads(_show(db, flac, "--json"))
    assert d["instruments"] == ["bass", "flute", "string"] and d["cue_sheet"].endswith("Album.cue") and d["cue_note"] is None
    tracks = d["cue_tracks"]
    assert [(t["number"], t["title"], t["performer"], t["start"], t["end"], t["windows"], t["instruments"]) for t in tracks] == [
        (1, "Low", "Bassist", 0.0, 8.0, 2, ["bass"]), (2, "Middle", "The Tones", 8.0, 16.0, 2, ["flute"]),
        (3, "High", "The Tones", 16.0, 24.0, 2, ["string"])]  # fmt: skip
    flute = next(f for f in tracks[1]["families"] if f["family"] == "flute")
    assert flute["present"] and flute["coverage"] == 1.0 and flute["segments"] == [[8.0, 16.0]]
    assert [f["family"] for f in tracks[1]["families"]] == [f["family"] for f in d["families"]]


def test_the_cue_tracks_use_the_whole_files_rule(album):
    """The one rule, `aggregate_range`, over the whole file's range gives what the scan stored."""
    database, _, flac = album
    from sqlalchemy import select

    from tagger.aggregate import aggregate_range
    from tagger.db import models as M

    with database.session() as s:
        track = s.scalar(select(M.Track).where(M.Track.path == flac))
        families, starts, scores = track.window_scores.unpack()
        stored = {d.family: (d.present, d.score, d.coverage) for d in track.detections}
        stored_segments = {g.family: (g.start, g.end) for g in track.segments}
    whole = aggregate_range(scores, starts, start=0.0, end=None, families=families, thresholds=np.full(3, 0.5), duration=24.0)
    for r in whole.results:
        assert r.present == stored[r.family][0] and (r.score, r.coverage) == pytest.approx(stored[r.family][1:], abs=1e-3)
    assert {r.family: r.segments[0] for r in whole.results} == stored_segments


def test_a_bad_cue_sheet_leaves_the_file_one_track_with_a_note(album, tmp_path):
    _, db, flac = album
    cue = tmp_path / "music" / "Album.cue"
    cue.write_text(ALBUM_CUE.format(name="Album.wav").replace("00:16:00", "00:16:99"), encoding="utf-8")
    out = _show(db, flac)
    assert "instruments: bass, flute, string" in out and "TRACK  FROM" not in out
    assert out.endswith(f"\ncue sheet: {cue}: line 16: '00:16:99' is not a time (mm:ss:ff: seconds under 60, frames "
                        "under 75); the file is shown as one track\n"), out  # fmt: skip
    d = json.loads(_show(db, flac, "--json"))
    assert d["cue_tracks"] == [] and d["cue_sheet"] is None and "is not a time" in d["cue_note"]


def test_a_cue_sheet_longer_than_the_file_is_of_another_rip(album, tmp_path):
    _, db, flac = album
    (tmp_path / "music" / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav").replace("00:16:00", "03:16:00"), encoding="utf-8")
    out = _show(db, flac)
    # (the cue sheet named, as one that cannot be read is: it said "cue sheet: track 03 ...", found walking
    # through the README)
    assert out.endswith(f"\ncue sheet: {tmp_path / 'music' / 'Album.cue'}: track 03 starts at 03:16.00, after the end of "
                        "the file (00:24.00): the cue sheet of another rip? The file is shown as one track\n"), out  # fmt: skip


def test_a_track_analysed_without_window_scores_says_a_rescan_is_needed(album):
    database, db, flac = album
    from sqlalchemy import text

    with database.session() as s:
        s.execute(text("DELETE FROM window_scores"))
        s.commit()
    with database.engine.connect() as conn:
        d = with_cue_tracks(conn, track_detail(conn, path=flac))
    assert d.cue_tracks == [] and d.cue_note.startswith(f"{d.cue_sheet}: its 3 tracks need the window scores")
    assert "`tagger scan --rescan-stale` of its folder stores them" in _show(db, flac)


def test_a_file_without_cue_sheet_is_shown_as_before(album, tmp_path):
    _, db, flac = album
    (tmp_path / "music" / "Album.cue").unlink()
    out = _show(db, flac)
    assert "cue sheet" not in out
    d = json.loads(_show(db, flac, "--json"))
    assert d["cue_tracks"] == [] and d["cue_sheet"] is None and d["cue_note"] is None


# --- tagger query --cue-tracks --------------------------------------------------------------------


@pytest.fixture
def library(tmp_path):
    """Album.flac (bass, flute, string tracks; Album.cue beside it) and Long.flac: 36 s of bass, then
    4 s of flute as its own track, in a cue sheet embedded as a CUESHEET comment: one window of flute
    in ten is too little for the whole file's rule (0.9 quantile), all of its second track."""
    import mutagen.flac

    from conftest import tone_signal, write_audio
    from library_fakes import FREQ

    music = tmp_path / "music"
    album = _album(music / "Album.flac")
    (music / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    long = write_audio(music / "Long.flac", np.concatenate([tone_signal([FREQ["bass"]], seconds=36.0),
                                                             tone_signal([FREQ["flute"]], seconds=4.0)]))  # fmt: skip
    f = mutagen.flac.FLAC(long)
    f["CUESHEET"] = ('FILE "CDImage.wav" WAVE\n  TRACK 01 AUDIO\n    TITLE "Drone"\n    INDEX 01 00:00:00\n'
                     '  TRACK 02 AUDIO\n    TITLE "Coda"\n    INDEX 01 00:36:00\n')  # fmt: skip
    f.save()
    write_audio(music / "single.flac", tone_signal([FREQ["flute"]], seconds=8.0))  # (no cue sheet: never a cue track)
    db = tmp_path / "lib.db"
    database = open_database(db)
    summary = scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 3 and not summary.errors
    database.close()
    return str(db), str(album), str(long)


def _query(db, *args, code=0):
    r = CliRunner().invoke(app, ["query", "--db", db, *args])
    assert r.exit_code == code, (r.stdout, r.stderr)
    return r


def test_query_cue_tracks_matches_each_tracks_own_families(library):
    db, album, long = library
    assert "flute" not in json.loads(_show(db, long, "--json"))["instruments"]  # (the whole file: too little flute)
    assert _query(db, "--has", "flute", "-f", "paths").stdout.splitlines() == [album, album.replace("Album", "single")]
    r = _query(db, "--cue-tracks", "--has", "flute")
    assert r.stdout == ("PATH" + " " * (len(album) - 2) + "TRACK  FROM  TO    TITLE               INSTRUMENTS\n"
                        f"{album}  #02    0:08  0:16  Middle / The Tones  flute\n"
                        f"{long}   #02    0:36  0:40  Coda                flute\n"), r.stdout  # fmt: skip
    rows = json.loads(_query(db, "--cue-tracks", "--has", "flute", "--format", "json").stdout)
    assert [(r["path"], r["number"], r["title"], r["performer"], r["start"], r["end"], r["instruments"]) for r in rows] == [
        (album, 2, "Middle", "The Tones", 8.0, 16.0, ["flute"]), (long, 2, "Coda", None, 36.0, 40.0, ["flute"])]  # fmt: skip
    assert rows[0]["scores"]["flute"] > 0.9 and rows[0]["scores"]["bass"] < 0.2
    lacks = json.loads(_query(db, "--cue-tracks", "--lacks", "bass", "--path-glob", "*/Album.flac", "-f", "json").stdout)
    assert [(r["path"], r["number"]) for r in lacks] == [(album, 2), (album, 3)]
    every = json.loads(_query(db, "--cue-tracks", "-f", "json").stdout)
    assert [(r["path"], r["number"]) for r in every] == [(album, 1), (album, 2), (album, 3), (long, 1), (long, 2)]


def test_cue_tracks_of_more_paths_than_a_statement_holds(library, tmp_path):
    """`tagger.db.detail.cue_tracks_matching` of a filter naming 1,000 files or more (the files of a
    shell's ``*.flac`` and their folder) put one condition per path in one statement, which SQLite
    refuses ("Expression tree is too large (maximum depth 1000)"), as `tagger tag` did before
    ba4993e. It asks a few hundred paths at a time: each cue track once, in path order."""
    from tagger.db.detail import cue_tracks_matching
    from tagger.db.filter import TrackFilter

    db, album, long = library
    others = [str(tmp_path / "others" / f"{i:04d}.flac") for i in range(1100)]
    where = TrackFilter.of(paths=[long, *others, album, os.path.dirname(album)], has=["flute"])
    database = open_database(db, create=False)
    try:
        with database.reader() as reader:
            matches, notes = cue_tracks_matching(reader, where)
    finally:
        database.close()
    assert [(m.path, m.track.number) for m in matches] == [(album, 2), (long, 2)] and notes == []


def test_query_cue_tracks_says_what_it_cannot_do(library, tmp_path):
    db, album, _ = library
    r = _query(db, "--cue-tracks", "--format", "m3u", code=1)
    assert "--cue-tracks lists tracks inside files: --format table or json, not 'm3u'" in r.stderr
    r = _query(db, "--cue-tracks", "--has", "organ", "--path-glob", "*/Album.flac")
    assert r.stdout == "" and "no cue track matches these conditions" in r.stderr
    (tmp_path / "music" / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav").replace("TRACK 02", "TRACK 01"))
    r = _query(db, "--cue-tracks", "--has", "flute")
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == [album.replace("Album", "Long")]
    # (the note says what the query does: it ended "the file is shown as one track", show's wording)
    assert (f"tagger: warning: {album}: cue sheet: {tmp_path / 'music' / 'Album.cue'}: line 10: track 01 follows track 01; "
            "none of its tracks is listed\n") in r.stderr and "shown as one track" not in r.stderr  # fmt: skip
    (tmp_path / "music" / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav").replace("00:16:00", "03:16:00"))
    r = _query(db, "--cue-tracks", "--has", "flute")
    assert r.stderr.startswith(f"tagger: warning: {album}: cue sheet: {tmp_path / 'music' / 'Album.cue'}: track 03 starts at "
                               "03:16.00, after the end of the file (00:24.00): the cue sheet of another rip? None of its "
                               "tracks is listed\n"), r.stderr  # fmt: skip


@pytest.mark.model
@pytest.mark.slow
def test_an_album_image_scanned_with_the_shipped_models(tmp_path):
    """`tagger scan` with the shipped models, then `show` and `query --cue-tracks`: three tracks of
    different timbres (a low sine, a bright sawtooth-like stack of harmonics, a high sine), each given
    its own result from the stored windows; the whole file's result is the one the scan stored."""
    from conftest import tone_signal, write_audio
    from tagger.model.ensemble import default_model_dir

    if not (default_model_dir() / "manifest.json").is_file():
        pytest.skip("the shipped models are needed")
    music = tmp_path / "music"
    saw = tone_signal([330.0 * k for k in range(1, 13)], seconds=8.0)
    flac = write_audio(music / "Album.flac", np.concatenate([tone_signal([110.0], seconds=8.0), saw, tone_signal([2000.0], seconds=8.0)]))
    (music / "Album.cue").write_text("\ufeff" + ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    db = str(tmp_path / "lib.db")
    r = CliRunner().invoke(app, ["scan", str(music), "--db", db, "--jobs", "0", "--no-write-tags"])
    assert r.exit_code == 0, r.output
    whole = json.loads(_show(db, str(flac), "--json"))
    tracks = whole["cue_tracks"]
    assert [(t["number"], t["title"], t["start"], t["end"], t["windows"]) for t in tracks] == [
        (1, "Low", 0.0, 8.0, 2), (2, "Middle", 8.0, 16.0, 2), (3, "High", 16.0, 24.0, 2)]  # fmt: skip
    assert all([f["family"] for f in t["families"]] == [f["family"] for f in whole["families"]] for t in tracks)
    assert all(0.0 <= f["score"] <= 1.0 and f["coverage"] in (0.0, 0.5, 1.0) for t in tracks for f in t["families"])
    (music / "Album.cue").rename(music / "Album.txt")  # the whole file's part of show is as it was without a cue sheet
    alone = json.loads(_show(db, str(flac), "--json"))
    assert {k: v for k, v in whole.items() if not k.startswith("cue_")} == {k: v for k, v in alone.items() if not k.startswith("cue_")}
    (music / "Album.txt").rename(music / "Album.cue")
    rows = json.loads(CliRunner().invoke(app, ["query", "--db", db, "--cue-tracks", "-f", "json"]).stdout)
    assert [(r["number"], r["instruments"]) for r in rows] == [(t["number"], t["instruments"]) for t in tracks]


@pytest.mark.integration
def test_cue_tracks_on_postgres_are_those_on_sqlite(pg_url, tmp_path, fake_models):
    """`show --json` and `query --cue-tracks` read a PostgreSQL library (SQLAlchemy, bytea window
    scores) as they read SQLite (sqlite3)."""
    music = tmp_path / "music"
    flac = str(_album(music / "Album.flac"))
    (music / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    out = {}
    for name, db in (("sqlite", str(tmp_path / "lib.db")), ("pg", pg_url)):
        r = CliRunner().invoke(app, ["scan", str(music), "--db", db, "--jobs", "0", "--no-write-tags"])
        assert r.exit_code == 0, r.output
        shown = json.loads(_show(db, flac, "--json"))
        out[name] = (shown["cue_tracks"], _query(db, "--cue-tracks", "--has", "flute", "-f", "json").stdout)
    assert out["pg"] == out["sqlite"]
    assert [t["instruments"] for t in out["pg"][0]] == [["bass"], ["flute"], ["string"]]
    assert [(r["path"], r["number"]) for r in json.loads(out["pg"][1])] == [(flac, 2)]


def test_a_broken_cue_sheet_never_stops_a_scan(tmp_path):
    """The scan reads no cue sheet (the crawler passes .cue files over): a broken one beside the album
    is no error of the scan; show names it afterwards and shows the file as one track."""
    music = tmp_path / "music"
    flac = str(_album(music / "Album.flac"))
    (music / "Album.cue").write_bytes(b"\xff\xd8\xff\x00 not a cue sheet at all")
    database = open_database(tmp_path / "lib.db")
    try:
        summary = scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
    finally:
        database.close()
    assert (summary.scanned, summary.errors) == (1, [])
    out = _show(str(tmp_path / "lib.db"), flac)
    assert "instruments: bass, flute, string" in out
    assert out.endswith(f"cue sheet: {music / 'Album.cue'}: holds NUL bytes: not a text file; the file is shown as one track\n"), out


def test_query_cue_tracks_reads_each_cue_sheet_of_a_folder_once(tmp_path, monkeypatch):
    """A folder of many files and a few album images: each file's lookup listed the folder and read
    every .cue in it again (2,000 WAVs and 50 images with their 50 cue sheets in one folder: 102,500
    reads, 14 s); each .cue is read once, and a file that no .cue names is passed over without more."""
    from conftest import tone_signal, write_audio
    from library_fakes import FREQ
    import tagger.cuesheet.finding

    music = tmp_path / "music"
    album = _album(music / "Album.flac")
    (music / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    (music / "Other.cue").write_text(ALBUM_CUE.format(name="Gone.wav"), encoding="utf-8")  # (names no file here)
    (music / "notes.cue").write_text("not a cue sheet\n", encoding="utf-8")
    for i in range(4):
        write_audio(music / f"song{i}.wav", tone_signal([FREQ["flute"]], seconds=1.0))
    database = open_database(tmp_path / "lib.db")
    assert scan([music], db=database, analyser=FakeAnalyser(), jobs=0).scanned == 5
    database.close()
    read = []
    real = tagger.cuesheet.finding._read_cue_file
    monkeypatch.setattr(tagger.cuesheet.finding, "_read_cue_file", lambda cue: read.append(cue) or real(cue))
    rows = json.loads(_query(str(tmp_path / "lib.db"), "--cue-tracks", "--has", "flute", "-f", "json").stdout)
    assert [(r["path"], r["number"]) for r in rows] == [(str(album), 2)]
    assert sorted(read) == [str(music / n) for n in ("Album.cue", "Other.cue", "notes.cue")], read


def test_a_wavpack_image_with_its_cue_sheet_in_its_apev2_tag(tmp_path):
    """foobar2000 embeds an image's cue sheet in WavPack and Monkey's Audio files as an APEv2
    ``Cuesheet`` item: such an image had no cue tracks, without a word (only FLAC's were read)."""
    import subprocess

    import mutagen.apev2

    music = tmp_path / "music"
    src = _album(tmp_path / "src.wav")
    music.mkdir()
    wv = music / "Album.wv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "wavpack", str(wv)], check=True)
    tag = mutagen.apev2.APEv2()
    tag["Cuesheet"] = ALBUM_CUE.format(name="CDImage.wav")
    tag.save(wv)
    database = open_database(tmp_path / "lib.db")
    assert scan([music], db=database, analyser=FakeAnalyser(), jobs=0).scanned == 1
    database.close()
    db = str(tmp_path / "lib.db")
    d = json.loads(_show(db, str(wv), "--json"))
    assert d["cue_sheet"] == f"{wv} (embedded APEv2 Cuesheet)" and d["cue_note"] is None
    assert [(t["number"], t["title"], t["instruments"]) for t in d["cue_tracks"]] == [
        (1, "Low", ["bass"]), (2, "Middle", ["flute"]), (3, "High", ["string"])]  # fmt: skip
    rows = json.loads(_query(db, "--cue-tracks", "--has", "flute", "-f", "json").stdout)
    assert [(r["path"], r["number"]) for r in rows] == [(str(wv), 2)]


def test_the_discs_of_an_album_with_one_cue_sheet_in_the_folder_above(tmp_path):
    """``Album/Album.cue`` naming ``CD1\\Album.wav`` and ``CD2\\Album.wav`` (one sheet for two discs):
    `show` and `query --cue-tracks` gave the discs no tracks (a WAV's own folder alone was looked in)."""
    music = tmp_path / "music"
    cd1, cd2 = (str(_album(music / "Album" / disc / "Album.wav")) for disc in ("CD1", "CD2"))
    (music / "Album" / "Album.cue").write_text(
        ALBUM_CUE.format(name="CD1\\Album.wav") + 'FILE "CD2\\Album.wav" WAVE\n  TRACK 04 AUDIO\n    TITLE "Again"\n'
        "    INDEX 01 00:00:00\n  TRACK 05 AUDIO\n    INDEX 01 00:08:00\n", encoding="utf-8")  # fmt: skip
    database = open_database(tmp_path / "lib.db")
    assert scan([music], db=database, analyser=FakeAnalyser(), jobs=0).scanned == 2
    database.close()
    db = str(tmp_path / "lib.db")
    rows = json.loads(_query(db, "--cue-tracks", "--has", "flute", "-f", "json").stdout)
    assert [(r["path"], r["number"], r["title"]) for r in rows] == [(cd1, 2, "Middle"), (cd2, 5, None)]
    d = json.loads(_show(db, cd2, "--json"))
    assert d["cue_sheet"] == str(music / "Album" / "Album.cue") and [(t["number"], t["instruments"]) for t in d["cue_tracks"]] == [
        (4, ["bass"]), (5, ["flute", "string"])]  # fmt: skip


def test_a_hidden_song_before_track_one_is_track_0(tmp_path, fake_models):
    """A hidden song before track 1's INDEX 01 (8 s of flute; INDEX 00 at 00:00:00, INDEX 01 at
    00:08:00, as EAC rips one) was in no track: show, query --cue-tracks and predict left it out, so
    `--has flute --cue-tracks` found nothing. It is track 0, and none of its windows is track 1's."""
    from conftest import tone_signal, write_audio
    from library_fakes import FREQ
    from test_cuesheet import HIDDEN_CUE

    music = tmp_path / "music"
    flac = write_audio(music / "Album.flac", np.concatenate([tone_signal([FREQ[f]], seconds=8.0) for f in ("flute", "bass", "string")]))
    (music / "Album.cue").write_text(HIDDEN_CUE.format(start="00:08:00"), encoding="utf-8")
    database = open_database(tmp_path / "lib.db")
    assert scan([music], db=database, analyser=FakeAnalyser(), jobs=0).scanned == 1
    database.close()
    db = str(tmp_path / "lib.db")
    table = (f"\ncue sheet: {music / 'Album.cue'} (2 tracks + hidden track 0)\n"
             "TRACK  FROM  TO    TITLE                             INSTRUMENTS\n"
             "#00    0:00  0:08  (hidden, before the first track)  flute\n"
             "#01    0:08  0:16  Low / The Tones                   bass\n"
             "#02    0:16  0:24  High / The Tones                  string\n")  # fmt: skip
    assert _show(db, str(flac)).endswith(table)
    d = json.loads(_show(db, str(flac), "--json"))
    assert [(t["number"], t["title"], t["start"], t["end"], t["windows"], t["hidden"], t["instruments"]) for t in d["cue_tracks"]] == [
        (0, None, 0.0, 8.0, 2, True, ["flute"]), (1, "Low", 8.0, 16.0, 2, False, ["bass"]),
        (2, "High", 16.0, 24.0, 2, False, ["string"])]  # fmt: skip
    rows = json.loads(_query(db, "--cue-tracks", "--has", "flute", "-f", "json").stdout)
    assert [(r["path"], r["number"], r["title"], r["hidden"]) for r in rows] == [(str(flac), 0, None, True)]
    assert _query(db, "--cue-tracks", "--has", "flute").stdout.splitlines()[1].split()[1:5] == ["#00", "0:00", "0:08", "(hidden,"]
    out = _predict(flac).stdout
    assert [line[4:] for line in out.splitlines()[2:]] == table.splitlines()[1:]
    (music / "Album.cue").write_text(HIDDEN_CUE.format(start="00:03:00"), encoding="utf-8")  # (a pre-gap: no track 0)
    assert [t["number"] for t in json.loads(_show(db, str(flac), "--json"))["cue_tracks"]] == [1, 2]


# --- tagger predict of an album image -----------------------------------------------------------


@pytest.fixture
def image(tmp_path, fake_models):
    """Album.flac (bass, flute, string tracks) and Album.cue, for `tagger predict` (no database)."""
    flac = _album(tmp_path / "Album.flac")
    (tmp_path / "Album.cue").write_text(ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    return flac


def _predict(*args):
    r = CliRunner().invoke(app, ["predict", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r


def test_predict_lists_each_cue_track_with_its_families(image):
    """`tagger predict` gave an album image only as one track; it gives each cue track's families
    too, from the windows it analysed, by the rule `tagger show` gives them with (the same table)."""
    r = _predict(image)
    head, scores, *cue = r.stdout.splitlines()
    assert head == f"{image}: bass, flute, string" and scores.startswith("    bass=")
    assert cue == [
        f"    cue sheet: {image.with_suffix('.cue')} (3 tracks)",
        "    TRACK  FROM  TO    TITLE               INSTRUMENTS",
        "    #01    0:00  0:08  Low / Bassist       bass",
        "    #02    0:08  0:16  Middle / The Tones  flute",
        "    #03    0:16  0:24  High / The Tones    string",
    ], r.stdout
    assert r.stderr == ""


def test_predict_json_has_the_cue_tracks_as_show_json_has_them(image, tmp_path):
    row = json.loads(_predict("--json", image).stdout)
    assert row["instruments"] == ["bass", "flute", "string"] and row["cue_note"] is None
    assert row["cue_sheet"] == str(image.with_suffix(".cue"))
    tracks = row["cue_tracks"]
    assert [(t["number"], t["title"], t["performer"], t["start"], t["end"], t["windows"], t["instruments"]) for t in tracks] == [
        (1, "Low", "Bassist", 0.0, 8.0, 2, ["bass"]), (2, "Middle", "The Tones", 8.0, 16.0, 2, ["flute"]),
        (3, "High", "The Tones", 16.0, 24.0, 2, ["string"])]  # fmt: skip
    # (the keys and values show --json gives from the scan's stored window scores of the same file)
    database = open_database(tmp_path / "lib.db")
    try:
        assert scan([tmp_path], db=database, analyser=FakeAnalyser(), jobs=0).scanned == 1
        with database.engine.connect() as conn:
            shown = with_cue_tracks(conn, track_detail(conn, path=str(image))).to_dict()
    finally:
        database.close()
    # (to the precision the database keeps window scores in)
    for t in shown["cue_tracks"]:
        for f in t["families"]:
            f["score"] = pytest.approx(f["score"], abs=1e-3)
    assert tracks == shown["cue_tracks"]
    # (what tag --from-json reads of the row is as it was)
    from tagger.tags.rows import PredictionRow

    assert PredictionRow.from_dict(row).instruments == ["bass", "flute", "string"]


def test_predict_of_a_bad_cue_sheet_predicts_the_file_with_a_note(image):
    cue = image.with_suffix(".cue")
    cue.write_text(ALBUM_CUE.format(name="Album.wav").replace("00:16:00", "00:16:99"), encoding="utf-8")
    r = _predict(image)
    assert r.stdout.splitlines()[0] == f"{image}: bass, flute, string" and "TRACK" not in r.stdout
    assert r.stdout.endswith(f"\n    cue sheet: {cue}: line 16: '00:16:99' is not a time (mm:ss:ff: seconds under 60, "
                             "frames under 75); the file is predicted as one track\n"), r.stdout  # fmt: skip
    row = json.loads(_predict("--json", image).stdout)
    assert row["instruments"] == ["bass", "flute", "string"] and row["cue_tracks"] == [] and row["cue_sheet"] is None
    assert "is not a time" in row["cue_note"]
    cue.write_text(ALBUM_CUE.format(name="Album.wav").replace("00:16:00", "03:16:00"), encoding="utf-8")
    r = _predict(image)
    assert r.stdout.endswith(f"\n    cue sheet: {cue}: track 03 starts at 03:16.00, after the end of the file (00:24.00): "
                             "the cue sheet of another rip? The file is predicted as one track\n"), r.stdout  # fmt: skip


def test_predict_of_a_file_without_cue_sheet_is_as_before(image):
    image.with_suffix(".cue").unlink()
    r = _predict(image)
    assert len(r.stdout.splitlines()) == 2 and "cue" not in r.stdout
    row = json.loads(_predict("--json", image).stdout)
    assert not {"cue_sheet", "cue_tracks", "cue_note"} & set(row)


def test_json_names_a_cue_sheet_whose_name_is_not_utf8_with_escapes(image, tmp_path):
    """A cue sheet named in Latin-1 (``rip \\xe9.cue``) was named in ``predict --json``'s and ``show
    --json``'s ``cue_sheet`` and ``cue_note`` as the lone surrogate Python reads the byte as, which
    strict JSON readers refuse: it is written ``\\xe9``, as ``scan --json`` names such files; the
    tables show it as before."""
    image.with_suffix(".cue").unlink()
    for name in (b"a rip \xe9.cue", b"b rip \xe9.cue"):
        with open(os.path.join(os.fsencode(tmp_path), name), "wb") as f:
            f.write(ALBUM_CUE.format(name="Album.wav").encode())
    raw = _predict("--json", image).stdout
    row = json.loads(raw)
    json.dumps(row, ensure_ascii=False).encode("utf-8")  # (a lone surrogate cannot be encoded)
    assert "\\ud" not in raw and row["cue_sheet"] == f"{tmp_path}/a rip \\xe9.cue" and len(row["cue_tracks"]) == 3
    assert row["cue_note"] == f"1 other cue sheet(s) name this file too, not read: {tmp_path}/b rip \\xe9.cue"
    assert f"    cue sheet: {tmp_path}/a rip \\xe9.cue (3 tracks)\n" in _predict(image).stdout
    database = open_database(tmp_path / "lib.db")
    try:
        assert scan([tmp_path], db=database, analyser=FakeAnalyser(), jobs=0).scanned == 1
    finally:
        database.close()
    raw = _show(str(tmp_path / "lib.db"), str(image), "--json")
    shown = json.loads(raw)
    assert "\\ud" not in raw and (shown["cue_sheet"], shown["cue_note"]) == (row["cue_sheet"], row["cue_note"])

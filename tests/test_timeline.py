"""The timeline picture: window scores kept in the database, drawn for `tagger show/predict --plot`.

The track is generated here with known contents at known times (bass 0-8 s, flute 8-16 s, silence
16-20 s, string 20-24 s) and scanned with the band-listening fake analyser of `library_fakes`, so
the window scores are known: ~1 in the band of the playing tone, ~0 elsewhere.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from conftest import tone_signal, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger import timeline as T
from tagger.cli import app
from tagger.db import models as M
from tagger.db.queries import track_timeline
from tagger.db.session import open_database
from tagger.library.scan import scan

PLAN = [("bass", 8.0), ("flute", 8.0), (None, 4.0), ("string", 4.0)]
"""(family playing, seconds): windows 0-1 bass, 2-3 flute, 4 silent, 5 string."""
EXPECTED_LOUD = {0: "bass", 1: "bass", 2: "flute", 3: "flute", 5: "string"}


def _track(path):
    parts = [tone_signal([FREQ[f]], seconds=s) if f else np.zeros(int(s * 16_000), np.float32) for f, s in PLAN]
    return write_audio(path, np.concatenate(parts))


@pytest.fixture
def scanned(tmp_path):
    music = tmp_path / "music"
    path = str(_track(music / "walk.flac"))
    db = tmp_path / "lib.db"
    database = open_database(db)
    analyser = FakeAnalyser()
    scan([music], db=database, analyser=analyser, jobs=0)
    yield database, str(db), path, analyser
    database.close()


def test_window_scores_are_stored_with_known_values(scanned):
    database, _, path, _ = scanned
    with database.session() as s:
        track = s.scalar(select(M.Track).where(M.Track.path == path))
        families, starts, scores = track.window_scores.unpack()
    assert families == ["bass", "flute", "string"]
    np.testing.assert_allclose(starts, [0, 4, 8, 12, 16, 20])
    assert scores.shape == (6, 3) and scores.dtype == np.float32
    assert np.isnan(scores[4]).all() and not np.isnan(np.delete(scores, 4, axis=0)).any()
    for i, fam in EXPECTED_LOUD.items():
        j = families.index(fam)
        assert scores[i, j] > 0.9, (i, fam, scores[i])
        assert np.all(np.delete(scores[i], j) < 0.2), (i, fam, scores[i])


def test_show_plot_draws_the_stored_scores(scanned, tmp_path):
    database, db, path, analyser = scanned
    out = tmp_path / "pics" / "walk.png"
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert "instruments: bass, flute, string" in r.output
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    width, height = T.figure_size(3)
    assert pixels.shape[:2] == (round(height * T.DPI), round(width * T.DPI)) == (265, 1200)
    assert pixels[..., :3].std() > 0.05  # something drawn, not a blank canvas

    with database.session() as s:
        tl = track_timeline(s, path=path)
        stored = s.scalar(select(M.WindowScores)).unpack()[2]
    assert tl.model_version == "fake-1" and tl.present == ["bass", "flute", "string"]
    assert tl.thresholds == {"bass": 0.5, "flute": 0.5, "string": 0.5}
    assert tl.segments == {"bass": [(0.0, 8.0)], "flute": [(8.0, 16.0)], "string": [(20.0, 24.0)]}
    drawn = T.draw(tl, tmp_path / "again.svg")
    assert (tmp_path / "again.svg").read_text().lstrip().startswith("<?xml")
    np.testing.assert_array_equal(drawn, stored.T)  # lanes x windows, NaN where silent
    # ... and the stored float16 values are the analyser's own probabilities, to float16 precision
    from tagger.library.assemble import analyse_track

    fresh = analyse_track(path, analyser).window_scores
    np.testing.assert_allclose(drawn.T, fresh, atol=1e-3)


def test_a_track_scanned_before_window_scores_asks_for_a_rescan(scanned, tmp_path):
    database, db, path, _ = scanned
    with database.session() as s:  # what a database upgraded from revision 0002 holds
        s.execute(text("DELETE FROM window_scores"))
    out = tmp_path / "old.png"
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(out)])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "`tagger scan --rescan-stale` of its folder" in lines[0] and path in lines[0], r.output
    assert not out.exists()
    # the text view still works
    r = CliRunner().invoke(app, ["show", "--db", db, path])
    assert r.exit_code == 0 and "instruments: bass, flute, string" in r.output


def test_rescan_stale_stores_the_window_scores_of_a_track_analysed_before_them(scanned, tmp_path):
    """A database upgraded from a tagger older than revision 0003 (this model's results, no window
    scores): show said "a rescan stores them", but no scan did, `--rescan-stale` (this model's: not
    stale) nor a plain one (an unchanged file), so its timeline and cue tracks never came (found
    upgrading a library of the 2026-11-25 tagger). `--rescan-stale` analyses it again, once."""
    database, db, path, analyser = scanned
    with database.session() as s:  # what a database upgraded from revision 0002 holds
        s.execute(text("DELETE FROM window_scores"))
    music = os.path.dirname(path)
    assert scan([music], db=database, analyser=analyser, jobs=0).scanned == 0  # a plain scan keeps the results
    with database.session() as s:
        assert s.scalar(text("SELECT count(*) FROM window_scores")) == 0
    assert scan([music], db=database, analyser=analyser, jobs=0, rescan_stale=True).scanned == 1
    with database.session() as s:
        timeline = track_timeline(s, path=path)
    assert timeline.scores.shape[0] == 6 and timeline.present == ["bass", "flute", "string"]
    assert scan([music], db=database, analyser=analyser, jobs=0, rescan_stale=True).scanned == 0  # once
    out = tmp_path / "now.png"
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(out)])
    assert r.exit_code == 0 and out.exists(), r.output


def test_a_plot_never_draws_over_a_users_file_and_replaces_an_earlier_timeline(scanned, tmp_path):
    """`--plot cover.png` in an album folder drew over the album's cover art without a word. Only an
    earlier timeline (tagger's mark in its metadata) or an empty file is replaced; anything else, a
    folder or a link to a user's file is refused before anything is drawn, and left as it was."""
    _, db, path, _ = scanned
    cover = tmp_path / "cover.png"
    cover.write_bytes(b"\x89PNG\r\n\x1a\n the album's only cover")
    link = tmp_path / "link.svg"
    link.symlink_to(cover)
    for target in (cover, link, tmp_path):
        r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(target)])
        assert r.exit_code == 1 and str(target) in r.output and "Traceback" not in r.output, r.output
    assert "tagger did not write" in CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(cover)]).output
    assert cover.read_bytes() == b"\x89PNG\r\n\x1a\n the album's only cover" and link.is_symlink()
    for name in ("walk.png", "walk.svg"):
        out = tmp_path / name
        for _ in range(2):  # a new picture, then the same one drawn again over it
            r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(out)])
            assert r.exit_code == 0, r.output
        assert T.MARK.encode() in out.read_bytes()[:8192]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    empty = tmp_path / "empty.png"
    empty.touch()
    assert CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(empty)]).exit_code == 0


def test_plot_needs_png_or_svg(scanned, tmp_path):
    _, db, path, _ = scanned
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(tmp_path / "x.jpg")])
    assert r.exit_code == 1 and ".png or .svg" in r.output


def test_rescan_replaces_and_errors_and_copies_follow(scanned, tmp_path):
    database, _, path, _ = scanned
    import shutil

    copy = tmp_path / "music" / "copy.flac"
    shutil.copy(path, copy)
    scan([tmp_path / "music"], db=database, analyser=FakeAnalyser(), jobs=0)
    with database.session() as s:
        rows = {t.path: t.window_scores for t in s.scalars(select(M.Track))}
        assert rows[str(copy)].scores == rows[path].scores and rows[str(copy)].n_windows == 6
    # the file becomes unreadable: its window scores go with its results
    with open(path, "wb") as f:
        f.write(b"not audio any more" * 100)
    scan([tmp_path / "music"], db=database, analyser=FakeAnalyser(), jobs=0)
    with database.session() as s:
        assert s.scalar(text("SELECT count(*) FROM window_scores")) == 1
        s.execute(text("DELETE FROM tracks"))
    with database.session() as s:
        assert s.scalar(text("SELECT count(*) FROM window_scores")) == 0


def test_predict_plot_with_the_shipped_models(tmp_path):
    """`tagger predict FILE --plot` (no database) with the real models: the picture of all families."""
    import json

    import matplotlib.image

    from tagger.model.ensemble import default_model_dir

    if not (default_model_dir() / "manifest.json").is_file():
        pytest.skip("the shipped models are needed")
    song = write_audio(tmp_path / "song.wav", tone_signal([440.0, 880.0], seconds=12.0, silence=4.0))
    out = tmp_path / "song.png"
    r = CliRunner().invoke(app, ["predict", "--json", str(song), "--plot", str(out)])
    assert r.exit_code == 0, r.output
    row = json.loads(next(ln for ln in r.output.splitlines() if ln.startswith("{")))
    assert row["windows"] == 4
    families = list(json.loads((default_model_dir() / "manifest.json").read_text())["families"])
    width, height = T.figure_size(len(families))
    assert matplotlib.image.imread(out).shape[:2] == (round(height * T.DPI), round(width * T.DPI)) == (650, 1200)
    r = CliRunner().invoke(app, ["predict", str(song), str(song), "--plot", str(out)])
    assert r.exit_code == 1 and "one file" in r.output


def test_from_result_draws_exactly_the_result_windows(tmp_path):
    from tagger.library.assemble import analyse_track

    analyser = FakeAnalyser()
    path = _track(tmp_path / "walk.wav")
    result = analyse_track(path, analyser, hop_seconds=2.0)  # overlapping windows
    tl = T.from_result(path, result, thresholds=analyser.thresholds, model_version=analyser.version)
    drawn = T.draw(tl, tmp_path / "walk.png")
    assert drawn.shape == (3, result.windows) and result.windows == 11  # starts 0, 2, ..., 20 s
    np.testing.assert_array_equal(drawn, result.window_scores.T)
    assert tl.present == ["bass", "flute", "string"] and tl.duration == pytest.approx(24.0)


def test_no_family_is_drawn_in_the_grey_of_silent_windows():
    """The eighth lane (reed, in the shipped models' order) was drawn in tab10's grey, so its window
    scores looked like the grey the legend gives silent windows (found walking through the README:
    a flute track's `show --plot`, its reed lane shaded grey where nothing was silent)."""
    colours = T._colours(12)
    assert all(len({round(c, 2) for c in rgba[:3]}) > 1 for rgba in colours), colours
    assert len({tuple(c) for c in colours[:10]}) == 10


def test_show_plot_draws_a_missing_tracks_stored_timeline(scanned, tmp_path):
    """`show --plot` of a track whose file went missing said 'has no results (missing)' where `show`
    lists the results the database keeps for it (status missing) and its window scores are stored:
    it draws them. Without window scores it says so; a track that could not be analysed still has
    no results."""
    database, db, path, _ = scanned
    os.remove(path)
    with database.session() as s:  # (what a scan records of it; one of a folder's tracks all gone is kept)
        s.execute(text("UPDATE tracks SET status = 'missing'"))
    out = tmp_path / "gone.png"
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert "status: missing" in r.output and "instruments: bass, flute, string" in r.output and out.exists()
    with database.session() as s:
        assert track_timeline(s, path=path).present == ["bass", "flute", "string"]
        s.execute(text("DELETE FROM window_scores"))
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(tmp_path / "none.png")])
    assert r.exit_code == 1 and f"{path}: missing, and analysed before the database kept window scores" in r.output
    assert not (tmp_path / "none.png").exists()
    with database.session() as s:
        s.execute(text("DELETE FROM detections"))
        s.execute(text("UPDATE tracks SET status = 'error', error = 'not a readable audio file'"))
    r = CliRunner().invoke(app, ["show", "--db", db, path, "--plot", str(tmp_path / "bad.png")])
    assert r.exit_code == 1 and f"{path}: has no results (error: not a readable audio file)" in r.output

"""End to end with a real Ensemble (random-weight compact classifiers): `tagger scan` through
worker processes, then `tagger query`; the stored scores equal direct inference on the same file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import compact_models, tone_signal, write_audio
from tagger.cli import app

pytestmark = pytest.mark.model

FAMILIES = ("bass", "flute")


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    return compact_models(tmp_path_factory.mktemp("models"), FAMILIES, version="test-random-1", recipe="test-random")


def test_real_ensemble_scan_through_workers_and_query(tmp_path, random_models):
    from tagger.library.assemble import analyse_track
    from tagger.db.queries import find_tracks, track_detail
    from tagger.db.session import open_database
    from tagger.model.ensemble import Ensemble

    music = tmp_path / "music"
    files = [
        write_audio(music / "a.flac", tone_signal([220.0], seconds=9.0, sr=44_100), sr=44_100),
        write_audio(music / "b.mp3", tone_signal([880.0, 1320.0], seconds=6.0)),
        write_audio(music / "c.m4a", tone_signal([440.0], seconds=5.0)),
    ]
    db_path = tmp_path / "lib.db"
    runner = CliRunner()
    args = ["scan", str(music), "--models", str(random_models), "--db", str(db_path), "--jobs", "2", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert (summary["scanned"], summary["failed"], summary["model_version"]) == (3, 0, "test-random-1")
    assert summary["audio_seconds"] == pytest.approx(20.0, abs=0.2)

    ensemble = Ensemble.load(random_models)
    db = open_database(db_path)
    with db.session() as s:
        tracks = {t.path: t for t in find_tracks(s)}
        assert sorted(tracks) == sorted(str(f) for f in files)
        for f in files:
            direct = analyse_track(f, ensemble)
            stored = tracks[str(f)]
            assert list(stored.scores) == list(FAMILIES)
            for fam in FAMILIES:
                assert stored.scores[fam] == pytest.approx(direct.scores[fam], abs=2e-3)
            assert stored.instruments == direct.instruments
            detail = track_detail(s, path=str(f))
            assert detail.windows == direct.windows
    db.close()

    again = runner.invoke(app, args[:-1])  # human summary this time
    assert again.exit_code == 0, again.output
    assert "0 scanned, 3 skipped unchanged (0 stale), 0 failed" in again.output

    q = runner.invoke(app, ["query", "--db", str(db_path), "--format", "paths"])
    assert q.exit_code == 0 and sorted(q.output.split()) == sorted(str(f) for f in files)


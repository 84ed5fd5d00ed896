"""Trust: models load only from their directory and only when their hashes match; a scan reads and
writes only inside the scanned folders (and the database), never through a symlink out of them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db.queries import find_tracks
from tagger.db.session import open_database
from tagger.errors import ModelError
from tagger.features import FeatureConfig
from tagger.crawl import CrawlReport, crawl
from tagger.library.scan import scan, tag_writer
from tagger.model.ensemble import MANIFEST_FORMAT, Ensemble


def _model_dir(path: Path, files: dict[str, str]) -> Path:
    """A manifest whose classifiers are `files` ({family: file as written in the manifest})."""
    path.mkdir(parents=True, exist_ok=True)
    classifiers = {}
    for fam, name in files.items():
        target = path / name if not os.path.isabs(name) else Path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not really keras: " + fam.encode())
        classifiers[fam] = {"file": name, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "threshold": 0.5}
    manifest = {"format": MANIFEST_FORMAT, "version": "t-1", "families": list(files),
                "features": FeatureConfig().to_dict(), "classifiers": classifiers}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("name", ["../outside.keras", "sub/../../outside.keras", "ABS", "."])
def test_a_classifier_outside_the_model_directory_is_refused(tmp_path, name):
    if name == "ABS":
        name = str(tmp_path / "elsewhere" / "evil.keras")
    d = _model_dir(tmp_path / "models", {"bass": "bass.keras"})
    manifest = json.loads((d / "manifest.json").read_text())
    if name != ".":
        target = (d / name).resolve() if not os.path.isabs(name) else Path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"evil")
        manifest["classifiers"]["bass"] = {"file": name, "sha256": hashlib.sha256(b"evil").hexdigest()}
    else:
        manifest["classifiers"]["bass"]["file"] = "."
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="outside the model directory"):
        Ensemble.load(d)


def test_a_tampered_classifier_is_refused_before_anything_is_loaded(tmp_path, monkeypatch):
    from tagger.model import backends

    d = _model_dir(tmp_path / "models", {"bass": "bass.keras", "flute": "nested/flute.keras"})
    with open(d / "nested" / "flute.keras", "r+b") as f:
        f.write(b"N")  # one byte changed, size unchanged
    loaded = []
    def recording(files):  # the backend: records what reaches it, scores every window 0.5
        loaded.append(files.members[0].classifiers)
        return lambda feats: np.full((len(feats), 2), 0.5, np.float32)

    monkeypatch.setattr(backends, "load_runner", recording)
    with pytest.raises(ModelError, match="sha256 mismatch for 'flute'"):
        Ensemble.load(d)
    assert loaded == []  # nothing deserialised, not even the intact classifier
    d2 = _model_dir(tmp_path / "ok", {"bass": "bass.keras", "flute": "nested/flute.keras"})
    Ensemble.load(d2)  # the same layout untampered passes the checks (and reaches the loader)
    assert [p.name for p in loaded[0]] == ["bass.keras", "flute.keras"]


def test_classifiers_are_loaded_in_keras_safe_mode(monkeypatch):
    keras = pytest.importorskip("keras")
    from tagger.model.ensemble import load_classifier

    seen = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(keras.saving, "load_model", fake_load)
    with pytest.raises(ModelError, match="cannot load classifier"):
        load_classifier("x.keras")
    assert seen.get("safe_mode") is True


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
    return out


@pytest.fixture
def linked_library(tmp_path):
    """music/ with its own files, a link to a folder inside it, and links to a folder and a file outside."""
    music, outside = tmp_path / "music", tmp_path / "outside"
    write_audio(music / "own.flac", tone_signal([110.0], seconds=4.0))
    write_audio(music / "album" / "in_album.flac", tone_signal([1000.0], seconds=4.0))
    write_audio(outside / "elsewhere.flac", tone_signal([4000.0], seconds=4.0))
    write_audio(outside / "single.flac", tone_signal([110.0], seconds=4.0))
    os.symlink(music / "album", music / "album_link")
    os.symlink(outside, music / "outside_link")
    os.symlink(outside / "single.flac", music / "single_link.flac")
    return music, outside


def test_symlinks_out_of_the_library_are_not_followed_unless_asked(linked_library):
    music, outside = linked_library
    report = CrawlReport()
    found = sorted(str(p) for p in crawl([music], report=report))
    assert found == [str(music / "album" / "in_album.flac"), str(music / "own.flac")]  # the inner link: walked once
    assert sorted(report.external_links) == [str(music / "outside_link"), str(music / "single_link.flac")]
    followed = sorted(str(p) for p in crawl([music], follow_external_symlinks=True))
    assert str(music / "outside_link" / "elsewhere.flac") in followed and str(music / "single_link.flac") in followed
    assert len(followed) == 4  # outside/single.flac once: through the file link, not again through the folder link
    assert str(music / "outside_link" / "single.flac") not in followed


def test_a_file_outside_reached_through_several_links_is_one_track_analysed_and_tagged_once(linked_library, tmp_path):
    # Two links to one file outside the library and a link to its folder, with
    # --follow-external-symlinks: were three tracks of one file, each analysed, and the tag write
    # through the first made the others fail, 'the file changed while it was being analysed'.
    music, outside = linked_library
    os.symlink(outside / "single.flac", music / "album" / "again.flac")
    db = open_database(tmp_path / "library.db")
    try:
        first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, follow_external_symlinks=True,
                     on_track=tag_writer(model_version="fake-1", settle_seconds=0))  # fmt: skip
        again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, follow_external_symlinks=True,
                     on_track=tag_writer(model_version="fake-1", settle_seconds=0))  # fmt: skip
        with db.session() as s:
            stored = {t.path: t.instruments for t in find_tracks(s)}
    finally:
        db.close()
    assert (first.scanned, first.failed, first.errors) == (4, 0, [])
    assert sorted(stored) == sorted(map(str, [music / "own.flac", music / "album" / "in_album.flac",
                                              music / "single_link.flac", music / "outside_link" / "elsewhere.flac"]))
    assert stored[str(music / "single_link.flac")] == ["bass"]  # the first name the walk reaches
    assert first.tags_written == 4 and (again.scanned, again.failed, again.tags_written) == (0, 0, 0)
    assert tags.read_instruments(outside / "single.flac").instruments == ["bass"]


def test_a_file_outside_given_by_name_and_reached_through_a_link_is_crawled_once(linked_library):
    # `scan ~/Music ~/Downloads/x.flac --follow-external-symlinks`, ~/Music holding a link to it (and
    # to its folder): was yielded under the link's name and again under its own.
    music, outside = linked_library
    single = str(outside / "single.flac")
    after = [str(p) for p in crawl([music, single], follow_external_symlinks=True)]
    before = [str(p) for p in crawl([single, music], follow_external_symlinks=True)]
    assert str(music / "single_link.flac") in after and single not in after and len(after) == 4
    assert before[0] == single and str(music / "single_link.flac") not in before and len(before) == 4


def test_following_external_links_resolves_folders_not_every_file(linked_library, monkeypatch):
    # Each file's os.path.realpath (every part of its path looked up) doubled the crawl of a
    # library of 100,000 files with --follow-external-symlinks: only links and folders are resolved.
    music, outside = linked_library
    for i in range(5):
        (music / "album" / f"more{i}.flac").write_bytes(b"")
        (outside / f"more{i}.flac").write_bytes(b"")
    resolved, realpath = [], os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **kw: resolved.append(os.fspath(p)) or realpath(p, **kw))
    found = sorted(str(p) for p in crawl([music], follow_external_symlinks=True))
    monkeypatch.undo()
    assert len(found) == 14 and str(music / "outside_link" / "more4.flac") in found
    files = {p for p in resolved if p.endswith(".flac")}
    assert files <= {str(music / "single_link.flac"), str(music / "album_link" / "in_album.flac")}


def test_a_scan_writes_only_inside_the_library_and_the_database(linked_library, tmp_path):
    music, outside = linked_library
    before_outside = _snapshot(outside)
    before_music = _snapshot(music)
    parent_before = sorted(os.listdir(tmp_path))
    db = open_database(tmp_path / "library.db")
    try:
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
        with db.session() as s:
            assert {t.path: t.instruments for t in find_tracks(s)} == {
                str(music / "own.flac"): ["bass"], str(music / "album" / "in_album.flac"): ["flute"]}  # fmt: skip
    finally:
        db.close()
    assert summary.tags_written == 2
    assert _snapshot(outside) == before_outside  # not read for analysis, not tagged
    after = _snapshot(music)
    assert set(after) == set(before_music)  # no new file (no temp file left) in the library
    assert tags.read_instruments(music / "own.flac").instruments == ["bass"]
    new_beside = sorted(set(os.listdir(tmp_path)) - set(parent_before))
    assert new_beside == ["library.db", "library.db.lock"]  # the database (WAL files merged on close) and its lock


def test_cli_scan_passes_the_symlink_and_timeout_options(tmp_path, monkeypatch, fake_models):
    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.library import scan as scan_module
    from tagger.library.scan import DEFAULT_FILE_TIMEOUT, ScanSummary

    seen = []
    monkeypatch.setattr(scan_module, "scan", lambda roots, **kw: seen.append(kw) or ScanSummary(1, "fake-1"))
    base = ["scan", str(tmp_path), "--db", str(tmp_path / "l.db"), "--no-write-tags"]
    for extra in ([], ["--follow-external-symlinks", "--file-timeout", "7.5"], ["--file-timeout", "0"]):
        res = CliRunner().invoke(app, base + extra)
        assert res.exit_code == 0, res.output
    assert [kw["follow_external_symlinks"] for kw in seen] == [False, True, False]
    assert [kw.get("file_timeout", DEFAULT_FILE_TIMEOUT) for kw in seen] == [DEFAULT_FILE_TIMEOUT, 7.5, None]

"""`tagger tag` and `tagger untag` on real files (ffmpeg-made), from `tagger predict --json` output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import predicted
from typer.testing import CliRunner

from tagger import tags
from tagger.cli import app

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def _tone(path, codec: str):
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=330:duration=1",
         "-c:a", codec, "-metadata", "title=Song", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture
def library(tmp_path):
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    files = {
        "a": _tone(music / "album" / "a.flac", "flac"),
        "b": _tone(music / "album" / "b.mp3", "libmp3lame"),
        "c": _tone(music / "c.ogg", "libvorbis"),
    }
    rows = [
        predicted(files["a"], instruments=["guitar", "bass"], scores={"bass": 0.91, "guitar": 0.8, "vocal": 0.1}),
        predicted(files["b"], instruments=["vocal"], scores={"bass": 0.2, "guitar": 0.1, "vocal": 0.95}),
        predicted(files["c"], instruments=["vocal", "string"], scores={"string": 0.7, "vocal": 0.6}),
    ]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return music, files, preds


def _kid3_files(music):
    """A FLAC, an MP3 and an Ogg Vorbis file encoded by ffmpeg, and an M4A with freeform atoms, in
    ``music``, each with INSTRUMENTS=flute and INSTRUMENTS_MODEL=kid3-manual (typed in kid3): fields no
    model tagger knows wrote."""
    from mutagen.mp4 import MP4, MP4FreeForm

    files = [_tone(music / "a.flac", "flac"), _tone(music / "b.mp3", "libmp3lame"), _tone(music / "c.ogg", "libvorbis")]
    for f in files:
        tags.write_instruments(f, instruments=["flute"], model_version="kid3-manual")
    m4a = _tone(music / "d.m4a", "aac")
    mp4 = MP4(m4a)
    mp4["----:com.apple.iTunes:INSTRUMENTS"] = [MP4FreeForm(b"flute")]
    mp4["----:com.apple.iTunes:INSTRUMENTS_MODEL"] = [MP4FreeForm(b"kid3-manual")]
    mp4.save()
    files.append(m4a)
    return files


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("command", ["tag", "untag"])
def test_help(command):
    res = run(command, "--help")
    assert res.exit_code == 0
    assert "--dry-run" in res.output and "--keep-mtime" in res.output
    # (untag's --settle-seconds said "a later run tags them", its help shared with tag's)
    assert "--settle-seconds" in res.output and "tags them" not in " ".join(res.output.replace("│", " ").split())


def test_tag_from_json_then_untag(library):
    music, files, preds = library
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1", "--scores")
    assert res.exit_code == 0, res.output
    assert f"tagged {files['a']}: bass, guitar" in res.output
    assert tags.read_instruments(files["a"]) == tags.TagState(["bass", "guitar"], "m-1", {"bass": 0.91, "guitar": 0.8, "vocal": 0.1})
    assert tags.read_instruments(files["c"]).instruments == ["string", "vocal"]

    again = run("tag", "--from-json", str(preds), "--model-version", "m-1", "--scores")
    assert again.exit_code == 0 and "0 tagged, 3 unchanged, 0 skipped" in again.output

    dry = run("untag", "--model-version", "m-1", str(music / "album"), "--dry-run")
    assert dry.exit_code == 0 and "would untag" in dry.output
    assert tags.read_instruments(files["a"]).tagged

    res = run("untag", "--model-version", "m-1", str(music))
    assert res.exit_code == 0, res.output
    assert "3 untagged" in res.output
    assert not any(tags.read_instruments(f).tagged for f in files.values())


def test_tag_selects_by_path_and_family(library):
    music, files, preds = library
    res = run("tag", str(music / "album"), "--from-json", str(preds), "--model-version", "m-1", "--query-lacks", "vocal")
    assert res.exit_code == 0, res.output
    assert tags.read_instruments(files["a"]).tagged
    assert not tags.read_instruments(files["b"]).tagged and not tags.read_instruments(files["c"]).tagged
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1", "--query-has", "string")
    assert "1 tagged" in res.output and tags.read_instruments(files["c"]).tagged
    assert not tags.read_instruments(files["b"]).tagged
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1", "--query-has", "kazoo")
    assert res.exit_code == 1 and "unknown instrument family" in res.output


def test_dry_run_and_keep_mtime(library):
    _music, files, preds = library
    data = files["b"].read_bytes()
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1", "--dry-run")
    assert res.exit_code == 0 and "would tag" in res.output and "3 would be tagged" in res.output
    assert files["b"].read_bytes() == data
    os.utime(files["b"], (1_000_000_000, 1_000_000_000))
    preds.write_text(json.dumps(predicted(files["b"], instruments=["vocal"])) + "\n")  # (as predict sees it now)
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1", "--keep-mtime", "--id3v23")
    assert res.exit_code == 0
    assert files["b"].stat().st_mtime == 1_000_000_000
    with open(files["b"], "rb") as f:
        assert f.read(4) == b"ID3\x03"


def test_read_only_file_is_skipped_and_the_rest_goes_on(library):
    _music, files, preds = library
    os.chmod(files["a"], 0o444)
    try:
        res = run("tag", "--from-json", str(preds), "--model-version", "m-1")
    finally:
        os.chmod(files["a"], 0o644)
    assert res.exit_code == 1
    assert f"skipped {files['a']}: file is read-only" in res.output
    assert "2 tagged, 0 unchanged, 1 skipped" in res.output
    assert not tags.read_instruments(files["a"]).tagged
    assert tags.read_instruments(files["b"]).instruments == ["vocal"]


def test_a_format_without_tags_is_said_and_counted_but_not_a_failure(library, tmp_path):
    """A Matroska audio file (tagger cannot write its tags) in a folder made `untag` fail (exit 1,
    "skipped") although tagger never wrote into it, and `tag` fail on every run: `untag` counts it
    unchanged, `tag` says so and counts it, neither exits 1 for it nor changes the file."""
    music, files, preds = library
    mka = _tone(music / "live.mka", "flac")
    before = mka.read_bytes()
    rows = preds.read_text() + json.dumps(predicted(mka, instruments=["vocal"], scores={"vocal": 0.9})) + "\n"
    preds.write_text(rows)
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1")
    assert res.exit_code == 0, res.output
    assert f"no tags for {mka}: unsupported format" in res.output
    assert "3 tagged, 0 unchanged, 0 skipped, 1 in formats without tags" in res.output
    res = run("untag", "--model-version", "m-1", str(music))
    assert res.exit_code == 0, res.output
    assert "3 untagged, 1 unchanged, 0 skipped" in res.output and str(mka) not in res.output
    assert mka.read_bytes() == before


def test_scan_json_lists_the_files_without_tags_as_objects_like_its_other_lists(tmp_path, fake_models):
    """`tagger scan --json`'s `untaggable` was a list of [path, reason] pairs where `tag_failures`,
    `deferred` and `errors` hold objects, and the README's example listed neither it nor seven other
    keys (found walking through the README)."""
    from typer.testing import CliRunner

    from tagger.cli import app

    (tmp_path / "music").mkdir()
    mka = _tone(tmp_path / "music" / "live.mka", "flac")
    r = CliRunner().invoke(app, ["scan", str(mka.parent), "--db", str(tmp_path / "lib.db"), "--jobs", "0",
                                 "--settle-seconds", "0", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["untaggable"] == [{"path": str(mka), "reason": out["untaggable"][0]["reason"]}]
    assert out["untaggable"][0]["reason"].startswith("unsupported format")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme[readme.index("// tagger scan --json"):readme.index("// tagger db prune --json")]
    assert all(f'"{key}":' in example for key in out), [key for key in out if f'"{key}":' not in example]


def test_a_scan_names_the_symbolic_links_out_of_its_folders_it_did_not_follow(tmp_path, fake_models):
    """A link in the library to music elsewhere (`~/Music/Jazz -> /mnt/disk2/Jazz`) was left out by
    the scan with a line in `-v`'s log alone: its music never scanned, and the summary said nothing
    (found walking through the README; `tag` and `untag` name such a link)."""
    from typer.testing import CliRunner

    from tagger.cli import app

    (tmp_path / "music").mkdir()
    (tmp_path / "disk2").mkdir()
    _tone(tmp_path / "disk2" / "far.flac", "flac")
    link = tmp_path / "music" / "Jazz"
    link.symlink_to(tmp_path / "disk2")
    args = [str(tmp_path / "music"), "--db", str(tmp_path / "lib.db"), "--jobs", "0", "--no-write-tags"]
    r = CliRunner().invoke(app, ["scan", *args])
    assert r.exit_code == 0, r.output
    assert r.stderr == (f"tagger: not followed: {link}, a symbolic link pointing outside the scanned folders (to "
                        f"{tmp_path / 'disk2'}); --follow-external-symlinks scans what it leads to\n")  # fmt: skip
    assert json.loads(CliRunner().invoke(app, ["scan", *args, "--json"]).stdout)["unfollowed"] == [str(link)]
    r = CliRunner().invoke(app, ["scan", *args, "--follow-external-symlinks", "--json"])
    assert json.loads(r.stdout)["unfollowed"] == [] and json.loads(r.stdout)["scanned"] == 1


def test_show_finds_a_track_scanned_through_a_link_out_of_the_library(tmp_path, fake_models):
    """A file scanned with --follow-external-symlinks is stored under the link's name (`query` lists
    `music/Jazz/far.flac`), but `show` resolved the name it was given to the real file and said `not
    in the library database` under either name (found walking through the README)."""
    from typer.testing import CliRunner

    from tagger.cli import app

    (tmp_path / "music").mkdir()
    (tmp_path / "disk2").mkdir()
    _tone(tmp_path / "disk2" / "far.flac", "flac")
    (tmp_path / "music" / "Jazz").symlink_to(tmp_path / "disk2")
    db = ["--db", str(tmp_path / "lib.db")]
    r = CliRunner().invoke(app, ["scan", str(tmp_path / "music"), *db, "--jobs", "0", "--no-write-tags",
                                 "--follow-external-symlinks"])  # fmt: skip
    assert r.exit_code == 0, r.output
    listed = str(tmp_path / "music" / "Jazz" / "far.flac")
    assert CliRunner().invoke(app, ["query", *db, "-f", "paths"]).stdout == listed + "\n"
    r = CliRunner().invoke(app, ["show", listed, *db, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["path"] == listed and json.loads(r.stdout)["status"] == "ok"
    r = CliRunner().invoke(app, ["show", listed, *db, "--plot", str(tmp_path / "far.png")])
    assert r.exit_code == 0 and (tmp_path / "far.png").stat().st_size > 0, r.output
    r = CliRunner().invoke(app, ["show", str(tmp_path / "music" / "Jazz" / "none.flac"), *db])
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_a_link_out_of_the_library_to_a_cover_or_a_log_is_not_named_as_unfollowed(tmp_path, fake_models):
    """A cover or a rip log linked from elsewhere (`folder.jpg -> /shared/art/x.jpg`) is no music the
    scan would find behind it: it was named at every scan as a link 'not followed', with
    `--follow-external-symlinks scans what it leads to`, which scanned nothing more. A link whose
    name alone says it holds no audio is passed over as such files are, unread; a link to music
    elsewhere is still named."""
    from typer.testing import CliRunner

    from tagger.cli import app

    (tmp_path / "music" / "Album").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    _tone(tmp_path / "music" / "Album" / "a.flac", "flac")
    _tone(tmp_path / "shared" / "far.flac", "flac")
    (tmp_path / "shared" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not much of a picture")
    (tmp_path / "shared" / "rip.log").write_text("EAC extraction logfile\n")
    (tmp_path / "music" / "Album" / "folder.jpg").symlink_to(tmp_path / "shared" / "cover.jpg")
    (tmp_path / "music" / "Album" / "rip.LOG").symlink_to(tmp_path / "shared" / "rip.log")
    far = tmp_path / "music" / "Album" / "bonus.flac"
    far.symlink_to(tmp_path / "shared" / "far.flac")
    args = [str(tmp_path / "music"), "--db", str(tmp_path / "lib.db"), "--jobs", "0", "--no-write-tags"]
    r = CliRunner().invoke(app, ["scan", *args, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["unfollowed"] == [str(far)]  # was: folder.jpg, rip.LOG and bonus.flac
    assert json.loads(r.stdout)["scanned"] == 1


def test_many_files_without_tags_are_named_five_then_counted(library):
    """`tag` named every file of a format without tags on every run: a library of thousands of
    Matroska files buried the summary under as many lines. The first five are named, the rest counted."""
    music, files, preds = library
    rows = []
    for i in range(7):
        mka = _tone(music / f"live{i}.mka", "flac")
        rows.append(json.dumps(predicted(mka, instruments=["vocal"], scores={"vocal": 0.9})) + "\n")
    preds.write_text(preds.read_text() + "".join(rows))
    res = run("tag", "--from-json", str(preds), "--model-version", "m-1")
    assert res.exit_code == 0, res.output
    assert res.output.count("no tags for ") == 5
    assert "tagger: ... and 2 more file(s) in formats without tags" in res.output
    assert "3 tagged, 0 unchanged, 0 skipped, 7 in formats without tags" in res.output


def test_changed_since_analysed_is_skipped(library):
    _music, files, preds = library
    st = files["a"].stat()
    rows = [predicted(files["a"], instruments=["bass"], model_version="m-2", mtime=st.st_mtime - 100)]
    preds.write_text(json.dumps(rows[0]) + "\n")
    res = run("tag", "--from-json", str(preds))
    assert res.exit_code == 1 and "changed since it was analysed" in res.output
    # what to do about a row: predict the file again (a scan, which it said, leaves the row as it was)
    assert "; run tagger predict --json on it again" in res.output and "scan it again" not in res.output
    assert not tags.read_instruments(files["a"]).tagged


def test_bad_json_and_missing_model_version(library, tmp_path, monkeypatch):
    _music, _files, preds = library
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruments": []}\n')
    res = run("tag", "--from-json", str(bad), "--model-version", "m")
    assert res.exit_code == 1 and "line 1" in res.output
    monkeypatch.setenv("TAGGER_MODELS", str(tmp_path / "no-models"))
    res = run("tag", "--from-json", str(preds))
    assert res.exit_code == 1 and "--model-version" in res.output


def _database_with(tmp_path, files, found):
    """A library database (migrated by the db layer) holding analysed tracks for ``files``."""
    from tagger.db import models as M
    from tagger.db.session import open_database
    from tagger.fingerprint import fingerprint
    from tagger.instruments import FAMILIES

    url = f"sqlite:///{tmp_path / 'library.db'}"
    database = open_database(url)
    with database.session() as s:
        model = M.ModelVersion(version="m-db", manifest_hash="0" * 64, families=json.dumps(FAMILIES), thresholds="{}")
        s.add(model)
        s.flush()
        s.add(M.Scan(model_version_id=model.id))
        for key, path in files.items():
            st = path.stat()
            track = M.Track(path=str(path), size=st.st_size, mtime=st.st_mtime, fingerprint=fingerprint(path),
                            status=M.STATUS_OK, model_version_id=model.id)  # fmt: skip
            track.detections = [
                M.Detection(family=f, present=f in found[key], score=0.9 if f in found[key] else 0.1, coverage=0.5)
                for f in FAMILIES
            ]
            s.add(track)
    return url, database


def test_tag_from_the_library_database(library, tmp_path):
    from sqlalchemy import select

    from tagger.db import models as M

    _music, files, _preds = library
    url, database = _database_with(tmp_path, files, {"a": ["bass", "guitar"], "b": ["vocal"], "c": []})
    res = run("tag", "--db", url, "--query-lacks", "vocal", "--scores")
    assert res.exit_code == 0, res.output
    assert "2 tagged, 0 unchanged, 0 skipped" in res.output
    state = tags.read_instruments(files["a"])
    assert state.instruments == ["bass", "guitar"] and state.model_version == "m-db" and state.scores["bass"] == 0.9
    assert tags.read_instruments(files["c"]) == tags.TagState([], "m-db", {f: 0.1 for f in state.scores})
    assert not tags.read_instruments(files["b"]).tagged
    with database.session() as s:  # the rewritten files' new size/mtime are recorded...
        track = s.scalar(select(M.Track).where(M.Track.path == str(files["a"])))
        assert (track.size, track.mtime) == (files["a"].stat().st_size, files["a"].stat().st_mtime)
        assert track.fingerprint != "f" * 32
    res = run("tag", "--db", url, "--scores")  # ...so a second run is not refused as "changed"
    assert res.exit_code == 0, res.output
    assert "1 tagged, 2 unchanged, 0 skipped" in res.output
    database.close()


def test_tag_from_database_refuses_files_changed_since_analysed(library, tmp_path):
    _music, files, _preds = library
    url, database = _database_with(tmp_path, files, {"a": ["bass"], "b": ["vocal"], "c": ["organ"]})
    database.close()
    with open(files["b"], "ab") as f:
        f.write(b"\0" * 10)
    res = run("tag", "--db", url, str(files["b"].parent))
    assert res.exit_code == 1
    assert f"skipped {files['b']}: file changed since it was analysed" in res.output
    assert "1 tagged, 0 unchanged, 1 skipped" in res.output
    assert not tags.read_instruments(files["b"]).tagged and not tags.read_instruments(files["c"]).tagged


def test_a_non_numeric_score_is_a_one_line_error_naming_the_file_and_line(library, tmp_path):
    _music, files, _preds = library
    bad = tmp_path / "bad-score.jsonl"
    bad.write_text(json.dumps({"path": str(files["a"]), "instruments": ["bass"], "scores": {"bass": "loud"}}) + "\n")
    res = run("tag", "--from-json", str(bad), "--model-version", "m", "--scores")
    assert res.exit_code == 1
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert f"{bad} line 1: {files['a']}: " in res.output and '"loud"' in res.output
    assert not tags.read_instruments(files["a"]).tagged


def test_tag_takes_the_filter_options_of_query(library, tmp_path):
    _music, files, _preds = library
    url, database = _database_with(tmp_path, files, {"a": ["bass", "guitar"], "b": ["vocal"], "c": ["bass"]})
    database.close()
    res = run("tag", "--db", url, "--has", "bass", "--path-glob", "*.flac")
    assert res.exit_code == 0, res.output
    assert "1 tagged, 0 unchanged, 0 skipped" in res.output
    assert tags.read_instruments(files["a"]).instruments == ["bass", "guitar"]
    assert not tags.read_instruments(files["c"]).tagged
    res = run("tag", "--db", url, "--has", "bass", "--min-score", "0.95")  # stored scores are 0.9
    assert res.exit_code == 0 and "0 tagged, 0 unchanged, 0 skipped" in res.output, res.output
    assert not tags.read_instruments(files["c"]).tagged
    for command in ("tag", "query"):  # the same options, documented the same way
        out = run(command, "--help").output
        assert all(option in out for option in ("--has", "--lacks", "--min-score", "--path-glob")), command
    assert "--query-has" not in run("tag", "--help").output  # the old name still works, hidden


def test_a_write_not_recorded_as_current_is_one_file_not_a_skipped_second(capsys):
    """Was: `tagged x.flac ...`, then `tagger: skipped x.flac: tags written, but a scan stored new
    results for it meanwhile ...` and `60 tagged, 0 unchanged, 1 skipped` for 60 files (found running
    `tagger tag --scores` beside a `scan --rescan-stale` of another model)."""
    import typer

    from tagger.cli.tags import _render
    from tagger.errors import TagWriteError, UntaggableError
    from tagger.tags.fields import TagChange, TagState

    def change(path, changed):
        return TagChange(path=path, before=TagState(), after=TagState(["bass"], "m"), changed=changed, written=changed)

    late = "tags written, but a scan stored new results for it meanwhile: not recorded as current; the next scan writes the right ones"
    results = [change("/m/a.flac", True), TagWriteError("/m/a.flac", late), change("/m/b.flac", False),
               TagWriteError("/m/c.flac", "file changed since it was analysed; scan it again"),
               UntaggableError("/m/d.mka", "unsupported format (Matroska)")]  # fmt: skip
    with pytest.raises(typer.Exit) as stopped:
        _render(results, verb="tag", dry_run=False)
    assert stopped.value.exit_code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"tagger: not recorded /m/a.flac: {late}",
                   "tagger: skipped /m/c.flac: file changed since it was analysed; scan it again",
                   "tagger: no tags for /m/d.mka: unsupported format (Matroska)",
                   # (the files in formats without tags counted with the others, before what is said of
                   # the ones written: was '...; 1 not recorded in the database as current (see above), 1 in
                   # formats without tags', found reviewing cf74429)
                   "1 tagged, 1 unchanged, 1 skipped, 1 in formats without tags; 1 not recorded in the database as "
                   "current (see above)"]  # fmt: skip


def test_untag_keeps_fields_of_a_model_version_tagger_does_not_know(tmp_path, monkeypatch):
    """A user's INSTRUMENTS=flute with INSTRUMENTS_MODEL=kid3-manual (typed in kid3, or another
    program's fields of the same names) was removed by `untag`, whatever INSTRUMENTS_MODEL said: only
    the versions of the models found and of the library database's are tagger's; other files are
    kept, said per file with the way to remove them anyway (--model-version)."""
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "none.db"))  # (no library database)
    music = tmp_path / "music"
    music.mkdir()
    files = _kid3_files(music)
    shipped = tags.read_instruments(files[0])  # (a file tagged by the shipped model's version: tagger's)
    ours = _tone(music / "e.flac", "flac")
    from tagger.cli.tags import _shipped_model_version

    tags.write_instruments(ours, instruments=["organ"], model_version=_shipped_model_version())
    data = {f: f.read_bytes() for f in files}
    res = run("untag", str(music), "--settle-seconds", "0")
    assert res.exit_code == 0, res.output
    for f in files:
        assert f.read_bytes() == data[f], f
        assert f"kept {f}: its INSTRUMENTS_MODEL 'kid3-manual' is no model tagger knows" in res.output
    assert "tagger untag --model-version kid3-manual removes them" in res.output
    assert f"untagged {ours} (removed: organ)" in res.output and not tags.read_instruments(ours).tagged
    assert "1 untagged, 0 unchanged, 0 skipped, 4 kept" in res.output
    assert shipped == tags.TagState(["flute"], "kid3-manual")
    res = run("untag", str(music), "--settle-seconds", "0", "--model-version", "kid3-manual")
    assert res.exit_code == 0 and "4 untagged, 1 unchanged, 0 skipped" in res.output, res.output
    assert not any(tags.read_instruments(f).tagged for f in files)


def test_untag_takes_the_model_versions_the_library_database_records_for_tagger_s(tmp_path, monkeypatch):
    """A tag-writing scan's fields (a model version no manifest here names, `lib-7`) are tagger's:
    the library database records the version, and `untag` removes them without --model-version; a
    hand-written INSTRUMENTS_MODEL beside them in the same folder is kept."""
    from library_fakes import FakeAnalyser

    from tagger.db.session import open_database
    from tagger.library.scan import scan, tag_writer

    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "library.db"))
    music = tmp_path / "music"
    music.mkdir()
    a = _tone(music / "a.flac", "flac")
    db = open_database(tmp_path / "library.db")
    try:
        assert scan([music], db=db, analyser=FakeAnalyser(version="lib-7"), jobs=0,
                    on_track=tag_writer(model_version="lib-7")).tags_written == 1  # fmt: skip
    finally:
        db.close()
    hand = _tone(music / "b.ogg", "libvorbis")
    tags.write_instruments(hand, instruments=["flute"], model_version="kid3-manual")
    res = run("untag", str(music), "--settle-seconds", "0")
    assert res.exit_code == 0, res.output
    assert f"untagged {a}" in res.output and not tags.read_instruments(a).tagged
    assert f"kept {hand}: its INSTRUMENTS_MODEL 'kid3-manual'" in res.output
    assert tags.read_instruments(hand) == tags.TagState(["flute"], "kid3-manual")


def test_writes_keep_fields_of_a_model_version_tagger_does_not_know(tmp_path, monkeypatch, fake_models):
    """A scan with --write-tags and `tagger tag` overwrote a user's INSTRUMENTS=flute with
    INSTRUMENTS_MODEL=kid3-manual (typed in kid3) with the scan's results, which untag keeps as not
    provably tagger's: the writes follow untag's rule (`known_model_versions`). Such a file is left byte
    for byte, said per file with the way to take its fields anyway, counted kept, exit 0, its results
    stored; a file an older shipped model tagged, or the scan's own model (fake-1), is written."""
    dbfile = str(tmp_path / "library.db")
    monkeypatch.setenv("TAGGER_DB", dbfile)
    music = tmp_path / "music"
    music.mkdir()
    files = _kid3_files(music)
    older = _tone(music / "e.flac", "flac")  # (tagged by a model tagger shipped before: tagger's)
    tags.write_instruments(older, instruments=["organ"], model_version="compact-mixture-1")
    own = _tone(music / "f.ogg", "libvorbis")  # (by the scan's own model: tagger's)
    tags.write_instruments(own, instruments=["organ"], model_version="fake-1")
    data = {f: f.read_bytes() for f in files}
    res = run("scan", str(music), "--write-tags", "--settle-seconds", "0", "--jobs", "0")
    assert res.exit_code == 0, res.output
    for f in files:
        assert f.read_bytes() == data[f], f
        assert f"kept {f}: its INSTRUMENTS_MODEL 'kid3-manual' is no model tagger knows" in res.output
    assert f"tagger untag --model-version kid3-manual {files[0]} removes them" in res.output
    assert "tags: 2 tagged, 0 failed, 4 kept" in res.output
    assert tags.read_instruments(older).model_version == tags.read_instruments(own).model_version == "fake-1"
    listed = run("query")
    assert all(str(f) in listed.output for f in files), listed.output  # (their results are stored)
    res = run("tag", "--settle-seconds", "0")
    assert res.exit_code == 0, res.output
    assert all(f.read_bytes() == data[f] for f in files)
    assert f"kept {files[1]}: its INSTRUMENTS_MODEL 'kid3-manual'" in res.output
    assert "0 tagged, 2 unchanged, 0 skipped, 4 kept" in res.output
    run("untag", str(files[0]), "--model-version", "kid3-manual", "--settle-seconds", "0")
    res = run("tag", "--settle-seconds", "0", str(files[0]))  # (the way the line gives: written then)
    assert res.exit_code == 0 and "1 tagged" in res.output, res.output
    assert tags.read_instruments(files[0]).model_version == "fake-1"


def test_a_scan_names_the_first_kept_files_and_counts_the_rest(tmp_path, monkeypatch, fake_models):
    """A scan said a line of every file whose fields it kept (INSTRUMENTS_MODEL no model tagger knows,
    9d35b49), again on every scan, since the file is retried: a library another program tagged so buried
    each scan's summary under thousands of lines. As the scan's other notes, the first five are named and
    the rest counted; --json names them all."""
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "library.db"))
    music = tmp_path / "music"
    music.mkdir()
    files = [_tone(music / f"{n}.flac", "flac") for n in range(7)]
    for f in files:
        tags.write_instruments(f, instruments=["flute"], model_version="other-program")
    for _ in range(2):  # (the second scan: unchanged files, retried and kept again)
        res = run("scan", str(music), "--write-tags", "--settle-seconds", "0", "--jobs", "0")
        assert res.exit_code == 0, res.output
        assert res.output.count("tagger: kept ") == 5, res.output
        assert "tagger: ... and 2 more file(s) kept, their fields not provably tagger's (--json names them)" in res.output
        assert "tags: 0 tagged, 0 failed, 7 kept" in res.output
    res = run("scan", str(music), "--write-tags", "--settle-seconds", "0", "--jobs", "0", "--json")
    assert sorted(kept["path"] for kept in json.loads(res.stdout)["tags_kept"]) == sorted(map(str, files))


def test_a_dry_run_takes_the_model_versions_the_library_database_records_as_the_real_run(tmp_path, monkeypatch,
                                                                                          fake_models):
    """`untag --dry-run --settle-seconds 0` and `tag --from-json --dry-run --settle-seconds 0` opened no
    library database (they recorded nothing and waited for nothing), so the model versions it records
    (fake-1, the scan's) were not tagger's to them: a file the real run untags or writes over was said
    kept. The dry runs now say what the real runs do."""
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "library.db"))
    music = tmp_path / "music"
    music.mkdir()
    song = _tone(music / "a.flac", "flac")
    assert run("scan", str(music), "--write-tags", "--jobs", "0").exit_code == 0
    assert tags.read_instruments(song).model_version == "fake-1"
    rows = tmp_path / "rows.jsonl"
    predicted = run("predict", str(song), "--json")
    rows.write_text(predicted.stdout.replace('"fake-1"', '"other-2"'))  # (another model's predictions)
    for args, said in ((["untag", str(song)], "1 would be untagged"), (["tag", "--from-json", str(rows)], "1 would be tagged")):
        res = run(*args, "--dry-run", "--settle-seconds", "0")
        assert res.exit_code == 0 and said in res.output and " kept" not in res.output, res.output
        assert tags.read_instruments(song).model_version == "fake-1"
    res = run("tag", "--from-json", str(rows), "--settle-seconds", "0")  # (the real run does what its dry run said)
    assert res.exit_code == 0 and "1 tagged" in res.output, res.output
    assert tags.read_instruments(song).model_version == "other-2"


def test_untag_removes_the_fields_of_every_model_tagger_has_shipped_with_no_database(tmp_path, monkeypatch):
    """Files an older tagger tagged (INSTRUMENTS_MODEL compact-mixture-1, averaged-harmonic-7: models
    shipped before today's), untagged with no library database or another, were kept as someone
    else's since d746565 ("no model tagger knows"): every version tagger has shipped is tagger's
    (found reviewing d746565). The list holds the shipped model's version, so that a new one is
    added as it ships."""
    from tagger.model.folders import SHIPPED_VERSIONS, shipped_model_dir
    from tagger.model.manifest import read_manifest

    assert read_manifest(shipped_model_dir())["version"] in SHIPPED_VERSIONS
    monkeypatch.setenv("TAGGER_DB", str(tmp_path / "none.db"))  # (no library database)
    music = tmp_path / "music"
    music.mkdir()
    old = _tone(music / "a.flac", "flac")
    older = _tone(music / "b.mp3", "libmp3lame")
    tags.write_instruments(old, instruments=["organ"], model_version="averaged-harmonic-7")
    tags.write_instruments(older, instruments=["organ"], model_version="compact-mixture-1")
    res = run("untag", str(music), "--settle-seconds", "0")
    assert res.exit_code == 0, res.output
    assert "2 untagged, 0 unchanged, 0 skipped" in res.output and "kept" not in res.output, res.output
    assert not tags.read_instruments(old).tagged and not tags.read_instruments(older).tagged

"""The beets plugin (beetsplug/instruments.py) in a real beets library.

In-process tests load the plugin through beets' own plugin loader into an isolated beets config
(BEETSDIR in a temp folder) and give it the band-listening fake analyser of `library_fakes`, so
the answers are known; one end-to-end test runs the ``beet`` command in a subprocess with the
shipped models.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

beets = pytest.importorskip("beets")

from conftest import tone_signal, write_audio  # noqa: E402
from library_fakes import FREQ, FakeAnalyser  # noqa: E402
from tagger import tags  # noqa: E402

FILES = {
    # name: families playing (each a tone in its band), seconds
    "bass.flac": (["bass"], 8.0),
    "duo.mp3": (["bass", "flute"], 8.0),
    "string.ogg": (["string"], 5.0),
    "quiet.wav": ([], 4.0),
}
BROKEN = "broken.wav"  # added to beets as a good file, then overwritten with garbage


def _make(folder: Path) -> dict[str, str]:
    out = {}
    for name, (fams, seconds) in FILES.items():
        out[name] = str(write_audio(folder / name, tone_signal([FREQ[f] for f in fams], seconds=seconds)))
    out[BROKEN] = str(write_audio(folder / BROKEN, tone_signal([FREQ["bass"]], seconds=4.0)))
    import mediafile

    for name, path in out.items():  # distinct titles: beets' importer skips duplicates
        mf = mediafile.MediaFile(path)
        mf.title, mf.artist = name.split(".")[0], "tone generator"
        mf.save()
    return out


def _setup_beets(tmp_path, monkeypatch, *, auto: bool = False):
    import beets.plugins
    from beets.library import Library
    from beets.util import cached_classproperty

    beetsdir = tmp_path / "beetsdir"
    beetsdir.mkdir()
    (tmp_path / "beets-music").mkdir()
    monkeypatch.setenv("BEETSDIR", str(beetsdir))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # this checkout's beetsplug/
    config = beets.config
    config.clear()
    config.read(user=False, defaults=True)
    config["plugins"] = ["instruments", "info"]  # `beet info` is a plugin too
    config["threaded"] = False
    config["ui"]["color"] = False
    config["directory"] = str(tmp_path / "beets-music")
    config["library"] = str(beetsdir / "library.db")
    config["import"]["write"] = True
    config["create_backup_before_migrations"] = False
    config["instruments"].set({"auto": auto, "database": str(tmp_path / "tagger.db"), "jobs": 0})
    _unload()
    beets.plugins.load_plugins()
    cached_classproperty.cache.clear()
    plugin = next(p for p in beets.plugins.find_plugins() if p.name == "instruments")
    plugin.analyser = FakeAnalyser()
    lib = Library(str(beetsdir / "library.db"), str(tmp_path / "beets-music"))
    return lib, plugin


def _unload():
    import beets.plugins
    from beets.util import cached_classproperty

    beets.plugins.BeetsPlugin.listeners.clear()
    beets.plugins.BeetsPlugin._raw_listeners.clear()
    beets.plugins._instances.clear()
    cached_classproperty.cache.clear()
    # the plugin's media fields must not leak into other tests (tagger.tags registers list fields)
    import mediafile
    from beets.library import Item

    for name in ("instruments", "instruments_model", "instruments_scores"):
        if type(mediafile.MediaFile.__dict__.get(name)).__module__ == "beetsplug.instruments":
            delattr(mediafile.MediaFile, name)
            Item._media_fields.discard(name)


@pytest.fixture
def beets_lib(tmp_path, monkeypatch):
    from beets.library import Item

    lib, plugin = _setup_beets(tmp_path, monkeypatch)
    files = _make(tmp_path / "music")
    for path in files.values():
        lib.add(Item.from_path(path))
    with open(files[BROKEN], "wb") as f:
        f.write(b"RIFF this is no longer audio " * 40)
    yield lib, plugin, files
    lib._close()
    _unload()
    beets.config.clear()


def beet(lib, *args: str) -> None:
    """Run a ``beet`` command line in this process on `lib` (as beets' own test helper does)."""
    from unittest.mock import Mock, patch

    from beets import ui

    with patch.object(sys, "argv", ["beet", *args]), patch.object(lib, "_close", Mock()), \
            patch("beets.ui._open_library", return_value=lib):  # fmt: skip
        ui._raw_main(list(args))


def _paths(items) -> set[str]:
    return {os.path.basename(os.fsdecode(i.path)) for i in items}


def test_command_tags_items_queries_work_and_a_second_run_reanalyses_nothing(beets_lib, caplog):
    lib, plugin, files = beets_lib
    caplog.set_level(logging.DEBUG, logger="beets")
    beet(lib, "instruments")

    # one bad file is reported through beets' logger, naming it, and the others go on
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(files[BROKEN] + ": "), errors
    got = {os.path.basename(os.fsdecode(i.path)): (i.get("instruments"), i.get("instruments_model")) for i in lib.items()}
    assert got == {
        "bass.flac": ("bass", "fake-1"),
        "duo.mp3": ("bass, flute", "fake-1"),
        "string.ogg": ("string", "fake-1"),
        "quiet.wav": ("", "fake-1"),
        BROKEN: ("", ""),  # read from the file when added; never analysed
    }
    # written into the files through beets' write, exactly where `tagger scan` writes them
    for name, (fams, _) in FILES.items():
        state = tags.read_instruments(files[name])
        assert (state.instruments, state.model_version) == (fams, "fake-1"), name
    import mediafile

    assert mediafile.MediaFile(files["duo.mp3"]).instruments == "bass, flute"
    assert mediafile.MediaFile(files["quiet.wav"]).instruments is None  # no family: no INSTRUMENTS tag

    # queries: substring on the attribute, its negation, and the exact family query
    assert _paths(lib.items("instruments:flute")) == {"duo.mp3"}
    assert _paths(lib.items("instruments:bass")) == {"bass.flac", "duo.mp3"}
    assert _paths(lib.items("^instruments:bass")) == {"string.ogg", "quiet.wav", BROKEN}
    assert _paths(lib.items("has_instrument:string")) == {"string.ogg"}
    assert _paths(lib.items("^has_instrument:bass")) == {"string.ogg", "quiet.wav", BROKEN}
    assert _paths(lib.items("instruments_model:fake-1")) == set(FILES)

    # second run: nothing analysed again, no file rewritten
    seen = plugin.analyser.windows_seen
    mtimes = {n: os.stat(p).st_mtime_ns for n, p in files.items()}
    counts = plugin.analyse(list(lib.items()), write=True)
    assert plugin.analyser.windows_seen == seen
    assert counts == {"analysed": 0, "reused": len(FILES), "failed": 1, "written": 0}
    assert {n: os.stat(p).st_mtime_ns for n, p in files.items()} == mtimes


def test_exact_family_query_is_not_a_substring_match(beets_lib):
    lib, plugin, files = beets_lib
    beet(lib, "instruments")
    item = next(iter(lib.items("title:string")), None) or lib.items("path:" + files["string.ogg"]).get()
    item["instruments"] = "stringsynth"  # a family whose name contains another's
    item.store()
    assert _paths(lib.items("instruments:string")) == {"string.ogg"}
    assert _paths(lib.items("has_instrument:string")) == set()
    assert _paths(lib.items("has_instrument:stringsynth")) == {"string.ogg"}


def test_info_modify_and_write_keep_the_fields(beets_lib, capsys):
    lib, plugin, files = beets_lib
    beet(lib, "instruments")
    capsys.readouterr()
    beet(lib, "info", "-l", "has_instrument:flute")
    out = capsys.readouterr().out
    assert "instruments: bass, flute" in out and "instruments_model: fake-1" in out

    beet(lib, "modify", "-y", "-w", "has_instrument:flute", "title=Duo in B flat")
    item = lib.items("has_instrument:flute").get()
    assert item.title == "Duo in B flat" and item["instruments"] == "bass, flute"
    state = tags.read_instruments(files["duo.mp3"])
    assert state.instruments == ["bass", "flute"] and state.model_version == "fake-1"
    import mediafile

    assert mediafile.MediaFile(files["duo.mp3"]).title == "Duo in B flat"

    # beet write of another change keeps them in the file
    beet(lib, "modify", "-y", "-W", "path:" + files["bass.flac"], "title=Low")
    assert mediafile.MediaFile(files["bass.flac"]).title != "Low"
    beet(lib, "write", "path:" + files["bass.flac"])
    assert mediafile.MediaFile(files["bass.flac"]).title == "Low"
    assert tags.read_instruments(files["bass.flac"]).instruments == ["bass"]
    # beet write -f puts them back into a file that lost them (beets compares only its own tag
    # fields when deciding whether a file needs writing) where beets cannot tell that the file
    # changed: its mtime kept (`tagger untag --keep-mtime`). (An untag that moves the mtime past the
    # second beets holds is taken by the write instead, test_beets_attacks.py; here it was, in the
    # second of beets' write or the next as it fell: a flaky test)
    tags.remove_instruments(files["bass.flac"], keep_mtime=True)
    assert tags.read_instruments(files["bass.flac"]).instruments == []
    beet(lib, "write", "-f", "path:" + files["bass.flac"])
    assert tags.read_instruments(files["bass.flac"]).instruments == ["bass"]

    # beet update (reading the files) keeps them too
    beet(lib, "update", "path:" + files["duo.mp3"])
    assert lib.items("path:" + files["duo.mp3"]).get()["instruments"] == "bass, flute"


def test_a_file_beets_renamed_and_retagged_keeps_its_results(beets_lib):
    """`beet modify title=...` of an item in beets' library folder rewrites its tags and renames the file
    at once; `beet instruments` then found a new file (analysed again) and left the old name's row
    behind: the plugin's scan names each file, so the old name, under no scanned folder, was no
    candidate for a move with new tags, which `tagger scan` of the folder finds by the audio digest."""
    from sqlalchemy import select

    from tagger.db import models as M
    from tagger.db.session import open_database

    lib, plugin, files = beets_lib
    beet(lib, "move", "path:" + files["duo.mp3"])  # into beets' folder (its path format holds the title)
    beet(lib, "instruments", "title:duo")
    old = os.fsdecode(lib.items("title:duo").get().path)
    assert tags.read_instruments(old).instruments == ["bass", "flute"]
    seen = plugin.analyser.windows_seen
    beet(lib, "modify", "-y", "title:duo", "title=Duo in B flat")
    item = lib.items("title:Duo in B flat").get()
    new = os.fsdecode(item.path)
    assert new != old and not os.path.exists(old)

    counts = plugin.analyse([item], write=True)
    assert counts == {"analysed": 0, "reused": 1, "failed": 0, "written": 0}
    assert plugin.analyser.windows_seen == seen
    assert item["instruments"] == "bass, flute"
    database = open_database(beets.config["instruments"]["database"].get())
    with database.session() as s:
        paths = set(s.scalars(select(M.Track.path).where(M.Track.path.in_([old, new]))))
    database.close()
    assert paths == {new}  # the row followed the file


def test_items_scanned_by_tagger_are_not_reanalysed(beets_lib):
    lib, plugin, files = beets_lib
    from tagger.db.session import open_database
    from tagger.library.scan import scan

    database = open_database(beets.config["instruments"]["database"].get())
    analyser = FakeAnalyser()
    scan([files["duo.mp3"], files["string.ogg"]], db=database, analyser=analyser, jobs=0)
    database.close()
    counts = plugin.analyse(list(lib.items("^path:" + files[BROKEN])), write=False)
    assert counts == {"analysed": 2, "reused": 2, "failed": 0, "written": 0}
    assert lib.items("path:" + files["string.ogg"]).get()["instruments"] == "string"
    # without write, the files are left alone: the ones tagger did not tag hold nothing
    assert tags.read_instruments(files["bass.flac"]).instruments == []


def test_write_setting_is_respected(beets_lib):
    lib, plugin, files = beets_lib
    beets.config["import"]["write"] = False
    beet(lib, "instruments", "path:" + files["bass.flac"])
    assert lib.items("path:" + files["bass.flac"]).get()["instruments"] == "bass"
    assert tags.read_instruments(files["bass.flac"]).tagged is False
    beet(lib, "instruments", "-w", "path:" + files["bass.flac"])
    assert tags.read_instruments(files["bass.flac"]).instruments == ["bass"]


def test_auto_analyses_items_on_import(tmp_path, monkeypatch):
    lib, plugin = _setup_beets(tmp_path, monkeypatch, auto=True)
    try:
        _make(tmp_path / "incoming")
        os.remove(tmp_path / "incoming" / BROKEN)
        beet(lib, "import", "-A", "-q", "-s", str(tmp_path / "incoming"))
        items = list(lib.items())
        assert len(items) == len(FILES)
        for item in items:
            path = os.fsdecode(item.path)
            assert path.startswith(str(tmp_path / "beets-music"))  # copied into the library, then analysed
            fams = FILES[item.title + os.path.splitext(path)[1]][0]
            assert item["instruments"] == ", ".join(fams)
            assert tags.read_instruments(path).instruments == fams
        assert _paths(lib.items("has_instrument:flute")) == {"duo.mp3"}
    finally:
        lib._close()
        _unload()
        beets.config.clear()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is needed")
@pytest.mark.model
@pytest.mark.integration
@pytest.mark.slow
def test_beet_cli_with_the_shipped_models(tmp_path):
    """`beet` in a subprocess: import with auto, query, run the command again: nothing re-analysed."""
    from tagger.model.ensemble import default_model_dir

    if not (default_model_dir() / "manifest.json").is_file():
        pytest.skip("the shipped models are needed")
    beetsdir = tmp_path / "beetsdir"
    beetsdir.mkdir()
    (beetsdir / "config.yaml").write_text(
        f"directory: {tmp_path / 'music'}\nlibrary: {beetsdir / 'library.db'}\nplugins: instruments\n"
        f"threaded: no\nimport:\n  write: yes\n  copy: no\n"
        f"instruments:\n  auto: yes\n  jobs: 0\n  database: {tmp_path / 'tagger.db'}\n"
    )
    incoming = tmp_path / "incoming"
    import mediafile

    for name, freqs in (("a.flac", [440.0, 660.0]), ("b.wav", [110.0])):
        mf = mediafile.MediaFile(write_audio(incoming / name, tone_signal(freqs, seconds=8.0)))
        mf.title = name
        mf.save()
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "BEETSDIR": str(beetsdir), "HOME": str(tmp_path),
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}  # fmt: skip
    beet_cmd = [sys.executable, "-m", "beets"]

    def run(*args):
        r = subprocess.run([*beet_cmd, *args], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout, r.stderr

    run("import", "-A", "-q", "-s", str(incoming))
    out, _ = run("ls", "-f", "$path\t$instruments\t$instruments_model")
    rows = {Path(p).name: (fams, model) for p, fams, model in (ln.split("\t") for ln in out.splitlines())}
    assert set(rows) == {"a.flac", "b.wav"}
    import json

    version = json.loads((default_model_dir() / "manifest.json").read_text())["version"]
    assert all(model == version for _, model in rows.values()), rows
    for name, (fams, _) in rows.items():
        state = tags.read_instruments(incoming / name)
        assert state.model_version == version and ", ".join(state.instruments) == fams
    for fam in {f for fams, _ in rows.values() for f in fams.split(", ") if f}:
        out, _ = run("ls", "-f", "$path", f"has_instrument:{fam}")
        assert {Path(p).name for p in out.split()} == {n for n, (fams, _) in rows.items() if fam in fams.split(", ")}
    _, err = run("instruments")
    assert "0 analysed, 2 unchanged" in err


def test_the_command_says_what_it_did_of_each_item(beets_lib, caplog):
    """Was: a summary line only (`4 analysed, ...`), where beets' own plugins say what they did of each
    item (`beet fingerprint`: `PATH: fingerprinting`, `... fingerprint exists, skipping`). One info line
    an item: its families and whether it was analysed or its results reused, and written."""
    lib, plugin, files = beets_lib
    caplog.set_level(logging.INFO, logger="beets")
    beet(lib, "instruments")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"{files['duo.mp3']}: bass, flute (analysed, written)" in lines
    assert f"{files['quiet.wav']}: no instrument (analysed, written)" in lines
    assert lines[-1] == "4 analysed, 0 unchanged (results reused), 1 failed, 4 file(s) written"
    caplog.clear()
    beet(lib, "instruments", "-W", "title:string")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines == [f"{files['string.ogg']}: string (unchanged, results reused)",
                     "0 analysed, 1 unchanged (results reused), 0 failed, 0 file(s) written"]  # fmt: skip


def test_the_plugin_keeps_fields_of_a_model_version_tagger_does_not_know(beets_lib, caplog):
    """``beet instruments`` overwrote a user's INSTRUMENTS=flute with INSTRUMENTS_MODEL=kid3-manual
    (typed in kid3), which `tagger untag` keeps as not provably tagger's: the plugin follows the same
    rule (`known_model_versions`): the file is left byte for byte, its item as beets reads the file
    (so ``beet write`` puts nothing of tagger's over it), said and counted kept; a file an older shipped
    model tagged is written."""
    lib, plugin, files = beets_lib
    caplog.set_level(logging.INFO, logger="beets")
    tags.write_instruments(files["duo.mp3"], instruments=["flute"], model_version="kid3-manual")
    tags.write_instruments(files["string.ogg"], instruments=["organ"], model_version="compact-mixture-1")
    before = Path(files["duo.mp3"]).read_bytes()
    items = [lib.items("path:" + files[name]).get() for name in ("duo.mp3", "string.ogg")]
    counts = plugin.analyse(items, write=True)
    assert counts == {"analysed": 1, "reused": 0, "failed": 0, "written": 1, "kept": 1}  # (the kept one: kept alone)
    assert Path(files["duo.mp3"]).read_bytes() == before
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{files['duo.mp3']}: its INSTRUMENTS_MODEL 'kid3-manual' is no model tagger knows" in said
    assert "1 kept (fields not provably tagger's, see above)" in said
    duo = lib.items("path:" + files["duo.mp3"]).get()
    assert (duo.get("instruments"), duo.get("instruments_model")) == ("flute", "kid3-manual")
    beet(lib, "write", "-f")
    assert tags.read_instruments(files["duo.mp3"]) == tags.TagState(["flute"], "kid3-manual")
    assert tags.read_instruments(files["string.ogg"]) == tags.TagState(["string"], "fake-1")

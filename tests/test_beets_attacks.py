"""The beets plugin used the way beets users use it, where it could lose or mix up data: files
replaced behind its back, odd names, links, other programs' fields, bad configuration.

The beets library, the plugin and the fake analyser are those of `test_beets`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import pytest

beets = pytest.importorskip("beets")

from conftest import UNTAG_KNOWN, tone_signal, write_audio  # noqa: E402
from library_fakes import FREQ  # noqa: E402
from test_beets import beet, beets_lib  # noqa: E402, F401  (beets_lib: a fixture)
from tagger import tags  # noqa: E402


def _item(lib, path: str):
    return lib.items("path:" + path).get()


def _replace_with_flute(path: str, scratch) -> None:
    """Another program puts other audio (a flute tone, same format) at ``path``."""
    other = write_audio(scratch / ("other" + os.path.splitext(path)[1]), tone_signal([FREQ["flute"]], seconds=8.0))
    os.replace(other, path)


@pytest.mark.parametrize("write", ["-w", "-W"])
def test_a_file_replaced_after_its_analysis_gets_neither_its_old_results_nor_their_tags(beets_lib, tmp_path,
                                                                                         monkeypatch, caplog, write):  # fmt: skip
    lib, plugin, files = beets_lib
    path = files["bass.flac"]
    import tagger.library.files as library_files

    analyse_files = library_files.analyse_files

    def then_replaced(paths, **kwargs):
        out = analyse_files(paths, **kwargs)
        _replace_with_flute(path, tmp_path)
        return out

    monkeypatch.setattr(library_files, "analyse_files", then_replaced)
    beet(lib, "instruments", write, "path:" + path)
    assert _item(lib, path).get("instruments") in (None, "")  # not the old file's "bass"
    assert tags.read_instruments(path).tagged is False  # nothing written into the new audio
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"{path}: changed since it was analysed (rewritten or replaced by another program); "
                      "analyse it again"]  # fmt: skip

    monkeypatch.setattr(library_files, "analyse_files", analyse_files)
    counts = plugin.analyse([_item(lib, path)], write=True)
    assert counts == {"analysed": 1, "reused": 0, "failed": 0, "written": 1}
    assert _item(lib, path)["instruments"] == "flute"
    assert tags.read_instruments(path).instruments == ["flute"]


def test_a_file_replaced_while_beets_writes_it_is_analysed_again_next_time(beets_lib, tmp_path, monkeypatch, caplog):
    lib, plugin, files = beets_lib
    path = files["bass.flac"]
    from beets.library import Item

    try_write = Item.try_write

    def replaced_first(item, *args, **kwargs):
        _replace_with_flute(path, tmp_path)  # beets then writes the tags into the new file
        return try_write(item, *args, **kwargs)

    monkeypatch.setattr(Item, "try_write", replaced_first)
    beet(lib, "instruments", "path:" + path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    # the rewrite was not recorded as the analysed file's: the next run analyses the new audio
    monkeypatch.setattr(Item, "try_write", try_write)
    counts = plugin.analyse([_item(lib, path)], write=True)
    assert counts == {"analysed": 1, "reused": 0, "failed": 0, "written": 1}
    assert _item(lib, path)["instruments"] == "flute"
    assert tags.read_instruments(path).instruments == ["flute"]
    assert warnings == [f"{path}: tags written, but its audio changed while its tags were written (another "
                        "program?): not recorded, so the next scan analyses it again"]  # fmt: skip



def test_items_reached_through_symbolic_links_are_analysed_and_written_once(beets_lib, tmp_path, caplog):
    """A beets library whose folder is reached through a link (``~/Music`` -> a disk), ``import``
    with ``link: yes``: the scan stores each file under its real path, and the items get its results.
    Here each of two files is also in the library a second time, through a linked folder."""
    lib, plugin, files = beets_lib
    from beets.library import Item

    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "music", target_is_directory=True)
    for name in ("bass.flac", "duo.mp3"):
        lib.add(Item.from_path(str(linked / name)))
    beet(lib, "instruments")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"{files['broken.wav']}: not a readable audio file (Invalid data found when processing input)"]
    for name, fams in (("bass.flac", "bass"), ("duo.mp3", "bass, flute")):
        assert _item(lib, str(linked / name))["instruments"] == _item(lib, files[name])["instruments"] == fams
    counts = plugin.analyse(list(lib.items()), write=True)
    assert counts == {"analysed": 0, "reused": 6, "failed": 1, "written": 0}


def test_odd_file_names_are_analysed_and_one_not_valid_utf8_is_reported_not_a_crash(beets_lib, tmp_path, caplog):
    lib, plugin, files = beets_lib
    from beets.library import Item

    folder = os.fsencode(tmp_path / "odd")
    os.mkdir(folder)
    names = {b"caf\xe9.flac": "",  # Latin-1, as old Windows tools wrote names (read when added, not analysed)
             "naïve *[x]? %s\n$title.flac".encode(): "flute",  # glob, format and newline characters
             "e\u0301 (NFD).flac".encode(): "flute"}  # fmt: skip
    for i, name in enumerate(names):
        path = os.path.join(folder, name)
        os.replace(write_audio(tmp_path / f"t{i}.flac", tone_signal([FREQ["flute"]], seconds=4.0)), path)
        lib.add(Item.from_path(path))
    beet(lib, "instruments", "path:" + str(tmp_path / "odd"))
    got = {os.path.basename(item.path): item.get("instruments") for item in lib.items("path:" + str(tmp_path / "odd"))}
    assert got == {name: fams for name, fams in names.items()}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "the file name is not valid UTF-8" in errors[0], errors
    assert "caf\\xe9.flac" in errors[0] and "rename the file to analyse it" in errors[0]


def test_fields_named_like_ours_but_someone_elses_are_neither_read_nor_changed(beets_lib, caplog):
    """A user's own INSTRUMENTS list (no INSTRUMENTS_MODEL beside it), and an ID3 ``TXXX:instruments``
    in lower case (which mediafile matches in any case): `tagger tag` leaves such files alone; beets'
    writes through the plugin's fields must too (they lowercased, replaced or removed them)."""
    lib, plugin, files = beets_lib
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3, TXXX

    flac, mp3 = files["bass.flac"], files["duo.mp3"]
    f = FLAC(flac)
    f["INSTRUMENTS"] = ["Piano", "Guitar"]
    f.save()
    t = ID3(mp3)
    t.add(TXXX(encoding=3, desc="instruments", text=["Alto Sax"]))
    t.save()
    for path in (flac, mp3):
        item = _item(lib, path)
        item.read()
        item.store()
        assert not item.get("instruments") and not item.get("instruments_model")  # not read as ours

    beet(lib, "modify", "-y", "-w", "title:bass", ",", "title:duo", "comments=edited")  # beets writes every field
    beet(lib, "instruments", "-w")
    assert FLAC(flac)["INSTRUMENTS"] == ["Piano", "Guitar"] and "INSTRUMENTS_MODEL" not in FLAC(flac)
    assert [(f.desc, f.text) for f in ID3(mp3).getall("TXXX")] == [("instruments", ["Alto Sax"])]
    assert FLAC(flac)["COMMENT"] == ["edited"]  # the other fields were written

    # the items have the results, the files are not written, and a warning says why
    assert _item(lib, flac)["instruments"] == "bass" and _item(lib, mp3)["instruments"] == "bass, flute"
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warnings == [
        f"{flac}: its INSTRUMENTS field was not written by tagger (tagger writes its fields in upper case, with "
        "INSTRUMENTS_MODEL beside them): someone else's, never overwritten; left unchanged",
        f"{mp3}: its TXXX:instruments field was not written by tagger (tagger writes its fields in upper case, with "
        "INSTRUMENTS_MODEL beside them): someone else's, never overwritten; left unchanged",
    ]  # fmt: skip
    beet(lib, "write", "-f")
    assert FLAC(flac)["INSTRUMENTS"] == ["Piano", "Guitar"] and "INSTRUMENTS_MODEL" not in FLAC(flac)
    assert [(f.desc, f.text) for f in ID3(mp3).getall("TXXX")] == [("instruments", ["Alto Sax"])]


def test_a_database_that_cannot_be_used_is_one_beets_error_line_not_a_traceback(beets_lib, tmp_path):
    lib, plugin, files = beets_lib
    from beets import ui

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n" * 20)
    beets.config["instruments"]["database"] = str(notes)
    with pytest.raises(ui.UserError) as caught:  # beets prints "error: ..." and exits 1
        beet(lib, "instruments")
    assert str(caught.value) == (f"instruments: {notes} is not a SQLite database (it does not start with SQLite's "
                                 "header); left untouched: give --db a database or a new file name (with beets: the "
                                 "database option of instruments)")  # fmt: skip
    assert notes.read_text() == "my notes, not a database\n" * 20


@pytest.mark.parametrize("given", ["tagger-of-beets.db", "sqlite:///tagger-of-beets.db"])
def test_a_relative_database_path_is_beets_configuration_folders_wherever_beet_runs(beets_lib, tmp_path, monkeypatch,
                                                                                     given):  # fmt: skip
    """As beets' own ``library: library.db``: one database, not one per folder ``beet`` is run from
    (each would analyse the whole library again). So is the relative file of a SQLite URL (was: taken
    from the folder ``beet`` ran in, found red-teaming the plugin's configuration)."""
    lib, plugin, files = beets_lib
    beetsdir = tmp_path / "beetsdir"
    (beetsdir / "config.yaml").write_text(f"instruments:\n  database: {given}\n")
    beets.config["instruments"]["database"] = None  # (the test's own setting: the file's is used)
    beets.config.set_file(str(beetsdir / "config.yaml"))
    for folder in ("here", "there"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        counts = plugin.analyse(list(lib.items("path:" + files["bass.flac"])), write=False)
        assert counts["analysed" if folder == "here" else "reused"] == 1
        assert not (tmp_path / folder / "tagger-of-beets.db").exists()
    assert (beetsdir / "tagger-of-beets.db").is_file()


def test_a_read_only_file_is_left_unchanged_and_its_item_gets_the_results(beets_lib, caplog):
    """As `tagger tag`: a mode without write permission says to leave the file alone, even to root
    (who may write anything; beets' own write would)."""
    lib, plugin, files = beets_lib
    path = files["string.ogg"]
    os.chmod(path, 0o444)
    before = open(path, "rb").read()
    beet(lib, "instruments", "-w", "path:" + path)
    assert open(path, "rb").read() == before
    assert _item(lib, path)["instruments"] == "string"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{path}: file is read-only: left unchanged"]
    # a read-only file that already holds its results is simply left as it is (no warning)
    os.chmod(path, 0o644)
    beet(lib, "instruments", "-w", "path:" + path)
    os.chmod(path, 0o444)
    caplog.clear()
    beet(lib, "instruments", "-w", "path:" + path)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_jobs_option_that_is_not_a_number_is_a_configuration_error(beets_lib):
    lib, plugin, files = beets_lib
    import confuse

    beets.config["instruments"]["jobs"] = "lots"
    with pytest.raises(confuse.ConfigTypeError, match="instruments.jobs: must be a number"):  # beets says so, exit 1
        beet(lib, "instruments")


def test_scores_of_another_model_or_other_audio_do_not_stay_beside_the_results_written(beets_lib):
    """A file tagged by ``tagger scan --scores`` keeps INSTRUMENTS_SCORES, which beets does not know:
    a write of other results must remove them (as ``tagger tag`` without ``--scores`` does), or the
    file would show one model's (or one audio's) scores beside another's results."""
    lib, plugin, files = beets_lib
    bass, duo, string = files["bass.flac"], files["duo.mp3"], files["string.ogg"]
    # another model's results and scores (one tagger shipped: its fields are tagger's, `known_model_versions`)
    tags.write_instruments(duo, instruments=["bass"], model_version="compact-mixture-1", scores={"bass": 0.9, "flute": 0.2})
    # this model's results, with the scores of the audio that was there before (tags copied over)
    tags.write_instruments(bass, instruments=["bass"], model_version="fake-1", scores={"bass": 0.6, "flute": 0.7},
                           families=("bass", "flute", "string"))  # fmt: skip
    # this file's own results and scores, as `tagger scan --scores` wrote them: left as they are
    from tagger.db.session import open_database
    from tagger.library.scan import scan, tag_writer

    database = open_database(beets.config["instruments"]["database"].get())
    scan([string], db=database, analyser=plugin.analyser, jobs=0, on_track=tag_writer(model_version="fake-1",
                                                                                      scores=True))  # fmt: skip
    database.close()
    kept = open(string, "rb").read()
    assert tags.read_instruments(string).scores

    beet(lib, "instruments", "-w", "path:" + bass, ",", "path:" + duo, ",", "path:" + string)
    for path, fams in ((bass, ["bass"]), (duo, ["bass", "flute"])):
        state = tags.read_instruments(path)
        assert (state.instruments, state.model_version, state.scores) == (fams, "fake-1", None), path
    assert open(string, "rb").read() == kept


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is needed")
def test_a_wavpack_item_is_written_once_and_its_rewrite_recorded(beets_lib, tmp_path):
    """WavPack (an APEv2 tag, which tagger writes too): the item gets its results, the file is
    written once, not on every run, and the rewrite is recorded (its audio bytes checked), so the
    next run reuses the results without analysing the file again."""
    lib, plugin, files = beets_lib
    from beets.library import Item

    wv = str(tmp_path / "music" / "bass.wv")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", files["bass.flac"], wv], check=True)
    lib.add(Item.from_path(wv))
    assert plugin.analyse([_item(lib, wv)], write=True) == {"analysed": 1, "reused": 0, "failed": 0, "written": 1}
    import mediafile

    assert _item(lib, wv)["instruments"] == mediafile.MediaFile(wv).instruments == "bass"
    mtime = os.stat(wv).st_mtime_ns
    assert plugin.analyse([_item(lib, wv)], write=True) == {"analysed": 0, "reused": 1, "failed": 0, "written": 0}
    assert os.stat(wv).st_mtime_ns == mtime


def test_a_name_with_a_line_break_or_an_escape_sequence_is_one_escaped_log_line(beets_lib, tmp_path, caplog):
    from beets.library import Item

    lib, plugin, files = beets_lib
    hostile = os.path.join(os.path.dirname(files["bass.flac"]), "two\nlines\x1b]0;x\x07.flac")
    shutil.copy(files["bass.flac"], hostile)
    item = Item.from_path(hostile)
    lib.add(item)
    with open(hostile, "wb") as f:
        f.write(b"RIFF this is no longer audio " * 40)
    caplog.set_level(logging.DEBUG, logger="beets")
    assert plugin.analyse([item], write=True)["failed"] == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    name = hostile.replace("\n", "\\x0a").replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert error.startswith(name + ": ") and "\n" not in error and "\x1b" not in error, error


def _touched(path: str) -> None:
    """Another program changes the file (its modification time moves on): `beet update` reads it."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_beet_update_keeps_results_only_beets_holds_and_follows_the_files_tags_otherwise(beets_lib, tmp_path):
    """Results given without writing them (``-W``, ``import.write: no``, a read-only file) are held by
    beets alone: ``beet update`` of a file changed meanwhile read no INSTRUMENTS there and emptied
    them, which reads as "no instrument found". They are kept now; results that were in the file
    follow it: still there, kept; removed by ``tagger untag``, removed from the item too."""
    lib, plugin, files = beets_lib
    duo, bass = files["duo.mp3"], files["bass.flac"]
    beet(lib, "instruments", "-W", "path:" + duo, ",", "path:" + bass)
    assert tags.read_instruments(duo).tagged is False
    import mediafile

    mf = mediafile.MediaFile(duo)
    mf.title = "Duo (edited elsewhere)"  # another program edits its tags: the audio is the one analysed
    mf.save()
    _touched(duo)
    beet(lib, "update", "path:" + duo)
    assert (_item(lib, duo)["instruments"], _item(lib, duo)["instruments_model"]) == ("bass, flute", "fake-1")
    assert _item(lib, duo).title == "Duo (edited elsewhere)"
    # written by beets (modify -w), then removed by tagger untag: the item follows the file
    beet(lib, "modify", "-y", "-w", "path:" + duo, "title=Duo")
    assert tags.read_instruments(duo).instruments == ["bass", "flute"]
    result = subprocess.run([sys.executable, "-m", "tagger", "untag", *UNTAG_KNOWN, "--settle-seconds", "0", duo],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert result.returncode == 0 and tags.read_instruments(duo).tagged is False, result.stderr
    _touched(duo)
    beet(lib, "update", "path:" + duo)
    assert not _item(lib, duo).get("instruments") and not _item(lib, duo).get("instruments_model")
    # written by the plugin: an update of the changed file keeps them, and one after untag drops them
    beet(lib, "instruments", "-w", "path:" + bass)
    _touched(bass)
    beet(lib, "update", "path:" + bass)
    assert _item(lib, bass)["instruments"] == "bass"
    tags.remove_instruments(bass)
    _touched(bass)
    beet(lib, "update", "path:" + bass)
    assert not _item(lib, bass).get("instruments") and not _item(lib, bass).get("instruments_model")
    # beets' alone, then other audio put in the file: emptied (its results are not this audio's)
    beet(lib, "instruments", "-W", "path:" + bass)
    assert _item(lib, bass)["instruments"] == "bass"
    _replace_with_flute(bass, tmp_path)
    _touched(bass)
    beet(lib, "update", "path:" + bass)
    assert not _item(lib, bass).get("instruments") and not _item(lib, bass).get("instruments_model")


def test_results_beets_failed_to_write_are_kept_by_beet_update_as_unwritten_ones(beets_lib, monkeypatch, caplog):
    """A write beets' try_write could not make (a full disk, an I/O error: beets logs 'error writing')
    left the item marked as if its results were in the file: a later ``beet update`` of the file,
    its tags edited by another program, read no INSTRUMENTS there and emptied them. They are marked
    as beets' alone (`instruments_unwritten`), as those of ``-W``."""
    import mediafile

    lib, plugin, files = beets_lib
    duo = files["duo.mp3"]
    save = mediafile.MediaFile.save

    def full_disk(mf, *args, **kwargs):
        raise mediafile.UnreadableFileError(duo, "[Errno 28] No space left on device")

    monkeypatch.setattr(mediafile.MediaFile, "save", full_disk)
    beet(lib, "instruments", "-w", "path:" + duo)
    monkeypatch.setattr(mediafile.MediaFile, "save", save)
    assert any("No space left on device" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert tags.read_instruments(duo).tagged is False
    item = _item(lib, duo)
    assert item["instruments"] == "bass, flute" and item["instruments_unwritten"] == tags.audio_digest(duo)

    mf = mediafile.MediaFile(duo)
    mf.title = "Duo (edited elsewhere)"
    mf.save()
    _touched(duo)
    beet(lib, "update", "path:" + duo)
    assert (_item(lib, duo)["instruments"], _item(lib, duo)["instruments_model"]) == ("bass, flute", "fake-1")


@pytest.mark.parametrize("name", ["string.ogg", "duo.mp3"])
def test_a_files_own_scores_stay_when_the_plugin_writes_its_results_back(beets_lib, name):
    """As a plain ``tagger scan`` (2aca9a6): a file whose INSTRUMENTS_SCORES hold its results' own
    scores (``tagger scan --scores``) keeps them when the plugin writes the results back, here after
    another program removed INSTRUMENTS alone; the plugin used to remove them at every write."""
    lib, plugin, files = beets_lib
    path = files[name]
    from tagger.db.session import open_database
    from tagger.library.scan import scan, tag_writer

    database = open_database(beets.config["instruments"]["database"].get())
    scan([path], db=database, analyser=plugin.analyser, jobs=0, on_track=tag_writer(model_version="fake-1",
                                                                                    scores=True))  # fmt: skip
    database.close()
    scored = tags.read_instruments(path)
    assert scored.scores and scored.instruments
    import mutagen

    f = mutagen.File(path)  # another program removes INSTRUMENTS, and INSTRUMENTS alone
    if name.endswith(".mp3"):
        f.tags.delall("TXXX:INSTRUMENTS")
    else:
        del f["INSTRUMENTS"]
    f.save()
    assert tags.read_instruments(path).instruments == []

    beet(lib, "instruments", "-w", "path:" + path)
    assert tags.read_instruments(path) == scored
    assert _item(lib, path)["instruments"] == ", ".join(scored.instruments)


def test_a_stale_items_results_never_replace_another_models_in_its_file(beets_lib, caplog):
    """As a tag-writing scan (2d6f403): an item analysed by fake-0, whose file has since been given
    fake-1's results (``tagger tag --from-json``, another database's scan), keeps fake-1's in its file
    when ``beet instruments`` without ``--rescan-stale`` reuses the stored fake-0 results, and its
    item follows the file; where another program removed tagger's fields, fake-0's go back."""
    from library_fakes import FakeAnalyser

    lib, plugin, files = beets_lib
    path = files["duo.mp3"]
    plugin.analyser = FakeAnalyser(version="fake-0")
    beet(lib, "instruments", "-w", "path:" + path)
    assert tags.read_instruments(path).model_version == "fake-0"
    tags.write_instruments(path, instruments=["bass", "organ"], model_version="fake-1")
    newer = open(path, "rb").read()

    plugin.analyser = FakeAnalyser()  # fake-1: the stored results are stale now
    caplog.set_level(logging.INFO, logger="beets")
    for _ in range(2):
        beet(lib, "instruments", "-w", "path:" + path)
        assert open(path, "rb").read() == newer  # the old code wrote bass, flute under fake-0
        item = _item(lib, path)
        assert (item["instruments"], item["instruments_model"]) == ("bass, organ", "fake-1")
    assert plugin.analyser.calls == 0  # not analysed again
    assert f"{path}: holds the results of model fake-1; its stored results, of model fake-0, are stale: left " \
           "unchanged (--rescan-stale analyses it again)" in [r.getMessage() for r in caplog.records]

    tags.remove_instruments(path)
    beet(lib, "instruments", "-w", "path:" + path)
    state = tags.read_instruments(path)
    assert (state.instruments, state.model_version) == (["bass", "flute"], "fake-0")
    item = _item(lib, path)
    assert (item["instruments"], item["instruments_model"]) == ("bass, flute", "fake-0")


def test_a_stale_item_takes_another_models_fields_as_beets_reads_them_so_beet_update_keeps_them(beets_lib, caplog):
    """An item whose stale results are left out of a file holding another model's fields (14ef821)
    takes the file's fields as beets reads them: values another program wrote in another form
    (``STRING``, ``Flute``), which tagger reads in lower case, are the item's exactly as stored. It
    took tagger's reading, so that ``beet update`` changed the item back to the file's (``string,
    flute -> STRING, Flute``) and the next ``beet instruments`` again, at every run (found by a review
    of 14ef821)."""
    import mutagen
    from library_fakes import FakeAnalyser

    lib, plugin, files = beets_lib
    path = files["string.ogg"]
    plugin.analyser = FakeAnalyser(version="fake-0")
    beet(lib, "instruments", "-w", "path:" + path)
    other = mutagen.File(path)
    other["INSTRUMENTS"], other["INSTRUMENTS_MODEL"] = ["STRING", "Flute"], ["fake-1"]  # another program, fake-1's
    other.save()
    newer = open(path, "rb").read()

    plugin.analyser = FakeAnalyser(version="fake-2")  # fake-0's stored results are stale
    for command in (["instruments", "-w"], ["update"], ["instruments", "-w"], ["write"], ["update"]):
        beet(lib, *command, "path:" + path)
        item = _item(lib, path)
        assert (item["instruments"], item["instruments_model"]) == ("STRING, Flute", "fake-1"), command
        assert open(path, "rb").read() == newer
    assert plugin.analyser.calls == 0
    assert [i.title for i in lib.items("has_instrument:flute")] == [item.title]


def test_a_file_holding_its_results_in_another_form_is_written_in_taggers_so_beet_update_keeps_them(beets_lib):
    """A file whose fields hold its item's results in another form beside ``INSTRUMENTS_MODEL``
    (``STRING``, another program's, which tagger reads as ``string``) is written in tagger's form by
    ``beet instruments -w``, as ``tagger tag`` rewrites it, after which beets and tagger read the same.
    It was left as it was, so that ``beet update`` gave its item ``STRING`` and the next ``beet
    instruments`` ``string`` again, at every run (found by a review of e7830ab's ``_in_file``)."""
    import mutagen

    lib, plugin, files = beets_lib
    path = files["string.ogg"]
    beet(lib, "instruments", "-w", "path:" + path)
    other = mutagen.File(path)
    other["INSTRUMENTS"] = ["STRING"]
    other.save()

    for command in (["instruments", "-w"], ["update"], ["instruments", "-w"], ["update"]):
        beet(lib, *command, "path:" + path)
        item = _item(lib, path)
        assert (item["instruments"], item["instruments_model"]) == ("string", "fake-1"), command
        assert mutagen.File(path)["INSTRUMENTS"] == ["string"]
    assert tags.read_instruments(path) == tags.TagState(["string"], "fake-1")
    assert plugin.analyser.calls == 1


def test_stale_results_of_a_recalibrated_model_of_the_same_name_never_replace_another_models(beets_lib):
    """Results are stale when made by another model version than the plugin's: another name, or the
    same name with another manifest (recalibrated thresholds, as the database tells model versions
    apart). 14ef821 told stale results by their version name alone, so a recalibrated model's reused
    results were written over another model's fields in the file (fake-9's bass, organ replaced by
    the stored bass, flute), where a tag-writing scan leaves them (found by a review of 14ef821)."""
    from library_fakes import FakeAnalyser

    class Recalibrated(FakeAnalyser):
        @property
        def hash(self) -> str:
            return "hash-fake-1-recalibrated"

    lib, plugin, files = beets_lib
    path = files["duo.mp3"]
    beet(lib, "instruments", "-w", "path:" + path)
    # (as tag --from-json; a version tagger shipped: another's fields would be kept, `known_model_versions`)
    tags.write_instruments(path, instruments=["bass", "organ"], model_version="averaged-harmonic-7")
    newer = open(path, "rb").read()

    plugin.analyser = Recalibrated()  # fake-1 still, another manifest: the stored results are stale
    beet(lib, "instruments", "-w", "path:" + path)
    assert open(path, "rb").read() == newer
    item = _item(lib, path)
    assert (item["instruments"], item["instruments_model"]) == ("bass, organ", "averaged-harmonic-7")
    assert plugin.analyser.calls == 0

    beet(lib, "instruments", "--rescan-stale", "-w", "path:" + path)  # analysed again: its results written
    assert plugin.analyser.calls > 0
    assert tags.read_instruments(path) == tags.TagState(["bass", "flute"], "fake-1")


def test_beet_import_of_a_folder_takes_no_file_a_tag_write_kept_for_a_track(tmp_path, monkeypatch):
    """Was: a file a failed swap back kept beside the track (`NAME.tagger-kept-XXXXXXXX`, another
    program's save) was imported by ``beet import`` of the folder as one more track (beets reads a
    file's type from its content; with ``import.copy`` or ``move`` it went into the library as
    ``01 Title.tagger-kept-XXXXXXXX``), found importing such a folder with beets. The kept name ends
    in ``~``, which beets' default ``ignore`` skips; tagger's walk still passes over both names."""
    from test_beets import _setup_beets, _unload
    from test_robustness_concurrency import _at_the_last_check, _exchange_here, _kept, _swap_back_fails, _their_save

    from tagger.errors import TagWriteError
    from tagger.paths import is_kept_name
    from tagger.tags import find_audio_files, write_instruments

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    if not _exchange_here(incoming):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(incoming / "song.flac", tone_signal([FREQ["bass"]], seconds=4.0))
    theirs = _their_save(song, tmp_path / "theirs.flac")
    _at_the_last_check(monkeypatch, lambda: os.replace(theirs, song))
    _swap_back_fails(monkeypatch, lambda exchange, a, b: False)
    with pytest.raises(TagWriteError, match="it is kept as "):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    monkeypatch.undo()
    [kept] = _kept(incoming)

    lib, plugin = _setup_beets(tmp_path, monkeypatch)
    try:
        beet(lib, "import", "-A", "-q", "-s", "-C", str(incoming))  # (-C: each item at its file's own name)
        assert [os.fsdecode(i.path) for i in lib.items()] == [str(song)]  # (was: the kept file too)
        assert kept.exists()  # (the user's to look at, where it was)
    finally:
        lib._close()
        _unload()
        beets.config.clear()
    assert kept.name.endswith("~") and is_kept_name(kept.name)
    assert is_kept_name(kept.name[:-1])  # (as kept before: still passed over)
    assert [p for p in find_audio_files([incoming]) if not isinstance(p, Exception)] == [song]


def test_an_auto_option_that_is_not_a_yes_or_no_is_one_error_line_and_the_plugin_stays(tmp_path, monkeypatch, caplog):
    """Was: ``auto: maybe`` raised in the plugin's start, which beets answered at every command
    (``beet ls`` included) with ``** error loading plugin instruments`` and a traceback, then went on
    without the plugin: ``beet instruments`` was an unknown command, ``has_instrument:`` no query, and
    the fields were no longer kept by beets' writes (found red-teaming the plugin's configuration).
    It is one error line naming the option; the plugin loads, with no analysis on import."""
    from test_beets import _make, _setup_beets, _unload

    lib, plugin = _setup_beets(tmp_path, monkeypatch, auto="maybe")
    try:
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == ["configuration error: instruments.auto: must be a bool, not str; items are not analysed "
                          "on import"]  # fmt: skip
        assert "import_task_files" not in plugin.listeners
        from beets.library import Item

        for path in _make(tmp_path / "music").values():
            lib.add(Item.from_path(path))
        beet(lib, "instruments", "-W", "title:duo")
        assert [i["instruments"] for i in lib.items("has_instrument:flute")] == ["bass, flute"]
    finally:
        lib._close()
        _unload()
        beets.config.clear()


def test_each_run_stores_only_the_paths_no_earlier_run_was_given(beets_lib):
    """Was: every ``beet instruments`` (and every import with ``auto``) stored the path of every item
    it was given in its scan's record, as a scan stores the folders it was given, where beets gives
    the items' files: the same paths again at every run, 4-5 MB for a library of 50,000 items, read
    whole by every prune (found red-teaming the plugin's database on a library run several times).
    A scan stores the roots no earlier scan was given; their union, all that is read of them, is
    the same."""
    import json

    from sqlalchemy import text

    from tagger.db.reads import scanned_roots
    from tagger.db.session import open_database

    lib, plugin, files = beets_lib
    beet(lib, "instruments", "-W")
    beet(lib, "instruments", "-W")
    database = open_database(str(beets.config["instruments"]["database"].get()))
    try:
        with database.session() as s:
            stored = [json.loads(roots) for (roots,) in s.execute(text("SELECT roots FROM scans ORDER BY id"))]
            union = scanned_roots(s)
    finally:
        database.close()
    assert sorted(stored[0]) == sorted(files.values()) and stored[1:] == [[]]  # (was: every path again)
    assert union == sorted(files.values())


@pytest.mark.parametrize("name", ["duo.mp3", "string.ogg"])
def test_emptying_the_model_field_in_beets_leaves_no_results_without_their_model(beets_lib, caplog, name):
    """Was: ``beet modify instruments_model=`` (or a ``beet write`` of an item whose model was
    emptied) removed INSTRUMENTS_MODEL and left INSTRUMENTS, which without its model reads as someone
    else's field: the next ``beet instruments`` left the file alone with a warning (`its INSTRUMENTS
    field was not written by tagger ...`), as ``tagger tag`` and a scan do, for good (found red-teaming
    the plugin with ``beet modify`` in a real beets library). The model's removal takes the results
    with it; the next run writes them back."""
    import mediafile

    lib, plugin, files = beets_lib
    path = files[name]
    beet(lib, "instruments", "-w", "path:" + path)
    assert tags.read_instruments(path).tagged
    caplog.clear()
    beet(lib, "modify", "-y", "-w", "path:" + path, "instruments_model=")
    assert not tags.foreign_fields(mediafile.MediaFile(path))  # (was: INSTRUMENTS, alone)
    assert not tags.read_instruments(path).tagged and not mediafile.MediaFile(path).instruments
    beet(lib, "instruments", "-w", "path:" + path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
    state = tags.read_instruments(path)
    assert state.model_version == "fake-1" and ", ".join(state.instruments) == _item(lib, path)["instruments"] != ""


def test_an_item_whose_path_holds_a_folder_or_a_fifo_is_reported_as_such(beets_lib, caplog):
    """Was: ``no such file`` of whatever stood at an item's path that was no regular file (a folder, a
    FIFO), as of a file that is gone (found red-teaming the plugin with items whose files were
    replaced). The reason says what is there."""
    lib, plugin, files = beets_lib
    folder, fifo, gone = files["bass.flac"], files["duo.mp3"], files["string.ogg"]
    for path in (folder, fifo, gone):
        os.remove(path)
    os.mkdir(folder)
    os.mkfifo(fifo)
    beet(lib, "instruments", "-W", "title:bass", ",", "title:duo", ",", "title:string")
    errors = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert errors == sorted([f"{folder}: is a folder, not a file", f"{fifo}: not a regular file", f"{gone}: no such file"])


def _read_by_beets_before(lib, paths) -> None:
    """The items of ``paths`` as beets last read their files a minute ago (their ``mtime``): the
    writes that follow are later, whatever second the test runs in."""
    for path in paths:
        item = _item(lib, path)
        item.mtime = int(os.path.getmtime(path)) - 60
        item.store()


def test_an_item_imported_before_tagger_tagged_its_file_keeps_the_files_results_at_beets_writes(beets_lib):
    """Was: an item beets read before tagger wrote its results into the file (imported, then `tagger
    scan`) held empty ``instruments`` and ``instruments_model``, which ``beet write``, ``beet write -f``
    and ``beet modify -w title=...`` wrote over the file's results, removing them (found checking the
    plugin against beets' writes from its own database). The write leaves them, and the item takes them."""
    import mediafile

    lib, plugin, files = beets_lib
    names = {"duo.mp3": ["bass", "flute"], "string.ogg": ["string"], "bass.flac": ["bass"]}
    assert all(_item(lib, files[n]).get("instruments_model") == "" for n in names)  # (read at the import)
    _read_by_beets_before(lib, [files[n] for n in names])
    for name, families in names.items():  # (as tagger scan or tagger tag writes them)
        tags.write_instruments(files[name], instruments=families, model_version="fake-1")
    beet(lib, "write", "path:" + files["duo.mp3"])  # (beets compares its own tag fields only: not written)
    assert tags.read_instruments(files["duo.mp3"]).instruments == ["bass", "flute"]
    beet(lib, "write", "-f", "path:" + files["bass.flac"])
    beet(lib, "modify", "-y", "-w", "path:" + files["string.ogg"], "title=Strings")
    beet(lib, "modify", "-y", "-w", "path:" + files["duo.mp3"], "title=Duo")
    assert mediafile.MediaFile(files["string.ogg"]).title == "Strings"
    for name, families in names.items():
        assert tags.read_instruments(files[name]).instruments == families, name
        item = _item(lib, files[name])
        assert (item["instruments"], item["instruments_model"]) == (", ".join(families), "fake-1"), name
    before = {n: open(files[n], "rb").read() for n in names}
    beet(lib, "write")  # (nothing left to write)
    assert {n: open(files[n], "rb").read() for n in names} == before
    # emptying the model on purpose still removes them
    beet(lib, "modify", "-y", "-w", "path:" + files["bass.flac"], "instruments_model=")
    assert tags.read_instruments(files["bass.flac"]).tagged is False


def _ctrl_c_at_each_analysis(plugin):
    """A Ctrl-C (SIGINT to this process) as the plugin's analyser begins each prediction; returns the
    analyser's own ``predict_features``, to put back."""
    import signal

    predict = plugin.analyser.predict_features

    def ctrl_c_then_predict(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return predict(*args, **kwargs)

    plugin.analyser.predict_features = ctrl_c_then_predict
    return predict


def _an_item_of_it_is_reported_not_analysed(lib, plugin, leftover, song, caplog) -> None:
    """An item of ``leftover`` (a file a tagger tag write left beside ``song``) added to beets' library
    as an earlier import did: `beet instruments` reports it as failed, neither analysed nor written,
    its file unchanged, and gives ``song`` its results."""
    from beets.library import Item

    lib.add(Item.from_path(str(leftover)))  # (imported by beets before)
    before = leftover.read_bytes()
    caplog.clear()
    counts = plugin.analyse(list(lib.items()), write=True)
    assert counts == {"analysed": 1, "reused": 0, "failed": 1, "written": 1}
    assert leftover.read_bytes() == before and tags.read_instruments(song).instruments == ["bass"]
    assert any(str(leftover) in r.getMessage() and "not analysed nor written" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)  # fmt: skip


def test_a_file_an_older_tagger_kept_without_the_tilde_is_neither_imported_nor_analysed(tmp_path, monkeypatch, caplog):
    """Was: a file an older tagger's tag write kept beside a track under the name before the ``~``
    (``NAME.tagger-kept-XXXXXXXX``), which beets' default ``ignore`` does not skip, was imported by
    ``beet import`` as one more track, and ``beet instruments`` then analysed it and wrote its tags
    (the brief's leftover of 8903b7d). The import leaves it out with a warning (an album's task and a
    singleton's); an item of such a file already in beets is reported, not analysed, its file unchanged."""
    from test_beets import _setup_beets, _unload

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    song = write_audio(incoming / "song.flac", tone_signal([FREQ["bass"]], seconds=4.0))
    kept = incoming / "song.flac.tagger-kept-0123abcd"
    shutil.copyfile(song, kept)
    lib, plugin = _setup_beets(tmp_path, monkeypatch)
    try:
        beet(lib, "import", "-A", "-q", "-C", str(incoming))  # (an album's task)
        assert [os.fsdecode(i.path) for i in lib.items()] == [str(song)]  # (was: the kept file too)
        beet(lib, "import", "-A", "-q", "-s", "-C", str(kept))  # (a singleton's)
        assert [os.fsdecode(i.path) for i in lib.items()] == [str(song)]
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert sum(str(kept) in w and "a file a tagger tag write kept" in w for w in warned) == 2, warned

        _an_item_of_it_is_reported_not_analysed(lib, plugin, kept, song, caplog)
    finally:
        lib._close()
        _unload()
        beets.config.clear()


def test_the_repeated_paths_an_older_taggers_runs_stored_are_left_out_at_the_next_scan(beets_lib):
    """A database of a tagger before 5a5cdce holds every ``beet instruments`` run's every item path
    again in its scan's record (4.6 MB a run for 50,000 items), all read and parsed by every scan,
    prune and ``tag`` without paths: 1.6 s each after 30 runs, growing with each (last session's
    red-team leftover, measured). The next scan rewrites those records once, each holding only the
    roots no earlier one holds; the union read is the same."""
    import json

    from sqlalchemy import text

    from tagger.db.reads import scanned_roots
    from tagger.db.session import open_database

    lib, plugin, files = beets_lib
    beet(lib, "instruments", "-W")
    database = open_database(str(beets.config["instruments"]["database"].get()))
    paths = sorted(files.values())
    try:
        with database.session() as s:  # (two runs as an older tagger stored them: every path again)
            for _ in range(2):
                s.execute(text("INSERT INTO scans (started_at, roots, scanned, skipped, failed, moved, missing, stale, "
                               "audio_seconds) VALUES ('2026-01-01', :roots, 0, 0, 0, 0, 0, 0, 0)"),
                          {"roots": json.dumps(paths + [paths[0]])})  # fmt: skip
        beet(lib, "instruments", "-W", "title:duo")
        with database.session() as s:
            stored = [json.loads(roots) for (roots,) in s.execute(text("SELECT roots FROM scans ORDER BY id"))]
            union = scanned_roots(s)
    finally:
        database.close()
    assert sorted(stored[0]) == paths and stored[1:] == [[], [], []]  # (was: [..., paths + [paths[0]] twice, []])
    assert union == paths


def test_beets_writes_leave_the_newest_results_and_a_clearing_made_in_beets(beets_lib):
    """The file's results are taken before a beets write only where the file changed since beets read
    it (review of e5b122c, which took them wherever the item held none): (1) results emptied on purpose
    in beets (``beet modify -W instruments_model=``, then ``beet write -f``) are removed from the
    file (was: the file's taken back by the item); (2) an item holding an older model's results does not
    write them over those tagger wrote into the file since (was: ``beet write -f``, ``beet modify -w``
    put the stale ones back); (3) a file `tagger untag` emptied since is not tagged again by a write."""
    lib, plugin, files = beets_lib
    cleared, retagged, untagged = files["bass.flac"], files["duo.mp3"], files["string.ogg"]
    for path, families in ((cleared, ["bass"]), (retagged, ["bass"]), (untagged, ["string"])):
        tags.write_instruments(path, instruments=families, model_version="fake-1")
        item = _item(lib, path)  # (beets read them: `beet update`, an import)
        item.read()
        item.store()
    assert _item(lib, retagged)["instruments_model"] == "fake-1"

    beet(lib, "modify", "-y", "-W", "path:" + cleared, "instruments=", "instruments_model=")
    beet(lib, "write", "-f", "path:" + cleared)
    assert tags.read_instruments(cleared).tagged is False  # (was: still bass, the item's fake-1 again)
    assert _item(lib, cleared)["instruments_model"] == ""

    _read_by_beets_before(lib, [retagged, untagged])
    tags.write_instruments(retagged, instruments=["bass", "flute"], model_version="fake-2")  # (a later scan)
    tags.remove_instruments(untagged)  # (tagger untag)
    beet(lib, "write", "-f", "path:" + retagged, ",", "path:" + untagged)
    got = tags.read_instruments(retagged)
    assert (got.instruments, got.model_version) == (["bass", "flute"], "fake-2")  # (was: bass, fake-1)
    assert tags.read_instruments(untagged).tagged is False  # (was: string again)
    assert (_item(lib, retagged)["instruments"], _item(lib, retagged)["instruments_model"]) == ("bass, flute", "fake-2")
    assert _item(lib, untagged)["instruments_model"] == ""

    _read_by_beets_before(lib, [retagged])
    tags.write_instruments(retagged, instruments=["flute"], model_version="fake-3")
    beet(lib, "modify", "-y", "-w", "path:" + retagged, "title=Duo")
    got = tags.read_instruments(retagged)
    assert (got.instruments, got.model_version) == (["flute"], "fake-3")


def test_results_the_plugin_gave_do_not_go_back_over_those_a_later_scan_wrote(beets_lib):
    """An item given its results by ``beet instruments`` (written into its file, or found there
    already) was stored with ``mtime`` 0, beets' mark of an edit not written, so the write wrapper
    of 66025b2 took its results for the user's: a later ``beet write -f`` put them back over those a
    later `tagger scan` wrote into the file (found reviewing 66025b2 in a beets library). beets'
    database keeps when it last read or wrote the file, and the newer results stay."""
    lib, plugin, files = beets_lib
    written, held = files["bass.flac"], files["duo.mp3"]
    _read_by_beets_before(lib, [held])  # (imported before tagger analysed it)
    tags.write_instruments(held, instruments=["bass", "flute"], model_version="fake-1")  # (tagger scan)
    beet(lib, "instruments", "path:" + written, ",", "path:" + held)
    assert tags.read_instruments(written) == tags.TagState(["bass"], "fake-1")
    assert all(_item(lib, path).mtime for path in (written, held))  # (was: 0)

    for path in (written, held):  # (a later scan, with another model)
        tags.write_instruments(path, instruments=["organ"], model_version="fake-2")
        os.utime(path, (os.path.getatime(path), os.path.getmtime(path) + 60))  # (later, whatever the second)
    beet(lib, "write", "-f", "path:" + written, ",", "path:" + held)
    for path in (written, held):
        assert tags.read_instruments(path) == tags.TagState(["organ"], "fake-2"), path  # (was: fake-1's again)
        assert (_item(lib, path)["instruments"], _item(lib, path)["instruments_model"]) == ("organ", "fake-2")


@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_as_beets_writes_a_file_leaves_it_whole_and_stops_after_its_item(beets_lib, tmp_path, monkeypatch,
                                                                                  python_sigint, signals):
    """beets (mutagen) writes a file in place: where the tag grows past the file's room, it makes room
    (`mutagen._util.resize_file`) and moves the audio after it. A Ctrl-C (SIGINT) there, in
    ``beet instruments`` writing files encoded by ffmpeg (no room in their tags), left each file
    half-written, its audio changed, the KeyboardInterrupt leaving beets silently. The write is
    whole; the first Ctrl-C stops the command after that item, saying so, and the next run gives
    the others their stored results without analysing them again; a second Ctrl-C stops at once,
    after the write."""
    import signal

    import mutagen._util
    from beets import ui
    from beets.library import Item

    from tagger.signals import Interrupted

    lib, plugin, files = beets_lib
    fresh = [str(write_audio(tmp_path / "fresh" / f"{n}.{ext}", tone_signal([FREQ["bass"]], seconds=4.0)))
             for n, ext in (("a", "mp3"), ("b", "flac"), ("c", "ogg"))]  # fmt: skip
    for path in fresh:
        lib.add(Item.from_path(path))
    audio = {path: tags.audio_digest(path) for path in fresh}
    resize = mutagen._util.resize_file

    def resize_then_ctrl_c(*args, **kwargs):
        resize(*args, **kwargs)
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(mutagen._util, "resize_file", resize_then_ctrl_c)
    stopped = None
    try:
        beet(lib, "instruments", "-w", "path:" + str(tmp_path / "fresh"))
    except BaseException as exc:  # noqa: BLE001 - (a KeyboardInterrupt must fail this test, not end the run)
        stopped = exc
    monkeypatch.setattr(mutagen._util, "resize_file", resize)
    for path in fresh:
        assert tags.audio_digest(path) == audio[path], path  # (was: changed, the tag write half made)
    assert type(stopped) is (ui.UserError if signals == 1 else Interrupted), repr(stopped)  # (was: KeyboardInterrupt)
    if signals == 1:
        assert str(stopped).startswith("instruments: interrupted (SIGINT) after 1 of 3 item(s)")
    first = next(p for p in fresh if tags.read_instruments(p).tagged)  # (beets' order)
    assert tags.read_instruments(first) == tags.TagState(["bass"], "fake-1")
    assert [p for p in fresh if tags.read_instruments(p).tagged] == [first]

    seen = plugin.analyser.windows_seen
    beet(lib, "instruments", "-w", "path:" + str(tmp_path / "fresh"))
    assert plugin.analyser.windows_seen == seen  # (their results stored: given, not analysed again)
    for path in fresh:
        assert tags.read_instruments(path) == tags.TagState(["bass"], "fake-1"), path
        assert tags.audio_digest(path) == audio[path], path
        assert (_item(lib, path)["instruments"], _item(lib, path)["instruments_model"]) == ("bass", "fake-1")


def test_ctrl_c_during_the_analysis_of_an_import_with_auto_stops_the_import(tmp_path, monkeypatch, python_sigint,
                                                                            caplog):
    """With ``auto`` and beets' ``threaded: no`` (the import's stages in beets' main thread), a Ctrl-C
    during the analysis of an imported item stopped the analysis (tagger's scan, its files stored)
    and the plugin logged it as an error after which the import goes on: the next items were
    imported and analysed, the Ctrl-C lost. The import stops, as beets' own Ctrl-C stops it."""
    from test_beets import _make, _setup_beets, _unload

    lib, plugin = _setup_beets(tmp_path, monkeypatch, auto=True)
    caplog.set_level(logging.INFO, logger="beets")
    _ctrl_c_at_each_analysis(plugin)
    try:
        _make(tmp_path / "incoming")
        stopped = None
        try:
            beet(lib, "import", "-A", "-q", "-s", str(tmp_path / "incoming"))
        except BaseException as exc:  # noqa: BLE001 - (a KeyboardInterrupt must fail this test, not end the run)
            stopped = exc
        assert type(stopped) is KeyboardInterrupt, repr(stopped)  # (was: None, the import gone on to its end)
        assert len(list(lib.items())) == 1  # (was: 5)
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1 and lines[0].startswith("interrupted (SIGINT)"), lines
    finally:
        lib._close()
        _unload()
        beets.config.clear()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_third_stop_signal_stops_beet_instruments_inside_a_write_that_does_not_end(beets_lib, tmp_path, monkeypatch,
                                                                                     python_sigint, caplog, capfd,
                                                                                     signame):  # fmt: skip
    """The stop signals held while beets writes a file in place (6502936) were all held, however many
    and however long the write took: a file on a hung network drive made Ctrl-C and SIGTERM useless
    (only ``kill -9`` left). The first held says so on stderr; the third stops at once, inside the
    write, and the file it may have left half-written is named."""
    import signal

    import mutagen._util
    from beets.library import Item

    from tagger.signals import Interrupted

    lib, plugin, files = beets_lib
    sig = getattr(signal, signame)
    path = str(write_audio(tmp_path / "slow" / "a.mp3", tone_signal([FREQ["bass"]], seconds=4.0)))
    lib.add(Item.from_path(path))
    with open(path, "rb") as f:
        before = f.read()
    resize = mutagen._util.resize_file
    sent = []

    def stuck_write(*args, **kwargs):  # (a write that ends only when stopped: each signal, then more time)
        for n in range(4):
            os.kill(os.getpid(), sig)
            sent.append(n + 1)
        resize(*args, **kwargs)

    monkeypatch.setattr(mutagen._util, "resize_file", stuck_write)
    capfd.readouterr()
    with pytest.raises(Interrupted) as stopped:
        beet(lib, "instruments", "-w", "path:" + path)
    assert sent == [1, 2]  # (was [1, 2, 3, 4]: every one held until the write ended)
    assert stopped.value.signum == sig
    with open(path, "rb") as f:
        assert f.read() == before  # (stopped before mutagen made room: nothing written)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"instruments: {path}: stopped inside beets' write of it: beets writes in place, so the file "
                      "may be left half-written, its audio damaged"]  # fmt: skip
    err = capfd.readouterr().err
    assert err.count(f"instruments: stopping once beets has written {path} (it writes in place") == 1, err


def test_beet_import_without_beets_ignore_patterns_takes_no_hidden_copy_of_a_tag_write(tmp_path, monkeypatch, caplog):
    """With beets' ``ignore: []`` and ``ignore_hidden: no`` (beets' defaults skip dot files both
    ways), ``beet import`` of a folder holding the hidden copy a killed tagger write left
    (``.NAME.XXXXXXXX.tagger-tmp``, perhaps half-written, which the next write in the folder removes)
    imported it as the track (beets reads the type from the content), and skipped the track itself as
    its duplicate ('This track is already in the library!'); ``beet instruments`` then analysed and
    wrote it. The import leaves it out with a warning, and an item of such a file already in beets is
    reported, not analysed, its file unchanged."""
    from test_beets import _setup_beets, _unload

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    song = write_audio(incoming / "song.flac", tone_signal([FREQ["bass"]], seconds=4.0))
    copy = incoming / ".song.flac.0123abcd.tagger-tmp"
    shutil.copyfile(song, copy)
    lib, plugin = _setup_beets(tmp_path, monkeypatch)
    beets.config["ignore"] = []
    beets.config["ignore_hidden"] = False
    try:
        beet(lib, "import", "-A", "-q", "-s", "-C", str(incoming))
        assert [os.fsdecode(i.path) for i in lib.items()] == [str(song)]  # (was: the hidden copy alone)
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert sum(str(copy) in w and "the hidden copy of a tagger tag write" in w for w in warned) == 1, warned

        _an_item_of_it_is_reported_not_analysed(lib, plugin, copy, song, caplog)
    finally:
        lib._close()
        _unload()
        beets.config.clear()


def test_an_item_in_a_folder_whose_name_is_not_utf8_is_told_to_rename_that_folder(beets_lib, tmp_path, caplog):
    """A beets library on a path whose folder name is not valid UTF-8 (``lib\\xff/``): each item was
    told ``rename the file to analyse it``, whose name is fine, where `tagger scan` names the folder
    to rename. The plugin says what the scan says (one function serves both)."""
    from beets.library import Item

    lib, plugin, files = beets_lib
    folder = os.path.join(os.fsencode(tmp_path), b"lib\xff", b"disc 1")
    os.makedirs(folder)
    path = os.path.join(folder, b"song.flac")
    os.replace(write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0)), path)
    item = Item.from_path(path)
    lib.add(item)
    assert plugin.analyse([item], write=True) == {"analysed": 0, "reused": 0, "failed": 1, "written": 0}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "lib\\xff/disc 1/song.flac" in errors[0], errors
    assert errors[0].endswith(f"the bytes are in the name of its folder {tmp_path}/lib\\xff: rename that folder to "
                              "analyse the files in it"), errors  # (was: rename the file to analyse it)
    assert not tags.read_instruments(os.fsdecode(path)).tagged


@pytest.mark.parametrize("during", ["analysis", "giving"])
def test_ctrl_c_stopping_an_import_with_auto_names_beet_instruments_which_gives_its_items_their_results(
        tmp_path, monkeypatch, python_sigint, caplog, during):  # fmt: skip
    """A Ctrl-C that stops an import with ``auto`` (``threaded: no``, 6502936) left the items of the
    task under way in beets' library without results, and the line said to 'scan again to continue'
    (tagger's words) or to 'run the command again' (``beet import``, which imports nothing of them
    again) after 'their files written whole' of an import with ``write: no``. It names ``beet
    instruments``, which gives them their results; that stored are not analysed again."""
    import signal

    from beets.library import Item
    from test_beets import _make, _setup_beets, _unload

    lib, plugin = _setup_beets(tmp_path, monkeypatch, auto=True)
    beets.config["import"]["write"] = during == "analysis"  # (the giving: write: no)
    caplog.set_level(logging.INFO, logger="beets")
    if during == "analysis":
        predict = _ctrl_c_at_each_analysis(plugin)
    else:
        store = Item.store

        def ctrl_c_as_it_is_given(item, *args, **kwargs):
            if item.get("instruments_model"):
                os.kill(os.getpid(), signal.SIGINT)
            return store(item, *args, **kwargs)

        monkeypatch.setattr(Item, "store", ctrl_c_as_it_is_given)
    try:
        _make(tmp_path / "incoming")
        with pytest.raises(KeyboardInterrupt):
            beet(lib, "import", "-A", "-q", str(tmp_path / "incoming"))  # (one album: one task)
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1 and "`beet instruments`" in lines[0], lines  # (was: scan again / the command)
        assert "written whole" not in lines[0], lines  # (was: said of files not written)
        given = [bool(i.get("instruments_model")) for i in lib.items()]
        assert len(given) == 5 and given.count(True) == (0 if during == "analysis" else 1), given
        if during == "giving":
            monkeypatch.setattr(Item, "store", store)
            plugin.analyser.predict_features = None  # (their results stored: none is analysed again)
        else:
            plugin.analyser.predict_features = predict
        beet(lib, "instruments")
        assert all(i.get("instruments_model") == "fake-1" for i in lib.items())
    finally:
        lib._close()
        _unload()
        beets.config.clear()


def test_a_third_stop_signal_in_beets_store_after_the_write_names_no_file_as_damaged(beets_lib, tmp_path, monkeypatch,
                                                                                    python_sigint, caplog):
    """The third stop signal held during beets' write and its store of the item stops at once; one
    that came in the store, the file written whole, was said as 'stopped inside beets' write of it:
    ... may be left half-written, its audio damaged', of a whole file. It names no file so."""
    import signal

    from beets.library import Item

    from tagger.signals import Interrupted

    lib, plugin, files = beets_lib
    path = str(write_audio(tmp_path / "slow" / "a.mp3", tone_signal([FREQ["bass"]], seconds=4.0)))
    lib.add(Item.from_path(path))
    audio = tags.audio_digest(path)
    store = Item.store

    def three_stops_then_store(item, *args, **kwargs):
        if getattr(item, "_tagger_gives", False):  # (beets' store after the plugin's write)
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
        return store(item, *args, **kwargs)

    monkeypatch.setattr(Item, "store", three_stops_then_store)
    with pytest.raises(Interrupted):
        beet(lib, "instruments", "-w", "path:" + path)
    assert tags.read_instruments(path) == tags.TagState(["bass"], "fake-1") and tags.audio_digest(path) == audio
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not any("half-written" in e for e in errors), errors  # (was: the whole file named as damaged)


@pytest.mark.parametrize("run", ["import", "command"])
def test_ctrl_c_as_the_last_item_is_given_its_results_is_heard(tmp_path, monkeypatch, python_sigint, caplog, run):
    """A stop signal that came while the plugin gave the last of its items their results was
    dropped once they were all given (6502936 checked for it before each item only): an import
    with ``auto`` (``threaded: no``) of singletons (``-s``: one item a task, each its last) went on
    with the next files through every Ctrl-C that came during a write, and ``beet instruments``
    ended as finished, exit 0. It is heard, as a scan hears one during its last file."""
    import signal

    from beets import ui
    from beets.library import Item
    from test_beets import _make, _setup_beets, _unload

    lib, plugin = _setup_beets(tmp_path, monkeypatch, auto=run == "import")
    caplog.set_level(logging.INFO, logger="beets")
    store = Item.store

    def ctrl_c_as_it_is_given(item, *args, **kwargs):
        if getattr(item, "_tagger_gives", False):  # (beets' store after the plugin's write)
            os.kill(os.getpid(), signal.SIGINT)
        return store(item, *args, **kwargs)

    try:
        _make(tmp_path / "incoming")
        if run == "command":
            beet(lib, "import", "-A", "-q", "-s", str(tmp_path / "incoming"))
        monkeypatch.setattr(Item, "store", ctrl_c_as_it_is_given)
        stopped = None
        try:
            if run == "import":
                beet(lib, "import", "-A", "-q", "-s", str(tmp_path / "incoming"))
            else:
                beet(lib, "instruments", "-w", "title:bass")
        except BaseException as exc:  # noqa: BLE001 - (a KeyboardInterrupt must fail this test, not end the run)
            stopped = exc
        assert type(stopped) is (KeyboardInterrupt if run == "import" else ui.UserError), repr(stopped)  # (was: None)
        if run == "import":
            assert len(list(lib.items())) == 1  # (was: 5, the import gone on)
            lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert lines == ["interrupted (SIGINT) after 1 of 1 item(s), given their results (their files written "
                             "whole)"], lines  # fmt: skip
        else:
            assert str(stopped) == ("instruments: interrupted (SIGINT) after 1 of 1 item(s), given their results "
                                    "(their files written whole)")  # fmt: skip
    finally:
        lib._close()
        _unload()
        beets.config.clear()

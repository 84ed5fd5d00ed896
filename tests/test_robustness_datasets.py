"""Hostile and careless input to `tagger dataset` and `tagger evaluate`: every bad input is one line
naming the file and the reason (exit 1, no traceback), nothing outside the dataset is read, no
user file is overwritten or deleted, and an interrupted run never leaves output that passes as good.

The datasets are tiny NSynth-format folders of tones written with soundfile.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tagger import constants as C
from tagger.cli import app
from tagger.data import mix as M
from tagger.data import nsynth
from tagger.errors import AudioReadError, DatasetError, UserError
from tagger.evaluate import report as R
from tagger.instruments import FAMILIES

runner = CliRunner()


def make_dataset(root, extra=None, *, drop_family=None):
    """One acoustic test note per family (a tone at 200 Hz x (index + 1)), plus `extra` records."""
    (root / "audio").mkdir(parents=True)
    t = np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE
    examples, split = {}, {}
    for i, fam in enumerate(FAMILIES):
        if fam == drop_family:
            continue
        inst = f"{fam}_acoustic_000"
        note = f"{inst}-060-100"
        split[inst] = "test"
        examples[note] = {
            "note_str": note, "pitch": 60, "velocity": 100, "instrument_str": inst,
            "instrument_family_str": fam, "instrument_source_str": "acoustic",
        }  # fmt: skip
        sf.write(root / "audio" / f"{note}.wav", 0.3 * np.sin(2 * np.pi * 200 * (i + 1) * t), C.SAMPLE_RATE, subtype="PCM_16")
    for key, rec in (extra or {}).items():
        examples[key] = rec
        split[rec["instrument_str"]] = "test"
    (root / "examples.json").write_text(json.dumps(examples))
    (root / "split.json").write_text(json.dumps({"seed": 0, "instruments": split}))
    return root


def bass(**fields):
    rec = {"pitch": 60, "velocity": 100, "instrument_str": "bass_acoustic_000",
           "instrument_family_str": "bass", "instrument_source_str": "acoustic"}  # fmt: skip
    rec.update(fields)
    return rec


def one_error_line(result, *needles):
    """The command failed with exit 1 and one `tagger: error:` line holding every needle, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tagger: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


# --- examples.json: names with path parts, wrong values ------------------------------------------


@pytest.fixture
def outside_note(tmp_path):
    """A valid bass note WAV outside the dataset (what a hostile note_str would make us read)."""
    path = tmp_path / "outside" / "secret.wav"
    path.parent.mkdir()
    t = np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE
    sf.write(path, 0.3 * np.sin(2 * np.pi * 200 * t), C.SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize(
    "name",
    ["ABSOLUTE", "../../outside/secret", "sub/dir", "a\x00b", "x" * 300],
    ids=["absolute", "dotdot", "slash", "nul", "too-long"],
)
def test_a_note_str_that_is_not_a_plain_file_name_is_refused_before_any_audio_is_read(tmp_path, outside_note, name):
    name = str(outside_note.with_suffix("")) if name == "ABSOLUTE" else name
    root = make_dataset(tmp_path / "ds", {"hostile": bass(note_str=name)}, drop_family="bass")
    with pytest.raises(DatasetError) as err:
        nsynth.NoteDataset.load(root)
    assert err.value.path == str(root / "examples.json") and "'hostile'" in err.value.reason
    # the command: one line, and no mixture made of the file outside
    result = runner.invoke(app, ["dataset", "mix", str(root), str(tmp_path / "mix"), "--levels", "1", "--per-level", "20"])
    one_error_line(result, "examples.json", "note_str")
    assert not (tmp_path / "mix").exists()


def test_a_key_with_path_parts_is_refused_when_the_record_has_no_note_str(tmp_path, outside_note):
    root = make_dataset(tmp_path / "ds", {"../../outside/secret": bass()}, drop_family="bass")
    with pytest.raises(DatasetError, match="path separator"):
        nsynth.NoteDataset.load(root)


def test_duplicate_keys_in_examples_json_are_refused_not_silently_dropped(tmp_path):
    root = make_dataset(tmp_path / "ds")
    text = (root / "examples.json").read_text()
    first = text.index('"bass_acoustic_000-060-100": ')
    record = text[first : text.index("}", first) + 1]
    (root / "examples.json").write_text(text[:-1] + ", " + record.replace('"pitch": 60', '"pitch": 61') + "}")
    result = runner.invoke(app, ["dataset", "split", str(root)])
    one_error_line(result, str(root / "examples.json"), "bass_acoustic_000-060-100", "twice")


@pytest.mark.parametrize("field,value", [("pitch", -5), ("pitch", 10**30), ("velocity", 128)])
def test_pitch_and_velocity_must_be_midi_values(tmp_path, field, value):
    root = make_dataset(tmp_path / "ds", {"odd": bass(note_str="odd", **{field: value})})
    with pytest.raises(DatasetError, match=f"{field} is {value}, expected a MIDI value"):
        nsynth.NoteDataset.load(root)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_note_audio_path_that_is_no_regular_file_is_one_clear_error_without_blocking(tmp_path, kind):
    root = make_dataset(tmp_path / "ds", {"odd": bass(note_str="odd")}, drop_family="bass")
    path = root / "audio" / "odd.wav"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    done = []
    worker = threading.Thread(
        target=lambda: done.append(runner.invoke(app, ["dataset", "mix", str(root), str(tmp_path / "mix"), "--levels", "10"])),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert done, "the command blocked on the FIFO"
    one_error_line(done[0], str(path), "not a regular file")


def _note_refused(root, path, why, out):
    """The note file `path` of the dataset `root` refused for `why`, naming it: by the reader, and
    by `dataset mix`, in one error line, writing no mixture into `out`."""
    with pytest.raises(DatasetError, match=why) as err:
        nsynth.load_note_audio(nsynth.NoteDataset.load(root).notes)
    assert err.value.path == str(path)
    result = runner.invoke(app, ["dataset", "mix", str(root), str(out), "--levels", "10", "--per-level", "1"])
    one_error_line(result, str(path), why)
    assert not (out / "labels.json").exists()


@pytest.mark.parametrize("bad,rate,why", [(np.nan, C.SAMPLE_RATE, "NaN or infinite"), (np.inf, 44_100, "NaN or infinite"),
                                          (1e30, C.SAMPLE_RATE, "beyond")], ids=["nan", "inf-44k", "huge"])  # fmt: skip
def test_a_note_of_nan_infinite_or_absurd_samples_is_refused_with_its_file_named(tmp_path, bad, rate, why):
    """Such a note would make a NaN mixture (or drown the others of its mixture, whose labels then
    lie), and NaN features for training (was: read unchecked)."""
    root = make_dataset(tmp_path / "ds", {"odd": bass(note_str="odd")}, drop_family="bass")
    y = 0.3 * np.sin(2 * np.pi * 110 * np.arange(rate * 4) / rate)
    y[1000:1010] = bad
    path = root / "audio" / "odd.wav"
    sf.write(path, y, rate, subtype="FLOAT")
    _note_refused(root, path, why, tmp_path / "mix")


def test_two_records_naming_one_note_str_are_refused_not_scored_twice(tmp_path):
    """A record under another key with the same note_str reads the same audio file: the note was
    scored twice in the solo test and drawn twice into mixtures (was: 11 notes for 10 files)."""
    root = make_dataset(tmp_path / "ds", {"again": bass(note_str="bass_acoustic_000-060-100")})
    with pytest.raises(DatasetError, match="'bass_acoustic_000-060-100' and 'again' both have note_str"):
        nsynth.NoteDataset.load(root)
    one_error_line(runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "r"), "--models", str(tmp_path)]),
                   "examples.json", "'again'", "one audio file for two records")  # fmt: skip
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("how", ["empty", "cut"])
def test_a_note_file_empty_or_cut_short_is_refused_not_scored_as_padded_silence(tmp_path, how):
    """libsndfile reads a WAV of no frames, or one whose data chunk stops before the size its header
    declares (a download that stopped), as far as it goes: the note was scored and mixed padded with
    silence, as if it were the whole note (was: the solo test counted a silent bass as a miss)."""
    root = make_dataset(tmp_path / "ds")
    path = root / "audio" / "bass_acoustic_000-060-100.wav"
    if how == "empty":
        sf.write(path, np.zeros(0), C.SAMPLE_RATE, subtype="PCM_16")
        why = "note audio holds no samples"
    else:
        path.write_bytes(path.read_bytes()[:30_000])
        why = "note audio cut short: the file holds 0.94 s of the 4.00 s its header declares"
    _note_refused(root, path, why, tmp_path / "mix")
    whole = make_dataset(tmp_path / "whole")  # (a whole note, and one with a chunk after its data, read as ever)
    with open(whole / "audio" / "bass_acoustic_000-060-100.wav", "ab") as f:
        f.write(b"LIST\x04\x00\x00\x00INFO")
    assert nsynth.load_note_audio(nsynth.NoteDataset.load(whole).notes).shape == (len(FAMILIES), C.WINDOW_SAMPLES)


def test_a_long_note_is_read_for_its_window_alone_and_the_report_names_it(tmp_path, monkeypatch):
    """A note file was read whole (`sf.read`): one of hours, or a WAV whose header claims
    gigabytes, went into memory entire for a 4 s window. A note is now read for the window and a
    margin, a longer one named in report.json's data.notes_cut and report.md, and one whose header
    claims more than the file holds is refused before a sample is read."""
    root = make_dataset(tmp_path / "ds")
    path = root / "audio" / "bass_acoustic_000-060-100.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 200 * np.arange(30 * C.SAMPLE_RATE) / C.SAMPLE_RATE), C.SAMPLE_RATE, subtype="PCM_16")
    asked = []
    real_read = sf.SoundFile.read

    def read(self, frames=-1, *args, **kwargs):
        asked.append(self.frames if frames < 0 else frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", read)
    rep = R.evaluate(root, out_dir=tmp_path / "rep", scorer=_Flat(), levels=[1], per_level=2, plots=False)
    assert asked and max(asked) <= 4.1 * C.SAMPLE_RATE + 1  # (the window and a margin of 0.1 s; was: 30 s)
    assert rep.data["data"]["notes_cut"] == {"count": 1, "window_seconds": C.WINDOW_SECONDS,
                                             "files": [{"file": "bass_acoustic_000-060-100", "seconds": 30.0}]}  # fmt: skip
    assert "bass_acoustic_000-060-100 (30 s)" in (tmp_path / "rep" / R.REPORT_MD).read_text()
    claims = bytearray(path.read_bytes()[:44 + 2 * C.WINDOW_SAMPLES])  # (4 s held, its header: 1 GiB of data)
    claims[40:44] = (1 << 30).to_bytes(4, "little")
    path.write_bytes(bytes(claims))
    note = next(n for n in nsynth.NoteDataset.load(root).notes if n.path == path)
    asked.clear()
    with pytest.raises(DatasetError, match="cut short: the file holds 4.00 s of the 33554.43 s its header declares") as err:
        nsynth.load_note_audio([note])
    assert err.value.path == str(path)
    assert asked == []  # (refused before a sample was read)


def test_a_split_the_model_was_trained_or_calibrated_on_is_evaluated_with_a_warning(tmp_path, caplog):
    """Evaluating on the valid split that chose the model's thresholds, the train split, or any
    split of a production fit's dataset gave optimistic figures without a word (as good as the
    held-out test split's): the manifest's data names the dataset, and the report, its summary and
    a warning now say which split and why."""
    root = make_dataset(tmp_path / "gm9")
    instruments = json.loads((root / "split.json").read_text())["instruments"]

    def evaluate(split, data_record, data=root, render=None):
        (root / "split.json").write_text(json.dumps({"instruments": {k: split for k in instruments}}))
        if render is not None:
            (root / "render.json").write_text(json.dumps({"soundfonts": render}))
        scorer = _Flat()
        scorer.manifest = {"version": "m1", "data": data_record}
        out = tmp_path / f"rep-{len(list(tmp_path.glob('rep-*')))}"
        return R.evaluate(data, out_dir=out, scorer=scorer, split=split, levels=[1], per_level=1, plots=False)

    held_out = {"dataset": "gm9", "all_instruments": False, "render": {"fluidr3": "a.sf2"}}
    with caplog.at_level("WARNING", logger="tagger.evaluate.report"):
        rep = evaluate("valid", held_out)
    seen = rep.data["data"]["seen_by_model"]
    assert seen == ["the valid split of 'gm9' chose the decision thresholds of the model 'm1' and validated its "
                    "training: figures on it are optimistic, not a measure of instruments it never heard"]  # fmt: skip
    assert seen[0] in caplog.text and f"- Warning: {seen[0]}" in rep.files["markdown"].read_text()
    assert "trained on the train split of 'gm9'" in evaluate("train", held_out).data["data"]["seen_by_model"][0]
    assert evaluate("test", held_out).data["data"]["seen_by_model"] == []  # (the split held out)
    fit = {"members": [{"version": "a", "dataset": "gm9", "all_instruments": True}]}  # (an averaged ensemble's)
    assert evaluate("test", fit).data["data"]["seen_by_model"] == [
        "the model 'm1' (its member 'a') was trained on every instrument of 'gm9', each split's included (a production "
        "fit: data.all_instruments in its manifest): figures on its test split are optimistic, not a measure of "
        "instruments it never heard"]  # fmt: skip
    pair = {"members": [{"version": v, "dataset": "gm9", "all_instruments": True} for v in ("a", "b")]}  # (the shipped models')
    assert evaluate("test", pair).data["data"]["seen_by_model"] == [  # (one line for both: was one a member)
        "the model 'm1' (its members 'a', 'b') was trained on every instrument of 'gm9', each split's included (a "
        "production fit: data.all_instruments in its manifest): figures on its test split are optimistic, not a "
        "measure of instruments it never heard"]  # fmt: skip
    assert evaluate("valid", {**held_out, "dataset": "gm4"}).data["data"]["seen_by_model"] == []  # (another dataset)
    assert evaluate("valid", held_out, render={"fluidr3": "b.sf2"}).data["data"]["seen_by_model"] == []  # (its namesake)
    mixtures = tmp_path / "mix"
    M.write_mixtures(nsynth.NoteDataset.load(root, split="valid"), mixtures, per_level=1, levels=[1], seed=0)
    (line,) = evaluate("valid", {"dataset": "gm9"}, data=mixtures).data["data"]["seen_by_model"]
    assert line.startswith("the valid split of 'gm9' chose") and f"(the mixtures were mixed from {root})" in line


def test_a_render_json_no_regular_file_or_an_odd_manifest_neither_blocks_nor_breaks_the_check(tmp_path):
    """evaluate's check of the data against the model's manifest read the dataset's render.json
    whatever it was: a FIFO there blocked evaluate for ever (the model loaded, nothing scored), and
    a manifest whose data.dataset is no name (a list) or whose data.members is no list was a
    TypeError traceback. render.json is read as a regular file alone (`rendered_soundfonts`, as a
    render and a model's record now read it too), and such a record is passed by."""
    root = make_dataset(tmp_path / "gm9")
    instruments = json.loads((root / "split.json").read_text())["instruments"]
    (root / "split.json").write_text(json.dumps({"instruments": {k: "valid" for k in instruments}}))
    fifo = root / "render.json"
    os.mkfifo(fifo)
    other = json.dumps({"soundfonts": {"fluidr3": "b.sf2"}}).encode()  # (another render's: its namesake, no warning)

    def feed() -> None:  # (a reader of the FIFO gets another render's record, then its end: never blocked for ever)
        fd = os.open(fifo, os.O_WRONLY)  # (waits for a reader)
        os.write(fd, other)
        os.close(fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    scorer = _Flat()
    scorer.manifest = {"version": "m1", "data": {"dataset": "gm9", "render": {"fluidr3": "a.sf2"}}}
    report = R.evaluate(root, out_dir=tmp_path / "rep", scorer=scorer, split="valid", levels=[1], per_level=1, plots=False)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # (the feeder's partner where evaluate opened none)
    feeder.join()
    unread = os.read(reader, 1024)
    os.close(reader)
    assert unread == other, "evaluate read render.json, a FIFO"  # (on the old code: read, so no warning below)
    assert report.data["data"]["seen_by_model"][0].startswith("the valid split of 'gm9' chose")  # (the name alone tells)
    source = R._read_data(root, split="valid", acoustic_only=False)
    for odd in ({"dataset": ["gm9"]}, {"dataset": {"gm9": 1}}, {"members": 3}, {"members": [{"dataset": ["gm9"]}]}):
        assert R.seen_by_model({"version": "m1", "data": odd}, source) == []


class _Flat:
    """A scorer that hears nothing: what is read, not what is scored, is under test."""

    families = FAMILIES
    thresholds = np.full(len(FAMILIES), 0.5, dtype=np.float32)

    def predict(self, windows):
        return np.zeros((len(windows), len(FAMILIES)), dtype=np.float32)


@pytest.mark.parametrize("how", ["antiphase", "one-side-empty"])
def test_a_stereo_note_is_downmixed_as_a_scan_downmixes_a_track(tmp_path, how):
    """A note of two channels was their plain mean: in antiphase (L = -R) it cancelled to silence and
    was scored, mixed and trained on as a silent note of its family; with one side empty it lost
    6 dB. It now goes through the scan's downmix (`tagger.audio.load`), as a note of another rate did."""
    root = make_dataset(tmp_path / "ds")
    path = root / "audio" / "bass_acoustic_000-060-100.wav"
    y = 0.3 * np.sin(2 * np.pi * 200 * np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE)
    other = -y if how == "antiphase" else np.zeros_like(y)
    sf.write(path, np.stack([y, other], axis=1), C.SAMPLE_RATE, subtype="PCM_16")
    ds = nsynth.NoteDataset.load(root)
    clip = nsynth.load_note_audio([n for n in ds.notes if n.family == "bass"])[0]
    assert np.max(np.abs(clip)) == pytest.approx(0.3, abs=0.01)
    assert np.sqrt(np.mean(clip**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize("name,split", [("nsynth-test", "test"), ("nsynth_valid", "valid"), ("NSynth-Train", "train"),
                                        ("test", "test"), ("latest", None), ("contest", None), ("notes", None)])  # fmt: skip
def test_a_folder_gives_its_split_by_its_last_word_only(tmp_path, name, split):
    """A real NSynth folder without split.json takes its split from its name; a folder named
    `latest` was the test split (its name ends in 'test'), so evaluate scored all its notes as test."""
    root = make_dataset(tmp_path / name)
    (root / "split.json").unlink()
    if split is None:
        with pytest.raises(DatasetError, match="no split yet"):
            nsynth.NoteDataset.load(root, split="test")
    else:
        assert {n.split for n in nsynth.NoteDataset.load(root).notes} == {split}


def test_a_folder_named_by_dot_dotdot_or_a_link_gives_the_split_of_its_own_name(tmp_path, monkeypatch):
    """`tagger evaluate .` inside a real `nsynth-test` folder (or `..` from its `audio/`) took the
    split from the path's last part, `.` or `..`, no split's name, and said `the dataset has no split
    yet; run tagger dataset split first` (found red-teaming evaluate from inside the dataset); a link
    of another name to it, the same. Each gives the folder's split."""
    root = make_dataset(tmp_path / "nsynth-test")
    (root / "split.json").unlink()
    (tmp_path / "current").symlink_to(root)
    monkeypatch.chdir(root / "audio")
    for given in ("..", "../audio/..", str(tmp_path / "current")):
        assert {n.split for n in nsynth.NoteDataset.load(given, split="test").notes} == {"test"}, given
    monkeypatch.chdir(root)
    assert len(nsynth.NoteDataset.load(".", split="test").notes) == len(FAMILIES)
    report = R.evaluate(".", out_dir=tmp_path / "report", scorer=Scorer(), per_level=1, levels=[1], plots=False)
    assert report.solo.predictions.ids and report.data["data"]["split"] == "test"

def test_a_link_named_for_one_split_to_a_folder_named_for_another_is_refused(tmp_path):
    """A link ``nsynth-test`` to a real ``nsynth-valid`` folder (no split.json) took the link's
    name: its notes were scored as the test split, a model calibrated on the valid split judged on
    it without a word, though bf8fbf4 reads the name of the folder a link leads to (found reviewing
    bf8fbf4 for a guess of the wrong split). Refused naming both, before the model loads; a
    split.json still decides where there is one."""
    root = make_dataset(tmp_path / "nsynth-valid")
    (root / "split.json").rename(tmp_path / "split.json")
    (tmp_path / "nsynth-test").symlink_to(root)
    link = tmp_path / "nsynth-test"
    with pytest.raises(DatasetError, match=r"gives the test split, the folder it leads to \(.*nsynth-valid\) the valid"):
        nsynth.NoteDataset.load(link, split="test")
    with pytest.raises(DatasetError, match="the folder it leads to"):
        R.evaluate(link, out_dir=tmp_path / "report", scorer=_never_loaded, plots=False)
    assert {n.split for n in nsynth.NoteDataset.load(root, split="valid").notes} == {"valid"}
    (tmp_path / "split.json").rename(root / "split.json")
    assert nsynth.NoteDataset.load(link, split="test").notes


def test_examples_json_with_a_utf8_bom_is_read(tmp_path):
    """Windows editors save UTF-8 with a BOM in front (was: 'invalid JSON: Unexpected UTF-8 BOM')."""
    root = make_dataset(tmp_path / "ds")
    for name in ("examples.json", "split.json"):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    assert len(nsynth.NoteDataset.load(root, split="test").notes) == len(FAMILIES)


def test_dataset_split_never_writes_through_a_link_nor_tracebacks_on_a_folder(tmp_path):
    """split.json was written as split.json.tmp, opened through a link of that name (a user's file
    overwritten with the split), then renamed; a split.json that is a folder was an IsADirectoryError
    traceback."""
    root = make_dataset(tmp_path / "ds")
    (root / "split.json").unlink()
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes\n")
    (root / "split.json.tmp").symlink_to(mine)
    result = runner.invoke(app, ["dataset", "split", str(root)])
    assert result.exit_code == 0, result.output
    assert mine.read_text() == "my notes\n" and (root / "split.json.tmp").is_symlink()
    assert set(nsynth.read_split(root).values()) <= set(nsynth.SPLITS) and not (root / "split.json").is_symlink()
    (root / "split.json").unlink()
    (root / "split.json").mkdir()
    one_error_line(runner.invoke(app, ["dataset", "split", str(root)]), str(root / "split.json"), "is not a file")
    assert sorted(p.name for p in root.iterdir()) == ["audio", "examples.json", "split.json", "split.json.tmp"]


def test_split_json_with_duplicate_keys_or_bad_bytes_is_one_line(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "split.json").write_bytes(b'{"instruments": {"a": "train", "a": "test"}}')
    one_error_line(runner.invoke(app, ["dataset", "mix", str(root), str(tmp_path / "m")]), "split.json", "twice")
    (root / "split.json").write_bytes(b"\xff\xfe{}")
    one_error_line(runner.invoke(app, ["dataset", "mix", str(root), str(tmp_path / "m")]), "split.json", "invalid JSON")


# --- dataset mix: the output folder -------------------------------------------------------------


def mix_args(root, out, *extra):
    return ["dataset", "mix", str(root), str(out), "--levels", "1-2", "--per-level", "2", *extra]


@pytest.mark.parametrize("args,needle", [
    (["--levels", "1-x"], "--levels: expected"), (["--levels=0,-1"], "--levels: expected"),
    (["--levels", "5-2"], "--levels: expected"), (["--gain-db", "3"], "--gain-db: expected two numbers"),
    (["--gain-db", "0,-6"], "gain range 0,-6 dB (--gain-db): expected"), (["--pitch-range", "a,b"], "--pitch-range: expected"),
    (["--pitch-range", "20,200"], "pitch range 20,200 (--pitch-range): expected"), (["--velocities", "x"], "--velocities: expected"),
    (["--velocities", "200"], "velocities 200 (--velocities): expected"), (["--per-level", "0"], "--per-level must be at least 1"),
    (["--max-onset", "-1"], "maximum onset -1 s (--max-onset): expected"), (["--max-onset", "10"], "(--max-onset): expected at least 0 and under the 4 s window"),
])  # fmt: skip
def test_mix_options_out_of_range_are_one_line_and_write_nothing(tmp_path, args, needle):
    """Each was a traceback (ValueError from int(), from unpacking, from numpy's uniform or integers),
    or a labels.json of no mixtures (--per-level 0), or mixtures whose labels name a note that
    starts after their 4 s (--max-onset 10: the note was left out, its bit set). Each line names the
    option (the ranges checked by the settings named only the setting, "maximum onset 10 s")."""
    root = make_dataset(tmp_path / "ds")
    result = runner.invoke(app, ["dataset", "mix", str(root), str(tmp_path / "mix"), "--levels", "2", "--per-level", "1", *args])
    one_error_line(result, needle)
    assert not (tmp_path / "mix").exists()
    with pytest.raises(UserError, match="no level|levels must be 0 or more"):
        M.draw_mixtures(nsynth.NoteDataset.load(root), levels=[-1])
    with pytest.raises(UserError, match="at least 1"):
        M.draw_mixtures(nsynth.NoteDataset.load(root), per_level=0)


def test_evaluate_levels_naming_no_level_are_refused_not_an_empty_report(tmp_path):
    """`--levels 5-2` was no level at all, and evaluate wrote a report of n = 0 mixtures."""
    root = make_dataset(tmp_path / "ds")
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "r"), "--levels", "5-2", "--no-solo"])
    one_error_line(result, "--levels: expected", "'5-2'")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "0"], "--epochs"), (["--examples", "-5"], "--examples"), (["--batch-size", "0"], "--batch-size"),
    (["--max-notes-per-instrument", "0"], "--max-notes-per-instrument"), (["--valid-per-level", "0"], "--valid-per-level"),
    (["--valid-examples", "0"], "--valid-examples"), (["--aggregation-tracks", "0"], "--aggregation-tracks"),
    (["--learning-rate", "-1"], "--learning-rate must be a positive number"),
    (["--learning-rate", "nan"], "--learning-rate must be a positive number"),
])  # fmt: skip
def test_train_counts_under_one_and_a_rate_not_positive_are_refused_before_any_work(tmp_path, args, needle):
    """--epochs 0, --batch-size 0, --examples -5, --valid-examples 0 and --aggregation-tracks 0 were
    tracebacks (keras' decay_steps, a division by zero, numpy's concatenate of nothing) after the
    notes were loaded; --learning-rate -1 or nan trained and wrote a model."""
    root = make_dataset(tmp_path / "ds")
    result = runner.invoke(app, ["train", "--data", str(root), "--out", str(tmp_path / "m"), "--examples", "8",
                                 "--epochs", "1", *args])  # fmt: skip
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_mix_of_a_split_the_folder_lacks_names_it_and_the_splits_there_are(tmp_path):
    """`tagger dataset mix nsynth-valid OUT` takes --split test by default and said "level 2 needs
    2 families but the split has notes of only 0": which split, and the folder's own (valid), went
    unsaid (found this morning). It names the split, the folder's splits and --split."""
    root = make_dataset(tmp_path / "nsynth-valid")
    (root / "split.json").unlink()
    result = runner.invoke(app, mix_args(root, tmp_path / "mix"))
    one_error_line(result, str(root), "level 2 needs 2 families but the test split has notes of only 0",
                   "the dataset's splits: valid (10 notes): choose one with --split (e.g. --split valid)")
    assert not (tmp_path / "mix").exists()
    assert runner.invoke(app, mix_args(root, tmp_path / "mix", "--split", "valid")).exit_code == 0
    with pytest.raises(DatasetError, match=r"level 11 needs 11 families but the dataset has notes of only 10 \(none of: \)$"):
        M.draw_mixtures(nsynth.NoteDataset.load(root), levels=[11])


def test_evaluate_of_a_split_the_folder_lacks_names_it_and_the_splits_there_are(tmp_path):
    """`tagger evaluate nsynth-valid --out R` takes --split test by default and said "no notes of the
    known families in split 'test' (pick another split)", not which splits the folder has (a leftover
    of the fix to `dataset mix`). It names the dataset, the split and the folder's splits, as `dataset
    mix` does, before a model is loaded; an unknown --split names the folder's splits too."""
    root = make_dataset(tmp_path / "nsynth-valid")
    (root / "split.json").unlink()
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "rep"), "--models", str(tmp_path / "none")])
    one_error_line(result, f"{root}: no notes of the known families in split 'test'; the dataset's splits: valid "
                           "(10 notes): choose one with --split (e.g. --split valid)")  # fmt: skip
    assert not (tmp_path / "rep").exists()
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "rep"), "--acoustic-only"])
    one_error_line(result, "no acoustic notes of the known families in split 'test'; the dataset's splits: valid (10 notes)")
    for split, has in (("nsynth-valid", "valid"), ("split.json", "test")):
        if split == "split.json":
            root = make_dataset(tmp_path / "rendered")
        result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "rep"), "--split", "tset"])
        one_error_line(result, f"{root}: unknown split 'tset'; expected one of train, valid, test (the dataset's: {has})")
        result = runner.invoke(app, mix_args(root, tmp_path / "mix", "--split", "tset"))
        one_error_line(result, f"unknown split 'tset'; expected one of train, valid, test (the dataset's: {has})")


@pytest.mark.parametrize("name", ["nsynth-test", "plain"])
def test_an_empty_examples_json_is_refused_as_an_empty_dataset(tmp_path, name):
    """An examples.json of `{}` was 'the dataset has no split yet; run tagger dataset split first'
    (which split it, and evaluate then said 'no notes ... in split test'), or in a real NSynth
    folder's name a split of no notes: now one line naming the file and that it lists no notes,
    from evaluate, dataset mix and dataset split, before a model loads or a folder is made."""
    root = tmp_path / name
    (root / "audio").mkdir(parents=True)
    (root / "examples.json").write_text("{}")
    meta = str(root / "examples.json")
    for args in (["evaluate", str(root), "--out", str(tmp_path / "rep"), "--models", str(tmp_path)],
                 ["dataset", "mix", str(root), str(tmp_path / "mix")], ["dataset", "split", str(root)]):  # fmt: skip
        one_error_line(runner.invoke(app, args), meta, "lists no notes: the dataset is empty")
    assert not (tmp_path / "rep").exists() and not (tmp_path / "mix").exists() and not (root / "split.json").exists()


def test_the_split_suggested_is_one_split_takes_and_not_the_one_that_fell_short(tmp_path):
    """The hint of a split with too few notes suggested the dataset's largest split, whatever its
    name: `--split unused` for a split.json whose most notes are in an ablation's "unused" split,
    which --split then refused as unknown; and for `dataset mix`, the very split that had too few
    families. It suggests a split --split takes other than the one loaded, and none where there is
    none (the splits still listed with their notes)."""
    root = make_dataset(tmp_path / "rendered")
    assignment = json.loads((root / "split.json").read_text())
    for i, inst in enumerate(sorted(assignment["instruments"])):
        assignment["instruments"][inst] = "train" if i < 2 else "unused"
    (root / "split.json").write_text(json.dumps(assignment))
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "rep"), "--models", str(tmp_path / "none")])
    line = one_error_line(result, "no notes of the known families in split 'test'; the dataset's splits: train (2 notes), "
                                  "unused (8 notes): choose one with --split (e.g. --split train)")  # fmt: skip
    assert "--split unused" not in line
    result = runner.invoke(app, mix_args(root, tmp_path / "mix", "--split", "train", "--levels", "3"))
    line = one_error_line(result, "level 3 needs 3 families but the train split has notes of only 2")
    assert line.endswith("; the dataset's splits: train (2 notes), unused (8 notes)"), line
    result = runner.invoke(app, mix_args(root, tmp_path / "mix", "--split", "train"))  # (the split suggested is taken)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("inside", ["", "audio", "audio/../."])
def test_mix_into_the_note_datasets_own_folder_is_refused(tmp_path, inside):
    """`dataset mix ROOT ROOT` wrote labels.json beside examples.json (the folder both a note dataset and
    a mixture set: `evaluate ROOT` scored its notes, not the mixtures), `ROOT/audio` its levels among
    the notes; a folder under the dataset of its own is fine."""
    root = make_dataset(tmp_path / "ds")
    before = snapshot(root)
    out = root / inside if inside else root
    result = runner.invoke(app, ["dataset", "mix", str(root), str(out), "--levels", "1", "--per-level", "1"])
    one_error_line(result, "is the note dataset's folder or its audio/ folder")
    assert snapshot(root) == before
    result = runner.invoke(app, ["dataset", "mix", str(root), str(root / "mix"), "--levels", "1", "--per-level", "1"])
    assert result.exit_code == 0 and (root / "mix" / "labels.json").is_file(), result.output


def test_mix_never_overwrites_a_users_labels_json(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "music"
    out.mkdir()
    (out / "labels.json").write_text('{"my": "annotations"}')
    (out / "song.flac").write_bytes(b"fLaC...")
    before = snapshot(out)
    one_error_line(runner.invoke(app, mix_args(root, out)), str(out / "labels.json"), "not a mixture manifest")
    assert snapshot(out) == before  # nothing written, nothing removed


@pytest.mark.parametrize("link", [False, True])
def test_mix_never_overwrites_a_file_in_the_way_nor_writes_through_a_link(tmp_path, link):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "music"
    (out / "level01").mkdir(parents=True)
    mine = tmp_path / "my-recording.wav"
    mine.write_bytes(b"RIFF my recording")
    target = out / "level01" / "mix_01_0000.wav"
    target.symlink_to(mine) if link else target.write_bytes(mine.read_bytes())
    before = snapshot(out)
    one_error_line(runner.invoke(app, mix_args(root, out)), str(target), "already exists")
    assert snapshot(out) == before and mine.read_bytes() == b"RIFF my recording"


def test_mix_into_a_folder_of_other_files_leaves_them_alone(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "music"
    out.mkdir()
    (out / "song.flac").write_bytes(b"fLaC...")
    assert runner.invoke(app, mix_args(root, out)).exit_code == 0
    assert (out / "song.flac").read_bytes() == b"fLaC..."
    assert len(M.read_manifest(out)["mixtures"]) == 4


def listed_and_present(out):
    listed = sorted(rec["file"] for rec in M.read_manifest(out)["mixtures"])
    present = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    return listed, present


def test_a_second_mix_replaces_the_first_whole(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "mix"
    assert runner.invoke(app, ["dataset", "mix", str(root), str(out), "--levels", "1-3", "--per-level", "5"]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    assert runner.invoke(app, ["dataset", "mix", str(root), str(out), "--levels", "2", "--per-level", "2", "--seed", "3"]).exit_code == 0
    listed, present = listed_and_present(out)
    assert listed == present == ["level02/mix_02_0000.wav", "level02/mix_02_0001.wav"]  # no stale mixture of the first
    assert not (out / "level01").exists() and (out / "notes.txt").read_text() == "mine"
    manifest = M.read_manifest(out)
    assert manifest["seed"] == 3 and not (out / M.INCOMPLETE).exists()


def test_an_interrupted_mix_leaves_no_manifest_and_no_truncated_wav(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "mix"
    ds = nsynth.NoteDataset.load(root, split="test")
    M.write_mixtures(ds, out, per_level=4, levels=[1, 2], seed=0)
    real, calls = M.render_mixture, []

    def dies_on_the_fifth(rec):
        calls.append(rec)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(rec)

    monkeypatch.setattr(M, "render_mixture", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        M.write_mixtures(ds, out, per_level=4, levels=[1, 2], seed=1)
    # the earlier manifest is gone (its files are partly the new run's): nothing passes as a whole set
    assert not (out / M.MANIFEST).exists()
    with pytest.raises(DatasetError, match="interrupted"):
        M.read_manifest(out)
    result = runner.invoke(app, ["evaluate", str(out), "--out", str(tmp_path / "report")])
    one_error_line(result, "interrupted")
    assert not (tmp_path / "report").exists()
    for wav in out.rglob("mix_*.wav"):
        assert sf.info(wav).frames == C.WINDOW_SAMPLES  # every WAV under a mixture's name is whole
    monkeypatch.setattr(M, "render_mixture", real)
    M.write_mixtures(ds, out, per_level=3, levels=[1, 2], seed=1)  # a rerun takes the folder back
    listed, present = listed_and_present(out)
    assert listed == present and len(listed) == 6


def paused_in_a_thread(monkeypatch, module, name, run):
    """Start `run()` in a thread whose first call of `module.name` waits until released: a run held
    between two of its files. Returns (release, join); join() gives what the thread raised, if anything."""
    real, reached, go, raised = getattr(module, name), threading.Event(), threading.Event(), []
    worker = None

    def paused(*args, **kwargs):
        if threading.current_thread() is worker and not reached.is_set():
            reached.set()
            assert go.wait(30)
        return real(*args, **kwargs)

    def target():
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            raised.append(exc)

    monkeypatch.setattr(module, name, paused)
    worker = threading.Thread(target=target)
    worker.start()
    assert reached.wait(30)

    def join():
        go.set()
        worker.join(30)
        return raised[0] if raised else None

    return go.set, join


def test_two_mixes_into_one_folder_at_once_never_interleave(tmp_path, monkeypatch):
    """Two `tagger dataset mix` runs into one folder at the same time wrote each other's WAVs under
    one manifest: the second is refused while the first holds the folder, and writes nothing."""
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "mix"
    ds = nsynth.NoteDataset.load(root, split="test")
    release, join = paused_in_a_thread(
        monkeypatch, M, "render_mixture", lambda: M.write_mixtures(ds, out, per_level=2, levels=[1, 2], seed=0)
    )
    try:
        before = snapshot(out)
        with pytest.raises(UserError, match="another tagger dataset mix"):
            M.write_mixtures(ds, out, per_level=3, levels=[1, 2, 3], seed=5)
        line = one_error_line(runner.invoke(app, mix_args(root, out, "--seed", "5")), str(out), "another tagger dataset mix")
        assert f"process {os.getpid()}" in line
        assert snapshot(out) == before  # the refused runs touched nothing
    finally:
        assert join() is None
    manifest = M.read_manifest(out)
    listed, present = listed_and_present(out)
    assert manifest["seed"] == 0 and listed == present and len(listed) == 4
    assert not (out / ".tagger.lock").exists()  # a finished run leaves no lock file behind
    assert runner.invoke(app, mix_args(root, out, "--seed", "5")).exit_code == 0  # and the folder is free again


# --- mixture manifests ----------------------------------------------------------------------------


def test_a_manifest_never_makes_evaluate_read_outside_its_folder(tmp_path, outside_note):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "mix"
    M.write_mixtures(nsynth.NoteDataset.load(root, split="test"), out, per_level=1, levels=[1], seed=0)
    manifest = json.loads((out / "labels.json").read_text())
    for name in (str(outside_note), "../outside/secret.wav", "level01/../../outside/secret.wav"):
        manifest["mixtures"][0]["file"] = name
        (out / "labels.json").write_text(json.dumps(manifest))
        with pytest.raises(DatasetError, match="outside the mixture folder"):
            M.read_manifest(out)
        result = runner.invoke(app, ["evaluate", str(out), "--out", str(tmp_path / "report")])
        one_error_line(result, str(out / "labels.json"), "outside the mixture folder")


@pytest.mark.parametrize(
    "content,reason",
    [
        ({"mixtures": [1]}, "not an object"),
        ({"mixtures": "level01"}, "list of mixtures"),
        ({"mixtures": [], "families": "bass"}, "families"),
        ({"mixtures": [{"file": None, "label": "1"}]}, "not a file name"),
    ],
)
def test_a_malformed_manifest_is_one_clear_error(tmp_path, content, reason):
    (tmp_path / "labels.json").write_text(json.dumps(content))
    with pytest.raises(DatasetError, match=reason):
        M.read_manifest(tmp_path)


def _never_loaded():
    raise AssertionError("a manifest that cannot be scored must be refused before the model loads")


@pytest.mark.parametrize(
    "mixture,reason",
    [
        ({"file": "a.wav"}, "mixture 'a.wav' has no label"),
        ({"file": "a.wav", "label": "11000"}, "has label '11000', expected a bit string of 10 characters"),
        ({"file": "a.wav", "label": "1100000000", "level": 3}, "has level 3 but its label '1100000000' names 2 families"),
        ({"file": "a.wav", "label": "1100000000", "level": -1}, "has level -1 but its label"),
        ({"file": "a.wav", "label": "1100000000", "level": 2.0}, "has level 2.0, expected a whole number"),
    ],
)
def test_a_mixture_whose_label_cannot_be_scored_is_refused_naming_the_manifest_and_the_mixture(tmp_path, mixture, reason):
    """A hand-made labels.json's mixture without a label ended `tagger evaluate` in a KeyError
    traceback once the model had loaded, and one whose level was not its label's count of families
    (3 for a label of 2, or -1) was scored silently in that level's row, beside the paper's number for
    it (found red-teaming evaluate on hand-made manifests). Each is refused before the model loads,
    in one line naming labels.json and the mixture."""
    folder = tmp_path / "mine"
    folder.mkdir()
    sf.write(folder / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE), C.SAMPLE_RATE)
    (folder / "labels.json").write_text(json.dumps({"mixtures": [mixture]}))
    with pytest.raises(DatasetError, match=reason):
        R.evaluate(folder, out_dir=tmp_path / "report", scorer=_never_loaded, plots=False)
    one_error_line(runner.invoke(app, ["evaluate", str(folder), "--out", str(tmp_path / "report")]),
                   str(folder / "labels.json"), reason)  # fmt: skip
    assert not (tmp_path / "report").exists()
    families = ["bass", "bass", *FAMILIES[2:]]  # (one bit would stand for two families)
    (folder / "labels.json").write_text(json.dumps({"families": families, "mixtures": [{"file": "a.wav", "label": "1" * 10}]}))
    with pytest.raises(DatasetError, match="families names 'bass' twice"):
        M.read_manifest(folder)


# --- evaluate --out ---------------------------------------------------------------------------


class Scorer:
    families = FAMILIES
    thresholds = np.full(len(FAMILIES), 0.5, dtype=np.float32)

    def __init__(self, fail_after=None):
        self.calls = 0
        self.fail_after = fail_after

    def predict(self, windows):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return np.full((len(windows), len(FAMILIES)), 0.1, dtype=np.float32)


@pytest.fixture
def mixtures(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "mix"
    M.write_mixtures(nsynth.NoteDataset.load(root, split="test"), out, per_level=2, levels=[0, 1, 2], seed=0)
    return out


def no_model():
    raise AssertionError("the model must not be loaded when --out cannot take the report")


def test_evaluate_out_that_is_a_file_is_refused_before_the_model_loads(tmp_path, mixtures):
    out = tmp_path / "notes.txt"
    out.write_text("precious")
    with pytest.raises(UserError, match="not a folder"):
        R.evaluate(mixtures, out_dir=out, scorer=no_model, plots=False)
    result = runner.invoke(app, ["evaluate", str(mixtures), "--out", str(out)])
    one_error_line(result, str(out), "not a folder")
    with pytest.raises(UserError, match="not a folder"):
        R.evaluate(mixtures, out_dir=out / "sub", scorer=no_model, plots=False)
    assert out.read_text() == "precious"


def test_evaluate_never_overwrites_a_users_report_md(tmp_path, mixtures):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.md").write_text("my thesis")
    with pytest.raises(UserError, match="report.md"):
        R.evaluate(mixtures, out_dir=docs, scorer=no_model, plots=False)
    assert snapshot(docs) == {"report.md": b"my thesis"}
    # a folder of other files takes a report, and a rerun replaces the earlier report
    (docs / "report.md").rename(docs / "thesis.md")
    R.evaluate(mixtures, out_dir=docs, scorer=Scorer(), plots=False)
    R.evaluate(mixtures, out_dir=docs, scorer=Scorer(), plots=False)
    assert (docs / "thesis.md").read_text() == "my thesis" and (docs / "report.json").is_file()


def test_an_interrupted_evaluate_leaves_no_report_beside_new_predictions(tmp_path, mixtures):
    out = tmp_path / "report"
    R.evaluate(mixtures, out_dir=out, scorer=Scorer(), plots=False, batch_size=2)
    assert (out / "report.json").is_file()
    with pytest.raises(KeyboardInterrupt):
        R.evaluate(mixtures, out_dir=out, scorer=Scorer(fail_after=1), plots=False, batch_size=2)
    assert (out / "report.json").is_file()  # stopped while scoring: the earlier report is still whole

    import tagger.evaluate.protocols as P

    real = P.Predictions.save

    def half_written(self, path):
        path.write_bytes(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    P.Predictions.save = half_written
    try:
        with pytest.raises(KeyboardInterrupt):
            R.evaluate(mixtures, out_dir=out, scorer=Scorer(), plots=False)
    finally:
        P.Predictions.save = real
    assert not (out / "report.json").exists() and not (out / "report.md").exists()
    R.evaluate(mixtures, out_dir=out, scorer=Scorer(), plots=False)  # and a rerun writes it again
    assert (out / "report.json").is_file()


def test_two_evaluations_into_one_out_folder_at_once_are_refused_not_interleaved(tmp_path, monkeypatch, mixtures):
    """Two `tagger evaluate --out DIR` runs at the same time wrote one's predictions beside the
    other's report: the second is refused, before its model loads, while the first holds DIR."""
    import tagger.evaluate.protocols as P

    out = tmp_path / "report"
    release, join = paused_in_a_thread(
        monkeypatch, P, "_read_mixture_windows", lambda: R.evaluate(mixtures, out_dir=out, scorer=Scorer(), plots=False)
    )
    try:
        before = snapshot(out)
        with pytest.raises(UserError, match="another tagger evaluate"):
            R.evaluate(mixtures, out_dir=out, scorer=no_model, plots=False)
        one_error_line(runner.invoke(app, ["evaluate", str(mixtures), "--out", str(out)]), str(out), "another tagger evaluate")
        assert snapshot(out) == before
    finally:
        assert join() is None
    assert (out / "report.json").is_file() and not (out / ".tagger.lock").exists()

    def missing_model():
        raise UserError("no model here")

    with pytest.raises(UserError, match="no model here"):  # a run that fails before writing leaves no folder
        R.evaluate(mixtures, out_dir=tmp_path / "never", scorer=missing_model, plots=False)
    assert not (tmp_path / "never").exists()


def test_a_hand_made_mixture_manifest_without_families_is_read_in_the_papers_family_order(tmp_path):
    """README's "a hand-made `labels.json`": one without `families` (`tagger dataset mix` writes
    them; a user's own need not) stopped the evaluation at its first label, `a label bit string has
    0 characters of 0/1, got '1000000000'`, the labels read over no family at all. Found evaluating a
    hand-made folder as the README describes it. Its bit strings are read over the ten families in
    the paper's order (Table I), as `to_bits` writes them."""
    folder = tmp_path / "mine"
    folder.mkdir()
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * C.SAMPLE_RATE) / C.SAMPLE_RATE)
    for name in ("bass.wav", "bass-vocal.wav", "none.wav"):
        sf.write(folder / name, tone if name != "none.wav" else 0 * tone, C.SAMPLE_RATE)
    labels = {"bass.wav": "1000000000", "bass-vocal.wav": "1000000001", "none.wav": "0000000000"}
    (folder / "labels.json").write_text(json.dumps({"mixtures": [{"file": f, "label": b} for f, b in labels.items()]}))
    report = R.evaluate(folder, out_dir=tmp_path / "report", scorer=Scorer(), plots=False)
    predictions = report.polyphony.predictions
    assert predictions.ids == list(labels) and predictions.levels.tolist() == [1, 2, 0]
    assert predictions.truth[1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert M.read_manifest(folder)["families"] == list(FAMILIES)
    bad = {"mixtures": [{"file": "bass.wav", "label": "10"}]}
    (folder / "labels.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="mixture 'bass.wav' has label '10', expected a bit string of 10 characters of 0/1"):
        R.evaluate(folder, out_dir=tmp_path / "report2", scorer=Scorer(), plots=False)


def test_a_mixture_shorter_than_the_window_is_evaluated_padded_and_the_report_names_it(tmp_path, mixtures):
    """A hand-made manifest's WAV shorter than 4 s was padded with silence without a word: it is still
    scored padded (as a scan pads a track's last window), and the report counts and names it."""
    short = mixtures / "level01" / "mix_01_0000.wav"
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * C.SAMPLE_RATE)) / C.SAMPLE_RATE)
    sf.write(short, tone, C.SAMPLE_RATE, subtype="FLOAT")
    seen = []

    class Recording(Scorer):
        def predict(self, windows):
            seen.extend(windows)
            return super().predict(windows)

    report = R.evaluate(mixtures, out_dir=tmp_path / "report", scorer=Recording(), plots=False)
    window = seen[report.polyphony.predictions.ids.index("level01/mix_01_0000.wav")]
    assert np.allclose(window[: len(tone)], tone, atol=1e-6) and not window[len(tone) :].any()  # padded with silence
    padded = json.loads((tmp_path / "report" / "report.json").read_text())["polyphony"]["source"]["padded"]
    assert padded == {"count": 1, "window_seconds": C.WINDOW_SECONDS, "files": [{"file": "level01/mix_01_0000.wav", "seconds": 1.5}]}
    assert "1 mixture(s) shorter than the 4 s window were evaluated padded with silence" in (tmp_path / "report" / "report.md").read_text()
    assert "`level01/mix_01_0000.wav` (1.5 s)" in (tmp_path / "report" / "report.md").read_text()
    assert json.loads((tmp_path / "report" / "report.json").read_text())["polyphony"]["source"]["cut"]["count"] == 0

    long = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(6.5 * C.SAMPLE_RATE)) / C.SAMPLE_RATE)
    sf.write(short, long, C.SAMPLE_RATE, subtype="FLOAT")  # longer than the window: was scored on 4 s without a word
    R.evaluate(mixtures, out_dir=tmp_path / "report-long", scorer=Scorer(), plots=False)
    source = json.loads((tmp_path / "report-long" / "report.json").read_text())["polyphony"]["source"]
    assert source["cut"] == {"count": 1, "window_seconds": C.WINDOW_SECONDS, "files": [{"file": "level01/mix_01_0000.wav", "seconds": 6.5}]}
    assert source["padded"]["count"] == 0
    text = (tmp_path / "report-long" / "report.md").read_text()
    assert "1 mixture(s) longer than the 4 s window were scored on their first window only:** `level01/mix_01_0000.wav` (6.5 s)" in text

    sf.write(short, np.zeros(0), C.SAMPLE_RATE, subtype="PCM_16")  # no audio at all: refused, named
    with pytest.raises(AudioReadError, match="holds no audio") as exc:
        R.evaluate(mixtures, out_dir=tmp_path / "report2", scorer=Scorer(), plots=False)
    assert str(short) in str(exc.value)


def test_saved_predictions_are_written_whole_or_not_at_all(tmp_path, monkeypatch, mixtures):
    out = tmp_path / "report"
    report = R.evaluate(mixtures, out_dir=out, scorer=Scorer(), plots=False)
    path = out / R.POLYPHONY_PREDICTIONS
    before = path.read_bytes()

    def dies(file, **arrays):  # killed with a part of the archive written
        if hasattr(file, "write"):
            file.write(b"PK\x03\x04 half")
        else:
            open(file if str(file).endswith(".npz") else f"{file}.npz", "wb").write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", dies)
    with pytest.raises(KeyboardInterrupt):
        report.polyphony.predictions.save(path)
    assert path.read_bytes() == before


def test_render_into_a_folder_of_a_users_files_is_refused_before_anything_is_written(tmp_path):
    """`tagger dataset render OUT` writes render.json, split.json and audio/*.wav into OUT: pointed at
    a folder of other files (a music folder, a typo) it overwrote a user's files of those names."""
    music = tmp_path / "music"
    (music / "audio").mkdir(parents=True)
    (music / "split.json").write_text("mine")
    (music / "audio" / "song.wav").write_bytes(b"RIFF mine")
    before = sorted((p.relative_to(music), p.read_bytes()) for p in music.rglob("*") if p.is_file())
    r = CliRunner().invoke(app, ["dataset", "render", str(music), "--no-stk", "--no-salamander", "--no-sample-negatives",
                                 "--pitch-step", "127"])  # fmt: skip
    assert r.exit_code == 1
    assert str(music) in r.output and "no examples.json" in r.output and "Traceback" not in r.output
    assert sorted((p.relative_to(music), p.read_bytes()) for p in music.rglob("*") if p.is_file()) == before
    (tmp_path / "file").write_text("x")
    r = CliRunner().invoke(app, ["dataset", "render", str(tmp_path / "file"), "--no-soundfonts", "--no-stk",
                                 "--no-salamander", "--no-sample-negatives"])  # fmt: skip
    assert r.exit_code == 1 and "not a folder" in r.output and (tmp_path / "file").read_text() == "x"


def test_two_renders_into_one_folder_at_once_are_refused_not_interleaved(tmp_path):
    """`dataset render` had no lock on its folder (as `dataset mix` and `evaluate --out` had none):
    two renders at once wrote examples.json and the audio of both. The second is refused now, in one
    line naming the folder, and writes nothing; once the first is done, the folder takes a render."""
    from tagger.outputs import LOCK_NAME, folder_lock

    out = tmp_path / "ds"
    out.mkdir()
    piano = tmp_path / "package" / "audio" / "C4v10.ogg"  # (one source: a Salamander piano of one sample)
    piano.parent.mkdir(parents=True)
    sf.write(piano, 0.5 * np.sin(2 * np.pi * 261.63 * np.arange(48_000) / 48_000), 48_000)
    args = ["dataset", "render", str(out), "--no-soundfonts", "--no-stk", "--salamander", str(tmp_path / "package"),
            "--no-sample-negatives"]  # fmt: skip
    with folder_lock(out, what="tagger dataset render"):  # (a render in progress)
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert f"{out}: another tagger dataset render (process {os.getpid()}) is writing into this folder" in r.output
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert not any(out.iterdir())  # (the lock file goes with the run that held it)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "another tagger dataset render" not in r.output and LOCK_NAME not in {p.name for p in out.iterdir()}


@pytest.mark.parametrize("how", ["every source off", "not a SoundFont", "no SoundFont file", "an empty piano folder"])
def test_a_render_with_nothing_to_render_says_so_and_leaves_no_folder_behind(tmp_path, how):
    """With every source turned off, `dataset render` made its folder and then said "examples.json is
    missing" (the split of an empty dataset); given a --soundfont that is not one, it left the folder
    with an empty audio/ behind (found this morning). Both are refused before the folder is made, and
    a folder the render made and left empty (a source failing later) is removed; one there before
    stays."""
    (tmp_path / "text.sf2").write_text("not a SoundFont")
    (tmp_path / "piano").mkdir()
    off = ["--no-stk", "--no-salamander", "--no-sample-negatives"]
    args, needle = {
        "every source off": (["--no-soundfonts", *off], "nothing to render, every source is off: the SoundFonts "
                             "(--no-soundfonts), STK (--no-stk), the Salamander Grand Piano (--no-salamander), the "
                             "negative samples (--no-sample-negatives); nothing was written"),
        "not a SoundFont": (["--soundfont", str(tmp_path / "text.sf2"), *off], f"{tmp_path / 'text.sf2'}: not a SoundFont"),
        "no SoundFont file": (["--soundfont", str(tmp_path / "no.sf2"), *off], f"{tmp_path / 'no.sf2'}: cannot read the SoundFont"),
        "an empty piano folder": (["--no-soundfonts", "--no-stk", "--salamander", str(tmp_path / "piano"),
                                   "--no-sample-negatives"], "no Salamander samples"),
    }[how]  # fmt: skip
    out = tmp_path / "new" / "ds"
    one_error_line(runner.invoke(app, ["dataset", "render", str(out), *args]), needle)
    assert not (tmp_path / "new").exists()
    out.mkdir(parents=True)  # (a folder there before, empty: kept as it was)
    one_error_line(runner.invoke(app, ["dataset", "render", str(out), *args]), needle)
    assert out.is_dir() and not any(out.iterdir())


@pytest.mark.parametrize("args,needle,code", [
    (["--velocities", "x"], "--velocities: expected comma-separated whole numbers", 1),
    (["--velocities", "0,200"], "--velocities: expected MIDI velocities of a note played (1-127)", 1),
    (["--pitch-step", "0"], "--pitch-step", 2),
])  # fmt: skip
def test_render_options_out_of_range_are_refused_before_the_folder_is_made(tmp_path, args, needle, code):
    """--velocities x was a ValueError traceback once the output folder had been made (left empty
    behind it); velocities 0 (a note-off) or 200 and --pitch-step 0 were not checked."""
    out = tmp_path / "new"
    result = runner.invoke(app, ["dataset", "render", str(out), "--no-soundfonts", "--no-stk", "--no-salamander",
                                 "--no-sample-negatives", *args])  # fmt: skip
    assert result.exit_code == code and isinstance(result.exception, SystemExit), result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_render_takes_an_empty_folder_or_a_dataset_to_add_to(tmp_path):
    from tagger.data.examples import check_render_folder

    check_render_folder(tmp_path / "new")  # missing
    (tmp_path / "empty").mkdir()
    check_render_folder(tmp_path / "empty")
    (tmp_path / "ds" / "audio").mkdir(parents=True)
    (tmp_path / "ds" / "examples.json").write_text("{}")
    check_render_folder(tmp_path / "ds")


@pytest.mark.parametrize("kind", ["notes", "link", "fifo"])
def test_a_users_own_tagger_lock_file_in_an_output_folder_is_never_overwritten_or_removed(tmp_path, kind):
    """was: `dataset mix`/`render` and `evaluate --out` opened `<folder>/.tagger.lock` whatever it
    was, wrote their PID over it (through a symbolic link too) and removed it when done: a user's
    file of that name was lost. Now refused in one line naming it, the folder untouched; a lock file
    tagger left (empty, or a PID) is taken as before."""
    from tagger.outputs import LOCK_NAME

    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "music"
    out.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a lock\n")
    lock = out / LOCK_NAME
    if kind == "notes":
        lock.write_text("12 bars of blues\n")
    elif kind == "link":
        lock.symlink_to(notes)
    else:
        os.mkfifo(lock)
    why = {"notes": "it holds 17 bytes of other data", "link": "it is a symbolic link", "fifo": "it is not a regular file"}
    before = snapshot(out)
    one_error_line(runner.invoke(app, mix_args(root, out)), f"{lock} exists and is not tagger's lock ({why[kind]})",
                   "left untouched")  # fmt: skip
    assert notes.read_text() == "my notes, not a lock\n"
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME] and lock.is_symlink() == (kind == "link")
    if kind != "fifo":
        assert snapshot(out) == before
    lock.unlink()
    lock.write_text("4242\n")  # (a lock a killed run left: taken, then removed as the run ends)
    result = runner.invoke(app, mix_args(root, out))
    assert result.exit_code == 0, result.output
    assert (out / "labels.json").exists() and not lock.exists()


def test_a_dataset_and_mixtures_whose_names_are_not_utf8_are_read_mixed_and_reported(tmp_path):
    """A note dataset in a folder whose name is not UTF-8 (a Latin-1 ``nsynth-caf\\xe9``) ended
    `tagger evaluate` in a UnicodeEncodeError traceback at its first note (soundfile encodes a str
    name as UTF-8, strictly), `dataset mix` into such a folder the same at its first WAV, and a
    report naming such a folder or a short mixture of such a name stopped writing report.md (a
    lone surrogate written as UTF-8), leaving the folder marked incomplete (found red-teaming the
    NSynth reader with non-UTF-8 names). Each is read and written; report.md shows the names with
    ``\\xNN`` escapes."""
    latin = os.fsdecode(b"caf\xe9")
    root = make_dataset(tmp_path / "ds").rename(tmp_path / f"nsynth-{latin}")
    report = R.evaluate(root, out_dir=tmp_path / "report", scorer=Scorer(), per_level=1, levels=[0, 1], plots=False)
    assert report.solo.predictions.ids and not (tmp_path / "report" / R.INCOMPLETE).exists()
    assert "nsynth-caf\\xe9" in (tmp_path / "report" / R.REPORT_MD).read_text(encoding="utf-8")
    out = tmp_path / f"mix-{latin}"
    M.write_mixtures(nsynth.NoteDataset.load(root, split="test"), out, per_level=1, levels=[1], seed=0)
    assert sf.info(os.fsencode(out / "level01" / "mix_01_0000.wav")).frames == C.WINDOW_SAMPLES
    sf.write(os.fsencode(out / f"{latin}.wav"), np.zeros(C.SAMPLE_RATE), C.SAMPLE_RATE)  # a short mixture of such a name
    manifest = json.loads((out / "labels.json").read_text())
    manifest["mixtures"].append({"file": f"{latin}.wav", "level": 0, "label": "0" * 10})
    (out / "labels.json").write_text(json.dumps(manifest))
    R.evaluate(out, out_dir=tmp_path / "report2", scorer=Scorer(), plots=False)
    assert "`caf\\xe9.wav` (1 s)" in (tmp_path / "report2" / R.REPORT_MD).read_text(encoding="utf-8")


def test_dataset_render_reads_and_writes_notes_under_names_not_utf8(tmp_path, monkeypatch):
    """766dd9b gave soundfile the name's bytes in the note reader and the mixture writer, not where
    `dataset render` reads a sample and writes its notes: a render into a folder whose name is not
    UTF-8 (or of samples under such a name) ended in a UnicodeEncodeError traceback at its first
    note (found reviewing 766dd9b's soundfile call sites). Each is read and written."""
    from tagger.data import gm
    from tagger.data import render as RD
    from tagger.data import samples as S

    latin = os.fsdecode(b"caf\xe9")
    src, audio_dir = tmp_path / f"in-{latin}", tmp_path / f"out-{latin}"
    src.mkdir(), audio_dir.mkdir()
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE)
    sf.write(os.fsencode(src / f"{latin}.wav"), tone, C.SAMPLE_RATE)
    note = S.SampleNote(src / f"{latin}.wav", "keyboard_acoustic_x", "keyboard", "acoustic", "x", 57, 100, "057-100")
    rows, dropped = S._write_notes(([note], audio_dir))
    assert len(rows) == 1 and not dropped
    assert sf.info(os.fsencode(audio_dir / f"{note.note_str}.wav")).frames == C.WINDOW_SAMPLES
    flute = next(p for p in gm.all_programs() if p.name == "flute")
    monkeypatch.setattr(RD, "render_notes", lambda *a, **k: np.tile(tone.astype(np.float32), (1, 1)))
    rows = RD._render_program(RD._RenderJob("gm", tmp_path / "gm.sf2", flute, [RD.NoteSpec(72, 100)], audio_dir, 0.5))
    assert [sf.info(os.fsencode(audio_dir / f"{r['note_str']}.wav")).frames for r in rows] == [C.WINDOW_SAMPLES]


def test_a_mixture_folder_without_the_levels_asked_is_refused_before_the_model_loads(tmp_path, mixtures):
    """`evaluate MIXFOLDER --levels 7` said `the mixture manifest has no mixtures at the requested
    levels` once the model had loaded, naming neither labels.json nor the levels it has (found
    red-teaming evaluate on a dataset mix folder): refused before, naming both."""
    with pytest.raises(DatasetError, match=r"labels.json: the mixture manifest has no mixtures at level\(s\) 7-8; "
                                           r"its mixtures are of level\(s\) 0-2"):  # fmt: skip
        R.evaluate(mixtures, out_dir=tmp_path / "report", scorer=_never_loaded, levels=[7, 8], plots=False)
    (mixtures / "labels.json").write_text(json.dumps({"mixtures": []}))
    with pytest.raises(DatasetError, match="has no mixtures at all"):
        R.evaluate(mixtures, out_dir=tmp_path / "report", scorer=_never_loaded, plots=False)
    assert not (tmp_path / "report").exists()


def test_json_nested_thousands_deep_is_one_clear_error(tmp_path):
    """An examples.json, split.json or labels.json of `[[[[...` nested 100,000 deep ended `evaluate`
    and `dataset mix` in a RecursionError traceback (Python's JSON parser gives up), and so did a
    report.json of that kind in the --out folder (found red-teaming the NSynth reader with hostile
    JSON). The first three are an error naming the file; the report.json is no earlier report."""
    from tagger.data.examples import read_examples, rendered_soundfonts

    deep = "[" * 100_000 + "]" * 100_000
    root = make_dataset(tmp_path / "ds")
    for name in ("split.json", "examples.json"):
        good = (root / name).read_text()
        (root / name).write_text(deep)
        with pytest.raises(DatasetError, match="nested too deeply"):
            nsynth.NoteDataset.load(root, split="test")
        one_error_line(runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "r")]), str(root / name), "nested too deeply")
        (root / name).write_text(good)
    with pytest.raises(DatasetError, match="cannot add to this dataset"):
        (tmp_path / "examples.json").write_text(deep)
        read_examples(tmp_path / "examples.json")
    (tmp_path / "render.json").write_text(deep)
    assert rendered_soundfonts(tmp_path) == {}  # (an earlier render's SoundFonts: none)
    mixtures = tmp_path / "mix"
    M.write_mixtures(nsynth.NoteDataset.load(root, split="test"), mixtures, per_level=1, levels=[1], seed=0)
    (mixtures / "labels.json").write_text(deep)
    with pytest.raises(DatasetError, match="nested too deeply"):
        M.read_manifest(mixtures)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(deep)
    with pytest.raises(UserError, match="holds report.json but no earlier tagger report"):
        R.evaluate(root, out_dir=out, scorer=_never_loaded, plots=False)


def test_a_mixture_of_nan_samples_is_refused_as_predict_refuses_it(tmp_path, mixtures):
    """A mixture folder's float WAV of NaN samples was scored as silence (audio.load stopped at the
    window's end, before the stream's own check of them), so a level-0 clip of NaN counted as a
    right answer, where `tagger predict` refuses the file (found red-teaming evaluate with a float
    WAV of NaN). It is refused naming the file, as predict does, also where the NaN lie beyond the
    window; a few (up to 1%) are taken as silence, as a scan takes them."""
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * C.WINDOW_SAMPLES) / C.SAMPLE_RATE)
    clip = mixtures / "level00" / "mix_00_0000.wav"
    for where, refused in ((slice(0, C.WINDOW_SAMPLES), True), (slice(C.WINDOW_SAMPLES, None), True), (slice(0, 100), False)):
        broken = tone.copy()
        broken[where] = np.nan
        sf.write(clip, broken, C.SAMPLE_RATE, subtype="FLOAT")
        if refused:
            with pytest.raises(AudioReadError, match="of its samples are NaN or infinite: not analysed"):
                R.evaluate(mixtures, out_dir=tmp_path / "report", scorer=Scorer(), plots=False)
        else:
            R.evaluate(mixtures, out_dir=tmp_path / "report", scorer=Scorer(), plots=False)

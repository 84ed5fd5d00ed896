"""`tagger tag --from-json`: the rows of a `tagger predict --json` file are checked, every one,
before any music file is touched; a bad row is that row's error (JSON file, line, reason), the
good rows are written; only what `predict` could have written, for the file as it is now."""

from __future__ import annotations

import json
import os

import pytest
from conftest import predicted, tone_signal, write_audio
from typer.testing import CliRunner

from tagger import tags
from tagger.cli import app


def _song(path):
    return write_audio(path, tone_signal([220.0], seconds=1.0))


def _row(song, **change) -> dict:
    """A row as `tagger predict --json` writes it for ``song`` as it is now (``...``: a key left out)."""
    row = predicted(os.path.abspath(song), instruments=["bass"], scores={"bass": 0.9, "vocal": 0.1}, windows=1,
                    model_version="m-1")  # fmt: skip
    row.update(change)
    return {k: v for k, v in row.items() if v is not ...}


def _lines(path, *rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _tag(rows_file, *args):
    return CliRunner().invoke(app, ["tag", "--from-json", str(rows_file), "--settle-seconds", "0", *args])


def _untouched(*songs) -> bool:
    return not any(tags.read_instruments(s).tagged for s in songs)


BAD_ROWS = [
    ({"instruments": "bass"}, "'instruments' is a list of family names"),
    ({"instruments": {"bass": 1}}, "'instruments' is a list of family names"),
    ({"instruments": None}, "'instruments' is a list of family names"),
    ({"instruments": [""]}, "unknown instrument family ''"),
    ({"instruments": ["gui\x00tar"]}, "unknown instrument family 'gui\\x00tar'"),
    ({"instruments": ["kazoo"], "scores": {"kazoo": 0.9}}, "unknown instrument family 'kazoo'"),
    ({"scores": {"bass": 0.9, "kazoo": 0.5}}, "a score for the unknown family 'kazoo'"),
    ({"scores": {"vocal": 0.1}}, "no score for bass"),
    ({"scores": {"bass": float("nan")}}, "a score is a number from 0 to 1, got bass=NaN"),
    ({"scores": {"bass": 1e999}}, "got bass=Infinity"),
    ({"scores": {"bass": 1.5}}, "got bass=1.5"),
    ({"scores": {"bass": -0.1}}, "got bass=-0.1"),
    ({"scores": {"bass": True}}, "got bass=true"),
    ({"scores": {"bass": "0.9"}}, 'got bass="0.9"'),
    ({"scores": [["bass", 0.9]]}, "'scores' is an object of family: score"),
    ({"scores": {"bass": 0.9, "Bass ": 0.2}}, "two different scores for the family 'bass'"),
    ({"path": 5}, "'path' is a file name (a non-empty text without NUL), got 5"),
    ({"path": None}, "'path' is a file name (a non-empty text without NUL), got null"),
    ({"path": ""}, "'path' is a file name"),
    ({"path": "/music/a\x00.flac"}, "'path' is a file name"),
    ({"size": 1e999}, "'size' is a whole number of bytes"),
    ({"size": True}, "'size' is a whole number of bytes"),
    ({"mtime": "yesterday"}, "'mtime' is a time in seconds"),
    ({"model_version": 7}, "'model_version' is a text"),
    ({"ctime_ns": 1.5}, "'ctime_ns' is a whole number of nanoseconds, got 1.5"),
    ({"content_hash": "ABC"}, "'content_hash' is 32 hex digits, got \"ABC\""),
]


@pytest.mark.parametrize("change, says", BAD_ROWS, ids=[f"{i}-{next(iter(c))}" for i, (c, _) in enumerate(BAD_ROWS)])
def test_a_bad_row_is_its_own_error_and_the_good_rows_are_written(tmp_path, change, says):
    good, bad = _song(tmp_path / "good.flac"), _song(tmp_path / "bad.flac")
    before = bad.read_bytes()
    rows = _lines(tmp_path / "found.jsonl", _row(good), _row(bad, **change))
    result = _tag(rows, "--scores")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    (line,) = [x for x in result.output.splitlines() if "line 2" in x]
    assert line.startswith(f"tagger: skipped {rows} line 2: ") and says in line, line
    assert "1 tagged, 0 unchanged, 1 skipped" in result.output
    assert bad.read_bytes() == before
    assert tags.read_instruments(good).instruments == ["bass"]


@pytest.mark.parametrize("text, says", [
    ("[" * 100_000, "not a JSON object"),
    ('{"path": "a", "size": ' + "9" * 5000 + "}", "not a JSON object"),
    ("# a comment", "not a JSON object"),
    ('["a.flac", ["bass"]]', "not a JSON object"),
    (b'{"path": "\xe9.flac"}', "not UTF-8"),
    ('{"path": "a.flac", "instruments": ["bass"], "sco', "not a JSON object"),
])  # fmt: skip
def test_a_line_that_is_not_a_row_is_named_and_nothing_else_stops(tmp_path, text, says):
    good = _song(tmp_path / "good.flac")
    rows = tmp_path / "found.jsonl"
    rows.write_bytes(json.dumps(_row(good)).encode() + b"\n" + (text if isinstance(text, bytes) else text.encode()))
    result = _tag(rows)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [x for x in result.output.splitlines() if "line 2" in x]
    assert line.startswith(f"tagger: skipped {rows} line 2: ") and says in line, line
    assert "1 tagged, 0 unchanged, 1 skipped" in result.output


def test_a_line_of_100_mb_is_refused_without_being_parsed(tmp_path):
    good = _song(tmp_path / "good.flac")
    rows = tmp_path / "found.jsonl"
    with open(rows, "wb") as f:
        f.write(b'{"path": "' + b"a" * 100_000_000 + b'"}\n')
        f.write(json.dumps(_row(good)).encode() + b"\n")
    result = _tag(rows)
    assert result.exit_code == 1, result.output
    assert f"tagger: skipped {rows} line 1: a line of more than 1 MiB" in result.output
    assert "1 tagged, 0 unchanged, 1 skipped" in result.output


def test_bom_crlf_and_blank_lines_are_read(tmp_path):
    a, b = _song(tmp_path / "a.flac"), _song(tmp_path / "b.flac")
    rows = tmp_path / "found.jsonl"
    rows.write_bytes(b"\xef\xbb\xbf" + json.dumps(_row(a)).encode() + b"\r\n\r\n   \r\n" + json.dumps(_row(b)).encode())
    result = _tag(rows)
    assert result.exit_code == 0, result.output
    assert "2 tagged, 0 unchanged, 0 skipped" in result.output


def test_a_wrong_score_never_leaves_the_batch_half_written(tmp_path):
    """A score out of range was found only when its file was written: the files of the rows before
    it were tagged, the rest not, and the run ended with an error naming neither file nor line."""
    songs = [_song(tmp_path / f"{i}.flac") for i in range(3)]
    rows = _lines(tmp_path / "found.jsonl", _row(songs[0]), _row(songs[1], scores={"bass": 1.5}), _row(songs[2]))
    result = _tag(rows, "--scores")
    assert result.exit_code == 1, result.output
    assert f"tagger: skipped {rows} line 2: {songs[1]}: a score is a number from 0 to 1, got bass=1.5" in result.output
    assert "2 tagged, 0 unchanged, 1 skipped" in result.output
    assert _untouched(songs[1]) and tags.read_instruments(songs[2]).instruments == ["bass"]


def test_when_no_row_is_good_it_is_one_error_and_no_file_is_touched(tmp_path):
    song = _song(tmp_path / "a.flac")
    rows = _lines(tmp_path / "found.jsonl", _row(song, instruments=["kazoo"]), "not json")
    result = _tag(rows)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [x for x in result.output.splitlines() if x.startswith("tagger: error:")]
    assert errors == [f"tagger: error: {rows} line 1: {song}: unknown instrument family 'kazoo'; known families: "
                      f"bass, brass, flute, guitar, keyboard, mallet, organ, reed, string, vocal (and 1 more bad line)"]
    assert _untouched(song)


@pytest.mark.parametrize("alias", ["same", "dot", "symlink", "hardlink"])
def test_two_rows_for_one_file_with_other_results_write_neither(tmp_path, monkeypatch, alias):
    """The same file twice with different results (a predict run appended to an older one, two
    names of one file): the last row won, without a word; which one is right cannot be told."""
    song = _song(tmp_path / "a.flac")
    monkeypatch.chdir(tmp_path)
    other = {"same": str(song), "dot": "./a.flac", "symlink": str(tmp_path / "link.flac"),
             "hardlink": str(tmp_path / "hard.flac")}[alias]  # fmt: skip
    if alias == "symlink":
        os.symlink(song, other)
    elif alias == "hardlink":
        os.link(song, other)
    good = _song(tmp_path / "good.flac")
    rows = _lines(tmp_path / "found.jsonl", _row(song), _row(good), _row(song, path=other, instruments=["vocal"],
                                                                         scores={"vocal": 0.8, "bass": 0.2}))  # fmt: skip
    result = _tag(rows)
    assert result.exit_code == 1, result.output
    assert f"tagger: skipped {rows} line 1: {song}: line 3 gives other results for the same file" in result.output
    assert f"tagger: skipped {rows} line 3: {other}: line 1 gives other results" in result.output
    assert "1 tagged, 0 unchanged, 2 skipped" in result.output
    assert _untouched(song) and tags.read_instruments(good).tagged


def test_two_rows_for_one_file_with_the_same_results_write_it_once(tmp_path, monkeypatch):
    song = _song(tmp_path / "a.flac")
    monkeypatch.chdir(tmp_path)
    rows = _lines(tmp_path / "found.jsonl", _row(song), _row(song, path="a.flac"))
    result = _tag(rows)
    assert result.exit_code == 0, result.output
    assert "1 tagged, 0 unchanged, 0 skipped" in result.output


def test_a_row_without_the_files_facts_is_refused(tmp_path):
    """Rows of an older `predict` (no size, mtime, fingerprint) gave their results to whatever file
    bore the name when `tag` ran: a file replaced since got another file's instruments."""
    song = _song(tmp_path / "a.flac")
    rows = _lines(tmp_path / "found.jsonl", _row(song, size=..., mtime=..., fingerprint=...))
    result = _tag(rows)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{rows} line 1: {song}: no size, mtime and fingerprint of the file as `tagger predict` read it" in result.output
    assert _untouched(song)


def test_a_file_replaced_since_predict_by_one_of_the_same_size_and_time_is_refused(tmp_path):
    song = _song(tmp_path / "a.wav")  # (PCM: another tone of the same length has the same size)
    rows = _lines(tmp_path / "found.jsonl", _row(song))
    st = song.stat()
    other = write_audio(tmp_path / "other.wav", tone_signal([660.0], seconds=1.0))
    assert other.stat().st_size == st.st_size and other.read_bytes() != song.read_bytes()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, song)
    result = _tag(rows)
    assert result.exit_code == 1, result.output
    assert f"skipped {song}: file changed since it was analysed (the same size and modification time, other content" \
        in result.output  # fmt: skip
    assert _untouched(song)


def test_the_same_rows_again_leave_the_files_they_tagged_unchanged(tmp_path):
    """The rows' size and mtime are the file's before `tag` rewrote it: a second run is no refusal."""
    song = _song(tmp_path / "a.flac")
    rows = _lines(tmp_path / "found.jsonl", _row(song))
    assert "1 tagged" in _tag(rows, "--scores").output
    again = _tag(rows, "--scores")
    assert again.exit_code == 0 and "0 tagged, 1 unchanged, 0 skipped" in again.output, again.output
    other = _tag(rows)  # (without --scores the file would change: it changed since predict, so refused)
    assert other.exit_code == 1 and "file changed since it was analysed" in other.output


def test_model_version_contradicting_a_rows_own_is_refused(tmp_path):
    a, b = _song(tmp_path / "a.flac"), _song(tmp_path / "b.flac")
    rows = _lines(tmp_path / "found.jsonl", _row(a, model_version="m-2"), _row(b, model_version=...))
    result = _tag(rows, "--model-version", "m-1")
    assert result.exit_code == 1, result.output
    assert f"{rows} line 1: {a}: its model version is 'm-2', not --model-version 'm-1'" in result.output
    assert _untouched(a) and tags.read_instruments(b).model_version == "m-1"


def test_a_relative_path_is_taken_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    song = _song(tmp_path / "here" / "a.flac")
    decoy = _song(tmp_path / "a.flac")  # (beside the JSON file: not the one meant)
    rows = _lines(tmp_path / "found.jsonl", _row(song, path="a.flac"))
    monkeypatch.chdir(tmp_path / "here")
    assert _tag(rows).exit_code == 0
    assert tags.read_instruments(song).instruments == ["bass"] and _untouched(decoy)


def test_a_folder_or_a_fifo_in_a_row_is_skipped_unopened(tmp_path):
    folder, fifo = tmp_path / "album.flac", tmp_path / "pipe.flac"
    folder.mkdir()
    os.mkfifo(fifo)
    good = _song(tmp_path / "good.flac")
    fake = dict(size=0, mtime=0.0, fingerprint="0" * 32)
    rows = _lines(tmp_path / "found.jsonl", _row(good), _row(good, path=str(folder), **fake),
                  _row(good, path=str(fifo), **fake))  # fmt: skip
    result = _tag(rows)
    assert result.exit_code == 1, result.output
    assert f"skipped {folder}: not a regular file" in result.output and f"skipped {fifo}: not a regular file" in result.output
    assert "1 tagged, 0 unchanged, 2 skipped" in result.output


def test_predict_json_rows_carry_what_tag_checks_and_tag_writes_their_model(tmp_path, fake_models, monkeypatch):
    """`predict --json` wrote neither its model's version (`tag` wrote the shipped model's, whatever
    `--models` made the results) nor the file's facts, and the path as given (relative to wherever
    predict ran)."""
    song = _song(tmp_path / "music" / "a.flac")
    monkeypatch.chdir(tmp_path / "music")
    out = CliRunner().invoke(app, ["predict", "--json", "a.flac"])
    assert out.exit_code == 0, out.output
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["path"] == str(song) and row["model_version"] == "fake-1" and row["families"]
    assert (row["size"], row["mtime"]) == (song.stat().st_size, song.stat().st_mtime) and len(row["fingerprint"]) == 32
    rows = _lines(tmp_path / "found.jsonl", out.stdout.strip())
    monkeypatch.chdir(tmp_path)
    result = _tag(rows)
    assert result.exit_code == 0, result.output
    assert tags.read_instruments(song).model_version == "fake-1"


def test_predict_refuses_a_file_that_changed_while_it_was_analysed(tmp_path, fake_models, monkeypatch):
    from tagger.library import assemble

    song = _song(tmp_path / "a.flac")
    analyse = assemble.analyse_track

    def analyse_then_change(path, *args, **kwargs):
        result = analyse(path, *args, **kwargs)
        with open(path, "ab") as f:
            f.write(b"\0")
        return result

    monkeypatch.setattr(assemble, "analyse_track", analyse_then_change)
    out = CliRunner().invoke(app, ["predict", "--json", str(song)])
    assert out.exit_code == 1 and out.stdout == ""
    assert f"tagger: error: {song}: the file changed while it was analysed" in out.output


def test_rows_in_unrelated_trees_are_refused_unless_the_folders_are_named(tmp_path):
    """Without folders, writes stayed in the folder holding every listed file: one stray row
    (/dev/null) made that folder `/`, and a link out of the library was followed for every row."""
    (tmp_path / "music").mkdir()
    outside = _song(tmp_path / "outside" / "o.flac")
    link = tmp_path / "music" / "link.flac"
    os.symlink(outside, link)
    song = _song(tmp_path / "music" / "a.flac")
    stray = _row(song, path="/dev/null", size=0, mtime=0.0, fingerprint="0" * 32)
    rows = _lines(tmp_path / "found.jsonl", _row(outside, path=str(link)), _row(song), stray)
    result = _tag(rows)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"tagger: error: {rows}: its rows have no folder in common but / (/dev/null, {song})" in result.output
    assert "name the folders to write in" in result.output
    assert _untouched(outside, song)
    named = _tag(rows, str(tmp_path / "music"))
    assert named.exit_code == 1, named.output
    assert f"skipped {link}: a symbolic link pointing outside the given folders" in named.output
    assert "1 tagged, 0 unchanged, 1 skipped" in named.output
    assert _untouched(outside) and tags.read_instruments(song).tagged


def test_rows_in_one_tree_keep_the_guard_of_the_folder_holding_them(tmp_path):
    (tmp_path / "music" / "a").mkdir(parents=True)
    outside = _song(tmp_path / "outside" / "o.flac")
    link = tmp_path / "music" / "a" / "link.flac"
    os.symlink(outside, link)
    song = _song(tmp_path / "music" / "b" / "b.flac")
    rows = _lines(tmp_path / "found.jsonl", _row(outside, path=str(link)), _row(song))
    result = _tag(rows)
    assert f"skipped {link}: a symbolic link pointing outside the given folders" in result.output, result.output
    assert "1 tagged, 0 unchanged, 1 skipped" in result.output
    assert _untouched(outside) and tags.read_instruments(song).tagged


def test_an_endless_line_stops_the_reading_with_an_error(tmp_path, monkeypatch):
    """`--from-json /dev/zero` (no newline, ever) read for ever, skipping its over-long line."""
    from tagger.tags import batch

    monkeypatch.setattr(batch, "MAX_SKIPPED_BYTES", 8 << 20)  # (the bound, small enough for a quick test)
    song = _song(tmp_path / "a.flac")
    result = _tag("/dev/zero")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output == ("tagger: error: /dev/zero line 1: a line without end (more than 8 MiB): "
                             "not `tagger predict --json` output; nothing was written\n")  # fmt: skip
    assert _untouched(song)


def test_endless_bad_lines_stop_the_reading_with_an_error(tmp_path):
    """`--from-json /dev/urandom` (endless lines, none a row) read for ever, keeping each bad line."""
    good = _song(tmp_path / "good.flac")
    rows = tmp_path / "found.jsonl"
    rows.write_text(json.dumps(_row(good)) + "\n" + "not json\n" * 999 + json.dumps(_row(good)) + "\n" + "x\n" * 1000)
    result = _tag(rows)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith(f"tagger: error: {rows}: 1000 bad lines in a row (lines 1002 to 2001; line 1002: "
                                    "not a JSON object")  # fmt: skip
    assert result.output.endswith("): not `tagger predict --json` output; nothing was written\n")
    assert _untouched(good)


def test_a_file_written_over_in_place_since_predict_with_its_mtime_kept_is_refused(tmp_path, fake_models, monkeypatch):
    """A row carried the file's size, mtime and fingerprint only: the file written over in place
    since (the same inode, its mtime set back: `cp --preserve=timestamps`, a restore from a
    backup) by other audio where the fingerprint does not read passed all three and was tagged
    with the row's results. A row now carries the file's ctime and the hash of its whole content:
    another ctime needs the content `predict` read."""
    from test_library_lifecycle import _unseen_by_the_fingerprint, _write_over_in_place

    song = write_audio(tmp_path / "music" / "stem.wav", tone_signal([110.0], seconds=40.0))
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav")
    out = CliRunner().invoke(app, ["predict", "--json", str(song)])
    assert out.exit_code == 0, out.output
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert (row["ctime_ns"], len(row["content_hash"])) == (song.stat().st_ctime_ns, 32)
    rows = _lines(tmp_path / "found.jsonl", row)
    predicted_bytes = song.read_bytes()
    _write_over_in_place(song, edited.read_bytes())
    result = _tag(rows)
    assert result.exit_code == 1, result.output
    assert f"skipped {song}: file changed since it was analysed" in result.output
    assert _untouched(song)
    _write_over_in_place(song, predicted_bytes)  # the bytes predict read, another ctime: tagged
    result = _tag(rows)
    assert result.exit_code == 0, result.output
    assert tags.read_instruments(song).instruments == row["instruments"]


def test_a_prediction_row_is_declared_once_and_reads_back_as_written(tmp_path):
    """`PredictionRow` is the row both sides use: `tagger predict` writes its `to_dict` and `tagger
    tag --from-json` reads it with `from_dict`; what is written reads back the same, with the keys
    in the order predict has always written them."""
    import dataclasses

    from tagger.fingerprint import content_hash
    from tagger.tags.rows import PredictionRow

    song = _song(tmp_path / "a.wav")
    st = os.stat(song)
    row = PredictionRow(
        path=os.path.abspath(song), instruments=["bass"], scores={"bass": 0.9, "vocal": 0.1234}, windows=3,
        model_version="m-1", families=["bass", "vocal", "Flute"], size=st.st_size, mtime=st.st_mtime,
        ctime_ns=st.st_ctime_ns, fingerprint=predicted(song)["fingerprint"], content_hash=content_hash(song),
    )  # fmt: skip
    written = row.to_dict()
    assert list(written) == ["path", "instruments", "scores", "windows", "model_version", "families", "size", "mtime",
                             "ctime_ns", "fingerprint", "content_hash"]  # fmt: skip
    assert PredictionRow.from_dict(json.loads(json.dumps(written))) == row
    assert PredictionRow.from_dict(written).known_families == ("bass", "vocal", "flute")
    # an older predict's row: no ctime, hash, families or windows; the version given by the command
    old = {k: v for k, v in written.items() if k not in ("ctime_ns", "content_hash", "families", "windows", "model_version")}
    read = PredictionRow.from_dict(old, model_version="m-2")
    assert read == dataclasses.replace(row, ctime_ns=None, content_hash=None, families=None, windows=None, model_version="m-2")
    with pytest.raises(ValueError, match="'size' is a whole number of bytes, got \"12\""):
        PredictionRow.from_dict({**written, "size": "12"})
    # and the command writes such a row
    res = _tag(_lines(tmp_path / "rows.jsonl", written))
    assert res.exit_code == 0, res.output
    assert tags.read_instruments(song).instruments == ["bass"]


def test_rows_of_thousands_of_files_named_one_by_one_are_selected_by_their_folders(tmp_path, monkeypatch):
    """`tagger tag --from-json found.jsonl *.flac` checked each row against each file named
    (`tagger.paths.under_any`): 12,000 rows and files took 20 s, 5 s without the files. A row's path
    is looked up by its folders (`tagger.paths.Roots`): the rows of the files named are selected, a
    row of a file not named is not, with no per-file comparison."""
    import tagger.paths
    from tagger.db.filter import TrackFilter
    from tagger.tags import Prediction, select_predictions

    named = [str(tmp_path / "music" / f"{i:04d}.flac") for i in range(1000)]
    rows = [Prediction(path, ["flute"], "fake-1") for path in [*named, str(tmp_path / "music" / "other.flac")]]
    compared = []
    monkeypatch.setattr(tagger.paths, "is_under", lambda path, folder: compared.append(1) or path == folder)
    selected = select_predictions(rows, where=TrackFilter.of(paths=[*named, tmp_path / "elsewhere"]))
    assert [p.path for p in selected] == named
    assert len(compared) < 1000  # (was 501,501)

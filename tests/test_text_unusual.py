"""Text that is valid but unusual: names copied from macOS (Unicode NFD, where a user types NFC),
names that are not UTF-8, an output whose encoding is not UTF-8, tag values written by other
programs. Each answer is the right one, or one line saying why there is none; never a traceback."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tone_signal, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger.cli import app
from tagger.db.session import open_database
from tagger.library.scan import scan

ROOT = Path(__file__).resolve().parent.parent


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


ARTIST, TITLE = "Beyoncé", "Café.flac"
"""A folder and a file named in NFD on disk, as files copied from macOS are; typed in NFC."""


def _library(root: Path, db_path: Path) -> dict[str, str]:
    """A scanned library: {key: stored path} of a flute in an NFD folder and file, a bass with a
    Japanese name, and a file whose name is not UTF-8 (stored as an error)."""
    (root / nfd(ARTIST)).mkdir(parents=True)
    paths = {
        "nfd": str(write_audio(root / nfd(ARTIST) / nfd(TITLE), tone_signal([FREQ["flute"]], seconds=2.0))),
        "japanese": str(write_audio(root / "ネコ.flac", tone_signal([FREQ["bass"]], seconds=2.0))),
    }
    latin1 = os.fsencode(root) + b"/caf\xe9.flac"
    with open(paths["japanese"], "rb") as src, open(latin1, "wb") as dst:
        dst.write(src.read())
    paths["latin1"] = os.fsdecode(latin1)
    database = open_database(db_path)
    try:
        scan([root], db=database, analyser=FakeAnalyser(), jobs=0)
    finally:
        database.close()
    return paths


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    base = tmp_path_factory.mktemp("text")
    paths = _library(base / "music", base / "lib.db")
    return str(base / "lib.db"), paths


def run(*args: str):
    return CliRunner().invoke(app, list(args))


# -- 1: Unicode normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize("form", [nfc, nfd])
def test_path_glob_matches_a_name_typed_in_either_unicode_form(library, form):
    """A name stored in NFD (copied from macOS) was not found by a pattern typed in NFC."""
    db, paths = library
    r = run("query", "--db", db, "--path-glob", f"*/{form(ARTIST)}/*", "-f", "paths")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [paths["nfd"]]  # the name as stored, which opens the file
    r = run("query", "--db", db, "--path-glob", f"*{form('é')}.flac", "-f", "paths")
    assert r.output.splitlines() == [paths["nfd"]]


def test_path_glob_is_case_sensitive_and_its_help_says_so(library):
    db, paths = library
    r = run("query", "--db", db, "--path-glob", f"*/{nfc(ARTIST).lower()}/*", "-f", "paths")
    assert r.exit_code == 0 and r.output == ""
    r = run("query", "--db", db, "--path-glob", "*/[Bb]eyonc*/*", "-f", "paths")
    assert r.output.splitlines() == [paths["nfd"]]
    help_text = " ".join(run("query", "--help").output.split())
    assert "case-sensitive" in help_text and "NFC" in help_text


def test_show_finds_a_file_named_in_another_unicode_form(library, tmp_path, monkeypatch):
    """``tagger show`` of a name typed in NFC said "not in the library database" of the NFD file."""
    db, paths = library
    typed = os.path.join(os.path.dirname(os.path.dirname(paths["nfd"])), nfc(ARTIST), nfc(TITLE))
    assert typed != paths["nfd"] and not os.path.exists(typed)
    r = run("show", "--db", db, "--json", typed)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["path"] == paths["nfd"]
    assert json.loads(r.output)["instruments"] == ["flute"]
    monkeypatch.chdir(os.path.dirname(paths["nfd"]))  # a relative name too
    r = run("show", "--db", db, "--json", nfc(TITLE))
    assert r.exit_code == 0 and json.loads(r.output)["path"] == paths["nfd"]


def test_show_finds_a_stored_track_named_in_another_unicode_form_whose_file_is_gone(tmp_path):
    """With no file on disk to spell the name, the database's names are compared in NFC: through
    SQLAlchemy (a session) and through ``sqlite3`` (``tagger show``), under a folder whose name
    holds LIKE's wildcards and its escape character."""
    from tagger.db.queries import track_detail
    from tagger.db.session import open_for_reading
    from tagger.errors import UserError

    paths = _library(tmp_path / "50%_off/\\x" / "music", tmp_path / "lib.db")
    os.unlink(paths["nfd"])
    typed = nfc(paths["nfd"])
    database = open_database(tmp_path / "lib.db")
    reading = open_for_reading(tmp_path / "lib.db")
    try:
        with database.session() as s, reading.reader() as reader:
            for db in (s, reader):
                assert track_detail(db, path=typed).path == paths["nfd"]
                with pytest.raises(UserError, match="not in the library database"):
                    track_detail(db, path=nfc(paths["nfd"]).replace("Café", "Cafe"))
    finally:
        database.close()
        reading.close()


def test_show_of_a_name_two_stored_tracks_have_in_other_unicode_forms_names_both(tmp_path):
    from tagger.db.queries import track_detail
    from tagger.errors import UserError

    music = tmp_path / "music"
    for folder, name in ((nfd(ARTIST), nfc(TITLE)), (nfc(ARTIST), nfd(TITLE))):
        (music / folder).mkdir(parents=True)
        write_audio(music / folder / name, tone_signal([FREQ["flute"]], seconds=1.0))
    database = open_database(tmp_path / "lib.db")
    try:
        scan([music], db=database, analyser=FakeAnalyser(), jobs=0)
        with database.session() as s, pytest.raises(UserError, match="holds 2 tracks of this name in different Unicode forms"):
            track_detail(s, path=str(music / nfc(ARTIST) / nfc(TITLE)))
    finally:
        database.close()


def test_tag_and_untag_take_a_folder_named_in_another_unicode_form(tmp_path):
    """``tagger tag ~/Music/Beyoncé`` typed in NFC was "no such file or folder" for the NFD folder."""
    from tagger.tags import read_instruments

    paths = _library(tmp_path / "music", tmp_path / "lib.db")
    folder = str(tmp_path / "music" / nfc(ARTIST))
    r = run("tag", "--db", str(tmp_path / "lib.db"), "--settle-seconds", "0", folder)
    assert r.exit_code == 0, r.output
    assert "1 tagged" in r.output
    assert read_instruments(paths["nfd"]).instruments == ["flute"]
    assert not read_instruments(paths["japanese"]).tagged  # only that folder
    r = run("untag", "--model-version", "fake-1", "--settle-seconds", "0", folder)
    assert r.exit_code == 0, r.output
    assert "1 untagged" in r.output
    assert not read_instruments(paths["nfd"]).tagged


def test_a_name_in_both_unicode_forms_is_left_as_typed(tmp_path):
    """Two files whose names differ only in their Unicode form are two files: the one typed is meant."""
    from tagger.paths import spelled_on_disk

    write_audio(tmp_path / nfc(TITLE), tone_signal([FREQ["flute"]], seconds=0.5))
    write_audio(tmp_path / nfd(TITLE), tone_signal([FREQ["bass"]], seconds=0.5))
    assert spelled_on_disk(str(tmp_path / nfc(TITLE))) == str(tmp_path / nfc(TITLE))
    assert spelled_on_disk(str(tmp_path / nfd(TITLE))) == str(tmp_path / nfd(TITLE))
    other = nfd("Ça va.flac")  # neither file: left as typed, to be refused as it was
    assert spelled_on_disk(str(tmp_path / other)) == str(tmp_path / other)


# -- 3: an output whose encoding is not UTF-8 ---------------------------------------------------------


def _tagger(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m tagger ARGS`` of the tagger under test, with ``env`` added; output as bytes."""
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, env=full, timeout=120)


def test_an_output_encoding_without_the_names_letters_is_no_traceback(library):
    """With ``PYTHONIOENCODING=latin-1`` (a Latin-1 terminal's setting) every command printing ネコ or a
    combining accent ended in a UnicodeEncodeError traceback. Text for reading escapes what the
    encoding lacks; the formats a script reads are UTF-8, the names' own bytes, as ``-o`` writes them."""
    db, paths = library
    names = sorted([paths["nfd"], paths["japanese"]])
    latin1 = {"PYTHONIOENCODING": "latin-1"}
    table = _tagger("query", "--db", db, **latin1)
    assert table.returncode == 0 and b"Traceback" not in table.stderr, table.stderr
    assert "\\u30cd\\u30b3.flac" in table.stdout.decode("latin-1")
    # its LENGTH column lines up after the escapes (it was padded by the letters' terminal columns:
    # two for each of ネコ, none for the NFD name's combining accent, printed as 6-letter escapes)
    lines = table.stdout.decode("latin-1").splitlines()
    starts = [re.search(r"  (LENGTH|\d+:\d\d)  ", line).start(1) for line in lines]
    assert lines[0].startswith("PATH ") and len(lines) == 3 and len(set(starts)) == 1, lines
    shown = _tagger("show", "--db", db, paths["japanese"], **latin1)
    assert shown.returncode == 0, shown.stderr
    assert "\\u30cd\\u30b3.flac" in shown.stdout.decode("latin-1") and "bass" in shown.stdout.decode("latin-1")
    expected = {"paths": "".join(n + "\n" for n in names), "paths0": "".join(n + "\0" for n in names)}
    for fmt, text in expected.items():
        done = _tagger("query", "--db", db, "-f", fmt, **latin1)
        assert done.returncode == 0, done.stderr
        assert done.stdout == text.encode("utf-8")  # the bytes that open the files
    out = Path(db).parent / "out.m3u"
    assert _tagger("query", "--db", db, "-f", "m3u", "-o", str(out), **latin1).returncode == 0
    assert _tagger("query", "--db", db, "-f", "m3u", **latin1).stdout == out.read_bytes()  # as -o writes it
    assert all(n.encode("utf-8") in out.read_bytes() for n in names)


# -- 2: names that are not UTF-8 ----------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_an_error_row_and_every_format_runs(library):
    db, paths = library
    r = run("errors", "--db", db, "--json")
    assert r.exit_code == 0
    [row] = json.loads(r.output)
    assert row["path"] == paths["latin1"].replace("\udce9", "\\xe9")  # stored with the byte as a \xNN escape
    assert "not valid UTF-8" in row["error"]
    for fmt in ("table", "json", "csv", "paths", "paths0", "m3u"):
        r = run("query", "--db", db, "-f", fmt)
        assert r.exit_code == 0, (fmt, r.output)
        assert "caf" not in r.output  # an error row: no results to list
    r = run("show", "--db", db, paths["latin1"])
    assert r.exit_code == 1 and "the file name is not valid UTF-8" in r.output


def test_a_path_glob_that_is_not_utf8_is_refused_it_can_match_no_track(library):
    """``--path-glob $'*caf\\xe9*'`` (a Latin-1 byte) printed nothing, exit 0: the database holds UTF-8
    names only, the pattern can select no track."""
    db, _ = library
    r = run("query", "--db", db, "--path-glob", os.fsdecode(b"*caf\xe9*"))
    assert r.exit_code == 1
    assert r.output.splitlines() == ["tagger: error: --path-glob '*caf\\xe9*' is not valid UTF-8 (a byte shown as \\xNN): "
                                     "the library database holds UTF-8 names only, so it can match no track"]


def test_errors_and_the_scan_name_a_file_that_is_not_utf8_as_every_command_does(library, tmp_path, fake_models):
    """``caf<E9>.flac`` was named ``caf\\\\xe9.flac`` by ``errors`` and the scan, which is how tagger shows
    the name spelt with a backslash (``show``, ``predict`` and ``tag`` name it ``caf\\xe9.flac``)."""
    db, paths = library
    shown = paths["latin1"].replace("\udce9", "\\xe9")  # one backslash, as `tagger.display.named` shows the byte
    r = run("errors", "--db", db)
    assert r.exit_code == 0
    assert r.output.splitlines() == [f"{shown}: the file name is not valid UTF-8 (shown here with \\x escapes); "
                                     "rename the file to analyse it"]  # fmt: skip
    r = run("show", "--db", db, paths["latin1"])
    assert shown + ":" in r.output and "\\\\x" not in r.output
    music = tmp_path / "music"
    music.mkdir()
    latin1 = os.fsencode(music) + b"/a\\b\xff.flac"  # a backslash of its own: shown doubled, as ever
    with open(paths["japanese"], "rb") as src, open(latin1, "wb") as dst:
        dst.write(src.read())
    r = run("scan", "--db", str(tmp_path / "lib.db"), "--jobs", "0", "--no-write-tags", "--settle-seconds", "0", str(music))
    assert r.exit_code == 1
    assert f"tagger: failed {music}/a\\\\b\\xff.flac: the file name is not valid UTF-8" in r.output
    r = run("errors", "--db", str(tmp_path / "lib.db"))
    assert r.output.startswith(f"{music}/a\\\\b\\xff.flac: ")


def test_the_scan_names_a_folder_that_is_not_utf8_as_it_names_such_a_file(tmp_path, fake_models, monkeypatch):
    """A folder ``caf<E9>`` the scan cannot list, and a leftover temp file in a folder ``ok<E9>``, were
    named ``caf\\\\xe9`` in the scan's lines, tagger's way of writing a name spelt with a backslash; a
    real ``back\\xe9`` is still shown so, and ``--json`` keeps the ``\\xNN`` escapes as for a file."""
    music = os.fsencode(tmp_path / "music")
    locked = [music + b"/caf\xe9", music + b"/back\\xe9"]  # the second a UTF-8 name with a backslash
    for folder in [*locked, music + b"/ok\xe9"]:
        os.makedirs(folder)
    open(music + b"/ok\xe9/.a.flac.abcd1234.tagger-tmp", "wb").close()
    real_scandir = os.scandir

    def refuse_scandir(path="."):  # (as root, permissions 000 would not stop the listing)
        if os.fsencode(path) in locked:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_scandir)
    scan_args = ("scan", "--db", str(tmp_path / "lib.db"), "--jobs", "0", "--settle-seconds", "0", "--dry-run")
    r = run(*scan_args, os.fsdecode(music))
    assert r.exit_code == 1
    shown = str(tmp_path / "music")
    assert sorted(line for line in r.output.splitlines() if line.startswith("tagger: ")) == [
        f"tagger: failed {shown}/back\\\\xe9: cannot list the folder: Permission denied; its files were left as they are",
        f"tagger: failed {shown}/caf\\xe9: cannot list the folder: Permission denied; its files were left as they are",
        f"tagger: would remove {shown}/ok\\xe9/.a.flac.abcd1234.tagger-tmp, left over by an interrupted tag write (unless in use)"]  # fmt: skip
    summary = json.loads(run(*scan_args, "--json", os.fsdecode(music)).output)
    assert sorted(e["path"] for e in summary["errors"]) == [f"{shown}/back\\xe9", f"{shown}/caf\\xe9"]
    assert summary["temp_files"] == [f"{shown}/ok\\xe9/.a.flac.abcd1234.tagger-tmp"]


def test_tag_says_a_folder_given_whose_name_is_not_utf8_is_a_folder(library, tmp_path):
    """``tagger tag caf<E9>/`` said "the file name is not valid UTF-8" of a folder."""
    db, _ = library
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(folder)
    r = run("tag", "--db", db, os.fsdecode(folder))
    assert r.exit_code == 1
    assert r.output.splitlines() == [f"tagger: error: {tmp_path}/caf\\xe9: the folder name is not valid UTF-8, so the "
                                     "library database holds no results for its files (a scan records each as an "
                                     "error); rename the folder and scan it"]  # fmt: skip


# -- 4: tag values another program wrote --------------------------------------------------------------


@pytest.mark.parametrize("values", [["Flute; Vocal"], ["flute\x00vocal"], ["FLUTE", " vocal "], ["flute;vocal"]])
def test_values_in_another_form_are_read_one_family_a_value_and_rewritten_in_tagger_s(tmp_path, values):
    """The rule the README states: values trimmed and lower-cased, never split inside a Vorbis comment;
    `tag` compares them as stored, so the field is rewritten in tagger's form, which beets reads alike."""
    import mutagen.flac
    from mediafile import MediaFile

    from tagger.tags import read_instruments, register_mediafile_fields, write_instruments

    path = write_audio(tmp_path / "a.flac", tone_signal([FREQ["flute"]], seconds=0.5))
    f = mutagen.flac.FLAC(path)
    f["INSTRUMENTS"], f["INSTRUMENTS_MODEL"] = values, "other-1"
    f.save()
    assert read_instruments(path).instruments == [v.strip().lower() for v in values]
    change = write_instruments(path, instruments=["flute", "vocal"], model_version="other-1", settle_seconds=0)
    assert change.changed and change.written
    register_mediafile_fields()
    assert read_instruments(path).instruments == MediaFile(str(path)).instruments == ["flute", "vocal"]


def test_the_query_table_lines_up_after_wide_and_decomposed_names():
    """Padding counted characters, not columns: after a Japanese name (two columns a character) the
    LENGTH column started further right than after an ASCII one, and after an NFD name (a combining
    accent: no column) one column further left. Columns now line up as a terminal shows them."""
    from tagger.db.queries import TrackSummary
    from tagger.display import width
    from tagger.library.report import render_table

    names = ["/m/plain.flac", "/m/日本の歌.flac", "/m/" + nfd("Beyoncé Café.flac"), "/m/🎻 solo.flac"]
    tracks = [TrackSummary(n, 61.0, "FLAC", ["flute"], {"flute": 0.9}, "v", False) for n in names]
    lines = render_table(tracks).splitlines()
    assert len(lines) == 5
    starts = []
    for line in lines[1:]:
        at = line.index("1:01")
        starts.append(width(line[:at]))
    assert len(set(starts)) == 1, lines
    assert width(lines[0][: lines[0].index("LENGTH")]) == starts[0]
    assert width("日本") == 4 and width(nfd("é")) == 1 and width("abc") == 3


def test_the_show_and_stats_columns_line_up_after_a_wide_family_name():
    """A model's own family (``tagger train --family``) may be named in any script: the stats table
    pads by columns too."""
    from tagger.display import width
    from tagger.library.report import render_stats

    fams = {"flute": 3, "二胡": 2}
    stats = {"tracks": {"total": 3, "ok": 3, "error": 0, "missing": 0, "stale": 0, "no_instrument": 0},
             "audio_seconds": 60.0, "families": fams,
             "cooccurrence": {f: {g: 1 for g in fams} for f in fams}}  # fmt: skip
    rows = render_stats(stats).splitlines()[-3:]
    assert rows[0].startswith("FAMILY")
    starts = {width(r[: r.index(c)]) for r, c in zip(rows, ("TRACKS", "3", "2"))}
    assert len(starts) == 1, rows


def test_a_file_in_a_folder_that_is_not_utf8_names_the_folder_to_rename(library, tmp_path, fake_models):
    """``caf<E9>/song.flac``: the error said "rename the file to analyse it", though the file's own name
    is fine and renaming it changes nothing: it names the folder whose name holds the bytes now."""
    db, paths = library
    music = tmp_path / "music"
    folder = os.fsencode(music) + b"/caf\xe9"
    os.makedirs(folder + b"/inner")
    with open(paths["japanese"], "rb") as src:
        data = src.read()
    for name in (b"/inner/song.flac", b"/caf\xe9.flac"):
        with open(folder + name, "wb") as dst:
            dst.write(data)
    r = run("scan", "--db", str(tmp_path / "lib.db"), "--jobs", "0", "--no-write-tags", "--settle-seconds", "0", str(music))
    assert r.exit_code == 1
    r = run("errors", "--db", str(tmp_path / "lib.db"), "--json")
    errors = {row["path"]: row["error"] for row in json.loads(r.output)}
    assert errors[f"{music}/caf\\xe9/inner/song.flac"].endswith(
        f"the bytes are in the name of its folder {music}/caf\\xe9: rename that folder to analyse the files in it")
    assert errors[f"{music}/caf\\xe9/caf\\xe9.flac"].endswith("rename the file to analyse it")
    r = run("errors", "--db", str(tmp_path / "lib.db"))
    assert f"its folder {music}/caf\\xe9: rename" in r.output


def test_a_file_name_with_a_line_break_stays_out_of_the_decoders_reason(tmp_path):
    """ffmpeg's message names the file, and the reason was its last line: of a broken file named
    ``bad<LF>name.wav`` it was 'name.wav: Invalid data found when processing input', a piece of the
    name standing as the reason (and stored so by a scan, where a reason must not name the file). The
    name is cut from ffmpeg's whole message before it is split into lines: the reason is the one a
    broken file of a plain name gets. So it is of a name holding control characters, which ffmpeg's
    log writes as '?' (an escape sequence: the reason `tagger errors` showed was 'b?[31m.wav: Invalid
    data found when processing input', the name ffmpeg wrote not found in its message; found
    red-teaming the reporting commands), and of a name that is not UTF-8, which ffmpeg's message, read
    as UTF-8, holds with U+FFFD for each such byte (`tagger predict 'latin<E9>.wav'` gave '(/music/latin
    \ufffd.wav: Invalid data ...)', the whole path; found reviewing 96e260b)."""
    from tagger.audio import info
    from tagger.errors import AudioReadError

    reasons = []
    for name in ("plain.wav", "bad\nname.wav", "odd\r\nname.wav", "esc\n\x1b[31mred.wav", "bell\x07.wav",
                 os.fsdecode(b"latin \xe9.wav"), os.fsdecode(b"both \xe9\x1b[1m.wav")):
        (tmp_path / name).write_bytes(b"RIFF garbage" * 100)
        with pytest.raises(AudioReadError) as caught:
            info(tmp_path / name)
        reasons.append(caught.value.reason)
    assert reasons[0].startswith("not a readable audio file (") and "plain" not in reasons[0]
    assert reasons == [reasons[0]] * len(reasons)

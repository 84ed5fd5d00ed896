"""Defects found by attacking what tagger writes (2026-12-06) with hostile file names and tag values:
line breaks, tabs, bidi controls, line separators, names that are not UTF-8, ``$`` (matplotlib's
mathtext). Every terminal line names one file in one line, escaped; every output a script reads
(``query --format paths|m3u|csv|json``, ``predict --json``) holds the exact names or leaves a name
out with a warning naming it, never a name that points elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import UNTAG_KNOWN, tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger.cli import app
from tagger.db.session import open_database
from tagger.library.scan import scan

HOSTILE = ("two\nlines.flac", "\u202eevil.flac", "tab\there.flac", "ls\u2028x.flac")
"""Names a terminal would show as two lines, reversed, as two columns, or (splitlines) as two lines."""
RAW = ("\n", "\u202e", "\t", "\u2028")


def _library(tmp_path, names=HOSTILE, *, scanned=True):
    music = tmp_path / "music"
    files = [write_audio(music / name, tone_signal([110.0], seconds=4.0)) for name in names]
    dbfile = tmp_path / "lib.db"
    if scanned:
        db = open_database(dbfile)
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # analysed, no tags written
        db.close()
    return music, files, str(dbfile)


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert not result.exception or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def _no_raw_name(output: str) -> None:
    """No name of `HOSTILE` is in ``output`` as it is; every one that is there is escaped on one line."""
    for name in HOSTILE:
        assert name not in output, output
    for raw in RAW[1:]:
        assert raw not in output, output


def test_a_name_with_a_line_break_tab_or_bidi_control_is_one_escaped_line_in_every_command(tmp_path, fake_models):
    import mutagen

    music, files, _ = _library(tmp_path, scanned=False)
    (music / "bad\nname.mp3").write_bytes(b"not audio " * 100)
    dbfile = str(tmp_path / "lib.db")
    scanned = _invoke("scan", str(music), "--db", dbfile, "--jobs", "0", "--no-write-tags")
    assert f"tagger: failed {music}/bad\\x0aname.mp3: " in scanned.output, scanned.output
    outputs = [scanned.output]
    table = _invoke("query", "--db", dbfile).output
    assert len(table.splitlines()) == 1 + len(files), table  # the header and one row per track
    assert f"{music}/two\\x0alines.flac " in table and f"{music}/\\u202eevil.flac " in table, table
    outputs.append(table)
    for f in files:
        shown = _invoke("show", str(f), "--db", dbfile).output
        assert shown.splitlines()[1].startswith("  status: ok"), shown
        outputs.append(shown)
    errors = _invoke("errors", "--db", dbfile).output
    assert errors.splitlines()[0].startswith(f"{music}/bad\\x0aname.mp3: not a readable audio file"), errors
    outputs += [errors, _invoke("tag", str(music), "--db", dbfile, "--dry-run").output]
    audio = mutagen.File(str(files[0]))
    audio["INSTRUMENTS"] = ["bass\nbrass", "x\u202ey"]  # (written by another tool)
    audio["INSTRUMENTS_MODEL"] = ["m-1"]
    audio.save()
    os.utime(files[0], (1, 1))  # an old file: past the settle time
    untagged = _invoke("untag", *UNTAG_KNOWN, str(files[0]), "--dry-run").output
    assert untagged.splitlines()[0] == f"would untag {music}/two\\x0alines.flac (removed: bass\\x0abrass, x\\u202ey)", untagged
    outputs.append(untagged)
    for out in outputs:
        _no_raw_name(out)


def test_a_log_line_naming_a_file_is_one_line(tmp_path):
    music, files, _ = _library(tmp_path, scanned=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "tagger", "-v", "untag", str(music)], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("DEBUG tagger.tags: unchanged ")]
    assert sorted(lines) == sorted(f"DEBUG tagger.tags: unchanged {music}/{n}" for n in
                                   ("two\\x0alines.flac", "\\u202eevil.flac", "tab\\x09here.flac", "ls\\u2028x.flac")), done.stderr  # fmt: skip
    _no_raw_name(done.stderr)


def _not_utf8(music, song) -> str:
    """Rename ``song`` to ``café.flac`` spelt in Latin-1 (a name that is not UTF-8); its str path."""
    name = os.fsencode(music) + b"/caf\xe9.flac"
    os.rename(song, name)
    return os.fsdecode(name)  # (with a lone surrogate, as Python spells such a name)


def test_a_name_that_is_not_utf8_is_printed_with_x_escapes_not_a_crash(tmp_path, fake_models):
    music, (song,), _ = _library(tmp_path, names=("a.flac",), scanned=False)
    name = _not_utf8(music, song)
    result = _invoke("predict", name)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{music}/caf\\xe9.flac: bass", result.output


def test_show_and_tag_of_a_name_that_is_not_utf8_are_one_error_line(tmp_path):
    music, (song, _), _ = _library(tmp_path, names=("a.flac", "b.flac"), scanned=False)
    name = _not_utf8(music, song)
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # (b.flac analysed; the other an error row)
    db.close()
    for command in (["show", name], ["show", name, "--plot", str(tmp_path / "t.png")], ["tag", name]):
        result = _invoke(*command, "--db", str(dbfile))
        assert result.exit_code == 1, result.output
        (line,) = result.output.splitlines()
        assert line.startswith("tagger: error: ") and f"{music}/caf\\xe9.flac" in line, line
    assert "not valid UTF-8" in _invoke("show", name, "--db", str(dbfile)).output
    assert not (tmp_path / "t.png").exists()


def test_predict_json_refuses_a_name_that_is_not_utf8_and_stays_strict_json(tmp_path, fake_models):
    import json

    music, (song, other), _ = _library(tmp_path, names=("a.flac", "b.flac"), scanned=False)
    _not_utf8(music, song)
    result = _invoke("predict", str(music), "--json")
    assert result.exit_code == 1, result.output
    assert "\\ud" not in result.stdout  # (a lone surrogate escape: strict parsers refuse it)
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(other)]
    assert f"tagger: error: {music}/caf\\xe9.flac: the file name is not valid UTF-8" in result.stderr, result.stderr


DATA_NAMES = ("esc\x1b[2J.flac", "tab\there.flac", "\u202eevil.flac", "plain.flac")


@pytest.mark.parametrize("fmt", ["paths", "m3u", "csv"])
def test_query_data_formats_on_a_pipe_hold_the_exact_names_and_on_a_terminal_escaped_ones(tmp_path, fmt, monkeypatch):
    import csv
    import importlib
    import io

    cli_app = importlib.import_module("tagger.cli.app")  # (tagger.cli.app is also the name of the typer app)

    music, files, dbfile = _library(tmp_path, names=DATA_NAMES)

    def entries(text: str) -> list[str]:
        if fmt == "csv":
            return [row[0] for row in csv.reader(io.StringIO(text))][1:]
        return [line for line in text.splitlines() if not line.startswith("#")]

    piped = _invoke("query", "--db", dbfile, "--format", fmt)
    assert sorted(entries(piped.stdout)) == sorted(map(str, files)), piped.stdout  # (a script reads these)
    monkeypatch.setattr(cli_app, "stdout_is_terminal", lambda: True)
    shown = _invoke("query", "--db", dbfile, "--format", fmt).stdout
    assert "\x1b" not in shown and "\u202e" not in shown, shown
    assert f"{music}/esc\\x1b[2J.flac" in entries(shown) and f"{music}/\\u202eevil.flac" in entries(shown), shown


@pytest.mark.parametrize("fmt", ["paths", "m3u"])
def test_line_formats_leave_out_a_name_holding_any_line_boundary_and_name_it(fmt, caplog):
    from tagger.db.queries import TrackSummary
    from tagger.library.report import render_tracks

    names = ["/m/vt\x0bx.flac", "/m/ff\x0cx.flac", "/m/fs\x1cx.flac", "/m/nel\x85x.flac", "/m/ls\u2028x.flac",
             "/m/ps\u2029x.flac", "/m/#1 hit.flac", "/m/good.flac"]  # fmt: skip
    tracks = [TrackSummary(n, 10.0, "FLAC", ["bass"], {"bass": 0.9}, "v", False) for n in names]
    with caplog.at_level("WARNING", logger="tagger.library.report"):
        text = render_tracks(tracks, fmt=fmt)
    entries = [line for line in text.splitlines() if not line.startswith("#")]  # (str.splitlines: every boundary)
    assert entries == ["/m/#1 hit.flac", "/m/good.flac"], text
    assert len([r for r in caplog.records if "left out of the" in r.getMessage()]) == 6, caplog.records


def test_a_timeline_of_a_name_with_dollars_or_odd_bytes_is_drawn(tmp_path, fake_models):
    # "$...$" is mathtext to matplotlib: "x$^$y" and "$\foo{$" raised ValueError (ParseException);
    # a name that is not UTF-8 raised TypeError in the font code
    music, files, dbfile = _library(tmp_path, names=("x$^$y.flac", "$\\foo{$.flac", "a.flac", "two\nlines.flac"))
    targets = [*map(str, files[:2]), _not_utf8(music, files[2]), str(files[3])]
    for i, name in enumerate(targets):
        picture = tmp_path / f"p{i}.png"
        result = _invoke("predict", name, "--plot", str(picture))
        assert result.exit_code == 0 and picture.stat().st_size > 0, result.output
    result = _invoke("show", str(files[0]), "--db", dbfile, "--plot", str(tmp_path / "s.svg"))
    assert result.exit_code == 0 and (tmp_path / "s.svg").stat().st_size > 0, result.output


def test_scan_of_a_folder_whose_name_is_not_utf8_is_one_error_line_before_anything_is_created(tmp_path, fake_models):
    music, (song,), _ = _library(tmp_path, names=("a.flac",), scanned=False)
    folder = os.fsencode(tmp_path) + b"/m\xe9sica"
    os.rename(music, folder)
    dbfile = tmp_path / "lib.db"
    for root in (os.fsdecode(folder), os.fsdecode(folder + b"/a.flac")):
        result = _invoke("scan", root, "--db", str(dbfile), "--jobs", "0")
        assert result.exit_code == 1, result.output
        (line,) = result.output.splitlines()
        assert line.startswith(f"tagger: error: {tmp_path}/m\\xe9sica") and "not valid UTF-8" in line, line
        assert not dbfile.exists()


def test_paths0_holds_every_name_whole_separated_by_nul_for_xargs_0(tmp_path, monkeypatch):
    """``paths`` leaves out a name holding a line break; ``paths0`` carries every name, as ``find
    -print0`` does, for ``xargs -0``; into a file (``-o``) too, which a second run may replace."""
    import importlib

    cli_app = importlib.import_module("tagger.cli.app")
    names = (*HOSTILE, "nel\x85x.flac", "esc\x1b[2J.flac", "plain.flac")
    music, files, dbfile = _library(tmp_path, names=names)
    piped = _invoke("query", "--db", dbfile, "--format", "paths0")
    assert piped.exit_code == 0, piped.output
    assert piped.stdout.endswith("\0") and sorted(piped.stdout.split("\0")[:-1]) == sorted(map(str, files)), piped.stdout
    out = tmp_path / "list"
    for _ in range(2):  # (the second run replaces the list the first wrote)
        written = _invoke("query", "--db", dbfile, "--format", "paths0", "-o", str(out))
        assert written.exit_code == 0, written.output
    assert sorted(out.read_bytes().split(b"\0")[:-1]) == sorted(os.fsencode(f) for f in files)
    xargs = subprocess.run(["xargs", "-0", "ls", "-1d", "--quoting-style=escape"], input=out.read_bytes(),
                           capture_output=True)  # fmt: skip
    assert xargs.returncode == 0 and len(xargs.stdout.splitlines()) == len(files), xargs
    monkeypatch.setattr(cli_app, "stdout_is_terminal", lambda: True)  # on a terminal: escaped, NUL included
    shown = _invoke("query", "--db", dbfile, "--format", "paths0").stdout
    assert "\0" not in shown and f"{music}/two\\x0alines.flac\\x00" in shown.splitlines(), shown


def test_a_list_written_to_a_file_counts_only_the_names_it_holds(tmp_path):
    """``query -o FILE -f paths|m3u`` said ``N track(s) written`` counting the names it left out for
    holding a line break; it counts those it wrote and says how many it left out and why."""
    names = ("two\nlines.flac", "plain.flac", "other.flac")
    _, files, dbfile = _library(tmp_path, names=names)
    for fmt in ("paths", "m3u", "paths0"):
        out = tmp_path / f"list.{fmt}"
        r = _invoke("query", "--db", dbfile, "--format", fmt, "-o", str(out))
        assert r.exit_code == 0, r.output
        held = [p for p in out.read_text().replace("\0", "\n").splitlines() if p and not p.startswith("#")]
        if fmt == "paths0":
            assert f"3 track(s) written to {out}" in r.stderr and "left out" not in r.stderr, r.stderr
        else:
            assert len(held) == 2 and f"2 track(s) written to {out} (1 left out: a name holding a line break)" in r.stderr, (r.stderr, held)


def test_every_usage_error_is_one_line_naming_the_option_and_the_reason(tmp_path):
    """click and typer's rich panel spread a usage error over four to eight lines (the usage, a hint,
    a box wrapped mid-sentence at the terminal's width); it is one ``tagger: error:`` line now, a
    hostile name in it escaped as `tagger.display.shown` escapes it, exit status 2."""
    hostile = "b\x1b]0;owned\x07\u202e\nx.flac"
    runs = {
        ("query", "--fo\x1b[2Jo"): "No such option: --fo\\x1b[2Jo",
        ("scan", "-j", "many", str(tmp_path)): "'--jobs' / '-j'",
        ("scan", "", "--db", str(tmp_path / "x.db")): "Invalid value for 'PATHS...': '' is an empty name (it would mean the current folder): give a path",
        ("show", "a.flac", hostile): "Got unexpected extra argument(s) (b\\x1b]0;owned\\x07\\u202e\\x0ax.flac)",
        ("query", "--format"): "Option '--format' requires an argument",
        ("scan", "--settle-seconds", "nan", str(tmp_path)): "'--settle-seconds' (env var: 'TAGGER_SETTLE_SECONDS'): nan: give a finite number of seconds, 0 or more",
        ("show",): "Missing argument 'PATH'",
        ("db", "nosuch"): "No such command 'nosuch'",
        # (-v after the command, as README's "the -v log" did not say where it goes: walking through it)
        ("scan", str(tmp_path), "-v"): "No such option: -v (-v is tagger's own option, given before the command: 'tagger -v scan ...')",
        ("db", "prune", "--verbose"): "(--verbose is tagger's own option, given before the command: 'tagger --verbose db prune ...')",
    }
    for args, message in runs.items():
        r = CliRunner().invoke(app, list(args), terminal_width=40)
        (line,) = r.output.splitlines()
        assert r.exit_code == 2 and line.startswith("tagger: error: ") and message in line, (args, r.output)
        assert "\x1b" not in line and "\u202e" not in line and "\x07" not in line, line
    assert "Usage:" in CliRunner().invoke(app, []).output  # (no command: the help, as before)
    # (run as `python -m tagger`, as README's timings do: it said 'tagger -v -m tagger scan ...'; found
    # reviewing 8d5a20e)
    r = CliRunner().invoke(app, ["db", "prune", "-v"], prog_name="python -m tagger", terminal_width=40)
    assert r.exit_code == 2, r.output
    assert r.output == ("tagger: error: No such option: -v (-v is tagger's own option, given before the command: "
                        "'python -m tagger -v db prune ...')\n"), r.output  # fmt: skip


def test_names_a_terminal_showed_alike_are_shown_apart_and_piped_exactly(tmp_path, monkeypatch):
    r"""``a\x1b.flac`` spelt with a real backslash and ``a`` + ESC were both shown ``a\x1b.flac``, and a
    zero-width space or joiner (``a\u200bb``) was invisible: two names looked like one. A backslash
    that would read as an escape is shown ``\\`` and every format character (Unicode Cf) escaped; a
    pipe still gets the exact names."""
    import importlib
    import itertools
    import unicodedata

    from tagger.display import named

    cli_app = importlib.import_module("tagger.cli.app")
    names = ("a\\x1b.flac", "a\x1b.flac", "ab.flac", "a\u200bb.flac", "a\u200db.flac", "a\ufeffb.flac", "AC\\DC.flac")
    music, files, dbfile = _library(tmp_path, names=names)
    piped = _invoke("query", "--db", dbfile, "--format", "paths0").stdout
    assert sorted(piped.split("\0")[:-1]) == sorted(map(str, files))
    monkeypatch.setattr(cli_app, "stdout_is_terminal", lambda: True)
    want = {f"{music}/{n}" for n in ("a\\\\x1b.flac", "a\\x1b.flac", "ab.flac", "a\\u200bb.flac", "a\\u200db.flac",
                                     "a\\ufeffb.flac", "AC\\DC.flac")}  # fmt: skip
    for fmt in ("paths", "table"):
        out = _invoke("query", "--db", dbfile, "--format", fmt).stdout
        got = {line.split("  ")[0] for line in out.splitlines()} - {"PATH"}
        assert got == want, (fmt, out)
    assert _invoke("show", str(files[0]), "--db", dbfile).stdout.splitlines()[0] == f"{music}/a\\\\x1b.flac"
    # no two texts are shown alike (every text over these characters, up to 5 long), and every Cf is escaped
    seen: dict[str, str] = {}
    for n in range(1, 6):
        for chars in itertools.product(("\\", "x", "1", "b", "u", "\x1b", "\x01", "\u200b"), repeat=n):
            text = "".join(chars)
            assert seen.setdefault(named(text), text) == text, (text, seen[named(text)])
    assert not [hex(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf" and named(chr(c)) == chr(c)]


def test_query_output_of_a_large_library_is_written_piece_by_piece(tmp_path):
    """The JSON of 100,000 tracks (46 MB) was built whole, with a dict per track first: 400 MB. Every
    format but the table is rendered in pieces of a few hundred tracks now, the text unchanged."""
    import json
    import tracemalloc

    from tagger.db.queries import TrackSummary
    from tagger.library.report import QUERY_FORMATS, iter_rendered, render_tracks

    scores = {f: 0.123456 for f in ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed")}
    tracks = [TrackSummary(f"/music/album {i // 10}/track {i:05d}.flac", 183.4, "FLAC", ["bass", "flute"], scores,
                           "compact-mix-1", False) for i in range(20_000)]  # fmt: skip
    text = render_tracks(tracks, fmt="json")
    assert text == json.dumps([t.to_dict() for t in tracks], indent=1) + "\n"
    for fmt in QUERY_FORMATS:
        if fmt == "table":
            continue
        tracemalloc.start()
        size = largest = 0
        for piece in iter_rendered(tracks, fmt=fmt):
            size, largest = size + len(piece), max(largest, len(piece))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert largest < size / 20 and peak < size / 4, (fmt, size, largest, peak)


def test_query_output_into_a_folder_not_there_yet_makes_it_and_a_bad_folder_is_one_line(tmp_path):
    """`query -o lists/organ.m3u` with no folder `lists` ended in a FileNotFoundError traceback (the
    temporary file could not be made), where `show --plot`, `evaluate` and `dataset` make the folders
    they are given: the folder is made now, and the list written. A folder that cannot hold the file
    (a file where the folder would be) is one line naming it, for `-o` and for `write_atomic`'s
    other callers alike."""
    from tagger.errors import UserError
    from tagger.outputs import write_atomic

    music, files, dbfile = _library(tmp_path, names=("a.flac", "b.flac"))
    out = tmp_path / "lists" / "new" / "all.m3u"
    r = _invoke("query", "--db", dbfile, "--format", "paths", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert sorted(out.read_text(encoding="utf-8").splitlines()) == sorted(str(f) for f in files)
    assert "2 track(s) written to" in r.output

    (tmp_path / "plain").write_text("a file, not a folder")
    r = _invoke("query", "--db", dbfile, "-o", str(tmp_path / "plain" / "x.m3u"))
    assert r.exit_code == 1 and r.output.startswith(f"tagger: error: {tmp_path / 'plain' / 'x.m3u'}: "), r.output
    assert r.output.count("\n") == 1 and (tmp_path / "plain").read_text() == "a file, not a folder"

    with pytest.raises(UserError, match=r"x\.txt: cannot write it there \(its folder .*none does not exist\)"):
        write_atomic(tmp_path / "none" / "x.txt", "text")
    with pytest.raises(UserError, match=r"x\.txt: cannot write it there \(.*plain is not a folder\)"):
        write_atomic(tmp_path / "plain" / "x.txt", "text")
    assert not (tmp_path / "none").exists()

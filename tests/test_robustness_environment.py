"""Defects found by attacking tagger's process environment (2026-12-06): standard streams closed, full
or gone, resource limits, environment variables. Every failure is one line on stderr naming what
failed and why, never a traceback; no music file or database is damaged or left half-written."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tone_signal, track_instruments, write_audio
from library_fakes import FakeAnalyser
from tagger.db.session import open_database
from tagger.library.scan import scan

TESTS = Path(__file__).resolve().parent

CLI_SCRIPT = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]  # this checkout's tagger, whatever is installed
from library_fakes import FakeAnalyser
from tagger.model.ensemble import Ensemble

Ensemble.load = classmethod(lambda cls, *a, **k: FakeAnalyser())
if __name__ == "__main__":
    sys.argv[0] = "tagger"
    from tagger.cli import main

    main()
"""


@pytest.fixture
def library(tmp_path):
    """(music folder, its files, database file) of three WAV/FLAC files scanned (no tags written)."""
    music = tmp_path / "music"
    files = [write_audio(music / name, tone_signal([f], seconds=4.0))
             for name, f in (("bass.wav", 110.0), ("flute.flac", 1000.0), ("string.wav", 4000.0))]  # fmt: skip
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    db.close()
    return music, files, dbfile


def tagger(tmp_path, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close=(), preexec=None, env=None,
           timeout=120) -> subprocess.CompletedProcess:  # fmt: skip
    """``tagger ARGS`` in a process of its own (the models: `library_fakes.FakeAnalyser`), with the
    standard file descriptors in ``close`` closed and ``preexec`` run before it starts."""
    script = tmp_path / "tagger_cli.py"
    if not script.exists():
        script.write_text(CLI_SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent)))

    def before() -> None:
        for fd in close:
            os.close(fd)
        if preexec is not None:
            preexec()

    return subprocess.run([sys.executable, str(script), *map(str, args)], stdout=stdout, stderr=stderr,
                          preexec_fn=before, env=env, timeout=timeout, text=True)  # fmt: skip


def integrity(dbfile) -> str:
    con = sqlite3.connect(dbfile)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def statuses(dbfile) -> dict[str, str]:
    con = sqlite3.connect(dbfile)
    try:
        return dict(con.execute("SELECT path, status FROM tracks"))
    finally:
        con.close()


# -- standard streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stdout", ["closed", "/dev/full"])
def test_stdout_closed_or_full_is_one_error_line_not_a_traceback_nor_silence(tmp_path, library, stdout):
    """``tagger query >&-`` printed nothing and exited 0 (the table format) or gave a traceback
    (``'NoneType' object has no attribute 'isatty'``, the other formats); ``> /dev/full`` gave a
    traceback of ENOSPC. Each is now one line saying standard output could not be written, and why,
    exit status 1."""
    if stdout == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    _, files, dbfile = library
    out = open(stdout, "w") if stdout != "closed" else subprocess.DEVNULL  # noqa: SIM115
    try:
        for args in (["query"], ["query", "--format", "paths"], ["query", "--format", "json"], ["stats"],
                     ["show", files[0]]):  # fmt: skip
            done = tagger(tmp_path, *args, "--db", dbfile, stdout=out, close=(1,) if stdout == "closed" else ())
            reason = "it is closed" if stdout == "closed" else "No space left on device"
            assert done.returncode == 1, (args, done.stderr)
            assert done.stderr == f"tagger: error: cannot write to standard output: {reason}\n", (args, done.stderr)
    finally:
        if stdout != "closed":
            out.close()
    assert integrity(dbfile) == "ok"


def test_a_reader_that_stopped_reading_ends_the_command_without_a_word(tmp_path, library):
    """``tagger query | head -1`` after ``head`` is gone: exit status 1, nothing on stderr."""
    _, _, dbfile = library
    r, w = os.pipe()
    os.close(r)
    try:
        done = tagger(tmp_path, "query", "--db", dbfile, stdout=w)
    finally:
        os.close(w)
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.parametrize("stderr", ["closed", "/dev/full"])
def test_a_scan_whose_stderr_is_closed_or_full_stores_every_file(tmp_path, stderr):
    """``tagger scan DIR 2>&-`` analysed nothing (tqdm got ``file=None``: a traceback to nowhere, exit
    status 1); its workers, started with fd 2 closed, failed every file with ``unexpected
    AttributeError`` and stored that as its error. With stderr a full disk, the lines of the end
    (``tagger: failed ...``) raised ENOSPC: a traceback instead of the scan's own exit status. Now the
    scan stores every file, and a line stderr cannot take is dropped."""
    if stderr == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    music = tmp_path / "music"
    for name, f in (("bass.wav", 110.0), ("flute.flac", 1000.0), ("string.wav", 4000.0)):
        write_audio(music / name, tone_signal([f], seconds=4.0))
    (music / "broken.mp3").write_bytes(b"not audio " * 100)
    dbfile = tmp_path / "lib.db"
    err = open(stderr, "w") if stderr != "closed" else subprocess.DEVNULL  # noqa: SIM115
    try:
        done = tagger(tmp_path, "scan", music, "--db", dbfile, "--jobs", "2", "--no-write-tags", stderr=err,
                      close=(2,) if stderr == "closed" else ())  # fmt: skip
    finally:
        if stderr != "closed":
            err.close()
    assert done.returncode == 1  # (the broken file)
    assert done.stdout.startswith("3 scanned, 0 skipped unchanged (0 stale), 1 failed"), done.stdout
    assert sorted(statuses(dbfile).values()) == ["error", "ok", "ok", "ok"]
    assert integrity(dbfile) == "ok"


# -- limits -----------------------------------------------------------------------------------------------


def test_a_scan_starts_only_the_workers_the_open_file_limit_leaves_room_for(tmp_path):
    """With ``ulimit -n 24``, ``tagger scan --jobs 4`` failed at a worker's start with a traceback
    ("Too many open files"), nothing analysed. It now starts as many workers as the limit leaves
    room for (here one, or none: all in the scan's process), says so in one line, and stores every file."""
    import resource

    music = tmp_path / "music"
    for i in range(5):
        write_audio(music / f"bass{i}.wav", tone_signal([110.0], seconds=4.0))
    dbfile = tmp_path / "lib.db"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 24:
        pytest.skip(f"the hard open-file limit here is {hard}")
    done = tagger(tmp_path, "scan", music, "--db", dbfile, "--jobs", "4", "--settle-seconds", "0",
                  preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (24, hard)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    warning, = done.stderr.splitlines()
    assert "instead of 4: the open-file limit (ulimit -n 24, " in warning, warning
    assert done.stdout.startswith("5 scanned, 0 skipped unchanged (0 stale), 0 failed"), done.stdout
    assert "tags: 5 tagged, 0 failed" in done.stdout
    assert sorted(statuses(dbfile).values()) == ["ok"] * 5
    assert integrity(dbfile) == "ok"


def test_a_file_size_limit_that_stops_the_database_is_named_and_the_database_stays_whole(tmp_path):
    """With ``ulimit -f`` below what the database grows to, SQLite's write fails with EFBIG, which it
    reports as ``disk I/O error``: the scan's one line now names the limit (it sent the user to
    check a disk that is fine); the database passes its integrity check and the music is as it was."""
    import resource

    music = tmp_path / "music"
    files = [write_audio(music / f"bass{i}.wav", tone_signal([110.0], seconds=4.0)) for i in range(3)]
    before = [f.read_bytes() for f in files]
    dbfile = tmp_path / "lib.db"
    open_database(dbfile).close()  # (the empty library: 68 KiB; its write-ahead log may not grow past 16)
    limit = 16384
    done = tagger(tmp_path, "scan", music, "--db", dbfile, "--jobs", "0", "--no-write-tags",
                  preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("tagger: error: cannot ") and done.stderr.count("\n") == 1, done.stderr
    assert (f" the database sqlite:///{dbfile}: disk I/O error (this process may write files of at most {limit} bytes: "
            "ulimit -f)") in done.stderr, done.stderr  # fmt: skip
    assert integrity(dbfile) == "ok"
    assert [f.read_bytes() for f in files] == before


# -- environment variables ----------------------------------------------------------------------------------


def test_loading_onnx_runtime_writes_nothing_into_the_home_and_says_nothing(tmp_path):
    """ONNX Runtime 1.32's telemetry wrote a device ID and an event store (1.1 MB after a day) under
    ``~/.cache/Microsoft`` whenever tagger imported it; with a home that cannot be written (here a
    file), every command that loads the models printed a coloured "Failed to persist telemetry device
    ID" line on stderr. It is off now (``ORT_DISABLE_TELEMETRY=1``, unless the user set it)."""
    pytest.importorskip("onnxruntime")
    code = (f"import sys; sys.path.insert(0, {str(TESTS.parent)!r})\n"
            "from tagger.model.runtime import onnxruntime_available\n"
            "assert onnxruntime_available()\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_"))}
    home = tmp_path / "home"
    home.mkdir()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    for where in (home, not_a_folder):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**env, "HOME": str(where)})  # fmt: skip
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert list(home.iterdir()) == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (to make the files)")
def test_without_ffmpeg_on_path_no_file_is_analysed_in_part_and_the_next_scan_retries(tmp_path, monkeypatch):
    """$PATH without ffmpeg: a VBR MP3 without a length header was analysed by libsndfile up to the
    length its first frame's bit rate gives (12 s of 40, stored ``ok`` as the whole track: a wrong
    answer), a chained Ogg as its first stream alone; an M4A failed ("ffmpeg is not installed"),
    and once ffmpeg was installed the next scan skipped it as an unchanged failed file ("0 failed").
    Each is now an error naming ffmpeg, the machine's (transient), which the next scan retries."""
    import soundfile as sf

    music = tmp_path / "music"
    music.mkdir()
    src = tmp_path / "src.wav"
    sf.write(str(src), np.concatenate([tone_signal([110.0], seconds=10.0), tone_signal([1000.0], seconds=30.0)]), 16_000)
    ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-i"]
    subprocess.run([*ffmpeg, str(src), "-c:a", "libmp3lame", "-q:a", "9", "-write_xing", "0", str(music / "vbr.mp3")],
                   check=True)  # fmt: skip
    assert sf.info(str(music / "vbr.mp3")).duration < 30  # (libsndfile's guess)
    halves = []
    for i, (a, b) in enumerate(((0, 10), (10, 40))):
        half = tmp_path / f"half{i}.ogg"
        subprocess.run([*ffmpeg, str(src), "-ss", str(a), "-to", str(b), "-c:a", "libvorbis", str(half)], check=True)
        halves.append(half.read_bytes())
    (music / "chained.ogg").write_bytes(b"".join(halves))
    write_audio(music / "flute.m4a", tone_signal([1000.0], seconds=4.0))
    write_audio(music / "bass.flac", tone_signal([110.0], seconds=4.0))
    db = open_database(tmp_path / "lib.db")
    path = os.environ["PATH"]
    nobin = tmp_path / "bin"
    nobin.mkdir()
    monkeypatch.setenv("PATH", str(nobin))
    first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert first.scanned == 1 and first.failed == 3, first.errors
    errors = dict(first.errors)
    assert all("ffmpeg" in errors[str(music / name)] and "is not installed" in errors[str(music / name)]
               for name in ("vbr.mp3", "chained.ogg", "flute.m4a")), errors  # fmt: skip
    monkeypatch.setenv("PATH", path)
    second = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (second.scanned, second.failed, second.skipped) == (3, 0, 1), second.errors
    assert track_instruments(db) == {str(music / "vbr.mp3"): ["bass", "flute"], str(music / "chained.ogg"): ["bass", "flute"],
                                     str(music / "flute.m4a"): ["flute"], str(music / "bass.flac"): ["bass"]}  # fmt: skip
    db.close()


def test_a_file_system_encoding_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    """``PYTHONUTF8=0`` in the C locale (Python then reads file names as ASCII): a scan of a library
    holding ``Björk.wav`` ended in a UnicodeEncodeError traceback (``realpath``), `tag` too, and a
    first scan failed each such file as "not valid UTF-8 ... rename it"; under a Latin-1 locale the
    names would read as others. Every command now refuses in one line saying how to run it; the
    database is left as it was."""
    music = tmp_path / "music"
    names = ("Björk – Jóga.wav", "日本.flac")
    for name in names:
        write_audio(music / name, tone_signal([110.0], seconds=4.0))
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    db.close()
    before = statuses(dbfile)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))},
           "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}  # fmt: skip
    for args in (["scan", music, "--jobs", "0"], ["tag", "--settle-seconds", "0"]):
        done = tagger(tmp_path, *args, "--db", dbfile, env=env)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("tagger: error: Python reads file names as ascii here, not UTF-8 (")
        assert done.stderr.count("\n") == 1, done.stderr
    assert statuses(dbfile) == before == {str(music / name): "ok" for name in names}


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:", "sqlite:///file:lib?mode=memory&uri=true"])
def test_a_database_url_naming_no_file_is_refused_before_a_file_is_touched(tmp_path, monkeypatch, fake_models, url):
    """``TAGGER_DB="sqlite:///$DBFILE"`` with $DBFILE unset is an in-memory SQLite database: `scan`
    analysed and tagged the files, said "1 scanned", exit 0, and its results were gone with the
    process (`query` on it: nothing, exit 0). Such a URL is now refused in one line, the music
    untouched."""
    from typer.testing import CliRunner

    from tagger.cli import app

    music = tmp_path / "music"
    song = write_audio(music / "bass.flac", tone_signal([110.0], seconds=4.0))
    os.utime(song, (1, 1))  # (past the settle time)
    before = song.read_bytes()
    monkeypatch.setenv("TAGGER_DB", url)
    for args in (["scan", str(music), "--jobs", "0"], ["query"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("tagger: error: the database URL sqlite:"), result.output
        assert "names no file: SQLite would hold the library in memory" in result.output
    assert song.read_bytes() == before


def test_the_library_entry_points_refuse_a_file_system_encoding_that_is_not_utf8(tmp_path, monkeypatch):
    """The check lived only in the command line: `scan()` called from Python (the beets plugin calls
    it through `analyse_files`) went on reading names as ASCII. Each entry point that reads the
    library's file names now refuses first (`tagger.paths.check_filesystem_encoding`), the database
    and the files left as they were."""
    from tagger import tags
    from tagger.db.queries import prune_missing
    from tagger.errors import UserError
    from tagger.library.files import analyse_files

    music = tmp_path / "music"
    write_audio(music / "Björk – Jóga.wav", tone_signal([110.0], seconds=4.0))
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    before, data = statuses(dbfile), (music / "Björk – Jóga.wav").read_bytes()
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    calls = {
        "scan": lambda: scan([music], db=db, analyser=FakeAnalyser(), jobs=0),
        "analyse_files": lambda: analyse_files([music / "Björk – Jóga.wav"], db=db, analyser=FakeAnalyser(), jobs=0),
        "tag_from_database": lambda: list(tags.tag_from_database(db)),
        "write_predictions": lambda: list(tags.write_predictions([], roots=[music])),
        "remove_all": lambda: list(tags.remove_all([music])),
        "prune_missing": lambda: prune_missing(db.sessionmaker()),
    }
    for name, call in calls.items():
        with pytest.raises(UserError, match="^Python reads file names as ascii here, not UTF-8 "):
            call()
    db.close()
    assert statuses(dbfile) == before == {str(music / "Björk – Jóga.wav"): "ok"}
    assert (music / "Björk – Jóga.wav").read_bytes() == data


def test_a_current_folder_that_was_deleted_is_refused_in_one_line(tmp_path, library):
    """A shell left in a folder that was deleted (`rm -r` of the folder one is in, an unmounted
    drive): `tagger scan` of the library by its absolute path loaded its models, planned, then ended
    in a FileNotFoundError traceback when its workers started (multiprocessing reads the current
    folder); a relative path (`scan ../music`, `query --db lib.db`) in another. A scan now refuses
    in one line saying what to do, before it reads or creates anything, and so does every command
    given a relative path (`tag song.wav`, `untag`, `predict`: was 'no such file or folder: song.wav',
    where the folder may be there again under the same name); `scan()` from Python raises the same error. Commands given absolute
    paths need no current folder and run (`query`, `tag`, `show`)."""
    from tagger.errors import UserError

    music, files, dbfile = library
    new_music = music / "new.wav"
    write_audio(new_music, tone_signal([220.0], seconds=4.0))
    before, beside = statuses(dbfile), {p.name for p in tmp_path.iterdir()} | {"tagger_cli.py"}
    gone = tmp_path / "gone"

    def leave_a_deleted_folder() -> None:
        gone.mkdir()
        os.chdir(gone)
        gone.rmdir()

    relative_db = os.path.relpath(dbfile, tmp_path)
    for args in (["scan", music, "--db", dbfile], ["scan", "../music", "--db", dbfile],
                 ["query", "--db", f"../{relative_db}"], ["show", "../music/" + os.path.basename(files[0]), "--db", dbfile],
                 ["tag", "../music", "--db", dbfile], ["tag", "new.wav", "--db", dbfile], ["untag", "new.wav"],
                 ["predict", "new.wav"]):  # fmt: skip  (a plain relative name: was 'no such file or folder')
        done = tagger(tmp_path, *args, preexec=leave_a_deleted_folder)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr == ("tagger: error: the current folder no longer exists (it was deleted while this shell "
                               "was in it): `cd` into a folder that exists and run the command again\n"), args  # fmt: skip
        assert done.stdout == ""
    assert statuses(dbfile) == before and str(new_music) not in before
    for args in (["query", "--db", dbfile, "-f", "paths"], ["show", files[0], "--db", dbfile], ["stats", "--db", dbfile]):
        done = tagger(tmp_path, *args, preexec=leave_a_deleted_folder)  # (absolute paths: no current folder needed)
        assert done.returncode == 0 and done.stderr == "" and done.stdout, (args, done.stderr)
    assert statuses(dbfile) == before
    assert {p.name for p in tmp_path.iterdir()} == beside  # (tagger_cli.py: the script the runs start)

    here = os.getcwd()
    leave_a_deleted_folder()
    try:
        db = open_database(dbfile)
        try:
            with pytest.raises(UserError, match="the current folder no longer exists"):
                scan([music], db=db, analyser=FakeAnalyser(), jobs=1)
        finally:
            db.close()
    finally:
        os.chdir(here)
    assert statuses(dbfile) == before


def _no_home(monkeypatch) -> None:
    """As for a user without a home: no $HOME, no entry in the user database (a container run as an
    arbitrary user id), so that ``os.path.expanduser('~')`` stays ``'~'``."""
    import pwd

    def unknown(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("HOME", "XDG_DATA_HOME", "TAGGER_DB", "KERAS_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)


def test_without_a_home_the_default_database_is_one_line_and_nothing_is_made_in_the_current_folder(tmp_path, monkeypatch):
    """A user with no home (no $HOME, no entry in the user database) got platformdirs' RuntimeError
    traceback from every command that opens the default database, and a scan given --db made
    `~/.keras/keras.json` under the current folder (the music library, here), written by TensorFlow's
    Keras as it was imported. The first is one line saying what to set; Keras is given its own
    fallback folder, under the temporary folder."""
    from typer.testing import CliRunner

    from tagger.cli import app

    _no_home(monkeypatch)
    music = tmp_path / "music"
    music.mkdir()
    monkeypatch.chdir(music)
    assert os.path.expanduser("~") == "~"
    for args in (["stats"], ["query"], ["scan", "."], ["db", "upgrade"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1 and r.output.startswith("tagger: error: no home folder to keep the library database in"), r.output
        assert "Traceback" not in r.output and "set HOME or XDG_DATA_HOME, or give --db" in r.output
    code = (f"import sys, pwd; sys.path.insert(0, {str(TESTS.parent)!r})\n"
            "def unknown(uid): raise KeyError(uid)\n"
            "pwd.getpwuid = unknown\n"
            "from tagger.model.backends import quiet_tensorflow\n"
            "quiet_tensorflow()\n"
            "import tensorflow.python.keras.backend\n")  # fmt: skip
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "KERAS_HOME")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=music,
                          env={**env, "TMPDIR": str(tmp_path / "tmp")})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.listdir(music) == []

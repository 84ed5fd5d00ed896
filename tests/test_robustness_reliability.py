"""Reliability (issue 16 part B): exit codes, tag writes retried until they succeed, transient errors
retried and never carried to a moved file, one library through symbolic links, copies claimed only
for identical contents, roots checked before anything is created, killed scans leave no process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import UNTAG_KNOWN, predicted, tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.cli import app
from tagger.db import models as M
from tagger.db.queries import find_tracks
from tagger.db.session import open_database
from tagger.errors import UserError
from tagger.fingerprint import fingerprint
from tagger.library.scan import scan, tag_writer

TESTS = Path(__file__).resolve().parent


def _rows(db) -> dict[str, tuple]:
    with db.session() as s:
        return {p: (st, e, tc) for p, st, e, tc in s.execute(select(M.Track.path, M.Track.status, M.Track.error,
                                                                       M.Track.tags_current))}  # fmt: skip


def _instruments(db) -> dict[str, list[str]]:
    with db.session() as s:
        return {t.path: t.instruments for t in find_tracks(s)}


# -- 5: exit codes ---------------------------------------------------------------------------------


def test_scan_exits_1_when_a_file_or_a_tag_write_failed(tmp_path, fake_models):
    music = tmp_path / "music"
    good = write_audio(music / "bass.wav", tone_signal([110.0], seconds=4.0))
    dbfile = str(tmp_path / "lib.db")
    runner = CliRunner()
    r = runner.invoke(app, ["scan", str(music), "--db", dbfile, "--jobs", "0"])
    assert r.exit_code == 0, r.output
    assert "1 scanned" in r.output and "tags: 1 tagged, 0 failed" in r.output

    (music / "broken.mp3").write_bytes(b"not audio at all " * 100)  # a file that fails
    r = runner.invoke(app, ["scan", str(music), "--db", dbfile, "--jobs", "0"])
    assert r.exit_code == 1, r.output
    assert "1 failed" in r.output
    r = runner.invoke(app, ["scan", str(music), "--db", dbfile, "--jobs", "0", "--json"])
    assert r.exit_code == 0, r.output  # nothing new failed (the broken file is an old, unchanged error)

    ro = write_audio(music / "flute.wav", tone_signal([1000.0], seconds=4.0))  # a tag write that fails
    os.chmod(ro, 0o444)
    r = runner.invoke(app, ["scan", str(music), "--db", dbfile, "--jobs", "0"])
    assert r.exit_code == 1, r.output
    assert "tags: 0 tagged, 1 failed" in r.output
    assert f"tagger: tags not written {ro}: file is read-only" in r.output  # named, not only counted
    r = runner.invoke(app, ["scan", str(music), "--db", dbfile, "--jobs", "0", "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["tag_failures"] == [{"path": str(ro), "error": "file is read-only"}]
    assert tags.read_instruments(good).instruments == ["bass"]


# -- 6: tags not written are retried ------------------------------------------------------------------


def test_a_tag_write_that_failed_is_retried_by_the_next_scan(tmp_path, db):
    music = tmp_path / "music"
    f = write_audio(music / "duo.flac", tone_signal([110.0, 1000.0], seconds=5.0))
    os.chmod(f, 0o444)
    first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (first.scanned, first.tag_errors, first.tags_written) == (1, 1, 0)
    assert _rows(db)[str(f)] == ("ok", None, False)
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (again.scanned, again.tag_errors) == (0, 1)  # still read-only: tried again, failed again

    os.chmod(f, 0o644)
    fixed = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (fixed.scanned, fixed.skipped, fixed.tags_written, fixed.tag_errors) == (0, 1, 1, 0)
    assert tags.read_instruments(f) == tags.TagState(["bass", "flute"], "fake-1")
    assert _rows(db)[str(f)] == ("ok", None, True)
    with db.session() as s:  # the rewritten file's new facts are recorded: the next scan skips it
        row = s.scalar(select(M.Track).where(M.Track.path == str(f)))
        assert (row.size, row.mtime, row.fingerprint) == (os.stat(f).st_size, os.stat(f).st_mtime, fingerprint(f))
    last = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (last.scanned, last.skipped, last.tags_written) == (0, 1, 0)


def test_tags_left_unwritten_by_a_dry_run_or_no_write_tags_are_written_by_the_next_scan(tmp_path, db):
    music = tmp_path / "music"
    a = write_audio(music / "a.flac", tone_signal([110.0], seconds=4.0))
    b = write_audio(music / "b.flac", tone_signal([4000.0], seconds=4.0))
    scan([music / "a.flac"], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1", dry_run=True))
    scan([music / "b.flac"], db=db, analyser=FakeAnalyser(), jobs=0)  # --no-write-tags
    assert not tags.read_instruments(a).tagged and not tags.read_instruments(b).tagged
    s = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (s.scanned, s.skipped, s.tags_written) == (0, 2, 2)
    assert tags.read_instruments(a) == tags.TagState(["bass"], "fake-1")
    assert tags.read_instruments(b) == tags.TagState(["string"], "fake-1")


# -- 7: transient errors -------------------------------------------------------------------------------


class _Deleter(FakeAnalyser):
    """Deletes a file while the scan analyses it (on its first prediction)."""

    def __init__(self, target: Path):
        super().__init__()
        self.target = target

    def predict_features(self, feats):
        if self.calls == 0:
            self.saved = self.target.read_bytes()
            self.target.unlink()
        return super().predict_features(feats)


def test_a_transient_error_does_not_follow_a_moved_file(tmp_path, db):
    music = tmp_path / "music"
    first = write_audio(music / "a.wav", tone_signal([110.0], seconds=8.0))
    deleter = _Deleter(first)
    s1 = scan([music], db=db, analyser=deleter, jobs=0, predict_batch=1)
    assert s1.failed == 1
    moved = music / "renamed.wav"
    moved.write_bytes(deleter.saved)  # the same file back, under a new name
    s2 = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (s2.moved, s2.scanned, s2.failed, s2.missing) == (0, 1, 0, 1)
    rows = _rows(db)
    assert rows[str(moved)][:2] == ("ok", None)
    assert rows[str(first)][0] == "missing"
    assert _instruments(db) == {str(moved): ["bass"]}
    r = CliRunner().invoke(app, ["errors", "--db", db.url, "--json"])
    assert r.exit_code == 0 and "renamed.wav" not in r.output


def test_a_transient_error_is_retried_without_retry_errors(tmp_path, db):
    music = tmp_path / "music"
    first = write_audio(music / "a.wav", tone_signal([110.0], seconds=8.0))
    deleter = _Deleter(first)
    scan([music], db=db, analyser=deleter, jobs=0, predict_batch=1)
    first.write_bytes(deleter.saved)  # back under the same name (e.g. a sync tool replacing it)
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (again.scanned, again.skipped, again.failed) == (1, 0, 0)
    assert _instruments(db) == {str(first): ["bass"]}
    # a lasting error (not audio) is not retried without --retry-errors
    (music / "broken.mp3").write_bytes(b"not audio " * 100)
    assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).failed == 1
    assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).failed == 0


class _Editor(FakeAnalyser):
    """A tag editor saves the file (a new title, in place) while the scan analyses it again."""

    def __init__(self, target: Path, **kw):
        super().__init__(**kw)
        self.target = target

    def predict_features(self, feats):
        if self.calls == 0:
            import soundfile as sf

            with sf.SoundFile(self.target, "r+") as f:  # (an in-place save: the same audio, a new INFO title)
                f.title = "edited while analysed"
        return super().predict_features(feats)


def test_a_file_edited_while_analysed_again_keeps_its_results_until_the_next_scan(tmp_path, db):
    """A tag editor (or `tagger tag`, or beets) saving a file while a scan analysed it again
    (`--rescan-stale` after a model update) turned its track into an error row: its results were
    deleted, and the library no longer found it by instrument until a later scan. The scan still
    says the file changed while it was read, and the next scan analyses it again, but the results
    stay meanwhile."""
    music = tmp_path / "music"
    song = write_audio(music / "a.wav", tone_signal([110.0], seconds=8.0))
    assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 1
    editor = _Editor(song, version="fake-2")
    again = scan([music], db=db, analyser=editor, jobs=0, predict_batch=1, rescan_stale=True)
    assert again.failed == 1 and "changed" in again.errors[0][1], again.errors
    assert _instruments(db) == {str(song): ["bass"]}  # still found
    assert _rows(db)[str(song)][:2] == ("ok", None)
    later = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True)
    assert (later.scanned, later.failed) == (1, 0)
    with db.session() as s:
        assert s.scalar(select(M.Track).where(M.Track.path == str(song))).model_version.version == "fake-2"


# -- 8: symbolic links to the library ---------------------------------------------------------------


def test_scanning_through_a_symlinked_path_stores_each_file_once(tmp_path, db):
    lib = tmp_path / "lib"
    files = [write_audio(lib / f"{i}.wav", tone_signal([110.0 * (i + 1)], seconds=4.0)) for i in range(3)]
    link = tmp_path / "lib_link"
    os.symlink(lib, link)
    scan([link], db=db, analyser=FakeAnalyser(), jobs=0)
    again = scan([lib], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (again.scanned, again.skipped, again.missing) == (0, 3, 0)
    assert sorted(_rows(db)) == sorted(str(f) for f in files)
    r = CliRunner().invoke(app, ["show", str(link / "0.wav"), "--db", db.url, "--json"])
    assert r.exit_code == 0 and str(files[0]) in r.output


# -- 9: copies only for identical contents ------------------------------------------------------------


def test_different_audio_with_the_same_fingerprint_is_not_taken_for_a_copy(tmp_path, db):
    music = tmp_path / "music"
    a = write_audio(music / "a.wav", tone_signal([110.0], seconds=30.0))  # 960 KB of 16-bit PCM
    b = music / "b.wav"
    other = write_audio(tmp_path / "flute.wav", tone_signal([1000.0], seconds=30.0)).read_bytes()
    data = bytearray(a.read_bytes())
    data[70_000:440_000] = other[70_000:440_000]  # outside the first, middle and last 64 KiB
    b.write_bytes(bytes(data))
    assert fingerprint(a) == fingerprint(b) and a.read_bytes() != b.read_bytes()
    scan([music / "a.wav"], db=db, analyser=FakeAnalyser(), jobs=0)
    s = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (s.copied, s.scanned) == (0, 1)
    assert _instruments(db)[str(b)] == ["bass", "flute"]
    shutil.copy(a, music / "c.wav")  # a real copy still gets a copy of the results
    s = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (s.copied, s.scanned) == (1, 0)
    assert _instruments(db)[str(music / "c.wav")] == ["bass"]


# -- 15: roots checked before anything is created -------------------------------------------------------


def test_a_missing_root_creates_no_database_and_a_fifo_is_not_a_folder(tmp_path, fake_models):
    dbfile = tmp_path / "data" / "lib.db"
    r = CliRunner().invoke(app, ["scan", str(tmp_path / "nowhere"), "--db", str(dbfile)])
    assert r.exit_code == 1 and "no such file or folder" in r.output
    assert not (tmp_path / "data").exists()  # neither the database nor its lock file
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = CliRunner().invoke(app, ["scan", str(fifo), "--db", str(dbfile)])
    assert r.exit_code == 1 and f"{fifo}: not a folder nor a regular file" in r.output, r.output
    assert not (tmp_path / "data").exists()
    with pytest.raises(UserError, match="not a folder"):
        scan([fifo], db=open_database(tmp_path / "other.db"), analyser=FakeAnalyser(), jobs=0)


# -- 4: a killed or interrupted scan leaves no process behind and stores what it analysed ------------

KILL_SCRIPT = """
import os, sys
sys.path[:0] = [{tests!r}, {root!r}]  # this checkout's tagger, whatever is installed
from library_fakes import FakeAnalyser
from tagger.db.session import open_database
from tagger.library.scan import scan

class Counting(FakeAnalyser):  # each prediction begun once the test's mark exists (made after its signal): a line there
    def predict_features(self, feats, batch_size=None):
        if os.path.exists(sys.argv[3]):
            with open(sys.argv[3], "a") as f:
                f.write("predicted\\n")
        return super().predict_features(feats, batch_size)

def progress(p):
    if p.phase == "analyse" and p.files_done >= 2:
        print("analysed", p.files_done, flush=True)

if __name__ == "__main__":
    # (a test run started in the background by a shell without job control inherits SIGINT ignored,
    # which the scan rightly keeps ignored; these tests are about a terminal's Ctrl-C)
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    db = open_database(sys.argv[1])
    try:  # nothing committed before the end or a stop: what is stored after a stop was stored by it
        scan([sys.argv[2]], db=db, analyser=Counting(delay=0.3), jobs=2, predict_batch=1,
             commit_every=10_000, commit_seconds=10_000, progress=progress)
    except BaseException as exc:  # ScanInterrupted
        print("stopped:", exc, flush=True)
        sys.exit(getattr(exc, "exit_code", 1))
    print("finished", flush=True)
"""


def _children(pid: int) -> set[int]:
    """Every descendant process of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(text.rsplit(")", 1)[1].split()[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.update(kids)
        todo.extend(kids)
    return out


def _wait_gone(pids: set[int], seconds: float = 60.0) -> set[int]:
    """The processes among `pids` still alive after up to `seconds` (a bound on a wait that normally
    ends at once: 5 s was a margin a loaded machine could use up)."""
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.fixture(scope="module")
def kill_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill") / "music"
    for i in range(10):
        write_audio(root / f"{i}.wav", tone_signal([110.0 * (1 + i % 3)], seconds=12.0))
    return root


def _start_scan(tmp_path, music):
    script = tmp_path / "scan_script.py"
    script.write_text(KILL_SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent)))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "lib.db"), str(music), str(tmp_path / "signalled")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    line = proc.stdout.readline()
    assert line.startswith("analysed"), line + proc.stderr.read()
    kids = _children(proc.pid)
    assert len(kids) >= 3, kids  # two workers and the multiprocessing resource tracker
    return proc, kids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_killed_scan_leaves_no_worker_processes_behind(tmp_path, kill_library, sig):
    proc, kids = _start_scan(tmp_path, kill_library)
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout=120)
        assert _wait_gone(kids) == set()
    finally:
        for pid in _alive(kids | {proc.pid}):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stores_the_files_already_analysed_and_stops_within_a_second(tmp_path, kill_library, sig):
    """The scan stops at once: no prediction (0.3 s each here) begins once the signal has come but the
    one it may have been about to begin (was timed: the stop within 2.5 s, which a loaded machine
    could take for the stop alone; the mark made after the signal counts the scan's own steps, and a
    test slow to make it only counts fewer)."""
    proc, kids = _start_scan(tmp_path, kill_library)
    try:
        os.killpg(proc.pid, sig)  # Ctrl-C: the whole process group
        (tmp_path / "signalled").write_text("")
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 128 + sig, out
        assert "stopped: interrupted (" + signal.Signals(sig).name + ")" in out
        assert (tmp_path / "signalled").read_text().count("predicted") <= 1, "the scan went on predicting after the signal"
        assert _wait_gone(kids) == set()
    finally:
        for pid in _alive(kids | {proc.pid}):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()
    db = open_database(tmp_path / "lib.db")
    try:
        with db.session() as s:
            stored = s.scalars(select(M.Track).where(M.Track.status == M.STATUS_OK)).all()
            assert len(stored) >= 2  # at least the files done before the signal
            assert all(len(t.detections) == 3 for t in stored)
    finally:
        db.close()


def _default_signals() -> None:
    """In the child: SIGINT, SIGHUP and SIGTERM as a shell's foreground command gets them. Under
    `nohup` (SIGHUP ignored) or a non-interactive shell's `&` (SIGINT ignored) the test's own process
    hands them on ignored, and tagger rightly keeps a signal its caller ignores, so the command ran
    to its end: the SIGHUP and SIGINT cases failed in a fresh clone's run started so."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _start_tagger(*args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tagger", *args], stdout=stdout, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals,
                            text=True, start_new_session=True, cwd=str(TESTS.parent),
                            env={**os.environ, "PYTHONPATH": str(TESTS.parent)})  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
@pytest.mark.parametrize("command, sig", [("tag", signal.SIGTERM), ("tag", signal.SIGHUP), ("tag", signal.SIGINT),
                                          ("tag --from-json", signal.SIGTERM), ("untag", signal.SIGTERM)])  # fmt: skip
def test_a_signal_stops_tag_and_untag_after_the_file_they_were_on(tmp_path, command, sig):
    """SIGTERM (a service stopped, `timeout`) or SIGHUP (a closed terminal) killed `tag` and `untag`
    wherever they were: no summary, no word, exit status -15, and a hidden copy of the file being
    written left in the library (`.NAME.XXXXXXXX.tagger-tmp`, found by hand). Now they stop as a scan
    does: after the file they were on, that file written (and recorded) whole, the summary, one line
    naming the signal, exit status 128 + its number. Its output goes to a pipe of one page (4096
    bytes) read only once the signal is sent, and each line names a file of a 200-letter name: the
    command blocks on its output after about a dozen of the 30 files, so the signal always comes
    before the last file, however loaded the machine. (The command is started with the signals'
    default dispositions, `_default_signals`: a test run under `nohup` handed SIGHUP on ignored.)"""
    music = tmp_path / "music"
    long = "x" * 200
    files = [write_audio(music / f"{i:02}{long}.flac", tone_signal([110.0 * (1 + i % 4)], seconds=1.0)) for i in range(30)]
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    try:
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # stored, no tags written
    finally:
        db.close()
    if command == "untag":
        r = CliRunner().invoke(app, ["tag", "--db", str(dbfile)])
        assert r.exit_code == 0 and "30 tagged" in r.output, r.output
        args = ["untag", *UNTAG_KNOWN, str(music)]
    elif command == "tag --from-json":
        rows = tmp_path / "rows.jsonl"
        rows.write_text("".join(json.dumps(predicted(f, instruments=["bass"], model_version="m-1")) + "\n" for f in files))
        args = ["tag", "--from-json", str(rows)]
    else:
        args = ["tag", "--db", str(dbfile)]
    import fcntl
    import termios

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = _start_tagger(*args, stdout=write_end)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # (until the pipe is about full: blocked)
            held = fcntl.ioctl(read_end, termios.FIONREAD, b"\0\0\0\0")
            if int.from_bytes(held, sys.byteorder) >= 4096 - 600:
                break
            time.sleep(0.01)
        os.kill(proc.pid, sig)
        with os.fdopen(read_end, "r") as pipe:
            out = pipe.read()
        err = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.startswith(f"{args[0]}ged "), out + err
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert f"tagger: error: interrupted ({signal.Signals(sig).name}): stopped after the file it was on" in err
    done = {line.split(" ")[1].rstrip(":") for line in out.splitlines()}
    assert 1 <= len(done) < len(files)  # stopped, not run to the end
    assert f"{len(done)} {args[0]}ged, 0 unchanged, 0 skipped" in err
    assert [p.name for p in music.iterdir() if p.name.startswith(".")] == []  # no copy left behind
    for f in files:  # each file as its line says: written (whole, its tags readable) or left as it was
        assert tags.read_instruments(f).tagged == ((str(f) in done) != (command == "untag")), f
    if command == "tag":
        db = open_database(dbfile)
        try:
            assert {p for p, (_st, _e, current) in _rows(db).items() if current} == done  # each written one recorded
        finally:
            db.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and leases as on Linux")
@pytest.mark.parametrize("step", ["copy", "backup", "removal"])
def test_a_second_signal_as_a_hidden_copy_is_made_or_removed_leaves_none(tmp_path, monkeypatch, step):
    """The second SIGTERM (or SIGINT, SIGHUP) of a `tag` or `untag` run interrupts at once, wherever
    Python is. Arriving right as the hidden copy was created (``copy``: inside `tempfile.mkstemp`,
    which gives the name only once the file exists) or the backup link made (``backup``), it left
    that file in the library (`.NAME.XXXXXXXX.tagger-tmp`), its name never recorded for the
    clean-up; arriving as the clean-up began (``removal``, after a write), it left the backup link.
    The signal is sent here from inside that system call; the run is interrupted still (the first
    signal came before), but after the clean-up."""
    from tagger.library.state import StopSignals

    song = write_audio(tmp_path / "song.flac", tone_signal([110.0], seconds=1.0))
    before = song.read_bytes()
    real = {"copy": os.open, "backup": os.link, "removal": os.unlink}[step]
    sent = []

    def signalled(*args, **kwargs):
        name = os.path.basename(args[1] if step == "backup" else args[0])
        if step == "removal" and not sent and tags.is_temp_name(name):
            sent.append(name)
            os.kill(os.getpid(), signal.SIGTERM)  # (before the removal)
        result = real(*args, **kwargs)
        if step != "removal" and not sent and tags.is_temp_name(name):
            sent.append(name)
            os.kill(os.getpid(), signal.SIGTERM)  # (the file there, its name not yet returned)
        return result

    monkeypatch.setattr(os, {"copy": "open", "backup": "link", "removal": "unlink"}[step], signalled)
    with StopSignals() as stop:
        stop.signum = signal.SIGTERM  # the first signal came: the run stops after this file
        with pytest.raises(KeyboardInterrupt):
            tags.write_instruments(song, instruments=["bass"], model_version="m-1")
    monkeypatch.undo()
    assert sent, "the write never reached the step"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    if step == "removal":  # (interrupted after the rename: the file is the tagged one, whole)
        assert tags.read_instruments(song).instruments == ["bass"]
    else:
        assert song.read_bytes() == before


LOCK_WAIT_SCRIPT = """
import sys
sys.argv[0] = "tagger"
import tagger.db.engine
tagger.db.engine.BUSY_TIMEOUT_S = 600.0  # (the test's lock outlasts any wait of the test)
from tagger.cli import main
main()
"""


def _in_a_sleep(pid: int) -> bool:
    """Whether the process ``pid``'s main thread is in nanosleep or clock_nanosleep (x86-64, arm64):
    SQLite's busy handler sleeping between its tries at a lock."""
    import platform

    sleeps = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}.get(platform.machine())
    if sleeps is None:
        pytest.skip("system call numbers of this machine not known")
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] in sleeps
    except PermissionError:
        pytest.skip("/proc/PID/syscall not readable here")
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def _pending(pid: int) -> int:
    """The signals sent to the process ``pid`` and not yet taken by it (a mask, bit N - 1 for signal N)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return int(fields.get("ShdPnd", "0"), 16) | int(fields.get("SigPnd", "0"), 16)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("command", ["tag", "untag"])
def test_a_second_ctrl_c_stops_a_command_waiting_for_a_locked_sqlite_database(tmp_path, command):
    """Two Ctrl-Cs to a `tag` or `untag` whose record of a written file waited for the database's write
    lock, held by another process, ended it only when SQLite's busy timeout ran out (31 s, found by
    hand): inside SQLite's wait no Python signal handler runs. The second now ends it at once
    (`tagger.signals.watch_stop_signals`): exit status 130, ``tagger: error: interrupted``, the file
    left as it was or written whole, no hidden copy left, the database whole. The command's busy
    timeout is 600 s here: the old code could not end within the test's wait. The signals are sent
    once it is at the file (its copy made, or the file written) and sleeps in SQLite's busy handler
    (`tag` recording the write as pending, before the copy replaces the file; `untag` recording it
    after), the second once the first is taken (two pending are one)."""
    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=1.0))
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    try:
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # stored, no tags written
    finally:
        db.close()
    if command == "untag":
        r = CliRunner().invoke(app, ["tag", "--db", str(dbfile), "--settle-seconds", "0"])
        assert r.exit_code == 0 and "1 tagged" in r.output, r.output
    before = song.read_bytes()
    script = tmp_path / "tagger_cli.py"
    script.write_text(LOCK_WAIT_SCRIPT)
    locker = sqlite3.connect(dbfile, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process's write, held to the test's end
    try:
        proc = subprocess.Popen([sys.executable, str(script), command, "--db", str(dbfile), "--settle-seconds", "0",
                                 str(music)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_signals, text=True,
                                start_new_session=True, cwd=str(TESTS.parent),
                                env={**os.environ, "PYTHONPATH": str(TESTS.parent)})  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:  # at the file, then waiting for the lock
                at_it = any(tags.is_temp_name(p.name) for p in music.iterdir()) or song.read_bytes() != before
                if at_it and _in_a_sleep(proc.pid):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()
            os.kill(proc.pid, signal.SIGINT)
            while proc.poll() is None and _pending(proc.pid) & (1 << (signal.SIGINT - 1)):  # (two pending are one)
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{command} still waiting for the database after two Ctrl-Cs")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        locker.rollback()
        locker.close()
    assert proc.returncode == 130, (out, err)
    assert "tagger: error: interrupted" in err
    assert "Traceback" not in err
    assert [p.name for p in music.iterdir()] == ["song.flac"]  # no copy left behind
    # left as it was (`tag`: its copy was to replace it once recorded as pending) or written whole (`untag`:
    # its write recorded after it)
    assert song.read_bytes() == before or tags.read_instruments(song).tagged == (command == "tag")
    if song.read_bytes() != before:  # (`untag`: written, its record waited; was: not said)
        assert f"{song}: written whole, but interrupted before it was recorded in the library database" in err
    with sqlite3.connect(dbfile) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db = open_database(dbfile)
    try:
        assert list(_rows(db)) == [str(song)]
    finally:
        db.close()


# -- 15: small lies ------------------------------------------------------------------------------------


FORCED_STOP_OUTPUT_SCRIPT = """
import sqlite3, sys
from tagger.db.sqlite_calls import Connection, main_call
from tagger.outputs import write_atomic
from tagger.signals import watch_stop_signals

watch_stop_signals(main_call)


def write(name):
    with open(name, "w") as f:
        f.write("#EXTM3U\\n")
    connection = sqlite3.connect(sys.argv[1], timeout=600, factory=Connection)
    connection.execute("SELECT count(*) FROM t").fetchone()  # (waits for the test's lock)


write_atomic(sys.argv[2], write)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stop_at_once_inside_sqlite_removes_the_temporary_file_of_an_output_being_written(tmp_path):
    """`tagger query -o list.m3u` streams its tracks from the database into a hidden temporary file
    beside ``list.m3u`` (`tagger.outputs.write_atomic`), under Python's own SIGINT handler: since
    5ccc1d4 a Ctrl-C that comes while a read waits inside SQLite for more than 0.5 s (a database
    another process holds locked) ends the process at once (`tagger.signals.watch_stop_signals`,
    ``os._exit``), past write_atomic's removal of that file, which was left in the folder
    (``.list.m3u.XXXXXXXX.tmp``; found reviewing 5ccc1d4 against what ``os._exit`` skips). The
    temporary file is now removed by the stop at once as a tag write's hidden copy is."""
    dbfile = tmp_path / "lib.db"
    with sqlite3.connect(dbfile) as setup:  # (rollback journal: a writer's exclusive lock holds readers back)
        setup.execute("CREATE TABLE t (x)")
    out = tmp_path / "lists"
    out.mkdir()
    script = tmp_path / "write_output.py"
    script.write_text(FORCED_STOP_OUTPUT_SCRIPT)
    locker = sqlite3.connect(dbfile, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        proc = subprocess.Popen([sys.executable, str(script), str(dbfile), str(out / "list.m3u")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_signals, text=True,
                                start_new_session=True, cwd=str(TESTS.parent),
                                env={**os.environ, "PYTHONPATH": str(TESTS.parent)})  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:  # its file made, then waiting for the lock
                if any(out.iterdir()) and _in_a_sleep(proc.pid):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()
            os.kill(proc.pid, signal.SIGINT)
            try:
                out_text, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("still waiting for the database after a Ctrl-C")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        locker.rollback()
        locker.close()
    assert proc.returncode == 130, (out_text, err)
    assert "tagger: error: interrupted" in err
    assert list(out.iterdir()) == []  # neither the list nor its temporary file


def test_tag_of_a_nonexistent_path_is_an_error_not_0_tagged(tmp_path):
    r = CliRunner().invoke(app, ["tag", str(tmp_path / "nonexistent.mp3"), "--db", str(tmp_path / "lib.db")])
    assert r.exit_code == 1
    assert f"tagger: error: no such file or folder: {tmp_path / 'nonexistent.mp3'}" in r.output
    assert "0 tagged" not in r.output


@pytest.mark.parametrize("fmt", ["paths", "m3u"])
def test_query_paths_and_m3u_leave_out_a_path_with_a_newline_and_name_it(fmt, caplog):
    from tagger.db.queries import TrackSummary
    from tagger.library.report import render_tracks

    good = TrackSummary("/m/good.flac", 10.0, "FLAC", ["bass"], {"bass": 0.9}, "v", False)
    bad = TrackSummary("/m/two\nlines.flac", 10.0, "FLAC", ["bass"], {"bass": 0.9}, "v", False)
    with caplog.at_level("WARNING", logger="tagger.library.report"):
        text = render_tracks([bad, good], fmt=fmt)
    entries = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert entries == ["/m/good.flac"]
    assert "lines.flac" not in text
    assert any("two\\nlines.flac" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("threshold", [-5, 1.5, "0.5", None])
def test_a_manifest_threshold_outside_0_1_is_refused_naming_the_manifest(tmp_path, threshold):
    import json

    from tagger.errors import ModelError
    from tagger.model.ensemble import MANIFEST_FORMAT, read_manifest

    manifest = {"format": MANIFEST_FORMAT, "version": "v", "families": ["bass"], "features": {},
                "classifiers": {"bass": {"file": "bass.keras", "sha256": "0", "threshold": threshold}}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"manifest.json: threshold of 'bass' is .*must lie in \[0, 1\]"):
        read_manifest(tmp_path)
    manifest["classifiers"]["bass"]["threshold"] = 0.35
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(tmp_path)["classifiers"]["bass"]["threshold"] == 0.35


# -- 14: one line instead of a traceback --------------------------------------------------------------


@pytest.mark.parametrize("address", ["garbage", "tcp://", "tcp://host:99999", "http://host:8786"])
def test_a_malformed_dask_scheduler_address_is_one_line_at_once(tmp_path, fake_models, monkeypatch, address):
    """Refused before any connection is tried (was timed: under 5 s, which a loaded machine could
    take for the command alone; a connection tried now fails the test whatever the clock says)."""
    from tagger.library import distributed

    def connect(self, client_class):
        raise AssertionError(f"a connection to {self.scheduler!r} was tried")

    monkeypatch.setattr(distributed.DaskBackend, "_connect", connect)
    music = tmp_path / "music"
    write_audio(music / "bass.wav", tone_signal([110.0], seconds=4.0))
    r = CliRunner().invoke(app, ["scan", str(music), "--db", str(tmp_path / "lib.db"), "--backend", "dask",
                                 "--scheduler", address])  # fmt: skip
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        f"tagger: error: invalid Dask scheduler address {address!r}: expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
    ]
    assert not (tmp_path / "lib.db").exists()


def test_scheduler_addresses_are_normalised():
    from tagger.library.distributed import check_scheduler_address

    assert check_scheduler_address("10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert check_scheduler_address("tls://sched.example.org:8786") == "tls://sched.example.org:8786"
    assert check_scheduler_address("tcp://[::1]:8786") == "tcp://[::1]:8786"


def test_tensorflow_starts_without_a_line_on_stderr(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    env["PYTHONPATH"] = str(TESTS.parent)
    code = ("from tagger.cli.app import quiet_tensorflow\nquiet_tensorflow()\nimport tensorflow as tf\n"
            "print(float((tf.constant([1.0]) + 1)[0]))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2.0"
    assert r.stderr == ""


def test_a_corrupt_mp3_prints_nothing_from_the_decoder_on_stderr(tmp_path, capfd):
    import random

    from tagger import audio

    good = write_audio(tmp_path / "good.mp3", tone_signal([440.0], seconds=5.0))
    data = bytearray(good.read_bytes())
    rng = random.Random(1)
    for i in range(2000, len(data), 97):
        data[i] = rng.randrange(256)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(bytes(data))
    capfd.readouterr()
    try:
        meta = audio.info(bad)
        sum(len(b) for b in audio.stream(bad, meta=meta))
    except Exception as exc:  # a decoding error is fine; noise on the terminal is not
        assert "bad.mp3" in str(exc)
    print("after", file=sys.stderr)  # stderr itself still works
    err = capfd.readouterr().err
    assert err == "after\n", err


@pytest.mark.integration
def test_a_database_in_a_read_only_folder_can_still_be_queried(tmp_path):
    """Item 15: a database on a read-only file system (a backup, a mounted share) answers queries;
    only writing commands refuse, in one line."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount to make a read-only file system")
    where = tmp_path / "ro"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        db_path = where / "library.db"
        music = tmp_path / "music"
        write_audio(music / "a.wav", tone_signal([220.0], seconds=4.0))
        from tagger.library.scan import scan

        db = open_database(db_path)
        scan([str(music)], db=db, analyser=FakeAnalyser(), jobs=0)
        db.engine.dispose()
        assert subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True).returncode == 0
        runner = CliRunner()
        res = runner.invoke(app, ["query", "--db", str(db_path), "--format", "paths"])
        assert res.exit_code == 0, res.output
        assert res.output.strip() == str((music / "a.wav").resolve())
        res = runner.invoke(app, ["stats", "--db", str(db_path)])
        assert res.exit_code == 0 and "tracks: 1" in res.output, res.output
        res = runner.invoke(app, ["scan", str(music), "--db", str(db_path)])
        assert res.exit_code == 1
        assert res.output.count("\n") == 1 and "read-only" in res.output, res.output
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_hard_links_are_the_same_content_without_reading_them(tmp_path):
    """Item 9's full-content check must not read a hard-linked library twice (1,000 links of a big
    file would read it 1,000 times); other files are hashed whole and compared with the hash stored
    with the results. A link made since the analysis (the file's ctime another: a write in place
    with the mtime set back changes it too) is read."""
    from types import SimpleNamespace

    from tagger.fingerprint import content_hash
    from tagger.library.plan import copied_from

    a = tmp_path / "a.wav"
    a.write_bytes(b"RIFF" + bytes(100_000))
    os.link(a, tmp_path / "b.wav")
    (tmp_path / "c.wav").write_bytes(b"RIFF" + bytes(99_999) + b"\x01")
    st = os.stat(a)
    track = SimpleNamespace(path=str(a), mtime=st.st_mtime, ctime_ns=st.st_ctime_ns, content_hash=content_hash(a))
    read = []

    def digest(path):
        return lambda: read.append(path) or content_hash(path)

    b, c = str(tmp_path / "b.wav"), str(tmp_path / "c.wav")
    assert copied_from([track], b, st=os.stat(b), digest=digest(b)) is track and read == []
    assert copied_from([track], c, st=os.stat(c), digest=digest(c)) is None and read == [c]
    track.ctime_ns -= 1  # analysed before the link was made
    assert copied_from([track], b, st=os.stat(b), digest=digest(b)) is track and read == [c, b]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_second_signal_ends_a_command_with_128_plus_its_number(tmp_path, monkeypatch, python_sigint, sig):
    """A second stop signal ends `tag` and `untag` at once, as a first one ends a scan: with 128 + the
    signal's number, 143 for SIGTERM, 129 for SIGHUP (was 130, SIGINT's, for every signal: a service
    manager's SIGTERM, sent twice, read as a Ctrl-C; found checking README's exit statuses against
    `handle_errors`)."""
    if signal.getsignal(sig) is signal.SIG_IGN:
        pytest.skip(f"{signal.Signals(sig).name} ignored by the test's process (kept ignored by the command)")
    song = write_audio(tmp_path / "song.flac", tone_signal([110.0], seconds=1.0))

    def remove_all(paths, **_options):  # (the run, at its first file, gets the signal twice)
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), sig)
        yield from ()

    monkeypatch.setattr(tags, "remove_all", remove_all)
    r = CliRunner().invoke(app, ["untag", "--dry-run", "--settle-seconds", "0", str(song)])
    assert r.exit_code == 128 + sig, r.output
    assert "tagger: error: interrupted" in r.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_the_stop_signal_watcher_ends_at_the_second_signal_with_its_number(monkeypatch, sig):
    """`tagger.signals.watch_stop_signals`' thread, the main thread stuck in one call into SQLite:
    one stop signal (read once from the wakeup fd, as Python's handler gets it once) does not end the
    command, the second ends it with 128 + its number (was 130 for every signal)."""
    import threading

    import tagger.signals as S

    monkeypatch.setattr(S, "STUCK_S", 0.0)
    ended: list[int] = []
    monkeypatch.setattr(S, "_end_at_once", ended.append)
    for count, expected in ((1, []), (2, [sig])):
        read, write = os.pipe()
        os.write(write, bytes([sig]) * count)
        os.close(write)  # (the watcher reads both, then the end of the pipe: it returns)
        watcher = threading.Thread(target=S._watch, args=(read, lambda: 7, S._Told(-1)))  # (always in the same SQLite call)
        watcher.start()
        watcher.join()
        os.close(read)
        assert ended == expected


def test_the_stop_signal_watcher_judges_a_signal_by_the_handler_it_came_under(monkeypatch, python_sigint):
    """The watcher read the handler of a signal when it read the signal: a scan's first Ctrl-C, which
    its `StopSignals` handled (the stop asked), read once the scan's block had put Python's own handler
    back, was taken for Python's own Ctrl-C, at once, and ended the process where the main thread then
    waited in SQLite. A real SIGINT comes under `StopSignals` (its byte in the watcher's wakeup pipe),
    the block ends, the watcher reads it only then: it ends nothing; a second SIGINT, under Python's own
    handler, it ends at once (130)."""
    import threading

    import tagger.signals as S
    from tagger.library.state import StopSignals

    monkeypatch.setattr(S, "STUCK_S", 0.0)
    ended: list[int] = []
    monkeypatch.setattr(S, "_end_at_once", ended.append)
    read, write = os.pipe()
    os.set_blocking(write, False)
    before = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    try:
        told = S._Told(write)
        monkeypatch.setattr(S, "_TOLD", told)
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # (handled in this thread at the next bytecode; a hang guard only)
                if stop.requested:
                    break
        assert stop.requested and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.set_wakeup_fd(before)
    os.close(write)  # (the watcher reads the signal, the handler put back, then the end of the pipe: it returns)
    watcher = threading.Thread(target=S._watch, args=(read, lambda: 7, told))  # (always in the same SQLite call)
    watcher.start()
    watcher.join()
    os.close(read)
    assert ended == []
    read, write = os.pipe()
    os.write(write, bytes([signal.SIGINT]))
    os.close(write)
    watcher = threading.Thread(target=S._watch, args=(read, lambda: 7, S._Told(-1)))  # (Python's own handler)
    watcher.start()
    watcher.join()
    os.close(read)
    assert ended == [signal.SIGINT]


def test_a_tag_writes_holding_back_of_the_stop_signals_does_not_wake_the_signal_watcher(monkeypatch, python_sigint):
    """`tagger.signals.set_handler` told the stop-signal watcher of every handler set: each `held`
    block of a tag write (four in a FLAC file's) swapped `StopSignals`' three handlers for its own and
    back, six 0 bytes in the watcher's pipe, its thread woken six times. The watcher asks only whether
    a signal came under Python's own SIGINT handler: only a change of that is told (entering and
    leaving `StopSignals`, SIGINT's), a `held` block under `StopSignals` writes nothing."""
    import tagger.signals as S
    from tagger.library.state import StopSignals

    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
        monkeypatch.setattr(S, "_TOLD", S._Told(write))
        with StopSignals():
            assert os.read(read, 64) == b"\0"  # (SIGINT: Python's own, then StopSignals')
            for _ in range(3):
                with S.held():
                    pass
            with pytest.raises(BlockingIOError):  # (nothing written)
                os.read(read, 64)
        assert os.read(read, 64) == b"\0"  # (SIGINT: Python's own again)
    finally:
        os.close(read)
        os.close(write)


def test_the_stop_errors_and_the_file_errors_survive_pickling():
    """`Interrupted` (a second stop signal), `ScanInterrupted` and the errors naming a file could not
    be pickled (pickle calls the class with the message alone: TypeError, missing ``signum``,
    ``stored``, ``reason``): a worker process or a Dask worker sending one back would fail there.
    Each comes back the same: its type, message, attributes and exit status."""
    import pickle

    from tagger.errors import AudioReadError, ChangedSinceError, MissingToolError, UserError
    from tagger.library.state import ScanInterrupted
    from tagger.signals import Interrupted, exit_status

    back = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert type(back) is Interrupted and back.signum == signal.SIGTERM and exit_status(back) == 143
    for error in (ScanInterrupted(signal.SIGHUP, 3), AudioReadError("/m/a.flac", "truncated", unreadable=True),
                  MissingToolError("/m/b.wma", "ffmpeg is not installed"), ChangedSinceError("/m/c.mp3", "size"),
                  UserError("no such folder")):  # fmt: skip
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and vars(back) == vars(error)
    assert back.args == ("no such folder",)
    assert pickle.loads(pickle.dumps(ScanInterrupted(signal.SIGHUP, 3))).exit_code == 129


def test_a_second_stop_signals_error_keeps_its_notes_through_pickling():
    """`Interrupted`'s pickling (3651ae4) rebuilt it from its signal's number alone: a note added to
    it (``add_note``: where it came) was lost, where pickle's default for a KeyboardInterrupt, and
    `tagger.errors.TaggerError`'s, keep it."""
    import pickle

    from tagger.signals import Interrupted

    error = Interrupted(signal.SIGTERM)
    error.add_note("while recording /m/a.flac")
    back = pickle.loads(pickle.dumps(error))
    assert back.signum == signal.SIGTERM and back.__notes__ == ["while recording /m/a.flac"]


class _Ended(Exception):
    """`os._exit` in the test's process: the forced stop's status, the process left running."""


def test_a_forced_stop_tells_of_a_file_written_but_not_recorded_on_stderr_whatever_logging_does(
        tmp_path, monkeypatch, capfd):  # fmt: skip
    """The watcher's forced stop (`tagger.signals._end_at_once`) as a file written whole waits to be
    recorded: its warning went through logging, and was lost where a program calling tagger set
    logging otherwise (here disabled), or came as ``WARNING tagger.tags.database: ...``. It is
    written on stderr as the line after it is, ``tagger: warning: PATH: ...``, then ``tagger: error:
    interrupted``, exit status 143 for SIGTERM."""
    import logging

    import tagger.signals as S
    from tagger.tags.database import _told_whole

    def ended(status):
        raise _Ended(status)

    monkeypatch.setattr(os, "_exit", ended)
    path = str(tmp_path / "song\nnew.flac")
    change = tags.TagChange(path, tags.TagState(["bass"], "fake-1"), tags.TagState(), changed=True, written=True)

    def record():  # (the record waits for a locked database; the watcher ends the process there)
        S._end_at_once(signal.SIGTERM)
        yield change

    logging.disable(logging.CRITICAL)
    try:
        with pytest.raises(_Ended) as stopped:
            list(_told_whole(change, record()))
    finally:
        logging.disable(logging.NOTSET)
    assert stopped.value.args == (143,)
    err = capfd.readouterr().err
    assert err == (f"tagger: warning: {tmp_path}/song\\x0anew.flac: written whole, but interrupted before it was "
                   "recorded in the library database\ntagger: error: interrupted\n")  # fmt: skip
    assert S._AT_FORCED_STOP == []  # (told once, then no longer held)


@pytest.mark.parametrize("command, record", [("untag", "record_own_write"), ("tag", "record_rewrite")])
def test_a_second_ctrl_c_as_a_written_file_is_recorded_still_names_the_file(tmp_path, monkeypatch, python_sigint,
                                                                            command, record):  # fmt: skip
    """Two Ctrl-Cs to `untag` (or `tag`) as the file it had just written whole was being recorded in
    the library database: the second stopped the run at once inside the record, and the file's line
    (`untagged PATH (removed: ...)`) was never printed: `tagger: error: interrupted` alone, the file
    untagged without a word (found reviewing the stop of `untag`). Its line comes first now."""
    from tagger.db import writes

    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=1.0))
    dbfile = tmp_path / "lib.db"
    db = open_database(dbfile)
    try:
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # stored, no tags written
    finally:
        db.close()
    if command == "untag":
        r = CliRunner().invoke(app, ["tag", "--db", str(dbfile), "--settle-seconds", "0"])
        assert r.exit_code == 0 and "1 tagged" in r.output, r.output

    def interrupted(*_args, **_kwargs):  # (the two Ctrl-Cs, as the record is made)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("not interrupted")

    monkeypatch.setattr(writes, record, interrupted)
    r = CliRunner().invoke(app, [command, "--db", str(dbfile), "--settle-seconds", "0", str(music)])
    assert r.exit_code == 130, r.output
    assert f"{command}ged {song}" in r.output  # (its line, then the interruption)
    assert r.output.rstrip().endswith("tagger: error: interrupted")
    assert tags.read_instruments(song).tagged == (command == "tag")  # (written whole, as its line says)

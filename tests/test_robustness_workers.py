"""One file cannot stall or kill a scan: a decoder that hangs is timed out, a worker that crashes is
replaced, a file that changes or vanishes while it is analysed is not stored with stale results."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import tone_signal, track_instruments, track_rows, write_audio
from library_fakes import FakeAnalyser
from tagger.db import models as M
from tagger.db.queries import find_tracks
from tagger.library.scan import scan

MARK = "987654"  # the hanging fake decoder sleeps this long: find leftovers by it
FILE_TIMEOUT = 8.0
"""The scans' file timeout here: a file that hangs fails after it, and so would a sound file's single
step (a 4 s window decoded and sent) that a loaded machine stalls for as long (was 3 s: the files read
slowly failed so under load, their 0.8 s reads and 1 s progress messages leaving 1.4 s to spare)."""
TIMED_OUT = f"timed out after {FILE_TIMEOUT:g} s without progress (a hung decoder?)"

FAKE_FFPROBE = """#!/bin/sh
echo '{"streams": [{"codec_type": "audio", "codec_name": "aac", "sample_rate": "16000", "channels": 1}], "format": {"format_name": "mov"}}'
"""
FAKE_FFMPEG = f"""#!/bin/sh
case "$*" in
  *hang*) exec sleep {MARK} ;;
  *crash*) kill -9 $PPID; sleep 5 ;;
esac
exit 1
"""


def _leftover_sleepers() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"sleep\0") and MARK.encode() in cmd:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.integration
def test_a_hung_decoder_times_out_and_a_crashing_one_is_replaced(tmp_path, db, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ffprobe", FAKE_FFPROBE), ("ffmpeg", FAKE_FFMPEG)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # the workers inherit it
    music = tmp_path / "music"
    good = [write_audio(music / f"{i}_bass.wav", tone_signal([110.0 + i], seconds=4.0)) for i in range(4)]
    for name in ("1_hang.m4a", "2_crash.m4a"):
        (music / name).write_bytes(b"\0\0\0\x20ftypM4A " + os.urandom(2000))  # not for libsndfile: ffmpeg decodes it
    t0 = time.monotonic()
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=2, file_timeout=FILE_TIMEOUT, commit_every=1)
    took = time.monotonic() - t0
    rows = track_rows(db)
    assert rows[str(music / "1_hang.m4a")] == ("error", TIMED_OUT)
    assert rows[str(music / "2_crash.m4a")] == ("error", "the decoder crashed (worker exit code -9)")
    assert summary.failed == 2 and summary.scanned == len(good)
    with db.session() as s:
        assert {t.path: t.instruments for t in find_tracks(s)} == {str(p): ["bass"] for p in good}
    assert took < 120, f"the scan took {took:.0f} s"  # (a bound on a hang: the 8 s timeout and the good files)
    deadline = time.monotonic() + 60  # (a bound on a wait that normally ends at once)
    while _leftover_sleepers():  # the hung decoder died with its worker
        assert time.monotonic() < deadline, "the hung decoder process outlived the scan"
        time.sleep(0.1)


class _Meddler(FakeAnalyser):
    """Changes (or deletes) a file while the scan analyses it: on its first prediction."""

    def __init__(self, target: Path, action: str):
        super().__init__()
        self.target, self.action = target, action

    def predict_features(self, feats):
        if self.calls == 0:
            if self.action == "delete":
                self.target.unlink()
            else:
                write_audio(self.target, tone_signal([1000.0], seconds=6.0))
        return super().predict_features(feats)


@pytest.mark.parametrize("action", ["change", "delete"])
def test_a_file_that_changes_or_vanishes_during_analysis_is_not_stored_stale(tmp_path, db, action):
    music = tmp_path / "music"
    first = write_audio(music / "a.wav", tone_signal([110.0], seconds=8.0))
    other = write_audio(music / "b.wav", tone_signal([4000.0], seconds=4.0))
    summary = scan([music], db=db, analyser=_Meddler(first, action), jobs=0, predict_batch=1)
    reason = {"change": "the file changed while it was being analysed; the next scan analyses it again",
              "delete": "the file disappeared while it was being analysed"}[action]  # fmt: skip
    assert track_rows(db) == {str(first): ("error", reason), str(other): ("ok", None)}
    assert summary.errors == [(str(first), reason)]
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    if action == "change":
        assert again.scanned == 1
        with db.session() as s:
            assert {t.path: t.instruments for t in find_tracks(s)} == {str(first): ["flute"], str(other): ["string"]}
    else:
        assert again.missing == 1 and track_rows(db)[str(first)][0] == "missing"


def test_a_dead_workers_file_is_known_from_its_claim_alone():
    """A worker sent word of the file it took (`Started`) on the results queue, whose messages a
    thread of the worker sends: a decoder that killed its worker at once could take that word with
    it, and the scan then waited for the file for ever (a 21-minute hang of the test above on a
    loaded machine). The claim is now written on the worker's own pipe, by the worker itself,
    before it opens the file: the dead worker's file fails as a crash, the file sent to it that it
    had not opened goes to another worker, and the scan goes on."""
    import multiprocessing as mp
    from collections import deque

    from tagger.library.messages import Started
    from tagger.library.runner import Runner
    from tagger.library.workers import Worker

    class Proc:
        def __init__(self, pid: int, alive: bool):
            self.pid, self.exitcode, self.alive = pid, None if alive else -9, alive

        def is_alive(self) -> bool:
            return self.alive

    runner = Runner.__new__(Runner)  # (only the worker bookkeeping is exercised)
    runner.pending, runner.progressed, runner.file_timeout, runner.deaths = {7: None, 8: None, 9: None}, {}, 3.0, 0
    runner.check_stop = lambda: None
    runner.handle = lambda messages: None
    failed: list[tuple[int, str]] = []
    runner.fail_file = lambda task_id, reason, **_: (failed.append((task_id, reason)), runner.pending.pop(task_id))
    ours, theirs = mp.get_context("spawn").Pipe()
    theirs.send(Started(7, 4242))  # the worker's last act before its decoder killed it
    theirs.close()
    dead, alive = Worker(Proc(4242, alive=False), ours), Worker(Proc(4343, alive=True), None)
    dead.sent.extend([7, 9])
    alive.sent.append(8)
    workers, todo = [dead, alive], deque([10])
    runner._check_workers(workers, todo, lambda: Worker(Proc(4444, alive=True), None))
    assert failed == [(7, "the decoder crashed (worker exit code -9)")]
    assert [w.pid for w in workers] == [4444, 4343] and sorted(runner.pending) == [8, 9]
    assert list(todo) == [9, 10]  # sent to the dead worker, never opened: next in line


# -- workers killed at random moments ------------------------------------------------------------------

KILLER_SCRIPT = """
import faulthandler, json, os, random, signal, sys, threading, time
sys.path[:0] = [{tests!r}, {root!r}]  # this checkout's tagger, whatever is installed
from library_fakes import FakeAnalyser
from tagger.db.session import open_database
from tagger.library.scan import scan
from conftest import track_rows, track_instruments


class Dense(FakeAnalyser):
    # Windows every 0.5 s: 32 windows of features are a 0.5 MB message, written to the pipe in many
    # pieces (a kill lands inside a write); predictions slow enough that the workers wait on a full
    # result queue in the middle of a write.
    @property
    def aggregation(self):
        return {{**super().aggregation, "hop_seconds": 0.5}}


worked = set()  # the workers seen holding a file of the library open: past their start-up


def workers(music):
    # The scan's worker processes (children of this process started by multiprocessing's spawn;
    # not its resource tracker) that have been seen holding a file of `music` open. A worker killed
    # before it is ready counts towards "scan workers keep exiting", and its start-up (imports, the
    # warm-up) takes seconds on a loaded machine: killing workers older than 3 s killed them in it,
    # and five such kills in a row ended the scan (the test failed now and then under load).
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{{entry}}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{{entry}}/cmdline", "rb").read()
            if int(stat[1]) != me or b"spawn_main" not in cmd or stat[0] == "Z":
                continue
            pid = int(entry)
            if pid not in worked and any(os.readlink(f"/proc/{{pid}}/fd/{{fd}}").startswith(music)
                                         for fd in os.listdir(f"/proc/{{pid}}/fd")):
                worked.add(pid)
        except OSError:
            continue
        if pid in worked:
            found.append(pid)
    return found


def killer(stop, rng, kills, done, music):
    # Kills a worker past its start-up (`workers`) at random moments: idle, mid-file, mid-write.
    while len(done) < kills and not stop.wait(rng.uniform(0.02, 0.4)):
        pids = workers(music)
        if pids:
            pid = rng.choice(pids)
            os.kill(pid, signal.SIGKILL)
            done.append(pid)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(float(sys.argv[5]), exit=True)  # a hang: where it waits
    db = open_database(sys.argv[1])
    seed, kills = int(sys.argv[3]), int(sys.argv[4])
    stop, done = threading.Event(), []
    music = os.path.realpath(sys.argv[2]) + os.sep
    thread = threading.Thread(target=killer, args=(stop, random.Random(seed), kills, done, music), daemon=True)
    thread.start()
    t = time.monotonic()
    first = scan([sys.argv[2]], db=db, analyser=Dense(delay=0.2), jobs=2, predict_batch=32, commit_every=1)
    took = time.monotonic() - t
    stop.set()
    thread.join()
    rows = track_rows(db)
    found = track_instruments(db)
    again = scan([sys.argv[2]], db=db, analyser=Dense(), jobs=2, retry_errors=True)
    print(json.dumps({{"kills": len(done), "took": took, "rows": rows, "found": found,
                      "failed": first.failed, "scanned": first.scanned, "retried": again.scanned,
                      "after": track_rows(db), "found_after": track_instruments(db)}}), flush=True)
    db.close()
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.integration
def test_workers_killed_at_random_moments_fail_only_their_files(tmp_path):
    """SIGKILL (the OOM killer, ``kill -9``, a decoder crashing in-process) can land on a worker at
    any moment: idle, waiting for a task, in the middle of writing a message. The workers shared
    the locks of their task and result queues, and one killed while holding one left it taken for
    ever: the scan then waited for ever. Now each kill fails at most the file its worker had opened
    (recorded as a crash), the scan finishes, and a rerun with ``retry_errors`` analyses those.
    (One scan with up to 20 kills at random moments: it was three seeds of 12 kills each, three
    times the start-up and the rerun for moments of the same kind.)"""
    import json
    import signal
    import subprocess
    import sys

    seed = 1
    tests = Path(__file__).resolve().parent
    music = tmp_path / "music"
    freqs = (110.0, 1000.0, 4000.0)
    names = {"0": "bass", "1": "flute", "2": "string"}
    for i in range(32):
        write_audio(music / f"{i:02d}_{i % 3}.wav", tone_signal([freqs[i % 3]], seconds=20.0))
    script = tmp_path / "kill_workers.py"
    script.write_text(KILLER_SCRIPT.format(tests=str(tests), root=str(tests.parent)))
    cmd = [sys.executable, str(script), str(tmp_path / "lib.db"), str(music), str(seed), "20", "400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:  # a hang ends after 400 s with the script's stacks on stderr (faulthandler), or is killed
        out, err = proc.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its workers, should any be left
    except ProcessLookupError:
        pass
    assert proc.returncode == 0, f"the scan failed or hung (seed {seed}):\n{err[-5000:]}"
    r = json.loads(out.strip().splitlines()[-1])
    assert r["kills"] >= 4, r["kills"]  # (the scan may end before all 20)
    files = {str(p) for p in music.iterdir()}
    assert set(r["rows"]) == files
    crashed = {p for p, (status, _) in r["rows"].items() if status == "error"}
    for p, (status, error) in r["rows"].items():
        assert status == "ok" or error == "the decoder crashed (worker exit code -9)", (p, status, error)
    assert len(crashed) <= r["kills"] and r["failed"] == len(crashed)
    expected = {p: [names[Path(p).stem.split("_")[1]]] for p in files}
    assert r["found"] == {p: v for p, v in expected.items() if p not in crashed}
    assert r["retried"] == len(crashed)
    assert r["after"] == {p: ["ok", None] for p in files} and r["found_after"] == expected


# -- workers that stall in the middle of a message, or flood the scan ------------------------------------


def _children(state: str | None = None) -> list[int]:
    """This process's child processes (in `state`, e.g. "T" for stopped, when given)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and (state is None or fields[0] in state):
                found.append(int(entry))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # (gone)
        return b""


class _Rescue:
    """After `after` seconds, SIGKILLs this process's children in `state` (all of them when None):
    a scan that would wait on them for ever ends, and ``killed`` lists them, for the test to fail."""

    def __init__(self, after: float, state: str | None = None) -> None:
        import threading

        self.after, self.state, self.killed = after, state, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import signal

        if not self.done.wait(self.after):
            for pid in _children(self.state):
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.integration
def test_a_worker_paused_in_the_middle_of_a_message_times_out_and_the_scan_goes_on(tmp_path, db, monkeypatch):
    """A worker stopped (SIGSTOP, a debugger, a machine swapping hard) after writing part of a
    message: the scan read the rest of that message with a blocking ``recv``, and waited for ever
    (the file timeout never came round). Now the scan reads what the pipe holds and goes on; the
    file timeout kills the paused worker and fails its file, and the other workers do the rest."""
    import library_fakes

    from tagger.library import supervisor

    monkeypatch.setattr(supervisor, "worker_main", library_fakes.stalling_worker)
    music = tmp_path / "music"
    good = [write_audio(music / f"{i}_bass.wav", tone_signal([110.0 + i], seconds=4.0)) for i in range(4)]
    stall = write_audio(music / "1_stall.wav", tone_signal([1000.0], seconds=8.0))
    with _Rescue(after=120, state="Tt") as rescue:
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=2, file_timeout=FILE_TIMEOUT, commit_every=1)
    assert not rescue.killed, "the scan waited on the paused worker until the test killed it"
    assert track_rows(db)[str(stall)] == ("error", TIMED_OUT)
    assert summary.errors == [(str(stall), TIMED_OUT)]
    assert summary.failed == 1 and summary.scanned == len(good)
    with db.session() as s:
        assert {t.path: t.instruments for t in find_tracks(s)} == {str(p): ["bass"] for p in good}
    assert not _children("Tt")


def test_the_last_files_are_not_sent_ahead_to_a_busy_worker():
    """Each worker was sent two files at once, the second to wait in its pipe: at the end of a scan
    the last file could wait there behind a long one while the other worker sat idle. Every worker
    now gets its next file first, and a file goes ahead only while more are left than workers."""
    from collections import deque
    from types import SimpleNamespace

    from tagger.library.runner import Runner
    from tagger.library.workers import Worker

    class Pipe:
        def __init__(self):
            self.tasks = []

        def send(self, item):
            self.tasks.append(item[0])

    def workers(n: int) -> list[Worker]:
        out = [Worker(None, None) for _ in range(n)]
        for w in out:
            w.conn = Pipe()
        return out

    runner = Runner.__new__(Runner)  # (only the feeding is exercised)
    runner.pending, runner.new_pending = {}, lambda work: work
    work = [SimpleNamespace(path=f"/music/{i}.flac") for i in range(10)]
    pair, todo = workers(2), deque(range(3))
    runner._feed(pair, todo, work)
    assert [w.conn.tasks for w in pair] == [[0], [1]] and list(todo) == [2]
    pair[1].sent.clear()  # the second worker finished its file; the first is still on its long one
    runner._feed(pair, todo, work)
    assert [w.conn.tasks for w in pair] == [[0], [1, 2]] and not todo
    assert sorted(runner.pending) == [0, 1, 2]
    pair, todo = workers(2), deque(range(10))  # with files to spare, each gets its next one ahead
    runner._feed(pair, todo, work)
    assert [list(w.sent) for w in pair] == [[0, 2], [1, 3]] and list(todo) == [4, 5, 6, 7, 8, 9]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.integration
def test_a_worker_paused_before_it_claims_a_file_is_replaced_and_the_file_analysed(tmp_path, db, monkeypatch):
    """A worker stopped (SIGSTOP) after a file was sent to it but before it claimed it: only a
    claimed file had a timeout, so the scan waited for ever. Now a worker that holds files it has
    not claimed and says nothing for the file timeout is stopped and replaced; its files go to
    the others, and none of them fails (it never opened them)."""
    import library_fakes

    from tagger.library import supervisor

    monkeypatch.setattr(supervisor, "worker_main", library_fakes.freezing_worker)
    monkeypatch.setenv("TAGGER_TEST_FREEZE_FLAG", str(tmp_path / "froze"))  # (the workers inherit it)
    music = tmp_path / "music"
    files = [write_audio(music / f"{i}_bass.wav", tone_signal([110.0 + i], seconds=4.0)) for i in range(3)]
    files.append(write_audio(music / "2_freeze.wav", tone_signal([1000.0], seconds=4.0)))
    with _Rescue(after=120, state="Tt") as rescue:
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=2, file_timeout=FILE_TIMEOUT, commit_every=1)
    assert not rescue.killed, "the scan waited on the paused worker until the test killed it"
    assert (tmp_path / "froze").exists()
    assert summary.failed == 0 and summary.scanned == len(files), summary.errors
    assert track_instruments(db) == {str(p): ["flute" if "freeze" in p.name else "bass"] for p in files}
    assert not _children("Tt")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.integration
@pytest.mark.parametrize(("file_timeout", "limit"), [(1.5, "1.5"), (None, "1")])
def test_workers_that_hang_in_their_start_up_end_the_scan_with_an_error_naming_one(tmp_path, db, monkeypatch,
                                                                                   file_timeout, limit):
    """Workers that never finish starting (a library or model load that hangs) claimed no file,
    so no timeout applied and the scan waited for ever. Now a worker that says nothing for the
    start-up timeout (the file timeout, at least `START_TIMEOUT`, which applies without a file
    timeout too) is replaced, and when the replacements hang too the scan ends with an error naming
    the last one."""
    import library_fakes

    from tagger.errors import TaggerError
    from tagger.library import supervisor

    monkeypatch.setattr(supervisor, "worker_main", library_fakes.hanging_worker)
    monkeypatch.setattr(supervisor, "START_TIMEOUT", 1.0)
    music = tmp_path / "music"
    for i in range(3):
        write_audio(music / f"{i}_bass.wav", tone_signal([110.0], seconds=4.0))
    with _Rescue(after=60) as rescue, pytest.raises(TaggerError) as err:
        scan([music], db=db, analyser=FakeAnalyser(), jobs=2, file_timeout=file_timeout, commit_every=1)
    assert not rescue.killed, "the scan waited on the hung workers until the test killed them"
    assert re.fullmatch(r"scan workers keep hanging before they take a file \(the last, process \d+, said nothing "
                        rf"for {re.escape(limit)} s after it started\); see the log above", str(err.value)), str(err.value)
    assert not [pid for pid in _children() if b"spawn_main" in _cmdline(pid)], "hung workers outlived the scan"


class _Truncator(FakeAnalyser):
    """Cuts a file to half its length in place (another program rewriting it) on the first prediction."""

    def __init__(self, target: Path):
        super().__init__()
        self.target = target

    def predict_features(self, feats):
        if self.calls == 0:
            os.truncate(self.target, self.target.stat().st_size // 2)
        return super().predict_features(feats)


def test_a_file_that_shrinks_while_it_is_decoded_is_recorded_as_changed_not_corrupt(tmp_path, db):
    """A file cut short by another program while the scan decoded it failed with the decoder's
    message (`cut short: ...`, `decoding failed: ...`), stored as if the file were damaged. The
    failure of a file that changed meanwhile is now recorded as the change, and the next scan
    analyses the file again."""
    music = tmp_path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=400.0))  # (its first windows: 150 s decoded)
    summary = scan([music], db=db, analyser=_Truncator(song), jobs=0, predict_batch=1)
    reason = "the file changed while it was being analysed; the next scan analyses it again"
    assert track_rows(db) == {str(song): ("error", reason)} and summary.errors == [(str(song), reason)]


@pytest.mark.integration
def test_a_large_file_on_slow_storage_is_not_taken_for_a_hung_decoder(tmp_path, db, monkeypatch):
    """A worker reads a file whole (its content hash) before it decodes it, and said nothing
    meanwhile: a file that takes longer to read than the file timeout (a 3 GB DSD file over a 10 MB/s
    share, against the default 300 s) failed as `timed out ... (a hung decoder?)` at every scan.
    The worker now reports its reading each second."""
    import library_fakes

    from tagger.library import supervisor

    monkeypatch.setattr(supervisor, "worker_main", library_fakes.slow_storage_worker)
    music = tmp_path / "music"
    big = write_audio(music / "big.wav", tone_signal([110.0], seconds=150.0))  # 4.8 MB: 5 reads, 10 s
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=1, file_timeout=FILE_TIMEOUT)
    assert summary.scanned == 1 and not summary.errors, summary.errors
    assert track_instruments(db) == {str(big): ["bass"]}


@pytest.mark.integration
def test_a_large_file_read_slowly_for_its_audio_digest_is_not_taken_for_a_hung_decoder(tmp_path, db, monkeypatch):
    """After its content hash, a worker reads the bytes that carry the file's audio for their digest
    (`tagger.tags.audio_digest`): from slow storage, when the page cache could not keep the file,
    that read reports its progress too, and the digest is stored."""
    import library_fakes

    from tagger import tags
    from tagger.library import supervisor

    monkeypatch.setattr(supervisor, "worker_main", library_fakes.slow_digest_worker)
    music = tmp_path / "music"
    big = write_audio(music / "big.wav", tone_signal([110.0], seconds=150.0))  # 4.8 MB: 5 reads, 10 s
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=1, file_timeout=FILE_TIMEOUT)
    assert summary.scanned == 1 and not summary.errors, summary.errors
    assert track_instruments(db) == {str(big): ["bass"]}
    with db.session() as s:
        assert s.scalar(select(M.Track.audio_digest)) == tags.audio_digest(big) is not None


@pytest.mark.integration
def test_a_file_that_changed_while_its_decoder_hung_or_crashed_keeps_its_results(tmp_path, db, monkeypatch):
    """The timeout and crash paths stored their own reason as a lasting error and deleted the file's
    results, even when the file had changed or vanished meanwhile (replaced by a FIFO, which then
    hung the decoder): such a failure is the change now (transient, results kept), as on the other
    failure paths."""
    import library_fakes

    from tagger.library import supervisor

    music = tmp_path / "music"
    songs = [write_audio(music / f"{name}.wav", tone_signal([110.0], seconds=4.0)) for name in ("hang", "crash", "ok")]
    assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 3
    monkeypatch.setattr(supervisor, "worker_main", library_fakes.changing_worker)
    summary = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=2, file_timeout=FILE_TIMEOUT,
                   rescan_stale=True, commit_every=1)  # fmt: skip
    changed = "the file changed while it was being analysed; the next scan analyses it again"
    assert sorted(summary.errors) == [(str(songs[1]), changed), (str(songs[0]), changed)]
    assert track_instruments(db) == {str(p): ["bass"] for p in songs}  # (fake-1's results kept for the two)


def test_a_stop_asked_as_the_last_files_failure_comes_still_stops_the_scan(tmp_path, db, monkeypatch):
    """A stop (Ctrl-C, SIGTERM, SIGHUP) asked while the worker's message that the scan's last file
    failed was on its way: the failure is not stored (3a517f9: the decoder may have failed of the
    stop), so nothing was left in progress, and the workers' loop ended as if the scan were done:
    exit 0, the file neither stored nor counted and the stop unheard (found reviewing 3a517f9 and
    50a6e76: `run_inline` looks once more after its last file, `run_processes` did not). The scan
    stops (`ScanInterrupted`) and the next one stores the failure."""
    from tagger.library.runner import Runner
    from tagger.library.state import ScanInterrupted

    music = tmp_path / "music"
    music.mkdir()
    (music / "broken.wav").write_bytes(b"not audio at all\n" * 64)  # (a failure, the same at every run)
    real_receive = Runner._receive

    def receive(self, workers, ready):
        batch = real_receive(self, workers, ready)
        if any(type(m).__name__ == "Failed" for m in batch):
            self.stop.signum = 15  # (SIGTERM, as a service manager's, arriving with the failure)
        return batch

    monkeypatch.setattr(Runner, "_receive", receive)
    with pytest.raises(ScanInterrupted):
        scan([music], db=db, analyser=FakeAnalyser(), jobs=1)
    monkeypatch.undo()
    with db.session() as s:
        assert s.scalars(select(M.Track)).all() == []
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=1)
    assert summary.failed == 1 and summary.scanned == 0


def test_a_stop_asked_as_a_clusters_last_file_is_stored_still_stops_the_scan(tmp_path, db, monkeypatch):
    """A stop (Ctrl-C, SIGTERM, SIGHUP) asked while the last file back from a cluster (`run_remote`,
    a Dask scan) was being stored (its tag write, its commit): the backend's loop ended, with nothing
    left in flight, and the scan ended as finished, exit 0, the stop unheard, where `run_processes`
    (bbfffeb) and `run_inline` look once more after their last file (found comparing them). The scan
    stops (`ScanInterrupted`), the file stored whole; the next scan has nothing left to do."""
    import tagger.library.distributed as D
    from tagger.library.distributed import AnalyserSpec
    from tagger.library.runner import Runner
    from tagger.library.state import ScanInterrupted

    song = write_audio(tmp_path / "music" / "a.wav", tone_signal([110.0], seconds=4.0))
    spec = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser")

    class InProcess:  # (the cluster's part, here: analyse_remote as a worker runs it)
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            for i, path in enumerate(paths):
                store(i, D.analyse_remote(path, spec=spec, config=config, predict_batch=predict_batch))

    real_finish = Runner.finish

    def finish(self, task_id, **kwargs):
        real_finish(self, task_id, **kwargs)
        self.stop.signum = 15  # (SIGTERM, as a service manager's, while the file was being stored)

    monkeypatch.setattr(Runner, "finish", finish)
    with pytest.raises(ScanInterrupted) as stopped:
        scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=InProcess())
    assert stopped.value.exit_code == 143
    monkeypatch.undo()
    assert track_instruments(db) == {str(song): ["bass"]}  # (stored whole before the stop)
    summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=InProcess())
    assert summary.scanned == 0 and summary.skipped == 1

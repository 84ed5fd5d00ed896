"""The decoder processes (ffmpeg, ffprobe) a scan starts die with their starter, whenever it dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ORPHAN_SCRIPT = """
import os, sys, time
sys.path[:0] = [{root!r}]
from tagger.audio.plumbing import _decoder_preexec

preexec = _decoder_preexec()  # (made in the starter, as at each Popen)
starter = os.getpid()  # (not the child's first getppid(): the starter may be gone by then, and it waited for ever)
pid = os.fork()
if pid:
    print(pid, flush=True)
    os._exit(0)  # the starter dies between the decoder's fork and its preexec
while os.getppid() == starter:  # (until the starter is gone: its exit is the event waited for)
    time.sleep(0.01)
preexec()
open(sys.argv[1], "w").write("the decoder would run, its starter dead")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG (Linux)")
def test_a_decoder_whose_starter_died_before_its_preexec_does_not_run(tmp_path):
    """PR_SET_PDEATHSIG set in the child after its parent died sends nothing: a scan killed between
    a decoder's fork and its preexec left that ffmpeg running, in a process group of its own, which
    no signal to the scan's group reaches. The preexec sees its starter gone and exits."""
    marker = tmp_path / "ran"
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT.format(root=str(Path(__file__).resolve().parent.parent)))
    done = subprocess.run([sys.executable, str(script), str(marker)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    child = int(done.stdout)
    deadline = time.monotonic() + 120  # (a bound on a hang, not a margin: the child ends at once)
    while os.path.exists(f"/proc/{child}") and b"Z" not in _state(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not marker.exists()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return b"Z"


def test_an_ffmpeg_whose_feeder_cannot_start_is_ended_and_forgotten(tmp_path, monkeypatch):
    """The thread that feeds ffmpeg a file's byte ranges (an MP3 read past its junk) was started
    after ffmpeg and before the block that ends it: where it could not start (``can't start new
    thread``, a process at its limit of threads), that ffmpeg was left running, waiting on its input
    for as long as the scan's worker lived, and `tagger.audio.plumbing`'s list of the decoders a stop
    ends kept it (found reviewing 5f23a0d's list for entries left behind by an error). It is ended and
    forgotten, the error going on."""
    import threading
    from dataclasses import replace

    from conftest import tone_signal, write_audio
    from tagger.audio import decoders, plumbing
    from tagger.audio.probe import info

    song = write_audio(tmp_path / "song.wav", tone_signal([440.0], seconds=1.0))
    meta = replace(info(song), feed=((0, song.stat().st_size),), demuxer="wav")
    started: list[subprocess.Popen] = []

    def start_decoder(cmd, **popen):
        started.append(plumbing.start_decoder(cmd, **popen))
        return started[-1]

    class NoThread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(decoders, "start_decoder", start_decoder)
    monkeypatch.setattr(threading, "Thread", NoThread)
    try:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            next(decoders._ffmpeg_blocks(song, meta, 4096))
        monkeypatch.undo()
        assert len(started) == 1
        assert started[0].poll() is not None  # (ended, and waited for: was still running)
        assert started[0] not in plumbing._RUNNING
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            plumbing.decoder_done(proc)


def test_a_stop_ends_the_decoders_of_its_own_thread_only(tmp_path):
    """`tagger.audio.plumbing.ending_decoders`' ``end`` (a ``--jobs 0`` scan's stop) ended every
    decoder of the process, and any another thread started after it: a program reading audio through
    `tagger.audio` in a thread beside the scan had its reads fail with exit code -9 (found reviewing
    5f23a0d). It ends those of the block's own thread, and any that thread starts after it."""
    import threading

    from tagger.audio import plumbing

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    started: list[subprocess.Popen] = []  # (by the other thread)
    ours: list[subprocess.Popen] = []
    go_on, gone = threading.Event(), threading.Event()

    def beside() -> None:  # (a thread that lives on: a decoder dies with the thread that started it)
        started.append(plumbing.start_decoder(sleeper))
        gone.set()
        go_on.wait()
        go_on.clear()
        started.append(plumbing.start_decoder(sleeper))
        gone.set()
        go_on.wait()

    other = threading.Thread(target=beside)
    try:
        with plumbing.ending_decoders() as end:
            ours.append(plumbing.start_decoder(sleeper))
            other.start()
            gone.wait()
            gone.clear()
            end()
            go_on.set()  # (its second decoder, started after the stop)
            gone.wait()
            ours.append(plumbing.start_decoder(sleeper))
            assert [p.wait() for p in ours] == [-9, -9]  # (the block's thread's: ended)
            assert [p.poll() for p in started] == [None, None]  # (the other thread's: still running)
    finally:
        go_on.set()
        other.join()
        for proc in [*started, *ours]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            plumbing.decoder_done(proc)

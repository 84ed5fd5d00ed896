"""Commands running at the same time on one library and one database (`tagger scan` beside `tag`,
`untag`, a second `tag`, `db prune`, `query`, `show`, another program's edits): nothing is lost,
and the database never claims of a file what it does not hold.

Where a race needs a precise window, one writer is paused there (a `threading.Event` in a hook)
while the other runs; the end-to-end test runs the real commands as processes side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import tone_signal, write_audio
from library_fakes import FREQ, FakeAnalyser
from sqlalchemy import select

from tagger.db import models as M
from tagger.db.session import open_database
from tagger.errors import TagWriteError
from tagger.library.scan import scan, tag_writer
from tagger.tags import read_instruments, remove_instruments, rewrite, write_instruments

TESTS = Path(__file__).resolve().parent


def _leases_here(folder: Path) -> bool:
    """Linux read leases work in ``folder`` (the rewrite then makes a backup link before its rename,
    the hook the tests below pause in)."""
    import fcntl
    import signal

    probe = folder / ".lease-probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, 10, signal.SIGURG)  # F_SETSIG
        fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)  # F_SETLEASE
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


class Pause:
    """Pauses the thread named ``who`` in `rewrite._link_backup`: after the rewrite's last check that
    the file is still the one it copied, right before its ``rename``."""

    def __init__(self, monkeypatch, who: str) -> None:
        self.inside, self.go = threading.Event(), threading.Event()
        original = rewrite._link_backup

        def link_backup(real, folder, prefix):
            if threading.current_thread().name == who:
                self.inside.set()
                assert self.go.wait(30)
            return original(real, folder, prefix)

        monkeypatch.setattr(rewrite, "_link_backup", link_backup)


def test_two_writers_of_one_file_never_both_replace_it(tmp_path, monkeypatch):
    """Was: both passed their checks, the second's copy (made from the file before the first's write)
    was moved over the first's, and the first reported `tagged` with its values gone from the file."""
    if not _leases_here(tmp_path):
        pytest.skip("needs Linux read leases in the test folder")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=3.0))
    write_instruments(song, instruments=["bass"], model_version="m-1")
    pause = Pause(monkeypatch, "second")
    done = {}

    def second():
        done["second"] = write_instruments(song, instruments=["flute"], model_version="m-2")

    thread = threading.Thread(target=second, name="second")
    thread.start()
    try:
        assert pause.inside.wait(30)
        with pytest.raises(TagWriteError, match="being rewritten by another tagger process at this moment"):
            write_instruments(song, instruments=["string"], model_version="m-3")
        with pytest.raises(TagWriteError, match="being rewritten by another tagger process"):
            remove_instruments(song)
    finally:
        pause.go.set()
        thread.join()
    assert done["second"].written
    assert read_instruments(song).instruments == ["flute"]  # the write that said so is in the file
    assert not list(tmp_path.glob(".*tagger-tmp"))
    # once it is done, the file is anyone's again
    assert remove_instruments(song).written and read_instruments(song).instruments == []

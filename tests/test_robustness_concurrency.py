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


def _track(db, path) -> M.Track:
    with db.session() as s:
        track = s.scalar(select(M.Track).where(M.Track.path == str(path)))
        s.expunge(track)
        return track


def _describes(track: M.Track, path) -> bool:
    """The track's recorded facts are those of the file now (a scan would skip it)."""
    from tagger.fingerprint import content_hash, fingerprint

    st = os.stat(path)
    return (track.size, track.mtime, track.fingerprint, track.content_hash) == (
        st.st_size, st.st_mtime, fingerprint(path), content_hash(path))  # fmt: skip


def _untag_now(path) -> None:
    """`tagger untag --keep-mtime` landing right after another tag write's rename, before that write
    records the file: its copy is made (and renamed) a moment later."""
    import time

    time.sleep(0.05)
    change = remove_instruments(path, keep_mtime=True)
    assert change.written


@pytest.fixture
def tagged_flac(tmp_path):
    """A library of one FLAC file, scanned and tagged (its tag now has padding: later writes and an
    untag leave its size as it is)."""
    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([FREQ["bass"]], seconds=4.0))
    db = open_database(tmp_path / "library.db")
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0,
         on_track=tag_writer(model_version="fake-1"))  # fmt: skip
    assert read_instruments(song).model_version == "fake-1" and _track(db, song).tags_current
    yield music, song, db
    db.close()


def test_a_scan_never_records_another_writers_file_as_its_tagged_one(tagged_flac):
    """Was: an untag (or a second tagger) moving its copy over the file between the scan's tag write
    and its record left the same size and mtime with --keep-mtime; the scan recorded that file's
    facts as its tagged one, so the file stayed without tags for good while the database said its
    tags were current (every later scan skipped it)."""
    music, song, db = tagged_flac
    write = tag_writer(model_version="fake-2", keep_mtime=True)
    sizes = []

    def write_then_untag(path, result, analysed):
        change = write(path, result, analysed)
        assert change.written
        _untag_now(path)
        sizes.append((change.size, change.mtime, os.path.getsize(path), os.path.getmtime(path)))
        return change

    scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True, on_track=write_then_untag)
    (size, mtime, size_now, mtime_now), = sizes
    assert (size, mtime) == (size_now, mtime_now)  # what size and mtime alone cannot tell apart
    assert not read_instruments(song).tagged
    assert not _track(db, song).tags_current  # not claimed as tagged
    # so the next scan writes its tags (without analysing it again)
    again = FakeAnalyser(version="fake-2")
    summary = scan([music], db=db, analyser=again, jobs=0, on_track=tag_writer(model_version="fake-2"))
    assert summary.tags_written == 1 and read_instruments(song).model_version == "fake-2"
    track = _track(db, song)
    assert track.tags_current and _describes(track, song)


def test_tag_never_records_another_writers_file_as_its_tagged_one(tagged_flac, monkeypatch):
    """The same for `tagger tag`: an untag between its rename and its record."""
    from tagger.db import writes
    from tagger.tags import tag_from_database

    music, song, db = tagged_flac
    record = writes.record_rewrite

    def untag_then_record(session, **kwargs):
        _untag_now(kwargs["path"])
        return record(session, **kwargs)

    monkeypatch.setattr(writes, "record_rewrite", untag_then_record)
    results = list(tag_from_database(db, paths=[music], scores=True, keep_mtime=True))
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written
    assert not read_instruments(song).tagged
    track = _track(db, song)
    assert not (track.tags_current and _describes(track, song))  # never "tagged" for a file without tags

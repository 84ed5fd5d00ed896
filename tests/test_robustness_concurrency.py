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
from tagger.db.filter import TrackFilter
from tagger.db.session import open_database
from tagger.errors import TagWriteError
from tagger.library.scan import scan, tag_writer
from tagger.tags import filesystem, read_instruments, remove_instruments, write_instruments

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
    """Pauses the thread named ``who`` in `filesystem.link_backup`: after the rewrite's last check that
    the file is still the one it copied, right before its ``rename``."""

    def __init__(self, monkeypatch, who: str) -> None:
        self.inside, self.go = threading.Event(), threading.Event()
        original = filesystem.link_backup

        def link_backup(real, folder, prefix):
            if threading.current_thread().name == who:
                self.inside.set()
                assert self.go.wait(30)
            return original(real, folder, prefix)

        monkeypatch.setattr(filesystem, "link_backup", link_backup)


def _exchange_here(folder: Path) -> bool:
    """Two names can be swapped in one step in ``folder`` (`filesystem.exchange`)."""
    a, b = folder / ".exchange-a", folder / ".exchange-b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    try:
        return filesystem.exchange(str(a), str(b)) and a.read_bytes() == b"b"
    finally:
        a.unlink()
        b.unlink()


def _their_save(song: Path, save: Path, title: str = "their save") -> Path:
    """``save``: a copy of ``song`` with another TITLE, another program's save to land by rename."""
    from mutagen.flac import FLAC

    save.write_bytes(song.read_bytes())
    edited = FLAC(save)
    edited["TITLE"] = title
    edited.save()
    return save


def _at_the_last_check(monkeypatch, then) -> list[bool]:
    """Call ``then()`` (another program's save landing, a deletion) at a tag write's last check that
    the file is the one it copied: its second `_Write.still_the_file`, in `replace`, right before the
    rename. The checks' answers, in order."""
    from tagger.tags import writing

    original, calls = writing._Write.still_the_file, []

    def still_the_file(self):
        same = original(self)
        calls.append(same)
        if len(calls) == 2:
            then()
        return same

    monkeypatch.setattr(writing._Write, "still_the_file", still_the_file)
    return calls


def _saved_over_at_the_last_check(tmp_path, monkeypatch, name: str = "song.flac"):
    """A song (``name``) whose tag write meets another program's save moved over it at the write's last
    check (skipped where the file system cannot swap two names in one step)."""
    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0)).rename(tmp_path / name)
    theirs = _their_save(song, tmp_path / "theirs.flac")
    _at_the_last_check(monkeypatch, lambda: os.replace(theirs, song))
    return song


@pytest.mark.parametrize("write", ["tag", "untag"])
def test_a_file_another_program_moves_over_the_file_at_the_rename_is_kept(tmp_path, monkeypatch, write):
    """Was: a file moved over the one being tagged (a tag editor's atomic save, `ffmpeg ... && mv`)
    after the write's last check that the file was the one it copied, and before its rename, was
    replaced by the copy of the old file, their save lost while the write said `tagged` (found
    attacking tagger with a program saving a new TITLE by rename every few milliseconds beside
    tag writes: 29 of 763 writes lost one). The copy and the file now swap names in one step, and
    the file that was there is put back when it is not the one copied."""
    from mutagen.flac import FLAC

    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    if write == "untag":
        write_instruments(song, instruments=["bass"], model_version="fake-1")
    theirs = _their_save(song, tmp_path / "theirs.flac")
    calls = _at_the_last_check(monkeypatch, lambda: os.replace(theirs, song))
    with pytest.raises(TagWriteError, match="file changed while its tags were being written"):
        if write == "tag":
            write_instruments(song, instruments=["organ"], model_version="fake-2")
        else:
            remove_instruments(song)
    assert len(calls) == 2
    assert FLAC(song)["TITLE"] == ["their save"]  # theirs, as they saved it
    assert read_instruments(song).model_version == ("fake-1" if write == "untag" else None)
    assert not list(tmp_path.glob(".*tagger-tmp")) and not theirs.exists()
    monkeypatch.undo()  # a write without anyone beside it swaps the names and removes the old file
    change = write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert change.written and read_instruments(song).model_version == "fake-2"
    assert FLAC(song)["TITLE"] == ["their save"] and not list(tmp_path.glob(".*tagger-tmp"))


def test_a_stop_signal_between_the_swap_and_the_swap_back_never_removes_their_file(tmp_path, monkeypatch, python_sigint):
    """The swap of the names, the look at what came out and the swap back are one step for a stop
    signal: a Ctrl-C (KeyboardInterrupt) arriving right after the swap, with another program's file
    under the copy's name, would have the write's cleanup remove that file as its copy."""
    import signal

    from mutagen.flac import FLAC

    song = _saved_over_at_the_last_check(tmp_path, monkeypatch)
    exchange = filesystem.exchange

    def exchange_then_ctrl_c(a, b):
        done = exchange(a, b)
        os.kill(os.getpid(), signal.SIGINT)  # (Python's own handler: KeyboardInterrupt)
        return done

    monkeypatch.setattr(filesystem, "exchange", exchange_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert FLAC(song)["TITLE"] == ["their save"] and read_instruments(song).model_version is None
    assert not list(tmp_path.glob(".*tagger-tmp"))


def test_a_stop_signal_right_after_a_clean_swap_removes_the_original(tmp_path, monkeypatch, python_sigint):
    """A Ctrl-C arriving as the swap's step ends, nobody beside the write: the file is tagged and the
    original, under the copy's name, removed (the write's cleanup keeps only what it cannot prove its
    own: this is known as replaced in the same step; was kept as `NAME.tagger-kept-...`)."""
    import signal

    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    exchange = filesystem.exchange

    def exchange_then_ctrl_c(a, b):
        done = exchange(a, b)
        os.kill(os.getpid(), signal.SIGINT)  # (Python's own handler: KeyboardInterrupt, once the step ends)
        return done

    monkeypatch.setattr(filesystem, "exchange", exchange_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert read_instruments(song).model_version == "fake-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.flac"]


def test_a_second_save_between_the_swap_and_the_swap_back_is_kept(tmp_path, monkeypatch):
    """Was: a program saving by rename (a tag editor, `ffmpeg ... && mv`) twice in quick succession, the
    first save after the write's last check and the second between the swap of the names and the swap
    back, lost the second: the swap back took it out from under the path (their first save put back
    there) and the write's cleanup removed it as its copy (found reviewing 5a2f6bc: the swap back is
    not conditional on the path still holding the copy). The copy's name is checked after the swap
    back: where it does not hold the copy, the names are swapped again, their last save at the path."""
    from mutagen.flac import FLAC

    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    saves = [_their_save(song, tmp_path / f"{i}.flac", title) for i, title in enumerate(("their first save", "their second save"))]
    _at_the_last_check(monkeypatch, lambda: os.replace(saves[0], song))  # (their first save)
    same_inode = filesystem.same_inode

    def their_second_save_at_the_look(a, b):
        if saves[1].exists():
            os.replace(saves[1], song)  # (after the swap, before the swap back)
        return same_inode(a, b)

    monkeypatch.setattr(filesystem, "same_inode", their_second_save_at_the_look)
    with pytest.raises(TagWriteError, match="file changed while its tags were being written") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert FLAC(song)["TITLE"] == ["their second save"] and read_instruments(song).model_version is None
    assert not list(tmp_path.glob(".*tagger-tmp"))
    [kept] = _kept(tmp_path)  # (their first one, not tagger's to remove: was removed as the copy)
    assert FLAC(kept)["TITLE"] == ["their first save"] and f"another program replaced there meanwhile is kept as {kept}" in str(caught.value)


def _kept(folder: Path) -> list[Path]:
    """The files tag writes kept in ``folder``, not put back (``NAME.tagger-kept-XXXXXXXX~``)."""
    return sorted(folder.glob("*.tagger-kept-*"))


def _swap_back_fails(monkeypatch, how) -> None:
    """The swaps after a write's first (`filesystem.exchange`): ``how(exchange, a, b)`` instead, the
    file system's refusal (False, as `exchange` says of EIO, ENOSPC, ...) or another program's act."""
    exchange, calls = filesystem.exchange, []

    def swap(a, b):
        calls.append((a, b))
        return exchange(a, b) if len(calls) == 1 else how(exchange, a, b)

    monkeypatch.setattr(filesystem, "exchange", swap)


def _left_alone_by_the_next_run(folder: Path, song: Path, kept: Path) -> None:
    """Neither the next run's walk (which would tag it) nor its cleanup of leftover copies touch ``kept``."""
    from tagger.tags import find_audio_files, remove_stale_temp_files

    assert not remove_stale_temp_files(list(folder.iterdir()), min_age=0) and kept.exists()
    assert [p for p in find_audio_files([folder]) if not isinstance(p, Exception)] == ([song] if song.exists() else [])


@pytest.mark.parametrize("refusal", ["False", "OSError"])
def test_their_save_that_the_swap_back_cannot_put_back_is_kept(tmp_path, monkeypatch, refusal):
    """Was: where the swap back failed (the file system refused it: EIO, ENOSPC, ...), the write's
    cleanup removed what was under the copy's name as its copy: another program's save, moved over
    the file after the write's last check, lost, and the write said `file changed ...; left as it is`
    with tagger's copy at the path (found reviewing the swap back of 5a2f6bc for what its failure
    does). It is kept as `NAME.tagger-kept-XXXXXXXX~`, which the error names, the path's content
    said; no later walk or cleanup touches it."""
    from mutagen.flac import FLAC

    song = _saved_over_at_the_last_check(tmp_path, monkeypatch)

    def refused(exchange, a, b):
        if refusal == "OSError":
            raise OSError(5, "Input/output error")
        return False

    _swap_back_fails(monkeypatch, refused)
    with pytest.raises(TagWriteError, match="the file system refused to put that file back: it is kept as ") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    [kept] = _kept(tmp_path)
    assert str(kept) in str(caught.value) and "the path holds tagger's copy" in str(caught.value)
    assert FLAC(kept)["TITLE"] == ["their save"]  # (theirs, whole)
    assert read_instruments(song).model_version == "fake-2" and not list(tmp_path.glob(".*tagger-tmp"))
    _left_alone_by_the_next_run(tmp_path, song, kept)


def test_their_save_under_the_copy_s_name_when_the_file_is_deleted_before_the_swap_back_is_kept(tmp_path, monkeypatch):
    """Was: the file deleted (or moved away) between the swap and the swap back, which then failed
    (ENOENT), had the write's cleanup remove what the swap had taken from the path, another program's
    save, as its copy. It is kept, and the error says where."""
    from mutagen.flac import FLAC

    song = _saved_over_at_the_last_check(tmp_path, monkeypatch)

    def deleted_first(exchange, a, b):
        os.unlink(b)  # (the path, holding the copy since the swap)
        return exchange(a, b)

    _swap_back_fails(monkeypatch, deleted_first)
    with pytest.raises(TagWriteError, match="file deleted or moved away while .*; the file that was there before is kept as ") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    [kept] = _kept(tmp_path)
    assert str(kept) in str(caught.value) and FLAC(kept)["TITLE"] == ["their save"]
    assert not song.exists() and not list(tmp_path.glob(".*tagger-tmp"))
    _left_alone_by_the_next_run(tmp_path, song, kept)


def test_their_last_save_that_the_second_swap_back_cannot_put_back_is_kept(tmp_path, monkeypatch):
    """Was: with two saves of another program (the second between the swap and the swap back:
    3078827), a refused second swap (their last save back at the path) left their last save under the
    copy's name, removed by the write's cleanup. It is kept, and the error says where."""
    from mutagen.flac import FLAC

    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    saves = [_their_save(song, tmp_path / f"{i}.flac", title) for i, title in enumerate(("their first save", "their second save"))]
    _at_the_last_check(monkeypatch, lambda: os.replace(saves[0], song))
    same_inode, swaps = filesystem.same_inode, []

    def their_second_save_at_the_look(a, b):
        if saves[1].exists():
            os.replace(saves[1], song)  # (after the swap, before the swap back)
        return same_inode(a, b)

    def refused_the_second_time(exchange, a, b):
        swaps.append(b)
        return exchange(a, b) if len(swaps) == 1 else False

    monkeypatch.setattr(filesystem, "same_inode", their_second_save_at_the_look)
    _swap_back_fails(monkeypatch, refused_the_second_time)
    with pytest.raises(TagWriteError, match="refused to put their last one back: it is kept as ") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    [kept] = _kept(tmp_path)
    assert str(kept) in str(caught.value) and FLAC(kept)["TITLE"] == ["their second save"]
    assert FLAC(song)["TITLE"] == ["their first save"] and not list(tmp_path.glob(".*tagger-tmp"))
    _left_alone_by_the_next_run(tmp_path, song, kept)


@pytest.mark.parametrize("name", [b"\xe9t\xe9.flac", b"\xe9" * 250 + b".flac", "\u20ac".encode() * 83 + b".flac"],
                         ids=["latin-1", "latin-1-long", "utf-8-long"])
def test_the_kept_name_spells_the_file_s_name(tmp_path, monkeypatch, name):
    """Was: the kept name dropped the bytes of a name that are not UTF-8, so that the file another
    program saved as `\xe9t\xe9.flac` (a name written in Latin-1) was kept as `t.flac.tagger-kept-...`,
    and that of `\xe9.flac` as the hidden `.flac.tagger-kept-...`, which a folder's listing does not
    show (found reviewing 54175fd with names that are not UTF-8). The kept name begins with the file's
    name, byte for byte (cut, in whole characters, to fit the 255 bytes a name may have)."""
    from mutagen.flac import FLAC

    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), name)))
    os.replace(write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0)), song)
    theirs = _their_save(song, tmp_path / "theirs.flac")
    _at_the_last_check(monkeypatch, lambda: os.replace(theirs, song))
    _swap_back_fails(monkeypatch, lambda exchange, a, b: False)
    with pytest.raises(TagWriteError, match="it is kept as ") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    [kept] = _kept(tmp_path)
    start = os.fsencode(kept.name).partition(b".tagger-kept-")[0]
    assert name.startswith(start) and len(start) > 190 if len(name) > 200 else start == name
    if name.startswith("\u20ac".encode()):
        assert start.decode("utf-8") == "\u20ac" * 66  # (no character cut in two)
    assert str(kept) in str(caught.value) and FLAC(kept)["TITLE"] == ["their save"]
    _left_alone_by_the_next_run(tmp_path, song, kept)


def test_a_file_the_swap_back_cannot_put_back_nor_move_stays_under_the_hidden_name_said(tmp_path, monkeypatch):
    """Where the kept file cannot be moved to a name of its own either (the file system refusing
    links and renames), it stays under the copy's hidden name, which the error names with what to do."""
    from mutagen.flac import FLAC

    song = _saved_over_at_the_last_check(tmp_path, monkeypatch)
    _swap_back_fails(monkeypatch, lambda exchange, a, b: False)

    def refused(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "link", refused)
    monkeypatch.setattr(os, "rename", refused)
    monkeypatch.setattr(filesystem, "rename_noreplace", lambda a, b: refused())
    with pytest.raises(TagWriteError, match="move it away before a scan") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    [hidden] = tmp_path.glob(".*tagger-tmp")
    assert f"kept as {hidden} (moving it to a name of its own failed too" in str(caught.value)
    assert FLAC(hidden)["TITLE"] == ["their save"] and not _kept(tmp_path)


@pytest.mark.parametrize("no_replace", ["kernel", "refused"])
def test_a_file_put_under_the_kept_name_meanwhile_is_not_overwritten(tmp_path, monkeypatch, no_replace):
    """Was: on a file system without hard links, the file to keep was moved to its kept name by a plain
    rename after a look that no file had that name, so a file put there in between was overwritten,
    lost (found reviewing 54175fd). The rename is one that never replaces a file, where the kernel and
    the file system offer it (`renameat2` RENAME_NOREPLACE): the file there is left alone, another
    name taken. Where that is refused (EINVAL, as many FUSE file systems), the look and rename stay."""
    from mutagen.flac import FLAC

    song = _saved_over_at_the_last_check(tmp_path, monkeypatch)
    _swap_back_fails(monkeypatch, lambda exchange, a, b: False)

    def no_hard_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    lexists, appeared = os.path.lexists, []

    def put_there_right_after_the_look(name):
        there = lexists(name)
        if ".tagger-kept-" in os.fsdecode(name) and not appeared:
            Path(name).write_bytes(b"another file")  # (after the look, before the rename)
            appeared.append(Path(name))
        return there

    monkeypatch.setattr(os, "link", no_hard_links)
    monkeypatch.setattr(os.path, "lexists", put_there_right_after_the_look)
    if no_replace == "refused":
        monkeypatch.setattr(filesystem, "rename_noreplace", lambda a, b: False)
    with pytest.raises(TagWriteError, match="it is kept as ") as caught:
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    [other] = appeared
    if no_replace == "refused":  # (the look and a plain rename, as before: nothing better to do there)
        assert str(other) in str(caught.value) and FLAC(other)["TITLE"] == ["their save"]
        return
    assert other.read_bytes() == b"another file"  # (was: overwritten by their save)
    [kept] = [p for p in _kept(tmp_path) if p != other]
    assert str(kept) in str(caught.value) and FLAC(kept)["TITLE"] == ["their save"]
    assert not list(tmp_path.glob(".*tagger-tmp"))


def test_rename_noreplace_never_replaces_a_file(tmp_path):
    """`filesystem.rename_noreplace` renames where the name is free, and where it is taken leaves both
    files as they are (FileExistsError); False, nothing done, where the kernel has no such rename."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    if not filesystem.rename_noreplace(str(a), str(c)):
        pytest.skip("no renameat2 RENAME_NOREPLACE here")
    assert c.read_bytes() == b"a" and not a.exists()
    with pytest.raises(FileExistsError):
        filesystem.rename_noreplace(str(c), str(b))
    assert c.read_bytes() == b"a" and b.read_bytes() == b"b"
    with pytest.raises(FileNotFoundError):
        filesystem.rename_noreplace(str(a), str(tmp_path / "d"))


def test_a_file_system_that_takes_the_swap_for_a_rename_tags_the_file(tmp_path, monkeypatch):
    """Was: on a FUSE file system whose rename drops its flags (those built on fusepy with libfuse 3:
    `renameat2` with RENAME_EXCHANGE succeeds as a plain rename), every write was said `file deleted or
    moved away while its tags were being written ...; not put back`, the file tagged all the same (found
    reviewing 5a2f6bc on such a loopback mount). A swap that left the copy at the path and nothing under
    the copy's name was a rename: the write is done, said as such."""
    from mutagen.flac import FLAC

    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    before = FLAC(song)
    before["TITLE"] = "kept"
    before.save()

    def plain_rename(a, b):
        os.rename(a, b)  # (as such a file system does, and says it swapped)
        return True

    monkeypatch.setattr(filesystem, "exchange", plain_rename)
    change = write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert change.written and read_instruments(song).model_version == "fake-2"
    assert FLAC(song)["TITLE"] == ["kept"] and not list(tmp_path.glob(".*tagger-tmp"))
    assert (change.size, change.mtime) == (song.stat().st_size, song.stat().st_mtime)


def test_a_file_deleted_at_the_rename_is_not_put_back(tmp_path, monkeypatch):
    """Was: a file another program deleted (or moved away) after the write's last check was put back
    under its name by the rename of the copy, old audio, new tags and all (found attacking tagger
    with a process putting a file in place and deleting it every few milliseconds beside tag writes:
    82 of 3,414 deletions undone); the write now swaps the names in one step, which fails where the
    file is gone, and the file stays gone. A file gone before the permission checks is `no such
    file`, not `file is read-only`."""
    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    _at_the_last_check(monkeypatch, song.unlink)  # (deleted now)
    with pytest.raises(TagWriteError, match="file deleted or moved away while its tags were being written"):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert not song.exists() and not list(tmp_path.iterdir())
    gone = tmp_path / "gone.flac"
    st = os.stat(write_audio(gone, tone_signal([FREQ["bass"]], seconds=1.0)))
    gone.unlink()  # (after its stat, before the checks)
    with pytest.raises(TagWriteError, match="no such file"):
        filesystem.check_writable(gone, str(gone), st)


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
    results = list(tag_from_database(db, where=TrackFilter.of(paths=[music]), scores=True, keep_mtime=True))
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written
    assert not read_instruments(song).tagged
    track = _track(db, song)
    assert not (track.tags_current and _describes(track, song))  # never "tagged" for a file without tags


CLI_SCRIPT = """
import os, sys, time
sys.path[:0] = [{tests!r}, {root!r}]  # this checkout's tagger, whatever is installed
from library_fakes import FakeAnalyser
from tagger.model.ensemble import Ensemble
from tagger.tags import writing

Ensemble.load = classmethod(lambda cls, *a, **k: FakeAnalyser(version=os.environ["FAKE_MODEL"]))
slow_copy = writing._write_copy

def slow_write_copy(*args, **kwargs):  # widen each tag write, so that the commands' writes overlap
    time.sleep(0.05)
    return slow_copy(*args, **kwargs)

writing._write_copy = slow_write_copy
from tagger.cli import main
sys.argv = ["tagger", *sys.argv[1:]]
main()
"""

EDITOR_SCRIPT = """
import sys, time
from mutagen.flac import FLAC
for i in range(int(sys.argv[2])):
    f = FLAC(sys.argv[1])
    f["TITLE"] = "take %d" % i
    f.save()  # in place, as tag editors do
    time.sleep(0.03)
print("take %d" % i)
"""


def test_the_commands_side_by_side_lose_nothing(tmp_path):
    """A re-analysing scan (new model, tag writes) beside `tag --scores`, `untag`, `query`, `show`,
    `db prune`, a second scan, a tag editor saving one file in place and a file renamed meanwhile,
    all real processes on one library and one database. Each command either does its work or says in
    a line why not; afterwards no write is lost, nothing is left behind, the database never says a
    file's tags hold its results when they do not, and one more scan brings every file's tags up to
    date (and the one after it has nothing left to do)."""
    music = tmp_path / "music"
    files = [write_audio(music / f"d{i % 2}" / f"t{i}.flac", tone_signal([FREQ["bass"] + 7 * i], seconds=4.0))
             for i in range(6)]  # fmt: skip
    edited, renamed = files[0], files[5]
    db_path = tmp_path / "library.db"
    db = open_database(db_path)
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0, on_track=tag_writer(model_version="fake-1"))
    db.close()
    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent)))
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR_SCRIPT)
    env = {**os.environ, "TAGGER_SETTLE_SECONDS": "0", "FAKE_MODEL": "fake-2", "TAGGER_DB": str(db_path)}

    def start(*args):
        return subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip

    procs = {
        "scan": start("scan", str(music), "--jobs", "0", "--rescan-stale"),
        "tag": start("tag", "--scores", str(music)),
        "untag": start("untag", str(music / "d1")),
        "query": start("query", "--format", "json"),
        "show": start("show", str(files[2])),
        "prune": start("db", "prune"),
        "scan2": start("scan", str(music), "--jobs", "0"),
        "editor": subprocess.Popen([sys.executable, str(editor), str(edited), "40"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True),  # fmt: skip
    }
    import time

    time.sleep(2.0)
    os.rename(renamed, renamed.with_name("moved.flac"))  # a file renamed meanwhile
    renamed = renamed.with_name("moved.flac")
    out = {}
    for name, proc in procs.items():
        out[name] = proc.communicate(timeout=240)[0]
        assert "Traceback" not in out[name], (name, out[name])
        assert proc.returncode in (0, 1), (name, proc.returncode, out[name])
        if proc.returncode and name != "editor":  # a refusal or a skip: said in a line
            assert "tagger:" in out[name], (name, out[name])
    last_title = out["editor"].strip().splitlines()[-1]
    assert FLAC_title(edited) == last_title  # the tag editor's last save was not replaced by a tagger copy
    assert not list(music.rglob("*tagger-tmp"))
    db = open_database(db_path)
    try:
        with db.session() as s:
            assert s.connection().exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        _never_claims_wrong_tags(db)
        # one more scan brings every file up to date, without analysing any again...
        summary = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True,
                       on_track=tag_writer(model_version="fake-2"))  # fmt: skip
        assert summary.failed == 0 and summary.tag_errors == 0, summary
        for song in [*files[:5], renamed]:
            assert read_instruments(song).model_version == "fake-2", song
        assert FLAC_title(edited) == last_title
        _never_claims_wrong_tags(db)
        # ... and the next has nothing left to do
        summary = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True,
                       on_track=tag_writer(model_version="fake-2"))  # fmt: skip
        assert (summary.scanned, summary.tags_written, summary.skipped) == (0, 0, 6), summary
    finally:
        db.close()


def FLAC_title(path) -> str:
    from mutagen.flac import FLAC

    return FLAC(path)["TITLE"][0]


def _never_claims_wrong_tags(db) -> None:
    """Every track the database says is tagged and unchanged (a scan would leave it alone) holds its
    stored results in its file's tags."""
    from tagger.db.queries import find_tracks

    with db.session() as s:
        found = {t.path: t for t in find_tracks(s)}
        rows = s.scalars(select(M.Track).where(M.Track.status == M.STATUS_OK)).all()
        for track in rows:
            if not os.path.exists(track.path) or not (track.tags_current and _describes(track, track.path)):
                continue
            state = read_instruments(track.path)
            assert state.model_version == track.model_version.version, track.path
            assert state.instruments == found[track.path].instruments, track.path


class PausedScan:
    """A tag-writing scan of ``music`` run in a thread and paused in its plan, reading the fingerprint
    of the file named ``at`` (a large library's plan reads files for minutes)."""

    def __init__(self, monkeypatch, music, db, *, at: str, version: str = "fake-1", before=None) -> None:
        from tagger.library import plan

        self.inside, self.go = threading.Event(), threading.Event()
        original = plan.fingerprint

        def fingerprint(path):
            if before is not None and threading.current_thread().name == "scan":
                before(path)
            if os.path.basename(path) == at and threading.current_thread().name == "scan":
                self.inside.set()
                assert self.go.wait(30)
            return original(path)

        monkeypatch.setattr(plan, "fingerprint", fingerprint)
        self.done: dict = {}

        def run():
            try:
                self.done["summary"] = scan([music], db=db, analyser=FakeAnalyser(version=version), jobs=0,
                                            on_track=tag_writer(model_version=version))  # fmt: skip
            except BaseException as exc:  # (reported by `finish`)
                self.done["error"] = exc

        self.thread = threading.Thread(target=run, name="scan")
        self.thread.start()
        assert self.inside.wait(30)

    def finish(self):
        self.go.set()
        self.thread.join(60)
        assert "error" not in self.done, self.done
        return self.done["summary"]


def test_a_scans_plan_leaves_the_database_to_tag_beside_it(tmp_path, monkeypatch):
    """Was: a tag-writing scan began a write transaction before its plan (an UPDATE marking the
    tracks of formats without tags for a retry, matching none) and held SQLite's write lock until
    its first commit, after the plan: on a library whose plan reads files for minutes, `tagger tag`
    (and any writer) beside it failed with `database is locked` after the 30 s wait."""
    from tagger.db import engine as E
    from tagger.tags import tag_from_database

    music = tmp_path / "music"
    files = [write_audio(music / f"t{i}.flac", tone_signal([FREQ["bass"] + 7 * i], seconds=3.0)) for i in range(3)]
    db = open_database(tmp_path / "library.db")
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0, on_track=tag_writer(model_version="fake-1"))
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
    other = open_database(tmp_path / "library.db", create=False)  # `tagger tag`, in its own process
    paused = PausedScan(monkeypatch, music, db, at="t2.flac")
    try:
        results = list(tag_from_database(other, where=TrackFilter.of(paths=[files[0]]), scores=True))
    finally:
        summary = paused.finish()
        other.close()
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written
    assert read_instruments(files[0]).scores  # the write, recorded: the scan beside it leaves it alone
    assert summary.failed == 0 and summary.tag_errors == 0 and summary.skipped == 3, summary
    assert _track(db, files[0]).tags_current and _describes(_track(db, files[0]), files[0])
    db.close()


def test_a_write_of_the_plan_is_committed_within_seconds(tmp_path, monkeypatch):
    """Was: a write of the plan (a file touched, then a new file's look-up flushing it) held SQLite's
    write lock until the plan's next write came after `commit_seconds`, or until the plan ended: a
    library whose other files were unchanged kept `tagger tag` beside the scan locked out for the
    rest of the plan. Now the plan commits a batch `commit_seconds` old before each file (a fake
    clock passes a minute while one file is read)."""
    import time
    import types

    from tagger.db import scan_writer
    from tagger.db import engine as E
    from tagger.tags import tag_from_database

    music = tmp_path / "music"
    names = ["a_touched.flac", "b_plain.flac", "d_plain.flac", "e_paused.flac"]
    files = [write_audio(music / n, tone_signal([FREQ["bass"] + 7 * i], seconds=3.0)) for i, n in enumerate(names)]
    db = open_database(tmp_path / "library.db")
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0, on_track=tag_writer(model_version="fake-1"))
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: the plan records its mtime
    write_audio(music / "c_new.flac", tone_signal([FREQ["flute"]], seconds=3.0))  # looked up: the write flushed
    late = [0.0]
    monkeypatch.setattr(scan_writer, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + late[0],
                                                                   perf_counter=time.perf_counter))  # fmt: skip

    def slow(path):  # d_plain.flac takes a minute to read
        if path.endswith("d_plain.flac"):
            late[0] += 60.0

    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
    other = open_database(tmp_path / "library.db", create=False)
    paused = PausedScan(monkeypatch, music, db, at="e_paused.flac", before=slow)
    try:
        results = list(tag_from_database(other, where=TrackFilter.of(paths=[files[1]]), scores=True))
    finally:
        summary = paused.finish()
        other.close()
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written
    assert summary.failed == 0 and summary.tag_errors == 0 and summary.scanned == 1, summary
    assert _describes(_track(db, files[0]), files[0]) and _track(db, files[1]).tags_current
    db.close()


def test_a_scan_in_one_process_commits_its_batch_during_a_long_read(tmp_path, monkeypatch):
    """Was: with ``--jobs 0`` (and the beets plugin's ``jobs: 0``) the tracks stored before a file
    read slowly (a large file on a slow share, read whole for its hash before any window is
    scored) waited, uncommitted, through that whole read: SQLite's write lock held as long, and on
    PostgreSQL a DBA's ``idle_in_transaction_session_timeout`` shorter than the read ended the
    connection and the scan, the batch lost (found with the timeout at 3 s on a test server:
    ``terminating connection due to idle-in-transaction timeout``). Now the batch is committed once
    `commit_seconds` old at each of the read's progress messages, as the worker processes' and the
    Dask client's waits do (a fake clock passes a minute while b.flac is read)."""
    import sqlite3
    import time
    import types

    from tagger.db import scan_writer
    from tagger.library import analyse

    music = tmp_path / "music"
    write_audio(music / "a.flac", tone_signal([FREQ["bass"]], seconds=4.0))
    write_audio(music / "b.flac", tone_signal([FREQ["flute"]], seconds=8.0))
    late = [0.0]
    clock = types.SimpleNamespace(monotonic=lambda: time.monotonic() + late[0], perf_counter=time.perf_counter)
    monkeypatch.setattr(scan_writer, "time", clock)
    monkeypatch.setattr(analyse, "time", clock)
    steps = analyse.content_hash_steps

    def hashed(path):  # (content_hash_steps returns the hash as its StopIteration's value)
        gen = steps(path)
        first = True
        while True:
            try:
                step = next(gen)
            except StopIteration as end:
                return end.value
            if first and path.endswith("b.flac"):
                late[0] += 60.0
            first = False
            yield step

    monkeypatch.setattr(analyse, "content_hash_steps", hashed)
    seen = []

    class Counting(FakeAnalyser):
        def predict_features(self, feats, batch_size=None):
            out = super().predict_features(feats, batch_size)
            if out[:, self.families.index("flute")].max() > 0.5:  # b.flac's first windows, after its read
                with sqlite3.connect(str(tmp_path / "library.db")) as other:
                    seen.append(other.execute("SELECT count(*) FROM tracks WHERE status = 'ok'").fetchone()[0])
            return out

    db = open_database(tmp_path / "library.db")
    summary = scan([music], db=db, analyser=Counting(), jobs=0)
    db.close()
    assert summary.scanned == 2 and summary.failed == 0
    assert late[0] == 60.0 and seen == [1], seen


def test_tag_beside_a_suspended_scan_on_postgresql_stops_in_one_line(tmp_path, monkeypatch, pg_url):
    """Was: on PostgreSQL (which waits for a lock for ever by default) `tagger tag` beside a scan
    suspended with its batch open (Ctrl-Z, a stuck client) waited on the track's row lock for as
    long, holding its file's writer lock and temporary copy; SQLite gives up after the 30 s wait.
    Now PostgreSQL waits as long, then the command stops in one line, the file untouched."""
    from sqlalchemy import text

    from tagger.db import engine as E

    from tagger.db.urls import DatabaseError
    from tagger.tags import tag_from_database

    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([FREQ["bass"]], seconds=3.0))
    db = open_database(pg_url)
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0, on_track=tag_writer(model_version="fake-1"))
    before = song.read_bytes()
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
    other = open_database(pg_url, create=False)
    suspended = db.engine.connect()  # the scan's open batch: the track updated, not committed
    suspended.execute(text("UPDATE tracks SET updated_at = updated_at"))
    done: dict = {}

    def tag():
        try:
            done["results"] = list(tag_from_database(other, where=TrackFilter.of(paths=[music]), scores=True))
        except BaseException as exc:
            done["error"] = exc

    thread = threading.Thread(target=tag, daemon=True)
    thread.start()
    thread.join(60)  # (a bound on a wait that used to last for ever, not a timing)
    try:
        assert not thread.is_alive(), "tag waited for the scan's lock for ever"
        assert isinstance(done.get("error"), DatabaseError), done
        assert "lock timeout" in str(done["error"]) and "left alone" in str(done["error"])
        assert song.read_bytes() == before and not list(music.glob(".*tagger-tmp"))
    finally:
        suspended.rollback()
        suspended.close()
    # the scan resumed and done, the same command works
    results = list(tag_from_database(other, where=TrackFilter.of(paths=[music]), scores=True))
    assert [r.written for r in results] == [True] and read_instruments(song).scores
    other.close()
    db.close()


SUSPENDED_SCAN = """
import os, signal, sys
sys.path[:0] = [{tests!r}, {root!r}]
from library_fakes import FakeAnalyser
from tagger.db.scan_writer import ScanWriter
from tagger.db.session import open_database
from tagger.library.scan import scan

store = ScanWriter.store_result

def store_then_stop(self, *args, **kwargs):  # Ctrl-Z with the batch open: its first track rewritten
    track = store(self, *args, **kwargs)
    if self.summary.scanned == 1:
        self.session.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
    return track

ScanWriter.store_result = store_then_stop
db = open_database(sys.argv[1])
summary = scan([sys.argv[2]], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True)
print("scanned", summary.scanned)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def library_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "library.db")
    else:
        from pgserver import postgres_url_fixture

        yield from postgres_url_fixture()


def _tag_beside_a_scan_paused_in_a_digest_read(tmp_path, monkeypatch, db, roots, tagged):
    """Scan ``roots`` into ``db`` in a thread, paused in its first audio digest read (the plan's,
    `tagger.library.matches._audio_digest_or_none`), while `tag_from_database` writes ``tagged`` from
    a second connection with a 0.5 s busy wait: the scan's summary and the tag write's results."""
    from tagger.db import engine as E
    from tagger.library import matches
    from tagger.tags import tag_from_database

    inside, go = threading.Event(), threading.Event()
    real = matches._audio_digest_or_none

    def paused(path):
        inside.set()
        assert go.wait(60)
        return real(path)

    monkeypatch.setattr(matches, "_audio_digest_or_none", paused)
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
    done: dict = {}

    def run():
        try:
            done["summary"] = scan(roots, db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0)
        except BaseException as exc:
            done["error"] = exc

    thread = threading.Thread(target=run, name="scan")
    thread.start()
    other = open_database(tmp_path / "library.db", create=False)
    try:
        assert inside.wait(30)
        results = list(tag_from_database(other, where=TrackFilter.of(paths=[tagged]), scores=True))
    finally:
        go.set()
        thread.join(60)
        other.close()
    assert "error" not in done, done
    return done["summary"], results


def _touched_library(tmp_path, names):
    """A library of ``names`` (FLAC tones) scanned with tags written, its first file then touched
    (the next plan records its mtime, a write it holds until it commits): the files and database."""
    music = tmp_path / "music"
    files = [write_audio(music / n, tone_signal([FREQ["bass"] + 7 * i], seconds=3.0)) for i, n in enumerate(names)]
    db = open_database(tmp_path / "library.db")
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0, on_track=tag_writer(model_version="fake-1"))
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    return music, files, db


def test_the_plans_audio_digest_reads_hold_no_write_lock(tmp_path, monkeypatch):
    """The plan reads the audio digest of new files when tracks are gone (a move with new tags,
    `tagger.library.matches.moved_with_new_tags`): reads of a whole file each, held by no write of the
    plan before them (a touched file's), so `tagger tag` beside the scan writes meanwhile."""
    music, files, db = _touched_library(tmp_path, ["a_touched.flac", "b_gone.flac", "d_plain.flac"])
    files[1].unlink()  # gone
    write_audio(music / "c_new.flac", tone_signal([FREQ["flute"]], seconds=3.0))  # new: its digest is read
    summary, results = _tag_beside_a_scan_paused_in_a_digest_read(tmp_path, monkeypatch, db, [music], files[2])
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written
    assert (summary.scanned, summary.missing, summary.moved) == (1, 1, 0)
    assert _describes(_track(db, files[0]), files[0])
    db.close()


def test_the_digest_reads_of_files_named_as_roots_hold_no_write_lock(tmp_path, monkeypatch):
    """The files named as roots (the beets plugin's items, `tagger scan FILE`) have their audio
    digests read to look for their gone tracks anywhere in the database (1959198's
    `_Plan.gone_elsewhere`); those reads ran before the plan's pending writes were committed, so a
    touched file's recorded mtime held SQLite's write lock through them, and `tagger tag` beside a
    beets import of many new files was locked out (found reviewing 1959198)."""
    _music, files, db = _touched_library(tmp_path, ["a_touched.flac", "b_plain.flac"])
    new = write_audio(tmp_path / "import" / "c_new.flac", tone_signal([FREQ["flute"]], seconds=3.0))
    summary, results = _tag_beside_a_scan_paused_in_a_digest_read(tmp_path, monkeypatch, db, [files[0], new], files[1])
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written
    assert (summary.scanned, summary.moved) == (1, 0)
    assert _describes(_track(db, files[0]), files[0])
    db.close()


def test_a_command_locked_out_by_a_suspended_scan_names_it(tmp_path, monkeypatch, library_url):
    """Was: `tagger tag` beside a scan suspended (Ctrl-Z) with its batch open stopped on the driver's
    bare words (`cannot write the database ...: database is locked`; PostgreSQL: `canceling
    statement due to lock timeout`), leaving the user to guess what held it. Now the line names
    the scan that holds the database, its process, and (SQLite, one machine) that it is stopped."""
    import signal

    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.db import engine as E

    music = tmp_path / "music"
    files = [write_audio(music / f"t{i}.flac", tone_signal([FREQ["bass"] + 7 * i], seconds=3.0)) for i in range(2)]
    db = open_database(library_url)
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0)
    db.close()
    script = tmp_path / "scan.py"
    script.write_text(SUSPENDED_SCAN.format(tests=str(TESTS), root=str(TESTS.parent)))
    child = subprocess.Popen([sys.executable, str(script), library_url, str(music)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
        result = CliRunner().invoke(app, ["tag", str(music), "--db", library_url, "--settle-seconds", "0"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        line, = [line for line in result.output.splitlines() if line.startswith("tagger: error:")]
        assert "another tagger scan or prune (" in line and "holds it" in line, line
        if "postgresql" in library_url:
            assert "lock timeout" in line and "server process" in line, line
        else:
            assert f"database is locked (another tagger scan or prune (process {child.pid}) holds it; it is stopped" in line
            assert f"kill -CONT {child.pid}" in line, line
        assert not any(read_instruments(f).tagged for f in files)
    finally:
        os.kill(child.pid, signal.SIGCONT)
        out = child.communicate(timeout=120)[0]
    assert child.returncode == 0 and "scanned 2" in out, out


def test_a_scan_locked_out_never_names_itself(tmp_path, monkeypatch):
    """The scan holds the scan lock itself: a write lock another program holds past the wait is
    that program's, and the line says so rather than naming the scan's own process."""
    import sqlite3

    from tagger.db import engine as E

    from tagger.db.urls import DatabaseError

    music = tmp_path / "music"
    write_audio(music / "t.flac", tone_signal([FREQ["bass"]], seconds=3.0))
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
    db = open_database(tmp_path / "library.db")
    other = sqlite3.connect(tmp_path / "library.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError) as caught:
            scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0)
    finally:
        other.execute("ROLLBACK")
        other.close()
        db.close()
    assert "database is locked (another program or tagger command held it past the 0.5 s wait)" in str(caught.value)
    assert str(os.getpid()) not in str(caught.value)


@pytest.fixture
def analysed_library(tmp_path):
    """Two FLAC files analysed (model fake-1), their tags not written yet."""
    music = tmp_path / "music"
    files = [write_audio(music / f"t{i}.flac", tone_signal([FREQ["bass"] + 7 * i], seconds=3.0)) for i in range(2)]
    db = open_database(tmp_path / "library.db")
    scan([music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0)
    yield music, files, db
    db.close()


def test_two_tag_runs_at_once_both_write(analysed_library, tmp_path):
    """Was: a `tagger tag --scores` that read the library before another `tagger tag` rewrote (and
    recorded) a file skipped that file as `changed since it was analysed ...; scan it again`, exit
    1, though the database described the file as it was (a scan then had nothing to do). Each file
    is now written from the track as the database holds it right before its write."""
    from tagger.tags import tag_from_database

    music, files, db = analysed_library
    first = tag_from_database(open_database(tmp_path / "library.db", create=False), where=TrackFilter.of(paths=[music]),
                              scores=True)  # fmt: skip
    assert next(first).written  # t0, and the library read: t1 next
    second = list(tag_from_database(open_database(tmp_path / "library.db", create=False),
                                    where=TrackFilter.of(paths=[music])))  # fmt: skip
    assert [r.written for r in second] == [True, True]  # t0 without scores again, t1
    rest = list(first)
    assert [type(r).__name__ for r in rest] == ["TagChange"] and rest[0].written, rest
    assert read_instruments(files[1]).scores and not read_instruments(files[0]).scores  # the last write of each
    for song in files:
        track = _track(db, song)
        assert track.tags_current and _describes(track, song)


def test_tag_writes_the_results_a_scan_stored_during_its_run(analysed_library, tmp_path):
    """Was: a `tagger tag` run wrote the results it read at its start into every file, also where a
    scan (another model, without tag writing) had stored new ones since: the file got superseded
    results (reported, not recorded as current). It now writes those the track holds at the write."""
    from tagger.tags import tag_from_database

    music, files, db = analysed_library
    run = tag_from_database(open_database(tmp_path / "library.db", create=False), where=TrackFilter.of(paths=[music]))
    assert next(run).after.model_version == "fake-1"
    scan([files[1]], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True)
    rest = list(run)
    assert [type(r).__name__ for r in rest] == ["TagChange"] and rest[0].after.model_version == "fake-2", rest
    assert read_instruments(files[1]).model_version == "fake-2"
    track = _track(db, files[1])
    assert track.tags_current and _describes(track, files[1])


def test_two_databases_of_one_library_never_claim_the_others_tags(tmp_path):
    """Scans of one folder into two databases (a parent folder into one, a sub-folder into the other,
    each its own model) both write tags: neither database says a file holds its results once the
    other rewrote it; each next scan finds its audio as it was (its results kept, not analysed
    again) and writes its own tags back (README, *One scan per database*: right, but surprising)."""
    music = tmp_path / "music"
    song = write_audio(music / "sub" / "song.flac", tone_signal([FREQ["bass"]], seconds=3.0))
    dbs = {"parent": open_database(tmp_path / "a.db"), "sub": open_database(tmp_path / "b.db")}
    runs = [("parent", music, "fake-1", 1), ("sub", music / "sub", "fake-2", 1)]
    runs += [(name, root, version, 0) for name, root, version, _ in runs] * 2
    try:
        for name, root, version, analysed in runs:
            summary = scan([root], db=dbs[name], analyser=FakeAnalyser(version=version), jobs=0,
                           on_track=tag_writer(model_version=version))  # fmt: skip
            assert (summary.scanned, summary.tags_written) == (analysed, 1), (name, summary)
            assert read_instruments(song).model_version == version
            for db in dbs.values():
                _never_claims_wrong_tags(db)
    finally:
        for db in dbs.values():
            db.close()


def test_a_scan_writing_the_tags_of_unchanged_tracks_leaves_the_database_to_tag_beside_it(analysed_library, tmp_path,
                                                                                          monkeypatch):  # fmt: skip
    """Was: a scan writing the stored results of unchanged tracks into their files (their tags did
    not hold them) flushed the previous file's new facts as it read the next track, and so held
    SQLite's write lock through that file's tag write: a long write (a large file, a slow drive)
    kept `tagger tag` beside it out past the 30 s wait. The next track is now read without
    writing; the facts go in with the batch's commit."""
    from tagger.db import engine as E
    from tagger.tags import tag_from_database

    music, files, db = analysed_library
    music2 = tmp_path / "other"
    song = write_audio(music2 / "song.flac", tone_signal([FREQ["flute"]], seconds=3.0))
    scan([music2], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0)
    inside, go = threading.Event(), threading.Event()
    write = tag_writer(model_version="fake-1")

    def slow_second(path, result, analysed):
        if path == str(files[1]):  # a long tag write, after the first file's
            inside.set()
            assert go.wait(30)
        return write(path, result, analysed)

    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault("summary", scan(
        [music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0, on_track=slow_second)), name="scan")  # fmt: skip
    thread.start()
    monkeypatch.setattr(E, "BUSY_TIMEOUT_S", 0.5)
    other = open_database(tmp_path / "library.db", create=False)
    try:
        assert inside.wait(30)
        results = list(tag_from_database(other, where=TrackFilter.of(paths=[song])))
    finally:
        go.set()
        thread.join(60)
        other.close()
    assert [r.written for r in results] == [True], results
    assert done["summary"].tags_written == 2, done
    for path in [*files, song]:
        track = _track(db, path)
        assert track.tags_current and _describes(track, path), path


def test_a_scan_never_reports_a_file_tag_wrote_meanwhile_as_a_tag_error(analysed_library, tmp_path, monkeypatch):
    """Was: a scan writing the stored results of unchanged tracks into their files found a file that
    `tagger tag` had tagged and recorded since the plan "changed while it was scanned; the next scan
    analyses it again": a tag error (exit 1 for a cron job) for a file whose tags held its results,
    which no scan analysed again. It now reads the track again: recorded as tagged, as the file is,
    it is done."""
    from tagger.library import taghook
    from tagger.tags import tag_from_database

    music, files, db = analysed_library
    inside, go = threading.Event(), threading.Event()
    changed = taghook.changed_during_analysis

    def pause_at_second(work, whole=None):
        if work.path == str(files[1]) and threading.current_thread().name == "scan":
            inside.set()
            assert go.wait(30)
        return changed(work, whole)

    monkeypatch.setattr(taghook, "changed_during_analysis", pause_at_second)
    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault("summary", scan(
        [music], db=db, analyser=FakeAnalyser(version="fake-1"), jobs=0,
        on_track=tag_writer(model_version="fake-1"))), name="scan")  # fmt: skip
    thread.start()
    try:
        assert inside.wait(30)
        results = list(tag_from_database(open_database(tmp_path / "library.db", create=False),
                                         where=TrackFilter.of(paths=[files[1]]), scores=True))  # fmt: skip
    finally:
        go.set()
        thread.join(60)
    assert [r.written for r in results] == [True]
    summary = done["summary"]
    assert (summary.tags_written, summary.tag_errors, summary.tag_failures) == (1, 0, []), summary
    assert read_instruments(files[1]).scores  # tag's write, left as it is
    for song in files:
        track = _track(db, song)
        assert track.tags_current and _describes(track, song), song


def test_tag_beside_another_writer_of_the_same_file_in_the_same_instant_writes(analysed_library, tmp_path,
                                                                               monkeypatch):  # fmt: skip
    """Was: when another `tagger tag` (or a scan's tag write) rewrote and recorded a file between
    this run's read of its track and its own write, the file was skipped as `changed since it was
    analysed ...; scan it again` (exit 1; a scan had nothing to do). The track is read once more
    and, when the database now records other facts for it, the write is made from those."""
    from tagger.tags import batch, tag_from_database

    music, files, db = analysed_library
    write = batch.write_instruments
    interleaved = []

    def other_writer_first(path, **options):  # the other run's write and record land in between
        if not interleaved:
            interleaved.append([])
            interleaved[0] = list(tag_from_database(open_database(tmp_path / "library.db", create=False),
                                                    where=TrackFilter.of(paths=[path])))  # fmt: skip
        return write(path, **options)

    monkeypatch.setattr(batch, "write_instruments", other_writer_first)
    results = list(tag_from_database(open_database(tmp_path / "library.db", create=False),
                                     where=TrackFilter.of(paths=[files[0]]), scores=True))  # fmt: skip
    assert [r.written for r in interleaved[0]] == [True]
    assert [type(r).__name__ for r in results] == ["TagChange"] and results[0].written, results
    assert read_instruments(files[0]).scores
    track = _track(db, files[0])
    assert track.tags_current and _describes(track, files[0])


class _Killed(BaseException):
    """A tag write stopped dead (`kill -9`, power loss): nothing of it runs after."""


def _killed_at(monkeypatch, then) -> None:
    """Stop a tag write dead right after its swap of the names (``then(a, b)`` may do more first): its
    cleanup never runs, the kernel lets go of its descriptors and their locks."""
    from tagger.tags import writing

    exchange = filesystem.exchange

    def exchange_then_die(a, b):
        exchange(a, b)
        then(a, b)
        raise _Killed

    def close_as_the_kernel_does(self):
        for fd in (self.held, self.scratch_held, self.source):
            if fd is not None:
                os.close(fd)

    monkeypatch.setattr(filesystem, "exchange", exchange_then_die)
    monkeypatch.setattr(writing._Write, "close", close_as_the_kernel_does)
    return None


_LONG_NOT_UTF8 = "\udce9" + "x" * 100 + ".flac"
"""A name of 106 bytes, its first not UTF-8 (Latin-1 é): the hidden copy's name holds neither whole."""


@pytest.mark.parametrize(("cleanup", "name"), [("scan", "song.flac"), ("tag", "song.flac"), ("scan", _LONG_NOT_UTF8)])
def test_their_save_under_the_copy_s_name_after_a_kill_between_the_swap_and_the_swap_back_is_kept(tmp_path, monkeypatch, cleanup, name):
    """Was: a tag write killed (`kill -9`) between the swap of the names and the swap back, another
    program's save (moved over the file after the write's last check) under the copy's hidden name,
    had the next scan's or `tag`'s cleanup of leftover copies delete it as a copy: their save lost,
    the path holding tagger's copy of the file as it was before. A hidden name is deleted only where
    its file is provably the copy or the original it replaced; theirs is kept as
    `NAME.tagger-kept-XXXXXXXX~`, which no later run touches."""
    from mutagen.flac import FLAC

    from tagger.tags import leftovers, remove_stale_temp_files

    song = _saved_over_at_the_last_check(tmp_path, monkeypatch, name)
    _killed_at(monkeypatch, lambda a, b: None)
    with pytest.raises(_Killed):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    monkeypatch.undo()
    hidden = list(tmp_path.glob(".*tagger-tmp"))  # (what the kill left: theirs under the copy's name, and
    assert hidden and all(FLAC(h)["TITLE"] == ["their save"] for h in hidden)  # the backup link where leases work)
    if cleanup == "scan":
        removed = remove_stale_temp_files(list(tmp_path.iterdir()), min_age=0)
    else:
        monkeypatch.setattr(leftovers, "FRESH_SECONDS", 0.0)  # (their save is not older than 2 s)
        removed = leftovers.LeftoverCopies().remove(song)
    assert len(removed) == len(hidden) - 1 and not list(tmp_path.glob(".*tagger-tmp"))  # (the backup link alone)
    [kept] = _kept(tmp_path)
    assert FLAC(kept)["TITLE"] == ["their save"] and kept.name.startswith(f"{name}.tagger-kept-")
    assert read_instruments(song).model_version == "fake-2"  # (the copy, as the swap left it)
    _left_alone_by_the_next_run(tmp_path, song, kept)


@pytest.mark.parametrize("when", ["before the swap", "after the swap", "after the swap, the original written since"])
def test_a_kill_around_a_clean_swap_leaves_a_hidden_file_the_next_cleanup_removes(tmp_path, monkeypatch, when):
    """A write killed right after its clean swap (nobody beside it) leaves the original under the
    copy's hidden name, and one killed right before it the copy: both provably tagger's, removed by
    the next cleanup, nothing kept. An original written to since (a program whose open for writing
    broke the write's lease, let in by its death) is not the file the write replaced: kept."""
    from tagger.paths import is_temp_name
    from tagger.tags import remove_stale_temp_files

    if not _exchange_here(tmp_path):
        pytest.skip("this file system cannot swap two names in one step")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    exchange = filesystem.exchange
    _killed_at(monkeypatch, lambda a, b: exchange(a, b) if when == "before the swap" else None)  # (swapped back)
    with pytest.raises(_Killed):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    monkeypatch.undo()
    hidden = list(tmp_path.glob(".*tagger-tmp"))  # (the copy or the original; its backup link where leases work)
    assert hidden and all(is_temp_name(h.name) for h in hidden)  # (passed over by scans)
    if when.endswith("written since"):
        [swapped] = [h for h in hidden if ".tagger-swap." in h.name]
        with open(swapped, "ab") as opened:
            opened.write(b"theirs")
        remove_stale_temp_files(list(tmp_path.iterdir()), min_age=0)
        [kept] = _kept(tmp_path)
        assert kept.read_bytes().endswith(b"theirs") and not list(tmp_path.glob(".*tagger-tmp"))
        return
    assert sorted(remove_stale_temp_files(list(tmp_path.iterdir()), min_age=0)) == sorted(map(str, hidden))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.flac"]
    assert read_instruments(song).model_version == ("fake-2" if when == "after the swap" else None)


def _write_killed_right_after_a_plain_rename(monkeypatch, song) -> None:
    """A write of `song` (organ, "fake-2") where names cannot be swapped, killed right after its
    rename, its cleanup never run; the monkeypatches undone after it."""
    _killed_at(monkeypatch, lambda a, b: None)  # (its cleanup never runs)
    monkeypatch.setattr(filesystem, "exchange", lambda a, b: False)  # (a plain rename)

    def die(folder):
        raise _Killed

    monkeypatch.setattr(filesystem, "fsync_dir", die)  # (right after the rename)
    with pytest.raises(_Killed):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    monkeypatch.undo()


@pytest.mark.parametrize("theirs", [True, False])
def test_a_kill_after_a_rename_keeps_their_save_the_backup_link_alone_names(tmp_path, monkeypatch, theirs):
    """Where names cannot be swapped but a read lease is held (a local file system without
    `RENAME_EXCHANGE`), the write links the file at the path as a backup before its rename: a save of
    theirs moved over the file after the last check and before that link is then named by the backup
    alone once the rename replaced it. Was: a write killed before its cleanup (which keeps it) had the
    next cleanup delete it as a leftover copy. The backup's name holds the original's inode, size and
    mtime: a backup holding anything else, and no other name, is kept; the original is removed."""
    from mutagen.flac import FLAC

    from tagger.tags import remove_stale_temp_files

    if not _leases_here(tmp_path):
        pytest.skip("no read leases here: no backup link")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    if theirs:
        save = _their_save(song, tmp_path / "theirs.flac")
        _at_the_last_check(monkeypatch, lambda: os.replace(save, song))
    _write_killed_right_after_a_plain_rename(monkeypatch, song)
    [backup] = tmp_path.glob(".*tagger-tmp")
    assert FLAC(backup).get("TITLE") == (["their save"] if theirs else None)
    assert read_instruments(song).model_version == "fake-2"
    removed = remove_stale_temp_files(list(tmp_path.iterdir()), min_age=0)
    assert removed == ([] if theirs else [str(backup)]) and not list(tmp_path.glob(".*tagger-tmp"))
    assert [FLAC(k)["TITLE"] for k in _kept(tmp_path)] == ([["their save"]] if theirs else [])


def test_a_backup_link_is_made_where_its_name_with_the_original_s_facts_is_too_long(tmp_path, monkeypatch):
    """Where names hold at most 143 bytes (eCryptfs with encrypted names: leases, no `RENAME_EXCHANGE`),
    the backup's name with the original's inode, size and mtime (about 150 bytes for a file whose
    name has 80 or more) is refused as too long. Was: no backup link at all, a write whose lease broke
    at its rename unable to put the file back (`its changes may be lost`). The link then takes the
    copy's first form, which an older tagger's backup had: the original is linked, and removed by
    the next cleanup."""
    import errno

    from tagger.tags import remove_stale_temp_files

    if not _leases_here(tmp_path):
        pytest.skip("no read leases here: no backup link")
    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    song = song.rename(tmp_path / ("x" * 95 + ".flac"))  # (80 bytes of it in the hidden names)
    link = os.link

    def link_up_to_143_bytes(src, dst, *args, **kwargs):
        if len(os.fsencode(os.path.basename(dst))) > 143:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), dst)
        return link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link_up_to_143_bytes)
    _write_killed_right_after_a_plain_rename(monkeypatch, song)
    [backup] = tmp_path.glob(".*tagger-tmp")  # (the original, linked before the rename)
    assert read_instruments(backup).model_version is None and read_instruments(song).model_version == "fake-2"
    assert remove_stale_temp_files(list(tmp_path.iterdir()), min_age=0) == [str(backup)]


def test_a_dry_run_does_not_list_for_removal_the_save_a_scan_would_keep(tmp_path, caplog):
    """A scan's dry run listed every hidden copy's name as one it would remove (`would remove ...`),
    another program's save under a `.NAME.tagger-swap.` name included, which the scan itself keeps
    as `NAME.tagger-kept-XXXXXXXX~`. It lists tagger's own leftovers alone and says the other is kept."""
    import logging

    from mutagen.flac import FLAC

    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([FREQ["bass"]], seconds=1.0))
    stale = music / ".song.flac.ab12cd34.tagger-tmp"
    theirs = music / ".song.flac.tagger-swap.1.2.3.4.ab12cd34.tagger-tmp"
    stale.write_bytes(b"half a copy")
    _their_save(song, theirs)  # (neither the copy, inode 1, nor the original, inode 2, it names)
    old = os.stat(song).st_mtime - 3600
    for p in (stale, theirs):
        os.utime(p, (old, old))
    db = open_database(tmp_path / "library.db")
    try:
        with caplog.at_level(logging.WARNING):
            dry = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, keep_temp_files=True)
        assert dry.temp_files == [str(stale)] and stale.exists() and theirs.exists()
        assert f"{theirs}: left by a tag write that was killed" in caplog.text
        done = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        db.close()
    assert done.temp_files == [str(stale)] and not stale.exists() and not theirs.exists()
    [kept] = _kept(music)
    assert FLAC(kept)["TITLE"] == ["their save"]


def test_their_save_landing_while_the_copy_takes_its_swap_name_is_seen_where_names_cannot_be_swapped(tmp_path, monkeypatch):
    """Where a file system renames without replacing but cannot swap (SMB: `RENAME_NOREPLACE` yes,
    `RENAME_EXCHANGE` no), the copy's rename to its swap name, a network round trip there, came after
    the write's last check: a save of theirs landing meanwhile was replaced by the plain rename, lost
    (the gap README names as two `stat` calls wide, one round trip wider). The copy takes that name
    before the last check, which sees their save: the write is refused, their save at the path."""
    from mutagen.flac import FLAC

    song = write_audio(tmp_path / "song.flac", tone_signal([FREQ["bass"]], seconds=2.0))
    theirs = _their_save(song, tmp_path / "theirs.flac")
    rename_noreplace = filesystem.rename_noreplace

    def and_their_save_lands(a, b):
        done = rename_noreplace(a, b)
        if ".tagger-swap." in os.path.basename(b):
            os.replace(theirs, song)
        return done

    monkeypatch.setattr(filesystem, "rename_noreplace", and_their_save_lands)
    monkeypatch.setattr(filesystem, "exchange", lambda a, b: False)  # (a plain rename)
    with pytest.raises(TagWriteError, match="changed while its tags were being written"):
        write_instruments(song, instruments=["organ"], model_version="fake-2")
    assert FLAC(song)["TITLE"] == ["their save"] and read_instruments(song).model_version is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.flac"]


@pytest.mark.parametrize("ext", ["flac", "ogg"])
def test_another_programs_save_between_the_reads_of_a_write_is_said_as_a_change_not_a_fault_of_the_file(
        tmp_path, monkeypatch, ext):  # fmt: skip
    """A tag write reads the file twice before it copies it: mutagen's view, then its bytes, to see
    what a rewrite would lose. Another program saving its tags in place meanwhile (beets' ``beet
    write`` beside a scan writing the same files: mutagen writes in place) gave a torn view, said
    as a fault of the file: `its Vorbis comments hold entries that a rewrite would change or drop
    (not UTF-8, or not a NAME=value entry that mutagen accepts): b'TITLE=...'` (an ID3 tag read torn
    mid-save: `its ID3v2.4 tag has frames that a rewrite would lose (TIT2)`), of a file whose tags are
    whole. It is said as the change it is, and the other program's save is left as it is."""
    import mediafile

    from tagger.tags import decide

    path = str(write_audio(tmp_path / f"a.{ext}", tone_signal([FREQ["bass"]], seconds=2.0)))
    mf = mediafile.MediaFile(path)
    mf.title = "before"
    mf.save()
    load = decide.formats.open_file

    def load_then_their_save(*args, **kwargs):
        loaded = load(*args, **kwargs)
        theirs = mediafile.MediaFile(path)
        theirs.title = "theirs"
        theirs.save()  # (in place, as beets writes)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # (a moment after the write's look)
        return loaded

    monkeypatch.setattr(decide.formats, "open_file", load_then_their_save)
    with pytest.raises(TagWriteError) as refused:
        write_instruments(path, instruments=["bass"], model_version="fake-1")
    assert "file changed while its tags were being written" in str(refused.value)  # (was: a rewrite would lose ...)
    monkeypatch.setattr(decide.formats, "open_file", load)
    assert mediafile.MediaFile(path).title == "theirs"
    assert not read_instruments(path).tagged
    write_instruments(path, instruments=["bass"], model_version="fake-1")  # (the next write writes)
    assert read_instruments(path).instruments == ["bass"] and mediafile.MediaFile(path).title == "theirs"

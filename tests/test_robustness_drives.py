"""Libraries on removable and foreign file systems (a USB stick or disk formatted FAT32, exFAT or
NTFS, often a user's only copy), mounted for real: FAT through fusefat, exFAT through exfat-fuse
on a loop device, NTFS through ntfs-3g, ext4 on a loop device. Each test needs root and the tool
of its file system (``apt-get install fusefat dosfstools exfat-fuse exfatprogs ntfs-3g``) and is
skipped with the reason otherwise."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_signal, track_instruments, track_rows, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db.urls import DatabaseError
from tagger.errors import TagWriteError
from tagger.db.session import open_database
from tagger.library.scan import scan, tag_writer
from tagger.paths import Spelling

# file system: (the programs it needs, how to format an image, how to mount it)
FILE_SYSTEMS = {
    "fat": (("mkfs.vfat", "fusefat"), ["mkfs.vfat", "-F", "32"]),
    "exfat": (("mkfs.exfat", "mount.exfat-fuse", "losetup"), ["mkfs.exfat"]),
    "ntfs": (("mkfs.ntfs", "ntfs-3g"), ["mkfs.ntfs", "-F", "-Q"]),
    "ext4": (("mkfs.ext4", "losetup"), ["mkfs.ext4", "-q", "-F"]),
}


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


class Drive:
    """A file system of ``kind`` on a 64 MiB image, mounted at ``path`` (unmounted by `close`)."""

    def __init__(self, kind: str, where: Path) -> None:
        self.kind = kind
        self.image = where / f"{kind}.img"
        self.path = where / f"mnt-{kind}"
        self.path.mkdir()
        self.loop: str | None = None
        with open(self.image, "wb") as f:
            f.truncate(64 << 20)
        _run(*FILE_SYSTEMS[kind][1], str(self.image))
        if kind == "fat":
            _run("fusefat", "-o", "rw+", str(self.image), str(self.path))
        elif kind == "ntfs":
            _run("ntfs-3g", str(self.image), str(self.path))
        else:
            self.loop = _run("losetup", "-f", "--show", str(self.image))
            if kind == "exfat":
                _run("mount.exfat-fuse", self.loop, str(self.path))
            else:
                _run("mount", self.loop, str(self.path))
        self.mounted = True

    def unmount(self, *, lazy: bool = False) -> None:
        if self.mounted:
            subprocess.run(["umount", *(["-l"] if lazy else []), str(self.path)], capture_output=True, timeout=60)
            self.mounted = False

    def close(self) -> None:
        for _ in range(20):  # a FUSE daemon may take a moment to let go of the last file
            self.unmount()
            if not os.path.ismount(self.path):
                break
            self.mounted = True
            time.sleep(0.1)
        else:
            self.unmount(lazy=True)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], capture_output=True, timeout=60)


def _can_mount(kind: str) -> str | None:
    """Why a ``kind`` drive cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to mount a file system"
    programs, _ = FILE_SYSTEMS[kind]
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install fusefat dosfstools exfat-fuse exfatprogs ntfs-3g)"
    if kind != "ext4" and not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    return None


@pytest.fixture
def drive(request, tmp_path):
    """``drive(kind)``: a freshly formatted, mounted file system of that kind (skips when it cannot be made)."""
    made = []

    def make(kind: str) -> Drive:
        why = _can_mount(kind)
        if why:
            pytest.skip(f"{kind}: {why}")
        try:
            made.append(Drive(kind, tmp_path))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            pytest.skip(f"cannot mount a {kind} image here: {getattr(exc, 'stderr', None) or exc}")
        return made[-1]

    yield make
    for d in reversed(made):
        d.close()


def _decoded(path) -> np.ndarray:
    data, _sr = sf.read(str(path), dtype="float32")
    return data


# -- tag writes --------------------------------------------------------------------------------------


def test_a_tag_write_on_fat_keeps_the_file_whole_and_the_next_scan_leaves_it(drive, tmp_path):
    """FAT keeps no Unix modes: fusefat refuses chmod (ENOSYS), the kernel's vfat refuses bits it
    cannot store (EPERM). Every tag write failed on such a drive (`tag write failed (OSError: Function
    not implemented)`); the copy has the mode every file there has, which is the original's."""
    fat = drive("fat")
    music = fat.path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=4.0))
    before = _decoded(song)
    db = open_database(tmp_path / "lib.db")
    first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert first.tag_failures == [] and first.tags_written == 1
    assert tags.read_instruments(song).instruments == ["bass"]
    assert np.array_equal(_decoded(song), before)
    assert sorted(os.listdir(music)) == ["a.flac"]  # no temporary copy left
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (again.scanned, again.skipped, again.tags_written, again.tag_failures) == (0, 1, 0, [])
    assert track_rows(db)[str(song)] == ("ok", None)
    db.close()


def test_a_same_size_rewrite_within_fats_two_seconds_is_seen_by_the_next_scan(drive, tmp_path):
    """FAT stores mtimes in 2 s steps and no ctime of its own (it reads as the mtime): a file
    rewritten in place with the same size within those 2 s has the size, mtime and ctime recorded.
    The scan reads each file's fingerprint (whole for a file under 192 KiB) and analyses it again."""
    fat = drive("fat")
    music = fat.path / "music"
    song = write_audio(music / "a.wav", tone_signal([110.0], seconds=4.0))
    db = open_database(tmp_path / "lib.db")
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    st = os.stat(song)
    other = write_audio(tmp_path / "other.wav", tone_signal([1000.0], seconds=4.0)).read_bytes()
    assert len(other) == st.st_size
    with open(song, "r+b") as f:  # (another program saving in place)
        f.write(other)
    os.utime(song, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = os.stat(song)
    assert (now.st_size, now.st_mtime_ns, now.st_ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert again.scanned == 1 and track_instruments(db) == {str(song): ["flute"]}
    db.close()


# -- names that differ only in case ------------------------------------------------------------------


def test_a_rename_in_case_only_on_exfat_is_a_move_not_a_second_track(drive, tmp_path):
    """exFAT ignores case: after ``Song.flac`` -> ``song.flac`` the old name still opens the file,
    and through exfat-fuse with another inode number than the new one. The scan kept both names as
    tracks for ever (the new one a copy of the results, the old one never missing: it opened)."""
    exfat = drive("exfat")
    music = exfat.path / "music"
    (music / "Album").mkdir(parents=True)
    song = write_audio(music / "Album" / "Song.flac", tone_signal([110.0], seconds=4.0))
    other = write_audio(music / "Album" / "Other.flac", tone_signal([1000.0], seconds=4.0))
    db = open_database(tmp_path / "lib.db")
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    os.rename(song, music / "Album" / "song.flac")
    assert os.path.isfile(song)  # (the old spelling still opens it)
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert again.scanned == 0 and again.failed == 0
    assert track_rows(db) == {str(music / "Album" / "song.flac"): ("ok", None), str(other): ("ok", None)}
    assert track_instruments(db)[str(music / "Album" / "song.flac")] == ["bass"]
    # a folder renamed in case only: its tracks follow it too, none kept under the old name or missing
    os.rename(music / "Album", music / "album")
    third = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert third.scanned == 0 and third.failed == 0
    assert track_rows(db) == {str(music / "album" / "song.flac"): ("ok", None),
                              str(music / "album" / "Other.flac"): ("ok", None)}  # fmt: skip
    db.close()


def test_a_track_kept_under_an_old_spelling_is_removed_as_a_second_name(drive, tmp_path, monkeypatch):
    """A database an older tagger left with both spellings of one file (the old one and its copy)
    keeps the spelling the folder lists; the other is a second name of that file, not missing."""
    exfat = drive("exfat")
    music = exfat.path / "music"
    song = write_audio(music / "Song.flac", tone_signal([110.0], seconds=4.0))
    db = open_database(tmp_path / "lib.db")
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    os.rename(song, music / "song.flac")
    with monkeypatch.context() as older:  # an older tagger, which did not compare names with the listing
        older.setattr(Spelling, "as_listed", lambda self, path: True)
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert len(track_rows(db)) == 2  # (both spellings stored, as that tagger left them)
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_rows(db) == {str(music / "song.flac"): ("ok", None)}
    assert again.duplicates == [str(song)]
    db.close()


# -- a drive that goes away ----------------------------------------------------------------------------


def test_a_drive_pulled_out_mid_scan_keeps_the_results_of_the_files_not_reached(drive, tmp_path):
    """The drive goes (unmounted, pulled out) while a re-analysis under a new model runs: the files
    it had not reached failed to read, and each was stored as a lasting error with its results
    deleted (`cannot read file: No such file or directory`, retried only with --retry-errors). Now
    each keeps its track and results, and the next scan tries it again."""
    ext4 = drive("ext4")
    music = ext4.path / "music"
    songs = [write_audio(music / f"s{i}.flac", tone_signal([110.0], seconds=4.0)) for i in range(4)]
    db = open_database(tmp_path / "lib.db")
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)

    class PulledOut(FakeAnalyser):
        def predict_features(self, feats, batch_size=None):
            if self.calls == 1:
                ext4.unmount(lazy=True)
            return super().predict_features(feats, batch_size)

    s = scan([music], db=db, analyser=PulledOut(version="fake-2"), jobs=0, predict_batch=1, rescan_stale=True)
    assert s.failed >= 3
    assert {reason for _path, reason in s.errors} == {"the file disappeared while it was being analysed"}
    assert track_rows(db) == {str(p): ("ok", None) for p in songs}
    assert set(map(tuple, track_instruments(db).values())) == {("bass",)}
    db.close()


def _fuse_python() -> str | None:
    """A Python that can run tests/eio_fuse.py (one with fusepy), or None."""
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and subprocess.run(
            [python, "-c", "try:\n import fusepy\nexcept ImportError:\n import fuse; fuse.FUSE"], capture_output=True
        ).returncode == 0:
            return python
    return None


@pytest.fixture
def failing_disk(tmp_path):
    """(folder, fail): a folder on a FUSE file system whose reads of the files named by
    ``fail(name, ...)`` end in EIO (``fail()``: none)."""
    python = _fuse_python()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or python is None:
        pytest.skip("needs root, /dev/fuse and fusepy (apt-get install python3-fusepy)")
    backing, mount, control = tmp_path / "backing", tmp_path / "disk", tmp_path / "failing"
    backing.mkdir(), mount.mkdir(), control.write_text("")
    server = subprocess.Popen([python, str(Path(__file__).with_name("eio_fuse.py")), str(backing), str(mount), str(control)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 30  # (was 5 s: a loaded machine's slow mount skipped the tests)
        while not os.path.ismount(mount) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not os.path.ismount(mount):
            pytest.skip(f"cannot mount the failing disk: {server.stderr.read().decode() if server.poll() is not None else 'timeout'}")
        yield backing, mount, lambda *names: control.write_text("\n".join(names))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=60)
        server.terminate()
        server.wait(timeout=10)


def test_a_file_on_a_failing_disk_is_a_transient_error_and_keeps_its_results(failing_disk, tmp_path):
    """Reads of one analysed file end in EIO (bad sectors): its results were deleted, in a plain scan
    (the fingerprint's read) until a scan read it again, and in a re-analysis for good (a lasting
    error: `cannot read file: Input/output error`, tried again only with --retry-errors). Now the
    scan names it in its errors, keeps its results and tries it again next time."""
    backing, disk, fail = failing_disk
    for name in ("a.flac", "b.flac"):
        write_audio(backing / name, tone_signal([110.0], seconds=4.0))
    db = open_database(tmp_path / "lib.db")
    assert scan([disk], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 2
    fail("a.flac")
    every = {str(disk / "a.flac"): ["bass"], str(disk / "b.flac"): ["bass"]}
    plain = scan([disk], db=db, analyser=FakeAnalyser(), jobs=0)
    assert plain.errors == [(str(disk / "a.flac"), "cannot read file: Input/output error")]
    assert track_instruments(db) == every
    again = scan([disk], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True, quick=True)
    assert again.errors == [(str(disk / "a.flac"), "cannot read file: Input/output error")]
    assert track_instruments(db) == every  # (fake-1's results for a.flac, fake-2's for b.flac)
    fail()
    repaired = scan([disk], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True)
    assert (repaired.scanned, repaired.failed) == (1, 0)
    assert track_rows(db) == {path: ("ok", None) for path in every}
    db.close()


# -- the database on such a drive ----------------------------------------------------------------------


def test_a_database_on_fat_through_fusefat_is_refused_before_it_is_damaged(drive, tmp_path):
    """fusefat drops the bytes a write adds to a file after a rewrite of its start (the file reads
    back shorter than its size), which is how SQLite commits: a scan of 90 files with ``--db`` on
    such a drive left `database disk image is malformed`, and every later command failed to open it
    (an earlier fix gave it a rollback journal, as fusefat refuses ``ftruncate`` and so SQLite's
    write-ahead log; one file's scan passed). The database there is now refused before anything
    opens it, a database copied there left as it is, and the music there is scanned with the
    database elsewhere."""
    fat = drive("fat")
    music = fat.path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=4.0))
    with pytest.raises(DatabaseError, match="loses data written into a file .*fusefat.*keep the database on another drive"):
        open_database(fat.path / "lib.db")
    assert sorted(os.listdir(fat.path)) == ["music"]  # (no database, no probe left)
    local = open_database(tmp_path / "local.db")
    s = scan([music], db=local, analyser=FakeAnalyser(), jobs=0)
    assert (s.scanned, s.failed) == (1, 0)
    local.close()
    shutil.copyfile(tmp_path / "local.db", fat.path / "copied.db")
    before = (fat.path / "copied.db").read_bytes()
    with pytest.raises(DatabaseError, match="cannot keep the database"):
        open_database(fat.path / "copied.db", create=False)
    assert (fat.path / "copied.db").read_bytes() == before
    again = open_database(tmp_path / "local.db", create=False)
    assert track_instruments(again) == {str(song): ["bass"]}
    again.close()


def test_a_file_system_that_loses_added_bytes_is_found_by_the_probe(tmp_path, monkeypatch):
    """The same without a drive: a file system whose writes after the end of a file are lost (as
    fusefat loses them after a rewrite of the file's start) has its SQLite database refused, with
    nothing left in its folder; one that keeps them opens it as ever."""
    from tagger.db import sqlite_files

    real_pwrite = os.pwrite

    def losing(fd, data, offset):
        if offset >= os.fstat(fd).st_size:
            return len(data)  # (said written, never kept)
        return real_pwrite(fd, data, offset)

    from tagger import paths

    monkeypatch.setattr(sqlite_files, "_WRITES_KEPT", {})
    (tmp_path / "drive").mkdir()
    real = os.path.realpath(tmp_path)
    monkeypatch.setattr(paths, "mount_points", lambda mountinfo=None: {"/": "ext4", f"{real}/drive": "fuseblk"})
    with monkeypatch.context() as fs:
        fs.setattr(os, "pwrite", losing)
        with pytest.raises(DatabaseError, match="cannot keep the database .*lib.db there"):
            open_database(tmp_path / "drive" / "lib.db")
        assert os.listdir(tmp_path / "drive") == []
        # a kernel file system is not probed: nothing is written beside its database
        made = []
        real_mkstemp = tempfile.mkstemp
        fs.setattr(tempfile, "mkstemp", lambda *a, **k: made.append(k) or real_mkstemp(*a, **k))
        elsewhere = open_database(tmp_path / "home" / "lib.db")
        elsewhere.close()
        assert not [k for k in made if str(k.get("prefix", "")).startswith(".tagger-write-probe")]


@pytest.mark.parametrize("name", ["a.mp3", "a.wav", "a.m4a"])
def test_a_tag_write_on_fat_that_resizes_the_file_is_made_off_the_drive(drive, tmp_path, name):
    """fusefat refuses ``ftruncate`` (EPERM) and its writes that move a file's bytes along come back
    wrong: tag writes of MP3 failed with `mutagen: [Errno 1] Operation not permitted` (mutagen's
    truncate at the end of its ID3 save), WAV with `Invalid chunk ID`, M4A in the verification
    (`the audio payload changed`). The tags are now written in a copy in the system's temporary
    folder, copied whole into the hidden copy on the drive, verified there and moved over the file."""
    fat = drive("fat")
    music = fat.path / "music"
    song = write_audio(music / name, tone_signal([110.0], seconds=4.0))
    before = _pcm_md5(song)
    db = open_database(tmp_path / "lib.db")
    first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert first.tag_failures == [] and first.tags_written == 1
    assert tags.read_instruments(song).instruments == ["bass"]
    assert _pcm_md5(song) == before
    assert sorted(os.listdir(music)) == [name]  # no temporary copy left
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (again.scanned, again.tags_written, again.tag_failures) == (0, 0, [])
    removed = tags.remove_instruments(song)
    assert removed.written and tags.read_instruments(song) == tags.TagState(instruments=[], model_version=None, scores=None)
    assert _pcm_md5(song) == before
    db.close()


def _pcm_md5(path) -> str:
    """The MD5 of the audio ffmpeg decodes from ``path``."""
    return _run("ffmpeg", "-loglevel", "error", "-i", str(path), "-map", "0:a", "-f", "md5", "-")


def test_where_ftruncate_is_refused_the_tags_are_written_in_a_scratch_copy(tmp_path, monkeypatch):
    """The same without a drive: ``ftruncate`` refused as fusefat refuses it (EPERM), the write goes
    through a copy in the temporary folder, which is removed; where that copy cannot be made, the
    error names the file system's limit and the file is left unchanged."""
    import tempfile

    song = write_audio(tmp_path / "music" / "a.wav", tone_signal([110.0], seconds=4.0))
    before = song.read_bytes()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _refuse_ftruncate(monkeypatch)
    written = tags.write_instruments(song, instruments=["bass"], model_version="fake-1")
    assert written.written and tags.read_instruments(song).instruments == ["bass"]
    ours = scratch / f"tagger-scratch-{os.geteuid()}"  # (tagger's own folder in it, 0700, left empty)
    assert os.listdir(scratch) == [ours.name] and os.listdir(ours) == [] and stat.S_IMODE(ours.stat().st_mode) == 0o700
    assert os.listdir(song.parent) == ["a.wav"]
    assert _decoded(song).tobytes() == sf.read(io.BytesIO(before), dtype="float32")[0].tobytes()
    tagged = song.read_bytes()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    with pytest.raises(TagWriteError, match="cannot resize files .*ftruncate.*no-such-folder"):
        tags.remove_instruments(song)
    assert song.read_bytes() == tagged and os.listdir(song.parent) == ["a.wav"]


def _refuse_ftruncate(monkeypatch) -> None:
    """``ftruncate`` refused as fusefat refuses it: EPERM to any file that is not empty."""
    import errno

    real_ftruncate = os.ftruncate

    def refused(fd, length):
        if os.fstat(fd).st_size:  # (fusefat refuses even the size the file has; 0 to 0 it allows)
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_ftruncate(fd, length)

    monkeypatch.setattr(os, "ftruncate", refused)


def test_a_scratch_copy_a_killed_write_left_is_removed_by_the_next_write(tmp_path, monkeypatch):
    """A write killed (SIGKILL, power loss) while its tags were made in a scratch copy of the whole
    file left that copy in ``$TMPDIR`` for ever. The copies are now made in tagger's own folder there,
    each held locked while in use, and the next write that needs one removes those not locked and
    older than a few seconds: a copy another process holds is kept, and so is anything whose name is
    not a scratch copy's, and anything outside that folder."""
    import fcntl

    from tagger.tags import scratch as scratch_files

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ours = scratch_files.folder()
    killed_fd, killed = tempfile.mkstemp(prefix="tagger-", suffix=".tagger-tmp", dir=ours)  # (as `create`: dead,
    os.write(killed_fd, b"a copy of the music")  # its lock gone with its process)
    os.close(killed_fd)
    held = tempfile.mkstemp(prefix="tagger-", suffix=".tagger-tmp", dir=ours)[1]
    fresh = tempfile.mkstemp(prefix="tagger-", suffix=".tagger-tmp", dir=ours)[1]  # (just made, not yet locked)
    other = os.path.join(ours, "notes.txt")
    outside = str(tmp_path / "tmp" / "tagger-abcd1234.tagger-tmp")
    for name in (other, outside):
        with open(name, "w") as f:
            f.write("not tagger's")
    for name in (killed, held, other, outside):
        os.utime(name, (time.time() - 60, time.time() - 60))
    os.utime(fresh, (time.time() + 3600, time.time() + 3600))  # (modified "now" however slow the test runs)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", held],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        song = write_audio(tmp_path / "music" / "a.wav", tone_signal([110.0], seconds=4.0))
        _refuse_ftruncate(monkeypatch)
        assert tags.write_instruments(song, instruments=["bass"], model_version="fake-1").written
        assert sorted(os.listdir(ours)) == sorted(os.path.basename(n) for n in (held, fresh, other))
        assert os.path.exists(outside)
        with open(held) as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (still the other process's)
    finally:
        holder.stdin.close()
        holder.wait()
    assert tags.remove_instruments(song).written  # (let go: removed by the next write, being stale)
    assert sorted(os.listdir(ours)) == sorted(os.path.basename(n) for n in (fresh, other))


@pytest.mark.parametrize("kind", ["symlink", "another user's"])
def test_a_scratch_folder_that_is_not_tagger_s_own_is_refused(tmp_path, monkeypatch, kind):
    """``$TMPDIR/tagger-scratch-UID`` a symbolic link (to a folder others may read) or a folder another
    user owns (who could read or replace the copies): refused, with the error saying so, and the file
    left unchanged, nothing written there."""
    from tagger.tags import scratch as scratch_files

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "symlink":
        (tmp / f"tagger-scratch-{os.geteuid()}").symlink_to(elsewhere)
        said = "is a symbolic link"
    else:  # (the folder this user made, seen as a user whose uid is another)
        (tmp / f"tagger-scratch-{os.geteuid() + 1}").mkdir(mode=0o700)
        monkeypatch.setattr(scratch_files, "_uid", lambda: os.geteuid() + 1)
        said = f"is owned by another user \\(uid {os.geteuid()}\\)"
    song = write_audio(tmp_path / "music" / "a.wav", tone_signal([110.0], seconds=4.0))
    before = song.read_bytes()
    _refuse_ftruncate(monkeypatch)
    with pytest.raises(TagWriteError, match=f"a.wav.*cannot resize files .*tagger-scratch-[0-9]+ {said}.*refused"):
        tags.write_instruments(song, instruments=["bass"], model_version="fake-1")
    assert song.read_bytes() == before and os.listdir(song.parent) == ["a.wav"]
    assert os.listdir(elsewhere) == [] and sorted(os.listdir(tmp)) == [f"tagger-scratch-{scratch_files._uid()}"]


def _renumbered(st: os.stat_result, by: int) -> os.stat_result:
    """``st`` with another inode number (as a FUSE file system may give the same file)."""
    fields = list(st)
    fields[stat.ST_INO] += by
    extra = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks",
             "st_rdev")  # fmt: skip
    return os.stat_result(fields + [getattr(st, name) for name in extra])


def _first_look_renumbered(monkeypatch, song) -> list:
    """The first look at ``song`` (os.stat) gets another inode number, as exfat-fuse gives once the
    kernel let go of the file; the list fills with that look."""
    real_stat, looks = os.stat, []

    def first_look_renumbered(path, *args, **kwargs):
        found = real_stat(path, *args, **kwargs)
        if os.fspath(path) == str(song) and not looks:
            looks.append(path)
            return _renumbered(found, 1000)
        return found

    monkeypatch.setattr(os, "stat", first_look_renumbered)
    return looks


def test_a_file_a_fuse_file_system_renumbers_between_two_looks_is_still_the_file(tmp_path, monkeypatch):
    """exfat-fuse and fusefat number a file anew once the kernel let go of it (its caches dropped
    under memory pressure): untag and tag with --settle-seconds 0 skipped about one file in ten
    with `file changed while its tags were being written` or `file changed while it was being
    checked`, of files nobody wrote (found by dropping the caches in a loop beside them on an
    exFAT drive). The same device, size, mtime and ctime on a FUSE mount is the same file; elsewhere,
    or with anything else changed, it is still another."""
    from tagger import paths
    from tagger.tags import filesystem
    from tagger.tags.checks import _still_found

    song = write_audio(tmp_path / "a.flac", tone_signal([110.0], seconds=4.0))
    st = os.stat(song)
    moved = _renumbered(st, 1000)
    monkeypatch.setattr(paths, "mount_points", lambda mountinfo=None: {"/": "ext4", str(tmp_path): "fuseblk"})
    assert filesystem.renumbered(moved, st, str(song))
    assert not filesystem.renumbered(moved, st, "/elsewhere/a.flac")  # (ext4: a new number is a new file)
    touched = os.stat_result(list(moved)[:8] + [moved.st_mtime + 1, moved.st_ctime])
    assert not filesystem.renumbered(touched, st, str(song))
    _still_found(str(song), str(song), moved)  # (the check after reading it: the same file)
    with pytest.raises(TagWriteError, match="file changed while it was being checked"):
        _still_found(str(song), str(song), touched)

    looks = _first_look_renumbered(monkeypatch, song)
    written = tags.write_instruments(song, instruments=["bass"], model_version="fake-1")
    assert looks and written.written and tags.read_instruments(song).instruments == ["bass"]


def test_another_file_moved_over_on_exfat_with_its_times_kept_is_not_taken_for_the_file(drive, monkeypatch):
    """exfat-fuse gives a file moved over another with its times kept (``touch -r``, ``cp -p``) the
    same device, size, mtime and ctime (exFAT's ctime is its mtime) and another inode number, as it
    gives the file itself once the kernel let go of it. Since the write took such a file for the
    renumbered file found, a WAV of the same length moved over the file while its tags were being
    decided got the first file's analysis in its tags, written (found reviewing the renumbering
    fix). Its fingerprint, the analysed one's, is checked again there."""
    from tagger.fingerprint import content_hash, fingerprint
    from tagger.tags import rewrite

    exfat = drive("exfat")
    song = write_audio(exfat.path / "a.wav", tone_signal([110.0], seconds=4.0))
    other = write_audio(exfat.path / "b.wav", tone_signal([220.0], seconds=4.0))
    st, theirs = os.stat(song), other.read_bytes()
    decide = rewrite._decide

    def moved_over_meanwhile(*args, **kwargs):
        decided = decide(*args, **kwargs)
        subprocess.run(["touch", "-r", str(song), str(other)], check=True)
        os.rename(other, song)
        return decided

    monkeypatch.setattr(rewrite, "_decide", moved_over_meanwhile)
    with pytest.raises(TagWriteError, match="file changed while its tags were being written"):
        tags.write_instruments(song, instruments=["bass"], model_version="fake-1", expected=(st.st_size, st.st_mtime),
                               fingerprint=fingerprint(song), inode=(st.st_dev, st.st_ino),
                               content_hash=content_hash(song), ctime_ns=st.st_ctime_ns)  # fmt: skip
    assert song.read_bytes() == theirs and sorted(os.listdir(exfat.path)) == ["a.wav"]


def _exfat_ctimes(monkeypatch, folder: Path) -> None:
    """``folder`` a FUSE mount (`paths.mount_points`) whose ctimes are the mtimes, as exfat-fuse gives
    them: `filesystem.renumbered` sees a file moved over another with its times kept as exFAT does."""
    from tagger import paths
    from tagger.tags import filesystem

    def as_exfat(st: os.stat_result) -> os.stat_result:
        fields = list(st)
        fields[stat.ST_CTIME] = fields[stat.ST_MTIME]
        extra = [getattr(st, name) for name in ("st_atime", "st_mtime", "st_mtime", "st_atime_ns", "st_mtime_ns",
                                                "st_mtime_ns", "st_blksize", "st_blocks", "st_rdev")]  # fmt: skip
        return os.stat_result(fields + extra)

    renumbered = filesystem.renumbered
    monkeypatch.setattr(paths, "mount_points", lambda mountinfo=None: {"/": "ext4", str(folder): "fuseblk"})
    monkeypatch.setattr(filesystem, "renumbered", lambda found, now, real: renumbered(as_exfat(found), as_exfat(now), real))


@pytest.mark.parametrize("recorded", ["with-fingerprint", "without"])
def test_untag_of_a_file_another_was_moved_over_on_exfat_with_its_times_kept(tmp_path, monkeypatch, recorded):
    """Was: `tagger untag` passed the write no fingerprint, so on an exFAT drive (exfat-fuse: ctime is
    mtime, inode numbers handed out anew) another file of the same size moved over the file with its
    times kept (``touch -r``; ``mv``) while its tags were decided was taken for the file renumbered and
    untagged, its other tags the same (found reviewing dc527d3). Where the library database recorded
    the file as tagger tagged it (`recorded_as_tagged`), its fingerprint is checked again there; where
    it did not, there is nothing to tell them apart by (said in the report)."""
    from tagger.fingerprint import fingerprint
    from tagger.tags import rewrite

    song = write_audio(tmp_path / "a.wav", tone_signal([110.0], seconds=4.0))
    other = write_audio(tmp_path / "b.wav", tone_signal([220.0], seconds=4.0))
    for path in (song, other):
        tags.write_instruments(path, instruments=["bass"], model_version="fake-1")
    st = os.stat(song)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))  # (touch -r)
    theirs = other.read_bytes()
    assert os.stat(other).st_size == st.st_size
    facts = (st.st_size, st.st_mtime, st.st_ctime_ns) + ((fingerprint(song),) if recorded == "with-fingerprint" else ())
    _exfat_ctimes(monkeypatch, tmp_path)
    decide = rewrite._decide

    def moved_over_meanwhile(*args, **kwargs):
        decided = decide(*args, **kwargs)
        os.rename(other, song)
        return decided

    monkeypatch.setattr(rewrite, "_decide", moved_over_meanwhile)
    if recorded == "without":  # (nothing known of the file but its size and times, which are the same)
        assert tags.remove_instruments(song, recorded=facts).written
        return
    with pytest.raises(TagWriteError, match="file changed while its tags were being written"):
        tags.remove_instruments(song, recorded=facts)
    assert song.read_bytes() == theirs and sorted(os.listdir(tmp_path)) == ["a.wav"]


def test_untag_of_a_file_renumbered_on_exfat_with_its_recorded_fingerprint_untags_it(tmp_path, monkeypatch):
    """The fingerprint the database recorded, checked again on a file renumbered meanwhile, is the
    file's: untagged, as before."""
    from tagger.fingerprint import fingerprint

    song = write_audio(tmp_path / "a.wav", tone_signal([110.0], seconds=4.0))
    tags.write_instruments(song, instruments=["bass"], model_version="fake-1")
    st = os.stat(song)
    facts = (st.st_size, st.st_mtime, st.st_ctime_ns, fingerprint(song))
    _exfat_ctimes(monkeypatch, tmp_path)
    looks = _first_look_renumbered(monkeypatch, song)
    assert tags.remove_instruments(song, recorded=facts).written and looks
    assert tags.read_instruments(song).model_version is None

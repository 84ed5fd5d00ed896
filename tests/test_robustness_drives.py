"""Libraries on removable and foreign file systems (a USB stick or disk formatted FAT32, exFAT or
NTFS, often a user's only copy), mounted for real: FAT through fusefat, exFAT through exfat-fuse
on a loop device, NTFS through ntfs-3g, ext4 on a loop device. Each test needs root and the tool
of its file system (``apt-get install fusefat dosfstools exfat-fuse exfatprogs ntfs-3g``) and is
skipped with the reason otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_signal, track_rows, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db.session import open_database
from tagger.library.scan import scan, tag_writer

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

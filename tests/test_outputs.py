"""Files written where a user asks (`tagger.outputs`): whole or not at all, never over a user's file."""

import os
from pathlib import Path

import pytest

from tagger.errors import UserError
from tagger.outputs import check_replaceable, looks_like_text, write_atomic


def test_text_is_told_from_audio_pictures_and_documents():
    assert looks_like_text(b"#EXTM3U\n#EXTINF:12,Artist - Title\n/music/\xc3\xa9t\xc3\xa9.flac\n")
    assert looks_like_text("path,instruments\n/m/caf\u00e9".encode()[:-1])  # a character cut by the read
    for binary in (b"ID3\x04\x00\x00\x00\x00\x00\x00", b"fLaC\x00\x00\x00\x22", b"RIFF\x24\x08\x00\x00WAVE",
                   b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\xff\xfb\x90\x64" * 8,
                   b"%PDF-1.7\n\xe2\xe3\xcf\xd3\n"):  # fmt: skip
        assert not looks_like_text(binary), binary


def test_only_a_missing_empty_or_accepted_file_may_be_replaced(tmp_path):
    ours = lambda head: head.startswith(b"ours")  # noqa: E731
    assert check_replaceable(tmp_path / "new", ours=ours, what="x") == tmp_path / "new"
    (tmp_path / "empty").touch()
    check_replaceable(tmp_path / "empty", ours=ours, what="x")
    (tmp_path / "mine").write_bytes(b"ours, from before")
    check_replaceable(tmp_path / "mine", ours=ours, what="x")
    (tmp_path / "theirs").write_bytes(b"theirs")
    with pytest.raises(UserError, match="theirs: a file is already there that tagger did not write"):
        check_replaceable(tmp_path / "theirs", ours=ours, what="x")
    with pytest.raises(UserError, match="is a folder"):
        check_replaceable(tmp_path, ours=ours, what="x")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="not a regular file"):
        check_replaceable(tmp_path / "fifo", ours=ours, what="x")


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "list.m3u"
    path.write_text("old")

    def half(tmp):
        with open(tmp, "w") as f:
            f.write("half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, half)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["list.m3u"]
    write_atomic(path, "new")
    assert path.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["list.m3u"]
    mode = os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # what a plain open() gives a new file, not mkstemp's 0600
    os.chmod(path, 0o640)
    write_atomic(path, "newer")
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_a_name_among_the_systems_devices_or_a_link_into_them_is_refused(tmp_path, monkeypatch):
    """`query -o /dev/stdout > list.m3u` as root replaced the system's `/dev/stdout` link with a file:
    the check read the link's target (the redirected file, empty), the write replaced the link. A name
    in `/dev` or on a kernel's file system, or a link leading through one (to `/proc/self/fd/1`, also
    by way of another link), is refused and left as it was; a link to a file elsewhere is replaced as
    before. A file system of the kernel is told by the mount table (here a made-up one)."""
    from tagger import paths

    ours = lambda head: True  # noqa: E731
    (tmp_path / "fd1").symlink_to("/proc/self/fd/1")
    (tmp_path / "via").symlink_to(tmp_path / "fd1")
    for name in ("fd1", "via", "/dev/stdout", "/dev/null", "/proc/self/fd/1"):
        with pytest.raises(UserError, match="one of the system's devices or files"):
            check_replaceable(tmp_path / name, ours=ours, what="x")
    assert os.readlink(tmp_path / "fd1") == "/proc/self/fd/1"
    (tmp_path / "mine.m3u").write_text("#EXTM3U\n")
    (tmp_path / "link.m3u").symlink_to(tmp_path / "mine.m3u")
    assert check_replaceable(tmp_path / "link.m3u", ours=ours, what="x") == tmp_path / "link.m3u"
    (tmp_path / "dev").mkdir()
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:6 / {tmp_path / 'dev'} rw - devtmpfs udev rw\n")
    monkeypatch.setattr(paths, "MOUNTINFO", str(mountinfo))
    with pytest.raises(UserError, match="one of the system's devices or files"):
        check_replaceable(tmp_path / "dev" / "list.m3u", ours=ours, what="x")


def test_a_name_going_up_from_a_link_into_dev_is_refused(tmp_path, monkeypatch):
    """`-o d/../stdout`, where `d` leads to `/dev/pts`, names `/dev/stdout`: the system goes up from
    the folder the link leads to. The check made the name absolute with `os.path.abspath`, which cuts
    `d/..` out by its letters, and looked at `./stdout` in the current folder: passed, and the write
    (into `d/..`, that is `/dev`) would replace the system's link as `-o /dev/stdout` did. A name going
    up from a link to an ordinary folder is still written."""
    inside = next((p for p in ("/dev/pts", "/dev/shm", "/dev/mqueue") if os.path.isdir(p)), None)
    if inside is None:
        pytest.skip("no folder inside /dev here")
    ours = lambda head: True  # noqa: E731
    (tmp_path / "d").symlink_to(inside)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "music").symlink_to(tmp_path / "a" / "b")
    monkeypatch.chdir(tmp_path)
    for name in ("d/../stdout", str(tmp_path / "d" / ".." / "stdout"), "d/../null"):
        with pytest.raises(UserError, match="one of the system's devices or files"):
            check_replaceable(name, ours=ours, what="x")
    assert check_replaceable("music/../list.m3u", ours=ours, what="x") == Path("music/../list.m3u")

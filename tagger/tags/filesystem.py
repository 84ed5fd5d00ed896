"""The file-system facts a tag rewrite checks and keeps (`tagger.tags.rewrite`).

Before the copy: may the file be replaced (`check_writable`: permissions, read-only mounts, the
immutable and append-only attributes), is another program writing it (`ReadLease`, a Linux read
lease) or another tagger writer rewriting it (`lock_writers`, an exclusive ``flock``), is it still
the file that was looked at (`same_file`). On the copy: the original's inode flags, owner, mode and
extended attributes (`copy_flags`, `copy_owner`, `copy_mode`, `copy_xattrs`), a second name for the
original so that it can be put back (`link_backup`), the data and the folder flushed to disk (`fsync`,
`fsync_dir`).

Kept apart from the rewrite's steps because they are about the operating system, not about tags:
each says, in a `TagWriteError` naming the file, what the system refuses.
"""

from __future__ import annotations

import functools
import os
import stat
import struct

from tagger.errors import TagWriteError
from tagger.paths import TEMP_SUFFIX, file_flags, fixed_attribute


def check_writable(path, real: str, st: os.stat_result) -> None:
    """Refuse a file or folder the user may not write, and one without any write permission bit:
    root may write anything, but a read-only mode says the owner wants it left alone."""
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    folder = os.path.dirname(real) or "."
    try:
        mounted_read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs: the checks below find it read-only, in other words)
        mounted_read_only = False
    if mounted_read_only:
        raise TagWriteError(path, "its file system is mounted read-only; left as it is")
    attribute = fixed_attribute(real)
    if attribute:
        raise TagWriteError(path, f"file is {attribute}; left as it is")
    if not os.access(real, os.W_OK) or not st.st_mode & writable:
        if not os.path.lexists(real):  # (was said "file is read-only")
            raise TagWriteError(path, "no such file (deleted or moved away as its tags were about to be written)")
        euid = os.geteuid() if hasattr(os, "geteuid") else 0
        if st.st_mode & writable and euid not in (0, st.st_uid):  # (its owner or group may write it, not this user)
            raise TagWriteError(path, f"file is read-only for this user (mode {stat.filemode(st.st_mode)}, owner "
                                      f"{_user_name(st.st_uid)}); left as it is")  # fmt: skip
        raise TagWriteError(path, "file is read-only")
    attribute = fixed_attribute(folder)
    if attribute:
        raise TagWriteError(path, f"folder {folder} is {attribute}: none of its files can be replaced (needed for "
                                  "the atomic replace); left as it is")  # fmt: skip
    try:
        folder_st = os.stat(folder)
    except OSError as exc:
        raise TagWriteError(path, f"cannot stat its folder {folder}: {exc.strerror or exc}") from exc
    folder_mode = folder_st.st_mode
    if not os.access(folder, os.W_OK | os.X_OK) or not folder_mode & writable:
        raise TagWriteError(path, f"folder {folder} is not writable (needed for the atomic replace)")
    if _sticky_refuses(folder_mode, folder_st.st_uid, st.st_uid):
        raise TagWriteError(path, f"folder {folder} is sticky (mode {stat.filemode(folder_mode)}): only the file's "
                                  f"owner ({_user_name(st.st_uid)}) or the folder's may replace its files (needed "
                                  "for the atomic replace); left as it is")  # fmt: skip


def resizes_files(fd: int, path: str, shown) -> bool:
    """Whether the file system of the empty file ``path``, open as ``fd``, lets a program change a
    file's size through its descriptor (``ftruncate``), as mutagen does to shrink a file or end a
    tag. FAT through FUSE (fusefat) refuses it (EPERM, even to the size the file has), and its
    writes that move a file's bytes along come back wrong: a write of an MP3's ID3 tag failed with
    `mutagen: [Errno 1] Operation not permitted`, a WAV's with `Invalid chunk ID`, an M4A's in its
    verification. Probed with one byte, which is taken away again (by path, which fusefat allows;
    the error where that fails too)."""
    os.write(fd, b"\0")
    try:
        os.ftruncate(fd, 1)
        resizes = True
    except OSError:
        resizes = False
    try:
        if resizes:
            os.ftruncate(fd, 0)
        else:
            os.truncate(path, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as exc:
        raise TagWriteError(shown, f"its file system cannot resize files (empty its new copy {path}): "
                                   f"{exc.strerror or exc}") from exc
    return resizes


def _sticky_refuses(folder_mode: int, folder_uid: int, file_uid: int) -> bool:
    """Whether the kernel refuses this user a rename over a file in a sticky folder (mode ``+t``,
    as ``/tmp`` or a music folder every user may write is made): only the file's owner, the
    folder's owner and root may replace or remove a file there. The copy was written and verified
    before the ``rename`` failed, `Operation not permitted`, naming nothing (found by a red-team
    run of a scan as one user in a 1777 folder of another user's files)."""
    euid = os.geteuid() if hasattr(os, "geteuid") else 0
    return bool(folder_mode & stat.S_ISVTX) and euid not in (0, folder_uid, file_uid)


def _user_name(uid: int) -> str:
    """The user name of ``uid``, its number where the system knows none."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


_FS_IOC_SETFLAGS = (1 << 30) | (struct.calcsize("l") << 16) | (ord("f") << 8) | 2  # _IOW('f', 2, long)
KEPT_FLAGS = ((0x8, "S"), (0x40, "d"), (0x80, "A"), (0x4, "c"), (0x400, "m"), (0x800000, "C"))
"""The Linux inode flags a user sets on a file (``chattr``) that a rewrite gives the copy: synchronous
updates, no dump (backups made with ``dump`` leave the file out), no atime updates, compression,
no compression, no copy-on-write (btrfs). (The immutable and append-only ones refuse the write:
`check_writable`; the others are the file system's own.)"""


def _set_flags(fd: int, value: int) -> int | None:
    """Set the inode flags of the file open as ``fd`` to ``value`` (an `OSError` where that fails);
    the flags it has then (`tagger.paths.file_flags`)."""
    import fcntl

    buf = bytearray(8)
    buf[:4] = value.to_bytes(4, "little" if struct.pack("=I", 1)[0] else "big")
    fcntl.ioctl(fd, _FS_IOC_SETFLAGS, buf)
    return file_flags(fd)


def copy_flags(fd: int, wanted: int | None, shown: str) -> None:
    """Give the new copy (open as ``fd``, still empty: no copy-on-write is set before the first byte)
    the `KEPT_FLAGS` of the original (``wanted``: its flags, None where its file system has none),
    set or clear, whatever the folder passed on to the copy; its other flags as they are. Raises
    `TagWriteError` naming the flags the file system refuses (was: a ``chattr +d`` file lost its
    flag, and with it its place out of ``dump`` backups, without a word)."""
    mask = sum(bit for bit, _ in KEPT_FLAGS)
    keep = (wanted or 0) & mask
    have = file_flags(fd)
    if (have or 0) & mask == keep:
        return
    try:
        if have is None:
            raise OSError(0, "the file system gives them to no new file")
        now = _set_flags(fd, (have & ~mask) | keep)
    except OSError as exc:
        raise TagWriteError(shown, f"cannot keep its file attributes on the new copy ({_letters(keep)}): "
                                   f"{exc.strerror or exc}") from None  # fmt: skip
    if (now or 0) & mask != keep:
        raise TagWriteError(shown, f"cannot keep its file attributes on the new copy ({_letters(keep)}): the "
                                   "file system does not keep them")  # fmt: skip


def _letters(flags: int) -> str:
    """Flags in ``chattr``'s words: ``chattr +dA`` (``none`` for none)."""
    return "chattr +" + "".join(letter for bit, letter in KEPT_FLAGS if flags & bit) if flags else "none"


def is_mount_point(real: str) -> bool:
    """Whether the real path ``real`` is a mount point (a file mounted there on its own, `mount
    --bind`): the system refuses a rename over it (EBUSY), as a network share does over a file
    another machine has open, which is not one."""
    from tagger.paths import mount_points

    return real in (mount_points() or {})


_F_SETLEASE = 1024
_F_GETLEASE = 1025
_F_SETSIG = 10


class ReadLease:
    """A Linux read lease on the original file, held from before the copy until after the rename.

    The kernel refuses the lease (EAGAIN) while any process has the file open for writing, and
    breaks it as soon as one opens it for writing (or truncates it): `broken` then says so, and that
    opener's ``open`` waits until the lease is released (at most ``/proc/sys/fs/lease-break-time``
    seconds), so its writes cannot go to the file we are about to replace. Readers neither prevent
    nor break it. Where leases are not available (not Linux, not the file's owner without
    CAP_LEASE, network and FUSE filesystems, leases disabled) `active` is False and the writer
    relies on its other checks (settle time, size/mtime/inode unchanged).

    The lease-break notification (a signal) goes nowhere: SIGURG (ignored by default) is chosen
    before the lease is taken and the descriptor's owner is cleared right after.
    """

    def __init__(self, fd: int, shown: str) -> None:
        import fcntl
        import signal
        import sys

        self.fd = fd
        self.active = False
        self.unavailable: str | None = None
        if not sys.platform.startswith("linux"):
            self.unavailable = "leases are Linux only"
            return
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETSIG", _F_SETSIG), signal.SIGURG)
            fcntl.fcntl(fd, getattr(fcntl, "F_SETLEASE", _F_SETLEASE), fcntl.F_RDLCK)
        except OSError as exc:
            import errno

            if exc.errno == errno.EAGAIN:
                raise TagWriteError(
                    shown, "open for writing by another program (still being written?); left as it is for a later run"
                ) from None
            self.unavailable = exc.strerror or str(exc)  # EACCES (not the owner), EINVAL (filesystem) ...
            return
        self.active = True
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)

    def broken(self) -> bool:
        """True when another program opened the file for writing since the lease was taken."""
        if not self.active:
            return False
        import fcntl

        return fcntl.fcntl(self.fd, getattr(fcntl, "F_GETLEASE", _F_GETLEASE)) != fcntl.F_RDLCK


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats are of one file unchanged between them: its device, inode, size, mtime and
    ctime (a file written over in place with its mtime set back keeps the others)."""
    return ((a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns)
            == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns))  # fmt: skip


def xattrs(path: str) -> dict[str, bytes]:
    """A file's extended attributes (POSIX ACLs included: ``system.posix_acl_access``)."""
    import errno

    try:
        names = os.listxattr(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            return {}
        raise
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed meanwhile
                raise
    return out


def copy_xattrs(src: str, dst: str, shown: str) -> dict[str, bytes]:
    """Give ``dst`` exactly the extended attributes of ``src`` (user attributes, POSIX ACLs, ...);
    returns them. Raises `TagWriteError` naming the attributes that cannot be kept."""
    want = xattrs(src)
    have = xattrs(dst)  # e.g. an ACL inherited from the folder's default ACL, a security label
    problems = []
    for name in have.keys() - want.keys():
        try:
            os.removexattr(dst, name)
        except OSError as exc:
            problems.append(f"{name} ({exc.strerror or exc})")
    for name, value in want.items():
        if have.get(name) != value:
            try:
                os.setxattr(dst, name, value)
            except OSError as exc:
                problems.append(f"{name} ({exc.strerror or exc})")
    if not problems and xattrs(dst) != want:
        problems.append("the attributes read back differ")
    if problems:
        raise TagWriteError(shown, f"cannot keep the extended attributes on the new copy: {', '.join(problems)}")
    return want


def copy_mode(tmp: str, st: os.stat_result, shown: str) -> None:
    """Give ``tmp`` the mode of the original (``st``). A file system that keeps no Unix modes (FAT
    through FUSE refuses ``chmod`` with ENOSYS, the kernel's vfat with EPERM for bits it cannot
    store) gives every file the same mode: the copy already has the original's, and that is enough.
    Raises `TagWriteError` when the mode can be neither set nor found already there."""
    import errno

    mode = stat.S_IMODE(st.st_mode)
    try:
        os.chmod(tmp, mode)
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            raise TagWriteError(shown, f"the file system refuses to give the new copy the file's mode "
                                       f"({stat.filemode(st.st_mode)}): {exc.strerror or exc}") from None  # fmt: skip


def copy_owner(tmp: str, st: os.stat_result) -> None:
    """Give ``tmp`` the owner and group of the original (``st``), as far as permitted.

    Only root may give a file away; a user who may not (documented: the writer then owns the
    file) still keeps its group where they are a member of it, so that a library shared through a
    group stays writable by the group."""
    now = os.stat(tmp)
    if (now.st_uid, now.st_gid) == (st.st_uid, st.st_gid):
        return
    try:
        os.chown(tmp, st.st_uid, st.st_gid)
    except OSError:
        try:
            os.chown(tmp, -1, st.st_gid)
        except OSError:
            pass  # not a member of the file's group either: the writer's group it is


def exchange(a: str, b: str) -> bool:
    """Swap the names ``a`` and ``b`` in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``): each
    then names the file the other named. False, nothing changed, where that fails: the system or
    the file system cannot (not Linux, a C library without ``renameat2``, file systems that refuse
    the flag, such as many FUSE ones), or for any other reason, which the caller's plain rename then
    meets and reports as it always did (EBUSY for a mount point, EACCES, ...); but
    `FileNotFoundError` where either name is not there (``b`` deleted or moved away meanwhile: a
    plain rename would put ``a`` in its place)."""
    import errno

    code = _rename2(a, b, _RENAME_EXCHANGE)
    if code == 0:
        return True
    if code == errno.ENOENT:
        raise FileNotFoundError(code, os.strerror(code), b)
    return False


def rename_noreplace(a: str, b: str) -> bool:
    """Rename ``a`` to ``b`` where no file is named ``b``, checked and done in one step (Linux
    ``renameat2`` with ``RENAME_NOREPLACE``): True, done; `FileExistsError` where ``b`` is there, both
    left as they are; False, nothing done, where the system or the file system cannot (not Linux, a
    C library without ``renameat2``, EINVAL or ENOSYS: file systems that refuse the flag, such as
    many FUSE ones), for the caller to rename as it can; `OSError` for any other failure."""
    import errno

    code = _rename2(a, b, _RENAME_NOREPLACE)
    if code == 0:
        return True
    if code is None or code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), a, None, b)  # (FileExistsError for EEXIST)


def _rename2(a: str, b: str, flag: int) -> int | None:
    """``renameat2(a, b, flag)`` -> 0 where done, the errno where it failed, None where there is no such
    call here (not Linux, a C library without it)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    renameat2 = _renameat2()
    if renameat2 is None:
        return None
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), flag) == 0:
        return 0
    import ctypes

    return ctypes.get_errno()


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2():
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


def renumbered(found: os.stat_result, now: os.stat_result, real: str) -> bool:
    """Whether ``now`` (the file at ``real`` looked at again) is the file found as ``found`` with only
    its inode number changed: the same device, size, mtime and ctime, on a FUSE file system. There
    (exfat-fuse, fusefat) the numbers are handed out while the kernel holds a file and may be other
    ones once it let go of it (its caches dropped under memory pressure); a file held open keeps its
    number. A write found one so, and said `file changed while its tags were being written` (or
    `while it was being checked`) of a file nobody wrote."""
    if (found.st_dev, found.st_size, found.st_mtime_ns, found.st_ctime_ns) != (
            now.st_dev, now.st_size, now.st_mtime_ns, now.st_ctime_ns):  # fmt: skip
        return False
    from tagger.paths import on_fuse

    return bool(on_fuse(real))


def same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats are of one file (its device and inode), whatever changed in it."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def keep_beside(hidden: str, folder: str, base: str) -> str | None:
    """Move the file at ``hidden`` (a hidden copy's name, holding a file no cleanup may remove) to a
    name of its own in ``folder``, ``BASE.tagger-kept-XXXXXXXX~`` (``base`` cut to its first 200 bytes,
    whole characters), which no cleanup of leftover copies removes -> that name; None where it cannot
    be moved. Never over a file of that name, one put there in the same instant included: a hard link
    (the hidden name then removed), or on a file system without them a ``RENAME_NOREPLACE`` rename (a
    plain rename after a look where the file system refuses that flag)."""
    import secrets

    from tagger.paths import KEPT_INFIX, KEPT_SUFFIX

    while len(os.fsencode(base)) > 200:  # (its bytes kept, those not UTF-8 included; cut to 200 bytes, whole
        base = base[:-1]  # characters, the name with the infix within the 255 bytes a name may have)
    for _ in range(10):
        kept = os.path.join(folder, f"{base}{KEPT_INFIX}{secrets.token_hex(4)}{KEPT_SUFFIX}")
        try:
            os.link(hidden, kept, follow_symlinks=False)  # (never over a file of that name)
        except FileExistsError:
            continue
        except OSError:
            if os.path.lexists(kept):
                continue
            try:  # (a file system without hard links; never over a file put there since the look, where
                if rename_noreplace(hidden, kept):  # the kernel can: was a plain rename over it)
                    return kept
                os.rename(hidden, kept)  # (the file system refuses RENAME_NOREPLACE, as many FUSE ones)
            except FileExistsError:
                continue
            except OSError:
                break
            return kept
        try:
            os.unlink(hidden)
        except OSError:
            pass  # (two names for it: the one said is kept)
        return kept
    return None


def link_backup(real: str, folder: str, prefix: str) -> str | None:
    """A second name (a hidden temporary-file name) for the original, so that it can be put back
    after the rename; None where the filesystem has no hard links."""
    import secrets

    for _ in range(10):
        name = os.path.join(folder, prefix + secrets.token_hex(4) + TEMP_SUFFIX)
        try:
            os.link(real, name)
            return name
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


WRITER_BUSY = ("being rewritten by another tagger process at this moment (a scan, `tagger tag` or `untag`); "
               "left as it is for a later run")


def lock_writers(fd: int, shown: str) -> None:
    """Take the writers' lock of the file open as ``fd``: an exclusive ``flock`` on it, held (with the
    descriptor) until after the copy has been moved over the file. Two tagger writers of one file (a
    scan's tag write and `tagger tag`, `untag`, a second `tag`) never both copy it: each moves its
    copy over the file only after its last check that the file is still the one it copied, and
    without the lock the other's ``rename`` could land between that check and its own, losing the
    other's write (reported as written) and letting each record the other's file as its own. The
    second writer is refused (`WRITER_BUSY`), never made to wait: the file it would copy is about to
    be replaced. Other programs do not take it; the read lease (`ReadLease`) guards against them."""
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise TagWriteError(shown, WRITER_BUSY) from None
        # (a filesystem without flock: the other checks remain)


def fsync(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

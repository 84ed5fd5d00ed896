"""A read-only FUSE file system over a folder that answers EIO to reads of the files named in a
control file, one name a line (a disk with bad sectors under those files). Run by
tests/test_robustness_drives.py with a Python that has fusepy: ``eio_fuse.py BACKING MOUNT CONTROL``."""

import errno
import os
import sys

try:
    import fusepy as fuse  # (Debian's python3-fusepy)
except ImportError:
    import fuse


class FailingReads(fuse.Operations):
    use_ns = True

    def __init__(self, root: str, control: str) -> None:
        self.root, self.control = root, control

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _failing(self, path: str) -> bool:
        try:
            with open(self.control) as f:
                return os.path.basename(path) in f.read().split("\n")
        except OSError:
            return False

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino")}
        return out | {"st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._path(path))]

    def open(self, path, flags):
        return os.open(self._path(path), os.O_RDONLY)

    def read(self, path, size, offset, fh):
        if self._failing(path):
            raise fuse.FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        os.close(fh)


if __name__ == "__main__":
    fuse.FUSE(FailingReads(sys.argv[1], sys.argv[3]), sys.argv[2], foreground=True, ro=True, nothreads=True)

"""Whether a file the scan analysed is still the file its plan found (`changed_during_analysis`):
the scan stores results, and writes stored ones into tags, only for that file."""

from __future__ import annotations

import os

from tagger.db.scan_writer import FileState
from tagger.errors import TaggerError
from tagger.fingerprint import content_hash, fingerprint


def changed_during_analysis(work: FileState, whole: str | None = None) -> str | None:
    """Why the results of `work` must not be stored (its file changed or vanished meanwhile), or None.

    Size and mtime alone do not tell: another file of the same size and mtime moved over it (``mv``
    of a file unpacked from the same archive) has another inode. Another inode, mtime or ctime
    (``touch``, ``chmod``, written in place with its mtime set back) counts as unchanged only while
    the fingerprint is (not the inode alone: some network and FUSE filesystems number their files
    anew from one look to the next), and, for another inode or ctime, while the whole content hashes
    to ``whole`` (the hash of the bytes analysed, when known): two stems silent where the fingerprint
    reads have the same fingerprint, and one written over the other in place keeps its inode."""
    changed = "the file changed while it was being analysed; the next scan analyses it again"
    try:
        st = os.stat(work.path)
    except FileNotFoundError:
        return "the file disappeared while it was being analysed"
    except OSError as exc:
        return f"cannot stat the file after analysis: {exc.strerror or exc}"
    same_inode = work.inode is None or (st.st_dev, st.st_ino) == (work.device, work.inode)
    same_ctime = work.ctime_ns is None or st.st_ctime_ns == work.ctime_ns
    if st.st_size == work.size and st.st_mtime == work.mtime and same_ctime and same_inode:
        return None
    if st.st_size == work.size and work.fingerprint:
        try:
            if fingerprint(work.path) == work.fingerprint and ((same_inode and same_ctime) or whole is None
                                                               or content_hash(work.path) == whole):
                return None  # only touched (or numbered anew)
        except TaggerError:
            pass
    return changed

"""The checks that the file a write is about to change is the file analysed, and is settled.

Its size and modification time (`_check_expected`), its content fingerprint, and, where it is another
inode or has another ctime, its whole content's hash (`_check_fingerprint`); a file that failed them
whose audio is still the one analysed, its tags alone rewritten (`_only_tags_changed`); a file changed
too recently (`unsettled_reason`). `tagger.tags.rewrite` runs them before it decides anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from tagger.errors import AudioReadError, ChangedSinceError, TagWriteError
from tagger.tags import filesystem

_MTIME_TOLERANCE = 1e-3


def _check_expected(path, st: os.stat_result, expected: tuple[int, float] | None) -> None:
    if expected is None:
        return
    size, mtime = expected
    if st.st_size != int(size) or abs(st.st_mtime - float(mtime)) > _MTIME_TOLERANCE:
        raise ChangedSinceError(
            path,
            f"file changed since it was analysed (size {st.st_size} vs {int(size)}, "
            f"mtime {st.st_mtime:.3f} vs {float(mtime):.3f}); scan it again",
        )


def _check_fingerprint(path, real: str, st: os.stat_result, wanted: str | None, *,
                       inode: tuple[int, int] | None = None, whole: str | None = None,
                       ctime_ns: int | None = None) -> None:  # fmt: skip
    """Refuse the file (found as ``st``) when its content fingerprint is not ``wanted`` (its size and
    mtime alone cannot tell it from another file moved over it), or when it is another file than
    ``inode``, or has another ctime than ``ctime_ns`` (renamed or copied there: two stems of one
    archive swapped by name), whose whole content does not hash to ``whole`` (known): the
    fingerprint cannot tell it from one that differs only where it does not read. Another inode holding the same content passes,
    as in the scan (`tagger.library.recheck.changed_during_analysis`): some network and FUSE
    filesystems number their files anew from one look to the next."""
    if wanted is None:
        return
    from tagger.fingerprint import content_hash, fingerprint

    try:
        other = (inode is not None and (st.st_dev, st.st_ino) != tuple(inode)) or (
            ctime_ns is not None and st.st_ctime_ns != ctime_ns)  # fmt: skip
        same = fingerprint(real) == wanted and (not other or whole is None or content_hash(real) == whole)
    except AudioReadError as exc:
        raise TagWriteError(path, exc.reason) from None
    if not same:
        # (a --quick scan, which reads no fingerprint of a file of its stored size, mtime and ctime,
        # kept the stale one of a file rewritten in place with its mtime kept on a drive whose ctime
        # is its mtime, FAT: "scan it again" with --quick kept it again, and tag refused it again)
        raise ChangedSinceError(path, "file changed since it was analysed (the same size and modification time, other "
                                  "content: rewritten in place with its modification time kept, or another file "
                                  "moved over it?); scan it again, without --quick (which trusts an unchanged "
                                  "size and modification time and does not read the file)")  # fmt: skip
    _still_found(path, real, st)


def _still_found(path, real: str, st: os.stat_result) -> None:
    """`TagWriteError` unless the file ``real`` is still the one found as ``st`` (size, mtime, inode)
    after a check read it: swapped or rewritten while it was read, what was read proves nothing."""
    try:
        again = os.stat(real)
    except OSError as exc:
        raise TagWriteError(path, f"cannot stat: {exc.strerror or exc}") from None
    if not filesystem.same_file(again, st) and not filesystem.renumbered(st, again, real):
        raise TagWriteError(path, "file changed while it was being checked; scan it again")


def _only_tags_changed(path, real: str, st: os.stat_result, stored: str | None, refusal: ChangedSinceError, *,
                       digest: Callable[[], str | None], settle_seconds: float) -> str:  # fmt: skip
    """The audio digest (``digest()``, `tagger.tags.audio_digest_or_none`) of the file ``real`` (found
    as ``st``), which the checks above found changed since it was analysed (``refusal``), when it is
    ``stored``, the digest of the file analysed: only its tags changed (`tagger untag`, `tag
    --from-json`, another program's tag edit), as the scan tells it
    (`tagger.library.matches.only_tags_changed`). Raises ``refusal`` where
    that cannot be told (no stored digest: a track analysed before revision 0010, or a format without
    it; a file whose digest cannot be read now) or the audio is other; `TagWriteError` when the file
    changed while it was read (another stat than ``st`` after it: the digest is of no known file) or
    less than ``settle_seconds`` ago. The write then checks, under its lock, that the bytes it copies
    hash to it still (`tagger.tags.rewrite`)."""
    if not stored:
        raise refusal
    if digest() != stored:
        raise refusal
    _still_found(path, real, st)
    unsettled = unsettled_reason(st.st_mtime, settle_seconds)
    if unsettled:
        raise TagWriteError(path, unsettled)
    return stored


def unsettled_reason(mtime: float, settle_seconds: float, *, now: float | None = None) -> str | None:
    """Why a file modified at ``mtime`` must be left alone for now (modified less than
    ``settle_seconds`` ago: it may still be being written), or None.

    A modification time in the future by less than the settle time counts as recent too.
    """
    import math

    age = (time.time() if now is None else now) - mtime
    if settle_seconds <= 0 or abs(age) >= settle_seconds:
        return None
    wait = max(1, math.ceil(settle_seconds - age))  # (an mtime ahead of the clock: till it lies that far behind)
    return (f"changed {max(age, 0.0):.0f} s ago, still being written? (settle time {settle_seconds:g} s); left for a "
            f"later run: run it again in {wait} s, or with --settle-seconds 0 if no other program is writing it")

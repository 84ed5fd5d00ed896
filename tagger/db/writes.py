"""Every write to the library database outside the scan's own batches: the database owns its writes.

The scan's writer (`tagger.db.scan_writer`) stores tracks, moves, copies and missing files; this
module holds the writes other commands make.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagger.db import models as M

log = logging.getLogger(__name__)


def record_rewrite(session: Session, *, path: str, size: int | None, mtime: float | None,
                   fingerprint: str | None = None) -> bool:  # fmt: skip
    """After a tag write rewrote the file ``path``, store its new size, mtime, fingerprint (read
    from the file when not given) and content hash, so that the next scan sees the file unchanged
    and the next write is not refused. A path the database does not know is ignored. Raises
    `tagger.errors.AudioReadError` when the file cannot be read (nothing is stored then)."""
    from tagger.fingerprint import content_hash
    from tagger.fingerprint import fingerprint as read_fingerprint

    track = session.scalar(select(M.Track).where(M.Track.path == path))
    if track is None:
        return False
    if fingerprint is None:
        fingerprint = read_fingerprint(path)
    digest = content_hash(path)
    track.size, track.mtime, track.fingerprint, track.content_hash = size, mtime, fingerprint, digest
    return True

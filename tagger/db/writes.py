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
                   tags_current: bool | None = None) -> bool:  # fmt: skip
    """After a tag write rewrote the file ``path`` (leaving it with ``size`` and ``mtime``), store
    its new size, mtime, fingerprint and content hash, so that the next scan sees the file unchanged
    and the next write is not refused; ``tags_current``: whether its tags now hold the stored
    results (None: not known, left as it is). False, storing nothing, for a path the database does
    not know or a file no longer what the write left (another program changed it since: the next
    scan sees it changed). Raises `tagger.errors.AudioReadError` when the file cannot be read
    (nothing is stored then)."""
    from tagger.fingerprint import read_back

    track = session.scalar(select(M.Track).where(M.Track.path == path))
    if track is None:
        return False
    facts = read_back(path, size=size, mtime=mtime)
    if facts is None:
        log.warning("%s: changed by another program right after its tags were written; left for the next scan", path)
        return False
    track.size, track.mtime, track.fingerprint, track.content_hash = facts
    if tags_current is not None:
        track.tags_current = tags_current
    return True

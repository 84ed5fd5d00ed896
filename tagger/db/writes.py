"""Every write to the library database outside the scan's own batches: the database owns its writes.

The scan's writer (`tagger.db.scan_writer`) stores tracks, moves, copies and missing files; this
module holds the writes other commands make.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tagger.db import models as M
from tagger.db.listing import StoredResults

log = logging.getLogger(__name__)


class Recorded(enum.Enum):
    """What `record_rewrite` stored."""

    NOTHING = "nothing"
    """Nothing: the database does not know the path, or the file is no longer what the write left."""
    FILE = "file"
    """The file's new facts (and ``tags_current`` as asked)."""
    NOT_CURRENT = "not current"
    """The track no longer holds the results that were written (a scan stored new ones meanwhile, or
    saw its file change): the tags are not recorded as current. The file's new facts are stored
    when the track's results were made from the very bytes that were rewritten (the next scan then
    writes their tags without analysing the file again); otherwise nothing is (the next scan sees
    the file changed and analyses it)."""


def compact_scan_roots(session: Session) -> set[str]:
    """Every folder (or file) a scan of this database was given (`tagger.db.reads.scanned_roots`'s
    union), each scan's record left holding only the roots no earlier scan was given. A scan stores
    only those since 5a5cdce; a database of a tagger before it holds each `beet instruments` run's
    every item path again (4.6 MB a run for 50,000 items), all read and parsed by every scan, prune and
    ``tag`` without paths: 1.6 s each after 30 such runs, growing with each (found measuring such a
    database). Rows holding roots an earlier one holds are rewritten once, in the caller's
    transaction; the union, all that is read of them, is the same."""
    import json

    seen: set[str] = set()
    changed: dict[int, str] = {}
    for scan_id, text in session.execute(select(M.Scan.id, M.Scan.roots).order_by(M.Scan.id)):
        roots = json.loads(text)
        new = [r for r in dict.fromkeys(roots) if r not in seen]
        if len(new) != len(roots):
            changed[scan_id] = json.dumps(new)
        seen.update(new)
    for scan_id, text in changed.items():
        session.execute(update(M.Scan).where(M.Scan.id == scan_id).values(roots=text))
    if changed:
        log.info("the scans' records held %d root(s) again that earlier scans hold: left out", len(changed))
    return seen


def record_rewrite(session: Session, *, path: str, size: int | None, mtime: float | None,
                   tags_current: bool | None = None, written: StoredResults | None = None,
                   ctime_ns: int | None = None, audio_digest: str | None = None) -> Recorded:  # fmt: skip
    """After a tag write rewrote the file ``path`` (leaving it with ``size`` and ``mtime``), store
    its new size, mtime, fingerprint and content hash (and forget the copy `record_pending` stored),
    so that the next scan sees the file unchanged and the next write is not refused; ``tags_current``:
    whether its tags now hold the stored results (None: not known, left as it is). Nothing is stored
    for a path the database does not know or a file no longer what the write left (another program
    changed it since: the next scan sees it changed; ``ctime_ns``, the written file's
    `tagger.tags.TagChange.ctime_ns`, tells it from another writer's file of the same size and
    mtime). ``audio_digest``: the hash of the file's audio bytes as the write read them and checked it
    left them (`tagger.tags.TagChange.audio_digest`), recorded with the facts where given (a track
    analysed before revision 0010 has none). Raises `tagger.errors.AudioReadError` when the file
    cannot be read (nothing is stored then).

    ``written``: the results the tags were written from, as read before the write. The track is
    updated only while it still holds them and its file facts are still those read, checked in the
    update itself (one statement: a scan committing new results at any moment is either before it,
    and seen, or after it); otherwise `Recorded.NOT_CURRENT`."""
    from tagger.fingerprint import read_back

    track = session.scalar(select(M.Track).where(M.Track.path == path))
    if track is None:
        return Recorded.NOTHING
    facts = read_back(path, size=size, mtime=mtime, ctime_ns=ctime_ns)
    if facts is None:
        log.warning("%s: changed by another program right after its tags were written; left for the next scan", path)
        return Recorded.NOTHING
    if written is None:
        track.size, track.mtime, track.fingerprint, track.content_hash = facts
        track.ctime_ns, track.rewrite_hash, track.written_ctime_ns = ctime_ns, None, ctime_ns
        if audio_digest is not None:
            track.audio_digest = audio_digest
        if tags_current is not None:
            track.tags_current = tags_current
        return Recorded.FILE
    new = {**_facts(facts, ctime_ns=ctime_ns), "rewrite_hash": None, "written_ctime_ns": ctime_ns}
    if audio_digest is not None:
        new["audio_digest"] = audio_digest
    same_file = _same_file(path, written)
    values = new if tags_current is None else {**new, "tags_current": tags_current}
    if _update(session, [*same_file, *_same_results(written)], values):
        return Recorded.FILE
    # Not the results written (a scan stored new ones, another model's say): when they were made from
    # the bytes just rewritten, the file's new facts are stored, so the next scan only writes their tags.
    _update(session, same_file, {**new, "tags_current": False})
    return Recorded.NOT_CURRENT  # (the caller reports it)


def record_own_write(session: Session, *, names: Sequence[str], path: str, size: int, mtime: float,
                     ctime_ns: int, audio_digest: str | None) -> Recorded:  # fmt: skip
    """After tagger's own write changed the tags of the file ``path`` other than to the results stored
    for it (`tagger untag` removing them, `tagger tag --from-json` writing a row's), leaving it with
    ``size``, ``mtime`` and ``ctime_ns`` and its audio bytes hashing to ``audio_digest`` (as the write
    read them and checked it left them, `tagger.tags.TagChange.audio_digest`): store the file's new
    size, mtime, fingerprint, content hash and ctime, and that ctime as tagger's own write's
    (``written_ctime_ns``), its tags not current (`Recorded.FILE`), so that the next command does not
    wait for the file as for one still being written, and a scan sees it unchanged and writes its
    results back into it. The track is the analysed one stored under one of ``names`` (the file's
    names the database may hold it by, `tagger.db.filter.path_forms`) whose audio digest is
    ``audio_digest``: its results are this very audio's. `Recorded.NOTHING` for any other (none
    there, another audio, no digest stored or none read: a format without the check, a track stored
    before revision 0010), and for a file no longer what the write left (another program changed it
    since: `tagger.fingerprint.read_back`; the next scan sees it changed). Raises
    `tagger.errors.AudioReadError` when the file cannot be read (nothing is stored then)."""
    from tagger.fingerprint import read_back

    if not audio_digest or not names:
        return Recorded.NOTHING
    same = [M.Track.path.in_(list(names)), M.Track.status == M.STATUS_OK, M.Track.audio_digest == audio_digest]
    track_id = session.scalar(select(M.Track.id).where(*same).order_by(M.Track.id).limit(1))
    if track_id is None:
        return Recorded.NOTHING
    facts = read_back(path, size=size, mtime=mtime, ctime_ns=ctime_ns)
    if facts is None:
        log.warning("%s: changed by another program right after its tags were written; left for the next scan", path)
        return Recorded.NOTHING
    values = {**_facts(facts, ctime_ns=ctime_ns), "rewrite_hash": None, "written_ctime_ns": ctime_ns,
              "tags_current": False}  # fmt: skip
    return Recorded.FILE if _update(session, [M.Track.id == track_id, *same], values) else Recorded.NOTHING


def record_pending(session: Session, *, path: str, written: StoredResults, content_hash: str) -> bool:
    """Before `tagger tag` moves its verified copy (whose whole content hashes to ``content_hash``)
    over the file ``path``, written from the results ``written``: store the copy's hash, so that a
    run stopped after the move but before `record_rewrite` (``kill -9``, a database that cannot be
    written) leaves the next `tag` a way to recognise the file (`recover_rewrite`). Stored only while
    the track still holds those results and file facts; True when it was."""
    return _update(session, [*_same_file(path, written), *_same_results(written)], {"rewrite_hash": content_hash})


def recover_rewrite(session: Session, *, path: str, written: StoredResults,
                    dry_run: bool = False) -> StoredResults | None:  # fmt: skip
    """The results ``written`` (as read, ``written.rewrite_hash`` set by `record_pending`) with the
    file's facts now, when the file ``path`` is byte for byte the copy `tagger tag` verified and was
    moving over it when it stopped: the audio analysed, the tags holding these results. Its facts are
    then recorded, its tags as current (not with ``dry_run``). None when the file is not that copy
    (the move never happened, or anything changed the file since: the usual checks then refuse it)
    or the track changed meanwhile, or the file cannot be read."""
    from tagger.errors import AudioReadError
    from tagger.fingerprint import read_back

    if written.rewrite_hash is None:
        return None
    try:
        facts = read_back(path, size=None, mtime=None)
    except AudioReadError:
        return None
    if facts is None or facts[3] != written.rewrite_hash:
        return None
    new = _facts(facts, ctime_ns=None)
    if not dry_run:
        where = [*_same_file(path, written), *_same_results(written), M.Track.rewrite_hash == written.rewrite_hash]
        if not _update(session, where, {**new, "tags_current": True, "rewrite_hash": None}):
            return None
        log.info("%s: recorded the tags an interrupted `tagger tag` wrote", path)
    return dataclasses.replace(written, size=new["size"], mtime=new["mtime"], fingerprint=new["fingerprint"],
                               rewrite_hash=None, content_hash=new["content_hash"], ctime_ns=None)  # fmt: skip


def _facts(facts: tuple[int, float, str, str], *, ctime_ns: int | None) -> dict:
    """`tagger.fingerprint.read_back`'s answer, and the file's ctime (None: not known, the next scan
    records it), as the track's columns."""
    return {**dict(zip(("size", "mtime", "fingerprint", "content_hash"), facts)), "ctime_ns": ctime_ns}


def _same_file(path: str, written: StoredResults) -> list:
    """SQL conditions: the track of ``written``, at ``path``, analysed, its file facts still those read."""
    return [M.Track.id == written.track_id, M.Track.path == path, M.Track.status == M.STATUS_OK,
            M.Track.size == written.size, M.Track.mtime == written.mtime,
            M.Track.fingerprint == written.fingerprint]  # fmt: skip


def _same_results(written: StoredResults) -> list:
    """SQL conditions: the track still holds the results of ``written`` (a scan storing new ones
    changes its scan and analysis time)."""
    return [_is(M.Track.model_version_id, written.model_version_id), _is(M.Track.scan_id, written.scan_id),
            _is(M.Track.analysed_at, written.analysed_at)]  # fmt: skip


def _is(column, value):
    return column.is_(None) if value is None else column == value


def _update(session: Session, where: list, values: dict) -> bool:
    """UPDATE the track matching every condition of ``where``; True when there was one."""
    stmt = update(M.Track).where(*where).values(**values).execution_options(synchronize_session=False)
    return session.execute(stmt).rowcount == 1

"""The scan's database writes: one session in the main process, batched commits, whole tracks.

Only the main process writes. A track's row, detections, segments and window scores go into one
transaction (`ScanWriter.store_result`), committed every ``commit_every`` tracks or
``commit_seconds``, so a scan killed at any moment leaves only whole tracks. Also here: the model
version's row (`register_model`), the moves, copies and touched files the planning finds
(`ScanWriter.moved`, `ScanWriter.copied`, `ScanWriter.touched`) and the missing files (`mark_missing`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tagger import constants as C
from tagger.aggregate import TrackResult
from tagger.db import models as M
from tagger.db.filter import under_any_clause
from tagger.db.sql import IN_LIST, as_clause, chunks
from tagger.db.lock import WrittenFile, file_id
from tagger.db.session import Database
from tagger.db.urls import DatabaseError
from tagger.paths import Roots, Spelling, folder_prefix, is_under, looks_unmounted, under_any


@dataclass
class FileState:
    """A file as the planning found it (and its track id when the database knows it)."""

    path: str
    size: int
    mtime: float
    fingerprint: str
    track_id: int | None
    device: int | None = None
    inode: int | None = None
    ctime_ns: int | None = None
    """Which file it was (another file moved over it with the same size and mtime, ``mv``, has
    another inode) and its last status change (a write with the mtime set back changes it); None
    where not known."""
    own_write: bool = False
    """The file is exactly as the database recorded it after tagger's own last write (its size,
    mtime and ctime those recorded, the ctime ``tracks.written_ctime_ns``: `tagger untag`'s): no
    program wrote to it since, so its tag write does not wait the settle time."""

    @classmethod
    def of(cls, path: str, st: os.stat_result, fingerprint: str, track_id: int | None) -> FileState:
        """The file at ``path`` as ``os.stat`` found it (``st``), with its ``fingerprint``."""
        return cls(path, st.st_size, st.st_mtime, fingerprint, track_id, device=st.st_dev, inode=st.st_ino,
                   ctime_ns=st.st_ctime_ns)  # fmt: skip


def register_model(session: Session, analyser, aggregation: dict) -> M.ModelVersion:
    """The database row of the analyser's model version (created on first use)."""
    row = session.scalar(
        select(M.ModelVersion).where(M.ModelVersion.version == analyser.version, M.ModelVersion.manifest_hash == analyser.hash)
    )
    if row is None:
        fams = list(analyser.families)
        _refuse_long_names(session, analyser.version, fams)
        row = M.ModelVersion(
            version=analyser.version,
            manifest_hash=analyser.hash,
            families=json.dumps(fams),
            thresholds=json.dumps({f: round(float(t), 6) for f, t in zip(fams, np.asarray(analyser.thresholds))}),
            aggregation=json.dumps(aggregation, sort_keys=True),
        )
        session.add(row)
        session.flush()
    return row


def _refuse_long_names(session: Session, version: str, families: Sequence[str]) -> None:
    """`DatabaseError` for a model whose version, or one of whose family names, is longer than its
    column holds, on a database that enforces the length (PostgreSQL; SQLite stores any): was the
    server's ``value too long for type character varying(200)`` at the scan's first commit, naming
    neither (``tagger combine`` names a model after all its members' versions when not given
    ``--version``: seven of them are over 200 characters). The advice names the commands that set a
    version (was: ``tagger train average --version NAME``, a command that does not exist)."""
    if session.bind.dialect.name == "sqlite":
        return
    names = [("version name", version, M.ModelVersion.__table__.c.version.type.length)]
    names += [("family name", family, M.Detection.__table__.c.family.type.length) for family in families]
    for what, name, most in names:
        if most is not None and len(name) > most:
            how = ("give the model a shorter one (tagger combine --version NAME, tagger train --version NAME, or the "
                   "version in its manifest.json)" if what == "version name" else
                   "use a model whose family names are shorter")  # fmt: skip
            raise DatabaseError(f"the model's {what} {name[:40]}... is {len(name)} characters long, and the "
                                f"{session.bind.dialect.name} database holds at most {most}: {how}")  # fmt: skip


class StageClock:
    """Adds the wall time of ``with clock(stage):`` blocks to a dict; nested blocks count for the
    outermost stage only (a commit inside ``store_result`` is database time once)."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.depth = 0

    @contextmanager
    def __call__(self, stage: str):
        if self.depth:
            yield
            return
        self.depth += 1
        t = time.perf_counter()
        try:
            yield
        finally:
            self.depth -= 1
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t


_SURELY_INDEXED = 2000
"""Paths shorter than this many bytes always fit in PostgreSQL's B-tree index entry (at most 2,704)."""
_PROGRAM_LIMIT_EXCEEDED = "54000"
"""PostgreSQL's SQLSTATE for an index row over the B-tree's maximum (``index row size ... exceeds``)."""


class ScanWriter:
    """The main process's database writer: one session, batched commits."""

    def __init__(self, *, db: Database, scan_id: int, model_version_id: int, summary,
                 commit_every: int, commit_seconds: float) -> None:  # fmt: skip
        self.session: Session = db.sessionmaker()
        self.url = db.url
        self.file = WrittenFile.of(db.url)
        self.scan_id = scan_id
        self.mv_id = model_version_id
        self.summary = summary
        self.commit_every = max(1, commit_every)
        self.commit_seconds = commit_seconds
        self.dirty = 0
        self.last_commit = time.monotonic()
        self.seen: set[str] = set()
        self.clock = StageClock(summary.stage_seconds)

    def touch(self) -> None:
        self.dirty += 1
        if self.dirty >= self.commit_every or time.monotonic() - self.last_commit >= self.commit_seconds:
            self.commit()

    def maybe_commit(self) -> None:
        """Commit a pending batch that has waited `commit_seconds` (a long file keeps none waiting)."""
        if self.dirty and time.monotonic() - self.last_commit >= self.commit_seconds:
            self.commit()

    def commit(self) -> None:
        with self.clock("database"):
            self._commit()

    def _commit(self) -> None:
        self.check_file()
        scan = self.session.get(M.Scan, self.scan_id)
        s = self.summary
        scan.scanned, scan.skipped, scan.failed = s.scanned, s.skipped, s.failed
        scan.moved, scan.missing, scan.stale, scan.audio_seconds = s.moved, s.missing, s.stale, s.audio_seconds
        self.session.commit()
        self.dirty = 0
        self.last_commit = time.monotonic()

    def check_file(self) -> None:
        """Raise `DatabaseError` when the SQLite file being written is no longer at its path (deleted,
        or another file moved over it): SQLite would go on writing into the file that went, and the
        scan would report results stored where no command finds them."""
        if not self.file.went():
            return
        raise DatabaseError(
            f"the database {self.file.path} was deleted, moved or replaced while the scan wrote it: stopped; what it "
            "stored went with the file that was there (a file moved away holds it), not into any at that path now; "
            "scan again"
        )

    def finish(self) -> None:
        try:
            scan = self.session.get(M.Scan, self.scan_id)
            scan.finished_at = M.utcnow()
            self.commit()
        finally:
            self.session.close()

    def abort(self) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def path_fits(self, path: str) -> bool:
        """False for a path the database cannot store: PostgreSQL indexes ``tracks.path`` in a
        B-tree, whose entries hold at most 2,704 bytes (after compression), so a long path of varied
        names (Linux allows 4,095 bytes) fails to insert, and the whole batch with it (was: the scan
        stopped there, at every scan, the rest of the library never stored). Tried for real, in a
        savepoint rolled back, for the few paths long enough to be in doubt; SQLite has no limit."""
        if len(path.encode("utf-8", "surrogateescape")) < _SURELY_INDEXED or self.session.bind.dialect.name != "postgresql":
            return True
        probe = self.session.begin_nested()
        try:
            self.session.execute(insert(M.Track).values(path=path, size=0, mtime=0.0, fingerprint="", status=M.STATUS_ERROR))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _PROGRAM_LIMIT_EXCEEDED:
                return False
            raise
        finally:
            probe.rollback()
        return True

    def track_for(self, work: FileState) -> M.Track:
        track = self.session.get(M.Track, work.track_id) if work.track_id is not None else None
        if track is None:
            track = self.session.scalar(select(M.Track).where(M.Track.path == work.path))
        if track is None:
            track = M.Track(path=work.path, size=work.size, mtime=work.mtime, fingerprint=work.fingerprint)
            self.session.add(track)
        return track

    def touched(self, track_id: int, *, mtime: float, ctime_ns: int | None) -> str:
        """An unchanged file whose mtime or ctime changed, or whose track was missing and is back:
        record it; returns the track's status now."""
        track = self.session.get(M.Track, track_id)
        track.mtime, track.ctime_ns, track.rewrite_hash = mtime, ctime_ns, None
        if track.status == M.STATUS_MISSING:
            track.status = restored_status(track)
            track.missing_since = None
        track.updated_at = M.utcnow()
        self.touch()
        return track.status

    def known_ctime(self, track_id: int, ctime_ns: int) -> None:
        """Record the ctime of an unchanged file whose track has none (stored before revision 0008)."""
        self.session.get(M.Track, track_id).ctime_ns = ctime_ns
        self.touch()

    def decoding_checked(self, track_id: int, decoding: int) -> None:
        """Record that the file of an analysed track stored by an older decoding (``tracks.decoding``)
        is read by ``decoding`` as it was (no file joined byte-wise): not looked at again."""
        self.session.get(M.Track, track_id).decoding = decoding
        self.touch()

    def moved(self, track: M.Track, *, path: str, mtime: float, ctime_ns: int | None) -> None:
        """The file of ``track`` is now at ``path``: the row follows it (results kept)."""
        old_path = track.path
        if track.status == M.STATUS_MISSING:
            track.status = restored_status(track)
        _rename(track, path)
        track.mtime, track.ctime_ns, track.missing_since, track.rewrite_hash = mtime, ctime_ns, None, None
        self.seen.discard(old_path)
        self.summary.moved += 1
        self.touch()

    def relinked(self, track: M.Track, *, path: str, mounted: bool = False) -> None:
        """``track`` was stored under a path that leads through a symbolic link to the file ``path``
        (its real path), or with ``mounted`` under another name of it without a link (a folder
        mounted at two places): the same file, so the row takes that name, results kept (the caller
        then checks the file as it checks any stored one)."""
        (self.summary.renamed if mounted else self.summary.relinked).append((track.path, path))
        _rename(track, path)
        self.touch()

    def retag_untaggable(self, signature: str) -> int:
        """Mark for a tag write (``tags_current`` false) the tracks found in a format without tags by
        a tagger that could tag less or other than this one (``untaggable_formats`` set and not
        `signature`); returns how many. A tag-writing scan calls it before it plans. Committed at once:
        the UPDATE takes SQLite's write lock even when it matches no track (was: held through the
        whole plan, so that `tagger tag` beside a scan failed on "database is locked")."""
        done = self.session.execute(
            update(M.Track)
            .where(M.Track.untaggable_formats.is_not(None), M.Track.untaggable_formats != signature)
            .values(tags_current=False, untaggable_formats=None)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        self.commit()
        return done.rowcount or 0

    def copied(self, src: M.Track, file: FileState) -> M.Track:
        """A copy of the analysed file of ``src`` (the same bytes) at ``file.path``: a new track with
        a copy of its results (and of its tags' state: the same bytes, the same tags)."""
        dst = M.Track(path=file.path, size=file.size, mtime=file.mtime, fingerprint=file.fingerprint,
                      content_hash=src.content_hash, audio_digest=src.audio_digest, ctime_ns=file.ctime_ns,
                      duration=src.duration, format=src.format, sample_rate=src.sample_rate, channels=src.channels,
                      status=M.STATUS_OK, windows=src.windows, silent_windows=src.silent_windows,
                      model_version_id=self.mv_id, scan_id=self.scan_id, analysed_at=src.analysed_at,
                      tags_current=src.tags_current, untaggable_formats=src.untaggable_formats,
                      analysed_in_part=src.analysed_in_part, decoding=src.decoding)  # fmt: skip
        self.session.add(dst)
        copy_results(self.session, src, dst)
        self.summary.copied += 1
        self.summary.skipped += 1
        self.touch()
        return dst

    def store_result(self, work: FileState, meta: dict, result: TrackResult, duration: float, *,
                     touch: bool = True, note: str = "") -> M.Track:  # fmt: skip
        """Add a track's results to the open batch (``touch=False``: the caller commits, via `touch`, later).
        Its tags are not current until a tag write says so. ``note``: the file was analysed in part
        (`Done.note`), kept with the results (``tracks.analysed_in_part``); "" clears an old one."""
        track = self.track_for(work)
        self._set_file(track, work, meta)
        track.duration = duration
        track.status, track.error, track.error_transient = M.STATUS_OK, None, False
        track.tags_current, track.untaggable_formats = False, None
        track.windows, track.silent_windows = result.windows, result.silent_windows
        track.model_version_id = self.mv_id
        track.analysed_at = M.utcnow()
        track.analysed_in_part = note or None
        from tagger.audio.joined import DECODING  # (not at import: tagger.audio loads numpy and soundfile)

        track.decoding = DECODING
        replace_results(self.session, track, result)
        self.summary.scanned += 1
        self.summary.audio_seconds += duration
        if touch:
            self.touch()
        return track

    def store_error(self, work: FileState, meta: dict, reason: str, *, transient: bool = False,
                    keep_results: bool = False) -> None:  # fmt: skip
        """Record a failed file; a `transient` error (the file changed or vanished while it was read)
        is retried by the next scan and never follows a moved or copied file. With `keep_results`
        (the file changed while it was analysed: a tag editor or `tagger tag` saved it during a
        re-analysis), a track that holds results is left as it was, results and recorded facts: the
        next scan sees the file changed and analyses it again, and until then the library still
        finds it."""
        self.summary.failed += 1
        self.summary.errors.append((work.path, reason))
        track = self.track_for(work)
        if keep_results and track.id is not None and track.status == M.STATUS_OK and track.path == work.path:
            self.touch()
            return
        self._set_file(track, work, meta)
        track.status, track.error, track.error_transient = M.STATUS_ERROR, reason, transient
        track.tags_current, track.untaggable_formats = False, None
        track.model_version_id = None
        track.analysed_at = M.utcnow()
        track.analysed_in_part = None
        if track.id is not None:
            self.session.execute(delete(M.Detection).where(M.Detection.track_id == track.id))
            self.session.execute(delete(M.Segment).where(M.Segment.track_id == track.id))
            self.session.execute(delete(M.WindowScores).where(M.WindowScores.track_id == track.id))
            self.session.expire(track, ["detections", "segments", "window_scores"])
        self.touch()

    def refresh_file(self, work: FileState, *, size: int, mtime: float, fingerprint: str,
                     content_hash: str | None, ctime_ns: int | None, audio_digest: str | None = None) -> None:  # fmt: skip
        """Record a file's new size, mtime, fingerprint, content hash and ctime (None: not known)
        after we rewrote it (tags). The write left its audio bytes as they were (it checks that):
        ``audio_digest``, their hash as the write read them, is recorded where given (a track
        analysed before revision 0010 has none)."""
        track = self.track_for(work)
        track.size, track.mtime, track.fingerprint, track.content_hash = size, mtime, fingerprint, content_hash
        track.ctime_ns = track.written_ctime_ns = ctime_ns  # (tagger's own write: `as_tagger_left_it`)
        track.rewrite_hash = None
        if audio_digest is not None:
            track.audio_digest = audio_digest
        self.touch()

    def retagged(self, track_id: int, file: FileState, *, content_hash: str) -> None:
        """The analysed file of ``track_id`` changed, but only in its tags: the bytes that carry its
        audio hash as they did when it was analysed (another program rewrote its tags). Its new size,
        mtime, fingerprint, ctime and content hash are recorded, its results and model version kept;
        its tags are not known to hold them now (``tags_current`` false: a tag-writing scan looks,
        and writes tagger's fields back if the other program removed them)."""
        track = self.session.get(M.Track, track_id)
        track.size, track.mtime, track.fingerprint = file.size, file.mtime, file.fingerprint
        track.ctime_ns, track.content_hash, track.rewrite_hash = file.ctime_ns, content_hash, None
        track.tags_current = False
        track.updated_at = M.utcnow()
        self.summary.retagged += 1
        self.touch()

    def _set_file(self, track: M.Track, work: FileState, meta: dict) -> None:
        track.path, track.size, track.mtime, track.fingerprint = work.path, work.size, work.mtime, work.fingerprint
        track.ctime_ns = work.ctime_ns
        track.content_hash = meta.get("content_hash")  # None: the file could not be read whole
        track.audio_digest = meta.get("audio_digest")  # None: a format without the check (or unreadable)
        track.rewrite_hash = None  # (an interrupted `tag`'s copy: the scan's facts and results are the track's now)
        track.format = meta.get("format", track.format)
        track.sample_rate = meta.get("sample_rate", track.sample_rate)
        track.channels = meta.get("channels", track.channels)
        track.scan_id = self.scan_id
        track.missing_since = None
        track.updated_at = M.utcnow()


def replace_results(session: Session, track: M.Track, result: TrackResult) -> None:
    if track.id is not None:
        session.execute(delete(M.Detection).where(M.Detection.track_id == track.id))
        session.execute(delete(M.Segment).where(M.Segment.track_id == track.id))
        session.execute(delete(M.WindowScores).where(M.WindowScores.track_id == track.id))
        session.expire(track, ["detections", "segments", "window_scores"])
        session.flush()
    for r in result.results:
        track.detections.append(M.Detection(family=r.family, present=r.present, score=r.score, coverage=r.coverage))
        for a, b in r.segments:
            track.segments.append(M.Segment(family=r.family, start=a, end=b))
    if result.window_scores is not None:
        track.window_scores = M.WindowScores.pack(families=result.families, starts=result.window_starts,
                                                  scores=result.window_scores, window_seconds=C.WINDOW_SECONDS)  # fmt: skip


def copy_results(session: Session, src: M.Track, dst: M.Track) -> None:
    for d in src.detections:
        dst.detections.append(M.Detection(family=d.family, present=d.present, score=d.score, coverage=d.coverage))
    for g in src.segments:
        dst.segments.append(M.Segment(family=g.family, start=g.start, end=g.end))
    if src.window_scores is not None:
        w = src.window_scores
        dst.window_scores = M.WindowScores(families=w.families, window_seconds=w.window_seconds, n_windows=w.n_windows,
                                           starts=w.starts, scores=w.scores)  # fmt: skip


def _rename(track: M.Track, path: str) -> None:
    if track.error:  # a reason stored by an older tagger may name the file: by its new name now
        track.error = track.error.replace(track.path, path)
    track.path, track.updated_at = path, M.utcnow()


def restored_status(track: M.Track) -> str:
    return M.STATUS_ERROR if track.error else M.STATUS_OK


@dataclass(frozen=True)
class Missing:
    """What `mark_missing` did."""

    marked: int
    """Tracks newly marked missing."""
    kept: list[tuple[str, int]]
    """(root, tracks) of the roots found empty (`looks_unmounted`): their tracks were left as they were."""
    merged: list[str] = field(default_factory=list)
    """Tracks stored under a name that reaches, through a symbolic link (to the file or to a folder
    on its way), a file this scan saw under its own name (older taggers stored such names as tracks
    of their own): deleted, the file's own track holds the same results."""
    duplicates: list[str] = field(default_factory=list)
    """Tracks stored under a name, with no symbolic link on its way, of a file this scan saw under
    another name and did not walk to under this one: a folder reached twice (a bind mount of a
    folder of the library, whose other name the walk reached first). Deleted: the track under the
    name the scan saw holds the file's results, and this one was looked at by no scan any more."""


def mark_missing(session: Session, *, roots: Iterable[str], seen: set[str], unlisted: Sequence[str] = (),
                 unfollowed: Sequence[str] = ()) -> Missing:  # fmt: skip
    """Mark missing the tracks under `roots` whose file is gone: the crawl did not see it and no
    regular file is there any more (nothing, a folder of that name, a FIFO), or it lies under a
    symbolic link the crawl did not follow (`unfollowed`: links out of the scanned folders, which a
    folder of the library may have been replaced by). Not those under `unlisted` folders, which
    could not be listed: their files may well be there, nor those under a root that is an empty
    folder, as an unmounted drive's mount point is: its files are most likely only out of reach
    (whichever root's walk they are under: ``scan lib/drive lib`` keeps those of ``lib/drive``).
    A regular file the walk skipped on purpose (in a hidden folder) keeps its track as it was. A track
    under a name of a file that the scan found under another name (a symbolic link on its way:
    ``merged``; none, a folder reached twice: ``duplicates``) is deleted. The tracks are asked for a
    few hundred roots at a time (`tagger.db.sql.chunks`: one query per root made a scan of 12,000
    files named one by one spend 19 s here)."""
    from tagger.db.queries import delete_tracks

    roots = list(roots)
    seen_files = _Inodes(seen)
    spelling = Spelling()
    seen_folded = {path.casefold() for path in seen}
    unlisted_prefixes = tuple(folder_prefix(f) for f in unlisted)
    gone: dict[int, str] = {}  # by id: roots may hold one another
    merged: dict[int, str] = {}
    duplicates: dict[int, str] = {}
    for part in chunks(list(dict.fromkeys(roots))):
        cond = as_clause(under_any_clause(part, session.get_bind().dialect.name)) & (M.Track.status != M.STATUS_MISSING)
        unseen = [(tid, path) for tid, path in session.execute(select(M.Track.id, M.Track.path).where(cond))
                  if path not in seen and not path.startswith(unlisted_prefixes)]  # fmt: skip
        holding = Roots(part).holding
        # (a name through a link to the file or to a folder on its way, as older taggers stored)
        merged.update((tid, path) for tid, path in unseen if os.path.realpath(path) != path and seen_files.holds(path))
        # (another spelling of a name the scan saw, on a drive that ignores case: one file, whatever
        # inode numbers a FUSE mount gives each spelling)
        duplicates.update((tid, path) for tid, path in unseen if tid not in merged
                          and any(not _hidden_below(path, root) for root in holding(path))
                          and os.path.isfile(path) and (seen_files.holds(path) or (
                              not spelling.as_listed(path) and path.casefold() in seen_folded)))  # fmt: skip
        gone.update((tid, path) for tid, path in unseen if (not spelling.is_file(path) or under_any(path, unfollowed))
                    and tid not in merged and tid not in duplicates)  # fmt: skip
    empty = [root for root in roots if gone and looks_unmounted(root)]
    kept = [(root, k) for root in empty if (k := sum(is_under(path, root) for path in gone.values()))]
    marked = [tid for tid, path in gone.items() if not under_any(path, empty)]
    now = M.utcnow()
    for part in chunks(marked, IN_LIST):
        session.execute(
            update(M.Track)
            .where(M.Track.id.in_(part))
            .values(status=M.STATUS_MISSING, missing_since=now, updated_at=now)
        )
    delete_tracks(session, [*merged, *duplicates])
    session.commit()
    return Missing(marked=len(marked), kept=kept, merged=sorted(merged.values()), duplicates=sorted(duplicates.values()))


def _hidden_below(path: str, root: str) -> bool:
    """Whether a name on the way from folder ``root`` to ``path`` under it is hidden (the walk may
    have skipped it on purpose: such a file keeps its track as it is)."""
    return any(part.startswith(".") for part in path[len(folder_prefix(root)):].split(os.sep))


class _Inodes:
    """The (device, inode) of the files at some paths, read only when first asked."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths, self._ids = paths, None

    def holds(self, path: str) -> bool:
        """True when ``path`` (followed) is one of the files."""
        if self._ids is None:
            self._ids = {ident for p in self._paths if (ident := file_id(p)) is not None}
        return file_id(path) in self._ids

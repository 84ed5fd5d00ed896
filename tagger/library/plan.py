"""Planning a scan (main process): crawl the folders, and for each audio file compare size, mtime
and content fingerprint with the database. Unchanged files are skipped; a new path whose
fingerprint and whole-content hash match a track whose file is gone is a *move* (the row follows
the file; otherwise the file is analysed as new: `origin`); a track stored under a path that leads
through a symbolic link to the file is the file's own (it takes the real path: a library moved, a
link left at its old place); a copy of an analysed file, its whole content the one analysed, gets
a copy of its results (`copied_from`); a stored file that reads as changed but whose audio bytes
hash as they did when it was analysed had only its tags rewritten by another program (Picard,
beets, a backup from before tagger tagged it): it keeps its results without analysis
(`only_tags_changed`), and so does a new file whose audio bytes hash as those of the one track
gone in this scan with that hash, moved and retagged at once (beets' path formats, Picard's
"rename files": `moved_with_new_tags`); tracks from another model version are *stale*. The
moves, copies and touched and retagged files are written through the scan's
`tagger.db.scan_writer.ScanWriter`. Which stored track a file is by its content (`origin`,
`copied_from`, `only_tags_changed`, `moved_with_new_tags`) is decided in `tagger.library.matches`;
the plan reads the files (their fingerprints, `ContentHashes`) and writes what it decides.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, select

from tagger.db import models as M
from tagger.db.filter import under_any_clause
from tagger.db.sql import IN_LIST, as_clause, chunks
from tagger.db.lock import database_files
from tagger.db.scan_writer import FileState, ScanWriter
from tagger.errors import TaggerError, UserError
from tagger.crawl import NON_AUDIO_EXTENSIONS, CrawlReport, crawl, refuse_system_root, system_mounts
from tagger.fingerprint import content_hash, fingerprint
from tagger.library import matches
from tagger.library.matches import (
    NewFile,
    _one_file,
    _same_bytes,
    copied_from,
    file_identity,
    gone_digests,
    moved_with_new_tags,
    only_tags_changed,
    origin,
)
from tagger.library.state import Progress, ScanInterrupted, ScanSummary, StopSignals
from tagger.paths import (
    UNDECODABLE,
    Spelling,
    absolute,
    check_filesystem_encoding,
    check_working_folder,
    escaped_name,
    in_an_empty_folder,
    is_utf8,
)

log = logging.getLogger("tagger.library.scan")


def check_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    """The folders (or files) to scan in canonical form: absolute, every symbolic link resolved, so
    that a library scanned through a link and directly is one library, its tracks stored once.

    Raises `UserError` for a root that does not exist, is neither a folder nor a regular file, lies
    on one of the kernel's file systems (``/proc``: `tagger.crawl.refuse_system_root`), or whose name
    is not valid UTF-8 (the database holds UTF-8 names; checked before a scan creates or locks
    anything), where Python does not read file names as UTF-8 (`check_filesystem_encoding`), and
    where the current folder no longer exists (`check_working_folder`)."""
    check_filesystem_encoding()
    check_working_folder()
    mounts = system_mounts()
    out = []
    for root in roots:
        path = absolute(os.path.expanduser(os.fspath(root)))
        real = os.path.realpath(path)
        if not os.path.exists(real):
            raise UserError(f"no such file or folder: {path}")
        refuse_system_root(path, mounts)
        if not (os.path.isdir(real) or os.path.isfile(real)):
            raise UserError(f"{path}: not a folder nor a regular file")
        if not is_utf8(real):
            raise UserError(f"{real}: the name is not valid UTF-8, which the library database cannot hold; rename it "
                            "to scan it")  # fmt: skip
        if real not in out:
            out.append(real)
    return out


class ContentHashes:
    """The content hashes a scan's planning reads of files with several names (hard links), one per
    file as `os.stat` found it (device, inode, size, mtime, ctime): read once between its names. (A
    file of one name is not kept: a remounted library hashes every file.)"""

    def __init__(self) -> None:
        self._hashes: dict[tuple[int, ...], str | None] = {}

    def of(self, path: str, st: os.stat_result) -> str | None:
        """The content hash of the file ``path``, whose `os.stat` is ``st``; None when it cannot be
        read (its analysis reports it)."""
        if st.st_nlink < 2:
            return _content_hash_or_none(path)
        key = file_identity(st)
        if key not in self._hashes:
            self._hashes[key] = _content_hash_or_none(path)
        return self._hashes[key]


def _content_hash_or_none(path: str) -> str | None:
    try:
        return content_hash(path)
    except TaggerError:
        return None  # unreadable now: the analysis reports it


def plan_files(roots, *, writer: ScanWriter, mv_id: int, rescan_stale: bool, retry_errors: bool, quick: bool,
          include_hidden: bool, progress, t0: float, follow_external_symlinks: bool = False,
          crawled: CrawlReport | None = None, retag: list[FileState] | None = None,
          stop: StopSignals | None = None) -> list[FileState]:  # fmt: skip
    """Crawl and decide per file; moves, copies and touched files are written here. Unchanged
    tracks whose tags do not hold their results are added to `retag` (when given): this model's,
    and stale ones (another model version's, not analysed again), whose stored results go back
    under their own model's name.

    The steps, on a `_Plan` holding what they share: `_stored_rows` (the tracks under the roots),
    `_Plan.file` for each file crawled (`_Plan.fingerprint`, `_Plan.known` for a stored path,
    `_Plan.unknown` for a new one: moved, copied or new), `_Plan.retagged_moves` (new files
    that are gone tracks' files whose tags were rewritten as they moved)."""
    crawled = crawled if crawled is not None else CrawlReport()
    own = database_files(writer.url)  # a database kept in the scanned folder is no music
    plan = _Plan(writer, mv_id=mv_id, rescan_stale=rescan_stale, retry_errors=retry_errors, quick=quick,
                 progress=progress, t0=t0, retag=retag, stop=stop, existing=_stored_rows(writer.session, roots),
                 own=own, own_names={os.path.basename(f) for f in own},
                 named=frozenset(os.fspath(r) for r in roots),
                 unscored=_without_window_scores(writer.session, roots) if rescan_stale else frozenset())  # fmt: skip
    for p in crawl(roots, include_hidden=include_hidden, follow_external_symlinks=follow_external_symlinks,
                   report=crawled):  # fmt: skip
        if os.path.splitext(str(p))[1].lower() in NON_AUDIO_EXTENSIONS:  # (a file given by name: the walk never
            # yields one) is left out, said, not stored as a failed track that no scan of its folder
            # nor `db prune` ever removes (`tagger scan ~/Music/*` naming notes.txt and cover.jpg)
            crawled.not_audio.append(str(p))
            continue
        plan.file(str(p))
    if progress is not None:  # (the reports are 0.2 s apart: the bar closed on the count of the last one,
        # `check: 1file` after checking 25)
        progress(Progress(phase="plan", files_done=plan.summary.found, elapsed=time.monotonic() - t0))
    return plan.retagged_moves(crawled)


ALL_SILENT_ANEW = "every window was under the silence floor, which now follows a quiet recording's own level"
"""Why a track an older decoding stored with every window silent is analysed again (``decoded_anew``)."""


def all_silent(windows: int | None, silent_windows: int | None) -> bool:
    """Whether a track was stored with windows, every one of them silent (not scored)."""
    return bool(windows) and silent_windows == windows


def _stored_rows(s, roots) -> dict[str, tuple]:
    """path -> (id, size, mtime, fingerprint, status, model version id, transient error, tags
    current, content hash, ctime, audio digest, the ctime tagger's own last write left, decoding,
    whether every window was silent) of every
    track stored under ``roots``, asked for a
    few hundred roots at a time (`tagger.db.sql.chunks`: one query per root made a scan of 12,000 files
    named one by one, a shell's ``*.flac``, spend 28 s here where a scan of their folder spent none)."""
    existing: dict[str, tuple] = {}
    for part in chunks(list(dict.fromkeys(roots))):
        cond = as_clause(under_any_clause(part, s.get_bind().dialect.name))
        for row in s.execute(
            select(M.Track.path, M.Track.id, M.Track.size, M.Track.mtime, M.Track.fingerprint, M.Track.status,
                   M.Track.model_version_id, M.Track.error_transient, M.Track.tags_current,
                   M.Track.content_hash, M.Track.ctime_ns, M.Track.audio_digest,
                   M.Track.written_ctime_ns, M.Track.decoding,
                   and_(M.Track.windows > 0, M.Track.silent_windows == M.Track.windows)).where(cond)  # fmt: skip
        ):
            existing[row[0]] = tuple(row[1:])
    return existing


def _without_window_scores(s, roots) -> frozenset[int]:
    """The ids of the analysed tracks under ``roots`` that have no window scores: analysed before the
    database kept them (revision 0003), which only an analysis stores (`tagger scan --rescan-stale`
    redoes them, as it redoes another model version's results; a plain scan keeps them)."""
    has_scores = select(M.WindowScores.track_id).where(M.WindowScores.track_id == M.Track.id).exists()
    ids: set[int] = set()
    for part in chunks(list(dict.fromkeys(roots))):
        cond = as_clause(under_any_clause(part, s.get_bind().dialect.name))
        ids.update(s.scalars(select(M.Track.id).where(cond, M.Track.status == M.STATUS_OK, ~has_scores)))
    return frozenset(ids)


@dataclass
class _Plan:
    """The state `plan_files` shares between its steps: the scan's settings, the stored tracks
    (`existing`, a row dropped once its track moves), the files to analyse (`work`) and the new
    files matched to no track (`fresh`)."""

    writer: ScanWriter
    mv_id: int
    rescan_stale: bool
    retry_errors: bool
    quick: bool
    progress: Callable | None
    t0: float
    retag: list[FileState] | None
    stop: StopSignals | None
    existing: dict[str, tuple]
    own: frozenset[str]
    """The library database's own files (a database kept in the scanned folder is no music)."""
    own_names: set[str]
    """Their names: a file's real path is looked up (a syscall per folder level) only for those."""
    named: frozenset[str] = frozenset()
    """The scan's roots: a new file among them was named (the beets plugin names each item's file),
    and may come from anywhere (`_Plan.gone_elsewhere`)."""
    unscored: frozenset[int] = frozenset()
    """With ``rescan_stale``: the analysed tracks without window scores (`_without_window_scores`),
    analysed again as stale ones are."""
    work: list[FileState] = field(default_factory=list)
    fresh: list[NewFile] = field(default_factory=list)
    """New files matched to no track: analysed unless moved and retagged."""
    last_report: float = 0.0
    spelling: Spelling = field(default_factory=Spelling)
    hashes: ContentHashes = field(default_factory=ContentHashes)

    @property
    def summary(self) -> ScanSummary:
        return self.writer.summary

    def redo(self, track_id: int | None, track_mv: int | None) -> bool:
        """Whether ``rescan_stale`` analyses this track again: another model version's, or one
        analysed before the database kept window scores (a user of a release older than revision
        0003 had no other way to get them: a plain scan keeps an unchanged file's results)."""
        return self.rescan_stale and (track_mv != self.mv_id or track_id in self.unscored)

    def needs_analysis(self, status: str, track_mv: int | None, transient: bool = False, *,
                       track_id: int | None = None) -> bool:  # fmt: skip
        """A failed track is analysed again when asked to (or when its error was transient); a track
        of another model version, or one without window scores, when ``rescan_stale`` (else the
        former is counted stale)."""
        if status == M.STATUS_ERROR:
            return self.retry_errors or transient
        if self.redo(track_id, track_mv):
            return True
        if track_mv != self.mv_id:
            if self.rescan_stale:
                return True
            self.summary.stale += 1
        return False

    def analysed_again(self, path: str, track_id: int, status: str, track_mv: int | None, decoding: int | None,
                       stored_silent: bool, *, transient: bool = False) -> bool:  # fmt: skip
        """Whether a stored track whose file is unchanged (or moved) is analysed: `needs_analysis`, or
        `decoded_otherwise`. A stale track (another model version's) analysed for the latter is
        analysed by this scan's model: not counted stale (was: counted in both, a scan of an
        all-silent track of decoding 2 and another said "1 scanned, 1 skipped unchanged (2 stale)")."""
        stale = self.summary.stale
        if self.needs_analysis(status, track_mv, transient, track_id=track_id):
            return True
        if self.decoded_otherwise(path, track_id, status, decoding, stored_silent):
            self.summary.stale = stale
            return True
        return False

    def decoded_otherwise(self, path: str, track_id: int, status: str, decoding: int | None,
                          stored_silent: bool = False) -> bool:  # fmt: skip
        """Whether the analysed file of a track an older tagger's decoding analysed (``decoding``
        NULL, before revision 0012, or less than `tagger.audio.joined.DECODING`) is read otherwise
        now: analysed again, once, and said (``summary.decoded_anew``). A track stored with every
        window silent (``stored_silent``: the stored window counts decide, the file is not opened) is
        a recording under the silence floor throughout that is now analysed under a floor of its
        own (was: kept with no instruments for ever, its file unchanged). A track of a decoding
        before `JOINED_DECODING` whose file `decoded_otherwise` names (files joined byte-wise,
        ``cat a.flac b.flac``, of which it decoded the first alone, its results those of the first
        part) too; another such track is recorded as of this decoding, so that its file is looked at
        once (the bytes of a FLAC read once: a library's first scan after the upgrade reads them all;
        was: such results kept for ever, the file unchanged). A track of a later decoding not all
        silent is read alike: left as it is, its file not read again."""
        from tagger.audio.joined import DECODING, JOINED_DECODING, decoded_otherwise  # (tagger.audio: numpy, soundfile)

        if status != M.STATUS_OK or (decoding or 0) >= DECODING:
            return False
        if stored_silent:
            self.summary.decoded_anew.append((path, ALL_SILENT_ANEW))
            return True
        if (decoding or 0) >= JOINED_DECODING:
            return False
        try:
            why = decoded_otherwise(Path(path))
        except Exception as exc:  # (a file no check foresaw: kept as it is, looked at again by the next scan)
            log.debug("could not look at %s for an older decoding: %r", path, exc)
            return False
        if why:
            self.summary.decoded_anew.append((path, f"an older tagger analysed it in part ({why})"))
            return True
        self.writer.decoding_checked(track_id, DECODING)
        return False

    def file(self, path: str) -> None:
        """Decide one crawled file: the database's own file is passed over, a name that is not
        UTF-8 recorded as such, a file that cannot be stat-ed or fingerprinted stored as a transient
        error; then `known` (a stored path, or one a stored track leads to through a link) or
        `unknown`."""
        if self.stop is not None and self.stop.requested:
            raise ScanInterrupted(self.stop.signum, 0)
        writer = self.writer
        writer.maybe_commit()  # (a write of the plan holds SQLite's write lock: never for long)
        if os.path.basename(path) in self.own_names and os.path.realpath(path) in self.own:
            log.debug("not scanning %s: it is the library database's own file", path)
            return
        shown = storable(path)
        self.summary.found += 1
        if shown not in self.existing and not writer.path_fits(shown):
            self.summary.failed += 1
            self.summary.errors.append((shown, f"{TOO_LONG} ({len(shown.encode('utf-8', 'surrogateescape')):,} bytes): "
                                               "nothing is stored for it; move it to a shorter path to analyse it"))
            return
        if shown != path:
            _undecodable_name(writer, path, shown, self.existing.get(shown))
            return
        writer.seen.add(path)
        if self.progress is not None and time.monotonic() - self.last_report > 0.2:
            self.last_report = time.monotonic()
            self.progress(Progress(phase="plan", files_done=self.summary.found, elapsed=time.monotonic() - self.t0))
        try:
            st = os.stat(path)
        except OSError as exc:
            w = FileState(path, 0, 0.0, "", self.existing.get(path, (None,))[0])
            writer.store_error(w, {}, f"cannot stat file: {exc.strerror or exc}", transient=True)
            return
        row = self.existing.get(path)
        fp = self.fingerprint(path, st, row)
        if fp is None:
            return
        digest = functools.cache(functools.partial(self.hashes.of, path, st))  # read once, if at all
        candidates = [] if row is not None else writer.session.scalars(
            select(M.Track).where(M.Track.fingerprint == fp, M.Track.size == st.st_size, M.Track.path != path)
            .order_by(M.Track.id)
        ).all()  # fmt: skip
        # A track stored under a path that leads through a symbolic link to this very file (a library
        # moved to another disk, a link left at its old place) is this file's own: its row takes the
        # file's real name, results and all, and is then checked as any stored file is.
        twin = next((t for t in candidates if os.path.realpath(t.path) == path), None)
        # So is one stored under another name of it with no link on the way, a name this scan did not
        # reach: a folder mounted at two places, each name scanned by a scan of its own (was: a copy
        # under each name, each rewrite through one name then "changed since it was analysed" to the
        # other). One name only: a hard link's other name is another file to a tag write.
        mounted = twin is None and st.st_nlink == 1
        if mounted:
            twin = next((t for t in candidates if t.path not in writer.seen and os.path.realpath(t.path) == t.path
                         and _one_file(t.path, st)), None)  # fmt: skip
        if twin is not None:
            self.existing.pop(twin.path, None)
            writer.relinked(twin, path=path, mounted=mounted)
            row = self.existing[path] = (twin.id, twin.size, twin.mtime, twin.fingerprint, twin.status,
                                         twin.model_version_id, twin.error_transient, twin.tags_current,
                                         twin.content_hash, twin.ctime_ns, twin.audio_digest,
                                         twin.written_ctime_ns, twin.decoding,
                                         all_silent(twin.windows, twin.silent_windows))  # fmt: skip
        if row is not None:
            self.known(path, st, fp, row, digest)
        else:
            self.unknown(path, st, fp, candidates, digest)

    def fingerprint(self, path: str, st: os.stat_result, row: tuple | None) -> str | None:
        """The file's content fingerprint: the stored one with ``quick`` when size, mtime and ctime
        are those stored; None when it cannot be read now (stored as a transient error)."""
        size, mtime = st.st_size, st.st_mtime
        try:
            if (self.quick and row is not None and row[1] == size and row[2] == mtime and row[4] != M.STATUS_MISSING
                    and row[9] in (None, st.st_ctime_ns)):  # (another ctime: written, renamed or copied here since)
                return row[3]
            return fingerprint(path)
        except TaggerError as exc:
            # cannot read it now (a failing drive): cheap to try again; the results stored for it stay
            # while its size and mtime are those they were made from (a changed file's would be wrong)
            as_stored = row is not None and (row[1], row[2]) == (size, mtime)
            self.writer.store_error(FileState(path, size, mtime, "", row[0] if row else None), {},
                                    getattr(exc, "reason", str(exc)), transient=True, keep_results=as_stored)  # fmt: skip
            return None

    def known(self, path: str, st: os.stat_result, fp: str, row: tuple, digest) -> None:
        """A stored path: unchanged (skipped, or analysed when failed or stale and asked to),
        touched (its new mtime and ctime recorded), only its tags rewritten (its results kept), or
        other bytes (analysed)."""
        writer, mtime = self.writer, st.st_mtime
        (track_id, old_size, old_mtime, old_fp, status, track_mv, transient, tags_current, old_hash, old_ctime,
         old_audio, written_ctime, decoding, silent) = row  # fmt: skip
        same = old_size == st.st_size and old_fp == fp
        # Another ctime: the file was renamed, copied or written here since (its mtime may have
        # been set back: two stems of one archive swapped by name), or only chmod-ed.
        touched = same and (old_mtime != mtime or status == M.STATUS_MISSING
                            or (old_ctime is not None and old_ctime != st.st_ctime_ns))  # fmt: skip
        if same and touched and _same_bytes(digest, old_hash):
            status = writer.touched(track_id, mtime=mtime, ctime_ns=st.st_ctime_ns)
        elif same and not touched:
            if old_ctime is None:
                writer.known_ctime(track_id, st.st_ctime_ns)
        else:  # other bytes (maybe where the fingerprint does not read): other audio, or only other tags
            # (only where the results would be kept: a stale track a scan with rescan_stale
            # analyses again keeps nothing, and its digest would be read for nothing)
            keeps = status == M.STATUS_OK and not self.redo(track_id, track_mv)
            whole = only_tags_changed(path, st, old_audio, digest) if keeps else None
            if whole is None:
                self.work.append(FileState.of(path, st, fp, track_id))
                return
            writer.retagged(track_id, FileState.of(path, st, fp, track_id), content_hash=whole)
            tags_current = False
        if self.analysed_again(path, track_id, status, track_mv, decoding, bool(silent), transient=transient):
            self.work.append(FileState.of(path, st, fp, track_id))
        else:
            self.summary.skipped += 1
            # (a stale track's too, another model version's: its stored results, under that model's name)
            if self.retag is not None and status == M.STATUS_OK and track_mv is not None and not tags_current:
                # (a file exactly as tagger's own last write left it, `tagger untag`'s: not waited for)
                own = same and not touched and old_ctime is not None and written_ctime == old_ctime
                self.retag.append(dataclasses.replace(FileState.of(path, st, fp, track_id), own_write=own))

    def unknown(self, path: str, st: os.stat_result, fp: str, candidates: list[M.Track], digest) -> None:
        """A path the database does not know: moved (a gone track's file: `origin`), copied (an
        analysed file's copy: `copied_from`) or new."""
        # A transient error belongs to the old file's read, not to its content: it never follows a
        # moved or copied file (that file is analysed as new; the old row goes missing).
        # (a name renamed in case only still opens the file on a drive that ignores case: gone all the same)
        gone = [t for t in candidates if (t.status == M.STATUS_MISSING or not os.path.exists(t.path)
                                          or not self.spelling.as_listed(t.path))
                and not (t.error and t.error_transient)]  # fmt: skip
        track = origin(path, gone, digest=digest)
        if track is not None:
            old_path = track.path
            self.writer.moved(track, path=path, mtime=st.st_mtime, ctime_ns=st.st_ctime_ns)
            self.existing.pop(old_path, None)
            log.debug("moved: %s -> %s", old_path, path)
            if self.analysed_again(path, track.id, track.status, track.model_version_id, track.decoding,
                                   all_silent(track.windows, track.silent_windows)):  # fmt: skip
                self.work.append(FileState.of(path, st, fp, track.id))
            else:
                self.summary.skipped += 1
                if (self.retag is not None and track.status == M.STATUS_OK and track.model_version_id is not None
                        and not track.tags_current):  # fmt: skip
                    self.retag.append(FileState.of(path, st, fp, track.id))
            return
        # A copy gets its original's results only when its whole content is the one they were made
        # from: files that differ outside the fingerprint's three chunks are different audio.
        done = [t for t in candidates if t.status == M.STATUS_OK and t.model_version_id == self.mv_id]
        src = copied_from(done, path, st=st, digest=digest) if done else None
        if src is not None:
            dst = self.writer.copied(src, FileState.of(path, st, fp, None))
            if self.retag is not None and not dst.tags_current:
                self.retag.append(FileState.of(path, st, fp, None))
            return
        self.work.append(FileState.of(path, st, fp, None))
        self.fresh.append(NewFile(path, st, fp, digest))

    def gone_elsewhere(self, digest_of: Callable[[str], str | None]) -> dict[int, tuple[str, str]]:
        """`gone_digests` for the new files named as roots (the beets plugin's items, `tagger scan
        FILE`), from the whole database: such a file was moved from wherever its old name was (beets'
        ``modify`` and ``update`` rename and retag a file at once, into another artist's folder), not
        from under the scanned folders, which are the file itself. Only the tracks stored with the
        audio digest of one of them, whose file is gone, and not from a drive not mounted: a track
        whose nearest folder still there is empty (`tagger.paths.in_an_empty_folder`) is away, not gone, and
        stays where it is, as the tracks under a scanned folder found empty do. Each named new
        file's digest is read (``digest_of``: once, `moved_with_new_tags` reads it there)."""
        named = dict.fromkeys(f.path for f in self.fresh if f.path in self.named)
        if named and self.writer.dirty:  # (the reads may be long: no write lock held through them)
            self.writer.commit()
        for path in named:
            if self.stop is not None and self.stop.requested:
                raise ScanInterrupted(self.stop.signum, 0)
            named[path] = digest_of(path)
        wanted = {d for d in named.values() if d}
        if not wanted:
            return {}
        wanted = sorted(wanted)
        rows = [row for part in chunks(wanted, IN_LIST)  # (a bound value each: SQLite's limit)
                for row in self.writer.session.execute(select(M.Track.id, M.Track.path, M.Track.audio_digest)
                                                       .where(M.Track.audio_digest.in_(part)))]  # fmt: skip
        away = functools.cache(in_an_empty_folder)
        return {track_id: (path, digest) for track_id, path, digest in rows
                if path not in self.writer.seen and path not in named and not self.spelling.is_file(path)
                and not away(os.path.dirname(path))}  # fmt: skip

    def retagged_moves(self, crawled: CrawlReport) -> list[FileState]:
        """The files to analyse, less the new files that are gone tracks' files whose tags another
        program rewrote as it moved them: a move (results, model version), with their new file facts
        recorded as a retag's are."""
        gone = gone_digests(self.existing, seen=self.writer.seen, unlisted=[f for f, _ in crawled.unreadable],
                            spelling=self.spelling) if self.fresh else {}  # fmt: skip
        digest_of = functools.cache(matches._audio_digest_or_none)  # (a named file's digest is read once)
        gone.update(self.gone_elsewhere(digest_of))
        if not gone:
            return self.work
        writer = self.writer
        instead: dict[str, FileState | None] = {}
        if writer.dirty:  # (the digests' reads may be long: no write lock held through them)
            writer.commit()
        for found in moved_with_new_tags(self.fresh, gone, stop=self.stop, digest_of=digest_of):
            writer.maybe_commit()
            track = writer.session.get(M.Track, found.track_id)
            if track.error or track.status not in (M.STATUS_OK, M.STATUS_MISSING) or track.model_version_id is None:
                continue  # no results to take (a failed file): analysed as new
            new, old_path = found.file, track.path
            file = FileState.of(new.path, new.st, new.fingerprint, track.id)
            writer.moved(track, path=new.path, mtime=new.st.st_mtime, ctime_ns=new.st.st_ctime_ns)
            self.existing.pop(old_path, None)
            log.debug("moved and retagged: %s -> %s", old_path, new.path)
            if self.needs_analysis(track.status, track.model_version_id, track_id=track.id):
                instead[new.path] = file  # (stale, with rescan_stale: the row follows, its results are redone)
            else:
                writer.retagged(track.id, file, content_hash=found.content_hash)
                instead[new.path] = None
                self.summary.skipped += 1
                if self.retag is not None:  # (a stale track's too: `_Plan.known`)
                    self.retag.append(file)
        return [kept for w in self.work if (kept := instead.get(w.path, w)) is not None]


TOO_LONG = "the path is too long for the database to index"
"""How the error of a file whose path PostgreSQL cannot store begins (`ScanWriter.path_fits`)."""


def _undecodable_name(writer: ScanWriter, path: str, shown: str, row: tuple | None) -> None:
    """Record a file whose name is not valid UTF-8 as an error under its escaped name ``shown``
    (`storable`), unless that is also the exact name of a file, or of a track holding results
    (``row``, the database's row of that path): a file may be named with a real backslash,
    ``a\\xff.flac``, and that file's row is its own. Then the error is only reported (failed, in the
    summary's errors) and nothing is stored for it."""
    rename = undecodable_rename(path)
    if os.path.lexists(shown) or (row is not None and row[5] is not None):
        writer.summary.failed += 1
        writer.summary.errors.append((shown, f"{UNDECODABLE}, which "
                                             f"spell the name of another file: nothing is stored for this one); {rename}"))
        return
    writer.seen.add(shown)
    writer.store_error(FileState(shown, 0, 0.0, "", row[0] if row else None), {}, f"{UNDECODABLE}); {rename}")


def undecodable_rename(path: str) -> str:
    """What to rename so that the file at ``path``, whose path is not valid UTF-8, can be analysed: the
    file, or the outermost folder whose name holds the bytes (a beets item in such a folder was told
    to rename the file, as `tagger.library.files.analyse_files` said it)."""
    folder, name = os.path.split(path)
    return ("rename the file to analyse it" if not is_utf8(name) else  # (else a folder above it holds the bytes)
            f"the bytes are in the name of its folder {escaped_name(_undecodable_folder(folder))}: "
            "rename that folder to analyse the files in it")  # fmt: skip


def _undecodable_folder(folder: str) -> str:
    """The outermost folder of ``folder`` whose own name is not valid UTF-8 (the one to rename)."""
    parts = folder.split(os.sep)
    for i, part in enumerate(parts):
        if not is_utf8(part):
            return os.sep.join(parts[: i + 1])
    return folder


def defer_unsettled(work: list[FileState], settle_seconds: float, summary: ScanSummary) -> list[FileState]:
    """The files to analyse (or to tag) now: those modified less than ``settle_seconds`` ago are left
    out (nothing is stored for them, so the next scan finds them new or changed and analyses them),
    but for a file exactly as tagger's own last write left it (`FileState.own_write`). One left out
    is not said to be analysed again for an older decoding (``summary.decoded_anew``): the scan
    that analyses it says so (was: said by every scan until it settled, nothing analysed)."""
    from tagger.tags import unsettled_reason

    if settle_seconds <= 0:
        return work
    now = time.time()
    kept = []
    for w in work:
        reason = None if w.own_write else unsettled_reason(w.mtime, settle_seconds, now=now)
        if reason is None:
            kept.append(w)
        else:
            summary.deferred.append((w.path, reason))
    left = {w.path for w in work} - {w.path for w in kept}
    if left and summary.decoded_anew:
        summary.decoded_anew[:] = [(p, why) for p, why in summary.decoded_anew if p not in left]
    return kept


def storable(path: str) -> str:
    """`path` as the database can hold it (`tagger.paths.escaped_name`: a name that is not valid UTF-8
    gets ``\\xNN`` escapes, a literal backslash is left as it is, so a valid name can spell the same:
    `_undecodable_name`)."""
    return escaped_name(path)


def after_crawl(crawled: CrawlReport, summary: ScanSummary, *, keep_temp_files: bool = False) -> None:
    """Report the folders that could not be listed; delete temp files of killed tag writes, or with
    `keep_temp_files` (a dry run, which changes no file) only list them in ``summary.temp_files``."""
    from tagger.tags import remove_stale_temp_files

    for folder, reason in crawled.unreadable:  # (under their own names, as `tagger.display.named` shows them)
        summary.errors.append((folder, f"cannot list the folder: {reason}; its files were left as they are"))
    if keep_temp_files:  # (one a scan would keep, not delete, is not listed for removal: was `would remove` it)
        from tagger.tags.leftovers import kept_not_removed

        for path in crawled.temp_files:
            if not kept_not_removed(path):
                summary.temp_files.append(path)
            else:
                log.warning("%s: left by a tag write that was killed, and not tagger's copy nor the file it replaced "
                            "(another program's save?): a scan keeps it as NAME.tagger-kept-XXXXXXXX~", path)  # fmt: skip
        return
    for path in remove_stale_temp_files(crawled.temp_files):
        log.info("removed %s, left over by an interrupted tag write", path)
        summary.temp_files.append(path)

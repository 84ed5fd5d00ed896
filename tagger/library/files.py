"""Analyse a given list of files through the scan and read back each file's stored result.

For callers that hold their own list of files (the beets plugin, ``beetsplug/instruments.py``):
the files go through `tagger.library.scan.scan` (same models, same incremental database keyed by
file: a file already analysed and unchanged is not analysed again), then each file's result is
read from the database. A file that is missing or could not be analysed gets its reason as a
value; nothing here raises for one bad file. A result is given to its file only while the file is
still the one it was made from (`changed_since_analysis`), and another program's tag write (beets'
``try_write``) goes through `rewrite_tags`, which records the rewritten file as unchanged only when
nothing but its tags changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from tagger.db import models as M
from tagger.db.sql import IN_LIST, chunks
from tagger.db.listing import StoredResults
from tagger.db.session import Database
from tagger.errors import TaggerError
from tagger.library.matches import file_identity
from tagger.library.plan import storable, undecodable_rename
from tagger.paths import absolute, check_filesystem_encoding, check_working_folder, is_kept_name, is_temp_name
from tagger.library.scan import Analyser, ScanSummary, scan


@dataclass
class FileResult:
    """What the database holds about one file after `analyse_files`."""

    path: str
    """The file's real path (where the database holds it), or the path given when it has no result."""
    instruments: list[str] = field(default_factory=list)
    """The families present, in canonical order (empty when none was found, or on error)."""
    model_version: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    """Each family's score (empty on error)."""
    error: str | None = None
    """Why the file has no result (unreadable, missing, ...); None when it has one."""
    analysed: bool = False
    """True when this call analysed it (False: its stored result was reused)."""
    stale: bool = False
    """Its results were made by another model version than this call's (its version name, or the
    same name with another manifest: recalibrated), reused without ``rescan_stale``."""
    stored: StoredResults | None = None
    """Which stored results these are, and the size, mtime and fingerprint of the file they were
    made from (`changed_since_analysis`, `rewrite_tags`); None on error."""

    @property
    def ok(self) -> bool:
        return self.error is None


def analyse_files(
    paths: Iterable[str | os.PathLike],
    *,
    db: Database,
    analyser: Analyser,
    jobs: int | None = None,
    rescan_stale: bool = False,
    retry_errors: bool = False,
) -> tuple[ScanSummary | None, dict[str, FileResult]]:
    """Scan `paths` (files) into `db` and return the scan's summary (None when no file exists)
    and each file's `FileResult`, keyed by its absolute path as given (a path through symbolic
    links, say a beets library reached through a link, gets the result of the file it leads to,
    which the scan stores under its real path: `FileResult.path`). Raises `UserError` where Python
    does not read file names as UTF-8 (`tagger.paths.check_filesystem_encoding`) or the current folder
    no longer exists (`tagger.paths.check_working_folder`)."""
    check_filesystem_encoding()
    check_working_folder()
    wanted = [absolute(os.path.expanduser(os.fspath(p))) for p in paths]
    results: dict[str, FileResult] = {}
    present: dict[str, str] = {}  # given path -> its real path (the scan stores a file under it)
    for p in dict.fromkeys(wanted):
        real = os.path.realpath(p)
        if not os.path.isfile(p):
            results[p] = FileResult(p, error=_not_a_file(p))
        elif is_kept_name(os.path.basename(p)):  # (beets imported it before the plugin left such files out)
            results[p] = FileResult(p, error="a file a tagger tag write kept (another program's save, or the file "
                                             "before the write), not a track: not analysed nor written; it is yours to "
                                             "look at, then rename or remove")  # fmt: skip
        elif is_temp_name(os.path.basename(p)):  # (beets imported it with `ignore` and `ignore_hidden` off)
            results[p] = FileResult(p, error="the hidden copy of a tagger tag write (left by a write that was killed), "
                                             "not a track: not analysed nor written; the next tagger scan, tag or untag "
                                             "of its folder removes it")  # fmt: skip
        elif storable(real) != real:  # (the database holds UTF-8 text)
            results[p] = FileResult(p, error=f"the file name is not valid UTF-8 ({storable(real)}, with \\x escapes); "
                                             f"{undecodable_rename(real)}")  # fmt: skip
        else:
            present[p] = real
    summary = None
    if present:
        summary = scan(list(present), db=db, analyser=analyser, jobs=jobs, rescan_stale=rescan_stale,
                       retry_errors=retry_errors)  # fmt: skip
    found: dict[str, FileResult] = {}
    reals = list(dict.fromkeys(present.values()))
    with db.session() as s:
        scan_row = s.get(M.Scan, summary.scan_id) if summary else None
        started, model = (scan_row.started_at, scan_row.model_version_id) if scan_row else (None, None)
        for chunk in chunks(reals, IN_LIST):
            tracks = s.scalars(select(M.Track).where(M.Track.path.in_(chunk)).options(selectinload(M.Track.detections)))
            for t in tracks:
                found[t.path] = _result(t, since=started, model=model)
    for p, real in present.items():
        results[p] = found.get(real) or FileResult(p, error="not analysed (not an audio file?)")
    return summary, results


def _not_a_file(path: str) -> str:
    """Why ``path``, no regular file, cannot be analysed (was "no such file" of anything there: a folder
    or a FIFO put at an item's path, a file behind a folder that cannot be entered)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return "is a folder, not a file" if stat.S_ISDIR(st.st_mode) else "not a regular file"


def _result(track: M.Track, *, since, model: int | None) -> FileResult:
    analysed = since is not None and track.analysed_at is not None and track.analysed_at >= since
    if track.status != M.STATUS_OK:
        return FileResult(track.path, error=track.error or track.status, analysed=analysed)
    return FileResult(
        track.path,
        instruments=[d.family for d in track.detections if d.present],  # stored in the model's (canonical) order
        model_version=track.model_version.version if track.model_version else None,
        scores={d.family: d.score for d in track.detections},
        analysed=analysed,
        stale=model is not None and track.model_version_id != model,
        stored=StoredResults(track.id, track.model_version_id, track.scan_id, track.analysed_at, track.size,
                             track.mtime, track.fingerprint, content_hash=track.content_hash,
                             ctime_ns=track.ctime_ns),  # fmt: skip
    )


CHANGED = "changed since it was analysed (rewritten or replaced by another program); analyse it again"


def changed_since_analysis(result: FileResult) -> str | None:
    """Why the file of ``result`` is no longer the file its results were made from (another size,
    mtime or content fingerprint than the stored ones: rewritten or replaced since), or None when it
    still is. Results of a file changed since must not be given to it, nor written into it."""
    return _check(result, audio=False)[0]


@dataclass(frozen=True)
class Rewrite:
    """What `rewrite_tags` did."""

    written: bool
    """The write rewrote the file."""
    problem: str | None = None
    """Why the file was not written, or its rewrite not recorded (then the next scan analyses it
    again); None when all went well."""


def rewrite_tags(db: Database, result: FileResult, write: Callable[[], bool]) -> Rewrite:
    """Let another program's tag write rewrite the file of ``result`` (``write``, e.g. beets'
    ``Item.try_write``: True when it wrote the file), then record the file's new size, mtime,
    fingerprint and content hash in ``db`` (`tagger.db.writes.record_rewrite`), so that the next scan
    sees it unchanged, only when the write changed nothing but tags: the file must still be the one
    its results were made from (checked before: otherwise ``write`` is not called) and the bytes
    carrying its audio must hash the same after the write as before (`tagger.tags.audio_digest`).
    Otherwise nothing is recorded and the next scan analyses the file again (without a warning in
    a format whose audio bytes cannot be told from its tags: one tagger does not tag). Once recorded,
    ``result`` holds the file's new facts."""
    from tagger.db import writes

    reason, before = _check(result, audio=True)
    if reason is not None:
        return Rewrite(False, reason)
    if not write():
        return Rewrite(False)
    if before is None:  # a format tagger does not tag: the next scan analyses it again (once)
        return Rewrite(True)
    real = os.path.realpath(result.path)
    again = "not recorded, so the next scan analyses it again"
    try:
        st = os.stat(real)
        if _audio_digest(real) != before:
            return Rewrite(True, f"tags written, but its audio changed while its tags were written (another "
                                 f"program?): {again}")  # fmt: skip
        with db.session() as s:
            recorded = writes.record_rewrite(s, path=real, size=st.st_size, mtime=st.st_mtime, written=result.stored,
                                             ctime_ns=st.st_ctime_ns, audio_digest=before)
            if recorded is writes.Recorded.FILE:  # the same results, for the file as it is now (another item
                s.flush()  # of the same file, through a link, is checked against these)
                fp, whole, ctime_ns = s.execute(select(M.Track.fingerprint, M.Track.content_hash, M.Track.ctime_ns)
                                                .where(M.Track.id == result.stored.track_id)).one()  # fmt: skip
                result.stored = replace(result.stored, size=st.st_size, mtime=st.st_mtime, fingerprint=fp,
                                        content_hash=whole, ctime_ns=ctime_ns)  # fmt: skip
    except OSError as exc:
        return Rewrite(True, f"tags written, but the file cannot be read back: {exc.strerror or exc}; {again}")
    except TaggerError as exc:
        return Rewrite(True, f"tags written, but the file cannot be read back: {getattr(exc, 'reason', exc)}; {again}")
    if recorded is writes.Recorded.NOT_CURRENT:
        return Rewrite(True, "tags written, but a scan stored new results for it meanwhile: the next run writes those")
    if recorded is not writes.Recorded.FILE:
        return Rewrite(True, f"tags written, but the file changed right after: {again}")
    return Rewrite(True)


def _audio_digest(path: str) -> str | None:
    """`tagger.tags.audio_digest_or_none` (imported when first needed; looked up here, where the
    tests count this module's reads)."""
    from tagger.tags import audio_digest_or_none

    return audio_digest_or_none(path)


def _check(result: FileResult, *, audio: bool) -> tuple[str | None, str | None]:
    """(why the file of ``result`` is not the one its results were made from, or None; with
    ``audio``, the hash of its audio bytes, read while it was that file). One stat before and one
    after every read: a file swapped meanwhile is not taken for the one that was read. A file whose
    ctime is not the stored one (written over in place with its mtime set back, renamed or copied
    there) must hash whole to the stored content hash, where one is known, as for `tagger tag`
    (`tagger.tags.rewrite`): the fingerprint cannot tell it from one that differs only where it does
    not read."""
    from tagger.fingerprint import content_hash, fingerprint

    stored = result.stored
    if stored is None:
        return "no stored results", None
    real = os.path.realpath(result.path)
    try:
        st = os.stat(real)
        if (st.st_size, st.st_mtime) != (stored.size, stored.mtime) or fingerprint(real) != stored.fingerprint:
            return CHANGED, None
        other_ctime = stored.ctime_ns is not None and st.st_ctime_ns != stored.ctime_ns
        if other_ctime and stored.content_hash is not None and content_hash(real) != stored.content_hash:
            return CHANGED, None
        digest = _audio_digest(real) if audio else None
        now = os.stat(real)
    except OSError as exc:
        return f"cannot stat file: {exc.strerror or exc}", None
    except TaggerError as exc:
        return getattr(exc, "reason", str(exc)), None
    # (the ctime too: a file written over in place meanwhile, its mtime set back, keeps the rest)
    if file_identity(now) != file_identity(st):
        return CHANGED, None
    return None, digest

"""The library database's results written into the files (`tag_from_database`, `tagger tag`
without ``--from-json``), each write recorded in the database around it.

The tracks a filter selects are read as predictions (`tagger.tags.batch.predictions_from_database`)
and written as any predictions are (`tagger.tags.batch.write_predictions`); what this adds is the
database's part: a run that stopped at a rename recovered (`_recover_stopped_runs`), the copy's
hash recorded before it replaces its file, the track read again just before its write, the file's
new facts recorded after it (`_DatabaseWrites`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tagger.errors import TaggerError, TagWriteError, UserError
from tagger.paths import check_filesystem_encoding
from tagger.tags import batch  # (predictions_from_database called through it, where callers and tests replace it)
from tagger.tags.batch import Prediction, write_predictions
from tagger.tags.fields import TagChange

if TYPE_CHECKING:
    from tagger.db.filter import TrackFilter
    from tagger.db.lock import WrittenFile


def tag_from_database(
    database,
    *,
    where: TrackFilter | None = None,
    scores: bool = False,
    id3v23: bool = False,
    keep_mtime: bool = False,
    dry_run: bool = False,
    settle_seconds: float = 0.0,
    follow_external_symlinks: bool = False,
    stop: Callable[[], bool] | None = None,
    models: Collection[str] | None = None,
) -> Iterator[TagChange | TagWriteError]:
    """Write the stored results of the library database (a `tagger.db.session.Database`) into the
    files, without re-analysis, recording each rewritten file's new size/mtime/fingerprint
    (`tagger.db.writes.record_rewrite`). A file changed since it was analysed in its tags alone (its
    audio digest the stored one: `tagger untag`, another program's tag edit) is written too, and its
    new facts recorded even where its tags already hold the results (its `TagChange` says
    ``retagged``); other changed files are refused (`ChangedSinceError`: scan them again).
    ``where``: which tracks (a `tagger.db.filter.TrackFilter`, e.g. ``TrackFilter.of(paths=[folder])``;
    None: every track).
    Each copy's content hash is recorded before it replaces its file (`tagger.db.writes.record_pending`):
    a file a run stopped at before recording its new facts (``kill -9``) is recognised by the next
    run when it is still byte for byte that copy (`tagger.db.writes.recover_rewrite`), not refused.
    A file whose track a scan gave new results while its old ones were written (a scan of another
    model) yields its `TagChange` and a `TagWriteError` saying so: its tags are not recorded as
    current, so the next scan writes the new results.

    Writes stay inside the filter's paths (or, when none are given, the folders the database's
    scans were given): a file reached through a symbolic link pointing elsewhere is skipped unless
    ``follow_external_symlinks``. ``stop()``: asked before each file (`write_predictions`); each file
    written before it is recorded. ``models``: the model versions known to be tagger's
    (`write_instruments`' ``models``; None: any).

    The steps: `_selected_tracks` (read), `_recover_stopped_runs` (when a run stopped at a rename),
    `write_predictions` with `_DatabaseWrites` recording around each write."""
    from tagger.db.filter import TrackFilter

    check_filesystem_encoding()
    if where is None:
        where = TrackFilter()
    predictions, roots = _selected_tracks(database, where)
    if any(p.stored is not None and p.stored.rewrite_hash for p in predictions):  # a run stopped at a rename
        predictions = _recover_stopped_runs(database, predictions, dry_run=dry_run,
                                            inside=None if follow_external_symlinks else roots)  # fmt: skip
    run = _DatabaseWrites(database, where, dry_run=dry_run, read={p.path: p.stored for p in predictions})
    results = write_predictions(
        predictions, scores=scores, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run,
        settle_seconds=settle_seconds, roots=roots, follow_external_symlinks=follow_external_symlinks,
        before_replace=run.pending, refresh=run.refresh, stop=stop, models=models,
    )  # fmt: skip
    for result in results:
        yield from _told_whole(result, run.record(result))


def _selected_tracks(database, where: TrackFilter) -> tuple[list[Prediction], list[str]]:
    """The tracks ``where`` selects, as predictions, and the folders the writes must stay in (the
    filter's paths, or the folders the database's scans were given); `UserError` when paths were
    given and no analysed track lies under them."""
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.db import queries
    from tagger.db.session import database_error

    try:
        with database.session() as session:
            predictions = batch.predictions_from_database(session, where=where)
            roots = list(where.paths) or queries.scanned_roots(session)
            only_paths = where.paths_alone
            failed = queries.failed_under(session, where.paths) if where.paths and only_paths and not predictions else []
    except SQLAlchemyError as exc:
        raise database_error(database.url, exc, doing="read", then="no file was changed") from None
    if failed:  # (it said "scan it first" of a file scanned and found unreadable)
        from tagger.display import named

        path, error = failed[0]
        which = f"{named(path)} could not be analysed: {error}" if len(failed) == 1 else \
            f"{len(failed)} files there could not be analysed (`tagger errors` says why)"
        raise UserError(f"no analysed track under {', '.join(where.shown_paths)}: {which}; `tagger scan "
                        "--retry-errors` tries again")  # fmt: skip
    if where.paths and not predictions and only_paths and all(_named_no_audio(p) for p in where.shown_paths):
        from tagger.display import named

        # (it said "scan it first" of `tagger tag notes.txt`, which the scan leaves out: f316081)
        said = "; ".join(f"{named(p)}: not an audio file (its name says so: {os.path.splitext(p)[1].lower()})"
                         for p in where.shown_paths)  # fmt: skip
        raise UserError(f"no analysed track under {', '.join(where.shown_paths)}: {said}, which no scan stores")
    if where.paths and not predictions:
        raise UserError(f"no analysed track matches under {', '.join(where.shown_paths)}: scan it first "
                        "(or check the filter)")  # fmt: skip
    return predictions, roots


def _named_no_audio(path: str) -> bool:
    """``path`` is a file whose name says it holds no audio (`tagger.crawl.NON_AUDIO_EXTENSIONS`),
    which a scan given it leaves out (`tagger scan ~/Music/*` naming notes.txt, `tagger.library.plan`)."""
    from tagger.crawl import NON_AUDIO_EXTENSIONS

    return os.path.splitext(path)[1].lower() in NON_AUDIO_EXTENSIONS and os.path.isfile(path)


def _recover_stopped_runs(database, predictions: list[Prediction], *, dry_run: bool,
                          inside: list | None) -> list[Prediction]:  # fmt: skip
    """``predictions``, each file that an earlier run moved its copy over before it stopped taking its
    facts now (`_recovered`)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.db.session import database_error

    try:
        with database.session() as session:
            return [_recovered(session, p, dry_run=dry_run, inside=inside) for p in predictions]
    except SQLAlchemyError as exc:
        raise database_error(database.url, exc, doing="write", then="no file was changed") from None


@dataclass
class _DatabaseWrites:
    """What `tag_from_database` records around each write: the copy's hash before it replaces its
    file (`pending`), the track as it stands just before the write (`refresh`), the file's new facts
    after it (`record`)."""

    database: object
    where: TrackFilter
    dry_run: bool
    read: dict
    """path -> the stored results the write of that file is made from (`StoredResults` or None)."""
    pended: set[str] = field(default_factory=set)
    """The files whose copy's hash is recorded."""
    file: WrittenFile | None = None
    """The SQLite file as found when the run began (`check_file`)."""

    def __post_init__(self) -> None:
        from tagger.db.lock import WrittenFile  # (not at import: `tagger.tags` loads no database code)

        if self.file is None:
            self.file = WrittenFile.of(self.database.url)

    def check_file(self, path: str, *, written: bool = False) -> None:
        """Raise `DatabaseError` when the SQLite file is no longer at its path (deleted, moved away, or
        a backup restored over it): SQLite would go on recording each write into the file that went,
        and the run report every file tagged and recorded where no command finds it (was: so, exit 0).
        ``written``: ``path``'s tags are already written."""
        from tagger.db.urls import DatabaseError

        if not self.file.went():
            return
        now = (f"the tags of {path} are written but not recorded (scan it again); the files after it were left alone"
               if written else f"{path} and the files after it were left alone")  # fmt: skip
        raise DatabaseError(f"the database {self.file.path} was deleted, moved or replaced while `tagger tag` recorded "
                            f"its writes in it: stopped; {now}; the files tagged before are recorded in the file that "
                            "went, not in any at that path now (a scan brings that one up to date)")  # fmt: skip

    def pending(self, pred: Prediction, copy: str) -> None:
        """Record the content hash of ``pred``'s new copy before it replaces the file, so that the next
        run recognises the file when this one stops before recording it; `TagWriteError` (the file
        left unchanged) when the copy cannot be read."""
        from sqlalchemy.exc import SQLAlchemyError

        from tagger.db import writes
        from tagger.db.session import database_error
        from tagger.errors import AudioReadError
        from tagger.fingerprint import content_hash

        if pred.stored is None:
            return
        try:
            digest = content_hash(copy)
        except AudioReadError as exc:
            raise TagWriteError(pred.path, f"cannot read its new copy: {exc.reason}; file left unchanged") from None
        self.check_file(pred.path)
        try:
            with self.database.session() as session:
                if writes.record_pending(session, path=pred.path, written=pred.stored, content_hash=digest):
                    self.pended.add(pred.path)
        except SQLAlchemyError as exc:
            then = f"{pred.path} and the files after it were left alone"
            raise database_error(self.database.url, exc, doing="write", then=then) from None

    def refresh(self, pred: Prediction) -> Prediction:
        """The track of ``pred`` as the database holds it now: another `tag` may have rewritten and
        recorded its file since the run began, or a scan stored new results for it (was: the file
        was skipped as "changed since it was analysed", or given the superseded results). A dry run
        keeps what it read (a file it found to be an interrupted run's copy is recorded by no one)."""
        from sqlalchemy.exc import SQLAlchemyError

        from tagger.db.session import database_error

        if pred.stored is None or self.dry_run:
            return pred
        self.check_file(pred.path)
        try:
            with self.database.session() as session:
                fresh = batch.predictions_from_database(session, where=replace(self.where, paths=(pred.path,),
                                                                         given=(pred.path,)))  # fmt: skip
        except SQLAlchemyError as exc:
            raise database_error(self.database.url, exc, doing="read", then=f"{pred.path} and the files after it "
                                                                             "were left alone") from None  # fmt: skip
        fresh = [p for p in fresh if p.path == pred.path and p.stored is not None
                 and p.stored.track_id == pred.stored.track_id]  # fmt: skip
        if not fresh:
            raise TagWriteError(pred.path, "since this run began its track was changed (a scan stored other results, "
                                           "or found it changed or gone) and the selection no longer holds it; left "
                                           "as it is")  # fmt: skip
        self.read[pred.path] = fresh[0].stored
        return fresh[0]

    def record(self, result: TagChange | TagWriteError) -> Iterator[TagChange | TagWriteError]:
        """``result``, after recording a written file's new size, mtime and fingerprint as current (those
        of a file changed since it was analysed in its tags alone too, written or already holding them:
        as a scan records them, `tagger.db.scan_writer.ScanWriter.retagged`);
        followed by a `TagWriteError` when the file cannot be read back or a scan stored new results
        meanwhile. A database that cannot record it stops the run (`database_error`), the result
        yielded first."""
        from sqlalchemy.exc import SQLAlchemyError

        from tagger.db import writes
        from tagger.db.session import database_error
        from tagger.errors import AudioReadError

        if isinstance(result, TagChange) and (result.written or (result.retagged and not result.dry_run)):
            done = "tags written" if result.written else "its tags already hold its results"
            try:
                self.check_file(result.path, written=result.written)
            except TaggerError:
                yield result
                raise
            try:
                with self.database.session() as session:
                    recorded = writes.record_rewrite(session, path=result.path, size=result.size, mtime=result.mtime,
                                                     tags_current=True,  # a later scan leaves these tags (--scores) alone
                                                     written=self.read.get(result.path), ctime_ns=result.ctime_ns,
                                                     audio_digest=result.audio_digest)  # fmt: skip
            except AudioReadError as exc:  # gone or unreadable right after the write: the next scan sees it
                yield result
                yield TagWriteError(result.path, f"{done}, but the file could not be read back to record it: "
                                                 f"{exc.reason}; scan it again")  # fmt: skip
                return
            except SQLAlchemyError as exc:
                # The file holds its new tags but the database its old size and time (and, recorded
                # before the rename, the copy's hash: the next `tag` recognises the file; a scan analyses
                # it again); no further file is written while the database cannot record them.
                yield result
                later = "the next `tagger tag` records them" if result.path in self.pended else "scan it again"
                then = (f"the tags of {result.path} are written but not recorded ({later}); the files after it were "
                        "left alone")  # fmt: skip
                raise database_error(self.database.url, exc, doing="write", then=then) from None
            if recorded is writes.Recorded.NOT_CURRENT:
                yield result
                yield TagWriteError(result.path, f"{done}, but a scan stored new results for it meanwhile: "
                                                 "not recorded as current; the next scan writes the right ones")  # fmt: skip
                return
        yield result


def _told_whole(result: TagChange | TagWriteError,
                steps: Iterator[TagChange | TagWriteError]) -> Iterator[TagChange | TagWriteError]:  # fmt: skip
    """What ``steps`` gives for ``result``, recording it: where a second stop signal stops the run at
    once (KeyboardInterrupt) as a file written whole is recorded, ``result`` is given first, and its
    line shown, before the interruption goes on; where the main thread waits in SQLite for a lock
    another process holds and the signal ends the process there (`tagger.signals.watch_stop_signals`),
    a warning names the file, written and not recorded, on stderr (`tagger.signals.say`; was: `tag`
    and `untag` ended with ``tagger: error: interrupted`` alone, the file written but not said so;
    then a logging warning, lost where logging was set otherwise)."""
    if not (isinstance(result, TagChange) and result.written):
        yield from steps
        return
    import functools

    from tagger.display import named
    from tagger.signals import at_forced_stop, say

    tell = functools.partial(say, f"tagger: warning: {named(result.path)}: written whole, but interrupted before it "
                                  "was recorded in the library database")  # fmt: skip
    at_forced_stop(tell)
    given = False
    try:
        for item in steps:
            if item is result:
                given = True
                at_forced_stop(tell, done=True)
            yield item
    except KeyboardInterrupt:
        if not given:
            given = True
            at_forced_stop(tell, done=True)
            yield result  # (its line; then the interruption)
        raise
    finally:
        at_forced_stop(tell, done=True)


def _recovered(session, pred: Prediction, *, dry_run: bool, inside: list | None) -> Prediction:
    """``pred``, or, when its file is byte for byte the copy an earlier `tag` run verified and moved
    over it before it stopped (`tagger.db.writes.recover_rewrite`), ``pred`` with the file's facts
    now, recorded (not with ``dry_run``): the write then finds its tags already holding the results.
    ``inside``: the folders a file must be reached in (not through a link out of them, which is not
    read), None for any."""
    from tagger.crawl import external_link_target
    from tagger.db import writes

    if pred.stored is None or pred.stored.rewrite_hash is None:
        return pred
    if inside is not None and external_link_target(pred.path, inside) is not None:
        return pred  # (skipped by the write, with its reason)
    stored = writes.recover_rewrite(session, path=pred.path, written=pred.stored, dry_run=dry_run)
    return pred if stored is None else replace(pred, expected=(stored.size, stored.mtime), stored=stored)


@dataclass
class OwnWrites:
    """The library database's record of tagger's writes that are not of its stored results (`tagger
    untag` removing tagger's fields, `tagger tag --from-json` writing the rows of `tagger predict
    --json`): after each, the file's new facts, its tags not current, and its ctime as tagger's own
    write's (`tagger.db.writes.record_own_write`), so that the next `tag`, `untag` or scan does not
    wait for the file as for one still being written (was: `tag` right after `untag` skipped every
    file as "changed 1 s ago, still being written?"; nothing was recorded). Only a track whose stored
    audio digest is the file's is recorded (its results are this audio's); other files are left to
    the next scan, as before. Recording is a help, not the command's work: a database that cannot
    record stops the recording (``failed`` says why), never the writes."""

    database: object
    recorded: int = 0
    """The files recorded."""
    failed: str | None = None
    """Why the recording stopped (the database could not be written), None while it goes on."""

    def record(self, results: Iterable[TagChange | TagWriteError]) -> Iterator[TagChange | TagWriteError]:
        """``results``, each file written recorded before it is given on."""
        for result in results:
            if isinstance(result, TagChange) and result.written and self.failed is None:
                yield from _told_whole(result, self._recorded(result))
            else:
                yield result

    def _recorded(self, change: TagChange) -> Iterator[TagChange]:
        self._record(change)
        yield change

    def _record(self, change: TagChange) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from tagger.db import writes
        from tagger.db.filter import path_forms
        from tagger.db.session import database_error
        from tagger.errors import AudioReadError

        if not change.audio_digest or change.ctime_ns is None:
            return  # (a format without the check: which track's audio it is cannot be told)
        try:
            names = path_forms(change.path)
        except UserError:  # (a name that is not UTF-8: the database holds no track of it)
            return
        try:
            with self.database.session() as session:
                done = writes.record_own_write(session, names=names, path=change.path, size=change.size,
                                               mtime=change.mtime, ctime_ns=change.ctime_ns,
                                               audio_digest=change.audio_digest)  # fmt: skip
        except AudioReadError:  # gone or unreadable right after the write: the next scan sees it
            return
        except SQLAlchemyError as exc:
            self.failed = str(database_error(self.database.url, exc, doing="write"))
            return
        self.recorded += done is writes.Recorded.FILE

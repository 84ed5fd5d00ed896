"""The scan's tag hook (main process): the results of each finished file, and the stored results of
unchanged tracks whose tags do not hold them (`TagHook.retag`), written into the file by the scan's
``on_track``, and the file's new facts recorded after the write.
"""

from __future__ import annotations

import json
import logging
import os

from tagger.aggregate import FamilyResult, TrackResult
from tagger.db import models as M
from tagger.db.scan_writer import FileState
from tagger.errors import TaggerError, UntaggableError
from tagger.fingerprint import read_back
from tagger.library.recheck import changed_during_analysis
from tagger.library.state import AnalysedFile
from tagger.tags.fields import model_families

log = logging.getLogger("tagger.library.scan")


class TagHook:
    """The tag writes of `tagger.library.runner.Runner` (mixed into it: uses its ``writer``,
    ``on_track``, ``families`` and ``check_stop``)."""

    def _write_tags(self, track: M.Track, work: FileState, result: TrackResult) -> None:
        """Call the tag hook with the file as it was analysed (the hook's write refuses another file
        moved over it since); the track's ``tags_current`` records whether the file's tags now hold
        `result` (false after a failed write or a dry run that found changes: the next scan retries)."""
        analysed = AnalysedFile(size=work.size, mtime=work.mtime, fingerprint=work.fingerprint or None,
                                inode=None if work.inode is None else (work.device, work.inode),
                                content_hash=track.content_hash, ctime_ns=work.ctime_ns,
                                own_write=work.own_write)  # fmt: skip
        try:
            with self.writer.clock("tags"):
                change = self.on_track(work.path, result, analysed)
        except UntaggableError as exc:  # nothing to write: its results are in the database
            self.writer.summary.untaggable.append((work.path, exc.reason))
            track.tags_current = True  # (until a tagger that can tag more: `retag_untaggable`)
            from tagger.tags.rewrite import formats_signature

            track.untaggable_formats = formats_signature()
        except TaggerError as exc:
            log.debug("%s", exc)
            self.writer.summary.tag_errors += 1
            self.writer.summary.tag_failures.append((work.path, getattr(exc, "reason", str(exc))))
        else:
            changed, written = getattr(change, "changed", False), getattr(change, "written", False)
            track.untaggable_formats = None
            if getattr(change, "kept", None):  # (fields not provably tagger's: left, its results stored alone)
                self.writer.summary.tags_kept.append((work.path, change.kept))
                track.tags_current = False
                self.writer.touch()
                return
            if changed:
                self.writer.summary.tags_written += 1
            track.tags_current = bool(written or not changed)
            if written and not self._refresh(work, change):
                track.tags_current = False  # the next scan looks at the file again
        self.writer.touch()

    def _refresh(self, work: FileState, change) -> bool:
        """Record the file's new size, mtime, fingerprint and content hash after the tag hook rewrote
        it; False (nothing recorded: the database keeps the file's old facts, so the next scan sees
        it changed) when it cannot be read, or is no longer what the write left: another program
        changed it right after (`tagger.fingerprint.read_back`)."""
        try:
            facts = read_back(work.path, size=getattr(change, "size", None), mtime=getattr(change, "mtime", None),
                              ctime_ns=getattr(change, "ctime_ns", None))
        except TaggerError as exc:
            log.warning("%s: cannot re-read after writing tags: %s", work.path, exc)
            return False
        if facts is None:
            log.warning("%s: changed by another program right after its tags were written; left for the next scan",
                        work.path)  # fmt: skip
            return False
        with self.writer.clock("database"):
            size, mtime, fp, digest = facts
            self.writer.refresh_file(work, size=size, mtime=mtime, fingerprint=fp, content_hash=digest,
                                     ctime_ns=getattr(change, "ctime_ns", None),
                                     audio_digest=getattr(change, "audio_digest", None))
        return True

    def retag(self, work: list[FileState]) -> None:
        """Write the stored results of unchanged tracks into their files (their tags did not hold
        them): a stale track's (another model version's) with that model's families and version
        (`stored_result`), never under the scan's model's name."""
        for w in work:
            self.check_stop()
            # (read without flushing the previous file's new facts: a flush takes SQLite's write lock,
            # which the tag write below would then hold; they go in with the batch's commit)
            with self.writer.session.no_autoflush:
                track = self.writer.track_for(w)
                result = self.stored_result(track)
                planned_mv = track.model_version_id
            # The file was planned at the start of the scan: another file of the same size and mtime
            # moved over it since would pass the tag write's own size/mtime check.
            changed = changed_during_analysis(w, track.content_hash)
            if changed is not None and self._tagged_meanwhile(track, w.path, planned_mv):
                continue  # (`tagger tag` wrote and recorded it since the plan: done, not an error)
            if changed is not None:
                self.writer.summary.tag_errors += 1
                self.writer.summary.tag_failures.append((w.path, changed.replace("being analysed", "scanned")))
                track.tags_current = False
                continue
            self._write_tags(track, w, result)

    def stored_result(self, track: M.Track) -> TrackResult:
        """The stored results of ``track`` as its tag write takes them: in its model's family order,
        with that model's families; a stale track's (another model version's than the scan's) carry
        their model's version (`TrackResult.model_version`), which the tag hook writes instead of the
        scan's."""
        families, version = self.families, None
        if track.model_version_id != self.writer.mv_id and track.model_version is not None:
            families = model_families(json.loads(track.model_version.families or "[]"))
            version = track.model_version.version
        by_family = {f: i for i, f in enumerate(families)}
        results = sorted((FamilyResult(d.family, d.present, d.score, d.coverage) for d in track.detections),
                         key=lambda r: by_family.get(r.family, len(by_family)))  # fmt: skip
        return TrackResult(families=families, results=results, windows=track.windows,
                           silent_windows=track.silent_windows, model_version=version)  # fmt: skip

    def _tagged_meanwhile(self, track: M.Track, path: str, planned_mv: int | None) -> bool:
        """Whether the track, read again, is recorded as tagged for the file as it is now (size, mtime
        and ctime), with the results of the model version it had at the plan (``planned_mv``: the
        scan's, or a stale track's own): another tagger command wrote its tags and recorded the file
        it left since the plan."""
        session = self.writer.session
        with session.no_autoflush:
            session.refresh(track)
        try:
            st = os.stat(path)
        except OSError:
            return False
        return bool(track.tags_current and track.status == M.STATUS_OK and track.model_version_id == planned_mv
                    and (track.size, track.mtime) == (st.st_size, st.st_mtime)
                    and track.ctime_ns is not None and track.ctime_ns == st.st_ctime_ns)  # fmt: skip

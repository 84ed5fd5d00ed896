"""The library database schema as ORM classes (SQLAlchemy 2), mapped onto the Core tables of
`tagger.db.tables`.

Tables
------
- ``model_versions``: every model that produced results (version, manifest hash, families, thresholds).
- ``scans``: one row per `tagger scan` run with its counts.
- ``tracks``: one row per audio file (path, size, mtime, fingerprint, content hash, stream facts, status,
  error).
  ``status`` is ``ok`` (analysed), ``error`` (could not be analysed: see ``error``) or ``missing``
  (no longer on disk; purged by `tagger db prune`). A track is *stale* when its ``model_version_id``
  is not the current model's.
- ``detections``: per track and family: present, score, coverage.
- ``segments``: per track and family: the time ranges (seconds) where the family plays.
- ``window_scores`` (revision 0003): per track, the probability of every family in every window,
  compactly (float16 bytes), for the timeline picture. Tracks analysed before have none.

``tracks.tags_current`` says whether the file's tags hold the stored results; ``tracks.error_transient``
marks errors the next scan retries by itself.

The schema is created and changed only through the Alembic migrations in ``migrations/``; a test
checks that the migrated schema equals these models.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase, relationship

from tagger.db import tables as T
from tagger.db.tables import NAMING_CONVENTION, STATUS_ERROR, STATUS_MISSING, STATUS_OK, STATUSES, utcnow  # noqa: F401


class Base(DeclarativeBase):
    metadata = T.metadata


class ModelVersion(Base):
    """``families``: JSON list of the family names, in the model's order; ``thresholds``: JSON object
    family -> decision threshold; ``aggregation``: JSON object of the aggregation parameters used."""

    __table__ = T.model_versions


class Scan(Base):
    """``roots``: JSON list of the folders (or files) the scan was given that no earlier scan was
    given (`tagger.db.reads.scanned_roots` reads their union)."""

    __table__ = T.scans


class Track(Base):
    """One audio file.

    ``missing_since``: when the file was first found missing (revision 0002).

    ``tags_current``: the file's tags hold this track's results (revision 0004): set after a scan
    wrote (or found) them; a scan writes the tags of the tracks where it is false.

    ``error_transient``: the error may pass by itself (the file changed or vanished while it was
    read; revision 0004): the next scan analyses the file again, and a moved or copied file never
    inherits it.

    ``content_hash``: BLAKE2b of the whole file as it was analysed or last rewritten
    (`tagger.fingerprint.content_hash`; revision 0005): a new path is this track's file moved only
    when its whole content hashes the same. NULL for tracks stored before the revision (their
    moves are recognised by the fingerprint alone).

    ``rewrite_hash``: the content hash of the verified copy `tagger tag` is moving over the file,
    stored before the move and cleared when the file's new facts are (revision 0006): a file that
    hashes to it is that copy (the analysed audio, tags holding these results), so a `tag` killed
    in between is recognised by the next one. Cleared too whenever a scan stores the track's file
    or results.

    ``untaggable_formats``: the file is in a format without tags tagger writes (revision 0007): the
    signature of what the tagger that found it could tag (`tagger.tags.rewrite.formats_signature`).
    A tag-writing scan by a tagger that can tag more (another signature) tries the file again;
    NULL for every other track.

    ``ctime_ns``: the file's status-change time (``st_ctime_ns``) when its size, mtime, fingerprint
    and content hash were recorded (revision 0008). A rename, a copy or an in-place write changes
    it (nobody can set it back), so a file of the stored size, mtime and fingerprint whose ctime is
    another (two stems of one archive swapped by name) has its whole content compared with the
    content hash before its results are kept. NULL where not known: the next scan records it for a
    file it finds unchanged.

    ``analysed_in_part``: what the scan said of a file it analysed without a small part it could
    not decode (up to 1%: `tagger.audio.MAX_LOST_SHARE`; revision 0009), e.g. ``ffmpeg could not
    decode 1 of its frames (...): analysed without them (0.023 s of 20.0 s left out)``; NULL for a
    file analysed whole (and for tracks analysed before the revision). Each analysis of the file
    sets or clears it.

    ``audio_digest``: a hash of the bytes that carry the file's audio, tags excluded
    (`tagger.tags.audio_digest`), as it was analysed (revision 0010); a tag write by tagger leaves
    those bytes as they were (it checks that). A file that reads as changed (another size,
    fingerprint or content hash) whose audio digest is still this one had only its tags rewritten
    by another program: its results are kept without analysis. NULL where not known (a format
    without the check, a file analysed before the revision): such a file is analysed again.

    ``written_ctime_ns``: the ctime tagger's own last write into the file (a tag write, `tagger
    untag`) left it with, recorded with its new facts (revision 0011). Where it equals ``ctime_ns``
    and the file is found with the recorded size, mtime and ctime, no program has written to it
    since tagger did: it is not waited for as a file still being written, its tags tagger's or
    removed (`tagger.tags.batch.as_tagger_left_it`). NULL where no such write was recorded.

    ``decoding``: the version of tagger's decoding (`tagger.audio.joined.DECODING`) that analysed the
    file, or that a scan found would decode it as the one that did (revision 0012). NULL for a track
    analysed before the revision: the next scan that finds its file unchanged looks at it once
    (`tagger.audio.joined.decoded_otherwise`), and analyses again a file an older tagger decoded in
    part (files joined byte-wise, of which it read the first alone); a track of a decoding before 3
    stored with every window silent (``windows``, ``silent_windows``) is analysed again under the
    quiet-recording floor, its file not opened to decide it.
    """

    __table__ = T.tracks

    model_version = relationship("ModelVersion", lazy="joined")
    detections = relationship(
        "Detection", back_populates="track", cascade="all, delete-orphan", passive_deletes=True, order_by="Detection.id"
    )
    segments = relationship(
        "Segment", back_populates="track", cascade="all, delete-orphan", passive_deletes=True, order_by="Segment.start"
    )
    window_scores = relationship(
        "WindowScores", back_populates="track", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class Detection(Base):
    __table__ = T.detections

    track = relationship("Track", back_populates="detections")


class Segment(Base):
    __table__ = T.segments

    track = relationship("Track", back_populates="segments")


class WindowScores(Base):
    """The window probabilities of one track (revision 0003), stored compactly.

    ``scores`` holds ``n_windows x len(families)`` float16 values (little-endian, row-major; NaN for a
    silent window, which is not scored) and ``starts`` the ``n_windows`` window starts in seconds
    (float32, little-endian): 2 bytes per family and window, under 4 KB for a 10-minute track.
    """

    __table__ = T.window_scores

    track = relationship("Track", back_populates="window_scores")

    @classmethod
    def pack(cls, *, families, starts, scores, window_seconds: float) -> WindowScores:
        """A row from ``starts`` [shape=(n,)] seconds and ``scores`` [shape=(n, len(families))]."""
        import json

        import numpy as np

        starts = np.asarray(starts, dtype="<f4").reshape(-1)
        scores = np.asarray(scores, dtype="<f2").reshape(len(starts), len(families))
        return cls(families=json.dumps(list(families)), window_seconds=float(window_seconds), n_windows=len(starts),
                   starts=starts.tobytes(), scores=scores.tobytes())  # fmt: skip

    def unpack(self):
        """``(families, starts, scores)``: a list of names, float32 [shape=(n,)], float32 [shape=(n, n_families)]."""
        from tagger.db.reads import unpack_window_scores

        return unpack_window_scores(families=self.families, n_windows=self.n_windows, starts=self.starts, scores=self.scores)

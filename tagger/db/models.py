"""The library database schema (SQLAlchemy 2 ORM).

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

import datetime as _dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_MISSING = "missing"
STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_MISSING)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> _dt.datetime:
    """The current UTC time, naive (what the database stores)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(200), nullable=False)
    manifest_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    families: Mapped[str] = mapped_column(Text, nullable=False)
    """JSON list of the family names, in the model's order."""
    thresholds: Mapped[str] = mapped_column(Text, nullable=False)
    """JSON object family -> decision threshold."""
    aggregation: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    """JSON object of the aggregation parameters used."""
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    __table_args__ = (UniqueConstraint("version", "manifest_hash"),)


class Scan(Base):
    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    roots: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    """JSON list of the scanned folders."""
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    scanned: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    moved: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    missing: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    stale: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    mtime: Mapped[float] = mapped_column(Float, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    format: Mapped[str | None] = mapped_column(String(40), nullable=True)
    sample_rate: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=STATUS_OK)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    windows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    silent_windows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"), nullable=True)
    first_seen_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    analysed_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    missing_since: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    """When the file was first found missing (revision 0002)."""
    tags_current: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")
    """The file's tags hold this track's results (revision 0004): set after a scan wrote (or found)
    them; a scan writes the tags of the tracks where it is false."""
    error_transient: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")
    """The error may pass by itself (the file changed or vanished while it was read; revision 0004):
    the next scan analyses the file again, and a moved or copied file never inherits it."""
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """BLAKE2b of the whole file as it was analysed or last rewritten (`tagger.fingerprint.content_hash`;
    revision 0005): a new path is this track's file moved only when its whole content hashes the same.
    NULL for tracks stored before the revision (their moves are recognised by the fingerprint alone)."""
    rewrite_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The content hash of the verified copy `tagger tag` is moving over the file, stored before the
    move and cleared when the file's new facts are (revision 0006): a file that hashes to it is that
    copy (the analysed audio, tags holding these results), so a `tag` killed in between is recognised
    by the next one. Cleared too whenever a scan stores the track's file or results."""
    untaggable_formats: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The file is in a format without tags tagger writes (revision 0007): the signature of what the
    tagger that found it could tag (`tagger.tags.rewrite.formats_signature`). A tag-writing scan by a
    tagger that can tag more (another signature) tries the file again; NULL for every other track."""
    ctime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The file's status-change time (``st_ctime_ns``) when its size, mtime, fingerprint and content
    hash were recorded (revision 0008). A rename, a copy or an in-place write changes it (nobody can
    set it back), so a file of the stored size, mtime and fingerprint whose ctime is another (two
    stems of one archive swapped by name) has its whole content compared with the content hash
    before its results are kept. NULL where not known: the next scan records it for a file it finds
    unchanged."""
    analysed_in_part: Mapped[str | None] = mapped_column(Text, nullable=True)
    """What the scan said of a file it analysed without a small part it could not decode (up to 1%:
    `tagger.audio.MAX_LOST_SHARE`; revision 0009), e.g. ``ffmpeg could not decode 1 of its frames
    (...): analysed without them (0.023 s of 20.0 s left out)``; NULL for a file analysed whole
    (and for tracks analysed before the revision). Each analysis of the file sets or clears it."""

    model_version: Mapped[ModelVersion | None] = relationship(lazy="joined")
    detections: Mapped[list[Detection]] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True, order_by="Detection.id"
    )
    segments: Mapped[list[Segment]] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True, order_by="Segment.start"
    )
    window_scores: Mapped[WindowScores | None] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_tracks_fingerprint", "fingerprint"),  # revision 0002: finds moved files fast
        Index("ix_tracks_status", "status"),
    )


class Detection(Base):
    __tablename__ = "detections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False)
    family: Mapped[str] = mapped_column(String(40), nullable=False)
    present: Mapped[bool] = mapped_column(Boolean, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    coverage: Mapped[float] = mapped_column(Float, nullable=False)

    track: Mapped[Track] = relationship(back_populates="detections")

    __table_args__ = (
        UniqueConstraint("track_id", "family"),
        Index("ix_detections_family_present_score", "family", "present", "score"),
    )


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False)
    family: Mapped[str] = mapped_column(String(40), nullable=False)
    start: Mapped[float] = mapped_column(Float, nullable=False)
    end: Mapped[float] = mapped_column(Float, nullable=False)

    track: Mapped[Track] = relationship(back_populates="segments")

    __table_args__ = (Index("ix_segments_track_id_family", "track_id", "family"),)


class WindowScores(Base):
    """The window probabilities of one track (revision 0003), stored compactly.

    ``scores`` holds ``n_windows x len(families)`` float16 values (little-endian, row-major; NaN for a
    silent window, which is not scored) and ``starts`` the ``n_windows`` window starts in seconds
    (float32, little-endian): 2 bytes per family and window, under 4 KB for a 10-minute track.
    """

    __tablename__ = "window_scores"

    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True)
    families: Mapped[str] = mapped_column(Text, nullable=False)
    """JSON list of the family names: the columns of ``scores``."""
    window_seconds: Mapped[float] = mapped_column(Float, nullable=False)
    n_windows: Mapped[int] = mapped_column(Integer, nullable=False)
    starts: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    scores: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    track: Mapped[Track] = relationship(back_populates="window_scores")

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
        import json

        import numpy as np

        families = json.loads(self.families)
        starts = np.frombuffer(self.starts, dtype="<f4").astype(np.float32)
        scores = np.frombuffer(self.scores, dtype="<f2").astype(np.float32).reshape(self.n_windows, len(families))
        return families, starts, scores

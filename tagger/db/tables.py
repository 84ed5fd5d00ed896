"""The library database schema as SQLAlchemy Core tables: what every query reads and writes.

The ORM classes of `tagger.db.models` are mapped onto these tables (the scan and the tag writes
use them); ``tagger query``, ``show``, ``stats`` and ``errors`` read SQL text over them
(`tagger.db.sql`, `tagger.db.queries`) and, on SQLite, import no SQLAlchemy at all. The tables are described in `tagger.db.models`. The schema is
created and changed only through the Alembic migrations in ``migrations/``; a test checks that the
migrated schema equals these tables.
"""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tagger.db import sql

STATUS_OK, STATUS_ERROR, STATUS_MISSING, STATUSES = sql.STATUS_OK, sql.STATUS_ERROR, sql.STATUS_MISSING, sql.STATUSES
"""The values of ``tracks.status`` (defined in `tagger.db.sql`, which the reads of ``tagger query`` import alone)."""

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


metadata = MetaData(naming_convention=NAMING_CONVENTION)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", String(200), nullable=False),
    Column("manifest_hash", String(64), nullable=False),
    Column("families", Text, nullable=False),  # JSON list of the family names, in the model's order
    Column("thresholds", Text, nullable=False),  # JSON object family -> decision threshold
    Column("aggregation", Text, nullable=False, default="{}"),  # JSON object of the aggregation parameters used
    Column("created_at", DateTime, nullable=False, default=utcnow),
    UniqueConstraint("version", "manifest_hash"),
)  # fmt: skip

scans = Table(
    "scans", metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime, nullable=False, default=utcnow),
    Column("finished_at", DateTime, nullable=True),
    Column("roots", Text, nullable=False, default="[]"),  # JSON list of the scanned folders no earlier scan was given
    Column("model_version_id", ForeignKey("model_versions.id"), nullable=True),
    Column("scanned", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("moved", Integer, nullable=False, default=0),
    Column("missing", Integer, nullable=False, default=0),
    Column("stale", Integer, nullable=False, default=0),
    Column("audio_seconds", Float, nullable=False, default=0.0),
)  # fmt: skip

tracks = Table(
    "tracks", metadata,
    Column("id", Integer, primary_key=True),
    Column("path", Text, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime", Float, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("duration", Float, nullable=True),
    Column("format", String(40), nullable=True),
    Column("sample_rate", Integer, nullable=True),
    Column("channels", Integer, nullable=True),
    Column("status", String(16), nullable=False, default=STATUS_OK),
    Column("error", Text, nullable=True),
    Column("windows", Integer, nullable=False, default=0),
    Column("silent_windows", Integer, nullable=False, default=0),
    Column("model_version_id", ForeignKey("model_versions.id"), nullable=True),
    Column("scan_id", ForeignKey("scans.id", ondelete="SET NULL"), nullable=True),
    Column("first_seen_at", DateTime, nullable=False, default=utcnow),
    Column("analysed_at", DateTime, nullable=True),
    Column("updated_at", DateTime, nullable=False, default=utcnow),
    Column("missing_since", DateTime, nullable=True),
    Column("tags_current", Boolean, nullable=False, default=False, server_default="0"),
    Column("error_transient", Boolean, nullable=False, default=False, server_default="0"),
    Column("content_hash", String(64), nullable=True),
    Column("rewrite_hash", String(64), nullable=True),
    Column("untaggable_formats", String(16), nullable=True),
    Column("ctime_ns", BigInteger, nullable=True),
    Column("analysed_in_part", Text, nullable=True),
    Column("audio_digest", String(64), nullable=True),
    Column("written_ctime_ns", BigInteger, nullable=True),
    Column("decoding", Integer, nullable=True),
    Index("ix_tracks_fingerprint", "fingerprint"),  # revision 0002: finds moved files fast
    Index("ix_tracks_status", "status"),
)  # fmt: skip

detections = Table(
    "detections", metadata,
    Column("id", Integer, primary_key=True),
    Column("track_id", ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False),
    Column("family", String(40), nullable=False),
    Column("present", Boolean, nullable=False),
    Column("score", Float, nullable=False),
    Column("coverage", Float, nullable=False),
    UniqueConstraint("track_id", "family"),
    Index("ix_detections_family_present_score", "family", "present", "score"),
)  # fmt: skip

segments = Table(
    "segments", metadata,
    Column("id", Integer, primary_key=True),
    Column("track_id", ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False),
    Column("family", String(40), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Index("ix_segments_track_id_family", "track_id", "family"),
)  # fmt: skip

window_scores = Table(
    "window_scores", metadata,
    Column("track_id", ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True),
    Column("families", Text, nullable=False),  # JSON list of the family names: the columns of ``scores``
    Column("window_seconds", Float, nullable=False),
    Column("n_windows", Integer, nullable=False),
    Column("starts", LargeBinary, nullable=False),
    Column("scores", LargeBinary, nullable=False),
)  # fmt: skip

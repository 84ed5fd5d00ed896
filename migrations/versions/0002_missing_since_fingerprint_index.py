"""Track when a file went missing; index fingerprints (moved-file lookup).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("missing_since", sa.DateTime(), nullable=True))
    # Tracks already missing before this revision: date them from their last update.
    op.execute("UPDATE tracks SET missing_since = updated_at WHERE status = 'missing'")
    op.create_index("ix_tracks_fingerprint", "tracks", ["fingerprint"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tracks_fingerprint", table_name="tracks")
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("missing_since")

"""Record a hash of the bytes that carry each analysed file's audio, tags excluded
(`tagger.tags.audio_digest`), so that a scan keeps the results of a file whose tags another program
rewrote (Picard, beets, kid3, a backup from before tagger tagged it) instead of analysing the same
audio again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: not known (NULL). Such a file whose tags another program rewrote is analysed
    # again once, as before this revision, and its digest recorded then.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("audio_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("audio_digest")

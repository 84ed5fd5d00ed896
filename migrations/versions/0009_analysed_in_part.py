"""Record what a scan said of a file it analysed in part (up to 1% of it could not be decoded and
was left out: `tagger.audio.MAX_LOST_SHARE`), so that `tagger show` and `query --format json` say
it after the scan's output is gone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: not known (NULL); the scans before this revision printed it. A file's next
    # analysis records it.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("analysed_in_part", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("analysed_in_part")

"""Record the ctime tagger's own last write left a file with (a tag write, `tagger untag`), so that
the next command does not wait for a file exactly as tagger left it as for one still being written,
whether its tags hold the stored results or not (after `untag`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: not known (NULL). A file tagger tagged before is known as its tags current
    # (tracks.tags_current with ctime_ns), as before this revision.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("written_ctime_ns", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("written_ctime_ns")

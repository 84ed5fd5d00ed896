"""Store, before `tagger tag` moves its verified copy over a file, the copy's content hash, so that
a run killed before it records the file's new facts is recognised by the next `tag` without a scan.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: no rewrite in progress.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("rewrite_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("rewrite_hash")

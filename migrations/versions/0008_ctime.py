"""Record each track's file status-change time (ctime), so that a file of the stored size, mtime and
fingerprint put at the path by a rename, a copy or an in-place write (its ctime is then another)
has its whole content compared with the stored content hash before its results are kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: not known; the next scan records the ctime of each file it finds unchanged.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("ctime_ns", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("ctime_ns")

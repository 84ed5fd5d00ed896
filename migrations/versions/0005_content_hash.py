"""Store a hash of each file's whole content, so that a moved file is told from another file that
only shares its fingerprint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: unknown (NULL) until their file is analysed or its tags are written again.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("content_hash")

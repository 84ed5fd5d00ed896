"""Know whether a file's tags hold its results; mark transient errors (retried by the next scan).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        # Existing tracks: unknown, so false; the next scan with tag writing checks (and writes) them once.
        batch.add_column(sa.Column("tags_current", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("error_transient", sa.Boolean(), nullable=False, server_default="0"))
    # Errors of files that changed or vanished while they were read, stored before this revision.
    tracks = sa.table("tracks", sa.column("status", sa.String), sa.column("error", sa.Text),
                      sa.column("error_transient", sa.Boolean))  # fmt: skip
    transient = sa.or_(*(tracks.c.error.like(p) for p in ("the file disappeared%", "the file changed while%", "cannot stat%")))
    op.execute(tracks.update().where((tracks.c.status == "error") & transient).values(error_transient=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("error_transient")
        batch.drop_column("tags_current")

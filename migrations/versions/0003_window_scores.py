"""Keep each track's window scores (the timeline picture of `tagger show --plot`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Tracks analysed before this revision have no row here: their picture asks for a rescan.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "window_scores",
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("families", sa.Text(), nullable=False),
        sa.Column("window_seconds", sa.Float(), nullable=False),
        sa.Column("n_windows", sa.Integer(), nullable=False),
        sa.Column("starts", sa.LargeBinary(), nullable=False),
        sa.Column("scores", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name="fk_window_scores_track_id_tracks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("track_id", name="pk_window_scores"),
    )


def downgrade() -> None:
    op.drop_table("window_scores")

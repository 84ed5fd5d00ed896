"""Record the version of tagger's decoding a file was analysed by (`tagger.audio.joined.DECODING`), so
that a scan finds the tracks an older tagger analysed in part: files joined byte-wise (``cat a.flac
b.flac``), of which it decoded the first part alone, are analysed again once, the others marked as
checked.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tracks: not known (NULL): the next scan looks at each analysed file once
    # (`tagger.audio.joined.decoded_otherwise`) and analyses again those an older tagger read in part.
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("decoding", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("decoding")

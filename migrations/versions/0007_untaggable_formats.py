"""Mark the tracks whose file is in a format without tags with what the tagger that found it could
tag, so that a later tagger (or mutagen) that learned the format writes their tags.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


# The extensions of the formats tagger 0006 wrote tags into: a track of another extension whose tags
# it recorded as current was (almost always) a file in a format without tags.
TAGGED_BY_0006 = (".mp3", ".wav", ".aif", ".aifc", ".aiff", ".dsf", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".m4b",
                  ".mp4", ".alac", ".wma", ".wv", ".ape", ".mpc")  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("untaggable_formats", sa.String(16), nullable=True))
    # Existing tracks: those the taggers before this revision found in a format without tags were
    # stored as tags_current with no mark. Marked "0006" (what no tagger's signature is), so that the
    # next tag-writing scan tries each of them once more (a file tagger still cannot tag is marked
    # again; one it has learned to tag is tagged).
    tracks = sa.table("tracks", sa.column("path", sa.Text), sa.column("tags_current", sa.Boolean),
                      sa.column("untaggable_formats", sa.String(16)))  # fmt: skip
    tagged = sa.or_(*(sa.func.lower(tracks.c.path).like(f"%{ext}") for ext in TAGGED_BY_0006))
    op.execute(tracks.update().where(tracks.c.tags_current == sa.true(), sa.not_(tagged)).values(untaggable_formats="0006"))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("untaggable_formats")

"""Snapshots, broadcasts, course scenarios, and when an instance was last used.

- ``snapshots``: a machine's full state after journal entry ``seq`` of ``generation``, in
  the versioned, compressed format of ``app.core.snapshot`` (``data``); ``digest`` is the
  machine's ``state_digest`` at that point, so a snapshot that does not restore to it is
  known to be bad.  Restart and revival load the newest good one and replay the journal
  after it.
- ``broadcasts``: an instance an instructor shows read-only to a whole course.
- ``scenarios``: a course's starting point, a trace (versioned JSON Lines: a header with
  the configuration and seed, then the calls); each student gets their own copy.
- ``instances.last_used``: the wall time of the last request that touched the instance
  (the idle culler parks instances unused for long); ``instances.parked``: true while the
  instance lives only on disk.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "instance_id",
            sa.Integer,
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("format", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "snapshots_by_seq", "snapshots", ["instance_id", "generation", "seq"], unique=True
    )
    op.create_table(
        "broadcasts",
        sa.Column(
            "instance_id",
            sa.Integer,
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "course",
            sa.String(64),
            sa.ForeignKey("courses.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "scenarios",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "course",
            sa.String(64),
            sa.ForeignKey("courses.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("trace", sa.Text, nullable=False),
        sa.UniqueConstraint("course", "name", name="scenarios_course_name"),
    )
    # plain ADD COLUMN, never a batch (copy-and-drop) alter: on SQLite dropping the old
    # ``instances`` would cascade to the journal and delete every entry
    op.add_column("instances", sa.Column("last_used", sa.Float, nullable=True))
    op.add_column(
        "instances", sa.Column("parked", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_column("instances", "parked")
    op.drop_column("instances", "last_used")
    op.drop_table("scenarios")
    op.drop_table("broadcasts")
    op.drop_index("snapshots_by_seq", "snapshots")
    op.drop_table("snapshots")

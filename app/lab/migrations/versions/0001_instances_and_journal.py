"""Instances and the journal of their calls.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False, server_default=""),
        sa.Column("preset", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "instance_id",
            sa.Integer,
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("fn", sa.String(64), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("ctx", sa.Text, nullable=False),
        sa.Column("source", sa.String(64), nullable=False, server_default="api"),
        sa.Column("result", sa.Text, nullable=True),
    )
    op.create_index("journal_by_seq", "journal", ["instance_id", "generation", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("journal_by_seq", "journal")
    op.drop_table("journal")
    op.drop_table("instances")

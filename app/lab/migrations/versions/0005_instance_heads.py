"""Each instance's head as the API nodes of a cluster share it.

- ``instance_heads``: the generation, seq and call count of an instance after the last
  request that held it (``app.lab.cluster``).  Refused calls take a seq but no journal
  entry, so the journal alone cannot say an instance's seq: the node that held the
  instance last writes it here before it lets the next node in.  No foreign key: a node
  deletes an instance's row while it holds the instance, in the transaction that holds it.
  Only written with ``PAGELAB_CLUSTER``; a single server keeps these in memory.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_heads",
        sa.Column("instance_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_heads")

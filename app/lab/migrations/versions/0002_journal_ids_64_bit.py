"""Journal row ids in 64 bits on Postgres.

0001's ``journal.id`` is an ``Integer`` with autoincrement: on SQLite that is the rowid,
already 64 bits, but on Postgres a ``SERIAL`` — a 32-bit column fed by a sequence that
stops at 2^31 - 1.  Ids are never reused (a restore or a delete frees rows, not ids), so a
busy shared server would run out after ~2 billion journalled calls and from then on
answer every call with a 503.  Postgres gets a ``bigint`` column and sequence; elsewhere
nothing changes.  (On a large journal the column change rewrites the table, once.)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.alter_column(
        "journal", "id", type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=False
    )
    # the column's type does not change its sequence's: a sequence AS integer stops at
    # 2^31 - 1 whatever it feeds
    seq = bind.exec_driver_sql("SELECT pg_get_serial_sequence('journal', 'id')").scalar()
    if seq is not None:
        op.execute(f"ALTER SEQUENCE {seq} AS bigint")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    seq = bind.exec_driver_sql("SELECT pg_get_serial_sequence('journal', 'id')").scalar()
    if seq is not None:
        op.execute(f"ALTER SEQUENCE {seq} AS integer")
    op.alter_column(
        "journal", "id", type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=False
    )

"""Accounts: courses, users with roles, hashed API tokens, read-only shares, settings.

``users.quota`` holds a user's per-quota overrides (JSON, null for none); the role
defaults an admin changes at runtime live in ``settings`` (key ``role_quotas``), so they
survive a restart and every host sharing the database sees the same ones.  A token is
stored only as the sha256 hex digest of its text.  ``instances.owner`` stays a name (the
open mode's instances belong to ``""``), so it is not a foreign key to ``users``.

Revision ID: 0003
Revises: 0002
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
        "courses",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("course", sa.String(64), sa.ForeignKey("courses.name"), nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("quota", sa.JSON, nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'instructor', 'student', 'observer')", name="users_role"
        ),
    )
    op.create_index("users_by_course", "users", ["course"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(128), nullable=False, server_default=""),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("last_used", sa.Float, nullable=True),
    )
    op.create_index("tokens_by_user", "tokens", ["user_id"])
    op.create_table(
        "shares",
        sa.Column(
            "instance_id",
            sa.Integer,
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("shares")
    op.drop_index("tokens_by_user", "tokens")
    op.drop_table("tokens")
    op.drop_index("users_by_course", "users")
    op.drop_table("users")
    op.drop_table("courses")

"""Alembic's entry point for PageLab's store: migrations run on the connection the store
hands over (``config.attributes["connection"]``), online only."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

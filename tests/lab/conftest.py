"""The store's backends for the lab's tests: ``database_url`` runs a test once on a SQLite
file and once on a fresh database of a throwaway Postgres server (tests/lab/postgres.py),
started once per session and only when a test asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.lab.store import Store
from tests.clock import Clock

from .postgres import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL with nothing in it yet: a new SQLite file, or a new Postgres database
    (dropped after the test).  ``"none"`` (by indirect parametrization): no database."""
    if request.param == "none":
        yield ""
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lab.db'}"
    elif request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        name = server.new_database()
        try:
            yield server.url(name)
        finally:
            server.drop_database(name)
    else:
        raise ValueError(f"no such backend: {request.param!r}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A store on ``database_url``, closed after the test."""
    s = Store(database_url)
    try:
        yield s
    finally:
        s.close()

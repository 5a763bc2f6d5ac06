"""The probes (issue 10 §2): ``GET /healthz`` alive with no database and no token,
``GET /readyz`` ready with each check's detail, or a 503 problem naming the failing check
(the database taken away on SQLite and on Postgres; the instances not restored yet)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from app.lab.service import Lab
from app.lab.settings import Settings
from app.main import create_app
from tests.lab.conftest import database_url, postgres  # noqa: F401  (fixtures)
from tests.lab.postgres import PostgresServer

from .conftest import problem, serve, tiny_settings

pytestmark = pytest.mark.anyio


async def test_healthz_is_alive_without_a_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "alive"}


async def test_ready_without_a_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["engine"] == "in-process"
    assert set(body["checks"]) == {"database", "restored", "engine"}
    assert all(c["ok"] for c in body["checks"].values())
    assert "none configured" in body["checks"]["database"]["detail"]
    assert body["checks"]["engine"]["detail"].startswith("in-process")


async def test_probes_need_no_token(tmp_path: Path) -> None:
    settings = tiny_settings(
        auth="token",
        database_url=f"sqlite:///{tmp_path}/lab.db",
        admin_token="admin-token-for-probes-0123456789abcdef",
    )
    async with serve(settings) as c:
        assert (await c.get("/api/v1/instances")).status_code == 401  # the API is guarded
        assert (await c.get("/healthz")).json() == {"status": "alive"}
        r = await c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready", r.text


async def test_not_ready_when_the_database_goes_away(
    database_url: str,  # noqa: F811
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Ready on a working database; once it is gone, a 503 naming the database check, while
    /healthz still says alive (the process is fine: restarting it would not help)."""
    if database_url.startswith("sqlite"):
        folder = tmp_path / "data"
        database_url = f"sqlite:///{folder / 'pagelab.db'}"
    async with serve(tiny_settings(database_url=database_url, boot_default=False)) as c:
        r = await c.get("/readyz")
        assert r.status_code == 200, r.text
        db = r.json()["checks"]["database"]
        assert db["ok"] and db["detail"].endswith("answers")
        assert r.json()["checks"]["restored"]["detail"] == "0 instance(s) restored at start-up"

        if database_url.startswith("sqlite"):
            shutil.rmtree(folder)  # the volume unmounted, or the file deleted
        else:
            server: PostgresServer = request.getfixturevalue("postgres")
            server.drop_database(database_url.split("@/", 1)[1].split("?", 1)[0])

        r = await c.get("/readyz")
        body = problem(r, 503, "not-ready")
        assert "database:" in body["detail"] and "restored" not in body["detail"]
        assert body["checks"]["database"]["ok"] is False
        assert body["checks"]["restored"]["ok"] is True
        assert body["checks"]["engine"]["ok"] is True
        assert body["engine"] == "in-process"
        assert (await c.get("/healthz")).status_code == 200


async def test_not_ready_until_the_instances_are_restored(tmp_path: Path) -> None:
    """The readiness names the restore while the lifespan's ``restore_all`` has not run."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/lab.db")
    app = create_app(settings)
    lab = Lab(settings)
    app.state.lab = lab  # the lab the lifespan would make, before its restore_all
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as c:
            body = problem(await c.get("/readyz"), 503, "not-ready")
            assert body["detail"].startswith("this server is not ready (restored: ")
            assert body["checks"]["database"]["ok"] is True
            assert body["checks"]["restored"]["ok"] is False
            await lab.restore_all()
            assert (await c.get("/readyz")).status_code == 200
    finally:
        await lab.shutdown()


async def test_probes_are_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    ready = spec["paths"]["/readyz"]["get"]
    assert "application/problem+json" in ready["responses"]["503"]["content"]
    assert "/healthz" in spec["paths"]
    r = await client.get("/problems/not-ready")
    assert r.status_code == 200 and "Not ready (HTTP 503)" in r.text

"""The default instance is booted at start-up and listed with its vmstats."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.lab.settings import Settings
from app.main import create_app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(default_preset="tiny-16m"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


@pytest.mark.anyio
async def test_default_instance_is_listed_with_vmstats(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/instances")
    assert r.status_code == 200
    body = r.json()
    assert len(body) == 1
    inst = body[0]
    assert inst["name"] == "default" and inst["preset"] == "tiny-16m"
    summary = inst["summary"]
    # 16 MiB from 4 KiB: 4095 page structs (pfn 1 .. 4095)
    assert summary["vm_page_array_size"] == 4095
    assert summary["boot_stage"] == "finished"
    # 1 CPU -> ncpus_fit 1 -> set_assoc_mask = 1024/1 - 1 = 1023
    assert summary["set_assoc_mask"] == 1023
    assert len(inst["state_digest"]) == 32


@pytest.mark.anyio
async def test_unknown_instance_is_a_404_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/instances/99")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "/problems/unknown-instance"

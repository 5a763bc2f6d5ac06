"""The placeholder API: one default instance, booted at start-up, listed with vmstats."""

from __future__ import annotations

import httpx
import pytest

from app.main import app, lifespan


@pytest.fixture
async def client():
    async with lifespan(app):
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
    assert inst["name"] == "default"
    assert inst["config"]["cpus"] == 2
    summary = inst["summary"]
    # 1 GiB from 4 KiB: 262143 page structs (pfn 1 .. 262143)
    assert summary["vm_page_array_size"] == 262143
    assert summary["boot_stage"] == "finished"
    # 2 CPUs -> ncpus_fit 2 -> set_assoc_mask = 1024/2 - 1 = 511
    assert summary["set_assoc_mask"] == 511
    assert len(inst["state_digest"]) == 32


@pytest.mark.anyio
async def test_unknown_instance_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/instances/99")
    assert r.status_code == 404

"""The journal at a glance (``GET …/journal/density``), counted where the journal is: in
SQLite, in Postgres, or in memory without a database.  Every bin is checked against the
journal itself, read page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.lab.settings import Settings
from app.main import create_app

API = "/api/v1"
pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serve(url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(default_preset="tiny-16m", database_url=url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def post(c: httpx.AsyncClient, fn: str, args: dict[str, Any], **body: Any) -> int:
    r = await c.post(f"{API}/instances/1/calls/{fn}", json={"args": args, **body})
    return r.status_code


async def density(c: httpx.AsyncClient, bins: int) -> dict[str, Any]:
    r = await c.get(f"{API}/instances/1/journal/density", params={"bins": bins})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.mark.parametrize("database_url", ["none", "sqlite", "postgres"], indirect=True)
async def test_density_counts_calls_nulls_and_refusals_per_bin(database_url: str) -> None:
    async with serve(database_url) as c:
        pfns = []
        for _ in range(3):  # seqs 1-3: pages
            r = await c.post(f"{API}/instances/1/calls/vm_page_alloc", json={"args": {}})
            pfns.append(r.json()["result"])
        assert await post(c, "vm_page_wakeup", {"m": 5}) == 409  # seq 4: refused, no entry
        # seq 5: the thread sleeps on a busy page: journalled with a NULL result
        sleeps = {"m": pfns[0], "also_m_busy": False, "msg": "pgwait"}
        assert await post(c, "vm_page_busy_wait", sleeps, ctx={"thread": 9}) == 200
        for _ in range(4):  # seqs 6-9
            assert await post(c, "tick", {}) == 200

        whole = await density(c, 256)  # more bins than calls: one seq per bin
        assert whole["seq"] == 9 and whole["width"] == 1 and whole["generation"] == 0
        assert whole["calls"] == [1, 1, 1, 0, 1, 1, 1, 1, 1]
        assert whole["nulls"] == [0, 0, 0, 0, 1, 0, 0, 0, 0]

        two = await density(c, 2)  # width 5: seqs 1-5 and 6-9
        assert (two["width"], two["calls"], two["nulls"]) == (5, [4, 4], [1, 0])
        four = await density(c, 4)  # width 3: 1-3, 4-6, 7-9
        assert (four["width"], four["calls"], four["nulls"]) == (3, [3, 2, 3], [0, 1, 0])

        # the same counts as the journal read page by page
        entries = (await c.get(f"{API}/instances/1/journal", params={"limit": 100})).json()
        seqs = [e["seq"] for e in entries["entries"]]
        for b, n in enumerate(four["calls"]):
            assert n == sum(1 for s in seqs if b * 3 < s <= (b + 1) * 3)

        # a step back starts a new generation: only its journal is counted
        r = await c.post(f"{API}/instances/1/restore", json={"to": 4})
        assert r.status_code == 200, r.text
        after = await density(c, 256)
        assert (after["generation"], after["seq"], after["calls"]) == (1, 4, [1, 1, 1, 0])

        r = await c.get(f"{API}/instances/1/journal/density", params={"bins": 0})
        assert r.status_code == 422 and r.json()["type"] == "/problems/validation"
        r = await c.get(f"{API}/instances/77/journal/density")
        assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-instance"


async def test_an_empty_journal_has_no_bins() -> None:
    async with serve("") as c:
        d = await density(c, 16)
        assert (d["seq"], d["width"], d["calls"], d["nulls"]) == (0, 1, [], [])

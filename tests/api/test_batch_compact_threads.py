"""A compact batch whose calls run on several threads, sleep, refuse and take and release
page busies answers as the readable batch does, call for call: the same results, the
same ``blocked`` answers (``why`` and ``holder``: who took the page's busy, derived from
the calls), the same refusals (a call on a sleeping thread: a 409 problem, no seq), the
same seqs, journal and digest, and afterwards the same busy holders in the page view.

The compact batch runs without records and unwatched, the path where the host looks up
each form once (``hosts.shard.FormPlan``); the readable batch runs call by call.

The story, on a 16 MiB, 2-CPU box: threads 0 and 1 each allocate a page (hard-busied by
that thread); thread 2 waits for thread 0's page and sleeps; a call of thread 2 is then
refused (it sleeps); thread 0 waits for its own page (a self-deadlock, said so); thread 1
releases its page and busies it again through ``vm_page_busy_wait`` (which finds it
free), deactivates it and looks both pages up on CPU 1.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.client import compact_batch, seqs_of

from .conftest import API, serve
from .test_batch_compact import COMPACT, journal, post_compact

pytestmark = pytest.mark.anyio


async def twin(c: httpx.AsyncClient, name: str) -> int:
    r = await c.post(f"{API}/instances", json={"name": name, "memory": "16MiB", "cpus": 2})
    assert r.status_code == 201, r.text
    iid: int = r.json()["id"]
    r = await c.post(f"{API}/instances/{iid}/calls/vm_object_allocate", json={"args": {}})
    assert r.status_code == 200 and r.json()["result"] == 1, r.text
    return iid


def on(thread: int, fn: str, **args: Any) -> dict[str, Any]:
    return {"fn": fn, "args": args, "ctx": {"thread": thread}}


def story(p0: int, p1: int) -> list[dict[str, Any]]:
    return [
        on(2, "vm_page_busy_wait", m=p0),  # sleeps: thread 0 holds it
        on(2, "vm_page_alloc", object=1, pindex=9),  # refused: thread 2 sleeps
        on(0, "vm_page_busy_wait", m=p0),  # sleeps on its own page
        on(1, "vm_page_wakeup", m=p1),  # released
        on(1, "vm_page_busy_wait", m=p1),  # found free: busied by thread 1 again
        on(1, "vm_page_deactivate", m=p1),
        {"fn": "vm_page_lookup", "args": {"object": 1, "pindex": 0}, "ctx": {"cpu": 1}},
        {"fn": "vm_page_lookup", "args": {"object": 1, "pindex": 1}, "ctx": {"cpu": 1}},
    ]


async def test_threads_sleeps_and_busy_holders_match_the_readable_batch() -> None:
    async with serve() as c:
        a, b = await twin(c, "readable"), await twin(c, "compact")
        setup = [
            on(0, "vm_page_alloc", object=1, pindex=0),
            on(1, "vm_page_alloc", object=1, pindex=1),
        ]
        r = await c.post(f"{API}/instances/{a}/calls", json={"calls": setup})
        pfns = [x["result"] for x in r.json()["results"]]
        r = await post_compact(c, b, compact_batch(setup))
        assert r.status_code == 200 and r.json()["results"] == pfns, r.text
        p0, p1 = pfns
        calls = story(p0, p1)
        r = await c.post(f"{API}/instances/{a}/calls", json={"calls": calls})
        assert r.status_code == 200, r.text
        readable = r.json()
        r = await post_compact(c, b, compact_batch(calls))
        assert r.status_code == 200 and r.headers["content-type"] == COMPACT, r.text
        out = r.json()

        items = readable["results"]
        assert [x.get("result") for x in items] == out["results"]
        assert [x.get("seq") for x in items] == seqs_of(out)
        blocked = [{"index": x["index"], "blocked": x["blocked"]} for x in items if "blocked" in x]
        assert out["blocked"] == blocked
        assert [b["index"] for b in blocked] == [0, 2]
        # thread 2 waits for thread 0's page; thread 0 waits for its own: both named
        assert blocked[0]["blocked"]["holder"]["thread"] == 0
        assert "self-deadlock" in blocked[1]["blocked"]["why"]
        errors = [
            {"index": x["index"], "fn": x["fn"], "error": x["error"]} for x in items if "error" in x
        ]
        assert out["errors"] == errors
        assert [(e["index"], e["error"]["type"]) for e in errors] == [(1, "conflict")]
        assert "seq" not in out["errors"][0]
        assert out["state_digest"] == readable["state_digest"]
        assert await journal(c, a) == await journal(c, b)
        for pfn in (p0, p1):
            pa = (await c.get(f"{API}/instances/{a}/pages/{pfn}")).json()["busy"]
            pb = (await c.get(f"{API}/instances/{b}/pages/{pfn}")).json()["busy"]
            assert pa == pb
        holder = (await c.get(f"{API}/instances/{b}/pages/{p1}")).json()["busy"]["holder"]
        assert holder is not None and holder["thread"] == 1 and holder["fn"] == "vm_page_busy_wait"

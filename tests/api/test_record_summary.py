"""Records of bulk calls summarised past ``PAGELAB_RECORD_MAX_MOVES`` in single calls and
both batch formats, and the full record rebuilt by replay at
``GET /instances/{id}/journal/{seq}/record``.

The box is 64 MiB (16 383 page structures); ``vm_contig_pg_alloc`` of 3 000 pages takes a
run of free pages to no queue: 3 000 moves ``PQ_FREE:c -> PQ_NONE``, over a bound of 1 000.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.lab.records import SUMMARY_ENDS

from .conftest import API, problem, serve, tiny_settings

pytestmark = pytest.mark.anyio
PAGES = 3000
BOUND = 1000
CONTIG = {"size": PAGES * 4096}


async def box(c: httpx.AsyncClient, name: str = "box") -> int:
    r = await c.post(f"{API}/instances", json={"name": name, "memory": "64MiB"})
    assert r.status_code == 201, r.text
    iid: int = r.json()["id"]
    return iid


async def contig(c: httpx.AsyncClient, iid: int, size: int = PAGES) -> dict[str, Any]:
    r = await c.post(
        f"{API}/instances/{iid}/calls/vm_contig_pg_alloc",
        json={"args": {"size": size * 4096}, "record": True},
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def check_summary(rec: dict[str, Any], full: dict[str, Any]) -> None:
    """``rec`` is ``full`` summarised: same counters, counts, ends and a path."""
    moves = full["moves"]
    assert len(moves) == PAGES
    assert rec["summarised"] is True and rec["moves_total"] == PAGES
    assert rec["move_counts"] == {"PQ_FREE->PQ_NONE": PAGES}
    assert rec["moves"] == moves[:SUMMARY_ENDS] and rec["moves_tail"] == moves[-SUMMARY_ENDS:]
    assert rec["events_total"] == len(full["events"])
    assert rec["counters"] == full["counters"] and rec["cpu"] == full["cpu"]
    assert rec["counters"]["cpu0.gd_vmstats_adj"]["v_wire_count"] == PAGES
    # the run is contiguous: its pfns follow each other
    pfns = [m["pfn"] for m in moves]
    assert pfns == list(range(pfns[0], pfns[0] + PAGES))


async def test_a_bulk_call_is_summarised_and_its_full_record_rebuilt() -> None:
    async with serve(tiny_settings(record_max_moves=BOUND)) as c:
        iid = await box(c)
        r = await c.post(
            f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}, "record": True}
        )
        small = r.json()["record"]  # under the bound: the record as it is
        assert "summarised" not in small and len(small["moves"]) == 1
        before = (await c.get(f"{API}/instances/{iid}")).json()
        out = await contig(c, iid)
        rec = out["record"]
        assert rec["full_record"] == f"/api/v1/instances/{iid}/journal/{out['seq']}/record"
        assert len(json.dumps(rec)) < 20_000
        r = await c.get(rec["full_record"])
        assert r.status_code == 200, r.text
        full = r.json()
        check_summary(rec, full)
        assert full["moves"][0]["pfn"] == out["result"]  # the run starts at the result
        # rebuilding changed nothing on the instance
        after = (await c.get(f"{API}/instances/{iid}")).json()
        assert after["seq"] == before["seq"] + 1
        assert after["state_digest"] != before["state_digest"]
        again = (await c.get(f"{API}/instances/{iid}")).json()
        assert again["state_digest"] == after["state_digest"]
        assert (await c.get(rec["full_record"])).json() == full  # the same, bit for bit


async def test_an_unbounded_record_matches_the_rebuilt_one() -> None:
    """With the default bound (10 000) the same call's record comes whole: the rebuilt
    record of the summarised call on a twin equals it."""
    async with serve(tiny_settings(record_max_moves=BOUND)) as c:
        iid = await box(c)
        rebuilt = (await c.get((await contig(c, iid))["record"]["full_record"])).json()
    async with serve(tiny_settings()) as c:
        iid = await box(c)
        whole = (await contig(c, iid))["record"]
    assert "summarised" not in whole and whole == rebuilt


async def test_batches_summarise_records_too() -> None:
    async with serve(tiny_settings(record_max_moves=BOUND)) as c:
        a, b = await box(c, "a"), await box(c, "b")
        calls = [{"fn": "vm_contig_pg_alloc", "args": CONTIG}, {"fn": "vm_test_nominal"}]
        r = await c.post(f"{API}/instances/{a}/calls", json={"calls": calls, "record": True})
        items = r.json()["results"]
        body = {
            "forms": [{"fn": "vm_contig_pg_alloc", "args": ["size"]}, {"fn": "vm_test_nominal"}],
            "fn": [0, 1],
            "args": [[CONTIG["size"]], []],
            "record": True,
        }
        r = await c.post(
            f"{API}/instances/{b}/calls",
            content=json.dumps(body),
            headers={"content-type": "application/vnd.pagelab.batch+json"},
        )
        records = r.json()["records"]
        assert records[1] == items[1]["record"] and "summarised" not in records[1]
        ra, rb = items[0]["record"], records[0]
        assert ra["full_record"].startswith(f"/api/v1/instances/{a}/journal/")
        assert rb["full_record"].startswith(f"/api/v1/instances/{b}/journal/")
        assert {k: v for k, v in ra.items() if k != "full_record"} == {
            k: v for k, v in rb.items() if k != "full_record"
        }
        check_summary(rb, (await c.get(rb["full_record"])).json())


async def test_no_full_record_for_a_refused_or_unknown_call() -> None:
    async with serve() as c:
        r = await c.post(f"{API}/instances/1/calls/vm_page_free", json={"args": {"m": 2000}})
        seq = problem(r, 409, "kernel-panic") and (await c.get(f"{API}/instances/1")).json()["seq"]
        doc = problem(await c.get(f"{API}/instances/1/journal/{seq}/record"), 404, "not-found")
        assert "refused" in doc["detail"]
        problem(await c.get(f"{API}/instances/1/journal/99/record"), 404, "not-found")
        problem(await c.get(f"{API}/instances/1/journal/0/record"), 422, "validation")

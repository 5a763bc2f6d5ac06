"""The "why" layer through the HTTP API (issue 11): the explanations a student sees in a
call's answer — the dontneed dice and madvise's skipped pages in the record's events, a
contig request's NULL, a sleeping thread's ``blocked.why`` and the 409 for a call on it
(a self-deadlock said plainly; a timeout offered only when the sleep has one), the wait's
``timed_out`` flags and the instance summary's lagging counts.

The default instance is ``tiny-16m`` (numbers in tests/api/conftest.py): pfn 1..3966
managed, the reserve keeps 255 pages (alist blocks 1..255), free pages pfn 256..3966
(v_free_count 3711), the first vm_page_alloc on CPU 0 returns pfn 3075.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.conftest import API, DEFAULT, FIRST_ALLOC_PFN, call, problem, result
from tests.api.test_api_calls import until_parked

CALLS = f"{API}/instances/{DEFAULT}/calls"


def of_kind(answer: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in answer["record"]["events"] if e["event"] == kind]


@pytest.mark.anyio
async def test_dontneed_and_madvise_explain_themselves(client: httpx.AsyncClient) -> None:
    obj = await result(client, "vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 8})
    p = await result(client, "vm_page_alloc", {"object": obj, "pindex": 0})
    await call(client, "vm_page_activate", {"m": p})
    # §8.10: the first dontneed anywhere sees dnw 1: 1 mod 512 < 16, left alone
    answer = (await call(client, "vm_page_dontneed", {"m": p})).json()
    (e,) = of_kind(answer, "dontneed")
    assert (e["dnw"], e["phase"], e["of"], e["branch"]) == (1, 1, 512, "left alone")
    assert "dnw mod 512 = 1 < 16, the 1 in 32 calls that leave it alone" in e["why"]
    # the page is still hard-busied (vm_page_alloc): madvise skips it and says so
    answer = (
        await call(
            client,
            "madvise",
            {"object": obj, "pindex": 0, "count": 8, "advice": "MADV_DONTNEED"},
        )
    ).json()
    assert answer["result"] == 0
    (mad,) = of_kind(answer, "madvise")
    assert mad["skipped"] == [
        {
            "pfn": p,
            "pindex": 0,
            "why": "busy: hard-busied (PBUSY_LOCKED); the kernel sleeps on it (madvpo) and "
            "retries, the simulator skips it",
        }
    ]


@pytest.mark.anyio
async def test_contig_null_says_which_test_cut_the_runs(client: httpx.AsyncClient) -> None:
    # 512 pages (2 MiB): the reserve has 255 free pages, fewer than the block of 512; the
    # fallback finds the run pfn 256..3966 (3711 pages): starts 256..3455 = 3200 runs of
    # 512, every one inside [0, 2^40), none at a multiple of 1 GiB
    args = {
        "size": 512 * 4096,
        "low": 0,
        "high": 1 << 40,
        "alignment": 1 << 30,
        "boundary": 0,
        "mflags": "M_NOWAIT",
    }
    answer = (await call(client, "vm_contig_pg_alloc", args)).json()
    assert answer["result"] is None
    (reserve,) = of_kind(answer, "alloc_contig")
    assert (reserve["block"], reserve["bl_free"]) == (512, 255)
    (fallback,) = of_kind(answer, "contig_pg_alloc")
    scan = fallback["passes"][0]["scan"]
    assert scan["longest_run"] == [256, 3711]
    assert (scan["runs"], scan["in_low_high"], scan["aligned"]) == (3200, 3200, 0)
    assert scan["cut_by"] == "alignment"
    assert "none at a multiple of the alignment 0x40000000" in fallback["why_null"]


@pytest.mark.anyio
async def test_a_thread_waiting_on_its_own_busy_page_is_a_self_deadlock(
    client: httpx.AsyncClient,
) -> None:
    pfn = await result(client, "vm_page_alloc")  # seq 1: hard-busied by thread 0
    assert pfn == FIRST_ALLOC_PFN
    answer = (await call(client, "vm_page_busy_wait", {"m": pfn})).json()
    why = answer["blocked"]["why"]
    assert "a self-deadlock" in why
    assert "held busy by thread 0 itself (it took the busy in call #1, vm_page_alloc)" in why
    assert f"vm_page_wakeup m={pfn}" in why
    assert "no timeout (timo 0)" in why and "let it time out" not in why
    # thread 0 is stuck: its next call is a 409 that says the same, plainly
    r = await call(client, "vm_page_alloc", ok=False)
    body = problem(r, 409, "conflict")
    assert "a self-deadlock" in body["detail"] and "let it time out" not in body["detail"]
    # another thread waiting on the same page is no deadlock: it waits for thread 0
    answer = (await call(client, "vm_page_busy_wait", {"m": pfn}, ctx={"thread": 2})).json()
    why = answer["blocked"]["why"]
    assert "self-deadlock" not in why and "held by thread 0 (call #1, vm_page_alloc)" in why


async def exhaust(c: httpx.AsyncClient) -> None:
    """Allocate 3650 of the 3711 free pages (thread 1): below v_free_min, so vm_wait
    sleeps (61 free < v_free_min 83, §13.1)."""
    calls = [{"fn": "vm_page_alloc", "args": {}, "ctx": {"thread": 1}}] * 3650
    r = await c.post(f"{API}/instances/{DEFAULT}/calls", json={"calls": calls})
    assert r.status_code == 200 and r.json()["errors"] == 0


@pytest.mark.anyio
async def test_a_sleep_with_a_timeout_offers_tick(client: httpx.AsyncClient) -> None:
    await exhaust(client)
    answer = (await call(client, "vm_wait", {"timo": 3}, ctx={"thread": 5})).json()
    assert answer["blocked"]["timo"] == 3
    r = await call(client, "vm_page_alloc", ctx={"thread": 5}, ok=False)
    detail = problem(r, 409, "conflict")["detail"]
    # ticks 0 -> deadline 0 + 3
    assert "let it time out (tick: its sleep ends at tick 3, 3 tick(s) from now)" in detail
    assert "wake it (wakeup on v_free_count)" in detail


@pytest.mark.anyio
async def test_a_wait_that_ends_without_a_wakeup_says_timed_out(
    client: httpx.AsyncClient,
) -> None:
    await exhaust(client)
    body = {"args": {"timo": 3}, "ctx": {"thread": 5}, "wait": True, "timeout_s": 0.01}
    answer = (await client.post(f"{CALLS}/vm_wait", json=body)).json()
    assert answer["completed"] is None and answer["timed_out"] is True
    assert "thread 5 still sleeps on v_free_count" in answer["wait_note"]
    # A second sleeper waits while ticks pass: its sleep ends by its own timeout (3 ticks),
    # not a wakeup; the wait saw it finish
    body = {"args": {"timo": 3}, "ctx": {"thread": 6}, "wait": True, "timeout_s": 60}
    task = asyncio.create_task(client.post(f"{CALLS}/vm_wait", json=body))
    await until_parked(client, 6)
    await call(client, "tick", {"n": 3})
    answer = (await asyncio.wait_for(task, timeout=60)).json()
    assert answer["timed_out"] is False
    assert answer["completed"] == {
        "thread": 6,
        "fn": "vm_wait",
        "result": None,
        "timed_out": True,
    }
    # no wait asked: nothing timed out
    assert (await call(client, "vm_page_alloc")).json()["timed_out"] is None


@pytest.mark.anyio
async def test_the_summary_says_when_the_global_free_count_lags(
    client: httpx.AsyncClient,
) -> None:
    await call(client, "vm_page_alloc")
    # the free page left PQ_FREE through CPU 0's adjustment: global 3711, pending -1
    summary = (await client.get(f"{API}/instances/{DEFAULT}")).json()["summary"]
    assert summary["v_free_count"] == 3711
    assert summary["counts_lag"] == {
        "v_free_count": {"global": 3711, "pending": -1, "folded": 3710}
    }
    assert "v_free_count 3711 (folded: 3710)" in summary["lag_note"]
    assert "vmstats_rollup" in summary["lag_note"]
    await call(client, "vmstats_rollup")
    summary = (await client.get(f"{API}/instances/{DEFAULT}")).json()["summary"]
    assert summary["v_free_count"] == 3710
    assert summary["counts_lag"] == {} and summary["lag_note"] is None

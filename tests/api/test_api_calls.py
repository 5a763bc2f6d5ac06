"""Kernel calls over HTTP: single calls by name, result shapes, records, the calling
context, errors, batches, blocking calls (two contending clients) and determinism.

The default instance is tiny-16m; its page numbers are worked out in ``conftest.py``:
colour 0 of PQ_FREE holds, head to tail, pfn 3075, 2050, 1025.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import app.main
from app.core.registry import FUNCTIONS

from .conftest import (
    API,
    DEFAULT,
    FIRST_ALLOC_PFN,
    call,
    create,
    digest,
    page,
    problem,
    result,
    second_client,
)

CALLS = f"{API}/instances/{DEFAULT}/calls"


def pc_of(pfn: int) -> int:
    """§2.3 colour twist."""
    return (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & 1023


async def thread_state(c: httpx.AsyncClient, tid: int, instance: int = DEFAULT) -> Any:
    r = await c.get(f"{API}/instances/{instance}/threads")
    assert r.status_code == 200
    return next((t for t in r.json()["threads"] if t["tid"] == tid), None)


async def until_parked(c: httpx.AsyncClient, tid: int, instance: int = DEFAULT) -> dict[str, Any]:
    """Poll the threads view until ``tid`` sleeps (bounded; yields between polls)."""
    for _ in range(5000):
        th = await thread_state(c, tid, instance)
        if th is not None and th["state"] == "sleeping":
            out: dict[str, Any] = th
            return out
        await asyncio.sleep(0)
    raise AssertionError(f"thread {tid} never went to sleep")


# ------------------------------------------------------------------ single calls
@pytest.mark.anyio
async def test_alloc_takes_flags_as_names(client: httpx.AsyncClient) -> None:
    # colour 0 (1 CPU, NULL object, pindex 0) for all four; head first: 3075, 2050, 1025.
    # ZERO is ignored by vm_page_alloc (§1.6); QUICK and SYSTEM use select_free (§7.1).
    assert (
        await result(client, "vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL|VM_ALLOC_ZERO"}) == 3075
    )
    assert await result(client, "vm_page_alloc", {"page_req": ["VM_ALLOC_QUICK"]}) == 2050
    assert await result(client, "vm_page_alloc", {"page_req": "system"}) == 1025
    # colour 0 is now empty: the widening search (mask 1023 -> the whole ring from 0)
    # probes colour 1 next, whose head is the highest pfn with pc 1: 3074 (3074 ^ 3 = 3073)
    assert pc_of(3074) == 1
    assert await result(client, "vm_page_alloc", {"page_req": 1}) == 3074  # NORMAL = 0x1


@pytest.mark.anyio
async def test_returned_page_state(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    p = await page(client, pfn)
    # §7.1: hard-busied, on no queue, flags 0, act/valid/dirty/wire/hold 0, no object
    assert p["queue"] == "PQ_NONE" and p["queue_index"] == 0
    assert p["busy"] == {
        "locked": True,
        "wanted": False,
        "swapinprog": False,
        "soft_count": 0,
        # who took the busy, as the lab saw it: this call (seq 1) on thread 0
        "holder": {"pfn": pfn, "thread": 0, "seq": 1, "fn": "vm_page_alloc"},
    }
    assert p["busy_count"] == 0x80000000
    assert p["flags"] == 0 and p["flag_names"] == []
    assert (p["act_count"], p["valid"], p["dirty"], p["wire_count"], p["hold_count"]) == (0,) * 5
    assert p["object"] is None and p["pindex"] == 0


@pytest.mark.anyio
async def test_object_alloc_lookup_free(client: httpx.AsyncClient) -> None:
    obj = await result(client, "vm_object_allocate", {"type": "OBJT_DEFAULT", "pg_color": 100})
    assert obj == 1
    # §6.1 on 1 CPU: colour = (5 + 100) % 1024 = 105.  pc 105: pfn 1128 (104 ^ 1),
    # 2155 (107 ^ 2), 3178 (106 ^ 3); pfn 105 is in the DMA reserve.  Head: 3178.
    assert pc_of(3178) == 105
    pfn = await result(client, "vm_page_alloc", {"object": obj, "pindex": 5})
    assert pfn == 3178
    p = await page(client, pfn)
    assert p["object"] == obj and p["pindex"] == 5
    assert await result(client, "vm_page_lookup", {"object": obj, "pindex": 5}) == 3178
    assert await result(client, "vm_page_lookup", {"object": obj, "pindex": 6}) is None
    r = await client.get(f"{API}/instances/{DEFAULT}/objects/{obj}")
    assert r.json()["pages"] == [{"pindex": 5, "pfn": 3178}]
    assert r.json()["resident_page_count"] == 1
    # vm_page_free: the page leaves the object and goes to the head of PQ_FREE + pc (§8.2)
    assert await result(client, "vm_page_free", {"m": pfn}) is None
    assert await result(client, "vm_page_lookup", {"object": obj, "pindex": 5}) is None
    p = await page(client, pfn)
    assert p["queue"] == "PQ_FREE:105" and p["object"] is None and not p["busy"]["locked"]
    q = (await client.get(f"{API}/instances/{DEFAULT}/queues/PQ_FREE/105")).json()
    assert q["pages"][0] == 3178 and q["lcnt"] == 3


@pytest.mark.anyio
async def test_alias_names_the_canonical_function(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    r = await call(client, "vm_page_free_toq", {"m": pfn})
    assert r.json()["fn"] == "vm_page_free"


@pytest.mark.anyio
async def test_result_shapes(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    assert isinstance(pfn, int)
    # bool: busy_try returns TRUE on failure (§9); the page is hard-busied by the alloc
    assert await result(client, "vm_page_busy_try", {"m": pfn}) is True
    assert await result(client, "vm_page_wakeup", {"m": pfn}) is None
    assert await result(client, "vm_page_busy_try", {"m": pfn}) is False
    # int: §6.1 on 1 CPU, cpuscale = 1024: colour = 0*1024 + (5 + 0) % 1024 = 5
    assert await result(client, "vm_get_pg_color", {"cpuid": 0, "pindex": 5}) == 5
    # int: vm_page_bits(512, 1024) = chunks 1 and 2 -> 0b110 (§12.1)
    assert await result(client, "vm_page_bits", {"base": 512, "size": 1024}) == 0b110
    # text: DDB output
    text = await result(client, "ddb", {"command": "show page"})
    assert isinstance(text, str) and text.startswith("vmstats.v_free_count: ")


@pytest.mark.anyio
async def test_record_is_present_unless_record_false(client: httpx.AsyncClient) -> None:
    r = (await call(client, "vm_page_alloc")).json()
    rec = r["record"]
    assert r["result"] == FIRST_ALLOC_PFN and r["blocked"] is None and r["completed"] is None
    assert rec["cpu"] == 0
    assert rec["moves"] == [{"pfn": 3075, "from": "PQ_FREE:0", "to": "PQ_NONE"}]
    # §5: removal from a queue is -1 in gd_vmstats_adj and gd_vmstats; global untouched
    assert rec["counters"] == {
        "cpu0.gd_vmstats_adj": {"v_free_count": -1},
        "cpu0.gd_vmstats": {"v_free_count": -1},
    }
    alloc = next(e for e in rec["events"] if e["event"] == "alloc")
    assert alloc["color"] == 0 and alloc["result"] == 3075
    r = (await call(client, "vm_page_alloc", record=False)).json()
    assert r["result"] == 2050 and r["record"] is None


@pytest.mark.anyio
async def test_ctx_cpu_picks_the_color(client: httpx.AsyncClient) -> None:
    inst = await create(client, {"name": "two", "memory": "16MiB", "cpus": 2})
    iid = inst["id"]
    # §6.1, unknown topology, 2 CPUs: cpuscale = 512, colour = cpu*512 + pindex % 512
    r1 = (await call(client, "vm_page_alloc", instance=iid, ctx={"cpu": 1})).json()
    assert r1["record"]["cpu"] == 1
    assert next(e for e in r1["record"]["events"] if e["event"] == "alloc")["color"] == 512
    # Colour 512 holds boot pages 1537 (513^1), 2562 (514^2), 3587 (515^3), and pfn 512,
    # freed to the queue head by vm_page_startup_finish (§2.4) after boot: head = 512.
    assert r1["result"] == 512
    assert "cpu1.gd_vmstats_adj" in r1["record"]["counters"]
    r0 = (await call(client, "vm_page_alloc", instance=iid, ctx={"cpu": 0})).json()
    assert r0["result"] == 3075 and r0["record"]["cpu"] == 0
    p = await page(client, 512, iid)
    assert p["pc"] == 512


@pytest.mark.anyio
async def test_ctx_nice_shifts_the_vm_wait_trip_point(client: httpx.AsyncClient) -> None:
    # §4.3 / §13.1: vm_wait sleeps iff vm_paging_min_nice(nice + 1).  With v_free_min 3000
    # and v_paging_wait 4601: d = (4601 - 3000 - 1) >> 1 = 800.
    for name, value in (("vm.v_free_min", 3000), ("vm.v_paging_wait", 4601)):
        r = await client.put(f"{API}/instances/{DEFAULT}/sysctls/{name}", json={"value": value})
        assert r.status_code == 200, r.text
    await call(client, "vmstats_rollup")  # the CPU snapshot sees the new thresholds (§5)
    # FC = 3711 free + 0 cache.  nice -20: k = (-19+20)*800/40 = 20 -> 3020 > 3711? no.
    calm = (await call(client, "vm_wait", ctx={"thread": 10, "nice": -20})).json()
    assert calm["blocked"] is None
    assert not [e for e in calm["record"]["events"] if e["event"] == "sleep"]
    # nice 20: k = (21+20)*800/40 = 820 -> 3820 > 3711: one sleep on v_free_count
    tense = (await call(client, "vm_wait", ctx={"thread": 11, "nice": 20})).json()
    sleeps = [e for e in tense["record"]["events"] if e["event"] == "sleep" and e["tid"] == 11]
    assert [(e["channel"], e["timo"]) for e in sleeps] == [("v_free_count", 100)]  # timo 0 -> hz
    # vm_wait also woke the pageout daemon, which found free+cache above its targets
    # (3711 > v_paging_target1 332, > v_free_min + hysteresis 3016) and woke v_free_count
    # (§15.2 phase 4) within the same request: the response says where it slept and that
    # the call completed.
    assert tense["blocked"]["channel"] == "v_free_count"
    assert tense["completed"] == {
        "thread": 11,
        "fn": "vm_wait",
        "result": None,
        "timed_out": False,
    }
    th = await thread_state(client, 11)
    assert th["nice"] == 20 and th["state"] == "idle"


@pytest.mark.anyio
async def test_a_call_resumed_within_its_own_request_does_not_wait(served: Any) -> None:
    """The same situation with wait=true: the outcome is known when the call returns, so
    the request must not sit out its timeout (max_wait_s is large here)."""
    async with served(max_wait_s=3600) as c:
        for name, value in (("vm.v_free_min", 3000), ("vm.v_paging_wait", 4601)):
            r = await c.put(f"{API}/instances/{DEFAULT}/sysctls/{name}", json={"value": value})
            assert r.status_code == 200
        await call(c, "vmstats_rollup")
        body = {"args": {}, "ctx": {"thread": 11, "nice": 20}, "wait": True, "timeout_s": 3600}
        r = await asyncio.wait_for(c.post(f"{CALLS}/vm_wait", json=body), timeout=60)
        assert r.json()["completed"] == {
            "thread": 11,
            "fn": "vm_wait",
            "result": None,
            "timed_out": False,
        }


# ------------------------------------------------------------------ errors
@pytest.mark.anyio
async def test_unknown_function(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{CALLS}/vm_page_allocate", json={"args": {}})
    p = problem(r, 404, "unknown-function")
    assert "vm_page_allocate" in p["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fn", "body", "words"),
    [
        ("vm_page_alloc", {"args": {"colour": 1}}, ["no argument colour", "page_req"]),
        ("vm_page_free", {"args": {}}, ["needs the argument 'm'"]),
        ("vm_page_free", {"args": {"m": "abc"}}, ["page frame number", "'abc'"]),
        (
            "vm_page_alloc",
            {"args": {"page_req": "VM_ALLOC_BOGUS"}},
            ["VM_ALLOC_BOGUS", "known flags"],
        ),
        ("vm_page_alloc", {"args": {"object": 99}}, ["no object 99"]),
        ("vm_page_alloc", {"args": {}, "ctx": {"cpu": 1}}, ["cpu 1 does not exist"]),
        ("vm_page_alloc", {"args": [1]}, ["args"]),
        ("vm_page_alloc", {"args": {}, "ctx": {"nice": 21}}, ["ctx.nice"]),
        ("vm_page_alloc", {"args": {}, "timeout_s": 0}, ["timeout_s"]),
        ("vm_page_alloc", {"args": {}, "wait": "yes"}, ["wait"]),
        ("tick", {"args": {"n": -1}}, ["n must be from 0"]),
    ],
)
async def test_bad_arguments_are_422_with_a_readable_detail(
    client: httpx.AsyncClient, fn: str, body: dict[str, Any], words: list[str]
) -> None:
    before = await digest(client)
    p = problem(await client.post(f"{CALLS}/{fn}", json=body), 422, "validation")
    for w in words:
        assert w in p["detail"], p["detail"]
    assert await digest(client) == before


@pytest.mark.anyio
async def test_kernel_panic_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    await call(client, "vm_page_wire", {"m": pfn})
    before = await digest(client)
    # §8.2: vm_page_free_toq of a wired page panics
    r = await call(client, "vm_page_free", {"m": pfn}, ok=False)
    p = problem(r, 409, "kernel-panic")
    assert p["function"] == "vm_page_free_toq"
    assert p["panic"] and p["detail"] == f"panic: {p['panic']}"
    assert await digest(client) == before
    # §9: vm_page_wakeup asserts PBUSY_LOCKED; free page 1025 is not busied
    r = await call(client, "vm_page_wakeup", {"m": 1025}, ok=False)
    p = problem(r, 409, "kernel-panic")
    assert p["function"] == "vm_page_wakeup" and "PBUSY_LOCKED" in p["panic"]
    # §1.6: page_req needs an allocation class
    r = await call(client, "vm_page_alloc", {"page_req": "VM_ALLOC_ZERO"}, ok=False)
    p = problem(r, 409, "kernel-panic")
    assert "VM_ALLOC_NORMAL" in p["panic"]
    assert await digest(client) == before


# ------------------------------------------------------------------ batches
@pytest.mark.anyio
async def test_batch_gives_per_call_results(client: httpx.AsyncClient) -> None:
    body = {
        "calls": [
            {"fn": "vm_page_alloc"},
            {"fn": "vm_page_alloc", "args": {"page_req": "VM_ALLOC_QUICK"}},
            {"fn": "vm_page_free", "args": {"m": 3075}},
            {"fn": "vm_get_pg_color", "args": {"pindex": 9}},
        ]
    }
    r = await client.post(CALLS, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    # 3075 then 2050 (colour 0 head to tail); the free returns NULL; colour (9+0)%1024
    assert [x["result"] for x in out["results"]] == [3075, 2050, None, 9]
    assert [x["index"] for x in out["results"]] == [0, 1, 2, 3]
    assert [x["fn"] for x in out["results"]] == [
        "vm_page_alloc",
        "vm_page_alloc",
        "vm_page_free",
        "vm_get_pg_color",
    ]
    assert all("record" not in x for x in out["results"])  # record defaults to false
    assert out["completed"] == 4 and out["errors"] == 0
    assert out["state_digest"] == await digest(client)
    assert (await page(client, 3075))["queue"] == "PQ_FREE:0"


@pytest.mark.anyio
async def test_batch_record_true(client: httpx.AsyncClient) -> None:
    r = await client.post(CALLS, json={"calls": [{"fn": "vm_page_alloc"}], "record": True})
    item = r.json()["results"][0]
    assert item["record"]["moves"] == [{"pfn": 3075, "from": "PQ_FREE:0", "to": "PQ_NONE"}]


@pytest.mark.anyio
async def test_batch_errors_inline_and_stop_on_error(client: httpx.AsyncClient) -> None:
    calls = [
        {"fn": "vm_page_alloc"},
        {"fn": "vm_page_wakeup", "args": {"m": 1025}},  # not busied: panic
        {"fn": "vm_page_alloc", "args": {"bogus": 1}},  # validation
        {"fn": "no_such_function"},
        {"fn": "vm_page_alloc"},
    ]
    out = (await client.post(CALLS, json={"calls": calls})).json()
    res = out["results"]
    assert res[0]["result"] == 3075
    assert res[1]["error"]["type"] == "kernel-panic" and "PBUSY_LOCKED" in res[1]["error"]["detail"]
    assert res[2]["error"]["type"] == "validation" and "bogus" in res[2]["error"]["detail"]
    assert res[3]["error"]["type"] == "unknown-function"
    assert res[4]["result"] == 2050  # the errors changed nothing
    assert out["completed"] == 2 and out["errors"] == 3
    r = await client.post(f"{API}/instances/{DEFAULT}/reset")
    assert r.status_code == 200
    out = (await client.post(CALLS, json={"calls": calls, "stop_on_error": True})).json()
    assert [x["index"] for x in out["results"]] == [0, 1]
    assert "error" in out["results"][1]
    assert out["completed"] == 1 and out["errors"] == 1


@pytest.mark.anyio
async def test_max_batch(served: Any) -> None:
    async with served(max_batch=10) as c:
        calls = [{"fn": "vm_test_nominal"}] * 10
        r = await c.post(f"{API}/instances/{DEFAULT}/calls", json={"calls": calls})
        assert r.status_code == 200 and r.json()["completed"] == 10
        # vm_test_nominal = vm_paging_min(): 83 + 0 > 3711? no -> false (§4.3)
        assert {x["result"] for x in r.json()["results"]} == {False}
        before = await digest(c)
        r = await c.post(f"{API}/instances/{DEFAULT}/calls", json={"calls": calls + calls[:1]})
        p = problem(r, 413, "too-large")
        assert "10" in p["detail"]
        assert await digest(c) == before


@pytest.mark.anyio
async def test_body_above_the_size_limit(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.main, "MAX_BODY_BYTES", 1000)
    body = httpx.Request("POST", "/", json={"calls": [{"fn": "vm_page_alloc"}] * 50}).content
    assert len(body) > 1000
    headers = {"content-type": "application/json"}
    before = await digest(client)
    r = await client.post(CALLS, content=body, headers=headers)
    p = problem(r, 413, "too-large")
    assert "1000" in p["detail"]

    async def chunked() -> Any:  # no Content-Length: the limit must count what arrives
        for k in range(0, len(body), 256):
            yield body[k : k + 256]

    r = await client.post(CALLS, content=chunked(), headers=headers)
    assert "content-length" not in r.request.headers
    problem(r, 413, "too-large")
    assert await digest(client) == before
    # a small body still passes
    r = await client.post(CALLS, json={"calls": [{"fn": "vm_page_alloc"}]})
    assert r.status_code == 200


@pytest.mark.anyio
async def test_batch_length_limits(served: Any) -> None:
    async with served(max_batch=1000) as c:
        calls = [{"fn": "vm_test_nominal"}] * 1001
        r = await c.post(f"{API}/instances/{DEFAULT}/calls", json={"calls": calls})
        problem(r, 413, "too-large")
        # the schema's own bound: more than 1 000 000 calls is a validation error
        big = b'{"calls": [' + b",".join([b"{}"] * 1_000_001) + b"]}"
        r = await c.post(
            f"{API}/instances/{DEFAULT}/calls",
            content=big,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422


@pytest.mark.anyio
async def test_functions_lists_every_registry_function(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/functions")
    assert r.status_code == 200
    listed = {f["name"]: f for f in r.json()}
    assert set(listed) == {f.name for f in FUNCTIONS}
    for f in FUNCTIONS:
        item = listed[f.name]
        assert item["models"] == f.models
        assert [p["name"] for p in item["params"]] == [p.name for p in f.params]
        assert all(
            {"name", "kind", "required", "default", "help"} <= set(p) for p in item["params"]
        )
    alloc = listed["vm_page_alloc"]
    assert alloc["returns"] == "page_or_null"
    assert [(p["name"], p["required"]) for p in alloc["params"]] == [
        ("object", False),
        ("pindex", False),
        ("page_req", False),
    ]
    assert listed["vm_page_free"]["models"] == "vm_page_free_toq"
    assert set(listed["vm_page_free"]["aliases"]) == {"vm_page_free_toq", "vm_page_free_zero"}
    assert listed["vm_page_busy_wait"]["sleeps"] is True
    tick = next(p for p in listed["tick"]["params"] if p["name"] == "n")
    assert tick["min"] == 0 and tick["default"] == 1
    # every listed function is callable: a wrong argument is a 422, never a 404
    for name in listed:
        r = await client.post(f"{CALLS}/{name}", json={"args": {"__nope__": 1}})
        problem(r, 422, "validation")


# ------------------------------------------------------------------ blocking calls
@pytest.mark.anyio
async def test_two_clients_contend_for_a_page(client: httpx.AsyncClient) -> None:
    """Client A waits in vm_page_busy_wait as thread 7; client B's vm_page_wakeup
    releases it; A's response carries the outcome."""
    pfn = await result(client, "vm_page_alloc")  # hard-busied by thread 0 (§7.1)
    async with second_client(client) as b:
        body = {"args": {"m": pfn}, "ctx": {"thread": 7}, "wait": True, "timeout_s": 10}
        a_task = asyncio.create_task(client.post(f"{CALLS}/vm_page_busy_wait", json=body))
        th = await until_parked(b, 7)
        assert th["channel"] == f"page:{pfn}" and th["call"] == "vm_page_busy_wait"
        assert not a_task.done()
        p = await page(b, pfn)
        assert p["waiters"] == [7] and p["busy"]["wanted"]  # §9: sleeping sets WANTED
        woke = await b.post(f"{CALLS}/vm_page_wakeup", json={"args": {"m": pfn}})
        assert woke.status_code == 200
        rec = woke.json()["record"]
        assert [x["tid"] for x in rec["resumed"]] == [7]
        a = await asyncio.wait_for(a_task, timeout=30)
    assert a.status_code == 200, a.text
    out = a.json()
    assert out["completed"] == {
        "thread": 7,
        "fn": "vm_page_busy_wait",
        "result": None,
        "timed_out": False,  # a wakeup released it
    }
    assert out["timed_out"] is False  # the wait saw it finish
    assert out["blocked"]["thread"] == 7 and out["blocked"]["channel"] == f"page:{pfn}"
    # thread 7 now owns the hard busy; nobody waits and WANTED is clear
    p = await page(client, pfn)
    assert p["busy"]["locked"] and not p["busy"]["wanted"] and p["waiters"] == []
    th = await thread_state(client, 7)
    assert th is None or th["state"] == "idle"


@pytest.mark.anyio
async def test_without_wait_the_call_returns_blocked(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    r = await call(client, "vm_page_busy_wait", {"m": pfn, "msg": "mywait"}, ctx={"thread": 7})
    out = r.json()
    assert out["result"] is None and out["completed"] is None
    assert out["blocked"]["thread"] == 7
    assert out["blocked"]["channel"] == f"page:{pfn}"
    assert out["blocked"]["wmesg"] == "mywait"
    threads = (await client.get(f"{API}/instances/{DEFAULT}/threads")).json()
    assert threads["channels"][f"page:{pfn}"] == [7]


@pytest.mark.anyio
async def test_a_parked_threads_next_call_is_a_409_conflict(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    await call(client, "vm_page_busy_wait", {"m": pfn}, ctx={"thread": 7})
    before = await digest(client)
    r = await call(client, "vm_page_alloc", ctx={"thread": 7}, ok=False)
    p = problem(r, 409, "conflict")
    assert "thread 7" in p["detail"] and "vm_page_busy_wait" in p["detail"]
    assert f"page:{pfn}" in p["detail"]
    assert await digest(client) == before
    # the same refusal inline in a batch
    batch = {"calls": [{"fn": "vm_page_alloc", "ctx": {"thread": 7}}]}
    item = (await client.post(CALLS, json=batch)).json()["results"][0]
    assert item["error"]["type"] == "conflict" and "thread 7" in item["error"]["detail"]
    # other threads and the simulator verbs still run
    assert await result(client, "vm_page_alloc", ctx={"thread": 8}) == 2050
    assert await result(client, "wakeup", {"channel": f"page:{pfn}"}, ctx={"thread": 7}) == 1


@pytest.mark.anyio
async def test_a_wait_that_times_out_leaves_the_thread_parked(client: httpx.AsyncClient) -> None:
    pfn = await result(client, "vm_page_alloc")
    body = {"args": {"m": pfn}, "ctx": {"thread": 7}, "wait": True, "timeout_s": 0.05}
    r = await client.post(f"{CALLS}/vm_page_busy_wait", json=body)
    assert r.status_code == 200
    out = r.json()
    assert out["completed"] is None
    assert out["blocked"]["thread"] == 7 and out["blocked"]["channel"] == f"page:{pfn}"
    th = await thread_state(client, 7)
    assert th["state"] == "sleeping" and th["channel"] == f"page:{pfn}"
    # a later wakeup still resumes it
    rec = (await call(client, "vm_page_wakeup", {"m": pfn})).json()["record"]
    assert [x["tid"] for x in rec["resumed"]] == [7]


@pytest.mark.anyio
async def test_a_wait_is_capped_by_the_server(served: Any) -> None:
    async with served(max_wait_s=0.05) as c:
        pfn = await result(c, "vm_page_alloc")
        body = {"args": {"m": pfn}, "ctx": {"thread": 7}, "wait": True, "timeout_s": 3600}
        r = await c.post(f"{API}/instances/{DEFAULT}/calls/vm_page_busy_wait", json=body)
        assert r.status_code == 200 and r.json()["completed"] is None
        assert r.json()["blocked"]["thread"] == 7


@pytest.mark.anyio
async def test_a_call_that_would_spin_forever_is_a_would_sleep_problem(
    client: httpx.AsyncClient,
) -> None:
    """§9 + §7.3: leave a page with only PBUSY_WANTED set (a waiter asked for a wakeup,
    then vm_page_io_finish dropped the last soft busy without one).  vm_page_grab's
    lookup fails on any busy bit while vm_page_sleep_busy returns at once (no LOCKED, soft
    count 0): the kernel would spin forever."""
    obj = await result(client, "vm_object_allocate", {"pg_color": 0})
    pfn = await result(client, "vm_page_alloc", {"object": obj, "pindex": 0})
    await call(client, "vm_page_io_start", {"m": pfn})  # soft 1 (needs LOCKED)
    await call(client, "vm_page_wakeup", {"m": pfn})  # LOCKED off, soft stays 1
    # busy_wait with also_m_busy sleeps on any bit: WANTED set, thread 7 parked
    await call(client, "vm_page_busy_wait", {"m": pfn, "also_m_busy": True}, ctx={"thread": 7})
    await call(client, "vm_page_io_finish", {"m": pfn})  # soft 0, no wakeup
    p = await page(client, pfn)
    assert p["busy"] == {
        "locked": False,
        "wanted": True,
        "swapinprog": False,
        "soft_count": 0,
        "holder": None,  # not hard-busied: nobody holds it
    }
    before = await digest(client)
    r = await call(
        client,
        "vm_page_grab",
        {"object": obj, "pindex": 0, "flags": "VM_ALLOC_NORMAL|VM_ALLOC_RETRY"},
        ok=False,
    )
    body = problem(r, 409, "would-sleep")
    assert body["function"] == "vm_page_grab" and "forever" in body["detail"]
    assert await digest(client) == before


# ------------------------------------------------------------------ determinism
BATCH = [
    {"fn": "vm_object_allocate", "args": {"type": "OBJT_DEFAULT", "size": 16}},
    *({"fn": "vm_page_alloc", "args": {"object": 1, "pindex": k}} for k in range(8)),
    {"fn": "vm_page_activate", "args": {"m": 3075}},
    {"fn": "tick", "args": {"n": 3}},
    {"fn": "vm_page_alloc", "ctx": {"cpu": 1}},
]


@pytest.mark.anyio
async def test_same_batch_same_seed_same_digest(client: httpx.AsyncClient) -> None:
    ids = []
    for name, seed in (("s1", 7), ("s2", 7), ("s3", 8)):
        inst = await create(client, {"name": name, "memory": "16MiB", "cpus": 2, "seed": seed})
        ids.append(inst["id"])
    outs = []
    for iid in ids:
        r = await client.post(f"{API}/instances/{iid}/calls", json={"calls": BATCH})
        assert r.status_code == 200 and r.json()["errors"] == 0, r.text
        outs.append(r.json())
    assert outs[0]["state_digest"] == outs[1]["state_digest"]
    assert outs[0]["results"] == outs[1]["results"]
    # another seed gives another thread address to vm_quickcolor, so the object's
    # pg_color and the pages it gets differ
    assert outs[2]["state_digest"] != outs[0]["state_digest"]
    pages_of = [[x["result"] for x in o["results"][1:9]] for o in outs]
    assert pages_of[0] == pages_of[1] and pages_of[2] != pages_of[0]
    objs = [
        (await client.get(f"{API}/instances/{iid}/objects/1")).json()["pg_color"] for iid in ids
    ]
    assert objs[0] == objs[1] and objs[2] != objs[0]

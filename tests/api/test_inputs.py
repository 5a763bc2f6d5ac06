"""Inputs mean one thing everywhere (issue 11): queue names in events, a pfn outside the
machine, sizes, CPUs against a topology, "did you mean", whole-body mistakes and DDB.

The instance is the ``tiny-16m`` box of ``conftest``: pfns 1 .. 4095 (3966 managed), one
CPU; its first ``vm_page_alloc`` takes pfn 3075 from PQ_FREE colour 0.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.lab.records import name_queues, summarise

from .conftest import API, DEFAULT, FIRST_ALLOC_PFN, call, digest, problem

pytestmark = pytest.mark.anyio
INST = f"{API}/instances/{DEFAULT}"


# ------------------------------------------------------------------ queue names in events
async def test_alloc_events_name_their_queues_and_colours(client: httpx.AsyncClient) -> None:
    answer = (await call(client, "vm_page_alloc")).json()
    assert answer["result"] == FIRST_ALLOC_PFN
    (alloc,) = [e for e in answer["record"]["events"] if e["event"] == "alloc"]
    assert alloc["found_queue"] == {"queue": "PQ_FREE", "color": 0}
    assert alloc["probes"] == [{"queue": "PQ_FREE", "color": 0}]
    # the full record, rebuilt by replay, names them the same way
    full = await client.get(f"{INST}/journal/{answer['seq']}/record")
    assert full.status_code == 200, full.text
    (again,) = [e for e in full.json()["events"] if e["event"] == "alloc"]
    assert again["found_queue"] == alloc["found_queue"]
    assert again["probes"] == alloc["probes"]


async def test_batch_records_name_queues_too(client: httpx.AsyncClient) -> None:
    body = {"calls": [{"fn": "vm_page_alloc", "args": {"page_req": "VM_ALLOC_NORMAL"}}]}
    r = await client.post(f"{INST}/calls", json={**body, "record": True})
    (item,) = r.json()["results"]
    (alloc,) = [e for e in item["record"]["events"] if e["event"] == "alloc"]
    assert alloc["found_queue"] == {"queue": "PQ_FREE", "color": 0}


def test_naming_is_idempotent_and_covers_every_colour_and_type() -> None:
    events: list[Any] = [
        {"event": "alloc", "found_queue": 3073 + 17, "probes": [1 + 5, 1025 + 1023, 4097]},
        {"event": "wakeup", "channel": "v_free_count"},
    ]
    name_queues(events)
    name_queues(events)  # a record shown twice (ring and answer) is named once
    assert events[0]["found_queue"] == {"queue": "PQ_CACHE", "color": 17}
    assert events[0]["probes"] == [
        {"queue": "PQ_FREE", "color": 5},
        {"queue": "PQ_INACTIVE", "color": 1023},
        {"queue": "PQ_HOLD", "color": 0},
    ]
    assert events[1] == {"event": "wakeup", "channel": "v_free_count"}
    # a summarised bulk record names the events it keeps
    bulk = {"moves": [], "events": [{"event": "alloc", "found_queue": 2049}] * 5}
    shown = summarise(bulk, 2, "/full")
    assert shown["events"][0]["found_queue"] == {"queue": "PQ_ACTIVE", "color": 0}


# ------------------------------------------------------------------ a pfn outside the machine
@pytest.mark.parametrize(
    ("pfn", "words"),
    [
        (99999, "pfn 99999 (0x1869f) is outside this machine's pages (0x1 .. 0xfff)"),
        (0, "pfn 0 (0x0) is outside this machine's pages (0x1 .. 0xfff)"),
        (4000, "pfn 4000 (0xfa0) is not a page the VM manages"),
    ],
)
async def test_a_pfn_outside_the_machine_is_one_problem_in_views_and_calls(
    client: httpx.AsyncClient, pfn: int, words: str
) -> None:
    before = await digest(client)
    view = problem(await client.get(f"{INST}/pages/{pfn}"), 404, "no-such-page")
    called = problem(await call(client, "vm_page_free", {"m": pfn}, ok=False), 404, "no-such-page")
    assert words in view["detail"] and view["detail"] == called["detail"]
    batch = await client.post(
        f"{INST}/calls", json={"calls": [{"fn": "vm_page_free", "args": {"m": pfn}}]}
    )
    (item,) = batch.json()["results"]
    assert item["error"]["type"] == "no-such-page" and item["error"]["detail"] == view["detail"]
    assert await digest(client) == before


# ------------------------------------------------------------------ sizes and CPUs
async def test_si_sizes_are_refused_with_both_readings(client: httpx.AsyncClient) -> None:
    count = len((await client.get(f"{API}/instances")).json())
    r = await client.post(f"{API}/instances", json={"name": "si", "memory": "256MB"})
    body = problem(r, 422, "validation")
    assert "'256MB' is ambiguous" in body["detail"]
    assert "256000000 bytes in SI units but 268435456" in body["detail"]
    assert "write 256MiB" in body["detail"]
    assert len((await client.get(f"{API}/instances")).json()) == count


@pytest.mark.parametrize(
    "body",
    [
        {"name": "c", "memory": "16MiB", "cpus": 2, "topology": {"sockets": 2, "cores": 2}},
        {"name": "c", "preset": "tiny-16m", "cpus": 3, "topology": {"sockets": 2, "cores": 2}},
    ],
)
async def test_cpus_conflicting_with_the_topology_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    count = len((await client.get(f"{API}/instances")).json())
    detail = problem(await client.post(f"{API}/instances", json=body), 422, "validation")["detail"]
    assert f"cpus {body['cpus']} conflicts with the topology" in detail
    assert "2 socket(s) × 2 core(s) × 1 thread(s) = 4 CPUs" in detail
    assert len((await client.get(f"{API}/instances")).json()) == count
    # agreeing is fine
    ok = await client.post(f"{API}/instances", json={**body, "name": "agree", "cpus": 4})
    assert ok.status_code == 201, ok.text
    assert ok.json()["config"]["cpus"] == 4


# ------------------------------------------------------------------ did you mean
async def test_unknown_functions_and_arguments_get_suggestions(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{INST}/calls/vm_page_alocc", json={})
    detail = problem(r, 404, "unknown-function")["detail"]
    assert "no kernel function named 'vm_page_alocc'; did you mean 'vm_page_alloc'" in detail
    r = await call(client, "vm_page_alloc", {"page_rq": 1, "zzz": 2}, ok=False)
    detail = problem(r, 422, "validation")["detail"]
    assert "no argument page_rq (did you mean 'page_req'?), zzz;" in detail
    r = await client.post(f"{INST}/calls", json={"calls": [{"fn": "vm_page_activat"}]})
    (item,) = r.json()["results"]
    assert "did you mean 'vm_page_activate'" in item["error"]["detail"]


# ------------------------------------------------------------------ whole-body mistakes
@pytest.mark.parametrize(
    "path", ["/instances", "/instances/1/calls/vm_page_alloc", "/instances/1/calls"]
)
@pytest.mark.parametrize(
    ("content", "headers", "words"),
    [
        (
            b"",
            {},
            "needs a JSON body and has none: send a JSON object with Content-Type: application/json",
        ),
        (
            b"a=1",
            {"content-type": "application/x-www-form-urlencoded"},
            "this request said Content-Type: application/x-www-form-urlencoded",
        ),
        (b'{"args":', {"content-type": "application/json"}, "the body is not valid JSON"),
    ],
)
async def test_body_mistakes_name_the_fix(
    client: httpx.AsyncClient, path: str, content: bytes, headers: dict[str, str], words: str
) -> None:
    r = await client.post(f"{API}{path}", content=content, headers=headers)
    body = problem(r, 422, "validation")
    assert words in body["detail"], body
    assert "Field required" not in body["detail"]
    assert body["errors"] == [{"field": "body", "message": body["detail"]}]


# ------------------------------------------------------------------ DDB
async def test_ddb_show_page_takes_no_page_and_points_to_the_page_view(
    client: httpx.AsyncClient,
) -> None:
    body = problem(await client.get(f"{INST}/ddb/show page 3075"), 404, "not-found")
    assert body["commands"] == ["show page", "show pageq"]
    assert body["detail"].startswith("DDB has no command 'show page 3075'.")
    assert "DragonFly's 'show page' takes no page" in body["detail"]
    assert f"pagelab page 3075 (GET /api/v1/instances/{DEFAULT}/pages/3075)" in body["detail"]
    assert "pattern" not in body["detail"] and "^show" not in body["detail"]
    ok = await client.get(f"{INST}/ddb/show page")
    assert ok.status_code == 200 and ok.text.startswith("vmstats.v_free_count: ")

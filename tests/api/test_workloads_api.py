"""The workloads API: start, status, pause/resume/step/stop, rate, refusals, and the
determinism promise (same seed and params, no other calls: same digest, however the
calls were sliced)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.core.invariants import state_digest
from app.core.machine import Machine
from app.lab.presets import PRESETS
from app.lab.workloads import run_sync

from .conftest import API, DEFAULT

pytestmark = pytest.mark.anyio


async def wait_for(
    c: httpx.AsyncClient, iid: int, wid: int, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll a workload's status until ``done`` (bounded: 3000 polls)."""
    for _ in range(3000):
        status: dict[str, Any] = (await c.get(f"{API}/instances/{iid}/workloads/{wid}")).json()
        if done(status):
            return status
        await asyncio.sleep(0.01)  # yield to the runner; not a timing assertion
    raise AssertionError(f"workload {wid} never got there: {status}")


async def start(c: httpx.AsyncClient, iid: int = DEFAULT, **body: Any) -> dict[str, Any]:
    r = await c.post(f"{API}/instances/{iid}/workloads", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_kinds_list_every_workload_with_its_parameters(client: httpx.AsyncClient) -> None:
    kinds = (await client.get(f"{API}/workload-kinds")).json()
    names = [k["kind"] for k in kinds]
    assert names == [
        "churn",
        "pressure",
        "dontneed-storm",
        "dma-fragmentation",
        "numa-skew",
        "file-cache",
    ]
    churn = kinds[0]
    ws = next(p for p in churn["params"] if p["name"] == "working_set")
    assert ws == {
        "name": "working_set",
        "type": "int",
        "default": 256,
        "help": ws["help"],
        "min": 1,
        "max": 1 << 20,
    }


async def test_pause_step_resume_stop(client: httpx.AsyncClient) -> None:
    run = await start(client, kind="churn", seed=1, paused=True)
    wid = run["id"]
    assert run["state"] == "paused" and run["calls"] == 0 and run["rate"] == "max"
    assert run["params"] == {"objects": 4, "working_set": 256, "tick_every": 64}
    r = await client.post(f"{API}/instances/{DEFAULT}/workloads/{wid}/step", json={"n": 10})
    assert r.status_code == 200
    status = await wait_for(client, DEFAULT, wid, lambda s: s["calls"] >= 10)
    assert status["calls"] == 10 and status["state"] == "paused"  # exactly n, still paused
    assert status["last_seq"] - status["first_seq"] == 9  # ten consecutive seqs
    r = await client.post(f"{API}/instances/{DEFAULT}/workloads/{wid}/resume")
    assert r.json()["state"] == "running"
    await wait_for(client, DEFAULT, wid, lambda s: s["calls"] > 100)
    r = await client.post(f"{API}/instances/{DEFAULT}/workloads/{wid}/step", json={"n": 1})
    assert r.status_code == 409 and "pause" in r.json()["detail"]
    r = await client.patch(f"{API}/instances/{DEFAULT}/workloads/{wid}", json={"rate": 50})
    assert r.json()["rate"] == 50
    r = await client.post(f"{API}/instances/{DEFAULT}/workloads/{wid}/stop")
    stopped = r.json()
    assert stopped["state"] == "stopped" and stopped["reason"] == "stopped by request"
    assert stopped["errors"] == 0
    r = await client.post(f"{API}/instances/{DEFAULT}/workloads/{wid}/resume")
    assert r.status_code == 409
    listed = (await client.get(f"{API}/instances/{DEFAULT}/workloads")).json()
    assert [w["id"] for w in listed] == [wid]
    # its calls went through the instance like API calls: counted, invariants hold
    inst = client.app.state.lab.get(DEFAULT)  # type: ignore[attr-defined]
    assert inst.seq == stopped["last_seq"]
    assert inst.history is not None and len(inst.history) == stopped["calls"]
    assert any(e.fn == "vm_page_alloc" and e.source == f"workload:{wid}" for e in inst.history)
    inst.machine.check_invariants()


async def test_a_rate_limited_workload_makes_exactly_its_steps(client: httpx.AsyncClient) -> None:
    run = await start(client, kind="churn", seed=2, rate=200, steps=30)
    status = await wait_for(client, DEFAULT, run["id"], lambda s: s["state"] != "running")
    assert status["state"] == "finished" and status["calls"] == 30 and status["progress"] == 1.0


async def test_same_seed_same_digest_however_sliced(client: httpx.AsyncClient) -> None:
    """Two instances of the same preset run the same workload; a third machine runs it
    in one synchronous loop in the core (no slices, no records): all three digests match,
    and another seed gives another digest."""
    digests = []
    for seed in (5, 5, 6):
        r = await client.post(
            f"{API}/instances", json={"name": f"w{len(digests)}", "preset": "tiny-16m"}
        )
        iid = r.json()["id"]
        run = await start(client, iid, kind="churn", seed=seed, steps=3000)
        status = await wait_for(client, iid, run["id"], lambda s: s["state"] != "running")
        assert status["state"] == "finished" and status["calls"] == 3000
        assert status["errors"] == 0
        digests.append((await client.get(f"{API}/instances/{iid}")).json()["state_digest"])
    machine = Machine.boot(PRESETS["tiny-16m"].config)
    summary = run_sync(machine, "churn", None, seed=5, steps=3000)
    assert summary["calls"] == 3000
    assert digests[0] == digests[1] == state_digest(machine)
    assert digests[2] != digests[0]


async def test_reset_and_delete_stop_the_workloads(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{API}/instances", json={"name": "gone", "preset": "tiny-16m"})
    iid = r.json()["id"]
    run = await start(client, iid, kind="churn", rate=100)
    await client.post(f"{API}/instances/{iid}/reset")
    status = (await client.get(f"{API}/instances/{iid}/workloads/{run['id']}")).json()
    assert status["state"] == "stopped" and "reset" in status["reason"]
    # the rebooted machine is untouched by it
    inst = client.app.state.lab.get(iid)  # type: ignore[attr-defined]
    assert inst.seq == 0
    run2 = await start(client, iid, kind="churn", rate=100, paused=True)
    lab = client.app.state.lab  # type: ignore[attr-defined]
    held = lab.get(iid).workloads[run2["id"]]
    assert (await client.delete(f"{API}/instances/{iid}")).status_code == 204
    assert held.state == "stopped" and "deleted" in held.reason


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"kind": "spin"}, 422, "there is no workload 'spin'"),
        ({"kind": "churn", "params": {"objects": 100000}}, 422, "from 1 to 4096"),
        ({"kind": "churn", "params": {"colour": 1}}, 422, "no parameter 'colour'"),
        ({"kind": "churn", "rate": 0}, 422, "rate"),
        ({"kind": "churn", "rate": "fast"}, 422, "rate"),
        ({"kind": "churn", "steps": 0}, 422, "steps"),
        ({"kind": "numa-skew", "params": {"socket": 1}}, 422, "socket"),
    ],
)
async def test_bad_workload_requests_are_refused_with_a_reason(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, fragment: str
) -> None:
    r = await client.post(f"{API}/instances/{DEFAULT}/workloads", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert fragment in r.text
    assert (await client.get(f"{API}/instances/{DEFAULT}/workloads")).json() == []


async def test_too_many_workloads_is_a_quota_and_unknown_ones_404(served: Any) -> None:
    async with served(max_workloads=1) as c:
        await start(c, kind="churn", paused=True)
        r = await c.post(f"{API}/instances/{DEFAULT}/workloads", json={"kind": "churn"})
        assert r.status_code == 429 and "at most 1 workloads" in r.json()["detail"]
        r = await c.get(f"{API}/instances/{DEFAULT}/workloads/999")
        assert r.status_code == 404 and "no workload 999" in r.json()["detail"]
        r = await c.post(f"{API}/instances/999/workloads", json={"kind": "churn"})
        assert r.status_code == 404

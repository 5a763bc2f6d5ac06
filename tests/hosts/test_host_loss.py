"""A host process (a worker, a Ray actor) killed in the middle of a batch: the batch still
completes — its instance is rebuilt from the journal and snapshots, the acknowledged
state, and the slice that was lost is run again — its neighbours on the dead host come
back with their acknowledged state, and the users of instances on the other host see no
error at all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import compact
from app.lab.hosts.ray_host import RayHost
from app.lab.hosts.workers import WorkerHost
from app.lab.service import Lab
from tests.api.conftest import API, serve

from .conftest import placed
from .test_placements import create, reference

pytestmark = pytest.mark.anyio

PAGES = 64


async def allocate(c: httpx.AsyncClient, iid: int) -> tuple[list[tuple[str, Any]], list[int]]:
    """An object and ``PAGES`` pages of it on instance ``iid``: the calls and the pfns."""
    calls: list[tuple[str, Any]] = [("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 128})]
    r = await c.post(f"{API}/instances/{iid}/calls/{calls[0][0]}", json={"args": calls[0][1]})
    obj = r.json()["result"]
    batch = [{"fn": "vm_page_alloc", "args": {"object": obj, "pindex": i}} for i in range(PAGES)]
    r = await c.post(f"{API}/instances/{iid}/calls", json={"calls": batch})
    assert r.json()["completed"] == PAGES
    calls += [(b["fn"], b["args"]) for b in batch]
    return calls, [it["result"] for it in r.json()["results"]]


def churn(pfns: list[int], n: int) -> tuple[bytes, list[tuple[str, Any]]]:
    """A compact batch of ``n`` calls moving the pages between the active and inactive
    queues (every call changes the state), and the same calls as a list."""
    forms = [
        {"fn": "vm_page_activate", "args": ["m"]},
        {"fn": "vm_page_deactivate", "args": ["m"]},
    ]
    fn = [(k // len(pfns)) % 2 for k in range(n)]
    args = [[pfns[k % len(pfns)]] for k in range(n)]
    calls = [(forms[f]["fn"], {"m": a[0]}) for f, a in zip(fn, args, strict=True)]
    return json.dumps({"forms": forms, "fn": fn, "args": args}).encode(), calls


async def kill_mid_batch(c: httpx.AsyncClient, lab: Lab, kill: Any, n: int) -> None:
    """Instances 1 and 3 share a host, 2 is on the other; a batch of ``n`` calls runs on
    1 and ``kill()`` kills its host once it is well under way, while 2 is driven all
    along.  Checks every instance ends as its acknowledged calls make it."""
    a, b, z = [(await create(c, name))["id"] for name in ("a", "b", "z")]
    assert lab.host.shard_of(a) == lab.host.shard_of(z) != lab.host.shard_of(b)
    a_calls, pfns = await allocate(c, a)
    z_calls, _ = await allocate(c, z)
    b_calls, b_pfns = await allocate(c, b)
    raw, churned = churn(pfns, n)
    batch = asyncio.create_task(
        c.post(
            f"{API}/instances/{a}/calls",
            content=raw,
            headers={"content-type": compact.MEDIA_TYPE},
        )
    )
    start = lab.get(a).seq
    while lab.get(a).seq < start + 2000:  # a few slices in: then its host dies
        assert not batch.done(), "the batch ended before its host could be killed"
        await asyncio.sleep(0.001)
    await kill()
    # the other host's user carries on meanwhile, without a single error
    for k in range(40):
        pfn = b_pfns[k % PAGES]
        fn = "vm_page_deactivate" if k % 2 else "vm_page_activate"
        r = await c.post(f"{API}/instances/{b}/calls/{fn}", json={"args": {"m": pfn}})
        assert r.status_code == 200, r.text
        b_calls.append((fn, {"m": pfn}))
    r = await batch
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ran"] == body["completed"] == n and body["failed"] == 0
    assert body["seq"] == [[0, start + 1, n]]  # one run of seqs: none lost or doubled
    assert lab.hosts_lost >= 1  # the batch did meet the dead host
    digests = {i["id"]: i["state_digest"] for i in (await c.get(f"{API}/instances")).json()}
    assert digests[a] == reference(a_calls + churned).state_digest()
    assert digests[z] == reference(z_calls).state_digest()  # rebuilt: its acknowledged calls
    assert digests[b] == reference(b_calls).state_digest()
    assert lab.get(a).seq == 1 + PAGES + n


async def test_a_worker_killed_mid_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    settings = placed("workers", boot_default=False, database_url=url, snapshot_every=5000)
    async with serve(settings) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        host = lab.host
        assert isinstance(host, WorkerHost)
        victim = host.workers[host.shard_of(1)]
        other = host.workers[host.shard_of(2)]

        async def kill() -> None:
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)

        await kill_mid_batch(c, lab, kill, 60_000)
        assert victim.epoch == 1 and other.epoch == 0  # only the dead one was replaced


async def test_a_ray_actor_killed_mid_batch(ray_session: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    settings = placed("ray", boot_default=False, database_url=url, snapshot_every=5000)
    async with serve(settings) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        host = lab.host
        assert isinstance(host, RayHost)

        async def kill() -> None:
            # the actor's process dies as if it crashed; Ray restarts it empty
            ray_session.kill(host.actors[host.shard_of(1)], no_restart=False)

        await kill_mid_batch(c, lab, kill, 30_000)
        assert host.epoch(host.shard_of(2)) == 0

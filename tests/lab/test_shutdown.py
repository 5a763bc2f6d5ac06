"""``Lab.drain`` and ``Lab.shutdown`` (what SIGTERM runs, tests/test_shutdown.py runs it
for real): a workload running at shutdown ends paused, every call it made is in the
journal, and the snapshot written at shutdown brings the machine back without replay."""

from __future__ import annotations

import asyncio

import pytest

from app.core import snapshot
from app.lab.service import Lab
from app.lab.store import load_snapshots
from tests.api.conftest import API, serve, tiny_settings

pytestmark = pytest.mark.anyio


async def test_a_running_workload_pauses_and_its_calls_survive(database_url: str) -> None:
    settings = tiny_settings(database_url=database_url, boot_default=False)
    async with serve(settings) as c:
        r = await c.post(f"{API}/instances", json={"name": "busy", "preset": "tiny-16m"})
        iid = r.json()["id"]
        r = await c.post(f"{API}/instances/{iid}/workloads", json={"kind": "churn", "seed": 3})
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        inst = lab.instances[iid]
        run = inst.workloads[wid]
        for _ in range(3000):  # bounded: until the workload has made some calls
            if run.calls >= 50:
                break
            await asyncio.sleep(0.001)  # let its task run; not a timing assertion
        assert run.state == "running" and run.calls >= 50
    # the lifespan has ended: Lab.shutdown ran
    assert run.state == "paused" and run.reason == "paused: the server is shutting down"
    assert run.task is not None and run.task.done()
    assert inst.snapshot_seq == inst.seq  # written at shutdown
    async with serve(settings) as c:
        after = (await c.get(f"{API}/instances/{iid}")).json()
        lab = c.app.state.lab  # type: ignore[attr-defined]
        assert lab.store is not None
        (snap,) = load_snapshots(lab.store, iid, inst.generation, limit=1)
        # the machine at shutdown (taken out of the snapshot, its digest computed anew) is
        # the one that came back, at the same seq, with nothing replayed
        digest = snapshot.load(snap.data).state_digest()
        assert snap.seq == inst.seq and snap.digest == digest
        assert (after["seq"], after["state_digest"]) == (inst.seq, digest)
        assert lab.replayed == 0

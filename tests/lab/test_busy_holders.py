"""Busy holders survive parking, a server restart and a host rebuild (issue 11).

The lab names the call that took a page's hard busy in ``blocked.why``, ``blocked.holder``
and the 409 for a call on a sleeping thread (``app.lab.explain.BusyHolders``).  The kernel
keeps no owner, so the lab derives it from the calls: a machine rebuilt from the journal
derives it again while it replays, and a snapshot carries the holders it was taken with.
Each test runs the same story on a machine that went through the path and compares the
answers with the ones given before (or by a twin that did not), field for field.

The story, on ``tiny-16m`` with ``snapshot_every=2`` (so a snapshot lands after call 2 and
the machine comes back from it plus the journal after it): thread 0, 1 and 2 each allocate
a page (calls 1, 2, 3: pfn 3075 and the next two), each left hard-busied by its thread.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.lab.hosts.workers import WorkerHost
from app.lab.service import Lab
from app.lab.settings import Settings
from tests.api.conftest import API, serve
from tests.clock import Clock

pytestmark = pytest.mark.anyio

FIRST_PFN = 3075


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "default_preset": "tiny-16m",
        "database_url": f"sqlite:///{tmp_path / 'lab.db'}",
        "boot_default": False,
        "snapshot_every": 2,
    }
    values.update(overrides)
    return Settings(**values)


async def post(c: httpx.AsyncClient, iid: int, fn: str, args: Any, thread: int) -> httpx.Response:
    return await c.post(
        f"{API}/instances/{iid}/calls/{fn}", json={"args": args, "ctx": {"thread": thread}}
    )


async def setup(c: httpx.AsyncClient, name: str) -> tuple[int, list[int]]:
    """A new instance whose threads 0, 1, 2 hold one page busy each (calls 1, 2, 3)."""
    r = await c.post(f"{API}/instances", json={"name": name, "preset": "tiny-16m"})
    iid = r.json()["id"]
    pfns = []
    for thread in range(3):
        r = await post(c, iid, "vm_page_alloc", {}, thread)
        assert r.status_code == 200 and r.json()["seq"] == thread + 1
        pfns.append(r.json()["result"])
    assert pfns[0] == FIRST_PFN
    return iid, pfns


async def wait_on(c: httpx.AsyncClient, iid: int, pfn: int, thread: int) -> dict[str, Any]:
    """Thread ``thread`` waits for page ``pfn``: the call's ``blocked``."""
    r = await post(c, iid, "vm_page_busy_wait", {"m": pfn}, thread)
    assert r.status_code == 200, r.text
    blocked: dict[str, Any] = r.json()["blocked"]
    assert blocked["thread"] == thread
    return blocked


async def refusal(c: httpx.AsyncClient, iid: int, thread: int) -> str:
    """The 409 for a call on sleeping thread ``thread``: its detail."""
    r = await post(c, iid, "vm_page_alloc", {}, thread)
    assert r.status_code == 409, r.text
    detail: str = r.json()["detail"]
    return detail


async def sleepers(c: httpx.AsyncClient, iid: int, pfns: list[int]) -> dict[str, Any]:
    """Thread 0 waits for its own page (a self-deadlock), threads 7 and 8 for the pages
    of threads 1 and 2: their ``blocked`` answers and the 409s that follow."""
    out: dict[str, Any] = {}
    for thread, pfn in ((0, pfns[0]), (7, pfns[1]), (8, pfns[2])):
        out[f"blocked {thread}"] = await wait_on(c, iid, pfn, thread)
        out[f"409 {thread}"] = await refusal(c, iid, thread)
    return out


def expect_story(answers: dict[str, Any], pfns: list[int]) -> None:
    """The holders the story's answers must name (known, not 'not known to the lab')."""
    for thread, holder, seq in ((0, 0, 1), (7, 1, 2), (8, 2, 3)):
        blocked = answers[f"blocked {thread}"]
        assert blocked["holder"] == {
            "pfn": pfns[holder],
            "thread": holder,
            "seq": seq,
            "fn": "vm_page_alloc",
        }
        assert "not known" not in answers[f"409 {thread}"]
    assert "a self-deadlock" in answers["409 0"]
    assert "took the busy in call #1, vm_page_alloc" in answers["409 0"]
    assert "held by thread 1 (call #2, vm_page_alloc)" in answers["409 7"]
    assert "held by thread 2 (call #3, vm_page_alloc)" in answers["409 8"]


async def test_holders_survive_parking(tmp_path: Path) -> None:
    """Parked after call 3 (its snapshot: the header's holders), revived by the next
    call: the waits name the same holders as on a twin that was never parked."""
    async with serve(settings(tmp_path, cull_idle_s=60)) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        clock = Clock(1_000_000.0)
        lab.clock = clock
        twin, twin_pfns = await setup(c, "twin")
        iid, pfns = await setup(c, "parked")
        assert pfns == twin_pfns
        clock.now += 61
        assert sorted(await lab.cull()) == [twin, iid]
        await lab.use(lab.get(twin))  # the twin comes back untouched by the story
        twin_answers = await sleepers(c, twin, twin_pfns)
        assert lab.get(iid).parked is not None
        answers = await sleepers(c, iid, pfns)  # revives it
        assert lab.revivals == 2
    expect_story(answers, pfns)
    assert answers == twin_answers


async def test_holders_survive_a_server_restart(tmp_path: Path) -> None:
    """The story with its threads asleep (no snapshot can be taken then), the server
    stopped and started on the same SQLite file: the snapshot after call 2 plus the
    journal after it give the same 409s, and a new wait names the same holder."""
    async with serve(settings(tmp_path)) as c:
        iid, pfns = await setup(c, "box")
        before = await sleepers(c, iid, pfns)
        before_new = await wait_on(c, iid, pfns[1], 9)
    expect_story(before, pfns)
    async with serve(settings(tmp_path)) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        assert lab.replayed > 0  # it did come back from the journal
        for thread in (0, 7, 8):
            assert await refusal(c, iid, thread) == before[f"409 {thread}"]
        assert await refusal(c, iid, 9) == await refusal(c, iid, 9)
        after_new = await wait_on(c, iid, pfns[1], 10)
    assert after_new["holder"] == before_new["holder"] == before["blocked 7"]["holder"]
    assert after_new["why"] == before_new["why"].replace("thread 9", "thread 10")


async def test_holders_survive_a_host_rebuild(tmp_path: Path) -> None:
    """The worker process holding the machine killed: the lab rebuilds it in the new
    worker from the snapshot and the journal, and the 409s read as before."""
    async with serve(settings(tmp_path, placement="workers", workers=1)) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        host = lab.host
        assert isinstance(host, WorkerHost)
        iid, pfns = await setup(c, "box")
        before = await sleepers(c, iid, pfns)
        before_new = await wait_on(c, iid, pfns[2], 9)
        victim = host.workers[host.shard_of(iid)]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        for thread in (0, 7, 8):
            assert await refusal(c, iid, thread) == before[f"409 {thread}"]
        assert lab.hosts_lost >= 1 and victim.epoch == 1  # it was rebuilt
        after_new = await wait_on(c, iid, pfns[2], 10)
    expect_story(before, pfns)
    assert after_new["holder"] == before_new["holder"] == before["blocked 8"]["holder"]
    assert after_new["why"] == before_new["why"].replace("thread 9", "thread 10")


async def test_an_exported_snapshot_names_no_holder_of_its_instance(tmp_path: Path) -> None:
    """An exported snapshot leaves its holders behind (their seqs are its instance's
    calls): the import's waits say the holder is not known rather than name a call of
    another journal."""
    async with serve(settings(tmp_path)) as c:
        iid, pfns = await setup(c, "box")
        data = (await c.get(f"{API}/instances/{iid}/snapshot")).content
        r = await c.post(
            f"{API}/snapshots",
            params={"name": "copy"},
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        copy = r.json()["id"]
        blocked = await wait_on(c, copy, pfns[1], 7)
    assert blocked["holder"] is None
    assert "its holder is not known to the lab" in blocked["why"]

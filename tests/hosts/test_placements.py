"""The API suite's core scenarios on every placement of the instance host: in-process,
worker processes and Ray actors answer the same requests with the same bodies, the same
seqs and the same state digests — the digest a machine booted here and driven by the same
calls has."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import compact
from app.core.config import MachineConfig
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal
from app.core.machine import Machine
from app.lab import views
from app.lab.pagemap import pagemap
from app.lab.presets import PRESETS
from app.lab.service import Lab, replay
from app.lab.stream import Sink
from app.lab.workloads import WORKLOADS, step
from tests.api.conftest import API, problem, serve

from .conftest import placed

pytestmark = pytest.mark.anyio

TINY = PRESETS["tiny-16m"].config


async def create(c: httpx.AsyncClient, name: str, seed: int = 7) -> dict[str, Any]:
    r = await c.post(f"{API}/instances", json={"name": name, "preset": "tiny-16m", "seed": seed})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def calls_of(obj: int, n: int) -> list[dict[str, Any]]:
    """``n`` calls that allocate, activate and free pages of object ``obj``."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"fn": "vm_page_alloc", "args": {"object": obj, "pindex": i}})
    return out


def plain(value: Any) -> Any:
    """``value`` as it comes back from JSON."""
    return json.loads(json.dumps(value, default=str))


def reference(calls: list[tuple[str, dict[str, Any]]], seed: int = 7) -> Machine:
    """The machine those calls make when run here, one by one (refusals skipped)."""
    m = Machine.boot(seeded(seed))
    for fn, args in calls:
        # a refused call changes nothing (and the lab does not journal it)
        with contextlib.suppress(KernelPanic, SimulatorRefusal, InvalidArgument):
            m.call(fn, args)
    return m


def seeded(seed: int) -> MachineConfig:
    return replace(TINY, seed=seed)


async def test_create_call_batch_views_and_digest(placement: str) -> None:
    async with serve(placed(placement, boot_default=False, database_url="")) as c:
        inst = await create(c, "box")
        iid = inst["id"]
        assert inst["summary"]["v_free_count"] == 3711  # the boot's figure (tests/api)
        r = await c.post(
            f"{API}/instances/{iid}/calls/vm_object_allocate",
            json={"args": {"type": "OBJT_DEFAULT", "size": 64}},
        )
        assert r.status_code == 200, r.text
        obj = r.json()["result"]
        assert r.json()["seq"] == 1 and r.json()["record"] is not None
        # a JSON batch with a refused call in it, then a compact one
        batch = calls_of(obj, 40) + [{"fn": "vm_page_free_toq", "args": {"m": 1}}]
        r = await c.post(f"{API}/instances/{iid}/calls", json={"calls": batch})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["completed"] == 40 and body["errors"] == 1
        assert [it["seq"] for it in body["results"]] == list(range(2, 43))
        pfns = [it["result"] for it in body["results"][:40]]
        assert len(set(pfns)) == 40
        rows = [[pfn] for pfn in pfns[:10]]
        form = {"fn": "vm_page_activate", "args": ["m"]}
        raw = json.dumps({"forms": [form], "fn": [0] * 10, "args": rows})
        r = await c.post(
            f"{API}/instances/{iid}/calls",
            content=raw,
            headers={"content-type": compact.MEDIA_TYPE},
        )
        assert r.status_code == 200, r.text
        assert r.json()["completed"] == 10 and r.json()["failed"] == 0
        # a kernel panic is a problem document, as in-process
        r = await c.post(f"{API}/instances/{iid}/calls/vm_page_free_toq", json={"args": {"m": 1}})
        problem(r, 409, "kernel-panic")
        # the digest is the one the same calls make on a machine here
        calls = [("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 64})]
        calls += [(b["fn"], b["args"]) for b in batch]
        calls += [("vm_page_activate", {"m": pfn}) for pfn in pfns[:10]]
        ref = reference(calls)
        got = (await c.get(f"{API}/instances/{iid}")).json()
        assert got["state_digest"] == ref.state_digest()
        assert got["seq"] == 1 + 41 + 10 + 1 and got["calls"] == got["seq"]
        # the views say what the same views of that machine say
        vm = (await c.get(f"{API}/instances/{iid}/vmstats")).json()
        del vm["fields"]
        assert vm == plain(views.vmstats_view(ref))
        page = (await c.get(f"{API}/instances/{iid}/pages/{pfns[0]}")).json()
        # and who holds the page busy, which the lab's host adds: the batch's first call
        holder = page["busy"].pop("holder")
        assert holder == {"pfn": pfns[0], "thread": 0, "seq": 2, "fn": "vm_page_alloc"}
        assert page == plain(views.page_view(ref, pfns[0]))
        problem(await c.get(f"{API}/instances/{iid}/pages/999999"), 404, "no-such-page")
        objects = (await c.get(f"{API}/instances/{iid}/objects")).json()
        assert [o["resident_page_count"] for o in objects if o["id"] == obj] == [40]
        pm = (await c.get(f"{API}/instances/{iid}/pagemap?width=8")).json()
        assert pm == plain(pagemap(ref, None, None, 8))
        sysctl = (await c.get(f"{API}/instances/{iid}/sysctls/vm.stats.vm.v_page_count")).json()
        assert sysctl["value"] == 3966
        problem(await c.get(f"{API}/instances/{iid}/sysctls/vm.nope"), 404, "not-found")


class Collect(Sink):
    """A viewer's connection that keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def send(self, text: str) -> None:
        self.messages.append(json.loads(text))
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        return None

    async def until(self, test: Any) -> dict[str, Any]:
        while True:
            for msg in self.messages:
                if test(msg):
                    return msg
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 30)


async def test_stream_frames_carry_the_calls_and_the_state(placement: str) -> None:
    async with serve(placed(placement, boot_default=False, database_url="")) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        iid = (await create(c, "watched"))["id"]
        sink = Collect()
        viewer = lab.stream.connect(iid, sink, ["vmstats", "events", "pages"], 30)
        hello = await sink.until(lambda m: m["type"] == "hello")
        booted = reference([])
        assert hello["snapshot"]["vmstats"] == plain(views.vmstats_view(booted))
        await lab.stream.handle(viewer, json.dumps({"op": "watch", "pfns": [3075]}))
        await sink.until(lambda m: m.get("op") == "watch")
        await lab.stream.handle(viewer, json.dumps({"op": "watch", "pfns": [10**9]}))
        err = await sink.until(lambda m: m["type"] == "error")
        assert "pfn" in err["detail"]
        r = await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        assert r.json()["result"] == 3075
        frame = await sink.until(
            lambda m: m["type"] == "frame" and any(e["seq"] == 1 for e in m.get("events", []))
        )
        event = next(e for e in frame["events"] if e["seq"] == 1)
        assert event["fn"] == "vm_page_alloc" and event["result"] == 3075
        assert any(mv["pfn"] == 3075 for mv in event["moves"])  # recorded: someone watches
        after = plain(views.vmstats_view(reference([("vm_page_alloc", {})])))
        assert after != hello["snapshot"]["vmstats"]
        vm = await sink.until(lambda m: m["type"] == "frame" and m.get("vmstats") == after)
        assert vm["seq"] >= 1
        page = await sink.until(lambda m: m["type"] == "frame" and "3075" in m.get("pages", {}))
        assert page["pages"]["3075"]["pfn"] == 3075
        lab.stream.disconnect(viewer)


async def test_snapshots_restart_park_and_export(placement: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    settings = placed(placement, boot_default=False, database_url=url, snapshot_every=16)
    batch = calls_of(1, 50)
    async with serve(settings) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        iid = (await create(c, "kept"))["id"]
        await c.post(
            f"{API}/instances/{iid}/calls/vm_object_allocate",
            json={"args": {"type": "OBJT_DEFAULT", "size": 64}},
        )
        r = await c.post(f"{API}/instances/{iid}/calls", json={"calls": batch})
        assert r.json()["completed"] == 50
        await lab.settle()
        assert lab.snapshots_saved >= 1
        digest = (await c.get(f"{API}/instances/{iid}")).json()["state_digest"]
        exported = await c.get(f"{API}/instances/{iid}/snapshot")
        assert exported.status_code == 200
        # parked: the machine leaves its host; the next request brings it back
        inst = lab.get(iid)
        inst.last_used -= 10 * lab.settings.cull_idle_s
        assert await lab.cull() == [iid]
        assert not inst.hosted and inst.parked is not None
        vm = (await c.get(f"{API}/instances/{iid}/vmstats")).json()
        assert vm["global"]["v_page_count"] == 3966 and inst.hosted
        # restored to call 11: the first 10 allocations
        r = await c.post(f"{API}/instances/{iid}/restore", json={"to": 11})
        assert r.status_code == 200, r.text
        calls = [("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 64})]
        calls += [(b["fn"], b["args"]) for b in batch]
        assert r.json()["state_digest"] == reference(calls[:11]).state_digest()
        imported = await c.post(
            f"{API}/snapshots?name=copy",
            content=exported.content,
            headers={"content-type": "application/octet-stream"},
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["state_digest"] == digest
    # a restart: every instance comes back from the snapshots and the journal
    async with serve(settings) as c:
        listed = {i["name"]: i for i in (await c.get(f"{API}/instances")).json()}
        assert listed["kept"]["state_digest"] == reference(calls[:11]).state_digest()
        assert listed["copy"]["state_digest"] == digest


async def test_workloads_make_the_calls_they_make_here(placement: str) -> None:
    async with serve(placed(placement, boot_default=False, database_url="")) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        iid = (await create(c, "busy"))["id"]
        r = await c.post(
            f"{API}/instances/{iid}/workloads",
            json={"kind": "churn", "params": {"working_set": 32}, "seed": 3, "steps": 300},
        )
        assert r.status_code == 201, r.text
        run = lab.get(iid).workloads[r.json()["id"]]
        assert run.task is not None
        await run.task
        status = (await c.get(f"{API}/instances/{iid}/workloads/{run.id}")).json()
        assert status["state"] == "finished" and status["calls"] == 300
        assert sum(status["by_fn"].values()) == 300
        m = Machine.boot(seeded(7))
        w = WORKLOADS["churn"].create(m, {"working_set": 32}, 3)
        for _ in range(300):
            step(m, w)
        got = (await c.get(f"{API}/instances/{iid}")).json()
        assert got["state_digest"] == m.state_digest()
        journal = lab.entries(lab.get(iid))
        assert replay(seeded(7), journal).state_digest() == (got["state_digest"])


async def test_sleeps_explain_themselves_with_the_labs_seqs(placement: str) -> None:
    """The busy holders live next to the machine, in its host: a thread sleeping on a
    page it took busy itself is a self-deadlock in ``blocked.why`` and the 409, naming
    the call by the seq the lab gave it — counted the lab's way through single calls,
    batch slices (a kernel panic takes a seq, a refused call none) and workload steps —
    and a reset starts them over."""
    async with serve(placed(placement, boot_default=False, database_url="")) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        iid = (await create(c, "why"))["id"]
        calls = f"{API}/instances/{iid}/calls"

        async def one(fn: str, args: dict[str, Any], thread: int) -> httpx.Response:
            return await c.post(f"{calls}/{fn}", json={"args": args, "ctx": {"thread": thread}})

        r = await c.post(f"{calls}/vm_object_allocate", json={"args": {"type": "OBJT_DEFAULT"}})
        obj = r.json()["result"]  # seq 1
        problem(await one("vm_page_free_toq", {"m": 1}, 0), 409, "kernel-panic")  # seq 2
        batch = [
            {"fn": "vm_page_free_toq", "args": {"m": 1}},  # seq 3, a panic
            {"fn": "vm_page_alloc", "args": {"object": obj, "pindex": 0}, "ctx": {"thread": 4}},
        ]
        body = (await c.post(calls, json={"calls": batch})).json()
        assert [it["seq"] for it in body["results"]] == [3, 4]
        p4 = body["results"][1]["result"]
        answer = (await one("vm_page_busy_wait", {"m": p4}, 4)).json()  # seq 5
        assert answer["seq"] == 5
        why = answer["blocked"]["why"]
        assert "a self-deadlock" in why
        assert "held busy by thread 4 itself (it took the busy in call #4, vm_page_alloc)" in why
        assert "no timeout (timo 0)" in why
        # a batch: thread 4's call refused (no seq), thread 5 takes a page, thread 6 waits
        # for thread 4's
        batch = [
            {"fn": "vm_page_alloc", "args": {}, "ctx": {"thread": 4}},
            {"fn": "vm_page_alloc", "args": {"object": obj, "pindex": 1}, "ctx": {"thread": 5}},
            {"fn": "vm_page_busy_wait", "args": {"m": p4}, "ctx": {"thread": 6}},
        ]
        items = (await c.post(calls, json={"calls": batch})).json()["results"]
        assert items[0]["error"]["type"] == "conflict" and "seq" not in items[0]
        assert "a self-deadlock" in items[0]["error"]["detail"]
        assert [it["seq"] for it in items[1:]] == [6, 7]
        why = items[2]["blocked"]["why"]
        assert "self-deadlock" not in why and "held by thread 4 (call #4, vm_page_alloc)" in why
        p5 = items[1]["result"]
        answer = (await one("vm_page_busy_wait", {"m": p5}, 5)).json()  # seq 8
        assert (
            "thread 5 itself (it took the busy in call #6, vm_page_alloc)"
            in answer["blocked"]["why"]
        )
        body = problem(await one("vm_page_alloc", {}, 5), 409, "conflict")
        assert "a self-deadlock" in body["detail"] and "call #6" in body["detail"]
        # a workload's steps: its last call takes a page busy (churn: the objects first)
        r = await c.post(
            f"{API}/instances/{iid}/workloads",
            json={"kind": "churn", "params": {"objects": 2}, "seed": 3, "steps": 3},
        )
        assert r.status_code == 201, r.text
        run = lab.get(iid).workloads[r.json()["id"]]
        assert run.task is not None
        await run.task
        last = lab.entries(lab.get(iid))[-1]
        assert (last.seq, last.fn) == (11, "vm_page_alloc")
        answer = (await one("vm_page_busy_wait", {"m": last.result}, 9)).json()
        held = f"held by thread {last.ctx['cpu']} (call #11, vm_page_alloc)"
        assert held in answer["blocked"]["why"]
        # a reset boots the machine again with no holders: seqs start over
        assert (await c.post(f"{API}/instances/{iid}/reset")).status_code == 200
        p = (await one("vm_page_alloc", {}, 4)).json()["result"]  # seq 1
        why = (await one("vm_page_busy_wait", {"m": p}, 4)).json()["blocked"]["why"]
        assert "held busy by thread 4 itself (it took the busy in call #1, vm_page_alloc)" in why


async def test_metrics_count_the_pages_of_machines_wherever_they_run(placement: str) -> None:
    """``pagelab_pages`` sums every hosted machine's pages, in this process or not: on
    the workers and Ray placements the scrape asks the host for their summaries."""
    from tests.api.test_metrics import value

    async with serve(placed(placement, boot_default=False, database_url="")) as c:
        for k in range(2):
            await create(c, f"m{k}", seed=k)
        iid = (await create(c, "busy"))["id"]
        for _ in range(5):
            await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        text = (await c.get("/metrics")).text
        listed = (await c.get(f"{API}/instances")).json()
        assert len(listed) == 3
        summaries = [i["summary"] for i in listed]
        assert value(text, "pagelab_instances", state="live") == 3
        assert value(text, "pagelab_instances", state="parked") == 0
        # three tiny-16m machines (3711 free and 255 wired each after boot; 5 taken on one)
        free = sum(s["v_free_count"] for s in summaries)
        assert 3 * 3711 - 5 <= free <= 3 * 3711
        assert value(text, "pagelab_pages", state="free") == free
        assert value(text, "pagelab_pages", state="wired") == 3 * 255

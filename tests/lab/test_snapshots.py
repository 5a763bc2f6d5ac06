"""Snapshots in the lab: saved every ``snapshot_every`` calls, they bound the replay of a
restart, a restore and a revival; a corrupt or missing one falls back (with a warning) to
an older one or to the full journal.  And the idle culler: parked instances stay listed,
come back on the next request (once, however many arrive together), and an instance
someone watches or runs a workload on is never parked.  Every test runs on SQLite and on
Postgres (``database_url``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from structlog.testing import capture_logs

from app.lab.service import Ctx, Lab, replay
from app.lab.settings import Settings
from app.lab.store import Store, load_snapshots, save_snapshot, snapshots
from tests.clock import Clock

from .test_durability import serve

API = "/api/v1"
V1 = Path(__file__).resolve().parent.parent / "core" / "snapshots"
pytestmark = pytest.mark.anyio
EVERY = 40


def lab_on(url: str, **overrides: Any) -> Lab:
    settings: dict[str, Any] = {
        "database_url": url,
        "boot_default": False,
        "snapshot_every": EVERY,
        "cull_idle_s": 0,
        # these tests restart from the periodic snapshots (tests/lab/test_shutdown.py:
        # the one written at shutdown)
        "snapshot_on_shutdown": False,
    }
    settings.update(overrides)
    return Lab(Settings(**settings))


CALLS = [("vm_page_alloc", {}, Ctx()), ("vm_test_nominal", {}, Ctx(cpu=0))]


async def drive(lab: Lab, iid: int, rounds: int) -> None:
    """``rounds`` single calls; a snapshot one of them starts is written before the next
    (so that where snapshots fall does not depend on how fast the store is)."""
    for k in range(rounds):
        fn, args, ctx = CALLS[k % 2]
        await lab.call(iid, fn, args, ctx, record=False)
        await lab.settle()


def full_replay_digest(url: str, iid: int) -> str:
    store = Store(url)
    try:
        row = next(r for r in store.load_instances() if r.id == iid)
        return replay(row.config, list(store.entries(iid, row.generation))).state_digest()
    finally:
        store.close()


def rows(url: str, iid: int) -> list[int]:
    store = Store(url)
    try:
        return [s.seq for s in load_snapshots(store, iid, 0, limit=100)]
    finally:
        store.close()


async def test_a_restart_starts_from_the_newest_snapshot(database_url: str) -> None:
    lab = lab_on(database_url)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, 3 * EVERY + 7)
    assert lab.snapshots_saved >= 3
    digest = await lab.digest(lab.get(iid))
    await lab.shutdown()
    seqs = rows(database_url, iid)
    assert len(seqs) == 2 and seqs[0] >= 3 * EVERY  # only the newest two are kept

    again = lab_on(database_url)
    assert await again.restore_all() == 1
    inst = again.get(iid)
    assert again.replayed == inst.seq - seqs[0] < EVERY  # only the calls after it
    assert inst.snapshot_seq == seqs[0] and inst.seq == 3 * EVERY + 7
    assert await again.digest(inst) == digest == full_replay_digest(database_url, iid)
    inst.machine.check_invariants()
    # and it goes on: calls continue from the right seq
    _, _, seq = await again.call(iid, "vm_page_alloc", {}, Ctx())
    assert seq == 3 * EVERY + 8
    await again.shutdown()


async def test_without_snapshots_a_restart_replays_everything(database_url: str) -> None:
    lab = lab_on(database_url, snapshot_every=0)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, EVERY + 5)
    await lab.shutdown()
    assert rows(database_url, iid) == []
    again = lab_on(database_url, snapshot_every=0)
    await again.restore_all()
    assert again.replayed == EVERY + 5
    await again.shutdown()


def corrupt(url: str, iid: int, seq: int) -> None:
    """One bit of the stored snapshot flips (the disk goes bad)."""
    store = Store(url)
    try:
        where = (snapshots.c.instance_id == iid, snapshots.c.seq == seq)
        with store.engine.begin() as conn:
            data = bytearray(conn.execute(select(snapshots.c.data).where(*where)).scalar_one())
            data[len(data) // 2] ^= 0x10
            conn.execute(update(snapshots).where(*where).values(data=bytes(data)))
    finally:
        store.close()


async def test_corrupt_snapshots_fall_back_to_an_older_one_then_to_the_journal(
    database_url: str,
) -> None:
    lab = lab_on(database_url)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, 2 * EVERY + 3)
    digest = await lab.digest(lab.get(iid))
    await lab.shutdown()
    newest, older = rows(database_url, iid)

    corrupt(database_url, iid, newest)
    again = lab_on(database_url)
    with capture_logs() as logs:
        await again.restore_all()
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["instance"], e["seq"]) for e in warned] == [(iid, newest)]
    assert "the snapshot is corrupt" in warned[0]["reason"]
    assert again.replayed == again.get(iid).seq - older
    assert await again.digest(again.get(iid)) == digest
    await again.shutdown()

    corrupt(database_url, iid, older)
    third = lab_on(database_url)
    with capture_logs() as logs:
        await third.restore_all()
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [e.get("seq") for e in warned] == [newest, older, None]
    assert "no usable snapshot" in warned[-1]["event"]
    assert third.replayed == third.get(iid).calls  # the whole journal
    assert await third.digest(third.get(iid)) == digest
    await third.shutdown()


async def test_a_snapshot_whose_digest_is_not_the_stored_one_is_not_used(
    database_url: str,
) -> None:
    lab = lab_on(database_url)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, EVERY + 3)
    digest = await lab.digest(lab.get(iid))
    await lab.shutdown()
    store = Store(database_url)
    with store.engine.begin() as conn:
        conn.execute(update(snapshots).values(digest="f" * 32))
    store.close()
    again = lab_on(database_url)
    with capture_logs() as logs:
        await again.restore_all()
    reasons = [e["reason"] for e in logs if e["log_level"] == "warning" and "reason" in e]
    assert reasons and "is not the stored" in reasons[0]
    assert await again.digest(again.get(iid)) == digest
    await again.shutdown()


async def test_a_missing_snapshot_falls_back_with_a_warning(database_url: str) -> None:
    lab = lab_on(database_url)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, 2 * EVERY + 1)
    digest = await lab.digest(lab.get(iid))
    await lab.shutdown()
    store = Store(database_url)
    with store.engine.begin() as conn:
        conn.execute(delete(snapshots))
    store.close()
    again = lab_on(database_url)
    with capture_logs() as logs:
        await again.restore_all()
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert len(warned) == 1 and warned[0]["instance"] == iid
    assert "no usable snapshot" in warned[0]["event"]
    assert again.replayed == 2 * EVERY + 1
    assert await again.digest(again.get(iid)) == digest
    await again.shutdown()


async def test_a_snapshot_is_never_written_ahead_of_the_journal(database_url: str) -> None:
    lab = lab_on(database_url, snapshot_every=0)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, 10)
    assert await lab.save_snapshot(lab.get(iid))
    store = lab.store
    assert store is not None
    (snap,) = load_snapshots(store, iid, 0)
    assert snap.seq == 10
    ahead = snap.__class__(iid, 0, 11, snap.format, snap.digest, snap.data)
    assert not save_snapshot(store, ahead, journal_seq=11)  # entry 11 is not in the journal
    assert [s.seq for s in load_snapshots(store, iid, 0)] == [10]
    await lab.shutdown()


async def test_restore_and_fork_start_from_a_snapshot_at_or_before_the_point(
    database_url: str,
) -> None:
    lab = lab_on(database_url)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, 2 * EVERY + 10)
    to = 2 * EVERY + 4
    seqs = rows(database_url, iid)
    base = max(s for s in seqs if s <= to)
    before = lab.replayed
    inst = await lab.restore(iid, to)
    assert lab.replayed - before == to - base
    assert await lab.digest(inst) == full_replay_digest(database_url, iid)
    assert inst.seq == to and inst.generation == 1
    # the new generation keeps the snapshot it started from: a restart uses it too
    store = lab.store
    assert store is not None
    assert [s.seq for s in load_snapshots(store, iid, 1)] == [base]
    # a fork at a point after some calls on the new generation starts from that snapshot
    await drive(lab, iid, EVERY + 2)
    digest = await lab.digest(inst)
    at = to + EVERY
    seqs = [s.seq for s in load_snapshots(store, iid, 1, limit=100)]
    near = max(s for s in seqs if s <= at)
    before = lab.replayed
    fork = await lab.fork(iid, at, "what-if")
    assert lab.replayed - before == at - near < at
    assert [s.seq for s in load_snapshots(store, fork.id, 0)] == [near]
    forked = await lab.digest(fork)
    await lab.shutdown()
    assert forked == full_replay_digest(database_url, fork.id)
    again = lab_on(database_url)
    await again.restore_all()
    assert again.replayed == (inst.seq - seqs[0]) + (at - near)
    assert await again.digest(again.get(iid)) == digest
    assert await again.digest(again.get(fork.id)) == forked
    await again.shutdown()


# ---------------------------------------------------------------- the idle culler
async def test_an_idle_instance_is_parked_and_revived_transparently(database_url: str) -> None:
    async with serve(database_url, cull_idle_s=600, snapshot_every=0) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        clock = Clock(1_000_000.0)
        lab.clock = clock
        iid = (
            await c.post(f"{API}/instances", json={"name": "idle", "preset": "tiny-16m"})
        ).json()["id"]
        for _ in range(5):
            await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        before = (await c.get(f"{API}/instances/{iid}")).json()
        clock.now += 599
        assert await lab.cull() == []  # not idle long enough yet
        clock.now += 2
        parked = await lab.cull()
        assert iid in parked
        inst = lab.get(iid)
        assert inst.live is None  # the machine left memory
        store = lab.store
        assert store is not None
        assert [s.seq for s in load_snapshots(store, iid, 0)] == [before["seq"]]
        # listed, marked parked, same digest, and listing does not bring it back
        listed = {i["id"]: i for i in (await c.get(f"{API}/instances")).json()}
        assert listed[iid]["parked"] is True
        assert listed[iid]["state_digest"] == before["state_digest"]
        assert listed[iid]["summary"] == before["summary"]
        assert inst.live is None
        # the next call brings it back: same state, the calls go on
        r = await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        assert r.status_code == 200 and r.json()["seq"] == before["seq"] + 1
        after = (await c.get(f"{API}/instances/{iid}")).json()
        assert after["parked"] is False
        assert after["state_digest"] == full_replay_digest(database_url, iid)
        assert lab.revivals == 1


async def test_requests_arriving_together_revive_once(database_url: str) -> None:
    async with serve(database_url, cull_idle_s=60, snapshot_every=0) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        clock = Clock(1_000_000.0)
        lab.clock = clock
        iid = (await c.post(f"{API}/instances", json={"name": "x", "preset": "tiny-16m"})).json()[
            "id"
        ]
        await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        digest = (await c.get(f"{API}/instances/{iid}")).json()["state_digest"]
        clock.now += 61
        assert iid in await lab.cull()
        answers = await asyncio.gather(
            c.get(f"{API}/instances/{iid}/vmstats"),
            c.post(f"{API}/instances/{iid}/calls/vm_test_nominal", json={"args": {}}),
            c.get(f"{API}/instances/{iid}/queues"),
        )
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert lab.revivals == 1
        assert lab.get(iid).machine.state_digest() == digest  # vm_test_nominal changes nothing


class Sink:
    """A viewer's connection as the stream hub sees it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        pass


async def test_instances_watched_or_running_a_workload_are_not_parked(database_url: str) -> None:
    async with serve(database_url, cull_idle_s=60, snapshot_every=0) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        clock = Clock(1_000_000.0)
        lab.clock = clock
        ids = [
            (await c.post(f"{API}/instances", json={"name": n, "preset": "tiny-16m"})).json()["id"]
            for n in ("watched", "working", "idle")
        ]
        viewer = lab.stream.connect(ids[0], Sink(), ["vmstats"], 1)
        r = await c.post(
            f"{API}/instances/{ids[1]}/workloads", json={"kind": "churn", "paused": True}
        )
        assert r.status_code == 201
        clock.now += 3600
        assert await lab.cull() == [ids[2]]
        lab.stream.disconnect(viewer)
        await c.post(f"{API}/instances/{ids[1]}/workloads/{r.json()['id']}/stop")
        clock.now += 3600  # the viewer's frames used the machine until it left
        assert sorted(await lab.cull()) == ids[:2]


async def test_a_sleeping_thread_keeps_an_instance_from_being_parked(database_url: str) -> None:
    lab = lab_on(database_url, cull_idle_s=60, snapshot_every=0)
    clock = Clock(1_000_000.0)
    lab.clock = clock
    inst = await lab.create_preset("a", "tiny-16m")
    r, _, _ = await lab.call(inst.id, "vm_page_alloc", {}, Ctx())
    await lab.call(inst.id, "vm_page_busy_try", {"m": r.result, "also_m_busy": False}, Ctx())
    blocked, _, _ = await lab.call(
        inst.id,
        "vm_page_busy_wait",
        {"m": r.result, "also_m_busy": False, "msg": "pgwait"},
        Ctx(thread=9),
    )
    assert blocked.blocked is not None
    clock.now += 61
    assert await lab.cull() == []
    assert inst.live is not None
    await lab.call(inst.id, "vm_page_wakeup", {"m": r.result}, Ctx())
    clock.now += 61
    assert await lab.cull() == [inst.id]
    await lab.shutdown()


async def test_parked_instances_stay_parked_across_a_restart(database_url: str) -> None:
    lab = lab_on(database_url, cull_idle_s=60)
    clock = Clock(1_000_000.0)
    lab.clock = clock
    iid = (await lab.create_preset("a", "tiny-16m")).id
    await drive(lab, iid, EVERY + 3)
    digest = await lab.digest(lab.get(iid))
    clock.now += 61
    assert await lab.cull() == [iid]
    await lab.shutdown()

    again = lab_on(database_url, cull_idle_s=60)
    await again.restore_all()
    inst = again.get(iid)
    assert inst.live is None and inst.parked is not None  # not even loaded
    assert again.replayed == 0
    assert await again.digest(inst) == digest
    assert inst.live is None  # its digest is known without loading it
    assert inst.seq == EVERY + 3 and inst.calls == EVERY + 3
    await again.call(iid, "vm_test_nominal", {}, Ctx())
    assert inst.live is not None and again.revivals == 1
    assert again.replayed == 0  # the snapshot was at the last call
    assert inst.machine.state_digest() == digest
    store = again.store
    assert store is not None
    with store.engine.connect() as conn:
        from app.lab.store import instances

        assert not conn.execute(select(instances.c.parked).where(instances.c.id == iid)).scalar()
        assert conn.execute(select(func.count()).select_from(snapshots)).scalar() >= 1
    await again.shutdown()


# ---------------------------------------------------------------- snapshot files
async def test_a_snapshot_file_exports_and_imports_as_the_same_machine(database_url: str) -> None:
    async with serve(database_url) as c:
        lab: Lab = c.app.state.lab  # type: ignore[attr-defined]
        iid = (await c.post(f"{API}/instances", json={"name": "big", "preset": "tiny-16m"})).json()[
            "id"
        ]
        for _ in range(7):
            await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        original = (await c.get(f"{API}/instances/{iid}")).json()
        r = await c.get(f"{API}/instances/{iid}/snapshot")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert 'filename="big.pagelab-snapshot"' in r.headers["content-disposition"]
        r = await c.post(f"{API}/snapshots", params={"name": "copy"}, content=r.content)
        assert r.status_code == 201, r.text
        copy = r.json()
        assert copy["name"] == "copy" and copy["id"] != iid
        assert copy["state_digest"] == original["state_digest"]
        assert copy["summary"] == original["summary"]
        # the same future: the same calls give the same results and digests
        results = [
            [
                (
                    await c.post(f"{API}/instances/{target}/calls/vm_page_alloc", json={"args": {}})
                ).json()["result"]
                for _ in range(5)
            ]
            for target in (iid, copy["id"])
        ]
        assert results[0] == results[1]
        a = (await c.get(f"{API}/instances/{iid}")).json()["state_digest"]
        b = (await c.get(f"{API}/instances/{copy['id']}")).json()["state_digest"]
        assert a == b
        # a reset goes back to the imported state, not to a boot
        r = await c.post(f"{API}/instances/{copy['id']}/reset")
        assert r.json()["state_digest"] == original["state_digest"]
        # a trace cannot hold it: refused, pointing at the snapshot export
        r = await c.get(f"{API}/instances/{copy['id']}/trace")
        assert r.status_code == 409 and "export it as a snapshot" in r.json()["detail"]
        await c.post(f"{API}/instances/{copy['id']}/calls/vm_page_alloc", json={"args": {}})
        after = (await c.get(f"{API}/instances/{copy['id']}")).json()["state_digest"]
        assert lab.get(copy["id"]).base is not None
    # a restart brings the imported instance back from its starting snapshot
    async with serve(database_url) as c:
        r = await c.get(f"{API}/instances/{copy['id']}")
        assert r.json()["state_digest"] == after


async def test_bad_snapshot_files_are_refused_with_a_clear_problem(database_url: str) -> None:
    async with serve(database_url, max_snapshot_bytes=200_000) as c:
        r = await c.get(f"{API}/instances/1/snapshot")
        good = r.content
        cases = {
            b"": "it is empty",
            b"hello, world": "not a PageLab snapshot",
            good[: len(good) // 2]: "truncated",
            good[:-9] + bytes([good[-9] ^ 1]) + good[-8:]: "corrupt",
        }
        for body, words in cases.items():
            r = await c.post(f"{API}/snapshots", params={"name": "bad"}, content=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert words in r.json()["detail"], (words, r.json()["detail"])
        r = await c.post(f"{API}/snapshots", params={"name": "huge"}, content=b"x" * 200_001)
        assert r.status_code == 413 and "at most 200000 bytes" in r.json()["detail"]
        names = {i["name"] for i in (await c.get(f"{API}/instances")).json()}
        assert names == {"default"}  # nothing was created


async def test_a_machine_with_a_sleeping_thread_cannot_be_exported(database_url: str) -> None:
    async with serve(database_url) as c:
        pfn = (await c.post(f"{API}/instances/1/calls/vm_page_alloc", json={"args": {}})).json()[
            "result"
        ]
        r = await c.post(
            f"{API}/instances/1/calls/vm_page_busy_wait",
            json={"args": {"m": pfn, "also_m_busy": False, "msg": "pgwait"}, "ctx": {"thread": 9}},
        )
        assert r.json()["blocked"]["thread"] == 9
        r = await c.get(f"{API}/instances/1/snapshot")
        assert r.status_code == 409
        assert "thread 9 is sleeping in vm_page_busy_wait" in r.json()["detail"]
        await c.post(f"{API}/instances/1/calls/vm_page_wakeup", json={"args": {"m": pfn}})
        assert (await c.get(f"{API}/instances/1/snapshot")).status_code == 200


async def test_a_snapshot_that_cannot_be_taken_costs_no_call(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot is an optimisation: when capturing fails (the compiled core cannot be
    captured yet, docs/compiled-core.md), the calls that ran stay answered and journalled,
    a warning says why, and it is not tried again before the next multiple."""
    from app.core import snapshot

    def fails(*_: Any, **__: Any) -> Any:
        raise TypeError("cannot capture this machine")

    monkeypatch.setattr(snapshot, "capture", fails)
    lab = lab_on(database_url)
    iid = (await lab.create_preset("a", "tiny-16m")).id
    with capture_logs() as logs:
        await drive(lab, iid, EVERY + 5)
    warned = [e for e in logs if e["event"] == "snapshot failed"]
    assert [(e["instance"], e["seq"]) for e in warned] == [(iid, EVERY)]
    assert "cannot capture" in warned[0]["reason"]
    inst = lab.get(iid)
    assert inst.seq == EVERY + 5
    digest = await lab.digest(inst)
    await lab.shutdown()
    assert rows(database_url, iid) == []
    assert full_replay_digest(database_url, iid) == digest


async def test_a_version_1_snapshot_file_imports_and_comes_back_after_a_restart(
    database_url: str,
) -> None:
    """A file written by snapshot format 1 (before the machine's per-area records; made
    at ff19a2e, ``tests/core/snapshots``) imports as the machine it was, and the instance
    it starts comes back with the same digest after a restart (its base row is that file)."""
    data = (V1 / "v1-8mib.plsnap").read_bytes()
    expected = json.loads((V1 / "v1-8mib.json").read_text())
    async with serve(database_url) as c:
        r = await c.post(f"{API}/snapshots", params={"name": "old"}, content=data)
        assert r.status_code == 201, r.text
        old = r.json()
        assert old["state_digest"] == expected["digest"]
        r = await c.post(
            f"{API}/instances/{old['id']}/calls/vm_object_allocate",
            json={"args": {"type": "OBJT_SWAP", "size": 64}},
        )
        assert r.json()["result"] == expected["future"][0]
        after = (await c.get(f"{API}/instances/{old['id']}")).json()["state_digest"]
        assert after != expected["digest"]
    async with serve(database_url) as c:
        r = await c.get(f"{API}/instances/{old['id']}")
        assert r.json()["state_digest"] == after
        r = await c.post(f"{API}/instances/{old['id']}/reset")
        assert r.json()["state_digest"] == expected["digest"]

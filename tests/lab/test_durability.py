"""Durability and time travel: the journal in SQLite (a real file) and in Postgres (a
throwaway server, tests/lab/postgres.py), restarts, step back, fork, traces, and a server
killed with SIGKILL under load.  Every test with a database runs on both (``database_url``,
tests/lab/conftest.py), each on a database of its own.

Everything rests on one promise: booting an instance's configuration and replaying its
journal gives its state, digest for digest.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.lab.presets import PRESETS
from app.lab.service import replay
from app.lab.settings import Settings
from app.lab.store import Entry, Store
from app.main import create_app

from . import postgres

API = "/api/v1"
pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serve(url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(default_preset="tiny-16m", database_url=url, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


def drop_the_journal(url: str) -> None:
    """The disk goes bad under the store: its journal table disappears."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        assert u.database
        with sqlite3.connect(u.database) as raw:
            raw.execute("DROP TABLE journal")
    else:
        with postgres.connect(url) as raw:
            raw.execute("DROP TABLE journal")


async def some_calls(c: httpx.AsyncClient, iid: int) -> None:
    """A mix of everything that changes a machine: calls, a batch, a sysctl write, a
    blocked call, ticks and a workload."""
    pfns = []
    for _ in range(5):
        r = await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        pfns.append(r.json()["result"])
    await c.post(f"{API}/instances/{iid}/calls/vm_page_wakeup", json={"args": {"m": pfns[0]}})
    await c.post(f"{API}/instances/{iid}/calls/vm_page_activate", json={"args": {"m": pfns[0]}})
    batch = [{"fn": "vm_page_alloc", "ctx": {"cpu": 0}} for _ in range(20)]
    await c.post(f"{API}/instances/{iid}/calls", json={"calls": batch})
    r = await c.put(f"{API}/instances/{iid}/sysctls/vm.max_launder", json={"value": 7})
    assert r.status_code == 200 and r.json()["new"] == 7
    r = await c.post(
        f"{API}/instances/{iid}/calls/vm_page_busy_wait",
        json={"args": {"m": pfns[1], "also_m_busy": False, "msg": "pgwait"}, "ctx": {"thread": 9}},
    )
    assert r.json()["blocked"]["thread"] == 9
    await c.post(f"{API}/instances/{iid}/calls/tick", json={"args": {"n": 5}})
    r = await c.post(f"{API}/instances/{iid}/workloads", json={"kind": "churn", "steps": 400})
    wid = r.json()["id"]
    for _ in range(3000):
        status = (await c.get(f"{API}/instances/{iid}/workloads/{wid}")).json()
        if status["state"] != "running":
            break
        await _yield()
    assert status["state"] == "finished"


async def _yield() -> None:
    import asyncio

    await asyncio.sleep(0.005)  # let the workload's task run; not a timing assertion


async def test_a_restart_brings_every_instance_back_with_the_same_digest(database_url: str) -> None:
    url = database_url
    async with serve(url) as c:
        r = await c.post(f"{API}/instances", json={"name": "box", "preset": "tiny-16m"})
        iid = r.json()["id"]
        await some_calls(c, iid)
        before = (await c.get(f"{API}/instances/{iid}")).json()
        default_before = (await c.get(f"{API}/instances/1")).json()
    assert before["seq"] > 400
    async with serve(url) as c:
        listed = (await c.get(f"{API}/instances")).json()
        assert [i["name"] for i in listed] == ["default", "box"]  # no second default
        after = (await c.get(f"{API}/instances/{iid}")).json()
        assert after["state_digest"] == before["state_digest"]
        assert after["seq"] == before["seq"] and after["generation"] == 0
        assert (await c.get(f"{API}/instances/1")).json()["state_digest"] == default_before[
            "state_digest"
        ]
        sysctl = (await c.get(f"{API}/instances/{iid}/sysctls/vm.max_launder")).json()
        assert sysctl["value"] == 7
        # the thread parked in vm_page_busy_wait is parked again
        threads = (await c.get(f"{API}/instances/{iid}/threads")).json()
        assert any(t["tid"] == 9 and t["state"] != "idle" for t in threads["threads"])
        # and the next call continues the seq
        r = await c.post(f"{API}/instances/{iid}/calls/vm_test_nominal", json={})
        assert r.json()["seq"] == before["seq"] + 1
        # a new instance takes a new id
        r = await c.post(f"{API}/instances", json={"name": "third", "preset": "tiny-16m"})
        assert r.json()["id"] == iid + 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgres", "none"], indirect=True)
async def test_restore_fork_and_traces_agree_with_a_replay(database_url: str) -> None:
    async with serve(database_url) as c:
        iid = (await c.post(f"{API}/instances", json={"name": "a", "preset": "tiny-16m"})).json()[
            "id"
        ]
        await some_calls(c, iid)
        final = (await c.get(f"{API}/instances/{iid}")).json()
        journal = (await c.get(f"{API}/instances/{iid}/journal", params={"limit": 10000})).json()
        entries = journal["entries"]
        assert journal["seq"] == final["seq"] == entries[-1]["seq"]
        assert entries[0] == {
            "seq": 1,
            "fn": "vm_page_alloc",
            "args": {},
            "ctx": {"cpu": 0},
            "source": "api",
            "result": 3075,
        }
        assert {e["source"] for e in entries} >= {"api", "batch"}
        page = (
            await c.get(f"{API}/instances/{iid}/journal", params={"from": 3, "limit": 2})
        ).json()
        assert [e["seq"] for e in page["entries"]] == [4, 5]
        # the journal replayed by the core alone gives the live digest
        config = PRESETS["tiny-16m"].config
        as_entries = [Entry(iid, 0, e["seq"], e["fn"], e["args"], e["ctx"]) for e in entries]
        assert replay(config, as_entries).state_digest() == final["state_digest"]
        # fork at 6 and restore to 6 give the machine after the first six calls
        at = 6
        expected = replay(config, as_entries[:at]).state_digest()
        fork = await c.post(f"{API}/instances/{iid}/fork", json={"at": at, "name": "f"})
        assert fork.status_code == 201 and fork.json()["state_digest"] == expected
        assert fork.json()["seq"] == at
        restored = (await c.post(f"{API}/instances/{iid}/restore", json={"to": at})).json()
        assert restored["state_digest"] == expected
        assert restored["generation"] == 1 and restored["seq"] == at
        kept = (await c.get(f"{API}/instances/{iid}/journal", params={"limit": 100})).json()
        assert [e["seq"] for e in kept["entries"]] == list(range(1, at + 1))
        r = await c.post(f"{API}/instances/{iid}/calls/vm_test_nominal", json={})
        assert r.json()["seq"] == at + 1
        # restoring past the end, or forking under a taken name, is refused
        r = await c.post(f"{API}/instances/{iid}/restore", json={"to": 10**6})
        assert r.status_code == 422 and "from 0 to" in r.json()["detail"]
        r = await c.post(f"{API}/instances/{iid}/fork", json={"at": 1, "name": "f"})
        assert r.status_code == 409
        # a trace round-trips: export, import, same digest
        fork_id = fork.json()["id"]
        trace = (await c.get(f"{API}/instances/{fork_id}/trace")).text
        header = json.loads(trace.splitlines()[0])
        assert header["format"] == "pagelab-trace" and header["version"] == 1
        assert header["calls"] == at and header["state_digest"] == expected
        r = await c.post(
            f"{API}/traces",
            params={"name": "imported"},
            content=trace,
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["state_digest"] == expected and r.json()["seq"] == at


@pytest.mark.parametrize(
    ("trace", "fragment"),
    [
        ("", "empty"),
        ("not json\n", "line 1 of the trace is not JSON"),
        ('{"format": "other"}\n', "must be the header"),
        ('{"format": "pagelab-trace", "version": 9}\n', "version 1, not 9"),
        ('{"format": "pagelab-trace", "version": 1, "config": {}}\n', "config is not readable"),
        (
            '{"format": "pagelab-trace", "version": 1}\n{"fn": "vm_page_alloc", "seq": 2}\n'
            '{"fn": "vm_page_alloc", "seq": 2}\n',
            "line 3: seq must be an integer above 2",
        ),
        ('{"format": "pagelab-trace", "version": 1}\n[1]\n', "line 2 must be a call"),
        ('{"format": "pagelab-trace", "version": 1}\n{"fn": "' + "x" * 65 + '"}\n', "line 2 must"),
        (
            '{"format": "pagelab-trace", "version": 1}\n{"fn": "tick", "source": "a\\u0000"}\n',
            "line 2: source must be a short name",
        ),
        ('{"format": "pagelab-trace", "version": 1, "preset": "' + "p" * 70 + '"}\n', "preset"),
    ],
)
async def test_a_bad_trace_is_refused_with_the_line(trace: str, fragment: str) -> None:
    async with serve("") as c:
        r = await c.post(f"{API}/traces", params={"name": "x"}, content=trace)
        assert r.status_code == 422, r.text
        assert fragment in r.json()["detail"]
        assert [i["name"] for i in (await c.get(f"{API}/instances")).json()] == ["default"]


async def test_a_journal_that_cannot_be_written_is_a_503_not_an_ack(database_url: str) -> None:
    url = database_url
    async with serve(url) as c:
        ok = await c.post(f"{API}/instances/1/calls/vm_page_alloc", json={})
        assert ok.status_code == 200
        drop_the_journal(url)  # the disk goes bad under us
        r = await c.post(f"{API}/instances/1/calls/vm_page_alloc", json={})
        assert r.status_code == 503
        body = r.json()
        assert body["type"] == "/problems/unavailable" and "not acknowledged" in body["detail"]


async def test_a_deleted_instance_stays_deleted(database_url: str) -> None:
    url = database_url
    async with serve(url) as c:
        iid = (await c.post(f"{API}/instances", json={"name": "tmp", "preset": "tiny-16m"})).json()[
            "id"
        ]
        await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={})
        assert (await c.delete(f"{API}/instances/{iid}")).status_code == 204
    async with serve(url) as c:
        assert [i["name"] for i in (await c.get(f"{API}/instances")).json()] == ["default"]
    assert not list(Store(url).entries(iid, 0))


# ---------------------------------------------------------------------------- kill -9
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PAGELAB_DATABASE_URL": url, "PAGELAB_DEFAULT_PRESET": "tiny-16m"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "the server died while starting"
        time.sleep(0.05)  # polling for start-up, not a timing assertion
    proc.kill()
    raise AssertionError("the server did not start")


def test_sigkill_under_load_loses_no_acknowledged_call(database_url: str) -> None:
    url = database_url
    port = _free_port()
    base = f"http://127.0.0.1:{port}{API}"
    proc = _start(url, port)
    acked: list[int] = []
    stop = threading.Event()

    def load(cpu: int) -> None:
        with httpx.Client(timeout=10) as c:
            held: list[int] = []
            while not stop.is_set():
                try:
                    if len(held) < 40:
                        r = c.post(
                            f"{base}/instances/1/calls/vm_page_alloc", json={"ctx": {"cpu": 0}}
                        )
                        if r.status_code == 200 and r.json()["result"] is not None:
                            held.append(r.json()["result"])
                    else:
                        r = c.post(
                            f"{base}/instances/1/calls/vm_page_free",
                            json={"args": {"m": held.pop(0)}},
                        )
                    if r.status_code == 200:
                        acked.append(r.json()["seq"])
                except httpx.HTTPError:
                    return  # the server is gone

    try:
        workers = [threading.Thread(target=load, args=(k,)) for k in range(3)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while len(acked) < 300:  # under load: hundreds of calls acknowledged
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        stop.set()
        for w in workers:
            w.join(30)
        proc = _start(url, port)
        with httpx.Client(base_url=base, timeout=30) as c:
            inst = c.get("/instances/1").json()
            journal = c.get("/instances/1/journal", params={"limit": 10000}).json()["entries"]
    finally:
        stop.set()
        proc.kill()
        proc.wait(30)
    seqs = [e["seq"] for e in journal]
    assert set(acked) <= set(seqs), "an acknowledged call was lost"
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    # at most the calls in flight at the kill were saved without their answer arriving
    assert len(seqs) - len(acked) <= 3
    entries = [Entry(1, 0, e["seq"], e["fn"], e["args"], e["ctx"]) for e in journal]
    assert replay(PRESETS["tiny-16m"].config, entries).state_digest() == inst["state_digest"]


async def test_a_call_refused_with_would_sleep_keeps_what_it_changed_across_a_restart(
    database_url: str,
) -> None:
    """``WouldSleep`` is not a panic: what the kernel did before it would hang stays done
    (here vm_page_alloc's vmstats_rollup, with vm.v_free_reserved at 0 and every free
    queue empty).  The journal keeps the refused call, so a restart's replay (no
    snapshot: everything comes from the journal) makes the same change and lands on the
    same digest."""
    url = database_url
    async with serve(url, snapshot_on_shutdown=False, snapshot_every=0) as c:
        r = await c.post(f"{API}/instances", json={"name": "spin", "preset": "tiny-16m"})
        iid = r.json()["id"]
        r = await c.put(f"{API}/instances/{iid}/sysctls/vm.v_free_reserved", json={"value": 0})
        assert r.status_code == 200
        alloc = {"fn": "vm_page_alloc", "args": {"page_req": "VM_ALLOC_INTERRUPT"}}
        calls = [alloc for _ in range(5000)]
        r = await c.post(f"{API}/instances/{iid}/calls", json={"calls": calls})
        items = r.json()["results"] if "results" in r.json() else r.json()
        refused = [i for i in items if "error" in i]
        assert refused, "the machine ran out of pages before the batch ended"
        first = refused[0]
        assert first["error"]["type"] == "would-sleep", first
        assert "spin in this loop forever" in first["error"]["detail"]
        before = (await c.get(f"{API}/instances/{iid}")).json()
    async with serve(url, snapshot_on_shutdown=False, snapshot_every=0) as c:
        after = (await c.get(f"{API}/instances/{iid}")).json()
        assert after["seq"] == before["seq"]
        assert after["state_digest"] == before["state_digest"]

"""Two API nodes as one service (``PAGELAB_CLUSTER``, docs/placements.md): two real
servers (``python -m app.serve`` subprocesses) share one Postgres and one Ray cluster (a
``ray start --head`` of this test's own), and a request may go to either.  An instance
made through node A is called, read, streamed, snapshotted and deleted through node B;
seqs (refused calls' too), the journal, quotas and digests are those of one server; node
A killed with SIGKILL in the middle of a batch loses nothing acknowledged: B carries on
with exactly the state its journal replays to."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from app.core import snapshot
from app.lab.hosts.base import Ctx, Refusal, UnknownKey, revive_error
from app.lab.hosts.ray_host import HostActor
from app.lab.presets import PRESETS
from app.lab.settings import SettingsError, load_settings
from tests.conftest import missing
from tests.lab.conftest import postgres  # noqa: F401 (the session's Postgres server)
from tests.lab.postgres import PostgresServer
from tests.served import ROOT, Served

from .test_placements import reference

API = "/api/v1"
#: Upper bound on any wait for a server or Ray (never a timing assertion).
PATIENCE_S = 60.0
ADMIN = "cluster-admin-token-" + "x" * 24
#: Ray's own token authentication, on between the head and the API nodes (as a real
#: cluster runs it), with a token of this module's instead of one in ~/.ray
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a ``ray start --block`` and every process it started (by their ids: the
    actors' workers have process groups of their own, and other Rays on this machine
    are left alone)."""
    import psutil  # Ray's own dependency

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head of this module's own (``ray start --head --block``, two CPUs, every port
    free-picked so it never meets another Ray on this machine), its address; stopped by
    signalling its own process group."""
    if importlib.util.find_spec("ray") is None:
        missing("Ray is not installed: pip install -e '.[dev,ray]' (make test does)")
    temp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # short: Ray's unix sockets live here
    port = free_port()
    ports = {
        "--dashboard-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            f"--port={port}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--object-store-memory=100000000",
            f"--temp-dir={temp}",
            *(f"{flag}={value}" for flag, value in ports.items()),
        ],
        env={**os.environ, **RAY_AUTH, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=PATIENCE_S)
            if line is None:
                raise AssertionError("ray start ended:\n" + "".join(seen))
            seen.append(line)
            if "Ray runtime started" in line:
                break
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def nodes(ray_head: str, postgres: PostgresServer) -> Iterator[tuple[Served, Served]]:  # noqa: F811
    """Two API nodes on a fresh database and a namespace of their own, in token mode."""
    database = postgres.new_database()
    env = {
        **RAY_AUTH,
        "PAGELAB_PLACEMENT": "ray",
        "PAGELAB_CLUSTER": "1",
        "PAGELAB_RAY_ADDRESS": ray_head,
        "PAGELAB_RAY_NAMESPACE": f"t{uuid.uuid4().hex[:12]}",
        "PAGELAB_WORKERS": "2",
        "PAGELAB_DATABASE_URL": postgres.url(database),
        "PAGELAB_BOOT_DEFAULT": "0",
        "PAGELAB_AUTH": "token",
        "PAGELAB_ADMIN_TOKEN": ADMIN,
        "PAGELAB_SNAPSHOT_EVERY": "500",
    }
    a = Served(env)
    b: Served | None = None
    try:
        a.start()
        b = Served(env).start()
        yield a, b
    finally:
        for node in (a, b):
            if node is not None and node.proc.poll() is None:
                node.terminate()
        postgres.drop_database(database)


def client(node: Served, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=node.url + API,
        headers={"authorization": f"Bearer {token}"},
        timeout=15,
    )


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def test_two_nodes_serve_one_lab(nodes: tuple[Served, Served]) -> None:
    node_a, node_b = nodes
    with client(node_a, ADMIN) as admin:
        ann_token = ok(admin.post("/users", json={"name": "ann", "role": "student"}), 201)["token"]
        ok(admin.put("/users/ann/quota", json={"instances": 2}))
    a, b = client(node_a, ann_token), client(node_b, ann_token)
    calls: list[tuple[str, dict[str, Any]]] = []

    # made on A, called on B and A in turn: one seq sequence, refused calls included
    box = ok(a.post("/instances", json={"name": "box", "preset": "tiny-16m", "seed": 7}), 201)
    iid = box["id"]
    assert box["seq"] == 0
    args = {"type": "OBJT_DEFAULT", "size": 64}
    r = ok(b.post(f"/instances/{iid}/calls/vm_object_allocate", json={"args": args}))
    assert r["seq"] == 1
    obj = r["result"]
    calls.append(("vm_object_allocate", args))
    batch = [{"fn": "vm_page_alloc", "args": {"object": obj, "pindex": i}} for i in range(10)]
    r = ok(a.post(f"/instances/{iid}/calls", json={"calls": batch}))
    assert [it["seq"] for it in r["results"]] == list(range(2, 12))
    pfns = [it["result"] for it in r["results"]]
    calls += [(c["fn"], c["args"]) for c in batch]
    refused = b.post(f"/instances/{iid}/calls/vm_page_activate", json={"args": {"m": 10**9}})
    assert refused.status_code in (400, 404, 422), refused.text  # seq 12, not journalled
    r = ok(a.post(f"/instances/{iid}/calls/vm_page_activate", json={"args": {"m": pfns[0]}}))
    assert r["seq"] == 13  # A counts B's refused call: the head is shared, not the journal
    calls.append(("vm_page_activate", {"m": pfns[0]}))

    # a stream on B shows the calls made on A
    ws = connect(
        f"ws{node_b.url.removeprefix('http')}{API}/instances/{iid}/stream"
        f"?topics=events,vmstats&token={ann_token}",
        open_timeout=PATIENCE_S,
    )
    with ws:
        hello = json.loads(ws.recv(timeout=PATIENCE_S))
        assert hello["type"] == "hello" and hello["seq"] == 13
        r = ok(a.post(f"/instances/{iid}/calls/vm_page_deactivate", json={"args": {"m": pfns[1]}}))
        assert r["seq"] == 14
        calls.append(("vm_page_deactivate", {"m": pfns[1]}))
        event = None
        for _ in range(200):  # bounded: frames come at the stream's rate
            msg = json.loads(ws.recv(timeout=PATIENCE_S))
            found = [e for e in msg.get("events", []) if e["seq"] == 14]
            if found:
                event = found[0]
                break
        assert event is not None, "no frame on B carried A's call"
        assert event["fn"] == "vm_page_deactivate" and event["args"] == {"m": pfns[1]}

    # both nodes show the same instance, with the digest of those calls run here
    expected = reference(calls).state_digest()
    view_a = ok(a.get(f"/instances/{iid}"))
    view_b = ok(b.get(f"/instances/{iid}"))
    for view in (view_a, view_b):
        assert (view["seq"], view["calls"], view["state_digest"]) == (14, 14, expected)
    assert view_a["summary"] == view_b["summary"]
    journal = ok(b.get(f"/instances/{iid}/journal", params={"limit": 100}))
    assert [e["seq"] for e in journal["entries"]] == [*range(1, 12), 13, 14]
    exported = b.get(f"/instances/{iid}/snapshot")
    assert exported.status_code == 200
    assert snapshot.read_header(exported.content)["digest"] == expected

    # quotas count both nodes' instances; a delete on one is seen by the other
    two = ok(b.post("/instances", json={"name": "two", "preset": "tiny-16m"}), 201)
    assert {i["name"] for i in ok(a.get("/instances"))} == {"box", "two"}
    third = a.post("/instances", json={"name": "three", "preset": "tiny-16m"})
    assert third.status_code == 403 and "'instances'" in third.json()["detail"], third.text
    ok(a.delete(f"/instances/{two['id']}"), 204)
    assert b.get(f"/instances/{two['id']}").status_code == 404
    assert b.get("/instances/two").status_code == 404
    ok(b.post("/instances", json={"name": "three", "preset": "tiny-16m"}), 201)

    # A dies in the middle of a batch: B carries on from what the journal acknowledged
    many = [
        {"fn": "vm_page_activate" if k % 2 else "vm_page_deactivate", "args": {"m": pfns[k % 10]}}
        for k in range(40_000)
    ]
    answered: list[int] = []

    def run_batch() -> None:  # as the admin: bigger than a student's batch quota
        with client(node_a, ADMIN) as admin, contextlib.suppress(httpx.HTTPError):
            r = admin.post(f"/instances/{iid}/calls", json={"calls": many})
            answered.append(r.status_code)

    runner = threading.Thread(target=run_batch, daemon=True)
    runner.start()
    seen: dict[str, Any] = {}
    for _ in range(5_000):  # bounded: each look holds the instance once, between slices
        seen = ok(b.get(f"/instances/{iid}/journal", params={"from": 14, "limit": 1}))
        if seen["seq"] > 1_000 or answered:
            break
    assert not answered and seen["seq"] > 1_000, (
        f"the batch on A never got going: {answered}, seq {seen.get('seq')}\n"
        + "".join(line for line in node_a.raw if '"warning"' in line or '"error"' in line)
    )
    node_a.kill()
    runner.join(PATIENCE_S)
    assert answered == []  # A never answered it: none of it was promised to anyone
    view = ok(b.get(f"/instances/{iid}"))
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = ok(b.get(f"/instances/{iid}/journal", params={"from": after, "limit": 10_000}))
        if not page["entries"]:
            break
        entries += page["entries"]
        after = page["entries"][-1]["seq"]
    assert entries[-1]["seq"] == view["seq"] > 1_000
    replayed = [(e["fn"], e["args"]) for e in entries]
    assert replayed[: len(calls)] == calls
    assert view["state_digest"] == reference(replayed).state_digest()
    r = ok(b.post(f"/instances/{iid}/calls/vm_page_activate", json={"args": {"m": pfns[2]}}))
    assert r["seq"] == view["seq"] + 1
    replayed.append(("vm_page_activate", {"m": pfns[2]}))
    assert ok(b.get(f"/instances/{iid}"))["state_digest"] == reference(replayed).state_digest()
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"placement": "workers"}, "PAGELAB_PLACEMENT=ray"),
        ({"placement": "inprocess"}, "PAGELAB_PLACEMENT=ray"),
        ({"placement": "ray"}, "PAGELAB_RAY_ADDRESS"),
        ({"placement": "ray", "ray_address": "head:6379"}, "Postgres"),
    ],
)
def test_cluster_needs_ray_and_postgres(overrides: dict[str, Any], named: str) -> None:
    """The single-node placements, or a node with a Ray or a database of its own, refuse
    to start as a cluster node, saying what is missing."""
    with pytest.raises(SettingsError) as e:
        load_settings(cluster=True, database_url="sqlite:///x.db", **overrides)
    assert named in str(e.value)
    settings = load_settings(
        cluster=True,
        placement="ray",
        ray_address="head:6379",
        database_url="postgresql+psycopg://lab@db/lab",
    )
    assert settings.cluster


def test_a_shared_host_actor_refuses_calls_past_an_unacknowledged_one() -> None:
    """The actor's body, without Ray: a machine's head follows the calls that reach it
    (refusals before the machine take no seq), and a call sent by a node that believes
    an older seq — another node's call ran there and was never journalled — is refused
    as ``UnknownKey``, which makes the lab rebuild the machine and ask again."""
    actor = HostActor(shared=True)
    key = (1, 0)
    ok_, started = actor.ask("start", (key, PRESETS["tiny-16m"].config, None, True, None))
    assert ok_ and started.reason is None
    assert actor.head(key) == (None, started.page_range)  # installed, not yet marked
    assert actor.mark(key, 5)
    ok_, reply = actor.ask("call", (key, "vm_page_alloc", {}, Ctx(), False, 5, ()))
    assert ok_ and reply.outcome.result == 3075
    ok_, reply = actor.ask("call", (key, "no_such_fn", {}, Ctx(), False, 6, ()))
    assert ok_ and isinstance(reply.outcome, Refusal)  # no seq taken
    assert actor.head(key) == (6, started.page_range)
    ok_, error = actor.ask("call", (key, "vm_page_alloc", {}, Ctx(), False, 5, ()))
    assert not ok_ and isinstance(revive_error(error), UnknownKey)
    assert actor.head(key) == (6, started.page_range)  # the refused question ran nothing
    ok_, _ = actor.ask("drop", (key,))
    assert ok_ and actor.head(key) is None

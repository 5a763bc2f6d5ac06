"""Quotas and rate limits at run time (issue 8 §2), over the real app in token mode on a
temporary SQLite database: calls over the rate get 429 with ``Retry-After`` and a message
naming the quota; a quota raised at run time lets calls through at once; a batch is paid
for before it runs (refused: nothing ran); streams and workloads per user; the server's
page budget in both modes; ``/me`` shows usage; the admin API validates and enforces who
may change what.

Time is driven, never slept: the ``limits`` storage and strategies read the clock through
their module's ``time``, which ``clock`` replaces with a hand-moved one.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import limits.storage.memory
import limits.strategies
import pytest

with warnings.catch_warnings():  # "use httpx2": the TestClient works, and speaks WebSocket
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import app.lab.quota
from app.lab.settings import Settings
from app.main import create_app
from tests.clock import Clock

from .conftest import API, problem, serve

ADMIN, ADMIN_TOKEN = "root8", "admin-token-for-quota-tests-0123456789"
TEACHER, ANN, BEN, OTHER = "teach8", "annq8", "benq8", "othq8"
TINY_PAGES = 4095  # page structures of tiny-16m (pfn 1 .. 4095)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # a quarter into a whole second: windows of 1 s start at .0
    c = Clock(1_000_000.25)
    for module in (limits.storage.memory, limits.strategies):
        monkeypatch.setattr(module, "time", c)
    return c


def token_settings(tmp_path: Path, **overrides: Any) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/q.db",
        "auth": "token",
        "admin_name": ADMIN,
        "admin_token": ADMIN_TOKEN,
        "default_preset": "tiny-16m",
        "boot_default": False,
    }
    return Settings(**{**base, **overrides})


class World:
    """A token-mode server with an admin, an instructor of os101, two of its students and
    a student of os202; tokens by user name."""

    def __init__(self, c: httpx.AsyncClient) -> None:
        self.c = c
        self.tokens = {ADMIN: ADMIN_TOKEN}

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def setup(self) -> None:
        for course in ("os101", "os202"):
            r = await self.c.post(f"{API}/courses", json={"name": course}, headers=self.h(ADMIN))
            assert r.status_code == 201, r.text
        for name, role, course in (
            (TEACHER, "instructor", "os101"),
            (ANN, "student", "os101"),
            (BEN, "student", "os101"),
            (OTHER, "student", "os202"),
        ):
            r = await self.c.post(
                f"{API}/users",
                json={"name": name, "role": role, "course": course},
                headers=self.h(ADMIN),
            )
            assert r.status_code == 201, r.text
            self.tokens[name] = r.json()["token"]

    async def quota(self, user: str, by: str = ADMIN, **changes: Any) -> httpx.Response:
        return await self.c.put(f"{API}/users/{user}/quota", json=changes, headers=self.h(by))

    async def instance(self, user: str, name: str = "m") -> int:
        r = await self.c.post(
            f"{API}/instances", json={"name": name, "preset": "tiny-16m"}, headers=self.h(user)
        )
        assert r.status_code == 201, r.text
        iid: int = r.json()["id"]
        return iid

    async def call(self, user: str, iid: int, fn: str = "vm_test_nominal") -> httpx.Response:
        return await self.c.post(
            f"{API}/instances/{iid}/calls/{fn}", json={"args": {}}, headers=self.h(user)
        )

    async def state(self, user: str, iid: int) -> tuple[str, int]:
        r = await self.c.get(f"{API}/instances/{iid}", headers=self.h(user))
        assert r.status_code == 200, r.text
        return r.json()["state_digest"], r.json()["seq"]

    async def me(self, user: str) -> dict[str, Any]:
        r = await self.c.get(f"{API}/me", headers=self.h(user))
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[World]:
    async with serve(token_settings(tmp_path)) as c:
        world = World(c)
        await world.setup()
        yield world


def retry_after(r: httpx.Response) -> int:
    value = int(r.headers["retry-after"])
    assert value >= 1
    return value


# ------------------------------------------------------------------ calls per second
@pytest.mark.anyio
async def test_calls_over_the_rate_are_429_until_retry_after(lab: World, clock: Clock) -> None:
    assert (await lab.quota(ANN, calls_per_s=2, batch_size=2)).status_code == 200
    iid = await lab.instance(ANN)
    assert (await lab.call(ANN, iid)).status_code == 200
    assert (await lab.call(ANN, iid)).status_code == 200
    before = await lab.state(ANN, iid)
    r = await lab.call(ANN, iid)
    body = problem(r, 429, "rate-limited")
    wait = retry_after(r)
    assert "2 calls per second (quota 'calls_per_s')" in body["detail"]
    assert f"wait {wait} s" in body["detail"] and "instructor or an admin" in body["detail"]
    assert body["retry_after"] == wait
    assert await lab.state(ANN, iid) == before  # refused: nothing ran
    # other users have their own buckets
    assert (await lab.call(ADMIN, iid)).status_code == 200
    # a sysctl write and a reset take from the same bucket
    r = await lab.c.put(
        f"{API}/instances/{iid}/sysctls/vm.v_free_min", json={"value": 90}, headers=lab.h(ANN)
    )
    problem(r, 429, "rate-limited")
    problem(
        await lab.c.post(f"{API}/instances/{iid}/reset", headers=lab.h(ANN)), 429, "rate-limited"
    )
    # half the wait is not enough; the whole of it is
    clock.now += wait / 2
    problem(await lab.call(ANN, iid), 429, "rate-limited")
    clock.now += wait / 2
    assert (await lab.call(ANN, iid)).status_code == 200


@pytest.mark.anyio
async def test_raising_the_rate_at_run_time_lets_calls_through_at_once(
    lab: World, clock: Clock
) -> None:
    assert (await lab.quota(ANN, calls_per_s=1, batch_size=1)).status_code == 200
    iid = await lab.instance(ANN)
    assert (await lab.call(ANN, iid)).status_code == 200
    problem(await lab.call(ANN, iid), 429, "rate-limited")
    r = await lab.quota(ANN, calls_per_s=50, batch_size=50)  # the clock has not moved
    assert r.status_code == 200 and r.json()["quotas"]["calls_per_s"] == 50
    for _ in range(50):
        assert (await lab.call(ANN, iid)).status_code == 200
    problem(await lab.call(ANN, iid), 429, "rate-limited")
    # a role's change applies to everyone in it without an override, at once
    ben = await lab.instance(BEN, "b")
    r = await lab.c.put(
        f"{API}/quotas/roles/student",
        json={"calls_per_s": 1, "batch_size": 1},
        headers=lab.h(ADMIN),
    )
    assert r.status_code == 200 and r.json()["quotas"]["calls_per_s"] == 1
    assert (await lab.call(BEN, ben)).status_code == 200
    problem(await lab.call(BEN, ben), 429, "rate-limited")


@pytest.mark.anyio
async def test_a_batch_is_paid_for_before_it_runs(lab: World, clock: Clock) -> None:
    """calls_per_s 10 and batch_size 20: the bucket holds 20 (the larger)."""
    assert (await lab.quota(ANN, calls_per_s=10, batch_size=20)).status_code == 200
    iid = await lab.instance(ANN)
    start = await lab.state(ANN, iid)
    url = f"{API}/instances/{iid}/calls"
    # more than the bucket ever holds: 413 naming both quotas, nothing ran
    r = await lab.c.post(url, json={"calls": [{"fn": "vm_test_nominal"}] * 21}, headers=lab.h(ANN))
    body = problem(r, 413, "too-large")
    assert "'batch_size' allows 20" in body["detail"] and "'calls_per_s'" in body["detail"]
    assert "holds 20" in body["detail"]
    assert await lab.state(ANN, iid) == start
    # a full bucket's worth runs ...
    r = await lab.c.post(url, json={"calls": [{"fn": "vm_test_nominal"}] * 20}, headers=lab.h(ANN))
    assert r.status_code == 200 and r.json()["completed"] == 20
    after = await lab.state(ANN, iid)
    assert after[1] == start[1] + 20
    # ... then even one batch of 2 is refused whole: none of its calls ran
    r = await lab.c.post(
        url,
        json={"calls": [{"fn": "vm_page_alloc", "args": {"object": None}}] * 2},
        headers=lab.h(ANN),
    )
    problem(r, 429, "rate-limited")
    assert await lab.state(ANN, iid) == after
    clock.now += retry_after(r)
    r = await lab.c.post(url, json={"calls": [{"fn": "vm_test_nominal"}] * 2}, headers=lab.h(ANN))
    assert r.status_code == 200


@pytest.mark.anyio
async def test_a_rate_of_zero_forbids_calls(lab: World) -> None:
    assert (await lab.quota(ANN, calls_per_s=0)).status_code == 200
    iid = await lab.instance(ANN)
    body = problem(await lab.call(ANN, iid), 403, "forbidden")
    assert "'calls_per_s' is 0" in body["detail"]


# ------------------------------------------------------------------ workloads
@pytest.mark.anyio
async def test_workloads_per_user_across_instances(lab: World) -> None:
    assert (await lab.quota(ANN, workloads=1)).status_code == 200
    a, b = await lab.instance(ANN, "a"), await lab.instance(ANN, "b")
    start = {"kind": "churn", "paused": True}
    r = await lab.c.post(f"{API}/instances/{a}/workloads", json=start, headers=lab.h(ANN))
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    r = await lab.c.post(f"{API}/instances/{b}/workloads", json=start, headers=lab.h(ANN))
    body = problem(r, 403, "forbidden")
    assert "quota 'workloads' allows 1" in body["detail"] and "you have 1" in body["detail"]
    assert (await lab.me(ANN))["usage"]["workloads"] == 1
    r = await lab.c.post(f"{API}/instances/{a}/workloads/{wid}/stop", headers=lab.h(ANN))
    assert r.status_code == 200
    r = await lab.c.post(f"{API}/instances/{b}/workloads", json=start, headers=lab.h(ANN))
    assert r.status_code == 201, r.text
    # another student's count is their own
    ben = await lab.instance(BEN, "x")
    r = await lab.c.post(f"{API}/instances/{ben}/workloads", json=start, headers=lab.h(BEN))
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------ the page budget
@pytest.mark.anyio
async def test_page_budget_in_open_mode(served: Any) -> None:
    # the default instance (4095 page structures) fits in 10 000; a second needs 8190
    async with served(page_budget=10_000) as c:
        lab = c.app.state.lab
        assert lab.page_budget == 10_000 and lab.pages_held() == TINY_PAGES
        r = await c.post(f"{API}/instances", json={"name": "b", "preset": "tiny-16m"})
        assert r.status_code == 201
        r = await c.post(f"{API}/instances", json={"name": "c", "preset": "tiny-16m"})
        body = problem(r, 507, "server-full")
        assert "PAGELAB_PAGE_BUDGET" in body["detail"] and "8190 of the 10000" in body["detail"]
        assert [i.name for i in lab.instances.values()] == ["default", "b"]  # nothing booted
        assert lab.pages_held() == 2 * TINY_PAGES
        # a fork and an import are boots too
        r = await c.post(f"{API}/instances/1/fork", json={"at": 0, "name": "f"})
        problem(r, 507, "server-full")
        trace = (await c.get(f"{API}/instances/1/trace")).text
        problem(await c.post(f"{API}/traces?name=t", content=trace), 507, "server-full")
        # a reset needs room for a second copy while it boots: none left, nothing changed
        await c.post(f"{API}/instances/1/calls/vm_page_alloc", json={"args": {"object": None}})
        before = (await c.get(f"{API}/instances/1")).json()
        problem(await c.post(f"{API}/instances/1/reset"), 507, "server-full")
        assert (await c.get(f"{API}/instances/1")).json() == before
        # deleting one makes room
        assert (await c.delete(f"{API}/instances/2")).status_code == 204
        assert (await c.post(f"{API}/instances/1/reset")).json()["seq"] == 0
        assert lab.pages_held() == TINY_PAGES


@pytest.mark.anyio
async def test_page_budget_in_token_mode_and_a_default_that_does_not_fit(
    tmp_path: Path,
) -> None:
    settings = token_settings(tmp_path, page_budget=5000, boot_default=True)
    async with serve(settings) as c:  # the default (4095) fits; nothing else does
        world = World(c)
        await world.setup()
        r = await c.post(
            f"{API}/instances", json={"name": "m", "preset": "tiny-16m"}, headers=world.h(ANN)
        )
        problem(r, 507, "server-full")
        assert (await world.me(ANN))["usage"]["instances"] == 0
    # a budget smaller than the default instance: the server starts without it
    async with serve(token_settings(tmp_path / "x", page_budget=100, boot_default=True)) as c:
        assert c.app.state.lab.instances == {}  # type: ignore[attr-defined]


def test_the_default_budget_comes_from_the_host_memory() -> None:
    import os

    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert app.lab.quota.default_page_budget() == int(physical * 0.5) // 96
    assert app.lab.quota.default_page_budget() > 0


# ------------------------------------------------------------------ /me and the admin API
@pytest.mark.anyio
async def test_me_shows_quotas_and_usage(lab: World, clock: Clock) -> None:
    me = await lab.me(ANN)
    assert me["quotas"]["streams"] == 4 and me["quotas"]["calls_per_s"] == 500
    assert me["usage"] == {
        "instances": 0,
        "pages_total": 0,
        "streams": 0,
        "workloads": 0,
        "calls_available": 10_000,  # the larger of 500 a second and batch_size 10 000
    }
    iid = await lab.instance(ANN)
    await lab.call(ANN, iid)
    usage = (await lab.me(ANN))["usage"]
    assert (
        usage["instances"] == 1 and usage["pages_total"] == TINY_PAGES
    )  # phys_avail: 4 KiB .. 16 MiB
    assert usage["calls_available"] == 9_999


@pytest.mark.anyio
async def test_who_may_change_quotas(lab: World) -> None:
    c = lab.c
    # students change nothing and read only their own
    assert (await lab.quota(BEN, by=ANN, streams=9)).status_code == 404
    assert (await lab.quota(ANN, by=ANN, streams=9)).status_code == 404
    r = await c.put(f"{API}/quotas/roles/student", json={"streams": 9}, headers=lab.h(ANN))
    problem(r, 403, "forbidden")
    r = await c.get(f"{API}/users/{ANN}/quota", headers=lab.h(ANN))
    assert r.status_code == 200 and r.json()["overrides"] == {}
    problem(await c.get(f"{API}/users/{BEN}/quota", headers=lab.h(ANN)), 404, "not-found")
    # an instructor: students of their course, up to their own quotas
    r = await lab.quota(ANN, by=TEACHER, streams=9, workloads=None)
    assert r.status_code == 200 and r.json()["overrides"] == {"streams": 9}
    assert r.json()["quotas"]["streams"] == 9
    r = await lab.quota(ANN, by=TEACHER, calls_per_s=6000)  # the instructor has 5000
    assert "at most your own quota (5000)" in problem(r, 403, "forbidden")["detail"]
    body = problem(await lab.quota(OTHER, by=TEACHER, streams=1), 404, "not-found")
    assert OTHER in body["detail"]  # the name asked for, as for a user that does not exist
    assert (await lab.quota(TEACHER, by=TEACHER, streams=99)).status_code == 404
    r = await c.put(f"{API}/quotas/roles/student", json={"streams": 9}, headers=lab.h(TEACHER))
    problem(r, 403, "forbidden")
    r = await c.get(f"{API}/quotas/roles/student", headers=lab.h(TEACHER))
    assert r.status_code == 200 and r.json()["quotas"]["instances"] == 4
    # validation: all or nothing
    for bad in ({"streams": -1}, {"cpus": 2}, {"calls_per_s": "fast"}, {"streams": 100_001}):
        r = await lab.quota(ANN, **bad)
        problem(r, 422, "validation")
    r = await lab.quota(ANN, workloads=3, instances=10_001)
    assert "instances: 10001 must be a whole number from 0 to 10000" in r.json()["detail"]
    assert (await c.get(f"{API}/users/{ANN}/quota", headers=lab.h(ADMIN))).json()["overrides"] == {
        "streams": 9
    }
    problem(await lab.quota("nobody9", streams=1), 404, "not-found")
    # an admin removes every override at once
    r = await c.delete(f"{API}/users/{ANN}/quota", headers=lab.h(ADMIN))
    assert r.status_code == 204
    assert (await lab.me(ANN))["quotas"]["streams"] == 4
    # a role default changed and restored
    r = await c.put(f"{API}/quotas/roles/observer", json={"streams": 7}, headers=lab.h(ADMIN))
    assert r.json() == {"role": "observer", "quotas": {**r.json()["quotas"], "streams": 7}}
    r = await c.put(f"{API}/quotas/roles/observer", json={"streams": None}, headers=lab.h(ADMIN))
    assert r.json()["quotas"]["streams"] == 2
    problem(await c.get(f"{API}/quotas/roles/guest", headers=lab.h(ADMIN)), 422, "validation")


@pytest.mark.anyio
async def test_quota_endpoints_in_open_mode_are_404(client: httpx.AsyncClient) -> None:
    problem(await client.get(f"{API}/quotas/roles/student"), 404, "not-found")
    problem(await client.put(f"{API}/users/x/quota", json={"streams": 1}), 404, "not-found")
    me = (await client.get(f"{API}/me")).json()
    assert me["quotas"] is None and me["usage"]["instances"] == 1  # the default instance


# ------------------------------------------------------------------ streams
@pytest.fixture
def sync_lab(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with TestClient(create_app(token_settings(tmp_path))) as c:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        r = c.post(f"{API}/users", json={"name": ANN, "role": "student"}, headers=admin)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        r = c.put(f"{API}/users/{ANN}/quota", json={"streams": 2}, headers=admin)
        assert r.status_code == 200
        ann = {"Authorization": f"Bearer {token}"}
        r = c.post(f"{API}/instances", json={"name": "m", "preset": "tiny-16m"}, headers=ann)
        assert r.status_code == 201, r.text
        yield c, {"token": token, "id": str(r.json()["id"]), "admin": ADMIN_TOKEN}


def test_streams_per_user(sync_lab: tuple[TestClient, dict[str, str]]) -> None:
    c, v = sync_lab
    url = f"{API}/instances/{v['id']}/stream?token="
    lab = c.app.state.lab  # type: ignore[attr-defined]
    with c.websocket_connect(url + v["token"]) as one:
        assert one.receive_json()["type"] == "hello"
        with c.websocket_connect(url + v["token"]) as two:
            assert two.receive_json()["type"] == "hello"
            assert lab.usage(ANN)["streams"] == 2
            with c.websocket_connect(url + v["token"]) as three:
                msg = three.receive()
                assert msg["type"] == "websocket.close" and msg["code"] == 4429, msg
                assert "quota 'streams' allows you 2" in msg["reason"]
            with c.websocket_connect(url + v["admin"]) as admins:  # another user's count
                assert admins.receive_json()["type"] == "hello"
        # closing one frees a slot
        assert lab.usage(ANN)["streams"] == 1
        with c.websocket_connect(url + v["token"]) as again:
            assert again.receive_json()["type"] == "hello"
        # a lowered quota holds for the next connection (the open one stays)
        admin = {"Authorization": f"Bearer {v['admin']}"}
        assert c.put(f"{API}/users/{ANN}/quota", json={"streams": 1}, headers=admin).is_success
        with c.websocket_connect(url + v["token"]) as refused:
            assert refused.receive()["code"] == 4429

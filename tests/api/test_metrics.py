"""``GET /metrics`` (app/api/metrics.py, app/lab/metrics.py, app/api/observe.py): what a
scraper reads after some calls, with the right labels and values; each app its own
registry; the setting that protects or removes it; quota refusals counted by quota."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from app.lab.metrics import LoadMeter
from tests.live import live_app

from .conftest import API, DEFAULT, call, problem, serve, tiny_settings

pytestmark = pytest.mark.anyio

CALLS = f"{API}/instances/{DEFAULT}/calls"
TOKEN = "m" * 24


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(text: str, name: str, **labels: str) -> float:
    found = samples(text).get((name, frozenset(labels.items())))
    assert found is not None, f"no sample {name}{labels} in\n{text}"
    return found


async def scrape(c: httpx.AsyncClient, **headers: str) -> str:
    r = await c.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


async def test_calls_requests_instances_and_pages_after_some_calls() -> None:
    async with serve() as c:
        pfns = [(await call(c, "vm_page_alloc")).json()["result"] for _ in range(3)]
        await call(c, "vm_page_free", {"m": pfns[0]})  # allocated pages are busied: freeable
        refused = await c.post(f"{CALLS}/vm_page_free", json={"args": {"m": pfns[0]}})
        assert refused.status_code == 409  # freed twice: the kernel would panic
        batch = [{"fn": "vm_page_wakeup", "args": {"m": p}} for p in pfns[1:]]
        r = await c.post(CALLS, json={"calls": batch})
        assert r.status_code == 200 and all("result" in i for i in r.json()["results"])
        await c.get(f"{API}/instances/{DEFAULT}/no-such-view")  # 404, matches no route
        vm = (await c.get(f"{API}/instances/{DEFAULT}/vmstats")).json()["global"]
        text = await scrape(c)

    # kernel calls by function and outcome, API and batch alike
    assert value(text, "pagelab_kernel_calls_total", function="vm_page_alloc", outcome="ok") == 3
    assert value(text, "pagelab_kernel_calls_total", function="vm_page_free", outcome="ok") == 1
    assert (
        value(text, "pagelab_kernel_calls_total", function="vm_page_free", outcome="refused") == 1
    )
    assert value(text, "pagelab_kernel_calls_total", function="vm_page_wakeup", outcome="ok") == 2
    # HTTP requests by route template (never the raw path) and status
    route = "/api/v1/instances/{instance_id}/calls/{fn}"
    ok = value(text, "pagelab_http_requests_total", method="POST", route=route, status="200")
    assert ok == 4
    assert value(text, "pagelab_http_requests_total", method="POST", route=route, status="409") == 1
    batch_route = "/api/v1/instances/{instance_id}/calls"
    assert (
        value(text, "pagelab_http_requests_total", method="POST", route=batch_route, status="200")
        == 1
    )
    assert (
        value(text, "pagelab_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    assert not any("3075" in line or "/1/" in line for line in text.splitlines())
    latency = value(text, "pagelab_http_request_duration_seconds_count", method="POST", route=route)
    assert latency == 5
    # instances and pages by queue state, as the machine's own vmstats say
    assert value(text, "pagelab_instances", state="live") == 1
    assert value(text, "pagelab_instances", state="parked") == 0
    assert value(text, "pagelab_pages", state="free") == vm["v_free_count"]
    assert value(text, "pagelab_pages", state="wired") == vm["v_wire_count"]
    assert value(text, "pagelab_pages", state="active") == vm["v_active_count"]
    assert value(text, "pagelab_pages", state="hold") == 0
    assert value(text, "pagelab_stream_clients") == 0
    assert value(text, "pagelab_workloads", state="running") == 0
    assert value(text, "pagelab_host_instances", host="local") == 1
    assert value(text, "pagelab_host_page_structs", host="local") == 4095


async def test_each_app_counts_its_own() -> None:
    async with serve() as c:
        await call(c, "vm_page_alloc")
        async with serve() as other:
            text = await scrape(other)
            assert (
                "pagelab_kernel_calls_total",
                frozenset({("function", "vm_page_alloc"), ("outcome", "ok")}),
            ) not in samples(text)
        assert (
            value(await scrape(c), "pagelab_kernel_calls_total", function="vm_page_alloc",
                  outcome="ok")
            == 1
        )  # fmt: skip


async def test_a_deleted_instances_calls_still_count_and_workloads_show() -> None:
    async with serve(tiny_settings(boot_default=False)) as c:
        r = await c.post(f"{API}/instances", json={"name": "gone", "preset": "tiny-16m"})
        iid = r.json()["id"]
        r = await c.post(f"{API}/instances/{iid}/calls/vm_page_alloc", json={"args": {}})
        assert r.status_code == 200
        body = {"kind": "churn", "seed": 1, "paused": True}
        r = await c.post(f"{API}/instances/{iid}/workloads", json=body)
        assert r.status_code == 201, r.text
        text = await scrape(c)
        assert value(text, "pagelab_workloads", state="paused") == 1
        assert (await c.delete(f"{API}/instances/{iid}")).status_code == 204
        text = await scrape(c)
    assert value(text, "pagelab_kernel_calls_total", function="vm_page_alloc", outcome="ok") == 1
    assert value(text, "pagelab_instances", state="live") == 0
    assert value(text, "pagelab_workloads", state="paused") == 0


async def test_quota_refusals_by_quota() -> None:
    async with serve(tiny_settings(max_instances=1, page_budget=4095)) as c:
        r = await c.post(f"{API}/instances", json={"name": "two", "preset": "tiny-16m"})
        problem(r, 429, "quota")
        text = await scrape(c)
        assert value(text, "pagelab_quota_refusals_total", quota="max_instances") == 1
        assert value(text, "pagelab_quota_refusals_total", quota="page_budget") == 0
        r = await c.post(f"{API}/instances/{DEFAULT}/reset")  # a second copy while it boots
        problem(r, 507, "server-full")
        text = await scrape(c)
    assert value(text, "pagelab_quota_refusals_total", quota="page_budget") == 1
    assert value(text, "pagelab_quota_refusals_total", quota="calls_per_s") == 0


async def test_journal_commits_are_timed(tmp_path: Path) -> None:
    async with serve(tiny_settings(database_url=f"sqlite:///{tmp_path}/j.db")) as c:
        for _ in range(3):
            await call(c, "vm_page_alloc")
        text = await scrape(c)
    commits = value(text, "pagelab_journal_commit_seconds_count")
    assert 1 <= commits <= 3  # each call is acknowledged after its own commit, or a shared one
    assert value(text, "pagelab_journal_commit_seconds_sum") > 0


@pytest.mark.parametrize(
    ("overrides", "needs_token"),
    [({"metrics_token": TOKEN}, True), ({"metrics": "token", "metrics_token": TOKEN}, True)],
)
async def test_a_metrics_token_is_required_when_set(
    overrides: dict[str, Any], needs_token: bool
) -> None:
    async with serve(tiny_settings(**overrides)) as c:
        p = problem(await c.get("/metrics"), 401, "unauthorized")
        assert "PAGELAB_METRICS_TOKEN" in p["detail"]
        problem(await c.get("/metrics", headers={"authorization": "Bearer nope"}), 401,
                "unauthorized")  # fmt: skip
        text = await scrape(c, authorization=f"Bearer {TOKEN}")
        assert "pagelab_kernel_calls_total" in text or "pagelab_kernel_calls" in text


async def test_metrics_off_is_a_404_like_any_unknown_path() -> None:
    async with serve(tiny_settings(metrics="off")) as c:
        off = await c.get("/metrics")
        unknown = await c.get("/no-such-path")
    problem(off, 404, "not-found")
    assert off.json()["detail"] == unknown.json()["detail"]


def test_the_load_is_calls_a_second_over_the_window() -> None:
    meter = LoadMeter(window_s=10)
    assert meter.rate(100, now=0.0) == 0.0  # one sample: no rate yet
    assert meter.rate(600, now=5.0) == 100.0  # 500 calls in 5 s (less than a window)
    assert meter.rate(2100, now=15.0) == 150.0  # from the sample a window old: 1500 in 10 s
    assert meter.rate(2100, now=30.0) == 0.0  # nothing since the sample 15 s before


def test_stream_clients_and_frames_over_a_real_socket() -> None:
    """A viewer on a real uvicorn: counted while connected, and every frame it got was
    counted as sent."""
    with live_app() as live, httpx.Client(base_url=live.url, timeout=30) as http:
        url = f"{live.ws}{API}/instances/{DEFAULT}/stream?topics=vmstats,events&rate=30"
        with connect(url, open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
            frames = 0
            for _ in range(3):
                r = http.post(f"{CALLS}/vm_page_alloc", json={"args": {}})
                assert r.status_code == 200
                while True:  # the frame that carries this call's event
                    msg = json.loads(ws.recv(timeout=30))
                    frames += msg["type"] == "frame"
                    if msg["type"] == "frame" and "events" in msg:
                        break
            text = http.get("/metrics").text
            assert value(text, "pagelab_stream_clients") == 1
            assert value(text, "pagelab_stream_frames_total") >= frames >= 3
            assert value(text, "pagelab_stream_frames_built_total") >= 3
            assert value(text, "pagelab_stream_gaps_total") == 0
            assert value(text, "pagelab_stream_frames_dropped_total") == 0

"""The compact batch format (``application/vnd.pagelab.batch+json``, docs/batch-format.md)
against the readable one, over the real app: the same calls on two machines booted alike
give the same results, errors, seqs, journal and state digest; malformed compact bodies
are one 422 problem naming the place and change nothing; the batch is paid for from the
caller's bucket like a readable one; and the client's ``batch_compact``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.api.compact import seq_runs
from app.client import AsyncPageLabClient, compact_batch, seqs_of

from .conftest import API, problem, serve, tiny_settings
from .test_quotas import ANN, Clock, World, clock, lab, retry_after  # noqa: F401

COMPACT = "application/vnd.pagelab.batch+json"
pytestmark = pytest.mark.anyio


async def post_compact(
    c: httpx.AsyncClient, iid: int, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await c.post(
        f"{API}/instances/{iid}/calls",
        content=raw,
        headers={"content-type": COMPACT, **(headers or {})},
    )


async def twin(c: httpx.AsyncClient, name: str) -> int:
    r = await c.post(f"{API}/instances", json={"name": name, "memory": "16MiB", "cpus": 2})
    assert r.status_code == 201, r.text
    iid: int = r.json()["id"]
    r = await c.post(f"{API}/instances/{iid}/calls/vm_object_allocate", json={"args": {}})
    assert r.status_code == 200 and r.json()["result"] == 1, r.text  # object 1 on both
    return iid


def mixed_calls() -> list[dict[str, Any]]:
    """Allocations and lookups, one on another CPU, and four refusals of different kinds:
    an unknown function, a kernel panic, an unknown argument, a bad value."""
    calls: list[dict[str, Any]] = []
    for k in range(12):
        calls.append(
            {"fn": "vm_page_alloc", "args": {"object": 1, "pindex": k, "page_req": "NORMAL"}}
        )
        calls.append({"fn": "vm_page_lookup", "args": {"object": 1, "pindex": k}})
    calls += [
        {"fn": "vm_page_alloc", "args": {"object": None}, "ctx": {"cpu": 1}},
        {"fn": "no_such_function"},
        {"fn": "vm_page_free", "args": {"m": 2000}},  # not busied: KASSERT
        {"fn": "vm_page_alloc", "args": {"bogus": 1}},
        {"fn": "vm_page_lookup", "args": {"object": 1, "pindex": -1}},
        {"fn": "vm_test_nominal"},
        {"fn": "vm_page_lookup", "args": {"object": 1, "pindex": 3}},
    ]
    return calls


async def journal(c: httpx.AsyncClient, iid: int) -> list[dict[str, Any]]:
    r = await c.get(f"{API}/instances/{iid}/journal", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [
        {k: e[k] for k in ("seq", "fn", "args", "ctx", "source", "result")}
        for e in r.json()["entries"]
    ]


async def test_compact_and_readable_batches_do_the_same() -> None:
    async with serve() as c:
        a, b = await twin(c, "readable"), await twin(c, "compact")
        calls = mixed_calls()
        r = await c.post(f"{API}/instances/{a}/calls", json={"calls": calls})
        assert r.status_code == 200, r.text
        readable = r.json()
        r = await post_compact(c, b, compact_batch(calls))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == COMPACT
        out = r.json()

        n = len(calls)
        assert out["ran"] == n and out["results"][:2] == [readable["results"][0]["result"]] * 2
        assert [x.get("result") for x in readable["results"]] == out["results"]
        assert [x.get("seq") for x in readable["results"]] == seqs_of(out)
        want_errors = [
            (x["index"], x["fn"], x["error"]) for x in readable["results"] if "error" in x
        ]
        assert [(e["index"], e["fn"], e["error"]) for e in out["errors"]] == want_errors
        kinds = [e["error"]["type"] for e in out["errors"]]
        assert kinds == ["unknown-function", "kernel-panic", "validation", "validation"]
        assert "seq" not in out["errors"][0]  # refused before it got a seq
        assert (out["completed"], out["failed"]) == (readable["completed"], readable["errors"])
        assert out["completed"] == n - 4
        # one run of seqs but for the unknown function's hole
        assert out["seq"] == [[0, 2, 25], [26, 27, n - 26]]
        assert out["state_digest"] == readable["state_digest"]
        ja, jb = await journal(c, a), await journal(c, b)
        assert ja == jb and len(ja) == 1 + n - 4  # vm_object_allocate + accepted calls
        assert {"cpu": 1} in [e["ctx"] for e in jb]


async def test_stop_on_error_and_records_match() -> None:
    async with serve() as c:
        a, b = await twin(c, "readable"), await twin(c, "compact")
        calls = mixed_calls()
        r = await c.post(
            f"{API}/instances/{a}/calls",
            json={"calls": calls, "stop_on_error": True, "record": True},
        )
        readable = r.json()["results"]
        r = await post_compact(c, b, compact_batch(calls, stop_on_error=True, record=True))
        out = r.json()
        assert out["ran"] == len(readable) == 26  # stopped at the unknown function
        assert [x.get("record") for x in readable] == out["records"]
        assert out["records"][0]["moves"][0]["to"] == "PQ_NONE"
        assert out["records"][-1] is None
        assert out["state_digest"] == r.json()["state_digest"]


async def test_a_form_without_args_and_many_forms_of_one_function() -> None:
    async with serve() as c:
        body = {
            "forms": [{"fn": "vm_test_nominal"}, {"fn": "vm_page_alloc", "ctx": {"cpu": 0}}],
            "fn": [0, 1, 0],
        }
        r = await post_compact(c, 1, body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["results"][0] is False and out["results"][2] is False
        assert out["results"][1] == 3075  # the tiny box's first allocation (conftest)


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ({"forms": [{"fn": "vm_test_nominal"}], "fn": [1]}, "fn.0", "uses form 1"),
        (
            {"forms": [{"fn": "vm_page_free", "args": ["m"]}], "fn": [0, 0], "args": [[5]]},
            "args",
            "args has 1 rows but fn has 2 calls",
        ),
        (
            {"forms": [{"fn": "vm_page_free", "args": ["m"]}], "fn": [0, 0], "args": [[5], []]},
            "args.1",
            "has 0 values but its form names 1 (m)",
        ),
        (
            {"forms": [{"fn": "vm_page_free", "args": ["m"]}], "fn": [0]},
            "args",
            "needs 1 values in args",
        ),
        (
            {"forms": [{"fn": "vm_page_insert", "args": ["m", "m"]}], "fn": []},
            "forms.0.args",
            "names the argument 'm' twice",
        ),
        ({"forms": [{"fn": "x"}], "fn": ["0"]}, "fn.0", "Expected `int`, got `str`"),
        ({"forms": [{"fn": "x"}], "fn": [-1]}, "fn.0", "Expected `int` >= 0"),
        ({"forms": [{"fn": "x", "ctx": {"cpu": 300}}], "fn": [0]}, "forms.0.ctx.cpu", "<= 255"),
        ({"forms": [], "fn": []}, "forms", "length >= 1"),
        ({"forms": [{"fn": "x"}], "fn": [], "calls": []}, "body", "unknown field `calls`"),
        ({"fn": [0]}, "body", "missing required field `forms`"),
        (b'{"forms": [', "body", "not a JSON document"),
    ],
)
async def test_a_malformed_compact_batch_is_one_problem_and_runs_nothing(
    body: Any, where: str, words: str
) -> None:
    async with serve() as c:
        before = (await c.get(f"{API}/instances/1")).json()
        r = await post_compact(c, 1, body)
        doc = problem(r, 422, "validation")
        assert words in doc["detail"], doc
        assert doc["errors"][0]["field"] == where
        after = (await c.get(f"{API}/instances/1")).json()
        assert (after["seq"], after["state_digest"]) == (before["seq"], before["state_digest"])


async def test_the_server_cap_counts_compact_calls() -> None:
    async with serve(tiny_settings(max_batch=3)) as c:
        r = await post_compact(c, 1, {"forms": [{"fn": "vm_test_nominal"}], "fn": [0] * 4})
        assert "at most 3 calls" in problem(r, 413, "too-large")["detail"]
        r = await post_compact(c, 1, {"forms": [{"fn": "vm_test_nominal"}], "fn": [0] * 3})
        assert r.status_code == 200 and r.json()["completed"] == 3


async def test_a_compact_batch_is_paid_from_the_bucket(lab: World, clock: Clock) -> None:  # noqa: F811
    """The readable batch's quota test, in the compact format: calls_per_s 10 and
    batch_size 20 (the bucket holds 20)."""
    assert (await lab.quota(ANN, calls_per_s=10, batch_size=20)).status_code == 200
    iid = await lab.instance(ANN)
    start = await lab.state(ANN, iid)
    nominal = {"forms": [{"fn": "vm_test_nominal"}]}
    r = await post_compact(lab.c, iid, {**nominal, "fn": [0] * 21}, lab.h(ANN))
    assert "'batch_size' allows 20" in problem(r, 413, "too-large")["detail"]
    assert await lab.state(ANN, iid) == start
    r = await post_compact(lab.c, iid, {**nominal, "fn": [0] * 20}, lab.h(ANN))
    assert r.status_code == 200 and r.json()["completed"] == 20
    after = await lab.state(ANN, iid)
    assert after[1] == start[1] + 20
    r = await post_compact(lab.c, iid, {**nominal, "fn": [0, 0]}, lab.h(ANN))
    problem(r, 429, "rate-limited")
    assert await lab.state(ANN, iid) == after
    clock.now += retry_after(r)
    assert (await post_compact(lab.c, iid, {**nominal, "fn": [0]}, lab.h(ANN))).status_code == 200


async def test_readable_batch_errors_keep_their_words() -> None:
    """msgspec reads readable batches first; what it refuses pydantic reads, so the
    problem says what it always said."""
    async with serve() as c:
        r = await c.post(f"{API}/instances/1/calls", json={"calls": [{"fn": ""}]})
        doc = problem(r, 422, "validation")
        assert doc["errors"][0]["field"] == "calls.0.fn", doc
        r = await c.post(f"{API}/instances/1/calls", json={"calls": [], "stop_on_error": 1})
        assert problem(r, 422, "validation")["errors"][0]["field"] == "stop_on_error"
        r = await c.post(
            f"{API}/instances/1/calls",
            json={"calls": [{"fn": "vm_page_alloc", "ctx": {"cpu": 0, "nice": 5}}]},
        )
        assert r.status_code == 200 and r.json()["results"][0]["result"] == 3075
        entries = (await c.get(f"{API}/instances/1/journal")).json()["entries"]
        assert entries[-1]["ctx"] == {"cpu": 0, "nice": 5}


def test_seq_runs() -> None:
    assert seq_runs([]) == []
    assert seq_runs([None]) == []
    assert seq_runs([4, 5, 6]) == [(0, 4, 3)]
    assert seq_runs([1, 2, None, 3, 9, 10, None]) == [(0, 1, 2), (3, 3, 1), (4, 9, 2)]
    answer: Any = {"ran": 7, "seq": seq_runs([1, 2, None, 3, 9, 10, None])}
    assert seqs_of(answer) == [1, 2, None, 3, 9, 10, None]


async def test_the_client_speaks_the_compact_format() -> None:
    async with serve() as c:
        transport = httpx.ASGITransport(app=c.app)  # type: ignore[attr-defined]
        async with AsyncPageLabClient("http://test", transport=transport) as client:
            calls: list[Any] = [
                ("vm_page_alloc", {"object": None}),
                "vm_test_nominal",
                ("vm_page_alloc", {"object": None}, {"cpu": 0}),
                "nope",
            ]
            body = compact_batch(calls)
            assert [f["fn"] for f in body["forms"]] == [
                "vm_page_alloc",
                "vm_test_nominal",
                "vm_page_alloc",
                "nope",
            ]
            assert body["fn"] == [0, 1, 2, 3] and body["args"] == [[None], [], [None], []]
            out = await client.batch_compact(1, calls)
            assert out["results"][:2] == [3075, False] and out["results"][3] is None
            assert seqs_of(out) == [1, 2, 3, None]
            assert out["errors"][0]["error"]["type"] == "unknown-function"


async def test_big_bodies_are_read_and_written_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 calls: a bad row in a later chunk is named by its place in the whole
    batch, and batches of several chunks run every call in both formats."""
    monkeypatch.setattr("app.api.compact.CHUNK_CALLS", 4)
    async with serve() as c:
        form = {"forms": [{"fn": "vm_page_lookup", "args": ["object", "pindex"]}]}
        rows: list[Any] = [[None, k] for k in range(10)]
        rows[9] = 5
        r = await post_compact(c, 1, {**form, "fn": [0] * 10, "args": rows})
        doc = problem(r, 422, "validation")
        assert doc["errors"][0]["field"] == "args.9" and "Expected `array`" in doc["detail"]
        calls = [{"fn": "vm_page_alloc", "args": {"object": None}}] * 10
        r = await c.post(f"{API}/instances/1/calls", json={"calls": calls})
        readable = r.json()
        assert [x["index"] for x in readable["results"]] == list(range(10))
        assert (
            readable["completed"] == 10 and len(set(x["result"] for x in readable["results"])) == 10
        )
        r = await post_compact(c, 1, compact_batch(calls))
        out = r.json()
        assert out["completed"] == 10 and out["seq"] == [[0, 11, 10]]
        assert out["state_digest"] == (await c.get(f"{API}/instances/1")).json()["state_digest"]
        # a bad call in a later chunk of a readable batch: pydantic's own words
        bad = [{"fn": "vm_test_nominal"}] * 6 + [{"fn": "vm_test_nominal", "oops": 1}]
        r = await c.post(f"{API}/instances/1/calls", json={"calls": bad})
        assert problem(r, 422, "validation")["errors"][0]["field"] == "calls.6.oops"

"""SIGTERM, for real: ``python -m app.serve`` in a subprocess on a temporary SQLite
database, a viewer on a stream, calls made and one in flight, then SIGTERM.  The viewer
is told 1001 (going away), the call in flight gets its answer, the process exits 0, and
a new process on the same database brings the instance back from the snapshot written
at shutdown: same digest, same seq, nothing replayed."""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.served import PATIENCE_S, Served

API = "/api/v1"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition ``text``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def call(http: httpx.Client, iid: int, fn: str, **body: Any) -> dict[str, Any]:
    r = http.post(f"{API}/instances/{iid}/calls/{fn}", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_sigterm_closes_streams_1001_finishes_calls_and_snapshots(tmp_path: Path) -> None:
    env = {"PAGELAB_DATABASE_URL": f"sqlite:///{tmp_path}/lab.db"}
    first = Served(env)
    stack = ExitStack()
    try:
        first.start()
        http = httpx.Client(base_url=first.url, timeout=PATIENCE_S)
        stream = f"ws{first.url.removeprefix('http')}{API}/instances/1/stream"
        ws = connect(f"{stream}?topics=vmstats,events", open_timeout=PATIENCE_S)
        stack.enter_context(ws)
        assert json.loads(ws.recv(timeout=PATIENCE_S))["type"] == "hello"
        pfns = [call(http, 1, "vm_page_alloc", args={})["result"] for _ in range(3)]
        call(http, 1, "vm_page_free", args={"m": pfns[1]})  # allocated pages are busied
        call(http, 1, "vm_page_wakeup", args={"m": pfns[0]})
        refused = http.post(f"{API}/instances/1/calls/vm_page_free", json={"args": {"m": pfns[1]}})
        assert refused.status_code == 409  # a refused call takes a seq too
        got = http.get(f"{API}/instances/1")
        before = got.json()
        assert before["seq"] == 6 and before["calls"] == 6

        # a second machine whose thread 1 sleeps in a call that waits for its wakeup:
        # that request is in flight when SIGTERM comes
        r = http.post(f"{API}/instances", json={"name": "sleepy", "preset": "tiny-16m"})
        assert r.status_code == 201, r.text
        sleepy = r.json()["id"]
        busy = call(http, sleepy, "vm_page_alloc", args={})["result"]
        answers: list[httpx.Response] = []
        body = {"args": {"m": busy}, "ctx": {"thread": 1}, "wait": True, "timeout_s": 600}
        waiter = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{first.url}{API}/instances/{sleepy}/calls/vm_page_busy_wait",
                    json=body,
                    timeout=PATIENCE_S,
                )
            )
        )
        waiter.start()
        for _ in range(5000):  # bounded poll until the waiting call's thread sleeps
            threads = http.get(f"{API}/instances/{sleepy}/threads").json()["threads"]
            if any(t["tid"] == 1 and t["state"] == "sleeping" for t in threads):
                break
        else:
            pytest.fail("the waiting call never slept")
        http.close()

        code = first.terminate()
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # frames until the close
                ws.recv(timeout=PATIENCE_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        waiter.join(PATIENCE_S)
        assert code == 0, "".join(first.raw)
        # the call in flight was answered, as if its wait had ended: still asleep
        assert len(answers) == 1 and answers[0].status_code == 200, answers
        assert answers[0].json()["blocked"]["thread"] == 1
        assert answers[0].json()["completed"] is None
        # the logs: JSON lines only (stdout is a pipe), one access line per request and
        # none of uvicorn's own; the answer's X-Request-ID names its access line
        assert not [line for line in first.lines if line.get("not_json")], first.raw
        assert not [line for line in first.lines if line.get("logger") == "uvicorn.access"]
        access = [
            line
            for line in first.events("request")
            if line["request_id"] == got.headers["x-request-id"]
        ]
        assert len(access) == 1
        assert (access[0]["method"], access[0]["route"], access[0]["status"]) == (
            "GET",
            "/api/v1/instances/{instance_id}",
            200,
        )
        # uvicorn's own lines go through the same renderer
        assert any(line.get("logger") == "uvicorn.error" for line in first.lines)
        assert not any("color_message" in line for line in first.lines)
        drained = first.events("draining")
        assert drained and drained[0]["streams_closed"] == 1
        # the sleepy machine cannot be snapshotted (a thread sleeps in a call); the
        # default one was, at its seq
        done = first.events("lab shut down")
        assert done and done[0]["snapshots_written"] == 1
    finally:
        stack.close()
        first.kill()

    second = Served(env)
    try:
        second.start()
        with httpx.Client(base_url=second.url, timeout=PATIENCE_S) as http:
            after = http.get(f"{API}/instances/1").json()
            assert (after["seq"], after["state_digest"]) == (before["seq"], before["state_digest"])
            restored = {line["instance"]: line for line in second.events("instance restored")}
            assert restored[1]["snapshot_seq"] == before["seq"]  # loaded, not replayed
            text = http.get("/metrics").text
            # only the sleepy machine's two calls were replayed
            assert metric(text, "pagelab_journal_replayed_calls_total") == 2
            assert http.get(f"{API}/instances/{sleepy}").json()["seq"] == 2
        assert second.terminate() == 0
    finally:
        second.kill()

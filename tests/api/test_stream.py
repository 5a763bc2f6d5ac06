"""The live stream (``WS /api/v1/instances/{id}/stream``, docs/stream-protocol.md) against
a real uvicorn on 127.0.0.1 and real WebSocket clients.

The default instance is ``tiny-16m`` (see tests/api/conftest.py for its numbers): the
first ``vm_page_alloc`` on CPU 0 takes pfn 3075, the head of PQ_FREE colour 0, whose
lcnt goes from 3 (pfns 1025, 2050 and 3075: the DMA reserve keeps pfns 1 .. 255 only) to 2.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from app.lab.settings import Settings
from tests.live import Live, live_app

API = "/api/v1"
STATE_TOPICS = ("vmstats", "queues", "threads", "pageout")
#: Upper bound on any wait for the server in these tests (never a timing assertion).
PATIENCE_S = 30.0


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_app(Settings(default_preset="tiny-16m")) as server:
        yield server


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url + API, timeout=PATIENCE_S) as c:
        yield c


_names = iter(range(1, 1_000_000))


@pytest.fixture
def inst(http: httpx.Client) -> Iterator[int]:
    """A fresh tiny-16m instance for one test."""
    r = http.post("/instances", json={"name": f"s{next(_names)}", "preset": "tiny-16m"})
    assert r.status_code == 201, r.text
    iid: int = r.json()["id"]
    yield iid
    http.delete(f"/instances/{iid}")


def open_stream(live: Live, iid: int, query: str = "", **kw: Any) -> ClientConnection:
    return connect(f"{live.ws}{API}/instances/{iid}/stream{query}", open_timeout=10, **kw)


def recv(ws: ClientConnection) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(ws.recv(timeout=PATIENCE_S))
    return msg


def call(http: httpx.Client, iid: int, fn: str, **args: Any) -> dict[str, Any]:
    r = http.post(f"/instances/{iid}/calls/{fn}", json={"args": args})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


class Mirror:
    """What a client following docs/stream-protocol.md holds."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.seq = -1
        self.events: list[dict[str, Any]] = []
        self.summaries: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.frames = 0
        self.hellos = 0
        self.behind = False  # after a gap, until a frame brings the state in full

    def apply(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "hello":
            self.hellos += 1
            self.state = json.loads(json.dumps(msg["snapshot"]))
            self.seq = msg["seq"]
            self.behind = False
        elif kind == "frame":
            self.frames += 1
            assert msg["seq"] >= self.seq, "frames go forward"
            self.seq = msg["seq"]
            if msg.get("behind"):
                assert not any(k in msg for k in ("vmstats", "queues", "threads", "pageout"))
                self.behind = True
            elif "queues" in msg and msg["queues"]["full"]:
                self.behind = False
            for name in ("vmstats", "threads", "pageout", "pagemap"):
                if name in msg:
                    self.state[name] = msg[name]
            if "pages" in msg:
                self.state.setdefault("pages", {}).update(msg["pages"])
            if "queues" in msg:
                q = msg["queues"]
                if q["full"]:
                    self.state["queues"] = q["counts"]
                else:
                    for qtype, cells in q["changed"].items():
                        for color, lcnt in cells:
                            self.state["queues"][qtype][color] = lcnt
            self.events.extend(msg.get("events", []))
            if "events_summary" in msg:
                self.summaries.append(msg["events_summary"])
        elif kind == "gap":
            self.gaps.append(msg)
            self.behind = True

    def reply(self, ws: ClientConnection) -> dict[str, Any]:
        """The next message that is not a frame (frames in between are applied)."""
        while (msg := recv(ws))["type"] == "frame":
            self.apply(msg)
        return msg

    def follow_until(self, ws: ClientConnection, seq: int) -> None:
        """Read until the state is stamped with ``seq``."""
        deadline = time.monotonic() + PATIENCE_S
        while self.seq < seq or self.behind:
            assert time.monotonic() < deadline, f"no frame reached seq {seq} (at {self.seq})"
            self.apply(recv(ws))


def views(http: httpx.Client, iid: int) -> dict[str, Any]:
    vm = http.get(f"/instances/{iid}/vmstats").json()
    del vm["fields"]
    return {
        "vmstats": vm,
        "queues": http.get(f"/instances/{iid}/queues").json(),
        "threads": http.get(f"/instances/{iid}/threads").json(),
        "pageout": http.get(f"/instances/{iid}/pageout").json(),
    }


# ---------------------------------------------------------------------------- hello
def test_hello_carries_the_protocol_and_a_snapshot_equal_to_the_views(
    live: Live, http: httpx.Client, inst: int
) -> None:
    with open_stream(live, inst) as ws:
        hello = recv(ws)
    assert hello["type"] == "hello"
    assert hello["protocol"] == 1
    assert hello["seq"] == 0 and hello["generation"] == 0
    assert hello["topics"] == ["queues", "vmstats"] and hello["rate"] == 10
    assert hello["instance"]["id"] == inst
    assert hello["instance"]["summary"]["v_free_count"] == 3711
    assert hello["fields"]["v_free_count"]["unit"] == "pages"
    assert hello["limits"]["events_per_frame"] == 256
    assert set(hello["snapshot"]) == set(STATE_TOPICS)
    assert hello["snapshot"] == views(http, inst)
    # PQ_FREE colour 0 at boot: pfns 1025, 2050 and 3075
    assert hello["snapshot"]["queues"]["PQ_FREE"][0] == 3


def test_deltas_applied_to_the_snapshot_equal_the_views(
    live: Live, http: httpx.Client, inst: int
) -> None:
    mirror = Mirror()
    with open_stream(live, inst, "?topics=vmstats,queues,threads,pageout&rate=30") as ws:
        mirror.apply(recv(ws))
        pfns = [call(http, inst, "vm_page_alloc", page_req="VM_ALLOC_NORMAL")["result"]]
        assert pfns == [3075]
        for _ in range(20):
            pfns.append(call(http, inst, "vm_page_alloc", page_req="VM_ALLOC_NORMAL")["result"])
        for pfn in pfns[:5]:
            call(http, inst, "vm_page_wakeup", m=pfn)
            call(http, inst, "vm_page_activate", m=pfn)
        call(http, inst, "vm_page_deactivate", m=pfns[0])
        for pfn in pfns[10:]:
            call(http, inst, "vm_page_free", m=pfn)
        last = call(http, inst, "tick", n=3)["seq"]
        mirror.follow_until(ws, last)
        assert mirror.seq == last
        assert mirror.state == views(http, inst)
        # one cell by hand: colour 0 (pfns 1025, 2050, 3075 at boot) is short of the
        # colour-0 pages still held (the first ten); pc = (pfn ^ pfn>>10 ^ pfn>>20) & 1023
        held_color0 = sum(1 for p in pfns[:10] if (p ^ p >> 10 ^ p >> 20) & 1023 == 0)
        assert held_color0 >= 1  # 3075 at least
        assert mirror.state["queues"]["PQ_FREE"][0] == 3 - held_color0


def test_a_late_viewer_and_a_second_tier_agree_with_the_first(
    live: Live, http: httpx.Client, inst: int
) -> None:
    first, second = Mirror(), Mirror()
    with open_stream(live, inst, "?rate=20") as a:
        first.apply(recv(a))
        for _ in range(5):
            call(http, inst, "vm_page_alloc")
        with open_stream(live, inst, "?rate=7") as b:
            second.apply(recv(b))
            for _ in range(5):
                call(http, inst, "vm_page_alloc")
            last = call(http, inst, "vm_page_alloc")["seq"]
            first.follow_until(a, last)
            second.follow_until(b, last)
    assert first.state["queues"] == second.state["queues"] == views(http, inst)["queues"]


# ---------------------------------------------------------------------------- events
def test_events_arrive_in_seq_order_with_their_records(
    live: Live, http: httpx.Client, inst: int
) -> None:
    mirror = Mirror()
    with open_stream(live, inst, "?topics=events&rate=30") as ws:
        mirror.apply(recv(ws))
        first = call(http, inst, "vm_page_alloc", page_req="VM_ALLOC_NORMAL")
        r = http.post(f"/instances/{inst}/calls/vm_page_free", json={"args": {"m": 1}})
        assert r.status_code == 404 or r.status_code == 409 or r.status_code == 422
        seqs = [first["seq"]]
        for _ in range(40):
            seqs.append(call(http, inst, "vm_test_nominal")["seq"])
        mirror.follow_until(ws, seqs[-1])
    got = [e["seq"] for e in mirror.events]
    assert got == sorted(got) and len(got) == len(set(got))
    assert got[-1] == seqs[-1]
    alloc = mirror.events[0]
    assert alloc["seq"] == 1 and alloc["fn"] == "vm_page_alloc" and alloc["source"] == "api"
    assert alloc["result"] == 3075
    assert alloc["moves"] == [{"pfn": 3075, "from": "PQ_FREE:0", "to": "PQ_NONE"}]
    # the kernel's alloc explanation names the queues it probed and found (issue 11)
    (explained,) = [e for e in alloc["events"] if e["event"] == "alloc"]
    assert explained["found_queue"] == {"queue": "PQ_FREE", "color": 0}
    assert explained["probes"] == [{"queue": "PQ_FREE", "color": 0}]
    assert alloc["ctx"] == {"cpu": 0}
    # a refused call is an event too, with its error and no record
    refused = [e for e in mirror.events if e["fn"] == "vm_page_free"]
    if refused:
        assert "error" in refused[0] and "moves" not in refused[0]
    # every seq from the first to the last arrived
    assert got == list(range(got[0], got[-1] + 1))


def test_a_100000_call_batch_makes_a_bounded_number_of_frames(
    live: Live, http: httpx.Client, inst: int
) -> None:
    mirror = Mirror()
    n = 100_000
    with open_stream(live, inst, "?topics=events,queues&rate=10") as ws:
        mirror.apply(recv(ws))
        started = time.monotonic()
        r = http.post(
            f"/instances/{inst}/calls",
            json={"calls": [{"fn": "vm_test_nominal"}] * (n - 2) + [{"fn": "vm_page_alloc"}] * 2},
        )
        assert r.status_code == 200 and r.json()["completed"] == n
        mirror.follow_until(ws, n)
        elapsed = time.monotonic() - started
    itemised = len(mirror.events)
    summarised = sum(s["count"] for s in mirror.summaries)
    assert itemised + summarised == n  # every call accounted for, none twice
    # at most `rate` frames a second, whatever the call rate (+1 for the frame in flight)
    assert mirror.frames <= 10 * elapsed + 2
    big = max(mirror.summaries, key=lambda s: s["count"])
    assert big["by_fn"]["vm_test_nominal"] >= 1
    assert sum(big["by_fn"].values()) == big["count"]
    assert len(big["tail"]) == 16 and big["tail"][-1]["seq"] == big["to_seq"]
    total_allocs = sum(s["by_fn"].get("vm_page_alloc", 0) for s in mirror.summaries) + sum(
        1 for e in mirror.events if e["fn"] == "vm_page_alloc"
    )
    assert total_allocs == 2
    moves = sum(s["moves"].get("PQ_FREE->PQ_NONE", 0) for s in mirror.summaries)
    assert moves + sum(len(e.get("moves", [])) for e in mirror.events) == 2


# ---------------------------------------------------------------------------- subscriptions
def test_unsubscribe_stops_a_topic_and_subscribe_sends_it_in_full(
    live: Live, http: httpx.Client, inst: int
) -> None:
    mirror = Mirror()
    with open_stream(live, inst, "?topics=queues,events&rate=30") as ws:
        mirror.apply(recv(ws))
        ws.send(json.dumps({"op": "unsubscribe", "topics": ["events"]}))
        ack = recv(ws)
        assert ack == {"type": "ack", "op": "unsubscribe", "topics": ["queues"], "rate": 30}
        seq = call(http, inst, "vm_page_alloc")["seq"]
        while mirror.seq < seq:
            msg = recv(ws)
            assert "events" not in msg and "events_summary" not in msg
            mirror.apply(msg)
        ws.send(json.dumps({"op": "subscribe", "topics": ["pageout"], "rate": 5}))
        assert recv(ws) == {
            "type": "ack",
            "op": "subscribe",
            "topics": ["pageout", "queues"],
            "rate": 5,
        }
        # joining another tier: the next frame carries every state topic in full
        frame = recv(ws)
        assert frame["type"] == "frame"
        assert frame["queues"]["full"] is True and "pageout" in frame
        assert frame["pageout"] == http.get(f"/instances/{inst}/pageout").json()


def test_watched_pages_and_the_pagemap_follow_the_views(
    live: Live, http: httpx.Client, inst: int
) -> None:
    mirror = Mirror()
    with open_stream(live, inst, "?topics=pages,pagemap&rate=30") as ws:
        mirror.apply(recv(ws))
        ws.send(json.dumps({"op": "watch", "pfns": [3075, 2050]}))
        assert mirror.reply(ws) == {"type": "ack", "op": "watch", "pfns": [3075, 2050]}
        ws.send(json.dumps({"op": "pagemap", "lo": 1, "hi": 4001, "width": 40}))
        assert mirror.reply(ws)["op"] == "pagemap"
        # the map of the whole machine came first (512 buckets asked, 8 pages each:
        # ceil(4095 / 512) = 8, so ceil(4095 / 8) = 512 buckets)
        assert mirror.state["pagemap"]["bucket_pages"] == 8
        seq = call(http, inst, "vm_page_alloc")["seq"]
        mirror.follow_until(ws, seq)
        while "pagemap" not in mirror.state or "2050" not in mirror.state.get("pages", {}):
            mirror.apply(recv(ws))
    assert mirror.state["pages"]["3075"] == http.get(f"/instances/{inst}/pages/3075").json()
    assert mirror.state["pages"]["3075"]["queue"] == "PQ_NONE"
    assert (
        mirror.state["pagemap"]
        == http.get(f"/instances/{inst}/pagemap", params={"lo": 1, "hi": 4001, "width": 40}).json()
    )
    assert mirror.state["pagemap"]["bucket_pages"] == 100  # 4000 pfns / 40 buckets


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ("not json", "JSON objects"),
        ("[1, 2]", "JSON object"),
        ('{"op": "dance"}', "unknown op 'dance'"),
        ('{"op": "subscribe", "topics": ["vmstat"]}', "unknown topic 'vmstat'"),
        ('{"op": "subscribe", "topics": "events"}', "topics must be a list"),
        ('{"op": "rate", "rate": 99}', "from 1 to 30"),
        ('{"op": "rate", "rate": "fast"}', "from 1 to 30"),
        ('{"op": "watch", "pfns": [99999999]}', "outside this machine"),
        ('{"op": "watch", "pfns": "all"}', "list of page frame numbers"),
        ('{"op": "watch", "pfns": ' + json.dumps(list(range(1, 300))) + "}", "at most 256"),
        ('{"op": "pagemap", "width": 0}', "from 1 to 4096"),
        ('{"op": "pagemap", "lo": 10, "hi": 5}', "must be below"),
        ('{"op": "ping", "extra": 1}', "unknown: extra"),
    ],
)
def test_a_bad_message_gets_an_error_and_the_connection_survives(
    live: Live, message: str, fragment: str
) -> None:
    with open_stream(live, 1, "?topics=threads") as ws:
        assert recv(ws)["type"] == "hello"
        ws.send(message)
        err = recv(ws)
        assert err["type"] == "error" and err["code"] == "bad-message"
        assert fragment in err["detail"]
        ws.send(b"\x00binary")
        assert "not binary" in recv(ws)["detail"]
        ws.send('{"op": "ping"}')
        assert recv(ws) == {"type": "pong"}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [("?topics=nope", "unknown topic 'nope'"), ("?rate=0", "from 1 to 30"), ("?rate=x", "1 to 30")],
)
def test_a_bad_query_is_closed_with_1008_and_a_reason(
    live: Live, query: str, fragment: str
) -> None:
    with open_stream(live, 1, query) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=PATIENCE_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008 and fragment in closed.value.rcvd.reason


def test_an_unknown_instance_is_closed_with_1008(live: Live) -> None:
    with open_stream(live, 999999) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=PATIENCE_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "no instance 999999" in closed.value.rcvd.reason


def test_reset_sends_a_new_hello_and_delete_says_bye(live: Live, http: httpx.Client) -> None:
    iid = http.post("/instances", json={"name": "resetme", "preset": "tiny-16m"}).json()["id"]
    with open_stream(live, iid, "?topics=queues&rate=30") as ws:
        assert recv(ws)["generation"] == 0
        call(http, iid, "vm_page_alloc")
        assert http.post(f"/instances/{iid}/reset").status_code == 200
        while (msg := recv(ws))["type"] != "hello":
            assert msg["type"] == "frame"
        assert msg["generation"] == 1 and msg["seq"] == 0
        assert msg["snapshot"]["queues"]["PQ_FREE"][0] == 3  # the same machine again
        assert http.delete(f"/instances/{iid}").status_code == 204
        while (msg := recv(ws))["type"] != "bye":
            pass
        assert "deleted" in msg["reason"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=PATIENCE_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


# ---------------------------------------------------------------------------- slow viewers
def _small_receiver(url: str) -> ClientConnection:
    """A client that stops reading its socket after one unread message (``max_queue``)
    and whose kernel receive buffer is tiny, so that not reading backs up to the server
    at once.  No keepalive pings: a client that reads nothing could not answer them."""
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    return connect(url, sock=sock, open_timeout=10, max_size=None, max_queue=1, ping_interval=None)


def _churn_until(http: httpx.Client, healthy: Mirror, ok: ClientConnection, done: Any) -> int:
    """Run the ``churn`` workload on instance 1 flat out until ``done()``, reading the
    healthy viewer all along; stop it and return the seq of one last call."""
    r = http.post("/instances/1/workloads", json={"kind": "churn", "rate": "max", "seed": 3})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    deadline = time.monotonic() + PATIENCE_S * 2
    while not done():
        assert time.monotonic() < deadline, "the slow viewer was never caught"
        with contextlib.suppress(TimeoutError):
            healthy.apply(json.loads(ok.recv(timeout=0.05)))
    stopped = http.post(f"/instances/1/workloads/{wid}/stop").json()
    assert stopped["state"] == "stopped" and stopped["errors"] == 0
    final: int = http.post("/instances/1/calls/vm_test_nominal", json={}).json()["seq"]
    return final


def test_a_slow_viewer_gets_gaps_then_exact_state_and_nobody_else_waits() -> None:
    settings = Settings(
        default_preset="tiny-16m",
        stream_buffer_frames=3,
        stream_stuck_after_s=600,
    )
    with (
        live_app(settings, sndbuf=4096) as live,
        httpx.Client(base_url=live.url + API, timeout=PATIENCE_S) as http,
    ):
        url = f"{live.ws}{API}/instances/1/stream?topics=events,queues,vmstats&rate=30"
        healthy, mirror = Mirror(), Mirror()
        with _small_receiver(url) as slow, open_stream(live, 1, "?topics=queues&rate=30") as ok:
            mirror.apply(recv(slow))
            healthy.apply(recv(ok))
            slow_viewer = next(v for v in live.lab.stream.viewers.values() if "events" in v.topics)
            final = _churn_until(http, healthy, ok, lambda: slow_viewer.gaps > 0)
            # the healthy viewer kept up the whole time and is exact
            healthy.follow_until(ok, final)
            assert healthy.state["queues"] == http.get("/instances/1/queues").json()
            assert not slow_viewer.closed
            # now the slow client reads: a gap, then frames whose state is exact again
            mirror.follow_until(slow, final)
            now = views(http, 1)
            assert mirror.state["queues"] == healthy.state["queues"] == now["queues"]
            assert mirror.state["vmstats"] == now["vmstats"]
    assert mirror.gaps, "the slow viewer was told what it lost"
    gap = mirror.gaps[0]
    assert 1 <= gap["from_seq"] <= gap["to_seq"] and "slow consumer" in gap["reason"]
    lost = sum(g["to_seq"] - g["from_seq"] + 1 for g in mirror.gaps)
    got = len(mirror.events) + sum(s["count"] for s in mirror.summaries)
    assert got + lost == final  # every call either arrived or was named in a gap, once


def test_a_stuck_viewer_is_closed_with_1013_and_the_others_go_on() -> None:
    settings = Settings(
        default_preset="tiny-16m",
        stream_buffer_frames=2,
        stream_stuck_after_s=0.5,
    )
    with (
        live_app(settings, sndbuf=4096) as live,
        httpx.Client(base_url=live.url + API, timeout=PATIENCE_S) as http,
    ):
        url = f"{live.ws}{API}/instances/1/stream?topics=events&rate=30"
        healthy = Mirror()
        with _small_receiver(url) as stuck, open_stream(live, 1, "?topics=queues&rate=30") as ok:
            recv(stuck)
            healthy.apply(recv(ok))
            stream = live.lab.stream
            final = _churn_until(http, healthy, ok, lambda: stream.closed_slow > 0)
            healthy.follow_until(ok, final)  # the healthy viewer was never held up
            assert healthy.state["queues"] == http.get("/instances/1/queues").json()
            with pytest.raises(ConnectionClosed) as end:
                while True:
                    stuck.recv(timeout=PATIENCE_S)
    assert end.value.rcvd is not None and end.value.rcvd.code == 1013
    assert "reconnect" in end.value.rcvd.reason


def test_a_workloads_calls_are_events_with_its_source(
    live: Live, http: httpx.Client, inst: int
) -> None:
    mirror = Mirror()
    with open_stream(live, inst, "?topics=events&rate=30") as ws:
        mirror.apply(recv(ws))
        r = http.post(f"/instances/{inst}/workloads", json={"kind": "churn", "steps": 120})
        wid = r.json()["id"]
        deadline = time.monotonic() + PATIENCE_S
        while (status := http.get(f"/instances/{inst}/workloads/{wid}").json())[
            "state"
        ] == "running":
            assert time.monotonic() < deadline
            mirror.apply(recv(ws))
        assert status["state"] == "finished" and status["calls"] == 120
        mirror.follow_until(ws, status["last_seq"])
    seen = mirror.events + [e for s in mirror.summaries for e in s["tail"]]
    assert {e["source"] for e in seen} == {f"workload:{wid}"}
    assert len(mirror.events) + sum(s["count"] for s in mirror.summaries) == 120
    assert status["first_seq"] == 1 and status["last_seq"] == 120


def test_a_viewer_that_acks_too_little_gets_gaps_then_catches_up() -> None:
    """A viewer that says (op "ack") it took in only its first frame is, once what it was
    sent is more than stream_lag_s of frames past that, sent nothing new; when it acks
    what it was sent, it hears of the events it missed (one gap) and gets the state in
    full, exact again."""
    settings = Settings(default_preset="tiny-16m", stream_lag_s=0.2, stream_stuck_after_s=600)
    with (
        live_app(settings) as live,
        httpx.Client(base_url=live.url + API, timeout=PATIENCE_S) as http,
        open_stream(live, 1, "?topics=events,queues&rate=30") as ws,
    ):
        mirror = Mirror()
        mirror.apply(recv(ws))
        viewer = next(iter(live.lab.stream.viewers.values()))
        first_time = last_time = None
        r = http.post("/instances/1/workloads", json={"kind": "churn", "rate": "max", "seed": 4})
        wid = r.json()["id"]
        deadline = time.monotonic() + PATIENCE_S
        while not viewer.lagging:
            assert time.monotonic() < deadline, "the viewer was never found lagging"
            with contextlib.suppress(TimeoutError):
                msg = json.loads(ws.recv(timeout=0.05))
                mirror.apply(msg)
                if msg["type"] == "frame":
                    last_time = msg["time"]
                    if first_time is None:
                        first_time = msg["time"]
                        ws.send(json.dumps({"op": "ack", "time": first_time}))
        assert not mirror.gaps  # nothing is said while it lags
        http.post(f"/instances/1/workloads/{wid}/stop")
        final = http.post("/instances/1/calls/vm_test_nominal", json={}).json()["seq"]
        # it catches up: acks everything it was sent; a gap, then frames with full state
        while mirror.seq < final or mirror.behind or not mirror.gaps:
            assert time.monotonic() < deadline, "frames never resumed"
            try:
                msg = json.loads(ws.recv(timeout=0.2))
            except TimeoutError:
                ws.send(json.dumps({"op": "ack", "time": last_time}))
                continue
            mirror.apply(msg)
            if msg["type"] == "frame":
                last_time = msg["time"]
        assert mirror.state["queues"] == http.get("/instances/1/queues").json()
    assert len(mirror.gaps) == 1
    gap = mirror.gaps[0]
    assert gap["from_seq"] <= gap["to_seq"]
    lost = gap["to_seq"] - gap["from_seq"] + 1
    assert len(mirror.events) + sum(s["count"] for s in mirror.summaries) + lost == final


def test_a_viewer_that_stops_acking_is_closed_with_1013() -> None:
    settings = Settings(default_preset="tiny-16m", stream_stuck_after_s=0.5, stream_lag_s=600)
    with (
        live_app(settings) as live,
        httpx.Client(base_url=live.url + API, timeout=PATIENCE_S) as http,
        open_stream(live, 1, "?topics=queues&rate=30") as ws,
    ):
        recv(ws)
        ws.send(json.dumps({"op": "ack", "time": time.time()}))
        http.post("/instances/1/workloads", json={"kind": "churn", "rate": "max"})
        with pytest.raises(ConnectionClosed) as end:
            while True:  # it reads everything, but never says so again
                ws.recv(timeout=PATIENCE_S)
    assert end.value.rcvd is not None and end.value.rcvd.code == 1013


def test_a_bad_ack_is_an_error_and_a_good_one_needs_no_answer(live: Live) -> None:
    with open_stream(live, 1, "?topics=threads") as ws:
        assert recv(ws)["type"] == "hello"
        ws.send('{"op": "ack", "time": "now"}')
        assert "ack needs the time" in recv(ws)["detail"]
        ws.send(json.dumps({"op": "ack", "time": time.time()}))
        ws.send('{"op": "ping"}')
        assert recv(ws) == {"type": "pong"}  # the ack itself was not answered


def test_a_bulk_calls_event_carries_its_record_summarised() -> None:
    """A call with more moves than ``PAGELAB_RECORD_MAX_MOVES`` reaches the stream as its
    summary (counts per queue pair, the first and last moves, the full record's path),
    not as one frame of every move."""
    pages = 300
    with (
        live_app(Settings(default_preset="tiny-16m", record_max_moves=100)) as server,
        httpx.Client(base_url=server.url + API, timeout=PATIENCE_S) as c,
        open_stream(server, 1, "?topics=events&rate=30") as ws,
    ):
        mirror = Mirror()
        mirror.apply(recv(ws))
        r = c.post("/instances/1/calls/vm_contig_pg_alloc", json={"args": {"size": pages * 4096}})
        assert r.status_code == 200, r.text
        seq = r.json()["seq"]
        mirror.follow_until(ws, seq)
        event = next(e for e in mirror.events if e["seq"] == seq)
        assert event["summarised"] is True and event["moves_total"] == pages
        assert event["move_counts"] == {"PQ_FREE->PQ_NONE": pages}
        assert len(event["moves"]) == 50 and len(event["moves_tail"]) == 50
        assert event["full_record"] == f"/api/v1/instances/1/journal/{seq}/record"
        full = httpx.get(server.url + event["full_record"], timeout=PATIENCE_S).json()
        assert full["moves"][:50] == event["moves"] and full["moves"][-50:] == event["moves_tail"]

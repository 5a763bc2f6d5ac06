"""The stream benchmark: many WebSocket viewers of one instance that runs ``churn`` flat out,
on a real uvicorn on 127.0.0.1, with the viewers in another process.

    python -m bench stream            # a table: each figure next to the issue's target
    python -m bench stream --json     # one JSON object
    python -m bench stream --quick    # 20 viewers, 3 s windows (what the smoke test uses)

Diagnostic options (the figures are then not the issue's): ``--viewers N``, ``--window S``
(every window), ``--no-deflate`` (the viewers do not offer permessage-deflate), ``--db`` (the
server keeps its journal in a fresh SQLite file, as shipped) and ``--switch-interval S``
(``sys.setswitchinterval`` in the server before uvicorn starts).

The server is ``bench.http.Server``: ``python -m app.serve --host 127.0.0.1 --port P
--no-access-log --log-level warning`` (as ``make run`` serves: no permessage-deflate, a
256 KiB kernel send buffer per connection) with ``PAGELAB_DEFAULT_PRESET=teaching-1g``
(the instance named ``default`` is the 1 GiB, 2-CPU teaching box) and
``PAGELAB_MAX_PAGES=16777216``, plus ``PAGELAB_DATABASE_URL=""``: no database, so the figures
are the stream's and not the journal's, and the server does not share the checkout's
``var/pagelab.db``.  Every other setting is the default (``stream_stuck_after_s`` 5 s,
``stream_buffer_frames`` 32, ``stream_events_per_frame`` 256, uvicorn's keepalive ping
every 20 s with a 20 s timeout).  Server CPU is the uvicorn
process's user + system time (``psutil``, every thread) over each window; the whole
machine's busy time is read too, and what neither the server nor the viewer process used is
reported as ``other_cpu_s_per_s`` (on a shared machine, read the figures with it).

The viewers run in ONE separate process (``python -m bench.stream --viewers SPEC``: asyncio,
``websockets.asyncio.client`` with its default permessage-deflate, as browsers offer it, and
no keepalive pings), so the client side never shares the server's GIL.  Each healthy viewer
connects with ``?topics=vmstats,queues,events&rate=10``, reads continuously and, for every
``frame`` received inside the window, records delay = its receive wall clock - the frame's
``time`` (the server's wall clock when it built the frame; one machine, one clock), the
interval since its previous frame, and the frame's size (characters of the text message:
frames are ASCII JSON; ``wire_bytes_per_viewer_per_s`` estimates the compressed bytes from
the loopback interface's counters).  The head of a frame
(``{"type":"frame","seq":..,"tick":..,"time":..``) is read without decoding the rest; each
viewer's first frame is also decoded in full to check that reading.  Any other message
(``gap``, ``hello``, ...) is decoded and counted.  A ticker task in the same process measures
the client's own event-loop lag, which is part of every delay it records.

The slow viewer (same process, its own connection) subscribes to the same topics at 10 Hz
but takes one message per second (10x too slowly), on a socket with ``SO_RCVBUF`` 4096 and
``max_queue=1``.  It connects ``slow_head_start_s`` (30 s) before the window opens, so
that whatever the server does to it happens while the healthy viewers are measured.  After
the window it reads whatever is still coming as fast as it can (bounded) to learn how it
ended: closed (code, reason) or still served (a frame built after the window), the ``gap``
messages and the events they name, ``lag_at_stop_s`` (how old the last frame it took in the
window was) and ``last_frame_s`` (when the server built the last frame it got).  Times in
``slow_viewer`` are seconds from the window's opening.

Phases, all on the default instance with one ``churn`` workload (``rate: "max"``, seed 1)
that runs from before the first window to after the last:

1. ``idle_before``: no viewer, W s: calls/s = difference of the workload's ``calls`` over
   the wall time between the two status reads; server CPU.
2. ``viewers``: N healthy viewers + the slow one, all connected and past their ``hello``
   before the window opens; W s.
3. ``idle_after``: no viewer again, W s (the calls/s baseline is the mean of 1 and 3, so a
   drift of the simulation over time does not pass for the viewers' cost).
4. ``fixed_idle`` / ``fixed_viewers``: the workload's rate is set to 5 000 calls/s
   (``PATCH``; still above 10 x ``events_per_frame``, so frames carry an ``events_summary``
   as at full speed), then W/2 s without, W s with min(N, 50) healthy viewers (no slow one),
   W/2 s without.  At ``rate: "max"`` the server is CPU-bound whatever the viewers do (the
   workload takes whatever they leave), so CPU per viewer is measured here, where the
   server has room: (CPU with - mean CPU without) / viewers, in ms of CPU per second.
   ``cpu_per_viewer_ms_per_s_at_max`` is the same difference taken in phases 2 vs 1+3,
   for the record (near 0 or negative: the server is saturated either way).

Last, ``pagemap``: with the workload stopped, ``POST /api/v1/instances
{"name": "big", "preset": "server-2s-64g"}`` (16 M pages; ``--quick``: ``teaching-1g``),
then ``GET /api/v1/instances/{id}/pagemap?width=1024``: one warm-up, then ``runs`` timed
requests (from sending to having read the whole body), median and max; the instance is
deleted at the end.  ``bench/pagemap.py`` times the function alone.

Every subprocess is ended in a ``finally`` (the viewer process also exits on its own after
10 minutes); every wait is bounded; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.http import ROOT, Server, _env, _ok

#: The issue's targets, echoed next to the figures.
TARGETS: dict[str, float] = {"p99_delay_ms": 100.0, "calls_ratio": 0.8}

API = "/api/v1/instances"
TOPICS = "vmstats,queues,events"
RATE = 10
SLOW_READ_EVERY_S = 10.0 / RATE  # one message a second: 10x slower than the frames come
#: How often a healthy viewer acknowledges the frames it took in (as the page does).
ACK_EVERY_S = 0.5
SLOW_RCVBUF = 4096
SEED = 1
CONNECT_TIMEOUT_S = 90.0
CHILD_DEADLINE_S = 600.0  # the viewer process gives up on its own after this long
DRAIN_S = 20.0  # after the window, the slow viewer reads on for at most this long


#: Phase 4: the workload's fixed rate (above 10 x events_per_frame, so that frames carry an
#: ``events_summary`` as they do at full speed) and at most this many viewers, so that the
#: server is not CPU-bound and the CPU difference is the viewers' cost.
FIXED_RATE = 5000
FIXED_VIEWERS = 50


@dataclass(frozen=True)
class Plan:
    viewers: int
    window_s: float
    fixed_window_s: float
    warmup_s: float
    slow_head_start_s: float
    idle_after: bool
    pagemap_preset: str
    pagemap_runs: int


FULL = Plan(200, 15.0, 15.0, 2.0, 30.0, True, "server-2s-64g", 5)
QUICK = Plan(20, 3.0, 1.5, 0.5, 0.0, False, "teaching-1g", 3)


# ---------------------------------------------------------------- statistics
def _pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def _summary_ms(values_s: list[float]) -> dict[str, float]:
    s = sorted(values_s)
    return {
        "p50": round(_pct(s, 50) * 1e3, 2),
        "p99": round(_pct(s, 99) * 1e3, 2),
        "max": round(s[-1] * 1e3, 2) if s else math.nan,
        "n": len(s),
    }


# ---------------------------------------------------------------- the viewer process
def _frame_time(text: str) -> float | None:
    """The ``time`` of a frame message, read from its head without decoding the rest
    (the server renders ``{"type":"frame","seq":S,"tick":T,"time":X,...``); None for any
    other message."""
    if not text.startswith('{"type":"frame"'):
        return None
    i = text.find('"time":', 15, 120)
    if i < 0:
        return None
    i += 7
    j = i
    while text[j] not in ",}":
        j += 1
    return float(text[i:j])


def _since(t: float, go: float) -> float | None:
    """Seconds from the window's opening to ``t`` (None before the window opened)."""
    return round(t - go, 2) if math.isfinite(go) else None


class Healthy:
    """What one healthy viewer saw inside the window."""

    __slots__ = (
        "delays",
        "intervals",
        "frames",
        "bytes",
        "others",
        "gaps",
        "behind",
        "close_code",
        "checked",
        "last",
    )

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.intervals: list[float] = []
        self.frames = 0
        self.bytes = 0
        self.others: dict[str, int] = {}
        self.gaps = 0
        self.behind = 0
        self.close_code: int | None = None
        self.checked = False
        self.last: float | None = None


async def _viewers_main(spec: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url: str = spec["url"]
    n: int = spec["viewers"]
    compression = "deflate" if spec.get("deflate", True) else None
    loop = asyncio.get_running_loop()
    window = {"go": math.inf, "stop": math.inf}
    hellos = 0
    all_hello = asyncio.Event()
    stats = [Healthy() for _ in range(n)]
    by_second: dict[int, list[float]] = {}
    errors: list[str] = []

    async def healthy(k: int) -> None:
        nonlocal hellos
        st = stats[k]
        try:
            async with connect(
                url,
                ping_interval=None,
                max_size=None,
                open_timeout=60,
                compression=compression,
            ) as ws:
                first = json.loads(await ws.recv())
                if first.get("type") != "hello":
                    raise RuntimeError(f"first message was {first.get('type')!r}, not hello")
                hellos += 1
                if hellos == n:
                    all_hello.set()
                last_ack = 0.0
                async for text in ws:
                    now = time.time()
                    if now < window["go"]:
                        continue
                    if now > window["stop"]:
                        break
                    assert isinstance(text, str)
                    t = _frame_time(text)
                    if t is None:
                        msg = json.loads(text)
                        kind = msg.get("type", "?")
                        st.others[kind] = st.others.get(kind, 0) + 1
                        st.gaps += kind == "gap"
                        continue
                    if not st.checked:  # the head reading agrees with a full decode
                        msg = json.loads(text)
                        if msg["time"] != t:
                            raise RuntimeError(f"frame head read {t}, decoded {msg['time']}")
                        st.checked = True
                    if '"behind":true' in text[:160]:
                        st.behind += 1
                    if now - last_ack >= ACK_EVERY_S:  # as the page does (protocol: op ack)
                        last_ack = now
                        await ws.send(f'{{"op":"ack","time":{t!r}}}')
                    d = now - t
                    st.delays.append(d)
                    by_second.setdefault(int(now - window["go"]), []).append(d)
                    if st.last is not None:
                        st.intervals.append(now - st.last)
                    st.last = now
                    st.frames += 1
                    st.bytes += len(text)
        except ConnectionClosed as e:
            st.close_code = e.rcvd.code if e.rcvd is not None else 1006
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            errors.append(f"viewer {k}: {type(e).__name__}: {e}")

    slow_out: dict[str, Any] = {
        "enabled": bool(spec["slow"]),
        "read_every_s": SLOW_READ_EVERY_S,
        "rcvbuf": SLOW_RCVBUF,
        "messages": {},  # by type, over its whole life
        "window_messages": 0,  # taken at one a second, until the window closed
        "drained_messages": 0,  # taken flat out after it
        "gaps": [],  # [from_seq, to_seq] of each gap message
        "events_lost_in_gaps": 0,
        "behind_frames": 0,
        "full_state_frames": 0,  # frames whose queues section is full (a resync)
        "first_gap_s": None,  # when its first gap was built: the frame after it, - go
        "last_frame_s": None,  # the server time of the last frame it got, - go
        "lag_at_stop_s": None,  # how old the last frame it took in the window was
        "close_code": None,
        "close_reason": None,
        "connected_s": None,  # when it connected, - go (negative: before the window)
        "close_seen_s": None,  # when the client read the close, - go
        "caught_up_s": None,  # when it read a frame built after the window, - go
    }
    slow_ready = asyncio.Event()
    drain = asyncio.Event()  # the window is over: read as fast as possible

    async def slow() -> None:
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, int(port)))
        opened = time.time()
        gap_pending = False
        try:
            async with connect(
                url,
                sock=sock,
                open_timeout=60,
                max_size=None,
                max_queue=1,
                ping_interval=None,
                close_timeout=2,
                compression=compression,
            ) as ws:
                while True:
                    if drain.is_set() and time.time() - window["stop"] > DRAIN_S:
                        break
                    try:
                        text = await asyncio.wait_for(ws.recv(), timeout=1.0)
                    except TimeoutError:
                        continue
                    msg = json.loads(text)
                    kind = msg.get("type", "?")
                    box = slow_out["messages"]
                    box[kind] = box.get(kind, 0) + 1
                    if kind == "hello":
                        slow_ready.set()
                    elif kind == "gap":
                        slow_out["gaps"].append([msg["from_seq"], msg["to_seq"]])
                        slow_out["events_lost_in_gaps"] += msg["to_seq"] - msg["from_seq"] + 1
                        gap_pending = slow_out["first_gap_s"] is None
                    elif kind == "frame":
                        # it says what it has taken in, as the page does: the server can
                        # see it falling behind even though its library reads on
                        await ws.send(json.dumps({"op": "ack", "time": msg["time"]}))
                        slow_out["behind_frames"] += bool(msg.get("behind"))
                        slow_out["full_state_frames"] += bool(msg.get("queues", {}).get("full"))
                        slow_out["last_frame_s"] = _since(msg["time"], window["go"])
                        if not drain.is_set():
                            slow_out["lag_at_stop_s"] = round(time.time() - msg["time"], 2)
                        if gap_pending:
                            slow_out["first_gap_s"] = slow_out["last_frame_s"]
                            gap_pending = False
                    if not drain.is_set():
                        slow_out["window_messages"] += 1
                        # one message a second; sleep in small steps to drain on time
                        until = time.monotonic() + SLOW_READ_EVERY_S
                        while not drain.is_set() and time.monotonic() < until:
                            await asyncio.sleep(0.05)
                    else:
                        slow_out["drained_messages"] += 1
                        if kind == "frame" and msg["time"] >= window["stop"]:
                            slow_out["caught_up_s"] = _since(time.time(), window["go"])
                            break
        except ConnectionClosed as e:
            slow_out["close_code"] = e.rcvd.code if e.rcvd is not None else 1006
            slow_out["close_reason"] = e.rcvd.reason if e.rcvd is not None else None
            slow_out["close_seen_s"] = _since(time.time(), window["go"])
        except Exception as e:  # noqa: BLE001
            errors.append(f"slow viewer: {type(e).__name__}: {e}")
        finally:
            slow_out["connected_s"] = _since(opened, window["go"])
            slow_ready.set()

    lag: list[float] = []

    async def ticker() -> None:
        """The client's own event-loop lag: how late a 5 ms sleep wakes up."""
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.005)
            late = loop.time() - t0 - 0.005
            if window["go"] <= time.time() <= window["stop"]:
                lag.append(max(0.0, late))

    async def line() -> str:
        return await loop.run_in_executor(None, sys.stdin.readline)

    tasks = [loop.create_task(healthy(k)) for k in range(n)]
    if spec["slow"]:
        tasks.append(loop.create_task(slow()))
    else:
        slow_ready.set()
    tick = loop.create_task(ticker())
    try:
        t_conn = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(all_hello.wait(), slow_ready.wait()), timeout=CONNECT_TIMEOUT_S
        )
        connect_s = time.monotonic() - t_conn
        print(json.dumps({"ready": True, "connect_s": round(connect_s, 3)}), flush=True)
        if (await line()).strip() != "go":
            raise RuntimeError("expected go")
        window["go"] = time.time()
        if (await line()).strip() != "stop":
            raise RuntimeError("expected stop")
        window["stop"] = time.time()
        drain.set()
        for t in tasks[:n]:
            t.cancel()
        await asyncio.gather(*tasks[:n], return_exceptions=True)
        if spec["slow"]:
            await asyncio.wait_for(asyncio.gather(tasks[n], return_exceptions=True), DRAIN_S + 10)
    finally:
        tick.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, tick, return_exceptions=True)
    span = window["stop"] - window["go"]
    delays = [d for st in stats for d in st.delays]
    intervals = [d for st in stats for d in st.intervals]
    frames = [st.frames for st in stats]
    nbytes = [st.bytes for st in stats]
    others: dict[str, int] = {}
    for st in stats:
        for k, v in st.others.items():
            others[k] = others.get(k, 0) + v
    per_second = []
    for sec in sorted(by_second):
        s = sorted(by_second[sec])
        per_second.append(
            {
                "second": sec,
                "frames": len(s),
                "p99_ms": round(_pct(s, 99) * 1e3, 2),
                "max_ms": round(s[-1] * 1e3, 2),
            }
        )
    return {
        "window_s": span,
        "go": window["go"],
        "connect_s": connect_s,
        "viewers": n,
        "delay_ms": _summary_ms(delays),
        "interval_ms": _summary_ms(intervals),
        "frames_per_viewer_per_s": statistics.mean(frames) / span,
        "frames_per_viewer_per_s_min": min(frames) / span,
        "bytes_per_viewer_per_s": statistics.mean(nbytes) / span,
        "bytes_per_frame": sum(nbytes) / max(1, sum(frames)),
        "healthy_gaps": sum(st.gaps for st in stats),
        "healthy_behind_frames": sum(st.behind for st in stats),
        "healthy_closed": sum(1 for st in stats if st.close_code is not None),
        "healthy_close_codes": sorted({st.close_code for st in stats if st.close_code}),
        "healthy_other_messages": others,
        "client_loop_lag_ms": _summary_ms(lag),
        "per_second": per_second,
        "slow": slow_out,
        "errors": errors,
    }


def viewers_main(spec: dict[str, Any]) -> None:
    """Run in the viewer process: connect, print ``ready``; ``go`` on stdin opens the
    window, ``stop`` closes it; then one JSON line with everything seen."""

    def give_up() -> None:  # whatever happens, this process does not outlive its parent
        time.sleep(CHILD_DEADLINE_S)
        print("viewer process deadline reached", file=sys.stderr, flush=True)
        import os

        os._exit(3)

    threading.Thread(target=give_up, daemon=True).start()
    result = asyncio.run(_viewers_main(spec))
    print(json.dumps(result), flush=True)


class Viewers:
    """The viewer process, driven over its stdin/stdout."""

    def __init__(self, ws_url: str, n: int, slow: bool, deflate: bool) -> None:
        spec = {"url": ws_url, "viewers": n, "slow": slow, "deflate": deflate}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.stream", "--viewers", json.dumps(spec)],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready: dict[str, Any] = {}

    def _readline(self, timeout: float) -> str:
        """One stdout line, or an error after ``timeout`` seconds (the process is killed
        by ``close``)."""
        assert self.proc.stdout is not None
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not out or not out[0]:
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            raise RuntimeError(f"the viewer process did not answer in {timeout:g} s:\n{err}")
        return out[0]

    def wait_ready(self) -> dict[str, Any]:
        self.ready = json.loads(self._readline(CONNECT_TIMEOUT_S + 30))
        return self.ready

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self._readline(DRAIN_S + 60))
        self.proc.wait(timeout=30)
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)


# ---------------------------------------------------------------- the server side
@dataclass(frozen=True)
class Reading:
    at: float  # monotonic
    calls: int  # the workload's calls so far
    server_cpu: float  # the uvicorn process's user + system seconds (all its threads)
    viewers_cpu: float  # the viewer process's, 0 when there is none
    busy: float  # the whole machine's busy CPU seconds (not idle, not iowait)
    lo_bytes: int  # bytes sent over the loopback interface (every process's)


class Probe:
    """Reads the workload's calls and the CPU times at the edges of a window.  The whole
    machine's busy time is read too: what neither the server nor the viewers used was
    used by someone else (on a shared machine that is noise, and the report says how
    much)."""

    def __init__(self, http: Any, server_pid: int, iid: int, wid: int) -> None:
        import psutil

        self.http = http
        self.proc = psutil.Process(server_pid)
        self.url = f"{API}/{iid}/workloads/{wid}"

    def read(self, viewers_pid: int | None = None) -> Reading:
        import psutil

        status = _ok(self.http.get(self.url)).json()
        if status["state"] != "running":
            raise RuntimeError(f"the churn workload is {status['state']}: {status['reason']}")
        cpu = self.proc.cpu_times()
        vcpu = 0.0
        if viewers_pid is not None:
            v = psutil.Process(viewers_pid).cpu_times()
            vcpu = v.user + v.system
        allc = psutil.cpu_times()
        busy = sum(allc) - allc.idle - getattr(allc, "iowait", 0.0)
        lo = psutil.net_io_counters(pernic=True).get("lo")
        lo_bytes = lo.bytes_sent if lo is not None else 0
        return Reading(
            time.monotonic(), status["calls"], cpu.user + cpu.system, vcpu, busy, lo_bytes
        )

    @staticmethod
    def window(a: Reading, b: Reading) -> dict[str, float]:
        wall = b.at - a.at
        server = (b.server_cpu - a.server_cpu) / wall
        viewers = (b.viewers_cpu - a.viewers_cpu) / wall
        return {
            "wall_s": wall,
            "calls": b.calls - a.calls,
            "calls_per_s": (b.calls - a.calls) / wall,
            "cpu_s_per_s": server,
            "viewers_cpu_s_per_s": viewers,
            "other_cpu_s_per_s": max(0.0, (b.busy - a.busy) / wall - server - viewers),
            "loopback_bytes_per_s": (b.lo_bytes - a.lo_bytes) / wall,
        }


def _idle_window(probe: Probe, seconds: float) -> dict[str, float]:
    a = probe.read()
    time.sleep(seconds)
    return Probe.window(a, probe.read())


def _viewer_window(
    probe: Probe,
    ws_url: str,
    n: int,
    slow: bool,
    seconds: float,
    deflate: bool,
    head_start_s: float = 0.0,
) -> tuple[dict[str, float], dict[str, Any]]:
    viewers = Viewers(ws_url, n, slow, deflate)
    try:
        viewers.wait_ready()
        # let the hellos' burst pass; give the slow viewer time to fill its buffers
        time.sleep(max(0.5, head_start_s))
        pid = viewers.proc.pid
        a = probe.read(pid)
        viewers.send("go")
        time.sleep(seconds)
        viewers.send("stop")
        b = probe.read(pid)
        seen = viewers.result()
        seen["connect_s"] = viewers.ready.get("connect_s")
    finally:
        viewers.kill()
    if seen["errors"]:
        raise RuntimeError("viewer errors: " + "; ".join(seen["errors"][:5]))
    return Probe.window(a, b), seen


def _pagemap(plan: Plan, http: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    inst = _ok(http.post(API, json={"name": "big", "preset": plan.pagemap_preset})).json()
    create_s = time.monotonic() - t0
    iid = inst["id"]
    try:
        url = f"{API}/{iid}/pagemap"
        params = {"width": 1024}
        r = _ok(http.get(url, params=params))  # warm-up
        pages = r.json()
        times = []
        for _ in range(plan.pagemap_runs):
            t0 = time.perf_counter()
            r = http.get(url, params=params)
            body = r.content
            times.append(time.perf_counter() - t0)
            _ok(r)
        return {
            "preset": plan.pagemap_preset,
            "pages": pages["hi"] - pages["lo"],
            "buckets": pages["width"],
            "create_s": round(create_s, 2),
            "ms": {
                "median": round(statistics.median(times) * 1e3, 2),
                "max": round(max(times) * 1e3, 2),
                "each": [round(t * 1e3, 2) for t in times],
            },
            "response_bytes": len(body),
            "runs": plan.pagemap_runs,
            "workload_running": False,
        }
    finally:
        http.delete(f"{API}/{iid}")


# ---------------------------------------------------------------- driver
def _tree() -> str:
    """The commit the server's code is at, with ``+dirty`` when app/ has uncommitted
    changes (the figures are for that code)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def default_instance(http: Any) -> int:
    """The id of the instance the server booted at start (named ``default``)."""
    instances = _ok(http.get(API)).json()
    for inst in instances:
        if inst["name"] == "default":
            return int(inst["id"])
    raise RuntimeError(f"the server booted no default instance: {instances}")


class TunedServer(Server):
    """``bench.http.Server`` with its own empty database, and optionally with
    ``sys.setswitchinterval`` set in the server process first (a diagnostic: how much of
    the viewers' delay is GIL hand-over)."""

    def __init__(self, switch_interval: float | None, database: bool = False) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-stream-")
        # a fresh SQLite file (the shipped default is sqlite:///var/pagelab.db, shared by
        # every server started in the checkout), or "" for no database
        self.database_url = f"sqlite:///{self._dir.name}/pagelab.db" if database else ""
        if switch_interval is not None:
            argv = self.cmd[3:]  # after "python -m app.serve"
            self.cmd = [
                sys.executable,
                "-c",
                f"import sys; sys.setswitchinterval({switch_interval!r}); "
                f"from app.serve import main; sys.exit(main({argv!r}))",
            ]

    def __enter__(self) -> TunedServer:
        # Server.__enter__ copies os.environ for the child: set the database there
        saved = os.environ.get("PAGELAB_DATABASE_URL")
        os.environ["PAGELAB_DATABASE_URL"] = self.database_url
        try:
            super().__enter__()
        except BaseException:
            self._dir.cleanup()
            raise
        finally:
            if saved is None:
                del os.environ["PAGELAB_DATABASE_URL"]
            else:
                os.environ["PAGELAB_DATABASE_URL"] = saved
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._dir.cleanup()


def run(
    quick: bool = False,
    viewers: int | None = None,
    window_s: float | None = None,
    deflate: bool = True,
    switch_interval: float | None = None,
    database: bool = False,
) -> dict[str, Any]:
    import httpx

    plan = QUICK if quick else FULL
    w = window_s or plan.window_s
    n = viewers or plan.viewers
    with (
        TunedServer(switch_interval, database) as srv,
        httpx.Client(base_url=srv.base, timeout=600.0) as http,
    ):
        assert srv.proc is not None
        iid = default_instance(http)
        ws_url = f"ws://127.0.0.1:{srv.port}{API}/{iid}/stream?topics={TOPICS}&rate={RATE}"
        churn = {"kind": "churn", "rate": "max", "seed": SEED}
        wid = _ok(http.post(f"{API}/{iid}/workloads", json=churn)).json()["id"]
        probe = Probe(http, srv.proc.pid, iid, wid)
        time.sleep(plan.warmup_s)
        before = _idle_window(probe, w)
        with_viewers, seen = _viewer_window(
            probe, ws_url, n, True, w, deflate, plan.slow_head_start_s
        )
        after = _idle_window(probe, w) if plan.idle_after else None
        base_windows = [before] + ([after] if after else [])
        baseline = statistics.mean(x["calls_per_s"] for x in base_windows)
        base_cpu = statistics.mean(x["cpu_s_per_s"] for x in base_windows)
        # CPU per viewer where the server has room: a fixed rate, at most 50 viewers
        fixed_n = min(n, FIXED_VIEWERS)
        fw = plan.fixed_window_s if window_s is None else w
        _ok(http.patch(f"{API}/{iid}/workloads/{wid}", json={"rate": FIXED_RATE}))
        time.sleep(plan.warmup_s)
        # idle, viewers, idle: the mean of the two idle windows is the baseline
        fixed_idle_a = _idle_window(probe, fw / 2)
        fixed_with, fixed_seen = _viewer_window(probe, ws_url, fixed_n, False, fw, deflate)
        fixed_idle_b = _idle_window(probe, fw / 2)
        fixed_idle = {
            k: (fixed_idle_a[k] + fixed_idle_b[k]) / 2 for k in fixed_idle_a if k != "wall_s"
        }
        fixed_idle["wall_s"] = fixed_idle_a["wall_s"] + fixed_idle_b["wall_s"]
        _ok(http.post(f"{API}/{iid}/workloads/{wid}/stop"))
        pm = _pagemap(plan, http)
        cmd = " ".join(srv.cmd[1:]).replace(str(srv.port), "P")

    def per_viewer_ms(with_cpu: float, without_cpu: float) -> float:
        return (with_cpu - without_cpu) / n * 1e3

    slow = seen["slow"]
    return {
        "viewers": n,
        "delay_ms": seen["delay_ms"],
        "interval_ms": seen["interval_ms"],
        "calls_per_s_no_viewers": baseline,
        "calls_per_s_with_viewers": with_viewers["calls_per_s"],
        "calls_ratio": with_viewers["calls_per_s"] / baseline,
        "server_cpu_s_per_s": {
            "no_viewers": base_cpu,
            "with_viewers": with_viewers["cpu_s_per_s"],
            "fixed_rate_no_viewers": fixed_idle["cpu_s_per_s"],
            "fixed_rate_with_viewers": fixed_with["cpu_s_per_s"],
        },
        "cpu_per_viewer_ms_per_s": (fixed_with["cpu_s_per_s"] - fixed_idle["cpu_s_per_s"])
        / fixed_n
        * 1e3,
        "cpu_per_viewer_ms_per_s_at_max": per_viewer_ms(with_viewers["cpu_s_per_s"], base_cpu),
        "frames_per_viewer_per_s": seen["frames_per_viewer_per_s"],
        "bytes_per_viewer_per_s": seen["bytes_per_viewer_per_s"],
        "bytes_per_frame": seen["bytes_per_frame"],
        # on the wire (permessage-deflate, framing, TCP/IP headers): the loopback
        # interface's bytes with viewers minus without, per viewer; every process's
        # loopback traffic counts, so this is approximate on a shared machine
        "wire_bytes_per_viewer_per_s": (
            with_viewers["loopback_bytes_per_s"]
            - statistics.mean(x["loopback_bytes_per_s"] for x in base_windows)
        )
        / n,
        "slow_viewer": slow,
        "others_unaffected": {
            "healthy_gaps": seen["healthy_gaps"],
            "healthy_behind_frames": seen["healthy_behind_frames"],
            "healthy_closed": seen["healthy_closed"],
            "frames_per_viewer_per_s_min": seen["frames_per_viewer_per_s_min"],
            "per_second": seen["per_second"],
        },
        "client_loop_lag_ms": seen["client_loop_lag_ms"],
        "fixed_rate": {
            "rate": FIXED_RATE,
            "viewers": fixed_n,
            "window_s": fw,
            "bytes_per_frame": fixed_seen["bytes_per_frame"],
            "calls_per_s_no_viewers": fixed_idle["calls_per_s"],
            "calls_per_s_with_viewers": fixed_with["calls_per_s"],
            "delay_ms": fixed_seen["delay_ms"],
            "frames_per_viewer_per_s": fixed_seen["frames_per_viewer_per_s"],
            "bytes_per_viewer_per_s": fixed_seen["bytes_per_viewer_per_s"],
            "client_loop_lag_ms": fixed_seen["client_loop_lag_ms"],
        },
        "pagemap": pm,
        "targets": dict(TARGETS),
        "params": {
            "quick": quick,
            "server": f"python {cmd}",
            "preset": "teaching-1g",
            "instance": iid,
            "app_tree": _tree(),
            "topics": TOPICS,
            "rate": RATE,
            "window_s": w,
            "slow_head_start_s": plan.slow_head_start_s,
            "viewers_offer_deflate": deflate,
            "switch_interval_s": switch_interval,
            "database": "a fresh SQLite file" if database else "none",
            "workload": {"kind": "churn", "rate": "max", "seed": SEED},
            "windows": {
                "idle_before": before,
                "viewers": with_viewers,
                "idle_after": after,
                "fixed_idle": fixed_idle,
                "fixed_viewers": fixed_with,
            },
            "connect_s": seen["connect_s"],
            "python": sys.version.split()[0],
        },
    }


def render(result: dict[str, Any]) -> str:
    t = result["targets"]
    d = result["delay_ms"]
    slow = result["slow_viewer"]
    ok = result["others_unaffected"]
    cpu = result["server_cpu_s_per_s"]
    pm = result["pagemap"]
    n = result["viewers"]
    wins = result["params"]["windows"]
    if slow["close_code"] is not None:
        span = (slow["last_frame_s"] or 0) - (slow["connected_s"] or 0)
        fate = f"closed {slow['close_code']}; frames end {span:.0f} s after connecting"
    else:
        fate = f"not closed, {slow['lag_at_stop_s']} s behind"
    rows: list[tuple[str, str, str]] = [
        (
            f"frame delay, {n} healthy viewers",
            f"p50 {d['p50']:.1f} / p99 {d['p99']:.1f} ms",
            f"p99 <= {t['p99_delay_ms']:g} ms (max {d['max']:.1f}, n={d['n']})",
        ),
        ("churn, no viewers", f"{result['calls_per_s_no_viewers']:,.0f} calls/s", ""),
        (f"churn, {n} viewers + 1 slow", f"{result['calls_per_s_with_viewers']:,.0f} calls/s", ""),
        ("  ratio", f"{result['calls_ratio']:.2f}", f">= {t['calls_ratio']:g}"),
        (
            "server CPU, no viewers / viewers",
            f"{cpu['no_viewers']:.2f} / {cpu['with_viewers']:.2f} s/s",
            "churn at max",
        ),
        (
            "server CPU per viewer",
            f"{result['cpu_per_viewer_ms_per_s']:.2f} ms/s",
            f"{result['fixed_rate']['viewers']} viewers, churn at "
            f"{result['fixed_rate']['rate']:,} calls/s",
        ),
        (
            "frames per viewer",
            f"{result['frames_per_viewer_per_s']:.2f} /s",
            f"min {ok['frames_per_viewer_per_s_min']:.2f}",
        ),
        (
            "bytes per viewer",
            f"{result['bytes_per_viewer_per_s']:,.0f} B/s",
            f"{result['bytes_per_frame']:,.0f} B/frame",
        ),
        (
            "  on the wire (loopback, approx.)",
            f"{result['wire_bytes_per_viewer_per_s']:,.0f} B/s",
            "permessage-deflate" if result["params"]["viewers_offer_deflate"] else "no deflate",
        ),
        (
            "slow viewer",
            fate,
            f"{len(slow['gaps'])} gaps, {slow['events_lost_in_gaps']:,} events named lost",
        ),
        (
            "others while it lagged",
            f"{ok['healthy_gaps']} gaps, {ok['healthy_closed']} closed",
            f"worst 1-s p99 {max((s['p99_ms'] for s in ok['per_second']), default=math.nan):.1f} ms",
        ),
        (
            "client loop lag",
            f"p99 {result['client_loop_lag_ms']['p99']:.1f} ms",
            f"viewer process {wins['viewers']['viewers_cpu_s_per_s']:.2f} CPU s/s",
        ),
        (
            "CPU used by other processes",
            f"{max(x['other_cpu_s_per_s'] for x in wins.values() if x):.2f} s/s",
            "worst window (noise on a shared machine)",
        ),
        (
            f"GET pagemap?width=1024, {pm['pages'] or '?'} pages",
            f"{pm['ms']['median']:.1f} ms",
            f"max {pm['ms']['max']:.1f}, {pm['response_bytes']:,} B",
        ),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'stream':<{w0}}  {'figure':>{w1}}  target / note", "-" * (w0 + w1 + 20)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    p = result["params"]
    lines.append(
        f"({p['window_s']:g} s windows; instance {p['instance']} = {p['preset']}, topics "
        f"{p['topics']} at "
        f"{p['rate']} Hz{'; QUICK sizes' if p['quick'] else ''})"
    )
    return "\n".join(lines)


def _options(argv: list[str]) -> dict[str, Any] | str:
    opts: dict[str, Any] = {"quick": False, "deflate": True, "database": False}
    args = list(argv)
    while args:
        a = args.pop(0)
        try:
            if a == "--quick":
                opts["quick"] = True
            elif a == "--json":
                opts["json"] = True
            elif a == "--no-deflate":
                opts["deflate"] = False
            elif a == "--db":
                opts["database"] = True
            elif a == "--viewers":
                opts["viewers"] = int(args.pop(0))
            elif a == "--window":
                opts["window_s"] = float(args.pop(0))
            elif a == "--switch-interval":
                opts["switch_interval"] = float(args.pop(0))
            else:
                return f"unknown option {a}"
        except (IndexError, ValueError):
            return f"{a} needs a number"
    return opts


def main(argv: list[str]) -> int:
    opts = _options(argv)
    if isinstance(opts, str):
        print(
            f"bench stream: {opts}; use --json, --quick, and for diagnosis --viewers N, "
            "--window S, --no-deflate, --db, --switch-interval S",
            file=sys.stderr,
        )
        return 2
    as_json = opts.pop("json", False)
    result = run(**opts)
    print(json.dumps(result) if as_json else render(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--viewers":
        viewers_main(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))

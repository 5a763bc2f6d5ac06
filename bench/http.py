"""The HTTP API benchmark: a real uvicorn on 127.0.0.1, driven by HTTP clients that run in
other processes.

    python -m bench http           # a table: each figure next to the issue's target
    python -m bench http --json    # one JSON object
    python -m bench http --quick   # fewer requests, small sizes (what the smoke test uses)
    python -m bench http --stacks  # single calls only, uvloop + httptools against stock
                                   # (req/s, and CPU per request: robust to a busy machine)

The server is ``python -m app.serve --host 127.0.0.1 --port P --no-access-log --log-level
warning`` (a free loopback port; uvloop + httptools, or asyncio + h11 when run with
``PAGELAB_SERVER_STACK=stock``, which the server inherits from this process) with ``PAGELAB_DEFAULT_PRESET=teaching-1g`` (instance 1 is the 1 GiB,
2-CPU teaching box, in both modes) and ``PAGELAB_MAX_PAGES=16777216`` (room for 64 GiB).  The
access log is off so that neither endpoint pays for a log line per request.  Readiness is
polled on ``GET /healthz`` (bounded); the server is terminated at the end.

How each figure is taken:

* ``bare_rps``: a client *process* (``httpx.Client``, one keep-alive connection, requests
  strictly one after the other) sends ``GET /healthz`` (a FastAPI endpoint that only returns
  a dict) ``requests`` times after a short warm-up; req/s = requests / elapsed.
* ``alloc_free_rps``: the same client code sends ``requests / 2`` pairs of
  ``POST /api/v1/instances/1/calls/vm_page_alloc`` (object null, ``VM_ALLOC_NORMAL``,
  ``record: false``) and ``POST .../calls/vm_page_free`` of the pfn the allocation returned;
  both count as requests.  ``ratio`` = median alloc/free req/s / median bare req/s (target
  >= 0.8, issue 9).  Bare and alloc/free runs alternate; each figure is the median of the runs.
* ``batch_calls_per_s``: the batch API cannot feed one call's result into a later call, so
  an allocate-and-free cycle is two batch requests of ``batch_calls`` calls each, sent by
  this (the benchmark's) process, which is not the server's:
  (A) for k < batch_calls/2: ``vm_page_alloc`` (a fresh object, pindex k, VM_ALLOC_NORMAL)
  then ``vm_page_lookup`` (same object and pindex: it must return the page just
  allocated, checked); (B) for each page from (A): ``vm_page_deactivate`` then
  ``vm_page_free`` -- the pfns are those (A) returned, so (B) leaves the machine with all
  its pages free again.  Every call must succeed (checked).  The request bodies are
  encoded before the clock starts; a request's time runs from sending to having read the
  whole response (decoding it is not timed).  kernel calls/s = (A + B calls) / (A + B
  wall seconds); the median of the runs.  ``batch_core_calls_per_s`` runs the same two
  batches (same calls; (B) on the pfns its own (A) returned) on a fresh machine of the
  same configuration through ``Machine.call`` (record off) in this process, and ``batch_core_share`` = that kernel-only time / the HTTP wall time: the
  share of a batch request's time the simulator itself accounts for (the rest is JSON,
  validation, response building and the digest).
  ``batch_compact_*``: the same cycle with the same calls in the compact format
  (``application/vnd.pagelab.batch+json``, docs/batch-format.md: one form per function,
  the ``fn`` and ``args`` columns; answered in columns), on fresh pages of its own; each
  run does the kernel-only replay once and then both formats, so the two shares divide
  the same kernel time.  The issue's 200 000 calls/s target is the compact figure's.
  ``batch_compact_server_cpu_us``: the server process's CPU time (user + system, from
  ``/proc``) per compact call over both requests; ``batch_kernel_cpu_us``: the replay's
  CPU time per call (``time.process_time``); ``batch_compact_lab_cpu_us``: the first
  minus the second, the server's own work per call (HTTP, parsing, slicing, the journal,
  the answer).  CPU times hold up on a busy machine, where the wall-clock rates do not.
* ``latency_ms``: a client process sends ``POST /api/v1/instances/1/calls/vm_test_nominal``
  (``record: false``) back-to-back and timestamps each (``time.monotonic``, one clock for
  all processes on Linux).  ``idle``: ``idle_samples`` requests with nothing else running.
  ``during_boot``: while that client runs, this process creates instance B
  (``{"memory": "64GiB"}``, 16 M pages; 1 GiB with ``--quick``) and deletes it again; the
  samples kept are those whose request overlapped the create request (started before it
  ended and ended after it began), pooled over ``boot_runs`` boots.  Percentiles are
  nearest-rank.  A sequential client hides stalls (one 1 s stall is one sample), so
  ``p99_corrected`` adds, HdrHistogram-style, for each sample of L ms the latencies
  L - I, L - 2I, ... (> I) that callers arriving every I ms would have seen, with
  I = ``interval_ms`` = the idle median.  ``boot_s`` is the median wall time of the create
  request as the client sees it (the boot in a worker thread plus building the response,
  which includes the new machine's ``state_digest``).
"""

from __future__ import annotations

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.invariants import check_invariants

ROOT = Path(__file__).resolve().parent.parent

#: The issue's targets, echoed next to the figures.
TARGETS: dict[str, float] = {
    "ratio": 0.8,
    "batch_compact_calls_per_s": 200_000,
    "p99_ms_during_other_users_batch": 50,
}

PRESET = "teaching-1g"
MAX_PAGES = 16 * 1024 * 1024
API = "/api/v1/instances"
READY_TIMEOUT_S = 120.0
BOOT_NAME = "bench-http-b"


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one benchmark run."""

    requests: int  # per single-call run (the alloc/free run sends requests/2 pairs)
    runs: int
    warmup: int
    batch_calls: int  # per batch request
    batch_runs: int
    idle_samples: int
    boot_memory: str
    boot_runs: int
    contend_calls: int = 200_000  # the other user's batch while small calls are timed


FULL = Plan(4000, 5, 200, 100_000, 3, 3000, "64GiB", 3)
QUICK = Plan(400, 1, 20, 5_000, 1, 200, "1GiB", 1, 20_000)


# ---------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    return env


class Server:
    """A uvicorn process serving ``app.main:app`` on a free loopback port."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.extra_env = env or {}  # PAGELAB_* settings over the defaults below
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "app.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        # uvicorn's stderr, shown if it fails; closed in __exit__
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        env = _env()
        env["PAGELAB_DEFAULT_PRESET"] = PRESET
        env["PAGELAB_MAX_PAGES"] = str(MAX_PAGES)
        env["PAGELAB_BOOT_DEFAULT"] = "1"
        # the service path without a database (the durability benchmark measures that)
        env.setdefault("PAGELAB_DATABASE_URL", "")
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn not ready after {READY_TIMEOUT_S:g} s:\n{self.log()}")
            time.sleep(0.05)

    def cpu_s(self) -> float:
        """CPU seconds the server process has used so far (user + system)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


# ---------------------------------------------------------------- the client process
def _ok(r: Any) -> Any:
    if r.status_code >= 300:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:500]}")
    return r


def client_main(spec: dict[str, Any]) -> None:
    """Run in a client process: one keep-alive connection, requests one after the other;
    prints one JSON line with its timings (and, in latency mode, ``ready`` first)."""
    import httpx

    mode = spec["mode"]
    iid = spec.get("instance", 1)
    with httpx.Client(base_url=spec["base"], timeout=600.0) as c:
        if mode == "bare":
            for _ in range(spec["warmup"]):
                _ok(c.get("/healthz"))
            n = spec["requests"]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                r = c.get("/healthz")
                if r.status_code != 200:
                    _ok(r)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            print(json.dumps({"requests": n, "elapsed_s": elapsed, "cpu_s": cpu}))
        elif mode == "alloc_free":
            alloc_url = f"{API}/{iid}/calls/vm_page_alloc"
            free_url = f"{API}/{iid}/calls/vm_page_free"
            alloc = {"args": {"object": None, "page_req": "VM_ALLOC_NORMAL"}, "record": False}

            def pair() -> None:
                r = c.post(alloc_url, json=alloc)
                pfn = _ok(r).json()["result"]
                if pfn is None:
                    raise RuntimeError("vm_page_alloc returned NULL")
                r = c.post(free_url, json={"args": {"m": pfn}, "record": False})
                if r.status_code != 200:
                    _ok(r)

            for _ in range(spec["warmup"]):
                pair()
            pairs = spec["requests"] // 2
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(pairs):
                pair()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            print(json.dumps({"requests": 2 * pairs, "elapsed_s": elapsed, "cpu_s": cpu}))
        elif mode == "latency":
            url = f"{API}/{iid}/calls/vm_test_nominal"
            body = {"args": {}, "record": False}
            for _ in range(spec["warmup"]):
                _ok(c.post(url, json=body))
            stop = threading.Event()
            limit = spec.get("requests")
            if limit is None:  # run until the parent writes a line (or closes stdin)

                def wait_for_stop() -> None:
                    sys.stdin.readline()
                    stop.set()

                threading.Thread(target=wait_for_stop, daemon=True).start()
                print("ready", flush=True)
                limit = 10_000_000
            samples: list[tuple[float, float]] = []
            clock = time.monotonic
            while not stop.is_set() and len(samples) < limit:
                t0 = clock()
                r = c.post(url, json=body)
                t1 = clock()
                if r.status_code != 200:
                    _ok(r)
                samples.append((t0, t1))
            print(json.dumps({"samples": samples}))
        else:
            raise ValueError(f"unknown client mode {mode!r}")


def _client_cmd(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.http", "--client", json.dumps(spec)]


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one client process to completion and return its JSON line."""
    out = subprocess.run(
        _client_cmd(spec), cwd=ROOT, env=_env(), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"client {spec['mode']} failed:\n{out.stderr}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


# ---------------------------------------------------------------- single calls
def measure_single(base: str, plan: Plan) -> dict[str, Any]:
    bare: list[float] = []
    alloc_free: list[float] = []
    for _ in range(plan.runs):
        for mode, into in (("bare", bare), ("alloc_free", alloc_free)):
            r = run_client(
                {"mode": mode, "base": base, "requests": plan.requests, "warmup": plan.warmup}
            )
            into.append(r["requests"] / r["elapsed_s"])
    b, a = statistics.median(bare), statistics.median(alloc_free)
    return {
        "bare_rps": b,
        "alloc_free_rps": a,
        "ratio": a / b,
        "bare_rps_each": bare,
        "alloc_free_rps_each": alloc_free,
    }


# ---------------------------------------------------------------- batches
def _batch_a(oid: int, n: int) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for k in range(n // 2):
        calls.append(
            {
                "fn": "vm_page_alloc",
                "args": {"object": oid, "pindex": k, "page_req": "VM_ALLOC_NORMAL"},
            }
        )
        calls.append({"fn": "vm_page_lookup", "args": {"object": oid, "pindex": k}})
    return calls


def _batch_b(pfns: list[int]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for pfn in pfns:
        calls.append({"fn": "vm_page_deactivate", "args": {"m": pfn}})
        calls.append({"fn": "vm_page_free", "args": {"m": pfn}})
    return calls


def _post_batch(client: Any, url: str, calls: list[dict[str, Any]]) -> tuple[float, Any]:
    body = json.dumps({"calls": calls}).encode()
    headers = {"content-type": "application/json"}
    t0 = time.perf_counter()
    r = client.post(url, content=body, headers=headers)
    wall = time.perf_counter() - t0
    out = _ok(r).json()
    if out["errors"] != 0 or out["completed"] != len(calls):
        first = next(x for x in out["results"] if "error" in x)
        raise RuntimeError(f"batch had {out['errors']} errors, first: {first}")
    return wall, out


def _core_replay(n: int, cpu: list[float] | None = None) -> tuple[float, int]:
    """The same two batches through ``Machine.call`` (record off), in this process, on a
    fresh machine of instance 1's configuration; (B) frees the pages this machine's (A)
    returned.  Returns the seconds both took and the number of calls (and appends the
    CPU seconds they took to ``cpu``)."""
    import gc

    from app.core.machine import Machine
    from app.lab.presets import PRESETS

    m = Machine.boot(PRESETS[PRESET].config)
    call = m.call
    oid = call("vm_object_allocate", {}, record=False).result
    calls_a = _batch_a(oid, n)
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = [call(c["fn"], c["args"], record=False).result for c in calls_a]
    elapsed = time.perf_counter() - t0
    used = time.process_time() - c0
    pfns = res[0::2]
    if None in pfns or res[1::2] != pfns:
        raise RuntimeError("replay: an allocation failed or a lookup missed its page")
    calls_b = _batch_b(pfns)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for c in calls_b:
        call(c["fn"], c["args"], record=False)
    elapsed += time.perf_counter() - t0
    used += time.process_time() - c0
    if cpu is not None:
        cpu.append(used)
    check_invariants(m)
    return elapsed, len(calls_a) + len(calls_b)


COMPACT = "application/vnd.pagelab.batch+json"


def _compact_body(calls: list[dict[str, Any]]) -> bytes:
    """The same calls in the compact format: one form per function (each of the
    benchmark's functions always gives the same arguments in the same order)."""
    forms: dict[str, int] = {}
    table: list[dict[str, Any]] = []
    fn: list[int] = []
    args: list[list[Any]] = []
    for c in calls:
        index = forms.get(c["fn"])
        if index is None:
            index = forms[c["fn"]] = len(table)
            table.append({"fn": c["fn"], "args": list(c["args"])})
        fn.append(index)
        args.append(list(c["args"].values()))
    return json.dumps({"forms": table, "fn": fn, "args": args}, separators=(",", ":")).encode()


def _post_compact(client: Any, url: str, calls: list[dict[str, Any]]) -> tuple[float, Any]:
    body = _compact_body(calls)
    headers = {"content-type": COMPACT}
    t0 = time.perf_counter()
    r = client.post(url, content=body, headers=headers)
    wall = time.perf_counter() - t0
    out = _ok(r).json()
    if out["failed"] != 0 or out["completed"] != len(calls):
        raise RuntimeError(f"compact batch had {out['failed']} errors, first: {out['errors'][0]}")
    return wall, out


def measure_batch(
    base: str, plan: Plan, server_cpu: Callable[[], float] | None = None
) -> dict[str, Any]:
    """Both formats, alternating within each run, and the same calls through
    ``Machine.call`` for the kernel's share of each.  With ``server_cpu`` (the server
    process's CPU seconds so far), also the server's CPU time per compact call and the
    part of it that is not the kernel's."""
    import httpx

    rates: dict[str, list[float]] = {"readable": [], "compact": []}
    rates_a: dict[str, list[float]] = {"readable": [], "compact": []}
    rates_b: dict[str, list[float]] = {"readable": [], "compact": []}
    shares: dict[str, list[float]] = {"readable": [], "compact": []}
    core_rates: list[float] = []
    core_cpu: list[float] = []  # kernel CPU seconds per call
    server_us: list[float] = []  # server CPU microseconds per compact call
    url = f"{API}/1/calls"
    with httpx.Client(base_url=base, timeout=600.0) as c:
        for _ in range(plan.batch_runs):
            used: list[float] = []
            core_s, core_n = _core_replay(plan.batch_calls, used)
            core_rates.append(core_n / core_s)
            core_cpu.append(used[0] / core_n)
            for fmt in ("readable", "compact"):
                r = c.post(f"{API}/1/calls/vm_object_allocate", json={"args": {}, "record": False})
                oid = _ok(r).json()["result"]
                calls_a = _batch_a(oid, plan.batch_calls)
                cpu0 = server_cpu() if server_cpu is not None else 0.0
                if fmt == "readable":
                    wall_a, out = _post_batch(c, url, calls_a)
                    results = [x["result"] for x in out["results"]]
                else:
                    wall_a, out = _post_compact(c, url, calls_a)
                    results = out["results"]
                pfns = results[0::2]
                if None in pfns or results[1::2] != pfns:
                    raise RuntimeError("an allocation failed or a lookup missed its page")
                calls_b = _batch_b(pfns)
                post = _post_batch if fmt == "readable" else _post_compact
                wall_b, _ = post(c, url, calls_b)
                n = len(calls_a) + len(calls_b)
                if server_cpu is not None and fmt == "compact":
                    # the answers' decoding in this process is not the server's time
                    server_us.append((server_cpu() - cpu0) / n * 1e6)
                rates[fmt].append(n / (wall_a + wall_b))
                rates_a[fmt].append(len(calls_a) / wall_a)
                rates_b[fmt].append(len(calls_b) / wall_b)
                shares[fmt].append(core_s / (wall_a + wall_b))
    med = statistics.median
    return {
        "batch_calls_per_s": med(rates["readable"]),
        "batch_calls": plan.batch_calls,
        "batch_alloc_lookup_calls_per_s": med(rates_a["readable"]),
        "batch_deactivate_free_calls_per_s": med(rates_b["readable"]),
        "batch_core_calls_per_s": med(core_rates),
        "batch_core_share": med(shares["readable"]),
        "batch_compact_calls_per_s": med(rates["compact"]),
        "batch_compact_alloc_lookup_calls_per_s": med(rates_a["compact"]),
        "batch_compact_deactivate_free_calls_per_s": med(rates_b["compact"]),
        "batch_compact_core_share": med(shares["compact"]),
        **(
            {
                "batch_compact_server_cpu_us": med(server_us),
                "batch_kernel_cpu_us": med(core_cpu) * 1e6,
                "batch_compact_lab_cpu_us": med(server_us) - med(core_cpu) * 1e6,
            }
            if server_us
            else {}
        ),
    }


# ---------------------------------------------------------------- latency under a boot
def _pct(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(1, math.ceil(p / 100 * len(sorted_ms)))
    return sorted_ms[k - 1]


def _stats(lat_ms: list[float], interval_ms: float) -> dict[str, float]:
    if not lat_ms:
        raise RuntimeError("no latency samples")
    s = sorted(lat_ms)
    # A back-to-back client sends nothing while it waits, so a 1 s stall is one sample
    # and hides below p99 ("coordinated omission").  Correct as HdrHistogram does: a
    # sample of L ms also stands for the requests a caller arriving every interval_ms
    # would have sent meanwhile, who waited L - interval, L - 2 interval, ...
    corrected = list(s)
    for lat in s:
        v = lat - interval_ms
        while v > interval_ms:
            corrected.append(v)
            v -= interval_ms
    corrected.sort()
    return {
        "p50": _pct(s, 50),
        "p99": _pct(s, 99),
        "max": s[-1],
        "n": len(s),
        "p99_corrected": _pct(corrected, 99),
    }


def _latency_while(base: str, plan: Plan, action: Any) -> tuple[list[float], float]:
    """Small calls on instance A from a client process while ``action()`` runs here:
    the latencies (ms) of the calls that overlapped it, and how long it took."""
    spec = {"mode": "latency", "base": base, "warmup": plan.warmup}
    proc = subprocess.Popen(
        _client_cmd(spec),
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the latency client did not start")
        b0 = time.monotonic()
        action()
        b1 = time.monotonic()
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"latency client failed:\n{err}")
    samples = json.loads(out.strip().splitlines()[-1])["samples"]
    return [(t1 - t0) * 1e3 for t0, t1 in samples if t0 < b1 and t1 > b0], b1 - b0


def measure_latency(base: str, plan: Plan) -> dict[str, Any]:
    import httpx

    idle = run_client(
        {"mode": "latency", "base": base, "requests": plan.idle_samples, "warmup": plan.warmup}
    )
    idle_ms = [(t1 - t0) * 1e3 for t0, t1 in idle["samples"]]
    during_ms: list[float] = []
    boots: list[float] = []
    with httpx.Client(base_url=base, timeout=600.0) as c:
        for _ in range(plan.boot_runs):
            created: list[Any] = []

            def boot() -> None:
                r = c.post(API, json={"name": BOOT_NAME, "memory": plan.boot_memory})  # noqa: B023
                created.append(_ok(r).json())  # noqa: B023

            during, seconds = _latency_while(base, plan, boot)
            _ok(c.delete(f"{API}/{created[0]['id']}"))
            boots.append(seconds)
            during_ms += during
    interval = statistics.median(idle_ms)
    return {
        "latency_ms": {
            "during_boot": _stats(during_ms, interval),
            "idle": _stats(idle_ms, interval),
            "interval_ms": interval,
        },
        "boot_s": statistics.median(boots),
        "boot_s_each": boots,
    }


def measure_latency_under_batch(base: str, plan: Plan) -> dict[str, Any]:
    """Small calls on instance A (another process) while this process sends instance B
    one ``contend_calls``-call batch (issue 8's fairness target: p99 <= 50 ms)."""
    import httpx

    with httpx.Client(base_url=base, timeout=600.0) as c:
        b = _ok(c.post(API, json={"name": "contender", "preset": "teaching-1g"})).json()
        calls = [{"fn": "vm_page_alloc"}, {"fn": "vm_test_nominal"}] * (plan.contend_calls // 2)
        body = json.dumps({"calls": calls})

        def batch() -> None:
            _ok(
                c.post(
                    f"{API}/{b['id']}/calls",
                    content=body,
                    headers={"content-type": "application/json"},
                )
            )

        during, seconds = _latency_while(base, plan, batch)
        _ok(c.delete(f"{API}/{b['id']}"))
    return {
        "latency_ms": _stats(during, statistics.median(during) if during else 1.0),
        "batch_s": seconds,
        "batch_calls": plan.contend_calls,
    }


# ---------------------------------------------------------------- driver
def run(quick: bool = False) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    with Server() as srv:
        single = measure_single(srv.base, plan)
        batch = measure_batch(srv.base, plan, srv.cpu_s)
        lat = measure_latency(srv.base, plan)
        contended = measure_latency_under_batch(srv.base, plan)
        cmd = " ".join(srv.cmd[1:]).replace(f"--port {srv.port}", "--port P")
    return {
        "bare_rps": single["bare_rps"],
        "alloc_free_rps": single["alloc_free_rps"],
        "ratio": single["ratio"],
        "batch_calls_per_s": batch["batch_calls_per_s"],
        "batch_calls": batch["batch_calls"],
        "batch_alloc_lookup_calls_per_s": batch["batch_alloc_lookup_calls_per_s"],
        "batch_deactivate_free_calls_per_s": batch["batch_deactivate_free_calls_per_s"],
        "batch_core_calls_per_s": batch["batch_core_calls_per_s"],
        "batch_core_share": batch["batch_core_share"],
        "batch_compact_calls_per_s": batch["batch_compact_calls_per_s"],
        "batch_compact_alloc_lookup_calls_per_s": batch["batch_compact_alloc_lookup_calls_per_s"],
        "batch_compact_deactivate_free_calls_per_s": batch[
            "batch_compact_deactivate_free_calls_per_s"
        ],
        "batch_compact_core_share": batch["batch_compact_core_share"],
        "batch_compact_server_cpu_us": batch["batch_compact_server_cpu_us"],
        "batch_kernel_cpu_us": batch["batch_kernel_cpu_us"],
        "batch_compact_lab_cpu_us": batch["batch_compact_lab_cpu_us"],
        "latency_ms": lat["latency_ms"],
        "boot_s": lat["boot_s"],
        "boot_memory": plan.boot_memory,
        "during_other_users_batch": contended,
        "targets": dict(TARGETS),
        "params": {
            "quick": quick,
            "server": f"python {cmd}",
            "preset": PRESET,
            "max_pages": MAX_PAGES,
            "requests": plan.requests,
            "runs": plan.runs,
            "warmup": plan.warmup,
            "batch_runs": plan.batch_runs,
            "idle_samples": plan.idle_samples,
            "boot_runs": plan.boot_runs,
            "boot_s_each": lat["boot_s_each"],
            "bare_rps_each": single["bare_rps_each"],
            "alloc_free_rps_each": single["alloc_free_rps_each"],
            "python": sys.version.split()[0],
        },
    }


def run_stacks(quick: bool = False) -> dict[str, Any]:
    """Single calls on both server stacks at once (``--stacks``): two servers, one on
    uvloop + httptools and one stock (asyncio + h11), measured in alternation (bare,
    alloc/free, on one then the other, ``runs`` times), so that both see the same load
    of the machine."""
    plan = QUICK if quick else FULL
    out: dict[str, Any] = {}
    with Server() as fast, Server({"PAGELAB_SERVER_STACK": "stock"}) as stock:
        each: dict[str, dict[str, list[float]]] = {
            name: {k: [] for k in ("bare", "alloc_free", "bare_cpu", "alloc_free_cpu")}
            for name in ("fast", "stock")
        }
        for _ in range(plan.runs):
            for name, srv in (("fast", fast), ("stock", stock)):
                for mode in ("bare", "alloc_free"):
                    spec = {
                        "mode": mode,
                        "base": srv.base,
                        "requests": plan.requests,
                        "warmup": plan.warmup,
                    }
                    s0 = srv.cpu_s()
                    r = run_client(spec)
                    server_cpu = srv.cpu_s() - s0
                    each[name][mode].append(r["requests"] / r["elapsed_s"])
                    # CPU time per request, server's and client's (the warm-up included
                    # in the server's, a small share): what a request costs whatever
                    # else the machine runs meanwhile
                    n = r["requests"] + spec["warmup"] * (2 if mode == "alloc_free" else 1)
                    each[name][mode + "_cpu"].append(
                        server_cpu / n * 1e6 + r["cpu_s"] / r["requests"] * 1e6
                    )
    for name, runs in each.items():
        b, a = statistics.median(runs["bare"]), statistics.median(runs["alloc_free"])
        bc, ac = statistics.median(runs["bare_cpu"]), statistics.median(runs["alloc_free_cpu"])
        out[name] = {
            "bare_rps": b,
            "alloc_free_rps": a,
            "ratio": a / b,
            "bare_cpu_us": bc,
            "alloc_free_cpu_us": ac,
            "cpu_ratio": bc / ac,
            "bare_rps_each": runs["bare"],
            "alloc_free_rps_each": runs["alloc_free"],
        }
    out["stacks"] = {"fast": "uvloop + httptools", "stock": "asyncio + h11"}
    out["targets"] = {"ratio": TARGETS["ratio"]}
    return out


def render(result: dict[str, Any]) -> str:
    """A readable table: each figure with its target (where the issue sets one)."""
    t = result["targets"]
    lat = result["latency_ms"]
    rows: list[tuple[str, str, str]] = [
        ("bare GET /healthz", f"{result['bare_rps']:,.0f} req/s", ""),
        ("vm_page_alloc + vm_page_free", f"{result['alloc_free_rps']:,.0f} req/s", ""),
        ("  ratio to bare", f"{result['ratio']:.2f}", f">= {t['ratio']:g}"),
        (
            f"batch ({result['batch_calls']:,} calls/request), readable",
            f"{result['batch_calls_per_s']:,.0f} calls/s",
            "",
        ),
        ("  alloc + lookup batch", f"{result['batch_alloc_lookup_calls_per_s']:,.0f} calls/s", ""),
        (
            "  deactivate + free batch",
            f"{result['batch_deactivate_free_calls_per_s']:,.0f} calls/s",
            "",
        ),
        ("  same calls, Machine.call", f"{result['batch_core_calls_per_s']:,.0f} calls/s", ""),
        ("  kernel share of the wall time", f"{result['batch_core_share']:.0%}", ""),
        (
            "batch, compact format",
            f"{result['batch_compact_calls_per_s']:,.0f} calls/s",
            f">= {t['batch_compact_calls_per_s']:,.0f}",
        ),
        (
            "  alloc + lookup batch",
            f"{result['batch_compact_alloc_lookup_calls_per_s']:,.0f} calls/s",
            "",
        ),
        (
            "  deactivate + free batch",
            f"{result['batch_compact_deactivate_free_calls_per_s']:,.0f} calls/s",
            "",
        ),
        ("  kernel share of the wall time", f"{result['batch_compact_core_share']:.0%}", ""),
        (
            "  server CPU per call",
            f"{result['batch_compact_server_cpu_us']:.2f} us",
            f"kernel {result['batch_kernel_cpu_us']:.2f} us, the rest "
            f"{result['batch_compact_lab_cpu_us']:.2f} us",
        ),
    ]
    for key, label in (("idle", "idle"), ("during_boot", f"during a {result['boot_memory']} boot")):
        s = lat[key]
        rows.append(
            (
                f"small call latency, {label}",
                f"p50 {s['p50']:.2f} / p99 {s['p99']:.2f} / max {s['max']:.2f} ms",
                f"n={s['n']}, p99 corrected {s['p99_corrected']:.2f} ms",
            )
        )
    rows.append((f"create {result['boot_memory']} instance", f"{result['boot_s']:.2f} s", ""))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'http':<{w0}}  {'figure':>{w1}}  target", "-" * (w0 + w1 + 12)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    p = result["params"]
    lines.append(
        f"(single calls: {p['requests']:,} requests, median of {p['runs']}; batches: median "
        f"of {p['batch_runs']}; instance 1 = {p['preset']}"
        f"{'; QUICK sizes' if p['quick'] else ''})"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    quick = "--quick" in argv
    unknown = [a for a in argv if a not in ("--json", "--quick", "--stacks")]
    if unknown:
        print(
            f"bench http: unknown option(s) {' '.join(unknown)}; use --json, --quick, --stacks",
            file=sys.stderr,
        )
        return 2
    if "--stacks" in argv:
        stacks = run_stacks(quick=quick)
        if as_json:
            print(json.dumps(stacks))
        else:
            for name in ("fast", "stock"):
                r = stacks[name]
                print(
                    f"{name:5} ({stacks['stacks'][name]}): bare {r['bare_rps']:,.0f} req/s, "
                    f"alloc/free {r['alloc_free_rps']:,.0f} req/s, ratio {r['ratio']:.2f} "
                    f"(target >= {TARGETS['ratio']:g}); CPU per request (server + client) "
                    f"{r['bare_cpu_us']:.0f} / {r['alloc_free_cpu_us']:.0f} us, "
                    f"ratio {r['cpu_ratio']:.2f}"
                )
        return 0
    result = run(quick=quick)
    print(json.dumps(result) if as_json else render(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))

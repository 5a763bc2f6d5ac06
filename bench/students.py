"""``python -m bench students [--json] [--quick]``: a class of 40 students on one server.

A real server (``python -m app.serve`` on a free loopback port, ``bench.http.Server``) in
token mode with a SQLite database in a temporary directory, so every acknowledged call is
in the journal first (group commit).  Before the server starts, this process writes the
class into that database: a course, 40 students with a token each.  The students' rate
quota (``calls_per_s``, 500 by default) is raised for the benchmark, which measures what
the server can carry, not the quota.

Each student is a thread with one keep-alive connection (``http.client``) in one of a few
client processes on the same machine (so clients and server share its cores: the figures
are those of the whole 2-core box).  A student first boots an instance of their own
(``{"memory": "128MiB"}``; 64 MiB with ``--quick``), then, seeded so each run makes the same
requests, repeats a mix until the time is up:

* 85 %: one call (``POST .../calls/{fn}``, default options, i.e. with its record): a
  valid step for one of the student's pages -- ``vm_page_alloc`` (up to 64 pages held),
  ``vm_page_wire``/``vm_page_unwire``/``vm_page_wakeup``/``vm_page_free`` on a busied
  page, ``vm_page_activate``/``vm_page_deactivate``/``vm_page_dontneed``/
  ``vm_page_busy_try`` on an unbusied one;
* 10 %: a batch of 10-100 calls (``POST .../calls``): allocations, or one step for each
  of up to that many of the student's pages;
* 5 %: a view (``GET .../vmstats``).

Every request must succeed, every batch item too (counted in ``errors``; the benchmark
fails if any does).  Two phases, each on the same server and instances:

* ``flat_out``: no think time -- aggregate kernel calls/s (a batch counts its calls),
  requests/s, and per-request latency p50/p99/max of single calls, batches and views;
* ``paced``: each student waits a random think time (exponential, mean ``think_ms``)
  between requests, as people at a keyboard or a script with sleeps do: latency again.

Each phase also reports the server's CPU time per request (``/proc/<pid>/stat``: all its
threads), which other work on the machine disturbs far less than the rates.  The flat-out
phase then runs again on other servers (``CONFIGS``): the open lab (no tokens) with the
SQLite journal and without a database, so ``durability_cost_ratio`` (calls/s without / with
the journal) and ``durability_cpu_ratio`` (server CPU per request with / without) are what
durability costs the class; and, without ``--quick``,
token mode with ``PAGELAB_SQLITE_SYNCHRONOUS=FULL`` (each group commit waits for the disk).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.http import ROOT, Server, _env

API = "/api/v1"
COURSE = "bench"
HELD_MAX = 64  # pages a student holds at most


@dataclass(frozen=True)
class Plan:
    students: int
    memory: str
    seconds: float  # per phase
    think_ms: float  # the paced phase's mean think time
    processes: int  # client processes the students are spread over


FULL = Plan(40, "128MiB", 15.0, 100.0, 4)
QUICK = Plan(40, "64MiB", 1.0, 100.0, 2)

#: server configurations: (PAGELAB_AUTH, a SQLite journal?, PAGELAB_SQLITE_SYNCHRONOUS)
CONFIGS: dict[str, tuple[str, bool, str]] = {
    "token": ("token", True, "NORMAL"),  # the class as deployed
    "token_full": ("token", True, "FULL"),
    "open": ("open", True, "NORMAL"),  # no tokens: what authentication costs
    "open_nodb": ("open", False, "NORMAL"),  # no journal: what durability costs
}


# ---------------------------------------------------------------- one student
class Student:
    """One student's connection, instance, pages and timings (a thread of a client
    process).  The pages' states are tracked here so that every call is valid."""

    def __init__(self, port: int, name: str, token: str, seed: int) -> None:
        self.name = name
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Content-Type": "application/json"}
        if token:  # none in the open lab
            self.headers["Authorization"] = f"Bearer {token}"
        self.rng = random.Random(seed)
        self.iid = 0
        self.busy: list[int] = []  # pages this student has busied (alloc, busy_try)
        self.idle: list[int] = []  # pages neither busied nor wired
        self.wired: dict[int, int] = {}  # busied pages' wire counts
        self.calls = 0
        self.requests = 0
        self.errors = 0
        self.first_error = ""
        self.latency: dict[str, list[float]] = {"single": [], "batch": [], "view": []}

    def _send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None

    def _failed(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{self.name}: {what}"[:500]

    def boot(self, memory: str) -> None:
        status, body = self._send(
            "POST", f"{API}/instances", {"name": f"{self.name}-box", "memory": memory}
        )
        if status != 201:
            raise RuntimeError(f"{self.name} could not boot an instance: {status} {body}")
        self.iid = body["id"]

    # -- choosing a valid step
    def _step(self) -> tuple[str, dict[str, Any], int]:
        """A call valid in the pages' current states: (fn, args, pfn or 0)."""
        rng = self.rng
        options: list[str] = []
        if len(self.busy) + len(self.idle) < HELD_MAX:
            options += ["alloc"] * 3
        if self.busy:
            options += ["wire", "wakeup", "wakeup", "free", "free"]
            if any(self.wired.values()):
                options.append("unwire")
        if self.idle:
            options += ["activate", "deactivate", "dontneed", "busy_try"]
        op = rng.choice(options)
        if op == "alloc":
            return "vm_page_alloc", {}, 0
        if op == "unwire":
            m = rng.choice([p for p, n in self.wired.items() if n])
            return "vm_page_unwire", {"m": m, "activate": rng.random() < 0.5}, m
        if op in ("wire", "wakeup", "free"):
            m = rng.choice(self.busy)
            if op != "wire" and self.wired[m]:  # a wired page is unwired before it is let go
                return "vm_page_unwire", {"m": m, "activate": False}, m
            return f"vm_page_{op}", {"m": m}, m
        m = rng.choice(self.idle)
        if op == "busy_try":
            return "vm_page_busy_try", {"m": m, "also_m_busy": False}, m
        return f"vm_page_{op}", {"m": m}, m

    def _apply(self, fn: str, m: int, result: Any) -> None:
        """Track what a successful call did to the student's pages."""
        if fn == "vm_page_alloc":
            if result is not None:
                self.busy.append(result)
                self.wired[result] = 0
        elif fn == "vm_page_wire":
            self.wired[m] += 1
        elif fn == "vm_page_unwire":
            self.wired[m] -= 1
        elif fn == "vm_page_free":
            self.busy.remove(m)
            del self.wired[m]
        elif fn == "vm_page_wakeup":
            self.busy.remove(m)
            del self.wired[m]
            self.idle.append(m)
        elif fn == "vm_page_busy_try" and result is False:  # False: it got the busy
            self.idle.remove(m)
            self.busy.append(m)
            self.wired[m] = 0

    # -- the three kinds of request
    def single(self) -> None:
        fn, args, m = self._step()
        t0 = time.perf_counter()
        status, body = self._send("POST", f"{API}/instances/{self.iid}/calls/{fn}", {"args": args})
        self.latency["single"].append((time.perf_counter() - t0) * 1e3)
        self.requests += 1
        if status != 200:
            self._failed(f"{fn} {args}: {status} {body}")
            return
        self.calls += 1
        self._apply(fn, m, body["result"])

    def batch(self) -> None:
        rng = self.rng
        n = rng.randint(10, 100)
        planned: list[tuple[str, dict[str, Any], int]] = []
        if len(self.busy) + len(self.idle) + n <= HELD_MAX * 2 and rng.random() < 0.5:
            planned = [("vm_page_alloc", {}, 0)] * n
        else:  # one step for each of up to n pages, each page once
            for m in rng.sample(self.idle, min(len(self.idle), n // 2)):
                fn = rng.choice(["vm_page_activate", "vm_page_deactivate", "vm_page_dontneed"])
                planned.append((fn, {"m": m}, m))
            for m in self.busy[: n - len(planned)]:
                if self.wired[m]:
                    planned.append(("vm_page_unwire", {"m": m, "activate": False}, m))
                else:
                    planned.append(("vm_page_free", {"m": m}, m))
            if not planned:
                planned = [("vm_page_alloc", {}, 0)] * n
        body = {"calls": [{"fn": fn, "args": args} for fn, args, _ in planned]}
        t0 = time.perf_counter()
        status, answer = self._send("POST", f"{API}/instances/{self.iid}/calls", body)
        self.latency["batch"].append((time.perf_counter() - t0) * 1e3)
        self.requests += 1
        if status != 200:
            self._failed(f"batch: {status} {answer}")
            return
        for (fn, args, m), item in zip(planned, answer["results"], strict=True):
            if "error" in item:
                self._failed(f"batch item {fn} {args}: {item['error']}")
                continue
            self.calls += 1
            self._apply(fn, m, item["result"])

    def view(self) -> None:
        t0 = time.perf_counter()
        status, body = self._send("GET", f"{API}/instances/{self.iid}/vmstats")
        self.latency["view"].append((time.perf_counter() - t0) * 1e3)
        self.requests += 1
        if status != 200:
            self._failed(f"vmstats: {status} {body}")

    def run(self, seconds: float, think_ms: float) -> None:
        """The mix until ``seconds`` are up (think time between requests if > 0)."""
        rng = self.rng
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            r = rng.random()
            if r < 0.05:
                self.view()
            elif r < 0.15:
                self.batch()
            else:
                self.single()
            if think_ms > 0:
                time.sleep(rng.expovariate(1000.0 / think_ms))

    def take_figures(self) -> dict[str, Any]:
        out = {
            "calls": self.calls,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "latency": self.latency,
        }
        self.calls = self.requests = self.errors = 0
        self.latency = {k: [] for k in self.latency}
        return out


def client_main(spec: dict[str, Any]) -> None:
    """A client process: its students boot their instances, it prints ``ready``, then
    for each line ``RUN <seconds> <think_ms>`` on stdin runs one phase and prints one JSON
    line of figures per student; ``STOP`` ends it."""
    students = [Student(spec["port"], name, token, seed) for name, token, seed in spec["students"]]
    for s in students:
        s.boot(spec["memory"])
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "RUN":
            break
        seconds, think_ms = float(words[1]), float(words[2])
        threads = [
            threading.Thread(target=s.run, args=(seconds, think_ms), daemon=True) for s in students
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps([s.take_figures() for s in students]), flush=True)


# ---------------------------------------------------------------- the class and the server
def _enrol(url: str, students: int) -> list[tuple[str, str]]:
    """The course and its students, written into the database before the server starts:
    (name, token) of each."""
    from app.lab.accounts import Accounts
    from app.lab.store import Store

    store = Store(url)
    try:
        accounts = Accounts(store)
        accounts.create_course(COURSE)
        out = []
        for k in range(students):
            name = f"student{k:02d}"
            accounts.create_user(name, "student", COURSE)
            accounts.set_quota(name, "calls_per_s", 1_000_000.0)
            out.append((name, accounts.issue_token(name, "bench")))
        return out
    finally:
        store.close()


def _pct(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(1, math.ceil(p / 100 * len(sorted_ms)))
    return round(sorted_ms[k - 1], 3)


def _latency(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"n": 0}
    return {"n": len(s), "p50": _pct(s, 50), "p99": _pct(s, 99), "max": round(s[-1], 3)}


def _server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(
    procs: list[subprocess.Popen[str]], server_pid: int, seconds: float, think_ms: float
) -> dict[str, Any]:
    cpu0 = _server_cpu_s(server_pid)
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"RUN {seconds} {think_ms}\n")
        p.stdin.flush()
    figures: list[dict[str, Any]] = []
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("a client process died")
        figures += json.loads(line)
    wall = time.perf_counter() - started
    server_cpu = _server_cpu_s(server_pid) - cpu0
    calls = sum(f["calls"] for f in figures)
    requests = sum(f["requests"] for f in figures)
    kinds: dict[str, list[float]] = {"single": [], "batch": [], "view": []}
    for f in figures:
        for kind, samples in f["latency"].items():
            kinds[kind] += samples
    every = [v for samples in kinds.values() for v in samples]
    per_student = [f["calls"] / seconds for f in figures]
    return {
        "seconds": seconds,
        "think_ms": think_ms,
        "calls_per_s": round(calls / seconds),
        "requests_per_s": round(requests / seconds),
        "calls": calls,
        "requests": requests,
        "wall_s": round(wall, 3),
        # the server's CPU time per request (all its threads): other processes on the
        # machine disturb it far less than the rates
        "server_cpu_ms_per_request": round(1e3 * server_cpu / max(1, requests), 3),
        "errors": sum(f["errors"] for f in figures),
        "first_error": next((f["first_error"] for f in figures if f["first_error"]), ""),
        "student_calls_per_s": {
            "min": round(min(per_student), 1),
            "max": round(max(per_student), 1),
        },
        "latency_ms": {"all": _latency(every), **{k: _latency(v) for k, v in kinds.items()}},
    }


def _run_class(
    plan: Plan, tmp: Path, config: str, phases: list[tuple[str, float]]
) -> dict[str, Any]:
    """One server in configuration ``config`` (see ``CONFIGS``), the class on it, the
    phases one after the other."""
    auth, database, synchronous = CONFIGS[config]
    url = f"sqlite:///{tmp / f'students-{config}.db'}" if database else ""
    if auth == "token":
        roster = _enrol(url, plan.students)
    else:
        roster = [(f"student{k:02d}", "") for k in range(plan.students)]
    env = {
        "PAGELAB_AUTH": auth,
        "PAGELAB_DATABASE_URL": url,
        "PAGELAB_SQLITE_SYNCHRONOUS": synchronous,
        "PAGELAB_BOOT_DEFAULT": "0",
        "PAGELAB_MAX_INSTANCES": str(plan.students + 8),
    }
    out: dict[str, Any] = {}
    with Server(env) as server:
        procs: list[subprocess.Popen[str]] = []
        try:
            for k in range(plan.processes):
                mine = [
                    (name, token, 1000 + i)
                    for i, (name, token) in enumerate(roster)
                    if i % plan.processes == k
                ]
                spec = {"port": server.port, "memory": plan.memory, "students": mine}
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.students", "--client", json.dumps(spec)],
                        cwd=ROOT,
                        env=_env(),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for p in procs:
                assert p.stdout is not None
                if p.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a client process did not start:\n{server.log()}")
            for label, think_ms in phases:
                assert server.proc is not None
                out[label] = _phase(procs, server.proc.pid, plan.seconds, think_ms)
        finally:
            for p in procs:
                if p.poll() is None:
                    assert p.stdin is not None
                    p.stdin.write("STOP\n")
                    p.stdin.close()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return out


def run(quick: bool = False) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="pagelab-students-"))
    try:
        token = _run_class(plan, tmp, "token", [("flat_out", 0.0), ("paced", plan.think_ms)])
        result: dict[str, Any] = {
            "students": plan.students,
            "memory": plan.memory,
            "client_processes": plan.processes,
            "sqlite_synchronous": "NORMAL",
            **token,
        }
        others = ["open", "open_nodb"] + ([] if quick else ["token_full"])
        for config in others:
            result[f"flat_out_{config}"] = _run_class(plan, tmp, config, [("flat_out", 0.0)])[
                "flat_out"
            ]
        nodb, db = result["flat_out_open_nodb"], result["flat_out_open"]
        # what the journal costs a class: calls/s without a database over calls/s with one,
        # and the server's CPU per request with one over without
        result["durability_cost_ratio"] = round(nodb["calls_per_s"] / max(1, db["calls_per_s"]), 2)
        result["durability_cpu_ratio"] = round(
            db["server_cpu_ms_per_request"] / max(1e-9, nodb["server_cpu_ms_per_request"]), 2
        )
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['students']} students, an instance of {result['memory']} each, "
        f"{result['client_processes']} client processes; flat_out and paced: token mode, "
        "SQLite journal (synchronous NORMAL)"
    ]
    phases = [(k, v) for k, v in result.items() if isinstance(v, dict) and "calls_per_s" in v]
    for label, ph in phases:
        lat = ph["latency_ms"]
        lines.append(
            f"{label:28} {ph['calls_per_s']:>8} calls/s {ph['requests_per_s']:>7} req/s  "
            f"errors {ph['errors']}  (think {ph['think_ms']:g} ms)  "
            f"server {ph['server_cpu_ms_per_request']:.2f} ms CPU/request"
        )
        for kind in ("all", "single", "batch", "view"):
            s = lat[kind]
            if s["n"]:
                lines.append(
                    f"  {kind:8} n={s['n']:<7} p50 {s['p50']:8.2f} ms  p99 {s['p99']:8.2f} ms  "
                    f"max {s['max']:8.2f} ms"
                )
    lines.append(
        f"durability cost (open lab, no database / SQLite): calls/s "
        f"{result['durability_cost_ratio']}x, server CPU per request "
        f"{result['durability_cpu_ratio']}x"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--client"]:
        client_main(json.loads(argv[1]))
        return 0
    result = run(quick="--quick" in argv)
    print(json.dumps(result) if "--json" in argv else render(result))
    bad = [v for v in result.values() if isinstance(v, dict) and v.get("errors")]
    if bad:
        print(f"requests failed: {bad[0]['first_error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

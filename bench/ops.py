"""What observing a request costs: the request id, metrics and access log middleware
(``app.api.observe``) on a small call.

    python -m bench ops           # a table
    python -m bench ops --json    # one JSON object
    python -m bench ops --quick   # fewer requests (what the smoke test uses)

The same app (``create_app``, the ``tiny-16m`` preset, no database) is driven in this
process by calling it as an ASGI application directly, with no socket and no HTTP client,
so that the figure is the middleware's own cost and not the noise of a network stack:
each request is ``POST /api/v1/instances/1/calls/vm_test_nominal`` with ``{"args": {},
"record": false}`` (the smallest kernel call), and its answer must be 200 (checked).
Three variants of the app, each with its lifespan running:

* ``bare``: the app without ``Observe`` (taken out of its middleware before the stack is
  built): no request id, no HTTP metrics, no access line;
* ``observed``: with ``Observe`` and the access line switched off (``PAGELAB_ACCESS_LOG=0``,
  ``--no-access-log``): request id, context variables, the two HTTP metrics;
* ``logged``: with ``Observe`` and its access line rendered as JSON (the default on a
  pipe) into ``/dev/null`` through the process's logging (``app.logs``).

The cyclic garbage collector runs as under ``python -m app.serve`` (``PAGELAB_GC_THRESHOLD``).
Then the middleware alone: ``Observe`` around an ASGI app that answers 200 at once, with
and without its access line, against that app bare (``middleware_alone_*``: the same
costs without the noise of a whole request; ``10 * requests`` a run).

Runs of ``requests`` requests alternate between the variants after a warm-up (each variant
goes first in turn); each figure
is the median over the runs of microseconds of CPU per request (this process's CPU time,
``time.process_time``, / requests: the calls run inline, and CPU time is what a busy
machine's other processes disturb least).  The overheads are the differences to
``bare``, also as a share of its time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

PATH = "/api/v1/instances/1/calls/vm_test_nominal"
BODY = b'{"args": {}, "record": false}'
VARIANTS = ("bare", "observed", "logged")


@dataclass(frozen=True)
class Plan:
    requests: int
    runs: int
    warmup: int


FULL = Plan(requests=1000, runs=21, warmup=500)
QUICK = Plan(requests=300, runs=2, warmup=50)


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("bench", 80),
    }


async def _requests(app: Any, n: int) -> float:
    """Send ``n`` requests one after the other; the CPU seconds this process spent."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(n):
        await app(_scope(), receive, send)
    took = time.process_time() - started
    if statuses.count(200) != n:
        raise RuntimeError(f"bench ops: not every answer was 200: {set(statuses)}")
    return took


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that answers 200 at once: what the middleware alone costs around it."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _measure_alone(plan: Plan) -> dict[str, list[float]]:
    """``Observe`` around ``_noop``, without and with its access line, against ``_noop``
    alone: microseconds of CPU per request, one figure per run."""
    from app.api.observe import HttpMetrics, Observe
    from app.lab.metrics import Metrics

    apps = {
        "bare": _noop,
        "observed": Observe(_noop, HttpMetrics(Metrics()), access=False),
        "logged": Observe(_noop, HttpMetrics(Metrics()), access=True),
    }
    n = plan.requests * 10
    each: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for k in range(plan.runs):
        for name in VARIANTS[k % 3 :] + VARIANTS[: k % 3]:
            each[name].append(await _requests(apps[name], n) / n * 1e6)
    return each


async def _measure(plan: Plan) -> dict[str, list[float]]:
    from app.api.observe import Observe
    from app.lab.settings import Settings
    from app.main import create_app

    apps = {
        name: create_app(
            Settings(default_preset="tiny-16m", database_url="", access_log=name == "logged")
        )
        for name in VARIANTS
    }
    bare = apps["bare"]
    bare.user_middleware = [m for m in bare.user_middleware if m.cls is not Observe]
    each: dict[str, list[float]] = {name: [] for name in VARIANTS}
    async with (
        bare.router.lifespan_context(bare),
        apps["observed"].router.lifespan_context(apps["observed"]),
        apps["logged"].router.lifespan_context(apps["logged"]),
    ):
        for name in VARIANTS:
            await _requests(apps[name], plan.warmup)
        for k in range(plan.runs):
            for name in VARIANTS[k % 3 :] + VARIANTS[: k % 3]:  # each goes first in turn
                took = await _requests(apps[name], plan.requests)
                each[name].append(took / plan.requests * 1e6)
    return each


def run(quick: bool = False) -> dict[str, Any]:
    from app.lab.settings import Settings
    from app.logs import configure_logging, reset_logging

    plan = QUICK if quick else FULL
    # as python -m app.serve runs (PAGELAB_GC_THRESHOLD): with CPython's default the
    # cyclic collector walks the three machines' heaps every few requests, and bills it
    # to whichever variant allocates most
    old = gc.get_threshold()
    gc.set_threshold(Settings().gc_threshold, 50, 100)
    with open(os.devnull, "w") as sink:
        configure_logging("json", "info", sink)
        try:
            each = asyncio.run(_measure(plan))
            alone = asyncio.run(_measure_alone(plan))
        finally:
            reset_logging()
            gc.set_threshold(*old)
    us = {name: statistics.median(values) for name, values in each.items()}
    mw = {name: statistics.median(values) for name, values in alone.items()}
    return {
        "bare_us": us["bare"],
        "observed_us": us["observed"],
        "logged_us": us["logged"],
        "observe_overhead_us": us["observed"] - us["bare"],
        "log_overhead_us": us["logged"] - us["bare"],
        "observe_overhead_share": (us["observed"] - us["bare"]) / us["bare"],
        "log_overhead_share": (us["logged"] - us["bare"]) / us["bare"],
        "middleware_alone_observe_us": mw["observed"] - mw["bare"],
        "middleware_alone_log_us": mw["logged"] - mw["bare"],
        "params": {
            "quick": quick,
            "request": f"POST {PATH} {BODY.decode()}",
            "requests": plan.requests,
            "runs": plan.runs,
            "warmup": plan.warmup,
            "each_us": each,
            "alone_each_us": alone,
            "python": sys.version.split()[0],
        },
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        ("small call, no Observe middleware", f"{result['bare_us']:.1f} us CPU/request", ""),
        (
            "  + request id and HTTP metrics",
            f"{result['observed_us']:.1f} us CPU/request",
            f"+{result['observe_overhead_us']:.1f} us ({result['observe_overhead_share']:.0%})",
        ),
        (
            "  + access line (JSON)",
            f"{result['logged_us']:.1f} us CPU/request",
            f"+{result['log_overhead_us']:.1f} us ({result['log_overhead_share']:.0%})",
        ),
    ]
    rows.append(
        (
            "Observe alone, around a no-op app",
            f"+{result['middleware_alone_observe_us']:.1f} us",
            f"with its access line +{result['middleware_alone_log_us']:.1f} us",
        )
    )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'ops':<{w0}}  {'figure':>{w1}}  overhead", "-" * (w0 + w1 + 24)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    p = result["params"]
    lines.append(
        f"(in-process ASGI, {p['requests']:,} requests a run, median of {p['runs']}"
        f"{'; QUICK sizes' if p['quick'] else ''})"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in ("--json", "--quick")]
    if unknown:
        print(f"bench ops: unknown option(s) {' '.join(unknown)}; use --json, --quick",
              file=sys.stderr)  # fmt: skip
        return 2
    result = run(quick="--quick" in argv)
    print(json.dumps(result) if "--json" in argv else render(result))
    return 0

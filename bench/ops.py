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
* ``observed``: with ``Observe`` and the access line switched off (``--no-access-log``):
  request id, context variables, the two HTTP metrics;
* ``logged``: with ``Observe`` and its access line rendered as JSON (the default on a
  pipe) into ``/dev/null`` through the process's logging (``app.logs``).

Runs of ``requests`` requests alternate between the variants after a warm-up; each figure
is the median over the runs of microseconds per request (wall time / requests).  The
overheads are the differences to ``bare``, also as a share of its time.
"""

from __future__ import annotations

import asyncio
import json
import logging
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


FULL = Plan(requests=4000, runs=7, warmup=500)
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
    """Send ``n`` requests one after the other; the wall seconds they took."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(n):
        await app(_scope(), receive, send)
    took = time.perf_counter() - started
    if statuses.count(200) != n:
        raise RuntimeError(f"bench ops: not every answer was 200: {set(statuses)}")
    return took


async def _measure(plan: Plan) -> dict[str, list[float]]:
    from app.api.observe import Observe
    from app.lab.settings import Settings
    from app.main import create_app

    settings = Settings(default_preset="tiny-16m", database_url="", boot_default=True)
    apps = {name: create_app(settings) for name in VARIANTS}
    bare = apps["bare"]
    bare.user_middleware = [m for m in bare.user_middleware if m.cls is not Observe]
    access = logging.getLogger("pagelab.access")
    each: dict[str, list[float]] = {name: [] for name in VARIANTS}
    async with (
        bare.router.lifespan_context(bare),
        apps["observed"].router.lifespan_context(apps["observed"]),
        apps["logged"].router.lifespan_context(apps["logged"]),
    ):
        for name in VARIANTS:
            access.disabled = name != "logged"
            await _requests(apps[name], plan.warmup)
        for _ in range(plan.runs):
            for name in VARIANTS:
                access.disabled = name != "logged"
                took = await _requests(apps[name], plan.requests)
                each[name].append(took / plan.requests * 1e6)
    access.disabled = False
    return each


def run(quick: bool = False) -> dict[str, Any]:
    from app.logs import configure_logging, reset_logging

    plan = QUICK if quick else FULL
    with open(os.devnull, "w") as sink:
        configure_logging("json", "info", sink)
        try:
            each = asyncio.run(_measure(plan))
        finally:
            reset_logging()
    us = {name: statistics.median(values) for name, values in each.items()}
    return {
        "bare_us": us["bare"],
        "observed_us": us["observed"],
        "logged_us": us["logged"],
        "observe_overhead_us": us["observed"] - us["bare"],
        "log_overhead_us": us["logged"] - us["bare"],
        "observe_overhead_share": (us["observed"] - us["bare"]) / us["bare"],
        "log_overhead_share": (us["logged"] - us["bare"]) / us["bare"],
        "params": {
            "quick": quick,
            "request": f"POST {PATH} {BODY.decode()}",
            "requests": plan.requests,
            "runs": plan.runs,
            "warmup": plan.warmup,
            "each_us": each,
            "python": sys.version.split()[0],
        },
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        ("small call, no Observe middleware", f"{result['bare_us']:.1f} us/request", ""),
        (
            "  + request id and HTTP metrics",
            f"{result['observed_us']:.1f} us/request",
            f"+{result['observe_overhead_us']:.1f} us ({result['observe_overhead_share']:.0%})",
        ),
        (
            "  + access line (JSON)",
            f"{result['logged_us']:.1f} us/request",
            f"+{result['log_overhead_us']:.1f} us ({result['log_overhead_share']:.0%})",
        ),
    ]
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

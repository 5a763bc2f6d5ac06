"""``python -m bench placements [--json] [--quick]``: the instance host's placements side by
side — in-process, one worker process, two worker processes and Ray (two local actors).

Each placement gets a lab of its own (no database: the journal is kept in memory, so the
figures are the hosts', not the disk's) with ``INSTANCES`` instances of ``tiny-16m``,
each with ``PAGES`` pages allocated.  Two figures per placement:

* ``calls_per_s``: aggregate kernel calls a second of all instances at once, each driven
  by its own coroutine sending compact batches of ``BATCH`` calls (the lab's
  ``batch_columns``, as ``POST …/calls`` in the compact format does) that move its pages
  between the active and inactive queues, for ``seconds``;
* ``call_us``: the latency of one small call (``vm_page_activate``, no record) made
  alone, one after the other on one instance: median, p99 and the mean, in microseconds
  — what the placement adds to every request.

``speedup_2_vs_1`` is two workers' calls/s over one worker's (the issue's target on a
2-core machine: 1.7).  ``same_digests`` says whether every instance ended with the same
state digest on every placement (it must: the same calls make the same machines).  Ray is
skipped (said so in the figures) when it is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import sys
import time
from typing import Any

from app.lab.hosts.base import Ctx
from app.lab.service import Lab
from app.lab.settings import Settings

INSTANCES = 8
PAGES = 64
BATCH = 2000

#: (name, placement, workers)
CONFIGS: tuple[tuple[str, str, int], ...] = (
    ("inprocess", "inprocess", 1),
    ("workers_1", "workers", 1),
    ("workers_2", "workers", 2),
    ("ray_2", "ray", 2),
)


def _forms() -> list[tuple[str, tuple[str, ...], Ctx]]:
    ctx = Ctx()
    return [("vm_page_activate", ("m",), ctx), ("vm_page_deactivate", ("m",), ctx)]


async def _setup(lab: Lab) -> list[tuple[int, list[int]]]:
    """The instances and the pages each holds."""
    out = []
    for k in range(INSTANCES):
        inst = await lab.create_preset(f"bench-{k}", "tiny-16m", {"seed": k})
        r, _, _ = await lab.call(
            inst.id, "vm_object_allocate", {"type": "OBJT_DEFAULT", "size": PAGES}, Ctx()
        )
        items = await lab.batch(
            inst.id,
            [("vm_page_alloc", {"object": r.result, "pindex": i}, Ctx()) for i in range(PAGES)],
        )
        out.append((inst.id, [it["result"] for it in items]))
    return out


async def _drive(lab: Lab, iid: int, pfns: list[int], until: float) -> int:
    """Batches on one instance until ``until`` (one at least); the calls made."""
    forms = _forms()
    fn = [(k // len(pfns)) % 2 for k in range(BATCH)]
    args = [[pfns[k % len(pfns)]] for k in range(BATCH)]
    calls = 0
    while True:  # at least one batch (the warm-up is one)
        cols = await lab.batch_columns(iid, forms, fn, args)
        assert not cols.errors, cols.errors[:1]
        calls += len(cols.results)
        if time.perf_counter() >= until:
            return calls


async def _measure(placement: str, workers: int, seconds: float, singles: int) -> dict[str, Any]:
    settings = Settings(
        placement=placement,  # type: ignore[arg-type]
        workers=workers,
        database_url="",
        boot_default=False,
        page_budget=0,
    )
    lab = Lab(settings)
    try:
        held = await _setup(lab)
        # warm up every host (imports, first slices) before timing
        await asyncio.gather(*(_drive(lab, i, p, 0.0) for i, p in held))
        start = time.perf_counter()
        counts = await asyncio.gather(*(_drive(lab, i, p, start + seconds) for i, p in held))
        wall = time.perf_counter() - start
        iid, pfns = held[0]
        lat = []
        for k in range(singles):
            t0 = time.perf_counter()
            await lab.call(iid, "vm_page_activate", {"m": pfns[k % PAGES]}, Ctx(), record=False)
            lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        digests = [await lab.digest(lab.get(i)) for i, _ in held]
        return {
            "calls_per_s": round(sum(counts) / wall, 1),
            "calls": sum(counts),
            "wall_s": round(wall, 3),
            "call_us": {
                "p50": round(statistics.median(lat), 1),
                "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
                "mean": round(statistics.fmean(lat), 1),
                "n": len(lat),
            },
            "digests": digests,
        }
    finally:
        await lab.shutdown()


def run(quick: bool) -> dict[str, Any]:
    seconds = 1.5 if quick else 5.0
    singles = 300 if quick else 3000
    out: dict[str, Any] = {
        "instances": INSTANCES,
        "batch": BATCH,
        "seconds": seconds,
        "quick": quick,
    }
    for name, placement, workers in CONFIGS:
        if placement == "ray" and importlib.util.find_spec("ray") is None:
            out[name] = {"skipped": "Ray is not installed (pip install 'pagelab[ray]')"}
            continue
        out[name] = asyncio.run(_measure(placement, workers, seconds, singles))
    if "calls" in out["ray_2"]:
        import ray

        ray.shutdown()
    out["speedup_2_vs_1"] = round(
        out["workers_2"]["calls_per_s"] / out["workers_1"]["calls_per_s"], 2
    )
    ran = [out[name] for name, _, _ in CONFIGS if "digests" in out[name]]
    out["same_digests"] = all(r["digests"] == ran[0]["digests"] for r in ran)
    for r in ran:
        del r["digests"]
    return out


def main(argv: list[str]) -> int:
    result = run("--quick" in argv)
    if "--json" in argv:
        print(json.dumps(result))
        return 0
    print(
        f"{result['instances']} instances, compact batches of {result['batch']} calls, "
        f"{result['seconds']} s per placement"
    )
    print(f"{'placement':<12}{'calls/s':>12}{'call p50 µs':>14}{'call p99 µs':>14}")
    for name, _, _ in CONFIGS:
        r = result[name]
        if "skipped" in r:
            print(f"{name:<12}  skipped: {r['skipped']}")
            continue
        lat = r["call_us"]
        print(f"{name:<12}{r['calls_per_s']:>12.0f}{lat['p50']:>14.1f}{lat['p99']:>14.1f}")
    print(f"2 workers / 1 worker: {result['speedup_2_vs_1']}x (target 1.7x on 2 cores)")
    print(f"same digests on every placement: {result['same_digests']}")
    return 0 if result["same_digests"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

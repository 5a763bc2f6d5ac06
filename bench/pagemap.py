"""The memory-map benchmark: how long ``app.lab.pagemap.pagemap`` takes over every page of
a 16 M-page machine (the ``server-2s-64g`` preset: 64 GiB, 2 sockets, 16 CPUs).

    python -m bench pagemap            # a table
    python -m bench pagemap --json     # one JSON object
    python -m bench pagemap --quick    # a 256 MiB machine, for a smoke run

* ``pagemap_ms_fresh``: median of ``pagemap(machine, width=1024)`` right after boot (the
  whole range is free except the DMA reserve and the carved-out page array).
* ``pagemap_ms_mixed``: the same after a seeded mix that leaves pages of every state
  scattered over memory (allocated on random CPUs, so from all colours): per page one of
  activate, deactivate, wire, hold, cache, left busied, or left idle on no queue.
  The map's cost does not depend on the mix (every page is read once whatever its state);
  the figure shows it.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from typing import Any

from app.core.config import MachineConfig
from app.core.machine import Machine
from app.lab.pagemap import pagemap
from app.lab.presets import PRESETS

WIDTH = 1024
RUNS = 7
MIXED_PAGES = 20_000
SEED = 1
TARGET_MS = 100.0


def _median_ms(m: Machine, runs: int) -> float:
    pagemap(m, None, None, WIDTH)  # warm-up: first-touch faults of numpy's scratch memory
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        pagemap(m, None, None, WIDTH)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _mix(m: Machine, pages: int) -> None:
    rng = random.Random(SEED)
    for _ in range(pages):
        cpu = rng.randrange(m.ncpus)
        p = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"}, cpu=cpu, record=False).result
        if p is None:
            return
        kind = rng.randrange(7)
        if kind == 0:
            continue  # left hard-busied
        if kind == 1:
            m.call("vm_page_cache", {"m": p}, record=False)  # unbusies
            continue
        if kind == 2:
            m.call("vm_page_wire", {"m": p}, record=False)
        m.call("vm_page_wakeup", {"m": p}, record=False)
        if kind == 3:
            m.call("vm_page_activate", {"m": p}, record=False)
        elif kind == 4:
            m.call("vm_page_deactivate", {"m": p}, record=False)
        elif kind == 5:
            m.call("vm_page_hold", {"m": p}, record=False)


def bench_pagemap(quick: bool = False) -> dict[str, Any]:
    """Boot, time the map fresh and after the mix; the figures as one dict."""
    if quick:
        config = MachineConfig.from_size("256MiB", cpus=2, seed=SEED)
    else:
        config = PRESETS["server-2s-64g"].config
    start = time.perf_counter()
    m = Machine.boot(config)
    boot_s = time.perf_counter() - start
    runs = 3 if quick else RUNS
    fresh = _median_ms(m, runs)
    _mix(m, MIXED_PAGES // 10 if quick else MIXED_PAGES)
    mixed = _median_ms(m, runs)
    totals = pagemap(m, None, None, 1)["totals"]
    return {
        "pages": m.page_range,
        "width": WIDTH,
        "runs": runs,
        "boot_s": round(boot_s, 2),
        "pagemap_ms_fresh": round(fresh, 2),
        "pagemap_ms_mixed": round(mixed, 2),
        "target_ms": TARGET_MS,
        "mixed_totals": totals,
        "quick": quick,
    }


def render(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"pagemap over {result['pages']:,} pages, width {result['width']}, "
            f"median of {result['runs']} (boot {result['boot_s']} s)",
            f"  fresh  {result['pagemap_ms_fresh']:8.1f} ms   (target {result['target_ms']:.0f})",
            f"  mixed  {result['pagemap_ms_mixed']:8.1f} ms",
        ]
    )


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in ("--json", "--quick")]
    if unknown:
        print(
            f"bench pagemap: unknown option(s) {' '.join(unknown)}; use --json, --quick",
            file=sys.stderr,
        )
        return 2
    result = bench_pagemap(quick="--quick" in argv)
    print(json.dumps(result) if "--json" in argv else render(result))
    return 0

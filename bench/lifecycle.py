"""The page life-cycle benchmark (Core engine II): a wider mixed stream, and the pageout
daemon recovering a machine from memory pressure.

    python -m bench lifecycle            # a table
    python -m bench lifecycle --json     # one JSON object
    python -m bench lifecycle --quick    # small sizes (the smoke test)

* ``mixed2_calls_per_s`` (through ``Machine.call``, record off) and
  ``mixed2_calls_per_s_direct`` (method calls): a seeded stream on a 1 M-page machine of
  ~20 % ``vm_page_alloc`` (NORMAL, random object, fresh pindex, random CPU), 12 %
  ``vm_page_free``, 10 % ``vm_page_activate``, 10 % ``vm_page_deactivate``, 8 % wire +
  unwire pairs, 8 % hold + unhold pairs, 8 % wakeup + busy_try pairs, 8 %
  ``vm_page_dontneed``, 16 % ``vm_page_lookup`` — on pages the stream owns (hard-busied
  from the allocation, except inside a wakeup/busy_try pair).  Median of the runs.
* ``core1_calls_per_s_direct``: the Core-engine-I stream (``bench.engine``), measured in
  the same process, so the two can be compared (the issue asks that the new paths slow it
  by no more than 10 %).
* ``pageout_recovery``: a 4 M-page machine with the pageout daemon is filled with
  anonymous pages (allocated, activated, unbusied) until 1 % of its pages are free, then
  simulated time runs (``tick`` 10 at a time) until free + cache reaches
  ``v_paging_target2`` and the daemon is idle again.  Reports wall seconds, simulated
  ticks, daemon passes and the queue counts before and after.
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
from app.core.constants import VM_ALLOC_NORMAL
from app.core.invariants import check_invariants, state_digest
from app.core.kern_synch import run_runnable, tick
from app.core.machine import Machine
from app.core.objects import ObjType
from app.core.vm_meter import vmstats_rollup
from app.core.vm_page.alloc import vm_page_alloc
from app.core.vm_page.busy import vm_page_busy_try, vm_page_wakeup
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.object import vm_object_allocate, vm_page_lookup
from app.core.vm_page.pagestate import vm_page_dontneed, vm_page_hold, vm_page_unhold
from app.core.vm_page.queues import (
    pagedaemon_wakeup,
    vm_page_activate,
    vm_page_deactivate,
    vm_page_unwire,
    vm_page_wire,
)
from bench import engine

SEED = 7
OBJECTS = 64
CPUS = 4
ALLOC, FREE, ACT, DEACT, WIRE, HOLD, BUSY, DONTNEED, LOOKUP = range(9)
_WEIGHTS = (
    (ALLOC, 20),
    (FREE, 12),
    (ACT, 10),
    (DEACT, 10),
    (WIRE, 8),
    (HOLD, 8),
    (BUSY, 8),
    (DONTNEED, 8),
    (LOOKUP, 16),
)


def make_stream(calls: int) -> list[tuple[int, int, int, int]]:
    rng = random.Random(SEED)
    codes = [c for c, w in _WEIGHTS for _ in range(w)]
    next_pindex = [0] * OBJECTS
    owned: list[tuple[int, int, int]] = []  # (alloc number, object slot, pindex)
    n = 0
    ops: list[tuple[int, int, int, int]] = []
    while len(ops) < calls:
        cpu = rng.randrange(CPUS)
        code = rng.choice(codes)
        if code == ALLOC or not owned:
            slot = rng.randrange(OBJECTS)
            pindex = next_pindex[slot]
            next_pindex[slot] += rng.randint(1, 32)
            ops.append((ALLOC, cpu, slot, pindex))
            owned.append((n, slot, pindex))
            n += 1
            continue
        k = rng.randrange(len(owned))
        num, slot, pindex = owned[k]
        if code == FREE:
            owned[k] = owned[-1]
            owned.pop()
        if code == LOOKUP:
            ops.append((LOOKUP, cpu, slot, pindex))
        else:
            ops.append((code, cpu, num, 0))
    return ops


def _machine(pages: int, pagedaemon: bool = False) -> tuple[Machine, list[int]]:
    m = Machine.boot(
        MachineConfig(
            phys_avail=((4096, pages * 4096 + 4096),),
            cpus=CPUS,
            seed=1,
            max_pages=pages + 16,
            pagedaemon=pagedaemon,
        )
    )
    return m, [vm_object_allocate(m, ObjType.OBJT_DEFAULT, 0) for _ in range(OBJECTS)]


def _direct(pages: int, ops: list[tuple[int, int, int, int]]) -> tuple[float, str]:
    m, oids = _machine(pages)
    objs = [m.vmobj.objects[o] for o in oids]
    got: list[int] = []
    select = m.select_cpu
    gc.collect()
    t0 = time.perf_counter()
    for code, cpu, a, b in ops:
        select(cpu)
        if code == ALLOC:
            got.append(vm_page_alloc(m, objs[a], b, VM_ALLOC_NORMAL))
        elif code == LOOKUP:
            vm_page_lookup(m, objs[a], b)
        else:
            i = got[a]
            if code == FREE:
                vm_page_free_toq(m, i)
            elif code == ACT:
                vm_page_activate(m, i)
            elif code == DEACT:
                vm_page_deactivate(m, i)
            elif code == WIRE:
                vm_page_wire(m, i)
                vm_page_unwire(m, i, False)
            elif code == HOLD:
                vm_page_hold(m, i)
                vm_page_unhold(m, i)
            elif code == BUSY:
                vm_page_wakeup(m, i)
                vm_page_busy_try(m, i, True)
            else:
                vm_page_dontneed(m, i)
    elapsed = time.perf_counter() - t0
    return elapsed, state_digest(m)


def _via_call(pages: int, ops: list[tuple[int, int, int, int]]) -> tuple[float, str]:
    m, oids = _machine(pages)
    first = m.first_page
    got: list[int] = []
    call = m.call
    names = {
        FREE: "vm_page_free",
        ACT: "vm_page_activate",
        DEACT: "vm_page_deactivate",
        DONTNEED: "vm_page_dontneed",
    }
    pairs = {
        WIRE: ("vm_page_wire", "vm_page_unwire"),
        HOLD: ("vm_page_hold", "vm_page_unhold"),
        BUSY: ("vm_page_wakeup", "vm_page_busy_try"),
    }
    gc.collect()
    t0 = time.perf_counter()
    for code, cpu, a, b in ops:
        if code == ALLOC:
            r = call(
                "vm_page_alloc",
                {"object": oids[a], "pindex": b, "page_req": VM_ALLOC_NORMAL},
                cpu=cpu,
                record=False,
            )
            got.append(r.result - first)
        elif code == LOOKUP:
            call("vm_page_lookup", {"object": oids[a], "pindex": b}, cpu=cpu, record=False)
        elif code in pairs:
            args = {"m": first + got[a]}
            call(pairs[code][0], args, cpu=cpu, record=False)
            call(pairs[code][1], args, cpu=cpu, record=False)
        else:
            call(names[code], {"m": first + got[a]}, cpu=cpu, record=False)
    elapsed = time.perf_counter() - t0
    return elapsed, state_digest(m)


def _calls_in(ops: list[tuple[int, int, int, int]]) -> int:
    return sum(2 if op[0] in (WIRE, HOLD, BUSY) else 1 for op in ops)


def measure_mixed(pages: int, calls: int, runs: int) -> dict[str, Any]:
    ops = make_stream(calls)
    n = _calls_in(ops)
    direct, via = [], []
    digests = set()
    for _ in range(runs):
        t, d = _direct(pages, ops)
        direct.append(n / t)
        digests.add(d)
        t, d = _via_call(pages, ops)
        via.append(n / t)
        digests.add(d)
    if len(digests) != 1:
        raise RuntimeError("the two paths (or two runs) ended in different states")
    core1 = []
    stream = engine.make_stream(calls)
    got, digest = engine.resolve_stream(pages, stream)
    for _ in range(runs):
        t, mm = engine._direct_run(pages, stream, got)
        core1.append(len(stream) / t)
        del mm
    return {
        "mixed2_calls_per_s_direct": statistics.median(direct),
        "mixed2_calls_per_s": statistics.median(via),
        "core1_calls_per_s_direct": statistics.median(core1),
        "mixed2_calls": n,
    }


def measure_recovery(pages: int) -> dict[str, Any]:
    m, oids = _machine(pages, pagedaemon=True)
    vs = m.vmstats
    target_free = pages // 100
    obj = m.vmobj.objects[oids[0]]
    pindex = 0
    t0 = time.perf_counter()
    while True:
        vmstats_rollup(m)
        if vs.v_free_count + vs.v_cache_count <= target_free:
            break
        i = vm_page_alloc(m, obj, pindex, VM_ALLOC_NORMAL)
        if i < 0:
            tick(m, 1)
            continue
        pindex += 1
        vm_page_activate(m, i)
        vm_page_wakeup(m, i)
        run_runnable(m)
    fill_s = time.perf_counter() - t0
    vmstats_rollup(m)
    before = {
        "free": vs.v_free_count,
        "cache": vs.v_cache_count,
        "inactive": vs.v_inactive_count,
        "active": vs.v_active_count,
    }
    ticks0 = m.sched.ticks
    passes0 = m.pd.passes
    pagedaemon_wakeup(m)
    run_runnable(m)
    t0 = time.perf_counter()
    while True:
        tick(m, 10)
        vmstats_rollup(m)
        if vs.v_free_count + vs.v_cache_count >= vs.v_paging_target2 and m.pd.vm_pages_needed == 0:
            break
        if m.sched.ticks - ticks0 > 1_000_000:
            raise RuntimeError("the pageout daemon did not recover the machine")
    wall = time.perf_counter() - t0
    check_invariants(m)
    after = {
        "free": vs.v_free_count,
        "cache": vs.v_cache_count,
        "inactive": vs.v_inactive_count,
        "active": vs.v_active_count,
    }
    return {
        "pages": pages,
        "wall_s": wall,
        "ticks": m.sched.ticks - ticks0,
        "passes": m.pd.passes - passes0,
        "fill_s": fill_s,
        "target2": vs.v_paging_target2,
        "before": before,
        "after": after,
    }


def run(quick: bool = False) -> dict[str, Any]:
    pages, calls, runs, rec = (
        ((1 << 18), 20_000, 1, 1 << 18) if quick else ((1 << 20), 200_000, 3, 1 << 22)
    )
    out = measure_mixed(pages, calls, runs)
    out["pageout_recovery"] = measure_recovery(rec)
    out["targets"] = {"core1_slowdown_max": 0.10}
    return out


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    result = run(quick)
    if "--json" in argv:
        print(json.dumps(result))
        return 0
    r = result["pageout_recovery"]
    print(f"mixed stream II, direct       {result['mixed2_calls_per_s_direct']:>12,.0f} calls/s")
    print(f"mixed stream II, Machine.call {result['mixed2_calls_per_s']:>12,.0f} calls/s")
    print(f"core-engine-I stream, direct  {result['core1_calls_per_s_direct']:>12,.0f} calls/s")
    print(
        f"pageout recovery of {r['pages']} pages from 1 % free: {r['wall_s']:.2f} s wall, "
        f"{r['ticks']} ticks, {r['passes']} daemon passes; before {r['before']}, after {r['after']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

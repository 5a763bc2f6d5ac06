"""The core-engine benchmark: memory per simulated page, boot time, single-call throughput
of a mixed call stream and the latency of a batched allocate-and-free.

    python -m bench engine           # a table: each figure next to the issue's target
    python -m bench engine --json    # one JSON object
    python -m bench engine --quick   # small sizes, one run (what the smoke test uses)
    python -m bench engine --cpu-time  # time the loops in CPU time (a shared machine)

The mixed stream and the batch are also measured on the compiled core (``make
core-compiled``; ``PAGELAB_CORE=compiled``) in a child interpreter, and reported side by
side under ``compiled`` (with the speed-up); without a usable build that entry says why.
The boot and memory figures are the source build's.

How each figure is taken:

* ``bytes_per_page`` / ``rss_peak_bytes`` / ``boot_s``: for each size a *fresh* Python
  process imports the core, reads its RSS, boots a machine of that many pages, reads its RSS
  again; ``(after - before) / pages``.  The peak is the child's ``ru_maxrss``.  Sizes run
  one after the other (16 M pages need about 1 GB).  Each size boots in ``boot_runs``
  separate processes (page-fault cost on a VM varies a lot from run to run): boot time
  and bytes/page are medians, the peak is the largest seen.  The page fields are vecs,
  resident from boot (56 bytes a page), except ``pindex``, a numpy array whose zero pages
  are calloc'ed and cost no RSS until used; ``bytes_per_page_touched`` is the same
  difference after writing every OS page of every field.
* ``mixed_calls_per_s*``: a seeded stream of ~25 % ``vm_page_alloc`` (VM_ALLOC_NORMAL, a
  random one of 64 objects, a fresh pindex, a random CPU), 30 % ``vm_page_deactivate``,
  25 % ``vm_page_free`` and 20 % ``vm_page_activate`` on pages the stream itself allocated
  and still owns (still hard-busied from the allocation).  The stream refers to its own
  allocations by sequence number; because a machine is deterministic, one untimed pass
  resolves those to page numbers, so every timed run replays fully concrete calls.  Each
  run boots a fresh machine; the figure is the median of the runs.  Every run must end in
  the same ``state_digest`` as the resolving pass (checked, untimed).
* ``batch_10k_ms``: 10 000 ``vm_page_alloc`` (one object, pindex 0..9999, CPU
  ``pindex >> 8 & 3`` so the starting colours cover all 1024 queues evenly) and then the
  10 000 ``vm_page_free_toq``, as direct method calls.  ``fresh``: right after boot (a new
  machine per run).  ``scarce``: after allocating and keeping pages colour by colour until
  20 + 10 000/1024 free pages per colour are left, so the batch drains the machine to about
  20 per colour; the batch gives back what it took, so all runs share one prepared machine.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.config import MachineConfig
from app.core.constants import PQ_FREE, PQ_L2_SIZE, VM_ALLOC_NORMAL
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.objects import ObjType
from app.core.vm_meter import hardclock_rollup
from app.core.vm_page.alloc import vm_page_alloc
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.object import vm_object_allocate
from app.core.vm_page.queues import vm_page_activate, vm_page_deactivate

ROOT = Path(__file__).resolve().parent.parent

#: The issue's targets, echoed next to the figures.
TARGETS: dict[str, float] = {
    "bytes_per_page_4M": 64,
    "boot_s_16M": 2.0,
    "rss_16M_bytes": 1.1e9,
    "mixed_calls_per_s": 500000,
    "batch_10k_ms": 5,
    # issue 9, compiled core: >= 3x the source on the mixed stream, the batch <= 25 ms
    "compiled_speedup": 3,
    # issue 9: Machine.call >= 0.8x the direct calls, recorded >= 0.5x (medians, same run)
    "ratio_call": 0.8,
    "ratio_recorded": 0.5,
    "compiled_batch_10k_ms": 25,
}

CPUS = 4
SEED = 1

#: The clock of the timed loops (the mixed stream and the batch): wall time, or with
#: ``--cpu-time`` this process's CPU time (``time.process_time``), which leaves out the
#: time other processes took the core away: on a shared machine the figures then stay
#: comparable from run to run.  Boot is always wall time.
CLOCK: Callable[[], float] = time.perf_counter
OBJECTS = 64
BATCH = 10_000
SCARCE_PER_COLOR = 20

# stream op codes
ALLOC, DEACTIVATE, FREE, ACTIVATE = 0, 1, 2, 3
_CALL_NAMES = {
    ALLOC: "vm_page_alloc",
    DEACTIVATE: "vm_page_deactivate",
    FREE: "vm_page_free",
    ACTIVATE: "vm_page_activate",
}


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one benchmark run."""

    sizes: tuple[int, ...]
    mixed_pages: int
    mixed_calls: int
    mixed_runs: int
    batch_pages: int
    batch_runs: int
    boot_runs: int


FULL = Plan((1 << 20, 1 << 22, 1 << 24), 1 << 20, 200_000, 5, 1 << 20, 5, 3)
QUICK = Plan((1 << 16, 1 << 18), 1 << 18, 20_000, 1, 1 << 18, 1, 1)


def machine_config(pages: int) -> MachineConfig:
    """``pages`` pages of RAM from 4 KiB up, 4 CPUs, seed 1."""
    return MachineConfig(
        phys_avail=((4096, pages * 4096 + 4096),), cpus=CPUS, seed=SEED, max_pages=pages + 16
    )


# ---------------------------------------------------------------- boot (in a child)
def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def child_boot(pages: int) -> None:
    """Run in a fresh interpreter: boot one machine and print what it cost as JSON."""
    import resource

    cfg = machine_config(pages)
    gc.collect()
    before = _rss_bytes()
    t0 = time.perf_counter()
    m = Machine.boot(cfg)
    boot_s = time.perf_counter() - t0
    gc.collect()
    after = _rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    # pindex's zero-filled numpy array comes from calloc: untouched it costs no RSS yet.  Write
    # one byte per OS page of every field to see the cost once the whole array is in use.
    for arr in m.pg.arrays.values():
        arr[:: max(1, 4096 // arr.strides[0])] += 0
    touched = _rss_bytes()
    print(
        json.dumps(
            {
                "pages": pages,
                "rss_before": before,
                "rss_after": after,
                "rss_peak": peak,
                "rss_touched": touched,
                "boot_s": boot_s,
                "page_array_bytes": m.pg.nbytes(),
                "v_free_count": m.vmstats.v_free_count,
            }
        )
    )


def measure_boot(pages: int) -> dict[str, Any]:
    """Boot ``pages`` pages in a fresh subprocess and return its report."""
    code = f"from bench.engine import child_boot; child_boot({int(pages)})"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"boot of {pages} pages failed:\n{out.stderr}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


# ---------------------------------------------------------------- mixed stream
#: (code, cpu, a, b): for an allocation a = object slot, b = pindex; else a = allocation number
Op = tuple[int, int, int, int]


def make_stream(calls: int, seed: int = SEED) -> list[Op]:
    """The mixed stream, generated up front.  Allocations are numbered in stream order;
    the other calls name the allocation whose page they act on (one still owned)."""
    rng = random.Random(seed)
    next_pindex = [0] * OBJECTS
    owned: list[int] = []  # allocation numbers whose pages the stream still holds
    nalloc = 0
    ops: list[Op] = []
    for _ in range(calls):
        cpu = rng.randrange(CPUS)
        r = rng.random()
        if r < 0.25 or not owned:
            obj = rng.randrange(OBJECTS)
            pindex = next_pindex[obj]
            next_pindex[obj] += rng.randint(1, 64)  # random, never reused
            ops.append((ALLOC, cpu, obj, pindex))
            owned.append(nalloc)
            nalloc += 1
            continue
        k = rng.randrange(len(owned))
        n = owned[k]
        if r < 0.55:
            ops.append((DEACTIVATE, cpu, n, 0))
        elif r < 0.80:
            ops.append((FREE, cpu, n, 0))
            owned[k] = owned[-1]
            owned.pop()
        else:
            ops.append((ACTIVATE, cpu, n, 0))
    return ops


def _fresh_mixed_machine(pages: int) -> tuple[Machine, list[int]]:
    m = Machine.boot(machine_config(pages))
    oids = [vm_object_allocate(m, ObjType.OBJT_DEFAULT, 0) for _ in range(OBJECTS)]
    return m, oids


def resolve_stream(pages: int, ops: list[Op]) -> tuple[list[int], str]:
    """Untimed pass: the page index each allocation gets, and the final state digest."""
    m, oids = _fresh_mixed_machine(pages)
    objs = [m.vmobj.objects[o] for o in oids]
    got: list[int] = []
    for code, cpu, a, b in ops:
        m.select_cpu(cpu)
        if code == ALLOC:
            i = vm_page_alloc(m, objs[a], b, VM_ALLOC_NORMAL)
            if i < 0:
                raise RuntimeError("the mixed stream ran out of memory; use a bigger machine")
            got.append(i)
        elif code == DEACTIVATE:
            vm_page_deactivate(m, got[a])
        elif code == FREE:
            vm_page_free_toq(m, got[a])
        else:
            vm_page_activate(m, got[a])
    check_invariants(m)
    return got, state_digest(m)


def _direct_run(pages: int, ops: list[Op], got: list[int]) -> tuple[float, Machine]:
    m, oids = _fresh_mixed_machine(pages)
    objs = [m.vmobj.objects[o] for o in oids]
    methods = {
        DEACTIVATE: vm_page_deactivate,
        FREE: vm_page_free_toq,
        ACTIVATE: vm_page_activate,
    }
    stream: list[tuple[Any, int, tuple[Any, ...]]] = []
    for code, cpu, a, b in ops:
        if code == ALLOC:
            stream.append((vm_page_alloc, cpu, (objs[a], b, VM_ALLOC_NORMAL)))
        else:
            stream.append((methods[code], cpu, (got[a],)))
    select = m.select_cpu
    gc.collect()
    t0 = CLOCK()
    for fn, cpu, args in stream:
        select(cpu)
        fn(m, *args)
    elapsed = CLOCK() - t0
    return elapsed, m


def _call_run(pages: int, ops: list[Op], got: list[int], record: bool) -> tuple[float, Machine]:
    m, oids = _fresh_mixed_machine(pages)
    first = m.first_page
    stream: list[tuple[str, dict[str, Any], int]] = []
    for code, cpu, a, b in ops:
        if code == ALLOC:
            args: dict[str, Any] = {"object": oids[a], "pindex": b, "page_req": VM_ALLOC_NORMAL}
        else:
            args = {"m": first + got[a]}
        stream.append((_CALL_NAMES[code], args, cpu))
    call = m.call
    gc.collect()
    t0 = CLOCK()
    for fn, args, cpu in stream:
        call(fn, args, cpu=cpu, record=record)
    elapsed = CLOCK() - t0
    return elapsed, m


def measure_mixed(plan: Plan) -> dict[str, Any]:
    """Median calls/s of the three paths (direct, ``call``, ``call`` recorded), and the
    median over rounds of each path's rate relative to the direct one.  The paths take
    turns within a round (direct, call, recorded, direct, ...), so a ratio compares runs
    made under the same load (the machine may be shared)."""
    ops = make_stream(plan.mixed_calls)
    got, digest = resolve_stream(plan.mixed_pages, ops)
    out: dict[str, Any] = {}
    pages = plan.mixed_pages
    modes: tuple[tuple[str, Callable[[], tuple[float, Machine]]], ...] = (
        ("mixed_calls_per_s_direct", lambda: _direct_run(pages, ops, got)),
        ("mixed_calls_per_s", lambda: _call_run(pages, ops, got, False)),
        ("mixed_calls_per_s_recorded", lambda: _call_run(pages, ops, got, True)),
    )
    rates: dict[str, list[float]] = {key: [] for key, _ in modes}
    for _ in range(plan.mixed_runs):
        for key, one_run in modes:
            elapsed, m = one_run()
            if state_digest(m) != digest:
                raise RuntimeError(f"{key}: the replay diverged from the resolving pass")
            rates[key].append(len(ops) / elapsed)
            del m
    for key, _ in modes:
        out[key] = statistics.median(rates[key])
    direct = rates["mixed_calls_per_s_direct"]
    out["ratio_to_direct"] = {
        "call": statistics.median(
            c / d for c, d in zip(rates["mixed_calls_per_s"], direct, strict=True)
        ),
        "recorded": statistics.median(
            r / d for r, d in zip(rates["mixed_calls_per_s_recorded"], direct, strict=True)
        ),
    }
    counts = [sum(1 for op in ops if op[0] == c) for c in (ALLOC, DEACTIVATE, FREE, ACTIVATE)]
    out["mix"] = dict(zip(_CALL_NAMES.values(), counts, strict=True))
    return out


# ---------------------------------------------------------------- batch
def _batch(m: Machine) -> float:
    """10 000 allocations then 10 000 frees; returns milliseconds."""
    obj = m.vmobj.objects[vm_object_allocate(m, ObjType.OBJT_DEFAULT, 0)]
    alloc = vm_page_alloc
    free = vm_page_free_toq
    select = m.select_cpu
    blocks = [(k, min(k + 256, BATCH), (k >> 8) & (CPUS - 1)) for k in range(0, BATCH, 256)]
    pages: list[int] = []
    append = pages.append
    gc.collect()
    t0 = CLOCK()
    for lo, hi, cpu in blocks:
        select(cpu)
        for pindex in range(lo, hi):
            append(alloc(m, obj, pindex, VM_ALLOC_NORMAL))
    for lo, hi, cpu in blocks:
        select(cpu)
        for k in range(lo, hi):
            free(m, pages[k])
    elapsed = CLOCK() - t0
    if min(pages) < 0:
        raise RuntimeError("an allocation of the batch failed")
    del m.vmobj.objects[obj.id]
    return elapsed * 1000.0


def make_scarce(m: Machine, per_color: float) -> None:
    """Allocate (and keep) pages colour by colour until ``per_colour`` free pages are
    left on average per colour (spread exactly: some colours keep one more)."""
    target_total = round(per_color * PQ_L2_SIZE)
    base, extra = divmod(target_total, PQ_L2_SIZE)
    alloc = vm_page_alloc
    lcnt = m.pq.lcnt
    scale = PQ_L2_SIZE // CPUS
    for color in range(PQ_L2_SIZE):
        keep = base + (1 if color < extra else 0)
        q = PQ_FREE + color
        # with no object, vm_get_pg_color gives cpu * 256 + pindex % 256
        m.select_cpu(color // scale)
        pindex = color % scale
        while lcnt[q] > keep:
            if alloc(m, None, pindex, VM_ALLOC_NORMAL) < 0:
                raise RuntimeError("could not make the machine scarce")
    hardclock_rollup(m)


def measure_batch(plan: Plan) -> dict[str, Any]:
    fresh = []
    for _ in range(plan.batch_runs):
        m = Machine.boot(machine_config(plan.batch_pages))
        fresh.append(_batch(m))
        del m
    m = Machine.boot(machine_config(plan.batch_pages))
    make_scarce(m, SCARCE_PER_COLOR + BATCH / PQ_L2_SIZE)
    free_before = m.vmstats.v_free_count
    scarce = [_batch(m) for _ in range(plan.batch_runs)]
    check_invariants(m)
    return {
        "batch_10k_ms": {"fresh": statistics.median(fresh), "scarce": statistics.median(scarce)},
        "scarce_free_before": free_before,
    }


# ---------------------------------------------------------------- the compiled core
def child_speed(quick: bool, cpu_time: bool = False) -> None:
    """Run in a child with ``PAGELAB_CORE=compiled``: the mixed stream and the batch, as
    JSON (after checking that the core really is the compiled one)."""
    from app.core.compiled import is_compiled

    if not is_compiled():
        raise RuntimeError("the child did not load the compiled core")
    global CLOCK
    if cpu_time:
        CLOCK = time.process_time
    plan = QUICK if quick else FULL
    mixed = measure_mixed(plan)
    batch = measure_batch(plan)
    print(json.dumps({**mixed, **batch}))


def measure_compiled(quick: bool, cpu_time: bool = False) -> dict[str, Any]:
    """The mixed stream and the batch on the compiled core, or why there is none."""
    from app.core.compiled import build_dir, stale_reason

    reason = stale_reason(build_dir())
    if reason is not None:
        return {"unavailable": reason}
    code = f"from bench.engine import child_speed; child_speed({bool(quick)}, {bool(cpu_time)})"
    env = dict(os.environ, PAGELAB_CORE="compiled")
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"the compiled core's run failed:\n{out.stderr}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "mixed_calls_per_s": figures["mixed_calls_per_s"],
        "mixed_calls_per_s_direct": figures["mixed_calls_per_s_direct"],
        "mixed_calls_per_s_recorded": figures["mixed_calls_per_s_recorded"],
        "batch_10k_ms": figures["batch_10k_ms"],
        "ratio_to_direct": figures["ratio_to_direct"],
    }


# ---------------------------------------------------------------- driver
def run(quick: bool = False, cpu_time: bool = False) -> dict[str, Any]:
    global CLOCK
    CLOCK = time.process_time if cpu_time else time.perf_counter
    plan = QUICK if quick else FULL
    bytes_per_page: dict[str, float] = {}
    rss_peak: dict[str, int] = {}
    rss_after: dict[str, int] = {}
    boot_s: dict[str, float] = {}
    array_bytes: dict[str, float] = {}
    touched: dict[str, float] = {}
    boot_all: dict[str, list[float]] = {}
    for pages in plan.sizes:
        reps = [measure_boot(pages) for _ in range(plan.boot_runs)]
        key = str(pages)
        bytes_per_page[key] = statistics.median(
            (r["rss_after"] - r["rss_before"]) / pages for r in reps
        )
        rss_peak[key] = max(r["rss_peak"] for r in reps)
        rss_after[key] = int(statistics.median(r["rss_after"] for r in reps))
        boot_s[key] = statistics.median(r["boot_s"] for r in reps)
        boot_all[key] = [r["boot_s"] for r in reps]
        array_bytes[key] = reps[0]["page_array_bytes"] / pages
        touched[key] = statistics.median((r["rss_touched"] - r["rss_before"]) / pages for r in reps)
    mixed = measure_mixed(plan)
    batch = measure_batch(plan)
    compiled = measure_compiled(quick, cpu_time)
    if "unavailable" not in compiled:
        compiled["speedup"] = {
            key: compiled[key] / mixed[key]
            for key in (
                "mixed_calls_per_s",
                "mixed_calls_per_s_direct",
                "mixed_calls_per_s_recorded",
            )
        } | {
            f"batch_10k_{kind}": batch["batch_10k_ms"][kind] / ms
            for kind, ms in compiled["batch_10k_ms"].items()
        }
    return {
        "bytes_per_page": bytes_per_page,
        "rss_peak_bytes": rss_peak,
        "bytes_per_page_touched": touched,
        "rss_after_boot_bytes": rss_after,
        "page_array_bytes_per_page": array_bytes,
        "boot_s": boot_s,
        "mixed_calls_per_s": mixed["mixed_calls_per_s"],
        "mixed_calls_per_s_direct": mixed["mixed_calls_per_s_direct"],
        "mixed_calls_per_s_recorded": mixed["mixed_calls_per_s_recorded"],
        "batch_10k_ms": batch["batch_10k_ms"],
        "ratio_to_direct": mixed["ratio_to_direct"],
        "compiled": compiled,
        "targets": dict(TARGETS),
        "params": {
            "quick": quick,
            "clock": "cpu" if cpu_time else "wall",
            "cpus": CPUS,
            "seed": SEED,
            "sizes": list(plan.sizes),
            "boot_runs": plan.boot_runs,
            "boot_s_each": boot_all,
            "mixed_pages": plan.mixed_pages,
            "mixed_calls": plan.mixed_calls,
            "mixed_runs": plan.mixed_runs,
            "mixed_mix": mixed["mix"],
            "batch_pages": plan.batch_pages,
            "batch_runs": plan.batch_runs,
            "scarce_free_before_batch": batch["scarce_free_before"],
            "python": sys.version.split()[0],
        },
    }


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _pages_label(key: str) -> str:
    n = int(key)
    return f"{n >> 20}M" if n >= 1 << 20 else f"{n >> 10}K"


def render(result: dict[str, Any]) -> str:
    """A readable table: each figure with its target (where the issue sets one)."""
    t = result["targets"]
    rows: list[tuple[str, str, str]] = []
    for key, bpp in result["bytes_per_page"].items():
        label = _pages_label(key)
        target = f"<= {t['bytes_per_page_4M']:g}" if key == str(1 << 22) else ""
        rows.append((f"RSS bytes/page, {label} pages", f"{bpp:.1f}", target))
        rows.append(
            (
                f"  ... every field touched, {label}",
                f"{result['bytes_per_page_touched'][key]:.1f}",
                "",
            )
        )
    for key, peak in result["rss_peak_bytes"].items():
        target = f"<= {_fmt_bytes(t['rss_16M_bytes'])}" if key == str(1 << 24) else ""
        rows.append((f"peak RSS, {_pages_label(key)} pages", _fmt_bytes(peak), target))
    for key, secs in result["boot_s"].items():
        target = f"<= {t['boot_s_16M']:g} s" if key == str(1 << 24) else ""
        rows.append((f"boot, {_pages_label(key)} pages", f"{secs:.3f} s", target))
    target_rate = f">= {t['mixed_calls_per_s']:,.0f}"
    for key, label in (
        ("mixed_calls_per_s", "mixed calls/s, Machine.call"),
        ("mixed_calls_per_s_direct", "mixed calls/s, direct methods"),
        ("mixed_calls_per_s_recorded", "mixed calls/s, Machine.call recorded"),
    ):
        rows.append((label, f"{result[key]:,.0f}", target_rate))
    for key, label in (("call", "Machine.call / direct"), ("recorded", "recorded / direct")):
        rows.append((label, f"{result['ratio_to_direct'][key]:.2f}", f">= {t['ratio_' + key]:g}"))
    for kind, ms in result["batch_10k_ms"].items():
        rows.append(
            (f"10k alloc+free batch, {kind}", f"{ms:.1f} ms", f"<= {t['batch_10k_ms']:g} ms")
        )
    c = result["compiled"]
    if "unavailable" in c:
        rows.append(("compiled core", "none", c["unavailable"]))
    else:
        speed = f">= {t['compiled_speedup']:g}x"
        for key, label in (
            ("mixed_calls_per_s", "mixed calls/s, Machine.call, compiled"),
            ("mixed_calls_per_s_direct", "mixed calls/s, direct, compiled"),
            ("mixed_calls_per_s_recorded", "mixed calls/s, recorded, compiled"),
        ):
            rows.append((label, f"{c[key]:,.0f} ({c['speedup'][key]:.2f}x)", speed))
        for key, label in (
            ("call", "Machine.call / direct, compiled"),
            ("recorded", "recorded / direct, compiled"),
        ):
            rows.append((label, f"{c['ratio_to_direct'][key]:.2f}", f">= {t['ratio_' + key]:g}"))
        for kind, ms in c["batch_10k_ms"].items():
            rows.append(
                (
                    f"10k alloc+free batch, {kind}, compiled",
                    f"{ms:.1f} ms ({c['speedup'][f'batch_10k_{kind}']:.2f}x)",
                    f"<= {t['compiled_batch_10k_ms']:g} ms",
                )
            )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'engine':<{w0}}  {'figure':>{w1}}  target", "-" * (w0 + w1 + 12)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    p = result["params"]
    lines.append(
        f"(mixed: {p['mixed_calls']:,} calls on {_pages_label(str(p['mixed_pages']))} pages, "
        f"median of {p['mixed_runs']}; batch on {_pages_label(str(p['batch_pages']))} pages, "
        f"median of {p['batch_runs']}{'; QUICK sizes' if p['quick'] else ''}"
        f"{'; CPU time' if p.get('clock') == 'cpu' else ''})"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    quick = "--quick" in argv
    cpu_time = "--cpu-time" in argv
    unknown = [a for a in argv if a not in ("--json", "--quick", "--cpu-time")]
    if unknown:
        print(
            f"bench engine: unknown option(s) {' '.join(unknown)}; use --json, --quick, --cpu-time",
            file=sys.stderr,
        )
        return 2
    result = run(quick=quick, cpu_time=cpu_time)
    print(json.dumps(result) if as_json else render(result))
    return 0

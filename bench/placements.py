"""``python -m bench placements [--json] [--quick] [--runs N] [--no-ray] [--store]``: the
instance host's placements side by side — in-process, one worker process, two worker
processes and Ray (two local actors).

Each placement gets a lab of its own with ``INSTANCES`` instances of ``tiny-16m``, each
with ``PAGES`` pages allocated.  The journal is kept in memory (the figures are the
hosts', not the disk's); with ``--store`` it goes to a SQLite file, as in a deployment.
Two figures per placement:

* ``calls_per_s``: aggregate kernel calls a second of all instances at once, each driven
  by its own coroutine sending ``batches`` compact batches of ``BATCH`` calls one after
  the other (the lab's ``batch_columns``, as ``POST …/calls`` in the compact format does)
  that take its pages through a turn of their life (``TURN``: busy, wire, unwire, wake,
  map, touch, unmap, deactivate; about 8 µs a call on this machine);
* ``call_us``: the latency of one small call (``vm_page_deactivate``, no record) made
  alone, one after the other on one instance: median, p99 and the mean, in microseconds
  — what the placement adds to every request.

How the figures are kept honest:

* the driver runs in the lab's process, so whatever it does is taken from the lab's
  core: its batches are built before the clock starts, and the CPU time of its own code
  between batches is measured and shown (``cpu_us_per_call.driver``; it is part of
  ``lab``).  What the bench leaves out is the HTTP layer (reading the body, writing the
  answer: ``python -m bench http``);
* ``cpu_us_per_call`` is the CPU time per call of the lab's process (all its threads:
  the journal writer's too) and of the host processes, read from the kernel;
* on a shared machine the wall-clock rates mean little when other processes take cores:
  ``others_cores`` says how many cores the machine's other processes (and the
  hypervisor, as steal time) took during the run (``/proc/stat``, the bench's own
  processes taken out), ``bench_cores`` how many the bench kept busy, and
  ``load_average`` the load before it;
* ``--runs N`` runs every placement N times, round by round: each placement's figures
  are those of its median run (the CPU times the medians of all runs), with every run's
  rate listed, and ``speedup_2_vs_1_by_round`` gives the ratio within each round;
* ``journal_complete`` checks that every call is in its instance's journal in seq order
  after the run, and ``same_digests`` that every instance ended with the same state
  digest on every placement (it must: the same calls make the same machines).

``speedup_2_vs_1`` is two workers' calls/s over one worker's (the issue's target on a
2-core machine: 1.7); ``speedup_2_vs_1_from_cpu`` the speedup the CPU times per call give
on two cores nobody else uses.  Ray is skipped (said so in the figures) when it is not
installed or with ``--no-ray``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.lab.hosts.base import Ctx
from app.lab.hosts.ray_host import RayHost
from app.lab.hosts.workers import WorkerHost
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


#: One turn of a page's life, as compact forms (function, argument names) and the values
#: after the page: hard-busy it, wire and unwire it, wake it, map it writeable, touch and
#: unmap it, deactivate it.  Each turn leaves the page as it found it (unbusied, on a
#: queue), so any number of turns over any pages are all valid calls.
TURN: tuple[tuple[str, tuple[str, ...], tuple[Any, ...]], ...] = (
    ("vm_page_busy_try", ("m", "also_m_busy"), (False,)),
    ("vm_page_wire", ("m",), ()),
    ("vm_page_unwire", ("m", "activate"), (True,)),
    ("vm_page_wakeup", ("m",), ()),
    ("pmap_enter", ("m", "pmap", "writeable"), (1, True)),
    ("pmap_touch", ("m", "pmap", "write"), (1, True)),
    ("pmap_remove", ("m", "pmap"), (1,)),
    ("vm_page_deactivate", ("m",), ()),
)


def _forms() -> list[tuple[str, tuple[str, ...], Ctx]]:
    ctx = Ctx()
    return [(fn, names, ctx) for fn, names, _ in TURN]


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
        pfns = [it["result"] for it in items]
        await lab.batch(inst.id, [("vm_page_wakeup", {"m": p}, Ctx()) for p in pfns])
        out.append((inst.id, pfns))
    return out


def _inputs(
    pfns: list[int],
) -> tuple[list[tuple[str, tuple[str, ...], Ctx]], list[int], list[list[Any]]]:
    """One compact batch of ``BATCH`` calls over ``pfns`` (forms, ``fn``, ``args``), built
    before the clock starts."""
    fn = [k % len(TURN) for k in range(BATCH)]
    args = [[pfns[(k // len(TURN)) % len(pfns)], *TURN[k % len(TURN)][2]] for k in range(BATCH)]
    return _forms(), fn, args


async def _drive(
    lab: Lab,
    iid: int,
    batch: tuple[list[tuple[str, tuple[str, ...], Ctx]], list[int], list[list[Any]]],
    batches: int,
    driver_cpu: list[float],
) -> int:
    """``batches`` batches on one instance, one after the other; the calls made.  The CPU
    time of the driver's own code between two batches is added to ``driver_cpu[0]``."""
    forms, fn, args = batch
    calls = 0
    for _ in range(batches):
        cols = await lab.batch_columns(iid, forms, fn, args)
        mine = time.process_time()
        assert not cols.errors, cols.errors[:1]
        calls += len(cols.results)
        driver_cpu[0] += time.process_time() - mine
    return calls


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (Linux ``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def _host_pids(lab: Lab) -> list[int]:
    """The processes of the lab's hosts (none in-process: the lab's own is counted)."""
    host = lab.host
    if isinstance(host, WorkerHost):
        return [p for p in host.pids() if p is not None]
    if isinstance(host, RayHost):
        return [await host.pid(k) for k in range(host.shards)]
    return []


async def _measure(
    placement: str, workers: int, batches: int, singles: int, store: str = ""
) -> dict[str, Any]:
    settings = Settings(
        placement=placement,  # type: ignore[arg-type]
        workers=workers,
        database_url=store,
        boot_default=False,
        page_budget=0,
    )
    lab = Lab(settings)
    try:
        held = await _setup(lab)
        inputs = [_inputs(p) for _, p in held]
        driver_cpu = [0.0]
        # warm up every host (imports, first slices) before timing
        await asyncio.gather(
            *(_drive(lab, i, b, 1, driver_cpu) for (i, _), b in zip(held, inputs, strict=True))
        )
        pids = await _host_pids(lab)
        driver_cpu = [0.0]
        load = os.getloadavg()[0]
        hosts_cpu = sum(_cpu_s(p) for p in pids)
        lab_cpu = time.process_time()
        busy = _machine_busy_s()
        start = time.perf_counter()
        counts = await asyncio.gather(
            *(
                _drive(lab, i, b, batches, driver_cpu)
                for (i, _), b in zip(held, inputs, strict=True)
            )
        )
        wall = time.perf_counter() - start
        lab_cpu = time.process_time() - lab_cpu
        hosts_cpu = sum(_cpu_s(p) for p in pids) - hosts_cpu
        # the cores the machine's other processes took meanwhile (the bench's own
        # processes taken out): the wall-clock figures mean something only when it is small
        others = max(0.0, _machine_busy_s() - busy - lab_cpu - hosts_cpu) / wall
        calls = sum(counts)
        # every call is in its instance's journal (kept in memory here), in seq order
        journal_complete = all(
            [e.seq for e in lab.entries(lab.get(i))] == list(range(1, lab.get(i).seq + 1))
            for i, _ in held
        )
        iid, pfns = held[0]
        lat = []
        for k in range(singles):
            t0 = time.perf_counter()
            await lab.call(iid, "vm_page_deactivate", {"m": pfns[k % PAGES]}, Ctx(), record=False)
            lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        digests = [await lab.digest(lab.get(i)) for i, _ in held]
        return {
            "calls_per_s": round(calls / wall, 1),
            "calls": calls,
            "wall_s": round(wall, 3),
            # CPU per call: the lab's process (all its threads) and the host processes
            "cpu_us_per_call": {
                "lab": round(lab_cpu / calls * 1e6, 2),
                "hosts": round(hosts_cpu / calls * 1e6, 2),
                "driver": round(driver_cpu[0] / calls * 1e6, 3),
            },
            "load_average": round(load, 2),
            "others_cores": round(others, 2),
            # the cores the bench's own processes kept busy (lab and hosts)
            "bench_cores": round((lab_cpu + hosts_cpu) / wall, 2),
            "journal_complete": journal_complete,
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


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One placement's figures over several runs: the run with the median calls/s, with
    every run's calls/s and load average listed and the CPU times per call the medians
    of all runs."""
    ordered = sorted(runs, key=lambda r: r["calls_per_s"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["runs_calls_per_s"] = [r["calls_per_s"] for r in runs]
    out["runs_load_average"] = [r["load_average"] for r in runs]
    out["runs_others_cores"] = [r["others_cores"] for r in runs]
    out["cpu_us_per_call"] = {
        key: round(statistics.median(r["cpu_us_per_call"][key] for r in runs), 3)
        for key in runs[0]["cpu_us_per_call"]
    }
    out["journal_complete"] = all(r["journal_complete"] for r in runs)
    return out


def run(quick: bool, runs: int = 1, ray: bool = True, store: bool = False) -> dict[str, Any]:
    """Every placement ``runs`` times, round by round (one run of each placement per
    round, so a round's runs see about the same load from the machine's other work);
    with ``store`` the journal goes to a SQLite file (a new one per run)."""
    batches = 4 if quick else 20
    singles = 300 if quick else 3000
    out: dict[str, Any] = {
        "instances": INSTANCES,
        "batch": BATCH,
        "batches": batches,
        "quick": quick,
        "runs": runs,
        "store": "sqlite" if store else None,
    }
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CONFIGS}
    for name, placement, _ in CONFIGS:
        if placement == "ray" and not ray:
            out[name] = {"skipped": "left out (--no-ray)"}
        elif placement == "ray" and importlib.util.find_spec("ray") is None:
            out[name] = {"skipped": "Ray is not installed (pip install 'pagelab[ray]')"}
    for _ in range(runs):
        for name, placement, workers in CONFIGS:
            if name not in out:
                with tempfile.TemporaryDirectory() as tmp:
                    url = f"sqlite:///{tmp}/bench.db" if store else ""
                    measured[name].append(
                        asyncio.run(_measure(placement, workers, batches, singles, url))
                    )
    if measured["ray_2"]:
        import ray as ray_module

        ray_module.shutdown()
    for name, _, _ in CONFIGS:
        if measured[name]:
            out[name] = _median_of(measured[name])
    one, two = out["workers_1"], out["workers_2"]
    out["speedup_2_vs_1"] = round(two["calls_per_s"] / one["calls_per_s"], 2)
    # the ratio within each round (both measured minutes apart at most), its median
    out["speedup_2_vs_1_by_round"] = [
        round(b["calls_per_s"] / a["calls_per_s"], 2)
        for a, b in zip(measured["workers_1"], measured["workers_2"], strict=True)
    ]
    # what two free cores would give, from CPU per call (other work on the machine moves
    # wall-clock rates far more than CPU times): one worker is held by the busier of
    # the lab and the worker; two share both cores between the lab and two workers
    cpu1, cpu2 = one["cpu_us_per_call"], two["cpu_us_per_call"]
    rate1 = 1e6 / max(cpu1["lab"], cpu1["hosts"])
    rate2 = min(2e6 / (cpu2["lab"] + cpu2["hosts"]), 1e6 / cpu2["lab"], 2e6 / cpu2["hosts"])
    out["speedup_2_vs_1_from_cpu"] = round(rate2 / rate1, 2)
    out["load_average"] = round(os.getloadavg()[0], 2)
    ran = [run for name, _, _ in CONFIGS for run in measured[name]]
    out["same_digests"] = all(r["digests"] == ran[0]["digests"] for r in ran)
    for name, _, _ in CONFIGS:
        for r in [*measured[name], out[name]]:
            r.pop("digests", None)
    return out


def main(argv: list[str]) -> int:
    # the lab logs each shutdown; keep stdout for the figures (warnings go to stderr)
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 1
    result = run("--quick" in argv, runs, ray="--no-ray" not in argv, store="--store" in argv)
    if "--json" in argv:
        print(json.dumps(result))
        return 0
    print(
        f"{result['instances']} instances, each {result['batches']} compact batches of "
        f"{result['batch']} calls (after one to warm up), one coroutine per instance"
    )
    print(f"{'placement':<12}{'calls/s':>12}{'call p50 µs':>14}{'call p99 µs':>14}")
    for name, _, _ in CONFIGS:
        r = result[name]
        if "skipped" in r:
            print(f"{name:<12}  skipped: {r['skipped']}")
            continue
        lat = r["call_us"]
        print(f"{name:<12}{r['calls_per_s']:>12.0f}{lat['p50']:>14.1f}{lat['p99']:>14.1f}")
    print(
        f"{'placement':<12}{'lab CPU µs/call':>18}{'of it the driver':>18}"
        f"{'hosts CPU µs/call':>20}{'load avg':>10}{'bench cores':>13}{'others':>8}"
    )
    for name, _, _ in CONFIGS:
        r = result[name]
        if "skipped" not in r:
            cpu = r["cpu_us_per_call"]
            print(
                f"{name:<12}{cpu['lab']:>18.2f}{cpu['driver']:>18.3f}{cpu['hosts']:>20.2f}"
                f"{r['load_average']:>10.2f}{r['bench_cores']:>13.2f}{r['others_cores']:>8.2f}"
            )
    if result["runs"] > 1:
        for name, _, _ in CONFIGS:
            if "runs_calls_per_s" in result[name]:
                shown = ", ".join(
                    f"{c:.0f} ({o:.2f})"
                    for c, o in zip(
                        result[name]["runs_calls_per_s"],
                        result[name]["runs_others_cores"],
                        strict=True,
                    )
                )
                print(f"{name:<12}calls/s of each run (cores others took): {shown}")
    print(
        f"2 workers / 1 worker: {result['speedup_2_vs_1']}x measured, by round "
        f"{result['speedup_2_vs_1_by_round']} (target 1.7x on 2 cores)"
    )
    print(
        f"2 workers / 1 worker from CPU per call on 2 free cores: "
        f"{result['speedup_2_vs_1_from_cpu']}x (load average {result['load_average']})"
    )
    complete = all(result[name].get("journal_complete", True) for name, _, _ in CONFIGS)
    print(
        f"same digests on every placement: {result['same_digests']}; journals complete: {complete}"
    )
    return 0 if result["same_digests"] and complete else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m bench durability [--json] [--quick]``: what the journal costs.

In process (the lab's service layer, no HTTP), so that the figure is the journal's:

* calls/s of concurrent single calls (16 clients on 8 instances, and 64 on 32, each call
  acknowledged only once its entry is durable) without a database, with the SQLite journal
  (``synchronous`` NORMAL) and with ``synchronous`` FULL (``CONFIGS``);
* calls/s of 1 000-call batches, the three ways;
* the CPU time per call (``time.process_time``: every thread of the process, the journal
  writer's too), which other processes on the machine disturb less than calls/s;
* ``*_cost_ratio``: calls/s without a database / with the journal (``_full``: FULL), and
  ``*_cpu_ratio``: CPU per call with the journal / without;
* restart time: instances with N calls each, then a new lab restoring them all: with the
  snapshots the lab saved (every ``PAGELAB_SNAPSHOT_EVERY`` calls: load the newest, replay
  the journal after it), and again once the snapshots are deleted (boot and replay of
  every journal).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import structlog
from sqlalchemy import delete

from app.lab.service import Ctx, Lab
from app.lab.settings import Settings
from app.lab.store import Store, snapshots

Sync = Literal["NORMAL", "FULL"]


def _lab(url: str, synchronous: Sync = "NORMAL", **overrides: Any) -> Lab:
    return Lab(
        Settings(
            database_url=url,
            default_preset="tiny-16m",
            boot_default=False,
            max_instances=1000,
            sqlite_synchronous=synchronous,
            **overrides,
        )
    )


#: (label, a SQLite journal?, PAGELAB_SQLITE_SYNCHRONOUS)
CONFIGS: tuple[tuple[str, bool, Sync], ...] = (
    ("memory", False, "NORMAL"),
    ("sqlite", True, "NORMAL"),
    ("sqlite_full", True, "FULL"),
)


class _Clock:
    """Wall and CPU time (every thread of this process: the journal writer's too) of a
    measurement; ``rate`` and ``cpu_us`` per call once ``calls`` is known."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def figures(self, calls: int) -> tuple[int, float]:
        return round(calls / self.wall), round(1e6 * self.cpu / max(1, calls), 1)


async def _singles(lab: Lab, instances: int, clients: int, seconds: float) -> int:
    ids = [(await lab.create_preset(f"s{clients}-{k}", "tiny-16m")).id for k in range(instances)]
    done = 0
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal done
        iid = ids[k % len(ids)]
        held: list[int] = []
        while time.perf_counter() < stop:
            if len(held) < 32:
                r, _, _ = await lab.call(iid, "vm_page_alloc", {}, Ctx(cpu=0), record=False)
                if r.result is not None:
                    held.append(r.result)
            else:
                await lab.call(iid, "vm_page_free", {"m": held.pop(0)}, Ctx(), record=False)
            done += 1

    await asyncio.gather(*(client(k) for k in range(clients)))
    return done


async def _batches(lab: Lab, rounds: int) -> int:
    iid = (await lab.create_preset("b", "tiny-16m")).id
    calls = [("vm_page_alloc", {}, Ctx()), ("vm_test_nominal", {}, Ctx())] * 500
    for k in range(rounds):
        await lab.batch(iid, calls)
        if k % 3 == 2:
            await lab.reset(iid)  # before memory runs out
    return rounds * len(calls)


async def _restart(url: str, instances: int, calls: int, every: int) -> dict[str, Any]:
    lab = _lab(url, snapshot_every=every)
    batch = [("vm_page_alloc", {}, Ctx()), ("vm_test_nominal", {}, Ctx())] * (calls // 2)
    for k in range(instances):
        iid = (await lab.create_preset(f"r{k}", "teaching-1g")).id
        await lab.batch(iid, batch)
    await lab.settle()
    digests = {i: lab.instances[i].machine.state_digest() for i in lab.instances}
    saved = lab.snapshots_saved
    await lab.shutdown()

    async def restart() -> tuple[float, int, bool]:
        again = _lab(url, snapshot_every=every)
        started = time.perf_counter()
        await again.restore_all()
        seconds = time.perf_counter() - started
        same = all(again.instances[i].machine.state_digest() == d for i, d in digests.items())
        replayed = again.replayed
        await again.shutdown()
        return seconds, replayed, same

    with_s, with_replayed, same_with = await restart()
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(delete(snapshots))
    store.close()
    without_s, without_replayed, same_without = await restart()
    return {
        "instances": instances,
        "calls_each": calls,
        "snapshot_every": every,
        "snapshots_saved": saved,
        "seconds": round(with_s, 3),
        "replayed_calls": with_replayed,
        "seconds_without_snapshots": round(without_s, 3),
        "replayed_calls_without_snapshots": without_replayed,
        "speedup": round(without_s / max(with_s, 1e-9), 1),
        "same_digests": same_with and same_without,
    }


def _ratio(out: dict[str, Any], figure: str, db: str, cost: bool = False) -> float:
    """How many times the journal's figure is worse than without a database (a rate:
    memory / db; a cost: db / memory)."""
    mem, dur = float(out[f"{figure}_memory"]), float(out[f"{figure}_{db}"])
    return round(dur / max(1e-9, mem) if cost else mem / max(1.0, dur), 2)


async def run(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pagelab-bench-"))
    seconds = 1.0 if quick else 4.0
    try:
        out: dict[str, Any] = {}
        for label, database, synchronous in CONFIGS:
            url = f"sqlite:///{tmp / f'{label}.db'}" if database else ""
            lab = _lab(url, synchronous)
            for clients in (16, 64):
                suffix = "" if clients == 16 else "_64_clients"
                # 16 clients on 8 instances (64 on 32): each call acknowledged when durable
                with _Clock() as clock:
                    done = await _singles(lab, clients // 2, clients, seconds)
                rate, cpu = clock.figures(done)
                out[f"single_calls_per_s_{label}{suffix}"] = rate
                out[f"single_cpu_us_per_call_{label}{suffix}"] = cpu
            with _Clock() as clock:
                done = await _batches(lab, 3 if quick else 12)
            rate, cpu = clock.figures(done)
            out[f"batch_calls_per_s_{label}"] = rate
            out[f"batch_cpu_us_per_call_{label}"] = cpu
            if lab.journal is not None:
                out[f"group_commits_{label}"] = lab.journal.commits
                out[f"entries_per_commit_{label}"] = round(
                    lab.journal.entries_written / max(1, lab.journal.commits), 1
                )
                out[f"commit_ms_mean_{label}"] = round(
                    1000 * lab.journal.commit_seconds / max(1, lab.journal.commits), 3
                )
            await lab.shutdown()
        for db in ("sqlite", "sqlite_full"):
            tail = "" if db == "sqlite" else "_full"
            for what in ("single", "batch"):
                out[f"{what}_cost_ratio{tail}"] = _ratio(out, f"{what}_calls_per_s", db)
                out[f"{what}_cpu_ratio{tail}"] = _ratio(out, f"{what}_cpu_us_per_call", db, True)
            out[f"single_cost_ratio{tail}_64_clients"] = round(
                out["single_calls_per_s_memory_64_clients"]
                / max(1, out[f"single_calls_per_s_{db}_64_clients"]),
                2,
            )
        # the server's default snapshot interval; --quick: a smaller one, so that it shows
        n, calls, every = (5, 2000, 1000) if quick else (100, 10_000, Settings().snapshot_every)
        out["restart"] = await _restart(f"sqlite:///{tmp / 'restart.db'}", n, calls, every)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    # the lab logs every restored instance (and, without its snapshots, a warning each):
    # only the figures go to stdout
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    figures = asyncio.run(run("--quick" in argv))
    if "--json" in argv:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

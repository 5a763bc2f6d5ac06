"""``python -m bench durability [--json] [--quick]``: what the journal costs.

In process (the lab's service layer, no HTTP), so that the figure is the journal's:

* calls/s of concurrent single calls (16 clients on 8 instances, each call acknowledged
  only once its entry is durable) with the SQLite journal and without a database;
* calls/s of 1 000-call batches, both ways;
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
from typing import Any

import structlog
from sqlalchemy import delete

from app.lab.service import Ctx, Lab
from app.lab.settings import Settings
from app.lab.store import Store, snapshots


def _lab(url: str, **overrides: Any) -> Lab:
    return Lab(
        Settings(
            database_url=url,
            default_preset="tiny-16m",
            boot_default=False,
            max_instances=1000,
            **overrides,
        )
    )


async def _singles(lab: Lab, instances: int, clients: int, seconds: float) -> float:
    ids = [(await lab.create_preset(f"s{k}", "tiny-16m")).id for k in range(instances)]
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

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return done / (time.perf_counter() - started)


async def _batches(lab: Lab, rounds: int) -> float:
    iid = (await lab.create_preset("b", "tiny-16m")).id
    calls = [("vm_page_alloc", {}, Ctx()), ("vm_test_nominal", {}, Ctx())] * 500
    started = time.perf_counter()
    for k in range(rounds):
        await lab.batch(iid, calls)
        if k % 3 == 2:
            await lab.reset(iid)  # before memory runs out
    return rounds * len(calls) / (time.perf_counter() - started)


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


async def run(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pagelab-bench-"))
    seconds = 1.0 if quick else 4.0
    try:
        out: dict[str, Any] = {}
        for label, url in (("memory", ""), ("sqlite", f"sqlite:///{tmp / 'singles.db'}")):
            lab = _lab(url)
            out[f"single_calls_per_s_{label}"] = round(await _singles(lab, 8, 16, seconds))
            out[f"batch_calls_per_s_{label}"] = round(await _batches(lab, 3 if quick else 12))
            if lab.journal is not None:
                out["group_commits"] = lab.journal.commits
                out["entries_per_commit"] = round(
                    lab.journal.entries_written / max(1, lab.journal.commits), 1
                )
                out["commit_ms_mean"] = round(
                    1000 * lab.journal.commit_seconds / max(1, lab.journal.commits), 3
                )
            await lab.shutdown()
        out["single_cost_ratio"] = round(
            out["single_calls_per_s_memory"] / max(1, out["single_calls_per_s_sqlite"]), 2
        )
        out["batch_cost_ratio"] = round(
            out["batch_calls_per_s_memory"] / max(1, out["batch_calls_per_s_sqlite"]), 2
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

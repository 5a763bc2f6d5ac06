"""The golden corpus: seeded streams of calls over every registered function, with each
call's outcome and the machine's digest every ``CHECK_EVERY`` calls, frozen in
``tests/golden/*.jsonl`` before the core's second edition (issue 9) moves anything.

A stream is what the stateful test's seeded driver (``tests/core/test_stateful.py``,
``_drive``) calls, so it reaches every function of the registry, refusals and sleeping
calls included.  ``python -m tests.golden.corpus`` writes the files again; do that only
when a change of behaviour is intended, and say so in the commit.

File format (JSON Lines): a header ``{"format": "pagelab-golden", "version": 1, "seed",
"config"}``, then one line per call ``{"fn", "args", "cpu", "thread", "nice",
"systhread", "lowmemkill", "outcome"}`` where the outcome is ``{"result": …}``,
``{"blocked": {...}}`` or ``{"error": type, "function": …}``; every ``CHECK_EVERY``-th
line, and the last, also carries ``"digest"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal, WouldSleep
from app.core.machine import Machine
from app.lab.store import config_from_json, config_to_json

HERE = Path(__file__).parent
SEEDS = (11, 23, 37, 41, 59, 67, 83)
STEPS = 250
CHECK_EVERY = 25
REFUSALS = (KernelPanic, SimulatorRefusal, InvalidArgument, WouldSleep)


def outcome(m: Machine, call: dict[str, Any]) -> dict[str, Any]:
    """Run one corpus call on ``m``: its outcome as the corpus writes it."""
    try:
        r = m.call(
            call["fn"],
            call["args"],
            cpu=call["cpu"],
            thread=call["thread"],
            nice=call["nice"],
            systhread=call["systhread"],
            lowmemkill=call["lowmemkill"],
            record=False,
        )
    except REFUSALS as e:
        return {"error": type(e).__name__, "function": getattr(e, "function", "")}
    if r.blocked is not None:
        return {"blocked": r.blocked}
    # through JSON, so that a fresh run compares equal to what the file holds
    out: dict[str, Any] = json.loads(json.dumps({"result": r.result}, default=repr))
    return out


def write(seed: int) -> Path:
    from tests.core.test_stateful import _drive

    lab = _drive(seed, STEPS)
    config = lab.m.config
    m = Machine.boot(config)
    lines = [
        json.dumps(
            {
                "format": "pagelab-golden",
                "version": 1,
                "seed": seed,
                "config": config_to_json(config),
            }
        )
    ]
    for k, (fn, args, cpu, tid, nice, systhread, lowmemkill) in enumerate(lab.log, start=1):
        call: dict[str, Any] = {
            "fn": fn,
            "args": args,
            "cpu": cpu,
            "thread": tid,
            "nice": nice,
            "systhread": systhread,
            "lowmemkill": lowmemkill,
        }
        call["outcome"] = outcome(m, call)
        if k % CHECK_EVERY == 0 or k == len(lab.log):
            call["digest"] = m.state_digest()
        lines.append(json.dumps(call, default=repr))
    path = HERE / f"stream-{seed}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "pagelab-golden" and header["version"] == 1
    return header, [json.loads(line) for line in lines[1:]]


def machine_for(header: dict[str, Any]) -> Machine:
    return Machine.boot(config_from_json(header["config"]))


if __name__ == "__main__":
    for s in SEEDS:
        p = write(s)
        print(p, sum(1 for _ in p.open()) - 1, "calls", file=sys.stderr)

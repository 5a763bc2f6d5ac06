"""The golden corpus: seeded streams of calls over every registered function, with each
call's outcome and the machine's digest every ``CHECK_EVERY`` calls, frozen in
``tests/golden/*.jsonl`` before the core's second edition (issue 9) moves anything.

A stream is what the stateful test's seeded driver (``tests/core/test_stateful.py``,
``_drive``) calls, so it reaches every function of the registry, refusals and sleeping
calls included.  ``python -m tests.golden.corpus`` writes the files again; do that only
when a change of behaviour is intended, and say so in the commit.  ``python -m
tests.golden.corpus --redigest`` keeps every stream's calls and outcomes (it stops if one
outcome differs) and writes only the digests again: for a change that adds state to the
digest without changing what any call does.

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
from app.core.invariants import state_digest
from app.core.machine import Machine
from app.lab.store import config_from_json, config_to_json

HERE = Path(__file__).parent
SEEDS = (11, 23, 37, 41, 59, 67, 83)
STEPS = 250
CHECK_EVERY = 25
REFUSALS = (KernelPanic, SimulatorRefusal, InvalidArgument, WouldSleep)


def outcome(m: Machine, call: dict[str, Any], quick: bool = False) -> dict[str, Any]:
    """Run one corpus call on ``m``: its outcome as the corpus writes it.  ``quick``: a
    call made as its CPU's own thread names no thread (``thread`` defaults to ``cpu``),
    so that ``Machine.call`` may take its quick path."""
    thread = call["thread"]
    if quick and thread == call["cpu"]:
        thread = None
    try:
        r = m.call(
            call["fn"],
            call["args"],
            cpu=call["cpu"],
            thread=thread,
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
            call["digest"] = state_digest(m)
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


def redigest(path: Path) -> int:
    """Replay ``path``; every outcome must be the one written; rewrite its digests.
    Returns how many digests changed."""
    header, calls = read(path)
    m = machine_for(header)
    changed = 0
    lines = [json.dumps(header)]
    for k, call in enumerate(calls, start=1):
        got = outcome(m, call)
        if got != call["outcome"]:
            raise SystemExit(f"{path.name} call {k} {call['fn']}: {got} != {call['outcome']}")
        if "digest" in call:
            digest = state_digest(m)
            changed += digest != call["digest"]
            call["digest"] = digest
        lines.append(json.dumps(call, default=repr))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


if __name__ == "__main__":
    if sys.argv[1:] == ["--redigest"]:
        for s in SEEDS:
            p = HERE / f"stream-{s}.jsonl"
            print(p, redigest(p), "digests changed", file=sys.stderr)
        sys.exit(0)
    for s in SEEDS:
        p = write(s)
        print(p, sum(1 for _ in p.open()) - 1, "calls", file=sys.stderr)

"""The golden corpus (tests/golden): every stream replayed on a fresh machine gives each
call's frozen outcome and the frozen digests.  It pins today's behaviour of every registered
function before the core is rebuilt (issue 9); regenerate it (``python -m
tests.golden.corpus``) only for an intended change of behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.invariants import check_invariants, state_digest
from app.core.registry import REGISTRY
from tests.golden.corpus import HERE, SEEDS, machine_for, outcome, read

FILES = sorted(HERE.glob("stream-*.jsonl"))


def test_the_corpus_is_there_and_reaches_every_registered_function() -> None:
    assert [f.name for f in FILES] == sorted(f"stream-{s}.jsonl" for s in SEEDS)
    called: set[str] = set()
    completed: set[str] = set()
    for path in FILES:
        _, calls = read(path)
        for call in calls:
            called.add(call["fn"])
            if "error" not in call["outcome"]:
                completed.add(call["fn"])
    assert called == set(REGISTRY)
    # all but vm_page_set_invalid (its KASSERTs refuse what the driver draws) complete
    assert set(REGISTRY) - completed <= {"vm_page_set_invalid"}


@pytest.mark.parametrize("quick", [False, True], ids=["full-path", "quick-path"])
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_a_golden_stream_replays_exactly(path: Path, quick: bool) -> None:
    """Replayed as written (every call names its thread: ``Machine.call``'s full path),
    and with the CPU's own thread left unnamed, so that the calls that can take the
    quick path do."""
    header, calls = read(path)
    m = machine_for(header)
    for k, call in enumerate(calls, start=1):
        got = outcome(m, call, quick)
        assert got == call["outcome"], (
            f"call {k} {call['fn']}({call['args']}): {got} != {call['outcome']}"
        )
        if "digest" in call:
            assert state_digest(m) == call["digest"], f"digest after call {k} ({call['fn']})"
    check_invariants(m)

"""``Machine.call`` has a quick path (every argument named once, the CPU's own thread, a
function that cannot sleep) and a full path.  Both must be the same function of their
inputs: the same results, records, errors and state, call for call."""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.errors import InvalidArgument
from app.core.machine import Machine


def _boot() -> Machine:
    return Machine.boot(MachineConfig.from_size("16MiB", cpus=4, seed=3))


def _stream(m: Machine, n: int) -> list[tuple[str, dict[str, Any], int]]:
    """A seeded stream of allocations, queue moves and frees on pages it owns, with a
    few calls that take defaults or an older argument spelling."""
    rng = random.Random(9)
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 0}).result
    out: list[tuple[str, dict[str, Any], int]] = [
        ("vm_object_allocate", {"type": "OBJT_DEFAULT"}, 0),  # size, pg_color, addr defaulted
        ("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"}, 1),  # object, pindex defaulted
    ]
    for k in range(n):
        out.append(("vm_page_alloc", {"object": obj, "pindex": k, "page_req": 1}, rng.randrange(4)))
    return out


def _run(m: Machine, calls: list[tuple[str, dict[str, Any], int]], full: bool) -> list[Any]:
    seen: list[Any] = []
    pages: list[int] = []
    for fn, args, cpu in calls:
        extra: dict[str, Any] = {"thread": cpu} if full else {}
        r = m.call(fn, args, cpu=cpu, **extra)
        seen.append((r.result, r.record, r.blocked))
        if fn == "vm_page_alloc" and r.result is not None:
            pages.append(r.result)
    for k, pfn in enumerate(pages):
        cpu = k % 4
        extra = {"thread": cpu} if full else {}
        for fn in ("vm_page_activate", "vm_page_deactivate"):
            r = m.call(fn, {"m": pfn}, cpu=cpu, **extra)
            seen.append((fn, r.result, r.record))
        r = m.call("vm_page_free", {"m": pfn}, cpu=cpu, record=k % 2 == 0, **extra)
        seen.append(("free", r.result, r.record))
    return seen


def test_quick_and_full_paths_agree_call_for_call() -> None:
    quick, full = _boot(), _boot()
    calls = _stream(quick, 300)
    _stream(full, 0)  # the same object allocation on the other machine
    a = _run(quick, calls, full=False)
    b = _run(full, calls, full=True)
    assert a == b
    assert len(a) == 302 + 3 * 301
    # the stream did real work: pages moved, counters changed
    assert any(rec and rec["moves"] for _, _, rec in a[302:])
    assert quick.state_digest() == full.state_digest()
    quick.check_invariants()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"mm": 1}, "has no argument mm"),  # one argument, misspelt: same count as the plan
        ({}, "needs the argument 'm'"),
        ({"m": "x"}, "must be a page frame number"),
        ({"m": 10**9}, "outside this machine's pages"),
        ({"m": True}, "must be a page frame number"),
    ],
)
def test_quick_path_refuses_as_the_full_path_does(args: dict[str, Any], message: str) -> None:
    m = _boot()
    before = m.state_digest()
    errors = []
    for extra in ({}, {"thread": 0}):
        with pytest.raises(InvalidArgument) as err:
            m.call("vm_page_activate", args, **extra)
        errors.append(str(err.value))
    assert errors[0] == errors[1]
    assert message in errors[0]
    assert m.state_digest() == before


def test_older_argument_spelling_is_read_on_either_path() -> None:
    """``colour`` (the older spelling of ``color``) is not a name the quick plan knows:
    the call falls back to the full conversion, which reads it as ``color``."""
    results = []
    for args in (
        {"pass_": 0, "colour": 5, "quota": 4},
        {"pass_": 0, "color": 5, "quota": 4},
    ):
        m = _boot()
        r = m.call("vm_pageout_scan_inactive", args)
        results.append((r.result, r.record, m.state_digest()))
    assert results[0] == results[1]
    m = _boot()
    with pytest.raises(InvalidArgument, match="give 'color' once"):
        m.call("vm_pageout_scan_inactive", {"pass_": 0, "colour": 5, "color": 5})


def test_an_idle_registered_thread_runs_on_the_cpu_it_is_called_on() -> None:
    """A thread that slept and was resumed stays registered; a later quick call made as
    that CPU's own thread runs *that* thread (``curthread``) on the CPU asked for, with
    nice 0, as the full path would."""
    m = _boot()
    pfn = m.call("vm_page_alloc", {"object": None, "pindex": 0, "page_req": 1}).result
    r = m.call("vm_page_sleep_busy", {"m": pfn}, cpu=0, thread=2, nice=5)
    assert r.blocked is not None and r.blocked["thread"] == 2
    m.call("vm_page_wakeup", {"m": pfn}, cpu=0)  # the holder lets go: thread 2 resumes
    th = m.sched.threads.get(2)
    assert th is not None and th.state == "idle" and th.cpu == 0 and th.nice == 5
    m.call("vm_page_alloc", {"object": None, "pindex": 0, "page_req": 1}, cpu=2)
    assert m.curthread is th
    assert (th.cpu, th.nice, m.curthread_nice, m.cpu.cpuid) == (2, 0, 0, 2)

"""Tests for the busy word (spec §9; app.core.busy, plus ``vm_page_busy_try`` /
``vm_page_wakeup`` from pageops): every function of the §9 table through ``Machine.call``,
with the exact busy words in hex.

Busy word (spec §1.3): PBUSY_LOCKED = 0x80000000, PBUSY_WANTED = 0x40000000,
PBUSY_SWAPINPROG = 0x20000000, soft-busy count = low 29 bits (mask 0x1FFFFFFF).
Sleeping always sets WANTED and PG_REFERENCED (0x80) first; a sleep on a page is a sleep on
the channel ``page:<pfn>`` with no timeout.

Machine: ``boot8()`` = phys_avail [0x200000, 0xA00000), one CPU, boot finished (see
tests/core/test_pageops.py: first_page 512; colour 600 holds [1625, 600], so
``vm_page_alloc(pindex=600)`` returns pfn 1625 hard-busied on PQ_NONE).  Tests set a
chosen busy word on that page directly and then drive the §9 functions by name; the
caller's thread is given explicitly (``thread=``) where sleeping matters.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_SWAPINPROG,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_NOSYNC,
    PG_REFERENCED,
    PG_SWAPPED,
    PG_UNQUEUED,
    PQ_FREE,
)
from app.core.errors import KernelPanic, SimulatorRefusal
from app.core.invariants import check_invariants, state_digest
from app.core.machine import CallResult, Machine

FIRST_PAGE = 512  # 0x200000 / 4096
PFN = 1625  # head of colour 600 (see the module docstring)
CHAN = f"page:{PFN}"


def boot8() -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def page_with(word: int) -> Machine:
    """A fresh boot8 with pfn 1625 allocated (hard-busied, on PQ_NONE, flags 0) and then
    given the busy word ``word``."""
    m = boot8()
    assert m.call("vm_page_alloc", {"pindex": 600}).result == PFN
    assert m.pg.flags[ix(PFN)] == 0
    m.pg.busy[ix(PFN)] = word
    return m


def word(m: Machine) -> int:
    return int(m.pg.busy[ix(PFN)])


def call(m: Machine, fn: str, thread: int = 0, **args: Any) -> CallResult:
    return m.call(fn, {"m": PFN, **args}, thread=thread)


def assert_blocked(r: CallResult, thread: int, wmesg: str) -> None:
    assert r.result is None
    assert r.blocked == {"thread": thread, "channel": CHAN, "wmesg": wmesg, "timo": 0}


def sleeping(m: Machine, tid: int) -> bool:
    th = m.sched.threads.get(tid)
    return th is not None and th.state == "sleeping"


def woken(r: CallResult) -> list[int]:
    """Threads a call's wakeups released (from its ``wakeup`` events)."""
    out: list[int] = []
    for e in r.record["events"]:
        if e["event"] == "wakeup":
            out += e.get("woke", [])
    return out


def wakeup_events(r: CallResult) -> list[dict[str, Any]]:
    return [e for e in r.record["events"] if e["event"] == "wakeup"]


def panics(
    m: Machine, fn: str, match: str, exc: type[Exception] = KernelPanic, **args: Any
) -> None:
    before = state_digest(m)
    with pytest.raises(exc, match=match):
        call(m, fn, **args)
    assert state_digest(m) == before
    check_invariants(m)


# =========================================================== vm_page_busy_wait


@pytest.mark.parametrize(
    ("start", "also", "after"),
    [
        (0x00000000, False, 0x80000000),  # idle: CAS in LOCKED
        (0x00000000, True, 0x80000000),
        (0x00000001, False, 0x80000001),  # soft busy only matters with also_m_busy
        (0x40000000, False, 0xC0000000),  # WANTED alone: not LOCKED -> acquire
        (0x20000000, False, 0xA0000000),  # SWAPINPROG alone, likewise
    ],
)
def test_busy_wait_acquires_at_once(start: int, also: bool, after: int) -> None:
    m = page_with(start)
    r = call(m, "vm_page_busy_wait", thread=2, also_m_busy=also)
    assert r.blocked is None and r.result is None
    assert word(m) == after  # start | 0x80000000
    assert m.pg.flags[ix(PFN)] == 0  # no sleep: PG_REFERENCED not set
    assert not m.sched.sleepq
    check_invariants(m)


@pytest.mark.parametrize(
    ("start", "also", "after"),
    [
        (0x80000000, False, 0xC0000000),  # LOCKED: sleeps, WANTED set
        (0x80000000, True, 0xC0000000),
        (0x80000003, False, 0xC0000003),  # soft count kept
        (0x00000001, True, 0x40000001),  # also_m_busy: a soft busy is enough to sleep
        (0x40000000, True, 0x40000000),  # also: WANTED alone is non-zero -> sleeps
        (0x20000000, True, 0x60000000),  # also: SWAPINPROG alone is non-zero -> sleeps
    ],
)
def test_busy_wait_sleeps(start: int, also: bool, after: int) -> None:
    m = page_with(start)
    r = call(m, "vm_page_busy_wait", thread=2, also_m_busy=also, msg="bwtest")
    assert_blocked(r, 2, "bwtest")
    assert word(m) == after  # start | 0x40000000
    assert m.pg.flags[ix(PFN)] == PG_REFERENCED  # 0x80: sleeping marks the page referenced
    assert [t.tid for t in m.sched.sleepq[CHAN]] == [2]
    assert {"event": "sleep", "tid": 2, "channel": CHAN, "wmesg": "bwtest", "timo": 0} in r.record[
        "events"
    ]
    check_invariants(m)


def test_busy_wait_default_wmesg() -> None:
    m = page_with(PBUSY_LOCKED)
    assert_blocked(call(m, "vm_page_busy_wait", thread=1), 1, "pgwait")


def test_busy_wait_acquires_after_the_holder_releases() -> None:
    m = page_with(PBUSY_LOCKED)
    assert_blocked(call(m, "vm_page_busy_wait", thread=2), 2, "pgwait")
    assert word(m) == 0xC0000000
    r = call(m, "vm_page_wakeup", thread=1)
    # vm_page_wakeup: 0xC0000000 -> 0 and wakeup(m); thread 2 resumes, sees 0, CASes LOCKED
    assert woken(r) == [2]
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_busy_wait", "result": None, "timed_out": False}
    ]
    assert word(m) == 0x80000000
    assert not m.sched.sleepq and m.sched.threads[2].state == "idle"
    check_invariants(m)


def test_busy_wait_with_two_waiters_one_wins_the_other_sleeps_again() -> None:
    m = page_with(PBUSY_LOCKED)
    call(m, "vm_page_busy_wait", thread=2)
    call(m, "vm_page_busy_wait", thread=3)
    r = call(m, "vm_page_wakeup", thread=1)
    # wakeup(m) releases both; 2 runs first (FIFO), takes LOCKED; 3 then finds LOCKED,
    # sets WANTED again and sleeps: 0x80000000 | 0x40000000
    assert woken(r) == [2, 3]
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_busy_wait", "result": None, "timed_out": False},
        {"tid": 3, "fn": "vm_page_busy_wait", "blocked": CHAN},
    ]
    assert word(m) == 0xC0000000
    assert sleeping(m, 3) and not sleeping(m, 2)
    check_invariants(m)


def test_busy_wait_also_retries_until_the_whole_word_is_zero() -> None:
    m = page_with(0x00000001)  # one soft busy
    assert_blocked(call(m, "vm_page_busy_wait", thread=2, also_m_busy=True), 2, "pgwait")
    assert word(m) == 0x40000001
    # flash clears WANTED and wakes: the word is 1, still non-zero -> sleep again
    r = call(m, "vm_page_flash", thread=1)
    assert r.record["resumed"] == [{"tid": 2, "fn": "vm_page_busy_wait", "blocked": CHAN}]
    assert word(m) == 0x40000001
    # the last soft busy goes: 0x40000001 - 1 = 0x40000000 == WANTED exactly -> clear, wake
    r = call(m, "vm_page_sbusy_drop", thread=1)
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_busy_wait", "result": None, "timed_out": False}
    ]
    assert word(m) == 0x80000000
    check_invariants(m)


# =========================================================== vm_page_busy_try


@pytest.mark.parametrize(
    ("start", "also", "fails", "after"),
    [
        (0x00000000, True, False, 0x80000000),
        (0x80000000, False, True, 0x80000000),  # LOCKED always fails
        (0x00000002, False, False, 0x80000002),
        (0x00000002, True, True, 0x00000002),  # soft count with also: fails
        (0x40000000, True, False, 0xC0000000),  # WANTED alone: only the soft count counts
        (0x20000000, True, False, 0xA0000000),  # SWAPINPROG alone, likewise
    ],
)
def test_busy_try_table(start: int, also: bool, fails: bool, after: int) -> None:
    m = page_with(start)
    before = state_digest(m)
    r = call(m, "vm_page_busy_try", thread=2, also_m_busy=also)
    assert r.result is fails  # TRUE on failure
    assert r.blocked is None
    assert word(m) == after
    if fails:
        assert state_digest(m) == before


# =========================================================== vm_page_sleep_busy


@pytest.mark.parametrize(
    ("start", "also"),
    [
        (0x00000000, False),
        (0x00000000, True),
        (0x00000005, False),  # soft busy ignored without also
        (0x40000000, True),  # WANTED alone: not LOCKED and soft count 0 -> return
        (0x20000000, True),  # SWAPINPROG alone, likewise (unlike busy_wait)
    ],
)
def test_sleep_busy_returns_at_once(start: int, also: bool) -> None:
    m = page_with(start)
    before = state_digest(m)
    r = call(m, "vm_page_sleep_busy", thread=2, also_m_busy=also)
    assert r.blocked is None and r.result is None
    assert word(m) == start  # acquires nothing
    assert state_digest(m) == before


@pytest.mark.parametrize(
    ("start", "also", "after"),
    [
        (0x80000000, False, 0xC0000000),
        (0x80000002, True, 0xC0000002),
        (0x00000002, True, 0x40000002),
    ],
)
def test_sleep_busy_sleeps_once_and_acquires_nothing(start: int, also: bool, after: int) -> None:
    m = page_with(start)
    r = call(m, "vm_page_sleep_busy", thread=2, also_m_busy=also, msg="sbtest")
    assert_blocked(r, 2, "sbtest")
    assert word(m) == after
    assert m.pg.flags[ix(PFN)] == PG_REFERENCED
    # a flash wakes it while the page is still busy: it returns anyway (one sleep only)
    r = call(m, "vm_page_flash", thread=1)
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_sleep_busy", "result": None, "timed_out": False}
    ]
    assert word(m) == after & ~PBUSY_WANTED  # flash cleared WANTED; nothing acquired
    assert not m.sched.sleepq
    check_invariants(m)


def test_sleep_busy_after_the_release_leaves_the_page_unbusied() -> None:
    m = page_with(PBUSY_LOCKED)
    call(m, "vm_page_sleep_busy", thread=2)
    r = call(m, "vm_page_wakeup", thread=1)
    assert r.record["resumed"][0]["tid"] == 2
    assert word(m) == 0x00000000  # unlike busy_wait, the sleeper took nothing


# =========================================================== io_start / io_finish


def test_io_start_adds_a_soft_busy_to_a_hard_busied_page() -> None:
    m = page_with(PBUSY_LOCKED)
    call(m, "vm_page_io_start")
    assert word(m) == 0x80000001
    call(m, "vm_page_io_start")
    assert word(m) == 0x80000002


@pytest.mark.parametrize("start", [0x00000000, 0x00000001, 0x40000000])
def test_io_start_needs_the_hard_busy(start: int) -> None:
    panics(page_with(start), "vm_page_io_start", "vm_page_io_start")


def test_io_finish_drops_a_soft_busy() -> None:
    m = page_with(0x80000002)
    call(m, "vm_page_io_finish")
    assert word(m) == 0x80000001
    m.pg.busy[ix(PFN)] = 0x00000001  # no hard busy needed to finish
    call(m, "vm_page_io_finish")
    assert word(m) == 0x00000000


@pytest.mark.parametrize("start", [0x80000000, 0x00000000, 0x40000000, 0x20000000])
def test_io_finish_needs_a_soft_busy(start: int) -> None:
    panics(page_with(start), "vm_page_io_finish", "vm_page_io_finish")


def test_io_finish_wakes_nobody() -> None:
    m = page_with(0x00000001)
    call(m, "vm_page_busy_wait", thread=2, also_m_busy=True)
    assert word(m) == 0x40000001
    r = call(m, "vm_page_io_finish", thread=1)
    # soft count 1 -> 0, WANTED stays, and no wakeup (that code is compiled out)
    assert word(m) == 0x40000000
    assert wakeup_events(r) == [] and "resumed" not in r.record
    assert sleeping(m, 2)
    check_invariants(m)


# =========================================================== sbusy_try / hold / drop


@pytest.mark.parametrize(
    ("start", "ret", "after"),
    [
        (0x00000000, 0, 0x00000001),
        (0x00000001, 0, 0x00000002),
        (0x40000000, 0, 0x40000001),  # WANTED does not stop it
        (0x20000000, 0, 0x20000001),  # nor SWAPINPROG
        (0x80000000, 1, 0x80000000),  # only LOCKED fails
        (0xC0000003, 1, 0xC0000003),
    ],
)
def test_sbusy_try_table(start: int, ret: int, after: int) -> None:
    m = page_with(start)
    r = call(m, "vm_page_sbusy_try")
    assert r.result == ret  # 0 = success, 1 = failure
    assert word(m) == after


@pytest.mark.parametrize(
    ("start", "after"),
    [(0x00000000, 0x00000001), (0x80000000, 0x80000001), (0xC0000001, 0xC0000002)],
)
def test_sbusy_hold_is_unconditional(start: int, after: int) -> None:
    m = page_with(start)
    call(m, "vm_page_sbusy_hold")
    assert word(m) == after


@pytest.mark.parametrize(
    ("start", "after"),
    [
        (0x00000002, 0x00000001),
        (0x00000001, 0x00000000),  # WANTED not set: nobody to wake
        (0x40000002, 0x40000001),  # soft busies left
        (0xC0000001, 0xC0000000),  # hard busy left
        (0x60000001, 0x60000000),  # SWAPINPROG left: the word is not exactly WANTED
    ],
)
def test_sbusy_drop_without_wakeup(start: int, after: int) -> None:
    m = page_with(start)
    r = call(m, "vm_page_sbusy_drop")
    assert word(m) == after
    assert wakeup_events(r) == []


def test_sbusy_drop_of_the_last_soft_busy_with_wanted_wakes() -> None:
    m = page_with(0x00000001)
    call(m, "vm_page_sleep_busy", thread=2, also_m_busy=True)
    assert word(m) == 0x40000001
    r = call(m, "vm_page_sbusy_drop", thread=1)
    # 0x40000001 - 1 = 0x40000000 == PBUSY_WANTED exactly: clear it, wakeup(m)
    assert word(m) == 0x00000000
    assert wakeup_events(r) == [{"event": "wakeup", "channel": CHAN, "woke": [2]}]
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_sleep_busy", "result": None, "timed_out": False}
    ]
    check_invariants(m)


def test_sbusy_drop_without_a_soft_busy_is_refused() -> None:
    # 0x40000000 - 1 = 0x3FFFFFFF: the kernel's fetchadd has no KASSERT and would set
    # SWAPINPROG with a full soft count; the simulator refuses, and says it is its own guard
    panics(
        page_with(0x40000000),
        "vm_page_sbusy_drop",
        "refused by the simulator .not a kernel panic.: page 0x659 has no soft busy",
        SimulatorRefusal,
    )


# =========================================================== flash


def test_flash_clears_wanted_and_wakes() -> None:
    m = page_with(PBUSY_LOCKED)
    call(m, "vm_page_busy_wait", thread=2)
    r = call(m, "vm_page_flash", thread=1)
    # 0xC0000000 -> 0x80000000, wakeup; the waiter finds LOCKED and sleeps again (WANTED)
    assert wakeup_events(r) == [{"event": "wakeup", "channel": CHAN, "woke": [2]}]
    assert r.record["resumed"] == [{"tid": 2, "fn": "vm_page_busy_wait", "blocked": CHAN}]
    assert word(m) == 0xC0000000


@pytest.mark.parametrize("start", [0x80000000, 0x00000003, 0x20000000])
def test_flash_without_wanted_does_nothing(start: int) -> None:
    m = page_with(start)
    before = state_digest(m)
    r = call(m, "vm_page_flash")
    assert word(m) == start and wakeup_events(r) == []
    assert state_digest(m) == before


# =========================================================== vm_page_wakeup


@pytest.mark.parametrize(
    ("start", "after", "wakes"),
    [
        (0x80000000, 0x00000000, False),
        (0xC0000000, 0x00000000, True),
        (0x80000002, 0x00000002, False),  # soft count untouched
        (0xE0000003, 0x20000003, True),  # SWAPINPROG and soft count untouched
    ],
)
def test_vm_page_wakeup_table(start: int, after: int, wakes: bool) -> None:
    m = page_with(start)
    r = call(m, "vm_page_wakeup")
    assert word(m) == after
    assert wakeup_events(r) == ([{"event": "wakeup", "channel": CHAN}] if wakes else [])


@pytest.mark.parametrize("start", [0x00000000, 0x40000000, 0x00000001])
def test_vm_page_wakeup_needs_the_hard_busy(start: int) -> None:
    panics(page_with(start), "vm_page_wakeup", "PBUSY_LOCKED")


# =========================================================== flag_set / flag_clear


def test_flag_set_and_clear_by_name() -> None:
    m = page_with(0)  # no busy needed: no assertions
    call(m, "vm_page_flag_set", bits="PG_NOSYNC|PG_REFERENCED")
    assert m.pg.flags[ix(PFN)] == 0x480  # 0x400 | 0x80
    call(m, "vm_page_flag_set", bits=["PG_SWAPPED"])
    assert m.pg.flags[ix(PFN)] == PG_NOSYNC | PG_REFERENCED | PG_SWAPPED == 0x4480
    call(m, "vm_page_flag_clear", bits="PG_REFERENCED|PG_UNQUEUED")  # clearing unset bits: fine
    assert m.pg.flags[ix(PFN)] == 0x4400
    call(m, "vm_page_flag_clear", bits=PG_NOSYNC)
    assert m.pg.flags[ix(PFN)] == PG_SWAPPED
    assert word(m) == 0  # the busy word is not touched
    check_invariants(m)


def test_flag_set_fictitious_on_a_queued_page_is_refused() -> None:
    """A queued FICTITIOUS/UNQUEUED page breaks the queue code's KASSERTs; the simulator
    refuses the flag change up front (pfn 600 sits on PQ_FREE colour 600)."""
    m = boot8()
    assert m.pg.queue[ix(600)] == PQ_FREE + 600
    before = state_digest(m)
    for bits in ("PG_FICTITIOUS", "PG_UNQUEUED"):
        with pytest.raises(SimulatorRefusal):
            m.call("vm_page_flag_set", {"m": 600, "bits": bits})
    assert state_digest(m) == before


def test_flag_clear_cannot_take_a_reserve_page_out_of_the_dma_reserve() -> None:
    """phys_avail [0x100000, 0x900000): vm_low_phys_reserved = 8 MiB / 4 = 0x200000, so pfn
    256..511 are DMA-reserve pages (FICTITIOUS|UNQUEUED, wired once, free in the alist).
    Clearing either flag on such a page would leave a reserve page the alist can hand out
    that is not FICTITIOUS|UNQUEUED: refused, nothing changes."""
    m = Machine.boot(MachineConfig(phys_avail=((0x100000, 0x900000),)))
    assert m.contig.alist.is_free(256)
    assert m.pg.flags[256 - m.first_page] == PG_FICTITIOUS | PG_UNQUEUED
    before = state_digest(m)
    for bits in ("PG_FICTITIOUS", "PG_UNQUEUED", "PG_FICTITIOUS|PG_UNQUEUED"):
        with pytest.raises(SimulatorRefusal):
            m.call("vm_page_flag_clear", {"m": 256, "bits": bits})
    assert state_digest(m) == before
    m.call("vm_page_flag_clear", {"m": 256, "bits": "PG_REFERENCED"})  # other bits: fine
    m.call("vm_page_flag_set", {"m": 256, "bits": "PG_REFERENCED"})
    assert m.pg.flags[256 - m.first_page] == PG_FICTITIOUS | PG_UNQUEUED | PG_REFERENCED
    check_invariants(m)


# =========================================================== sleeping always marks


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        ("vm_page_busy_wait", {"also_m_busy": False}),
        ("vm_page_busy_wait", {"also_m_busy": True}),
        ("vm_page_sleep_busy", {"also_m_busy": True}),
    ],
)
def test_every_sleep_on_a_page_sets_wanted_and_referenced(fn: str, args: dict[str, Any]) -> None:
    m = page_with(0x80000001)
    m.pg.flags[ix(PFN)] = PG_NOSYNC
    r = call(m, fn, thread=4, **args)
    assert r.blocked is not None
    assert word(m) == 0xC0000001
    assert m.pg.flags[ix(PFN)] == PG_NOSYNC | PG_REFERENCED  # 0x400 | 0x80, nothing cleared
    assert PBUSY_SWAPINPROG == 0x20000000 and PBUSY_LOCKED | PBUSY_WANTED == 0xC0000000

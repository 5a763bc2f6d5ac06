"""Tests for the simulated execution context (app.core.sched and ``Machine.call``'s
handling of sleeping calls, spec §19) and for the sleeping kernel functions that use it:
``vm_wait`` (§13.1), ``vm_wait_pfault`` (§13.2), ``vm_wait_nominal`` (§13.3), the wakeup of
``vm_page_free_wakeup`` (§8.3), ``vm_page_grab`` (§7.3), ``vm_page_alloczwq`` /
``vm_page_freezwq`` (§7.2) and the busy family's sleeps (§9).

Machine: ``boot8()`` = phys_avail [0x200000, 0xA00000), one CPU, boot finished, hz = 100
(tests/core/test_pageops.py works out its layout: first_page 512, 1983 free pages, colour
600 = [1625, 600]).  Thresholds, by spec §4.2 with P = v_page_count = 1983:

* v_free_min = 64 + 1983 / 200 = 64 + 9 = 73
* v_free_reserved = 73 * 4 / 8 + 7 = 36 + 7 = 43;  v_free_severe = 73 * 4 / 8 = 36
* v_paging_wait = 2 * 73 = 146;  v_paging_target1 = 4 * 73 = 292
* nice offset (§4.3): d = (146 - 73 - 1) >> 1 = 36; k(n) = 0 if n == 0 else (n + 20) * 36 / 40
  - vm_wait at nice 0 uses n = 1: k = 21 * 36 / 40 = 756 / 40 = 18 -> it sleeps iff
    free + cache < 73 + 18 = 91 or free < 43
  - vm_wait_pfault at nice 0 uses n = 0: k = 0 -> sleeps iff free + cache < 73 or free < 43;
    it keeps sleeping while vm_paging_severe: free + cache < 36 or free < 43
* vm_page_free_wakeup (§8.3, hysteresis 16) wakes the v_free_count sleepers once
  free + cache >= 73 + 16 = 89 and free >= 43 (or free + cache >= 292 and free >= 43).

``drain(m, n)`` allocates VM_ALLOC_INTERRUPT pages on thread 0 until CPU 0's free count is
``n``; the pages stay hard-busied on PQ_NONE, so ``vm_page_free`` can give them back one by
one.  Allocating below v_paging_start pokes the pagedaemon (vm_pages_needed = 1); drain
resets it to 0 — as if the daemon had answered — so that vm_wait's own bookkeeping shows.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    CNT_CACHE,
    CNT_FREE,
    PBUSY_LOCKED,
    PBUSY_WANTED,
    PG_REFERENCED,
    PQ_CACHE,
    PQ_FREE,
    PQ_NONE,
)
from app.core.errors import (
    InvalidArgument,
    InvariantError,
    KernelPanic,
    SimulatorRefusal,
    WouldSleep,
)
from app.core.invariants import check_invariants, state_digest
from app.core.machine import CallResult, Machine
from app.core.vm_page.queues import _add_queue

FIRST_PAGE = 512
HZ = 100


def boot8(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),), **kw))


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def drain(m: Machine, n: int) -> list[int]:
    """Allocate on thread 0 / CPU 0 until that CPU's free count is ``n``."""
    pages: list[int] = []
    while m.cpus[0].vmstats.v_free_count > n:
        r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_INTERRUPT"}, thread=0, record=False)
        pages.append(r.result)
    assert m.cpus[0].vmstats.v_free_count == n
    m.pd.vm_pages_needed = 0
    return pages


def free(m: Machine, pages: list[int], n: int) -> list[CallResult]:
    return [m.call("vm_page_free", {"m": pages.pop()}, thread=0) for _ in range(n)]


def events(r: CallResult, name: str) -> list[dict[str, Any]]:
    return [e for e in r.record["events"] if e["event"] == name]


def state(m: Machine, tid: int) -> str:
    th = m.sched.threads.get(tid)
    return "none" if th is None else th.state


def thresholds_of_boot8(m: Machine) -> None:
    gd = m.cpus[0].vmstats
    assert m.vmstats.v_page_count == 1983
    assert (gd.v_free_min, gd.v_free_reserved, gd.v_free_severe) == (73, 43, 36)
    assert (gd.v_paging_wait, gd.v_paging_target1) == (146, 292)
    assert m.pd.vm_page_free_hysteresis == 16 and m.sched.hz == HZ


# =========================================================== contention through m.call


def test_contention_on_a_busied_page() -> None:
    m = boot8()
    pfn = m.call("vm_page_alloc", {"pindex": 600}, thread=1).result
    assert pfn == 1625 and m.pg.busy[ix(pfn)] == 0x80000000
    r = m.call("vm_page_busy_wait", {"m": pfn, "msg": "contend"}, thread=2)
    assert r.result is None
    assert r.blocked == {"thread": 2, "channel": "page:1625", "wmesg": "contend", "timo": 0}
    assert m.pg.busy[ix(pfn)] == 0xC0000000  # LOCKED | WANTED
    assert m.pg.flags[ix(pfn)] == PG_REFERENCED
    assert state(m, 2) == "sleeping"
    check_invariants(m)

    # a parked thread refuses every new call, sleeping or not; nothing changes
    before = state_digest(m)
    for fn, args in (("vm_page_alloc", {}), ("vm_wait", {}), ("vm_page_wakeup", {"m": pfn})):
        with pytest.raises(InvalidArgument, match="thread 2 is sleeping"):
            m.call(fn, args, thread=2)
    assert state_digest(m) == before
    # other threads are free to run
    assert m.call("vm_page_busy_try", {"m": pfn}, thread=3).result is True  # still LOCKED

    r = m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    assert r.blocked is None
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_busy_wait", "result": None, "timed_out": False}
    ]
    assert {"event": "wakeup", "channel": "page:1625", "woke": [2]} in r.record["events"]
    # thread 2's call completed and now holds the hard busy (WANTED was cleared)
    assert m.pg.busy[ix(pfn)] == 0x80000000
    th = m.sched.threads[2]
    assert (th.state, th.last_fn, th.completed) == ("idle", "vm_page_busy_wait", 1)
    assert not m.sched.sleepq and not m.sched.runq
    # thread 2 may run calls again: it releases the page it now owns
    m.call("vm_page_wakeup", {"m": pfn}, thread=2)
    assert m.pg.busy[ix(pfn)] == 0
    check_invariants(m)


def test_default_thread_is_the_cpu_number() -> None:
    m = boot8(cpus=2)
    pfn = m.call("vm_page_alloc", {"pindex": 600}, cpu=0).result
    r = m.call("vm_page_busy_wait", {"m": pfn}, cpu=1)
    assert r.blocked is not None and r.blocked["thread"] == 1
    assert m.sched.threads[1].cpu == 1
    with pytest.raises(InvalidArgument):
        m.call("vm_test_nominal", {}, cpu=1)  # thread 1 is parked
    assert m.call("vm_test_nominal", {}, cpu=1, thread=5).result is False
    check_invariants(m)


def test_resumed_call_runs_on_its_own_cpu() -> None:
    """freezwq of a busied page parks thread 7 on CPU 1; CPU 0's vm_page_wakeup resumes
    it, and the free (inactive +1 -1, free +1) is accounted on CPU 1, not CPU 0."""
    m = boot8(cpus=2)
    pfn = m.call("vm_page_alloczwq", {"pindex": 600}, cpu=1, thread=7).result
    assert m.call("vm_page_busy_try", {"m": pfn}, cpu=0).result is False
    adj0, adj1 = m.cpus[0].adj.cnt[:], m.cpus[1].adj.cnt[:]
    r = m.call("vm_page_freezwq", {"m": pfn}, cpu=1, thread=7)
    assert r.blocked == {"thread": 7, "channel": f"page:{pfn}", "wmesg": "pgzwq", "timo": 0}
    r = m.call("vm_page_wakeup", {"m": pfn}, cpu=0)
    assert r.record["resumed"] == [
        {"tid": 7, "fn": "vm_page_freezwq", "result": None, "timed_out": False}
    ]
    assert m.cpus[0].adj.cnt == adj0
    assert m.cpus[1].adj.cnt[CNT_FREE] == adj1[CNT_FREE] + 1
    assert m.pg.queue[ix(pfn)] == PQ_FREE + 600  # pfn 1625, colour 600
    assert r.record["cpu"] == 0  # the waking call's record is CPU 0's
    check_invariants(m)


# =========================================================== timeouts and ticks


def test_vm_wait_times_out_after_exactly_timo_ticks() -> None:
    m = boot8()
    thresholds_of_boot8(m)
    drain(m, 80)  # 80 < 91: vm_wait at nice 0 sleeps
    assert m.sched.ticks == 0
    r = m.call("vm_wait", {"timo": 7}, thread=1)
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": 7}
    assert m.pd.vm_pages_needed == 1  # 0 <= 1: bumped, wakeup(&vm_pages_needed)
    assert {"event": "wakeup", "channel": "vm_pages_needed"} in r.record["events"]
    assert m.pd.vm_pages_waiting == 1
    assert m.sched.threads[1].deadline == 7  # ticks 0 + timo 7

    r = m.call("tick", {"n": 6})
    assert r.result == 6
    assert events(r, "resumed") == []
    assert state(m, 1) == "sleeping"

    r = m.call("tick", {"n": 1})
    assert r.result == 7
    assert events(r, "resumed") == [
        {"event": "resumed", "tid": 1, "fn": "vm_wait", "result": None, "timed_out": True}
    ]
    assert state(m, 1) == "idle" and not m.sched.sleepq
    assert m.pd.vm_pages_waiting == 1  # only vm_page_free_wakeup resets it
    check_invariants(m)


def test_vm_wait_timeout_zero_means_hz() -> None:
    m = boot8()
    drain(m, 80)
    r = m.call("vm_wait", {"timo": 0}, thread=1)
    assert r.blocked is not None and r.blocked["timo"] == HZ  # never forever: timo = hz
    m.call("tick", {"n": HZ - 1})
    assert state(m, 1) == "sleeping"
    m.call("tick", {"n": 1})
    assert state(m, 1) == "idle"


def test_vm_wait_woken_early_completes_and_its_timeout_is_gone() -> None:
    m = boot8()
    drain(m, 80)
    m.call("vm_wait", {"timo": 7}, thread=1)
    m.call("vm_wait", {"timo": 3}, thread=2)
    assert m.pd.vm_pages_needed == 2  # 0 -> 1 -> 2 (each time <= 1 before)
    assert m.pd.vm_pages_waiting == 2
    r = m.call("wakeup", {"channel": "v_free_count"}, thread=0)
    assert r.result == 2  # two sleepers released
    assert r.record["resumed"] == [
        {"tid": 1, "fn": "vm_wait", "result": None, "timed_out": False},
        {"tid": 2, "fn": "vm_wait", "result": None, "timed_out": False},
    ]
    before = state_digest(m)
    r = m.call("tick", {"n": 10})
    assert events(r, "resumed") == []  # no stale deadline fires
    assert m.sched.ticks == 10 and state_digest(m) != before  # only time (and rollups) moved
    check_invariants(m)


def test_simultaneous_timeouts_resume_in_sleep_order() -> None:
    m = boot8()
    drain(m, 80)
    m.call("vm_wait", {"timo": 5}, thread=3)
    m.call("tick", {"n": 2})
    m.call("vm_wait", {"timo": 3}, thread=1)  # deadline 2 + 3 = 5, same as thread 3
    m.call("vm_wait", {"timo": 4}, thread=2)  # deadline 6
    r = m.call("tick", {"n": 3})
    assert [e["tid"] for e in events(r, "resumed")] == [3, 1]
    assert state(m, 2) == "sleeping"
    r = m.call("tick", {"n": 1})
    assert [e["tid"] for e in events(r, "resumed")] == [2]


def test_tick_rolls_up_the_cpu_adjustments() -> None:
    m = boot8()
    for _ in range(3):
        m.call("vm_page_alloc", {})
    assert m.cpus[0].adj.cnt[CNT_FREE] == -3
    r = m.call("tick", {"n": 1})
    # hardclock: the pending -3 is folded into the global count
    assert r.record["counters"] == {
        "vmstats": {"v_free_count": -3},
        "cpu0.gd_vmstats_adj": {"v_free_count": 3},
    }
    assert m.vmstats.v_free_count == 1980  # 1983 - 3
    check_invariants(m)


def test_tick_with_nothing_asleep_just_advances_time() -> None:
    m = boot8()
    r = m.call("tick", {"n": 1_000_000})
    assert r.result == 1_000_000 and m.sched.ticks == 1_000_000
    r = m.call("tick", {})  # n defaults to 1
    assert r.result == 1_000_001


@pytest.mark.parametrize("n", [-1, 1_000_001, True, "3"])
def test_tick_out_of_range_is_refused(n: Any) -> None:
    m = boot8()
    before = state_digest(m)
    with pytest.raises(InvalidArgument):
        m.call("tick", {"n": n})
    assert state_digest(m) == before


@pytest.mark.parametrize("channel", ["page:x", "page:", "nowhere", 5, "v_free_count "])
def test_wakeup_of_an_unknown_channel_is_refused(channel: Any) -> None:
    m = boot8()
    before = state_digest(m)
    with pytest.raises(InvalidArgument):
        m.call("wakeup", {"channel": channel})
    assert state_digest(m) == before


def test_wakeup_of_an_empty_channel_returns_zero() -> None:
    m = boot8()
    r = m.call("wakeup", {"channel": "page:1625"})
    assert r.result == 0 and "resumed" not in r.record


# =========================================================== vm_wait_pfault


def test_vm_wait_pfault_sleeps_in_11_tick_slices_while_severe() -> None:
    m = boot8()
    pages = drain(m, 30)  # 30 < 36: severe; 30 < 73: below the nice-0 minimum
    r = m.call("vm_wait_pfault", {}, thread=1)
    # slice = hz / 10 + 1 = 100 / 10 + 1 = 11 ticks
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "pfault", "timo": 11}
    assert (m.pd.vm_pages_needed, m.pd.vm_pages_waiting) == (1, 1)
    m.call("tick", {"n": 10})
    assert state(m, 1) == "sleeping"
    r = m.call("tick", {"n": 1})
    # timed out, still severe -> another slice (vm_pages_needed 1 <= 1 -> 2; waiting 2)
    assert events(r, "resumed") == []
    assert [(e["tid"], e["timo"]) for e in events(r, "sleep")] == [(1, 11)]
    assert state(m, 1) == "sleeping" and m.sched.threads[1].deadline == 22  # 11 + 11
    assert (m.pd.vm_pages_needed, m.pd.vm_pages_waiting) == (2, 2)
    # free 20 pages: 50 >= 36 and 50 >= 43 -> no longer severe; 50 < 89: nobody is woken
    for fr in free(m, pages, 20):
        assert "resumed" not in fr.record
    r = m.call("tick", {"n": 11})
    assert events(r, "resumed") == [
        {"event": "resumed", "tid": 1, "fn": "vm_wait_pfault", "result": None, "timed_out": True}
    ]
    assert m.pd.vm_pages_needed == 2  # 2 > 1: the third slice never happened
    check_invariants(m)


def test_vm_wait_pfault_breaks_at_once_for_an_oom_victim() -> None:
    m = boot8()
    drain(m, 30)
    r1 = m.call("vm_wait_pfault", {}, thread=1, lowmemkill=True)
    r2 = m.call("vm_wait_pfault", {}, thread=2)
    assert r1.blocked is not None and r2.blocked is not None  # both sleep once
    r = m.call("tick", {"n": 11})
    # P_LOWMEMKILL: the victim leaves after its first slice although memory is severe;
    # the other process goes back to sleep
    assert events(r, "resumed") == [
        {"event": "resumed", "tid": 1, "fn": "vm_wait_pfault", "result": None, "timed_out": True}
    ]
    assert state(m, 1) == "idle" and state(m, 2) == "sleeping"
    assert m.sched.threads[1].view()["lowmemkill"] is True


@pytest.mark.parametrize(
    ("nice", "sleeps"),
    [
        (0, False),  # k = 0: 80 >= 73 and 80 >= 43
        (-20, False),  # k = 0 * 36 / 40 = 0
        (-1, True),  # k = 19 * 36 / 40 = 684 / 40 = 17: 80 < 90
        (1, True),  # k = 21 * 36 / 40 = 18: 80 < 91
    ],
)
def test_vm_wait_pfault_trip_point_follows_nice(nice: int, sleeps: bool) -> None:
    m = boot8()
    drain(m, 80)
    before = state_digest(m)
    r = m.call("vm_wait_pfault", {}, thread=1, nice=nice)
    assert (r.blocked is not None) == sleeps
    if not sleeps:
        assert r.result is None and state_digest(m) == before  # leaves no trace
        assert 1 not in m.sched.threads
    else:
        # not severe (80 >= 36, 80 >= 43): one slice, then done
        r = m.call("tick", {"n": 11})
        assert [e["tid"] for e in events(r, "resumed")] == [1]


def test_vm_wait_sleeps_where_vm_wait_pfault_does_not() -> None:
    m = boot8()
    drain(m, 80)  # 73 <= 80 < 91
    assert m.call("vm_wait_pfault", {}, thread=1).blocked is None
    assert m.call("vm_wait", {}, thread=2).blocked is not None


# =========================================================== vm_wait_nominal


def test_vm_wait_nominal_loops_until_above_v_free_min() -> None:
    m = boot8()
    pages = drain(m, 70)  # 70 < 73: vm_paging_min
    assert m.call("vm_test_nominal", {}).result is True
    r = m.call("vm_wait_nominal", {}, thread=1)
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": HZ}
    r = m.call("tick", {"n": HZ})
    # timed out, still below: vm_wait(0) again
    assert events(r, "resumed") == [] and [e["tid"] for e in events(r, "sleep")] == [1]
    # woken early while still below: sleeps again
    r = m.call("wakeup", {"channel": "v_free_count"})
    assert r.record["resumed"] == [{"tid": 1, "fn": "vm_wait_nominal", "blocked": "v_free_count"}]
    free(m, pages, 3)  # 73: not below v_free_min; 73 < 89 wakes nobody
    assert state(m, 1) == "sleeping"
    assert m.call("vm_test_nominal", {}).result is False
    r = m.call("tick", {"n": HZ})
    assert [(e["tid"], e["fn"]) for e in events(r, "resumed")] == [(1, "vm_wait_nominal")]
    check_invariants(m)


def test_vm_wait_nominal_above_the_minimum_returns_at_once() -> None:
    m = boot8()
    drain(m, 73)
    before = state_digest(m)
    r = m.call("vm_wait_nominal", {}, thread=1)
    assert r.blocked is None and state_digest(m) == before


# =========================================================== vm_page_free_wakeup (§8.3)


def test_free_wakeup_releases_vm_wait_sleepers_at_v_free_min_plus_16() -> None:
    m = boot8()
    pages = drain(m, 80)
    m.call("vm_wait", {}, thread=1)
    m.call("vm_wait", {}, thread=2)
    assert m.pd.vm_pages_waiting == 2
    ppw = m.cpus[0].meter["v_ppwakeups"]
    for r in free(m, pages, 8):  # 81 .. 88: 73 + 16 = 89 > free -> no wakeup
        assert "resumed" not in r.record
    assert state(m, 1) == state(m, 2) == "sleeping"
    (r,) = free(m, pages, 1)  # 89 >= 89 and 89 >= 43
    assert {"event": "wakeup", "channel": "v_free_count", "woke": [1, 2]} in r.record["events"]
    assert r.record["resumed"] == [
        {"tid": 1, "fn": "vm_wait", "result": None, "timed_out": False},
        {"tid": 2, "fn": "vm_wait", "result": None, "timed_out": False},
    ]
    assert m.pd.vm_pages_waiting == 0
    assert m.cpus[0].meter["v_ppwakeups"] == ppw + 1
    assert r.record["counters"]["cpu0.gd_cnt"] == {"v_tfree": 1, "v_ppwakeups": 1}
    check_invariants(m)


def test_free_wakeup_also_needs_free_at_least_v_free_reserved() -> None:
    m = boot8()
    pages = drain(m, 101)
    # 60 allocated pages become clean, unbusied cache pages: free 41, cache 60
    m.select_cpu(0)
    for pfn in pages[-60:]:
        i = ix(pfn)
        m.pg.busy[i] = 0
        _add_queue(m, i, PQ_CACHE + m.pg.pc[i], False)
    del pages[-60:]
    for _ in range(60):
        m.call("vm_page_alloc", {"page_req": "VM_ALLOC_INTERRUPT"}, record=False)
    gd = m.cpus[0].vmstats
    assert (gd.cnt[CNT_FREE], gd.cnt[CNT_CACHE]) == (41, 60)
    m.pd.vm_pages_needed = 0
    r = m.call("vm_wait", {}, thread=1)  # 41 < 43 sleeps although free + cache = 101
    assert r.blocked is not None
    (r,) = free(m, pages, 1)  # free 42, free + cache 102 >= 89, but 42 < 43
    assert "resumed" not in r.record
    (r,) = free(m, pages, 1)  # free 43
    assert r.record["resumed"] == [{"tid": 1, "fn": "vm_wait", "result": None, "timed_out": False}]
    check_invariants(m)


# =========================================================== vm_page_grab (§7.3)


def _object_page(m: Machine, pindex: int = 4) -> tuple[int, int]:
    """An object and a page of it, allocated (hard-busied) by thread 1."""
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    pfn = m.call("vm_page_alloc", {"object": oid, "pindex": pindex}, thread=1).result
    return oid, pfn


def test_grab_with_retry_sleeps_on_a_busy_page_and_completes_when_woken() -> None:
    m = boot8()
    oid, pfn = _object_page(m)
    r = m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "NORMAL|RETRY"}, thread=2)
    assert r.blocked == {"thread": 2, "channel": f"page:{pfn}", "wmesg": "pgrbwt", "timo": 0}
    assert m.pg.busy[ix(pfn)] == 0xC0000000
    assert m.pg.flags[ix(pfn)] & PG_REFERENCED
    r = m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_grab", "result": pfn, "timed_out": False}
    ]
    assert m.pg.busy[ix(pfn)] == 0x80000000  # busied again, now for thread 2's grab
    assert m.vmobj.objects[oid].pages[4] == ix(pfn)  # the same page, nothing allocated
    check_invariants(m)


def test_grab_with_retry_on_a_soft_busied_page() -> None:
    m = boot8()
    oid, pfn = _object_page(m)
    m.call("vm_page_io_start", {"m": pfn}, thread=1)
    m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    assert m.pg.busy[ix(pfn)] == 0x00000001
    r = m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "NORMAL|RETRY"}, thread=2)
    assert r.blocked is not None and m.pg.busy[ix(pfn)] == 0x40000001
    r = m.call("vm_page_io_finish", {"m": pfn}, thread=1)  # no wakeup
    assert "resumed" not in r.record and m.pg.busy[ix(pfn)] == 0x40000000
    r = m.call("vm_page_flash", {"m": pfn}, thread=1)  # WANTED -> 0, wakeup
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_grab", "result": pfn, "timed_out": False}
    ]
    assert m.pg.busy[ix(pfn)] == 0x80000000


def test_grab_of_a_page_with_only_wanted_set_reports_the_spin() -> None:
    """Busy word 0x40000000: vm_page_lookup_busy_try fails (any bit counts) while
    vm_page_sleep_busy returns at once (only LOCKED or the soft count make it sleep): the
    kernel would spin forever.  Reported as WouldSleep before anything changes."""
    m = boot8()
    oid, pfn = _object_page(m)
    m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    m.pg.busy[ix(pfn)] = PBUSY_WANTED
    before = state_digest(m)
    with pytest.raises(WouldSleep, match="spin"):
        m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "NORMAL|RETRY"}, thread=2)
    assert state_digest(m) == before and 2 not in m.sched.threads
    check_invariants(m)


def test_grab_without_retry_failing_waits_once_then_returns_null() -> None:
    m = boot8()
    drain(m, 40)  # QUICK needs free >= 43
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    deficit = m.pd.vm_pageout_deficit
    r = m.call("vm_page_grab", {"object": oid, "pindex": 1, "flags": "QUICK"}, thread=1)
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": HZ}
    assert m.pd.vm_pageout_deficit == deficit + 1
    r = m.call("tick", {"n": HZ})
    assert events(r, "resumed") == [
        {"event": "resumed", "tid": 1, "fn": "vm_page_grab", "result": None, "timed_out": True}
    ]
    assert m.pd.vm_pageout_deficit == deficit + 1  # no second attempt
    assert 1 not in m.vmobj.objects[oid].pages


# =========================================================== alloczwq / freezwq (§7.2)


def test_alloczwq_with_retry_sleeps_in_hz_slices_until_a_page_can_be_had() -> None:
    m = boot8()
    pages = drain(m, 40)
    deficit = m.pd.vm_pageout_deficit
    r = m.call("vm_page_alloczwq", {"pindex": 1, "flags": "QUICK|RETRY"}, thread=1)
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": HZ}
    assert m.pd.vm_pageout_deficit == deficit + 1
    r = m.call("tick", {"n": HZ})  # timed out: alloc fails again (40 < 43), vm_wait again
    assert events(r, "resumed") == [] and [e["tid"] for e in events(r, "sleep")] == [1]
    assert m.pd.vm_pageout_deficit == deficit + 2
    assert m.pd.vm_pages_waiting == 2
    free(m, pages, 3)  # 43: QUICK may allocate; 43 < 89 wakes nobody
    assert state(m, 1) == "sleeping"
    r = m.call("tick", {"n": HZ})
    (done,) = events(r, "resumed")
    assert (done["tid"], done["fn"], done["timed_out"]) == (1, "vm_page_alloczwq", True)
    i = ix(done["result"])
    assert (m.pg.wire[i], m.pg.busy[i], m.pg.queue[i]) == (1, 0, PQ_NONE)
    assert m.pg.pindex[i] == 1
    assert m.cpus[0].vmstats.v_free_count == 42  # 43 - 1
    assert m.pd.vm_pageout_deficit == deficit + 2
    check_invariants(m)


def test_alloczwq_with_retry_completes_when_a_free_wakes_it() -> None:
    m = boot8()
    pages = drain(m, 40)
    m.call("vm_page_alloczwq", {"pindex": 1, "flags": "QUICK|RETRY"}, thread=1)
    rs = free(m, pages, 49)  # 40 + 49 = 89: the 49th free wakes the v_free_count sleepers
    assert all("resumed" not in r.record for r in rs[:-1])
    (done,) = rs[-1].record["resumed"]
    assert (done["tid"], done["fn"], done["timed_out"]) == (1, "vm_page_alloczwq", False)
    assert m.pg.wire[ix(done["result"])] == 1
    assert m.cpus[0].vmstats.v_free_count == 88  # 89 - 1
    check_invariants(m)


def test_alloczwq_without_retry_returns_null_after_one_wait() -> None:
    m = boot8()
    drain(m, 40)
    r = m.call("vm_page_alloczwq", {"pindex": 1, "flags": "QUICK"}, thread=1)
    assert r.blocked is not None
    r = m.call("wakeup", {"channel": "v_free_count"})
    assert r.record["resumed"] == [
        {"tid": 1, "fn": "vm_page_alloczwq", "result": None, "timed_out": False}
    ]


def test_freezwq_of_a_busied_page_sleeps_then_frees() -> None:
    m = boot8()
    pfn = m.call("vm_page_alloczwq", {"pindex": 600}, thread=1).result
    assert pfn == 1625
    assert m.call("vm_page_busy_try", {"m": pfn}, thread=1).result is False
    r = m.call("vm_page_freezwq", {"m": pfn}, thread=2)
    assert r.blocked == {"thread": 2, "channel": "page:1625", "wmesg": "pgzwq", "timo": 0}
    assert m.pg.busy[ix(pfn)] == 0xC0000000 and m.pg.wire[ix(pfn)] == 1
    r = m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    assert r.record["resumed"] == [
        {"tid": 2, "fn": "vm_page_freezwq", "result": None, "timed_out": False}
    ]
    i = ix(pfn)
    assert (m.pg.busy[i], m.pg.wire[i]) == (0, 0)
    assert m.pq.head[PQ_FREE + 600] == i  # freed to the head of its free queue
    check_invariants(m)


def test_freezwq_rechecks_after_the_sleep() -> None:
    """The holder wires the page again while the freer sleeps: on waking the freer finds
    wire_count 2 and panics ("invalid wire count") — the resumed call ends in an error."""
    m = boot8()
    pfn = m.call("vm_page_alloczwq", {"pindex": 600}, thread=1).result
    m.call("vm_page_busy_try", {"m": pfn}, thread=1)
    m.call("vm_page_freezwq", {"m": pfn}, thread=2)
    m.call("vm_page_wire", {"m": pfn}, thread=1)
    r = m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    (done,) = r.record["resumed"]
    assert done["tid"] == 2 and "invalid wire count" in done["error"]
    assert m.pg.wire[ix(pfn)] == 2 and m.pg.busy[ix(pfn)] == 0
    assert state(m, 2) == "idle" and m.sched.threads[2].last_error is not None
    check_invariants(m)


# =========================================================== invariants and determinism


def test_check_invariants_sees_the_sleep_queues() -> None:
    m = boot8()
    pfn = m.call("vm_page_alloc", {"pindex": 600}, thread=1).result
    m.call("vm_page_busy_wait", {"m": pfn}, thread=2)
    drain(m, 80)
    m.call("vm_wait", {}, thread=3)
    check_invariants(m)  # two parked threads on two channels
    assert {ch: [t.tid for t in lst] for ch, lst in m.sched.sleepq.items()} == {
        "page:1625": [2],
        "v_free_count": [3],
    }
    # a sleeping thread missing from its sleep queue is caught
    th = m.sched.sleepq["v_free_count"].pop()
    with pytest.raises(InvariantError, match="thread 3"):
        check_invariants(m)
    m.sched.sleepq["v_free_count"].append(th)
    check_invariants(m)
    # queued on the wrong channel
    m.sched.sleepq["v_free_count"].remove(th)
    m.sched.sleepq["page:1625"].append(th)
    with pytest.raises(InvariantError, match="thread 3"):
        check_invariants(m)


def _script(m: Machine) -> list[Any]:
    out: list[Any] = []

    def c(fn: str, args: dict[str, Any], **kw: Any) -> None:
        try:
            r = m.call(fn, args, **kw)
            out.append((r.result, r.blocked, r.record))
        except (KernelPanic, SimulatorRefusal, InvalidArgument, WouldSleep) as e:
            out.append(str(e))

    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    c("vm_page_alloc", {"object": oid, "pindex": 4}, thread=1)
    c("vm_page_grab", {"object": oid, "pindex": 4, "flags": "NORMAL|RETRY"}, thread=2)
    c("vm_page_busy_wait", {"m": 1625}, thread=3)  # a free, idle page: busied at once
    c("vm_page_alloc", {}, thread=2)  # refused: thread 2 is parked
    drain(m, 85)
    c("vm_wait", {"timo": 9}, thread=4)
    c("vm_wait_pfault", {}, thread=5, nice=-1)
    c("tick", {"n": 5})
    c("vm_page_wakeup", {"m": m.first_page + m.vmobj.objects[oid].pages[4]}, thread=1)
    c("tick", {"n": 20})
    c("vm_page_free", {"m": m.first_page + m.vmobj.objects[oid].pages[4]}, thread=2)
    return out


def test_same_calls_with_sleeps_give_the_same_state_on_two_machines() -> None:
    a, b = boot8(), boot8()
    out_a, out_b = _script(a), _script(b)
    assert out_a == out_b
    assert a.state_digest() == b.state_digest()
    assert any(isinstance(o, tuple) and o[1] is not None for o in out_a)  # some blocked
    assert any(isinstance(o, str) and "thread 2" in o for o in out_a)  # a refusal
    a.check_invariants()


def test_a_parked_thread_changes_the_digest() -> None:
    a, b = boot8(), boot8()
    for m in (a, b):
        m.call("vm_page_alloc", {"pindex": 600}, thread=1)
    a.call("vm_page_busy_wait", {"m": 1625}, thread=2)
    b.call("vm_page_busy_wait", {"m": 1625}, thread=3)
    assert a.state_digest() != b.state_digest()  # same page words, different sleeper


def test_refused_sleeping_calls_leave_the_digest_unchanged() -> None:
    m = boot8()
    pfn = m.call("vm_page_alloc", {"pindex": 600}, thread=1).result
    m.call("vm_page_busy_wait", {"m": pfn}, thread=2)
    before = state_digest(m)
    with pytest.raises(KernelPanic):  # no class flag: KASSERT before anything else
        m.call("vm_page_alloczwq", {"flags": "VM_ALLOC_ZERO"}, thread=3)
    with pytest.raises(KernelPanic):  # wire count 0: not an alloczwq page
        m.call("vm_page_freezwq", {"m": 600}, thread=4)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_busy_wait", {"m": pfn, "msg": ""}, thread=5)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_busy_wait", {"m": pfn}, thread=4096)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_busy_wait", {"m": pfn}, thread=2)  # parked
    assert state_digest(m) == before
    assert sorted(m.sched.threads) == [0, 2]
    check_invariants(m)


def test_a_sleeping_call_that_never_slept_leaves_no_trace() -> None:
    m = boot8()
    before = state_digest(m)
    r = m.call("vm_wait", {"timo": 3}, thread=9)  # 1983 free: no sleep
    assert r.blocked is None and r.result is None
    assert 9 not in m.sched.threads and state_digest(m) == before
    # the same on thread 0, which always exists: its history lists only calls that slept
    r = m.call("vm_wait", {"timo": 3}, thread=0)
    assert r.blocked is None and state_digest(m) == before
    assert m.sched.threads[0].view()["completed_calls"] == 0
    # a call that slept and completed is remembered
    pfn = m.call("vm_page_alloc", {"pindex": 600}, thread=1).result
    m.call("vm_page_busy_wait", {"m": pfn}, thread=0)
    m.call("vm_page_wakeup", {"m": pfn}, thread=1)
    v = m.sched.threads[0].view()
    assert (v["completed_calls"], v["last_call"], v["state"]) == (1, "vm_page_busy_wait", "idle")


def test_busied_page_sleep_sets_wanted_only_while_someone_waits() -> None:
    m = boot8()
    pfn = m.call("vm_page_alloc", {"pindex": 600}, thread=1).result
    assert m.pg.busy[ix(pfn)] == PBUSY_LOCKED
    m.call("vm_page_busy_wait", {"m": pfn}, thread=2)
    assert m.pg.busy[ix(pfn)] == PBUSY_LOCKED | PBUSY_WANTED

"""Tests for app.core.pageops (and the queue helpers it rests on): spec §8.1–§8.6, §9, §10.1.

Most tests use one hand-built machine, ``boot8()``: phys_avail = [0x200000, 0xA00000), one
CPU, boot finished.  Its layout, worked out from spec §2.2/§2.3/§4.2:

* total = 0xA00000 - 0x200000 = 8 MiB = 2048 pages; first_page = 0x200000 / 4096 = 512;
  page_range = 0xA00000 / 4096 - 512 = 2560 - 512 = 2048.
* minidump bitmap: nbits = 2560 -> 2560 / 8 = 320 bytes -> one page; end = 0x9FF000.
* npages = (8 MiB - 2048 * 128) / 4096 = (8388608 - 262144) / 4096 = 1984.
* vm_low_phys_reserved = min(256 MiB, total / 4 = 0x200000): no page lies below it, so there
  is no DMA reserve.  new_end = trunc_page(0x9FF000 - 2048 * 128) = 0x9BF000, so the VM gets
  (0x9BF000 - 0x200000) / 4096 = 0x7BF = 1983 pages: pfn 512 .. 2494, all on PQ_FREE.
* colour = (pfn ^ pfn >> 10 ^ pfn >> 20) & 1023.  Colour 600 holds pfn 600 (600 ^ 0) and
  pfn 1625 (1625 ^ 1 = 1624 -> 1624 & 1023 = 600); pages are added at the head in ascending
  order, so the queue is [1625, 600].  Colour 601 holds [1624, 601].
* thresholds (P = 1983): v_free_min = 64 + 1983 / 200 = 73; v_free_reserved = 73 * 4 / 8 +
  7 = 43; v_pageout_free_min = 146 / 8 + 7 = 25; v_paging_start = 3 * 73 = 219;
  v_paging_target1 = 4 * 73 = 292.  With 1983 free pages no paging predicate is true.

With one CPU after vm_page_startup_finish, ``vm_page_alloc(NULL, pindex)`` starts at colour
``pindex % 1024`` (spec §6.1: cpuscale = 1024 / 1) and takes the head of that queue.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    ACT_INIT,
    CNT_ACTIVE,
    CNT_FREE,
    CNT_INACTIVE,
    CNT_WIRE,
    PBUSY_LOCKED,
    PBUSY_SWAPINPROG,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_NEED_COMMIT,
    PG_NOSYNC,
    PG_REFERENCED,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_NONE,
)
from app.core.errors import KernelPanic, SimulatorRefusal
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.vm_page.queues import _add_queue, _rem_queue, queue_pages

FIRST_PAGE = 512  # 0x200000 / 4096
FREE_AT_BOOT = 1983  # 0x7BF pages, see the module docstring
C600_HEAD, C600_TAIL = 1625, 600  # the two pages of colour 600, head first
C601_HEAD, C601_TAIL = 1624, 601  # 1624 ^ 1 = 1625 -> & 1023 = 601; 601 ^ 0 = 601


def boot8(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),), **kw))


def boot_with_reserve() -> Machine:
    """phys_avail = [0x100000, 0x900000): vm_low_phys_reserved = 8 MiB / 4 = 0x200000, so
    pfn 256..511 start in the DMA reserve (FICTITIOUS|UNQUEUED, wired once); boot finishes
    and keeps vm_dma_reserved = 8 MiB / 16 = 128 of them."""
    return Machine.boot(MachineConfig(phys_avail=((0x100000, 0x900000),)))


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def alloc(m: Machine, pindex: int, obj: int | None = None) -> int:
    r = m.call("vm_page_alloc", {"object": obj, "pindex": pindex})
    assert r.result is not None
    return int(r.result)


def fictitious_page(m: Machine) -> int:
    flags = m.pg.arrays["flags"]
    return int(np.flatnonzero(flags & PG_FICTITIOUS)[0])


def panics(
    m: Machine,
    fn: str,
    args: dict[str, Any],
    text: str,
    exc: type[KernelPanic | SimulatorRefusal] = KernelPanic,
) -> KernelPanic | SimulatorRefusal:
    """The call panics (or is refused by the simulator, ``exc``) with ``text`` in its
    message and leaves the machine unchanged."""
    before = state_digest(m)
    with pytest.raises(exc) as info:
        m.call(fn, args)
    assert text in str(info.value)
    assert state_digest(m) == before
    check_invariants(m)
    return info.value


def test_layout_of_the_hand_built_machine() -> None:
    m = boot8()
    assert m.first_page == FIRST_PAGE
    assert m.vmstats.v_free_count == FREE_AT_BOOT
    assert queue_pages(m, PQ_FREE + 600) == [ix(C600_HEAD), ix(C600_TAIL)]
    assert queue_pages(m, PQ_FREE + 601) == [ix(C601_HEAD), ix(C601_TAIL)]
    vs = m.cpus[0].vmstats
    assert (vs.v_free_min, vs.v_free_reserved, vs.v_pageout_free_min) == (73, 43, 25)
    assert (vs.v_paging_start, vs.v_paging_target1) == (219, 292)


# =========================================================== §8.1 queue helpers


def _two_unqueued_of_color_600(m: Machine) -> tuple[int, int]:
    m.select_cpu(0)
    a, b = ix(C600_HEAD), ix(C600_TAIL)
    assert _rem_queue(m, a) == PQ_FREE
    assert _rem_queue(m, b) == PQ_FREE
    return a, b


def test_rem_queue_unlinks_and_counts_one_page_out() -> None:
    m = boot8()
    m.select_cpu(0)
    i = ix(C600_HEAD)
    assert _rem_queue(m, i) == PQ_FREE  # returns the base queue
    assert m.pg.queue[i] == PQ_NONE and m.pg.next[i] == -1 and m.pg.prev[i] == -1
    assert queue_pages(m, PQ_FREE + 600) == [ix(C600_TAIL)]
    assert m.pq.lcnt[PQ_FREE + 600] == 1  # 2 - 1
    assert m.cpus[0].adj.cnt[CNT_FREE] == -1
    assert m.cpus[0].vmstats.v_free_count == FREE_AT_BOOT - 1  # 1982
    assert m.vmstats.v_free_count == FREE_AT_BOOT  # global untouched until a rollup
    assert _rem_queue(m, i) == PQ_NONE  # already on no queue: nothing happens
    assert m.cpus[0].adj.cnt[CNT_FREE] == -1
    check_invariants(m)


def test_free_queue_insertion_is_always_at_the_head() -> None:
    m = boot8()
    a, b = _two_unqueued_of_color_600(m)
    _add_queue(m, b, PQ_FREE + 600, False)
    _add_queue(m, a, PQ_FREE + 600, False)  # athead=False is ignored for PQ_FREE
    assert queue_pages(m, PQ_FREE + 600) == [a, b]
    assert m.pq.lcnt[PQ_FREE + 600] == 2
    assert m.cpus[0].adj.cnt[CNT_FREE] == 0  # -2 + 2
    assert m.cpus[0].vmstats.v_free_count == FREE_AT_BOOT
    check_invariants(m)


@pytest.mark.parametrize("base", [PQ_INACTIVE, PQ_ACTIVE, PQ_CACHE, PQ_HOLD])
def test_other_queues_honour_athead(base: int) -> None:
    m = boot8()
    a, b = _two_unqueued_of_color_600(m)
    c, d = ix(C601_HEAD), ix(C601_TAIL)
    _rem_queue(m, c)
    _rem_queue(m, d)
    _add_queue(m, a, base + 600, False)
    _add_queue(m, b, base + 600, False)  # tail: after a
    assert queue_pages(m, base + 600) == [a, b]
    _add_queue(m, c, base + 601, False)
    _add_queue(m, d, base + 601, True)  # head: before c
    assert queue_pages(m, base + 601) == [d, c]
    assert m.pq.lcnt[base + 600] == 2 and m.pq.lcnt[base + 601] == 2
    assert m.pq.head[base + 600] == a and m.pq.tail[base + 600] == b
    check_invariants(m)


@pytest.mark.parametrize(
    ("base", "counter"),
    [
        (PQ_INACTIVE, CNT_INACTIVE),
        (PQ_ACTIVE, CNT_ACTIVE),
        (PQ_HOLD, CNT_ACTIVE),  # spec §1.5: PQ_HOLD feeds v_active_count
    ],
)
def test_add_counts_into_both_per_cpu_structures(base: int, counter: int) -> None:
    m = boot8()
    a, _ = _two_unqueued_of_color_600(m)
    adj, gd = m.cpus[0].adj.cnt, m.cpus[0].vmstats.cnt
    before_adj, before_gd, before_glob = list(adj), list(gd), list(m.vmstats.cnt)
    _add_queue(m, a, base + 600, False)
    for k in range(5):
        expect = 1 if k == counter else 0
        assert adj[k] - before_adj[k] == expect
        assert gd[k] - before_gd[k] == expect
    assert m.vmstats.cnt == before_glob  # the global vmstats waits for a rollup
    assert m.cpus[0].vmstats.v_inactive_count == (1 if base == PQ_INACTIVE else 0)
    check_invariants(m)


def test_add_queue_refuses_queued_and_unqueueable_pages() -> None:
    m = boot8()
    m.select_cpu(0)
    with pytest.raises(KernelPanic):
        _add_queue(m, ix(C600_HEAD), PQ_ACTIVE + 600, False)  # still on PQ_FREE
    a, _ = _two_unqueued_of_color_600(m)
    m.pg.flags[a] |= PG_UNQUEUED
    with pytest.raises(KernelPanic):
        _add_queue(m, a, PQ_ACTIVE + 600, False)


def _free_pages(m: Machine, n: int) -> list[int]:
    out: list[int] = []
    for c in range(1024):
        out.extend(queue_pages(m, PQ_FREE + c))
        if len(out) >= n:
            break
    return out[:n]


def test_rem_queue_folds_the_adjustment_below_minus_1024() -> None:
    """spec §5: fold when adj < -1024 and vm_paging_start(-1024 * ncpus)."""
    m = boot8()
    m.select_cpu(0)
    pages = _free_pages(m, 1025)
    for i in pages[:1024]:
        _rem_queue(m, i)
    # adj = -1024 is not < -1024: nothing folded yet
    assert m.cpus[0].adj.cnt[CNT_FREE] == -1024
    assert m.vmstats.v_free_count == FREE_AT_BOOT
    _rem_queue(m, pages[1024])
    # adj = -1025; FC = 1983 - 1025 = 958 and v_paging_start 219 > 958 - 1024 = -66: fold
    assert m.cpus[0].adj.cnt[CNT_FREE] == 0
    assert m.vmstats.v_free_count == 958  # 1983 - 1025
    assert m.cpus[0].vmstats.v_free_count == 958
    check_invariants(m)


def test_rem_queue_does_not_fold_while_paging_start_is_false() -> None:
    """16 MiB at [0x400000, 0x1400000): total/4 = 0x400000, so no DMA reserve; page_range =
    0x1400000/4096 - 1024 = 4096; new_end = trunc(0x13FF000 - 4096*128) = 0x137F000; the VM
    gets (0x137F000 - 0x400000)/4096 = 3967 pages; v_free_min = 64 + 3967/200 = 83,
    v_paging_start = 249.  After 1025 removals FC = 2942: 249 > 2942 - 1024 = 1918 is false,
    83 > 1918 false, v_free_reserved (48) > 2942 false -> no fold."""
    m = Machine.boot(MachineConfig(phys_avail=((0x400000, 0x1400000),)))
    assert m.vmstats.v_free_count == 3967
    m.select_cpu(0)
    for i in _free_pages(m, 1025):
        _rem_queue(m, i)
    assert m.cpus[0].adj.cnt[CNT_FREE] == -1025
    assert m.vmstats.v_free_count == 3967
    assert m.cpus[0].vmstats.v_free_count == 2942  # 3967 - 1025
    check_invariants(m)


# =========================================================== §8.2 vm_page_free_toq


def test_free_goes_to_the_free_head_and_resets_the_page() -> None:
    m = boot8()
    obj = m.call("vm_object_allocate").result
    pfn = alloc(m, 600, obj)  # colour (600 + pg_color) % 1024: wherever, we free it back
    i = ix(pfn)
    pc = m.pg.pc[i]
    o = m.vmobj.objects[obj]
    gen_before = o.generation
    m.pg.valid[i] = 0xFF
    m.pg.dirty[i] = 0x0F
    kept = PG_REFERENCED | PG_WINATCFLS | PG_NOSYNC
    m.pg.flags[i] = kept | PG_NEED_COMMIT | PG_UNQUEUED
    m.pg.act[i] = 17
    free_gd = m.cpus[0].vmstats.v_free_count
    r = m.call("vm_page_free", {"m": pfn})
    assert r.result is None
    assert m.pq.head[PQ_FREE + pc] == i  # at the head of its colour
    assert m.pg.queue[i] == PQ_FREE + pc
    assert m.pg.valid[i] == 0 and m.pg.dirty[i] == 0
    assert m.pg.flags[i] == kept  # NEED_COMMIT|UNQUEUED cleared, the rest kept
    assert m.pg.act[i] == 17  # act_count untouched
    assert m.pg.busy[i] == 0  # unbusied
    assert m.pg.obj[i] == 0 and m.pg.pindex[i] == 600  # detached, pindex kept
    assert 600 not in o.pages and o.resident_page_count == 0
    assert o.generation == gen_before + 1  # vm_page_remove bumps it once
    assert m.cpus[0].vmstats.v_free_count == free_gd + 1
    assert r.record["moves"] == [{"pfn": pfn, "from": "PQ_NONE", "to": f"PQ_FREE:{pc}"}]
    assert r.record["counters"] == {
        "cpu0.gd_vmstats_adj": {"v_free_count": 1},
        "cpu0.gd_vmstats": {"v_free_count": 1},
        "cpu0.gd_cnt": {"v_tfree": 1},
    }
    assert r.record["events"] == []  # WANTED was not set; nobody waits
    check_invariants(m)


def test_free_lifo_order_within_a_color() -> None:
    m = boot8()
    a = alloc(m, 600)  # head of colour 600: 1625
    b = alloc(m, 600)  # then 600
    assert (a, b) == (C600_HEAD, C600_TAIL)
    m.call("vm_page_free", {"m": b})
    m.call("vm_page_free", {"m": a})
    assert queue_pages(m, PQ_FREE + 600) == [ix(a), ix(b)]  # last freed first
    m.call("vm_page_free", {"m": alloc(m, 600)})  # the head goes out and comes back
    assert queue_pages(m, PQ_FREE + 600) == [ix(a), ix(b)]
    check_invariants(m)


def test_free_wakes_the_waiters_of_a_wanted_page() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.busy[ix(pfn)] |= PBUSY_WANTED
    r = m.call("vm_page_free", {"m": pfn})
    assert m.pg.busy[ix(pfn)] == 0
    assert {"event": "wakeup", "channel": f"page:{pfn}"} in r.record["events"]


def test_held_pages_go_to_the_hold_tail_and_count_as_active() -> None:
    m = boot8()
    a = alloc(m, 600)  # 1625
    b = alloc(m, 600)  # 600
    m.pg.hold[ix(a)] = 1  # simulate vm_page_hold (not implemented yet)
    m.pg.hold[ix(b)] = 2
    free_gd = m.cpus[0].vmstats.v_free_count
    m.call("vm_page_free", {"m": a})
    r = m.call("vm_page_free", {"m": b})
    assert queue_pages(m, PQ_HOLD + 600) == [ix(a), ix(b)]  # tail insertion keeps order
    assert m.pq.lcnt[PQ_HOLD + 600] == 2
    assert r.record["moves"] == [{"pfn": b, "from": "PQ_NONE", "to": "PQ_HOLD:600"}]
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {"v_active_count": 1}
    assert m.cpus[0].adj.cnt[CNT_ACTIVE] == 2
    assert m.cpus[0].vmstats.v_active_count == 2
    assert m.cpus[0].vmstats.v_free_count == free_gd  # not free
    assert m.pg.hold[ix(a)] == 1  # the free does not drop holds
    check_invariants(m)


def test_free_panics_when_not_busied() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.call("vm_page_wakeup", {"m": pfn})
    e = panics(m, "vm_page_free", {"m": pfn}, "busied")
    assert e.function == "vm_page_free_toq"


def test_free_of_an_unbusied_free_page_hits_the_busy_assertion_first() -> None:
    """spec §8.2: 'assert PBUSY_LOCKED' comes before the 'freeing free page' check."""
    m = boot8()
    e = panics(m, "vm_page_free", {"m": C600_HEAD}, "PBUSY_LOCKED")
    assert "freeing free page" not in e.message


def test_free_panics_on_a_soft_busied_page() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.busy[ix(pfn)] = PBUSY_LOCKED | 1  # one soft busy as well
    panics(m, "vm_page_free", {"m": pfn}, "freeing busy page")


def test_free_panics_on_a_free_page() -> None:
    m = boot8()
    assert m.call("vm_page_busy_try", {"m": C600_HEAD}).result is False  # busied on PQ_FREE
    panics(m, "vm_page_free", {"m": C600_HEAD}, "freeing free page")


def test_free_panics_on_a_wired_page() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.call("vm_page_wire", {"m": pfn})
    panics(m, "vm_page_free", {"m": pfn}, "freeing wired page")
    m.call("vm_page_wire", {"m": pfn})
    panics(m, "vm_page_free", {"m": pfn}, "invalid wire count (2)")


def test_freeing_a_fictitious_page_only_detaches_and_unbusies() -> None:
    m = boot_with_reserve()
    i = fictitious_page(m)
    pfn = m.first_page + i
    obj = m.call("vm_object_allocate").result
    assert m.call("vm_page_busy_try", {"m": pfn}).result is False
    assert m.call("vm_page_insert", {"m": pfn, "object": obj, "pindex": 42}).result is True
    m.pg.valid[i] = 0x03
    m.pg.flags[i] |= PG_REFERENCED
    m.pd.vm_pages_waiting = 1
    m.cpus[0].vmstats.v_free_min = 0  # every free-wakeup condition would hold
    m.cpus[0].vmstats.v_free_reserved = 0
    m.cpus[0].vmstats.v_paging_target1 = 0
    r = m.call("vm_page_free", {"m": pfn})
    assert m.pg.obj[i] == 0 and m.pg.pindex[i] == 42
    assert m.vmobj.objects[obj].resident_page_count == 0
    assert m.pg.busy[i] == 0
    assert m.pg.queue[i] == PQ_NONE and m.pg.wire[i] == 1  # no queue, still wired
    assert m.pg.flags[i] == PG_FICTITIOUS | PG_UNQUEUED | PG_REFERENCED
    assert m.pg.valid[i] == 0x03  # returns before valid/dirty are cleared
    assert r.record["moves"] == []
    assert r.record["counters"] == {"cpu0.gd_cnt": {"v_tfree": 1}}  # v_tfree is first
    assert m.pd.vm_pages_waiting == 1  # vm_page_free_wakeup is not reached
    check_invariants(m)


# =========================================================== §8.3 vm_page_free_wakeup


def _prepare_free(m: Machine) -> tuple[int, int]:
    """Allocate a page to free; return it and the gd free count it will leave behind."""
    pfn = alloc(m, 600)
    return pfn, m.cpus[0].vmstats.v_free_count + 1


@pytest.mark.parametrize(
    ("min_off", "reserved_off", "target1_off", "wake"),
    [
        # wake iff FR >= reserved and (FC >= free_min + 16 or FC >= target1)
        (-16, 0, 1, True),  # FC == free_min + 16 exactly; reserved == FR; target1 > FC
        (-15, 0, 1, False),  # FC == free_min + 15: one short; target1 still above
        (-16, 1, 1, False),  # reserved == FR + 1 blocks the hysteresis branch
        (0, 0, 0, True),  # below free_min + 16 but FC == target1: "not target1"
        (0, 0, 1, False),  # FC == target1 - 1
        (-100, 1, -100, False),  # reserved > FR blocks both branches
    ],
)
def test_free_wakeup_boundaries(
    min_off: int, reserved_off: int, target1_off: int, wake: bool
) -> None:
    m = boot8()
    pfn, fc_after = _prepare_free(m)  # no cache pages: FC == FR after the free
    gd = m.cpus[0].vmstats
    gd.v_free_min = fc_after + min_off
    gd.v_free_reserved = fc_after + reserved_off
    gd.v_paging_target1 = fc_after + target1_off
    m.pd.vm_pages_waiting = 1
    r = m.call("vm_page_free", {"m": pfn})
    assert gd.v_free_count == fc_after
    woke = {"event": "wakeup", "channel": "v_free_count"} in r.record["events"]
    assert woke is wake
    assert m.pd.vm_pages_waiting == (0 if wake else 1)
    assert m.cpus[0].meter["v_ppwakeups"] == (1 if wake else 0)


def test_free_wakeup_needs_a_waiter() -> None:
    m = boot8()
    pfn, _ = _prepare_free(m)
    m.pd.vm_pages_waiting = 0  # thresholds: FC = 1983 is far above everything
    r = m.call("vm_page_free", {"m": pfn})
    assert m.cpus[0].meter["v_ppwakeups"] == 0 and r.record["events"] == []


def test_free_wakeup_follows_the_hysteresis_sysctl() -> None:
    m = boot8()
    pfn, fc_after = _prepare_free(m)
    gd = m.cpus[0].vmstats
    gd.v_free_min = fc_after - 16  # 1983 - 16 = 1967
    gd.v_paging_target1 = 10**6
    m.pd.vm_pages_waiting = 1
    m.pd.vm_page_free_hysteresis = 17  # the sysctl raised by one: now one short
    m.call("vm_page_free", {"m": pfn})
    assert m.pd.vm_pages_waiting == 1


@pytest.mark.parametrize(("off", "wake"), [(0, True), (1, False)])
def test_pageout_pages_needed_wakes_at_v_pageout_free_min(off: int, wake: bool) -> None:
    m = boot8()
    pfn, fc_after = _prepare_free(m)
    m.cpus[0].vmstats.v_pageout_free_min = fc_after + off
    m.pd.vm_pageout_pages_needed = 1
    r = m.call("vm_page_free", {"m": pfn})
    woke = {"event": "wakeup", "channel": "vm_pageout_pages_needed"} in r.record["events"]
    assert woke is wake
    assert m.pd.vm_pageout_pages_needed == (0 if wake else 1)


# =========================================================== §8.4 unqueue / §13.4 wakeup


PD_WAKEUP = {"event": "wakeup", "channel": "vm_pages_needed"}


def test_unqueue_from_free_wakes_the_pagedaemon_when_paging_should_start() -> None:
    m = boot8()
    gd = m.cpus[0].vmstats
    fc_after = gd.v_free_count - 1  # 1982 once the page is off PQ_FREE
    gd.v_paging_start = fc_after + 1  # vm_paging_start(0): 1983 > 1982
    r = m.call("vm_page_unqueue", {"m": C600_HEAD})
    assert m.pg.queue[ix(C600_HEAD)] == PQ_NONE
    assert r.record["moves"] == [{"pfn": C600_HEAD, "from": "PQ_FREE:600", "to": "PQ_NONE"}]
    assert m.pd.vm_pages_needed == 1
    assert PD_WAKEUP in r.record["events"]
    check_invariants(m)


def test_unqueue_at_the_paging_start_boundary_does_not_wake() -> None:
    m = boot8()
    gd = m.cpus[0].vmstats
    gd.v_paging_start = gd.v_free_count - 1  # == FC after the removal: not ">"
    r = m.call("vm_page_unqueue", {"m": C600_HEAD})
    assert m.pd.vm_pages_needed == 0 and r.record["events"] == []


def test_unqueue_nowakeup_never_wakes() -> None:
    m = boot8()
    m.cpus[0].vmstats.v_paging_start = 10**6
    r = m.call("vm_page_unqueue_nowakeup", {"m": C600_HEAD})
    assert m.pg.queue[ix(C600_HEAD)] == PQ_NONE
    assert m.pd.vm_pages_needed == 0 and r.record["events"] == []


def test_unqueue_from_inactive_or_none_does_not_wake() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.cpus[0].vmstats.v_paging_start = 10**6
    r = m.call("vm_page_unqueue", {"m": pfn})  # on PQ_NONE: nothing at all
    assert r.record["moves"] == [] and r.record["events"] == []
    m.call("vm_page_deactivate", {"m": pfn})
    r = m.call("vm_page_unqueue", {"m": pfn})
    assert r.record["moves"] == [{"pfn": pfn, "from": "PQ_INACTIVE:600", "to": "PQ_NONE"}]
    assert m.pd.vm_pages_needed == 0 and r.record["events"] == []


def test_unqueue_from_cache_wakes() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.select_cpu(0)
    _add_queue(m, ix(pfn), PQ_CACHE + 600, False)
    m.cpus[0].vmstats.v_paging_start = 10**6
    r = m.call("vm_page_unqueue", {"m": pfn})
    assert m.pd.vm_pages_needed == 1 and PD_WAKEUP in r.record["events"]


def test_pagedaemon_wakeup_with_one_pending_wakes_again() -> None:
    m = boot8()
    m.cpus[0].vmstats.v_paging_start = 10**6
    m.pd.vm_pages_needed = 1
    r = m.call("pagedaemon_wakeup")
    assert m.pd.vm_pages_needed == 1 and PD_WAKEUP in r.record["events"]


def test_pagedaemon_wakeup_above_one_counts_only_when_paging_min() -> None:
    m = boot8()
    gd = m.cpus[0].vmstats
    gd.v_paging_start = 10**6  # vm_paging_start(0) true; vm_paging_min false (73 < 1983)
    m.pd.vm_pages_needed = 2
    r = m.call("vm_page_unqueue", {"m": C600_HEAD})
    assert m.pd.vm_pages_needed == 2 and r.record["events"] == []
    gd.v_free_min = gd.v_free_count + 1  # vm_paging_min: v_free_min > FC
    r = m.call("vm_page_unqueue", {"m": C600_TAIL})
    assert m.pd.vm_pages_needed == 3  # a hint only: no wakeup event
    assert r.record["events"] == []


def test_pagedaemon_wakeup_does_nothing_when_paging_need_not_start() -> None:
    m = boot8()  # 1983 free: vm_paging_start(0) is false
    r = m.call("pagedaemon_wakeup")
    assert m.pd.vm_pages_needed == 0 and r.record["events"] == []


# =========================================================== §8.5 activate


def test_activate_a_free_page_moves_it_to_the_active_tail() -> None:
    m = boot8()
    m.cpus[0].vmstats.v_paging_start = 10**6
    r = m.call("vm_page_activate", {"m": C600_TAIL})
    r2 = m.call("vm_page_activate", {"m": C600_HEAD})
    assert queue_pages(m, PQ_ACTIVE + 600) == [ix(C600_TAIL), ix(C600_HEAD)]  # tail order
    assert m.pg.act[ix(C600_TAIL)] == ACT_INIT  # max(0, 5)
    assert r.record["moves"] == [{"pfn": C600_TAIL, "from": "PQ_FREE:600", "to": "PQ_ACTIVE:600"}]
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {"v_free_count": -1, "v_active_count": 1}
    assert PD_WAKEUP in r.record["events"]  # came from PQ_FREE
    assert "v_reactivated" not in r2.record["counters"].get("cpu0.gd_cnt", {})
    check_invariants(m)


@pytest.mark.parametrize(("act", "expect"), [(0, 5), (4, 5), (5, 5), (9, 9), (64, 64)])
def test_activate_raises_act_count_to_act_init(act: int, expect: int) -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.act[ix(pfn)] = act
    m.call("vm_page_activate", {"m": pfn})
    assert m.pg.act[ix(pfn)] == expect


def test_activate_from_cache_counts_a_reactivation_and_wakes() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.select_cpu(0)
    _add_queue(m, ix(pfn), PQ_CACHE + 600, False)
    m.cpus[0].vmstats.v_paging_start = 10**6
    r = m.call("vm_page_activate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_ACTIVE + 600
    assert r.record["counters"]["cpu0.gd_cnt"] == {"v_reactivated": 1}
    assert PD_WAKEUP in r.record["events"]


@pytest.mark.parametrize("via_inactive", [True, False])
def test_activate_from_inactive_or_none_does_not_wake(via_inactive: bool) -> None:
    m = boot8()
    pfn = alloc(m, 600)
    if via_inactive:
        m.call("vm_page_deactivate", {"m": pfn})
    m.cpus[0].vmstats.v_paging_start = 10**6
    r = m.call("vm_page_activate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_ACTIVE + 600
    assert r.record["events"] == [] and m.pd.vm_pages_needed == 0
    assert "cpu0.gd_cnt" not in r.record["counters"]


def test_activate_from_hold_keeps_v_active_count() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.hold[ix(pfn)] = 1
    m.call("vm_page_free", {"m": pfn})  # -> PQ_HOLD
    r = m.call("vm_page_activate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_ACTIVE + 600
    # HOLD feeds v_active_count: -1 then +1, no net change recorded
    assert "cpu0.gd_vmstats_adj" not in r.record["counters"]
    assert r.record["moves"] == [{"pfn": pfn, "from": "PQ_HOLD:600", "to": "PQ_ACTIVE:600"}]
    check_invariants(m)


def test_activate_an_active_page_only_bumps_act_count() -> None:
    m = boot8()
    a, b = alloc(m, 600), alloc(m, 600)
    m.call("vm_page_activate", {"m": a})
    m.call("vm_page_activate", {"m": b})
    m.pg.act[ix(a)] = 2
    r = m.call("vm_page_activate", {"m": a})
    assert queue_pages(m, PQ_ACTIVE + 600) == [ix(a), ix(b)]  # a is not moved to the tail
    assert m.pg.act[ix(a)] == 5
    assert r.record["moves"] == [] and r.record["counters"] == {}


@pytest.mark.parametrize("flag", [PG_UNQUEUED, PG_FICTITIOUS])
def test_activate_ignores_unqueueable_pages_but_bumps_act_count(flag: int) -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.flags[ix(pfn)] |= flag
    r = m.call("vm_page_activate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_NONE
    assert m.pg.act[ix(pfn)] == 5
    assert r.record["moves"] == []


def test_soft_activate_behaves_as_activate() -> None:
    m = boot8()
    m.pg.act[ix(C600_HEAD)] = 1
    m.call("vm_page_soft_activate", {"m": C600_HEAD})
    assert m.pg.queue[ix(C600_HEAD)] == PQ_ACTIVE + 600 and m.pg.act[ix(C600_HEAD)] == 5


def test_activate_is_allowed_on_wired_pages() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.call("vm_page_wire", {"m": pfn})
    m.call("vm_page_activate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_ACTIVE + 600 and m.pg.wire[ix(pfn)] == 1
    check_invariants(m)


# =========================================================== §8.6 deactivate


def test_deactivate_goes_to_the_inactive_tail_and_counts_adds() -> None:
    m = boot8()
    a, b = alloc(m, 600), alloc(m, 600)
    m.call("vm_page_activate", {"m": a})
    m.pg.act[ix(a)] = 7
    m.pg.flags[ix(a)] |= PG_WINATCFLS | PG_REFERENCED
    r = m.call("vm_page_deactivate", {"m": a})
    m.call("vm_page_deactivate", {"m": b})
    assert queue_pages(m, PQ_INACTIVE + 600) == [ix(a), ix(b)]
    assert m.pq.adds[PQ_INACTIVE + 600] == 2  # one per tail insertion
    assert m.pg.flags[ix(a)] == PG_REFERENCED  # WINATCFLS cleared, the rest kept
    assert m.pg.act[ix(a)] == 7  # act_count untouched
    assert r.record["moves"] == [{"pfn": a, "from": "PQ_ACTIVE:600", "to": "PQ_INACTIVE:600"}]
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {
        "v_inactive_count": 1,
        "v_active_count": -1,
    }
    check_invariants(m)


def test_deactivate_an_inactive_page_is_a_no_op() -> None:
    m = boot8()
    a, b = alloc(m, 600), alloc(m, 600)
    m.call("vm_page_deactivate", {"m": a})
    m.call("vm_page_deactivate", {"m": b})
    m.pg.flags[ix(a)] |= PG_WINATCFLS
    r = m.call("vm_page_deactivate", {"m": a})
    assert queue_pages(m, PQ_INACTIVE + 600) == [ix(a), ix(b)]  # not moved behind b
    assert m.pq.adds[PQ_INACTIVE + 600] == 2
    assert m.pg.flags[ix(a)] & PG_WINATCFLS  # returns before clearing it
    assert r.record["moves"] == [] and r.record["counters"] == {}


def test_deactivate_from_cache_counts_a_reactivation() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.select_cpu(0)
    _add_queue(m, ix(pfn), PQ_CACHE + 600, False)
    r = m.call("vm_page_deactivate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_INACTIVE + 600
    assert r.record["counters"]["cpu0.gd_cnt"] == {"v_reactivated": 1}


@pytest.mark.parametrize("flag", [PG_UNQUEUED, PG_FICTITIOUS])
def test_deactivate_ignores_unqueueable_pages(flag: int) -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.flags[ix(pfn)] |= flag | PG_WINATCFLS
    m.call("vm_page_deactivate", {"m": pfn})
    assert m.pg.queue[ix(pfn)] == PQ_NONE and m.pq.adds[PQ_INACTIVE + 600] == 0
    assert m.pg.flags[ix(pfn)] & PG_WINATCFLS


def test_deactivate_a_free_page_takes_it_off_the_free_list() -> None:
    m = boot8()
    r = m.call("vm_page_deactivate", {"m": C600_HEAD})
    assert r.record["counters"]["cpu0.gd_vmstats"] == {"v_free_count": -1, "v_inactive_count": 1}
    assert m.pd.vm_pages_needed == 0  # deactivation never pokes the pagedaemon


# =========================================================== §9 busy


def test_busy_try_succeeds_on_an_unbusied_page() -> None:
    m = boot8()
    r = m.call("vm_page_busy_try", {"m": C600_HEAD, "also_m_busy": True})
    assert r.result is False  # FALSE = success
    assert m.pg.busy[ix(C600_HEAD)] == PBUSY_LOCKED
    assert m.pg.queue[ix(C600_HEAD)] == PQ_FREE + 600  # busying does not dequeue


@pytest.mark.parametrize(
    ("word", "also", "fails"),
    [
        (PBUSY_LOCKED, False, True),
        (PBUSY_LOCKED, True, True),
        (3, True, True),  # soft count 3
        (3, False, False),
        (PBUSY_WANTED, True, False),  # WANTED alone does not fail busy_try
        (PBUSY_SWAPINPROG, True, False),
        (PBUSY_WANTED | 1, True, True),
    ],
)
def test_busy_try_failure_rules(word: int, also: bool, fails: bool) -> None:
    m = boot8()
    i = ix(C600_HEAD)
    m.pg.busy[i] = word
    before = state_digest(m)
    r = m.call("vm_page_busy_try", {"m": C600_HEAD, "also_m_busy": also})
    assert r.result is fails
    if fails:
        assert m.pg.busy[i] == word and state_digest(m) == before
    else:
        assert m.pg.busy[i] == word | PBUSY_LOCKED


def test_wakeup_panics_unless_hard_busied() -> None:
    m = boot8()
    m.pg.busy[ix(C600_HEAD)] = PBUSY_WANTED | 2
    panics(m, "vm_page_wakeup", {"m": C600_HEAD}, "PBUSY_LOCKED")


def test_wakeup_clears_locked_and_wanted_keeps_soft_count() -> None:
    m = boot8()
    i = ix(C600_HEAD)
    m.pg.busy[i] = PBUSY_LOCKED | PBUSY_WANTED | 2
    r = m.call("vm_page_wakeup", {"m": C600_HEAD})
    assert m.pg.busy[i] == 2
    assert r.record["events"] == [{"event": "wakeup", "channel": f"page:{C600_HEAD}"}]


def test_wakeup_without_wanted_wakes_nobody() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    r = m.call("vm_page_wakeup", {"m": pfn})
    assert m.pg.busy[ix(pfn)] == 0 and r.record["events"] == []


# =========================================================== §10.1 wire / unwire


def test_wire_counts_only_in_the_adjustment_structure() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    gd_wire = m.cpus[0].vmstats.v_wire_count
    r = m.call("vm_page_wire", {"m": pfn})
    assert m.pg.wire[ix(pfn)] == 1
    assert r.record["counters"] == {"cpu0.gd_vmstats_adj": {"v_wire_count": 1}}
    assert m.cpus[0].vmstats.v_wire_count == gd_wire  # gd_vmstats is stale for wiring
    assert m.vmstats.v_wire_count == 0
    r = m.call("vm_page_wire", {"m": pfn})  # 1 -> 2: no accounting
    assert m.pg.wire[ix(pfn)] == 2 and r.record["counters"] == {}
    r = m.call("vm_page_unwire", {"m": pfn, "activate": True})  # 2 -> 1: nothing else
    assert m.pg.wire[ix(pfn)] == 1 and r.record["counters"] == {} and r.record["moves"] == []
    assert m.pg.queue[ix(pfn)] == PQ_NONE
    check_invariants(m)


def test_wiring_does_not_dequeue() -> None:
    m = boot8()
    a = alloc(m, 600)
    m.call("vm_page_activate", {"m": a})
    r = m.call("vm_page_wire", {"m": a})
    assert m.pg.queue[ix(a)] == PQ_ACTIVE + 600 and r.record["moves"] == []
    check_invariants(m)


def test_wiring_a_busied_free_page_is_refused() -> None:
    m = boot8()
    m.call("vm_page_busy_try", {"m": C600_HEAD})
    panics(m, "vm_page_wire", {"m": C600_HEAD}, "PQ_FREE", SimulatorRefusal)


def test_wire_and_unwire_need_the_hard_busy() -> None:
    m = boot8()
    panics(m, "vm_page_wire", {"m": C600_HEAD}, "PBUSY_LOCKED")
    m.pg.wire[ix(C600_HEAD)] = 1
    m.cpus[0].adj.cnt[CNT_WIRE] += 1  # keep the books straight for the digest check
    panics(m, "vm_page_unwire", {"m": C600_HEAD}, "PBUSY_LOCKED")


@pytest.mark.parametrize(("activate", "base"), [(True, PQ_ACTIVE), (False, PQ_INACTIVE)])
def test_last_unwire_requeues_at_the_tail(activate: bool, base: int) -> None:
    m = boot8()
    a, b = alloc(m, 600), alloc(m, 600)
    for pfn in (b, a):
        m.call("vm_page_wire", {"m": pfn})
    m.call("vm_page_unwire", {"m": b, "activate": activate})
    r = m.call("vm_page_unwire", {"m": a, "activate": activate})
    assert queue_pages(m, base + 600) == [ix(b), ix(a)]
    assert m.pg.wire[ix(a)] == 0
    assert r.record["counters"]["cpu0.gd_vmstats_adj"]["v_wire_count"] == -1
    assert m.pq.adds[PQ_INACTIVE + 600] == (0 if activate else 2)
    assert m.pg.act[ix(a)] == (5 if activate else 0)
    check_invariants(m)


def test_last_unwire_of_a_need_commit_page_activates() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.flags[ix(pfn)] |= PG_NEED_COMMIT
    m.call("vm_page_wire", {"m": pfn})
    m.call("vm_page_unwire", {"m": pfn, "activate": False})
    assert m.pg.queue[ix(pfn)] == PQ_ACTIVE + 600


def test_last_unwire_of_an_unqueued_page_leaves_it_unqueued() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    m.pg.flags[ix(pfn)] |= PG_UNQUEUED
    m.call("vm_page_wire", {"m": pfn})
    r = m.call("vm_page_unwire", {"m": pfn, "activate": True})
    assert m.pg.queue[ix(pfn)] == PQ_NONE and m.pg.wire[ix(pfn)] == 0
    assert r.record["counters"] == {"cpu0.gd_vmstats_adj": {"v_wire_count": -1}}


def test_wire_and_unwire_ignore_fictitious_pages() -> None:
    m = boot_with_reserve()
    i = fictitious_page(m)
    pfn = m.first_page + i
    m.call("vm_page_busy_try", {"m": pfn})
    for fn in ("vm_page_wire", "vm_page_unwire", "vm_page_unwire"):
        r = m.call(fn, {"m": pfn})
        assert r.record["counters"] == {}
        assert m.pg.wire[i] == 1  # the reserve's single wiring stays
    m.call("vm_page_wakeup", {"m": pfn})
    check_invariants(m)


def test_unwire_of_an_unwired_page_panics() -> None:
    m = boot8()
    pfn = alloc(m, 600)
    panics(m, "vm_page_unwire", {"m": pfn, "activate": False}, "invalid wire count: 0")

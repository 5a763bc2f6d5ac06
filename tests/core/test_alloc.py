"""Tests for app.core.alloc: the selectors (spec §6.5), vm_page_alloc (§7.1),
vm_page_alloczwq / vm_page_freezwq (§7.2), vm_page_grab (§7.3) and vm_wait (§13.1).

Most tests use a 16 MiB, 1-CPU machine with finished boot (set_assoc_mask 1023, so one
search level covers all 1024 colours, in ascending order from the start colour).  Its
thresholds follow from P = v_page_count by the §4.2 formulas, computed in ``Thresholds``.
"Controlled" machines have every free page taken off its queue; tests then put chosen pages
back on chosen queues, so colours, counts and orders are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    CNT_CACHE,
    CNT_FREE,
    CNT_WIRE,
    PBUSY_LOCKED,
    PBUSY_WANTED,
    PG_REFERENCED,
    PG_WINATCFLS,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_NONE,
    VM_ALLOC_CPU,
    VM_ALLOC_NORMAL,
    VM_ALLOC_NULL_OK,
    VM_ALLOC_QUICK,
)
from app.core.errors import InvalidArgument, KernelPanic
from app.core.invariants import check_invariants, state_digest
from app.core.machine import CallResult, Machine
from app.core.vm_page.object import vm_page_insert
from app.core.vm_page.queues import _add_queue, _rem_queue

# --- helpers ---------------------------------------------------------------------------


@dataclass
class Thresholds:
    """§4.2 thresholds of a machine, computed by hand from P = v_page_count."""

    free_min: int
    reserved: int
    interrupt_free_min: int
    paging_wait: int

    @classmethod
    def of(cls, m: Machine) -> Thresholds:
        p = m.vmstats.v_page_count
        free_min = 64 + p // 200
        t = cls(
            free_min=free_min,
            reserved=free_min * 4 // 8 + 7,
            interrupt_free_min=free_min * 1 // 8 + 7,
            paging_wait=free_min * 2,
        )
        # the machine's per-CPU snapshots carry the same values
        for cpu in m.cpus:
            assert cpu.vmstats.v_free_reserved == t.reserved
            assert cpu.vmstats.v_interrupt_free_min == t.interrupt_free_min
            assert cpu.vmstats.v_free_min == t.free_min
        return t


def boot(size: str = "16MiB", cpus: int = 1) -> Machine:
    """A machine with finished boot (thresholds set)."""
    return Machine.boot(MachineConfig.from_size(size, cpus=cpus))


class Lab:
    """A finished machine whose free queues were emptied (on CPU 0); ``pool`` holds the
    pages taken off, by colour."""

    def __init__(self, size: str = "16MiB", cpus: int = 1) -> None:
        self.m = m = boot(size, cpus=cpus)
        self.t = Thresholds.of(m)
        m.select_cpu(0)
        self.pool: dict[int, list[int]] = {}
        for c in range(1024):
            q = PQ_FREE + c
            while m.pq.head[q] >= 0:
                i = m.pq.head[q]
                _rem_queue(m, i)
                self.pool.setdefault(c, []).append(i)
        assert m.gd.v_free_count == 0

    def free(self, color: int) -> int:
        i = self.pool[color].pop()
        _add_queue(self.m, i, PQ_FREE + color, True)
        return i

    def free_run(self, first: int, n: int) -> list[int]:
        """One free page on each colour first .. first+n-1."""
        return [self.free(c) for c in range(first, first + n)]

    def cache(self, color: int, oid: int | None = None, pindex: int = 0) -> int:
        """A recyclable cache page (unbusied, unwired, unheld, clean), optionally in an
        object, at the tail of its cache queue."""
        m = self.m
        i = self.pool[color].pop()
        if oid is not None:
            assert vm_page_insert(m, i, m.vmobj.objects[oid], pindex)
        _add_queue(m, i, PQ_CACHE + color, False)
        return i

    def pfn(self, i: int) -> int:
        return self.m.first_page + i


def alloc(
    m: Machine,
    req: str,
    pindex: int = 0,
    obj: int | None = None,
    *,
    cpu: int = 0,
    systhread: bool = False,
    record: bool = True,
) -> CallResult:
    args = {"object": obj, "pindex": pindex, "page_req": req}
    return m.call("vm_page_alloc", args, cpu=cpu, systhread=systhread, record=record)


def explain(record: dict[str, Any]) -> dict[str, Any]:
    """The one 'alloc' explain event of a vm_page_alloc call record."""
    events: list[dict[str, Any]] = [e for e in record["events"] if e["event"] == "alloc"]
    assert len(events) == 1
    return events[0]


# --- returned page state (§7.1) --------------------------------------------------------


def test_allocated_page_state_with_object() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 10}).result
    # 1 CPU: colour = (5 + 10) % 1024 = 15; a fresh machine has pages on every colour
    head = m.pq.head[PQ_FREE + 15]
    m.pg.flags[head] = PG_REFERENCED | PG_WINATCFLS  # stale flags of a free page
    m.pg.act[head] = 7
    free0 = m.gd.v_free_count
    r = alloc(m, "VM_ALLOC_NORMAL", 5, oid)
    i = r.result - m.first_page
    assert i == head  # the head of the exact colour queue (LIFO)
    pg = m.pg
    assert pg.busy[i] == PBUSY_LOCKED
    assert pg.queue[i] == PQ_NONE
    assert pg.flags[i] == 0  # PG_KEEP_NEWPAGE_MASK == 0
    assert pg.act[i] == 0
    assert pg.valid[i] == 0 and pg.dirty[i] == 0
    assert pg.wire[i] == 0 and pg.hold[i] == 0
    assert pg.obj[i] == oid and pg.pindex[i] == 5
    obj = m.vmobj.objects[oid]
    assert obj.pages[5] == i and obj.resident_page_count == 1
    assert m.gd.v_free_count == free0 - 1
    check_invariants(m)


def test_allocated_page_without_object_keeps_pindex() -> None:
    m = boot()
    r = alloc(m, "VM_ALLOC_NORMAL", 12345)
    i = r.result - m.first_page
    assert m.pg.obj[i] == 0
    assert m.pg.pindex[i] == 12345
    # colour = 12345 % 1024 = 12345 - 12*1024 = 57
    assert m.pg.pc[i] == 57
    assert explain(r.record)["color"] == 57
    check_invariants(m)


def test_explain_record_of_a_plain_allocation() -> None:
    m = boot()
    head = m.pq.head[PQ_FREE + 57]
    r = alloc(m, "VM_ALLOC_NORMAL", 57)
    e = explain(r.record)
    assert e["color"] == 57
    assert e["probes"] == [PQ_FREE + 57]  # exact free queue hit: one probe
    assert e["found_queue"] == PQ_FREE + 57
    assert e["recycled_cache"] == []
    assert e["result"] == m.first_page + head
    assert "why_null" not in e or e["why_null"] is None


def test_missing_class_flag_panics_and_changes_nothing() -> None:
    m = boot()
    before = state_digest(m)
    for req in ("VM_ALLOC_ZERO", "VM_ALLOC_NULL_OK|VM_ALLOC_RETRY", 0):
        with pytest.raises(KernelPanic):
            m.call("vm_page_alloc", {"page_req": req})
    assert state_digest(m) == before


# --- gates (§7.1 table) -----------------------------------------------------------------


def test_quick_gate_boundary_at_free_reserved() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    # 16 MiB from 4 KiB: 4095 pages, less the page array (4095 * 128 B -> 128 pages) and
    # one minidump-bitmap page: P = 3966 -> free_min = 64 + 19 = 83, reserved = 41 + 7 = 48
    assert t.reserved == 48
    pages = lab.free_run(100, t.reserved)  # free == reserved (48)
    r = alloc(m, "VM_ALLOC_QUICK")
    # colour 0: exact 0 empty; one level from 0 upward -> colour 100 is the first page
    assert r.result == lab.pfn(pages[0])
    assert m.gd.v_free_count == t.reserved - 1
    deficit = m.pd.vm_pageout_deficit
    before = state_digest(m)
    r = alloc(m, "VM_ALLOC_QUICK", record=False)
    assert r.result is None  # 47 < 48 fails
    assert m.pd.vm_pageout_deficit == deficit + 1
    assert m.gd.v_free_count == t.reserved - 1  # nothing was taken
    assert state_digest(m) != before  # (only the deficit / pagedaemon state moved)
    check_invariants(m)


def test_failure_explains_itself_and_moves_no_page() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)
    r = alloc(m, "VM_ALLOC_QUICK")
    assert r.result is None
    assert r.record["moves"] == []
    e = explain(r.record)
    assert e["result"] is None
    assert e["why_null"]  # a non-empty reason
    assert e["recycled_cache"] == []


def test_normal_below_reserve_without_cache_fails() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)  # 47
    deficit = m.pd.vm_pageout_deficit
    assert alloc(m, "VM_ALLOC_NORMAL").result is None
    assert m.pd.vm_pageout_deficit == deficit + 1
    assert m.gd.v_free_count == t.reserved - 1


def test_interrupt_takes_the_last_free_page() -> None:
    lab = Lab()
    m = lab.m
    (p,) = lab.free_run(300, 1)  # free == 1 > 0
    assert alloc(m, "VM_ALLOC_QUICK").result is None  # 1 < 48
    assert alloc(m, "VM_ALLOC_SYSTEM").result is None  # 1 <= interrupt_free_min (17)
    r = alloc(m, "VM_ALLOC_INTERRUPT")
    assert r.result == lab.pfn(p)
    assert m.gd.v_free_count == 0
    deficit = m.pd.vm_pageout_deficit
    assert alloc(m, "VM_ALLOC_INTERRUPT").result is None  # free 0: fails
    assert m.pd.vm_pageout_deficit == deficit + 1
    check_invariants(m)


def test_system_gate_needs_free_above_interrupt_free_min() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    # interrupt_free_min = 83 * 1 / 8 + 7 = 10 + 7 = 17
    assert t.interrupt_free_min == 17
    lab.free_run(100, 18)
    r = alloc(m, "VM_ALLOC_SYSTEM")  # cache 0 and 18 > 17
    assert r.result is not None
    assert m.gd.v_free_count == 17
    assert alloc(m, "VM_ALLOC_SYSTEM").result is None  # 17 > 17 is false
    assert m.gd.v_free_count == 17


def test_system_only_fails_while_cache_pages_exist() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)  # 47: above interrupt_free_min, below reserved
    c = lab.cache(5)
    assert m.gd.cnt[CNT_CACHE] == 1
    assert alloc(m, "VM_ALLOC_SYSTEM").result is None  # cache != 0
    assert m.pg.queue[c] == PQ_CACHE + 5  # SYSTEM never touches the cache
    # with free == reserved the first clause lets SYSTEM through (a free page, not cache)
    lab.free(200)
    r = alloc(m, "VM_ALLOC_SYSTEM")
    assert r.result is not None and r.result != lab.pfn(c)
    assert m.pg.queue[c] == PQ_CACHE + 5
    check_invariants(m)


def test_system_takes_pages_when_the_cache_is_empty_below_reserve() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)  # 47 > 17 and cache == 0
    assert alloc(m, "VM_ALLOC_SYSTEM").result is not None


def test_quick_never_takes_cache_pages() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)
    c = lab.cache(0)
    assert alloc(m, "VM_ALLOC_QUICK").result is None
    assert m.pg.queue[c] == PQ_CACHE + 0
    # above the reserve QUICK still looks only at free queues: colour 0's cache page is
    # skipped and the first free page from colour 0 upward (colour 100) is taken
    first = m.pq.head[PQ_FREE + 100]
    lab.free(500)
    r = alloc(m, "VM_ALLOC_QUICK")
    assert r.result == lab.pfn(first)
    assert m.pg.queue[c] == PQ_CACHE + 0


def test_systhread_adds_system() -> None:
    lab = Lab()
    m = lab.m
    lab.free_run(100, 18)  # below reserve, cache 0, 18 > 17
    assert alloc(m, "VM_ALLOC_QUICK").result is None
    assert alloc(m, "VM_ALLOC_QUICK", systhread=True).result is not None
    # now 17: the SYSTEM clause no longer holds even for a system thread
    assert alloc(m, "VM_ALLOC_QUICK", systhread=True).result is None


def test_gate_reads_the_calling_cpus_snapshot() -> None:
    lab = Lab(cpus=2)
    m, t = lab.m, lab.t
    pages = lab.free_run(100, 10)
    # every page was taken off on CPU 0: its snapshot says 10; CPU 1's snapshot was not
    # refreshed and still shows the boot count (>= reserved)
    assert m.cpus[0].vmstats.v_free_count == 10
    assert m.cpus[1].vmstats.v_free_count >= t.reserved
    assert alloc(m, "VM_ALLOC_QUICK", cpu=0).result is None
    r = alloc(m, "VM_ALLOC_QUICK", cpu=1)
    assert r.result == lab.pfn(pages[0])
    check_invariants(m)


def test_stale_snapshot_with_empty_queues_rolls_up_then_fails() -> None:
    lab = Lab(cpus=2)
    m = lab.m
    # CPU 1 still believes there is plenty of memory, but every free queue is empty
    deficit = m.pd.vm_pageout_deficit
    r = alloc(m, "VM_ALLOC_QUICK", cpu=1)
    assert r.result is None
    # search empty -> vmstats_rollup() (CPU 1's snapshot := global, now 0) -> gate fails
    assert m.cpus[1].vmstats.v_free_count == 0
    assert m.pd.vm_pageout_deficit == deficit + 1
    assert explain(r.record)["rollups"] == 1
    check_invariants(m)


# --- NORMAL recycling the cache (§7.1 found_cache) -------------------------------------


def test_normal_below_reserve_recycles_cache_pages_until_the_reserve_is_reached() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    lab.free_run(100, t.reserved - 3)  # 45 free on colours 100..144
    a = lab.cache(1, oid, 11)
    b = lab.cache(2, oid, 12)
    c = lab.cache(3, oid, 13)
    d = lab.cache(10, oid, 20)
    e = lab.cache(11, oid, 21)
    tfree = m.cpus[0].meter["v_tfree"]
    r = alloc(m, "VM_ALLOC_NORMAL", 0)
    # colour 0.  45 < 48: select_cache(0) -> exact cache 0 empty, wide from 0 -> a (1):
    # recycled (freed to the free head of colour 1), free 46.  Again: b (2) -> 47; c (3)
    # -> 48.  Now 48 >= 48: the combined search: exact free 0 empty, then (mask 1023, one
    # free level, no cache level) free 0, free 1 -> a again.
    assert r.result == lab.pfn(a)
    ex = explain(r.record)
    assert ex["recycled_cache"] == [lab.pfn(a), lab.pfn(b), lab.pfn(c)]
    assert ex["found_queue"] == PQ_FREE + 1
    assert ex["probes"] == (
        [PQ_CACHE + 0, PQ_CACHE + 0, PQ_CACHE + 1]
        + [PQ_CACHE + 0, PQ_CACHE + 0, PQ_CACHE + 1, PQ_CACHE + 2]
        + [PQ_CACHE + 0, PQ_CACHE + 0, PQ_CACHE + 1, PQ_CACHE + 2, PQ_CACHE + 3]
        + [PQ_FREE + 0, PQ_FREE + 0, PQ_FREE + 1]
    )
    # a: allocated, no object (NULL object, pindex 0)
    assert m.pg.queue[a] == PQ_NONE and m.pg.busy[a] == PBUSY_LOCKED and m.pg.obj[a] == 0
    # b and c: recycled to the heads of their free queues, out of the object, unbusied
    for i, color in ((b, 2), (c, 3)):
        assert m.pg.queue[i] == PQ_FREE + color
        assert m.pq.head[PQ_FREE + color] == i
        assert m.pg.obj[i] == 0 and m.pg.busy[i] == 0
    # d and e untouched
    assert m.pg.queue[d] == PQ_CACHE + 10 and m.pg.queue[e] == PQ_CACHE + 11
    obj = m.vmobj.objects[oid]
    assert sorted(obj.pages) == [20, 21] and obj.resident_page_count == 2
    # counters: free 45 + 3 - 1 = 47, cache 5 - 3 = 2; three vm_page_free calls
    assert m.gd.cnt[CNT_FREE] == 47 and m.gd.cnt[CNT_CACHE] == 2
    assert m.cpus[0].meter["v_tfree"] == tfree + 3
    check_invariants(m)


def test_normal_far_below_reserve_recycles_every_cache_page_then_fails() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    lab.free_run(100, t.reserved - 8)  # 40
    a = lab.cache(7, oid, 1)
    b = lab.cache(3, oid, 2)
    c = lab.cache(900, oid, 3)
    deficit = m.pd.vm_pageout_deficit
    r = alloc(m, "VM_ALLOC_NORMAL", 5)
    # colour 5: cache search from 5 upward with wrap: 7 (a), then 900 (c), then 3 (b);
    # free reaches only 43 < 48, the fourth select_cache finds nothing -> NULL
    assert r.result is None
    ex = explain(r.record)
    assert ex["recycled_cache"] == [lab.pfn(a), lab.pfn(c), lab.pfn(b)]
    assert ex["why_null"]
    assert m.pd.vm_pageout_deficit == deficit + 1
    assert m.gd.cnt[CNT_FREE] == 43 and m.gd.cnt[CNT_CACHE] == 0
    for i, color in ((a, 7), (b, 3), (c, 900)):
        assert m.pq.head[PQ_FREE + color] == i
        assert m.pg.obj[i] == 0
    assert len(m.vmobj.objects[oid].pages) == 0
    check_invariants(m)


def test_unrecyclable_cache_page_is_deactivated_and_skipped() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)  # 47
    dirty = lab.cache(1)
    m.pg.valid[dirty] = 0x01
    m.pg.dirty[dirty] = 0x01  # dirty & valid != 0: not recyclable
    good = lab.cache(2)
    adds = m.pq.adds[PQ_INACTIVE + 1]
    r = alloc(m, "VM_ALLOC_NORMAL", 0)
    # select_cache(0): 1 -> dirty: deactivated (inactive tail, adds + 1) and unbusied;
    # 2 -> recycled (free 48); then the free search from 0 finds it on free colour 2
    assert r.result == lab.pfn(good)
    assert m.pg.queue[dirty] == PQ_INACTIVE + 1
    assert m.pq.tail[PQ_INACTIVE + 1] == dirty
    assert m.pq.adds[PQ_INACTIVE + 1] == adds + 1
    assert m.pg.busy[dirty] == 0
    assert explain(r.record)["recycled_cache"] == [lab.pfn(good)]
    check_invariants(m)


def test_normal_above_reserve_may_take_a_cache_page_from_the_combined_search() -> None:
    lab = Lab(cpus=4)  # set_assoc_mask = 1024/4 - 1 = 255
    m, t = lab.m, lab.t
    assert m.pq.set_assoc_mask == 255
    lab.free_run(600, t.reserved + 5)  # free pages only on colours 600..652
    c = lab.cache(3)
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    r = alloc(m, "VM_ALLOC_NORMAL", 0, oid)
    # 4 CPUs: cpuscale 256, CPU 0, pindex 0 -> colour 0.  Levels: free256 (0..255),
    # free512 (256..511), cache256 (0..255) -> colour 3 is found before free1024 would reach
    # 600: fromcache -> recycled to free colour 3 -> retry: free256 from 0 finds it there
    assert r.result == lab.pfn(c)
    ex = explain(r.record)
    assert ex["recycled_cache"] == [lab.pfn(c)]
    assert ex["found_queue"] == PQ_FREE + 3
    assert m.pg.obj[c] == oid
    check_invariants(m)


def test_combined_search_with_two_cpus_reaches_free_1024_before_any_cache_level() -> None:
    lab = Lab(cpus=2)  # set_assoc_mask 511: free512, free1024, then cache512
    m, t = lab.m, lab.t
    assert m.pq.set_assoc_mask == 511
    (first, *_) = lab.free_run(600, t.reserved + 5)
    c = lab.cache(3)
    r = alloc(m, "VM_ALLOC_NORMAL", 0)
    # free512 (0..511) is empty, the next level is free1024 (512..1023): colour 600 wins
    assert r.result == lab.pfn(first)
    assert m.pg.queue[c] == PQ_CACHE + 3
    assert explain(r.record)["recycled_cache"] == []


# --- busied free pages (§6.5) -----------------------------------------------------------


@pytest.mark.parametrize("req", ["VM_ALLOC_QUICK", "VM_ALLOC_NORMAL"])
def test_free_page_busied_by_someone_else_is_deactivated(req: str) -> None:
    lab = Lab()
    m = lab.m
    lab.free_run(300, 60)
    second = lab.free(100)
    first = lab.free(100)  # head of free colour 100
    assert m.call("vm_page_busy_try", {"m": lab.pfn(first)}).result is False  # busied
    adds = m.pq.adds[PQ_INACTIVE + 100]
    r = alloc(m, req, 100)
    assert r.result == lab.pfn(second)
    # the busied page went to the inactive tail, still owned (busied) by the other caller
    assert m.pg.queue[first] == PQ_INACTIVE + 100
    assert m.pq.tail[PQ_INACTIVE + 100] == first
    assert m.pq.adds[PQ_INACTIVE + 100] == adds + 1
    assert m.pg.busy[first] == PBUSY_LOCKED
    check_invariants(m)


def test_soft_busied_free_page_is_skipped_too() -> None:
    lab = Lab()
    m = lab.m
    lab.free_run(300, 60)
    second = lab.free(100)
    first = lab.free(100)
    m.pg.busy[first] = 1  # one soft busy: busy_try(also_m_busy=TRUE) fails
    assert alloc(m, "VM_ALLOC_QUICK", 100).result == lab.pfn(second)
    assert m.pg.queue[first] == PQ_INACTIVE + 100


# --- VM_ALLOC_CPU ------------------------------------------------------------------------


def test_vm_alloc_cpu_picks_that_cpus_color() -> None:
    m = boot(cpus=4)
    # 4 CPUs: cpuscale 1024/4 = 256; CPU 2, pindex 5 -> 2*256 + 5 = 517
    req = VM_ALLOC_NORMAL | VM_ALLOC_CPU(2)
    assert req == 0x20201  # (2 << 16) | 0x200 | 0x1
    head = m.pq.head[PQ_FREE + 517]
    free_cpu0 = m.cpus[0].vmstats.v_free_count
    free_cpu2 = m.cpus[2].vmstats.v_free_count
    r = m.call("vm_page_alloc", {"pindex": 5, "page_req": req}, cpu=0)
    assert r.result == m.first_page + head
    assert explain(r.record)["color"] == 517
    # the accounting is still the calling CPU's
    assert m.cpus[0].vmstats.v_free_count == free_cpu0 - 1
    assert m.cpus[2].vmstats.v_free_count == free_cpu2
    # by name, too; and without it CPU 3's own colour: 3*256 + 5 = 773
    r = m.call("vm_page_alloc", {"pindex": 5, "page_req": "NORMAL|VM_ALLOC_CPU(1)"})
    assert explain(r.record)["color"] == 261  # 256 + 5
    r = m.call("vm_page_alloc", {"pindex": 5, "page_req": "NORMAL"}, cpu=3)
    assert explain(r.record)["color"] == 773
    check_invariants(m)


def test_vm_alloc_cpu_of_a_missing_cpu_is_refused() -> None:
    m = boot(cpus=2)
    before = state_digest(m)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_alloc", {"page_req": VM_ALLOC_NORMAL | VM_ALLOC_CPU(5)})
    assert state_digest(m) == before


# --- collisions --------------------------------------------------------------------------


def test_null_ok_collision_returns_null_and_the_page_goes_back_to_the_free_head() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    x = alloc(m, "VM_ALLOC_NORMAL", 3, oid).result
    h = m.pq.head[PQ_FREE + 3]  # what the next allocation at colour 3 selects
    m.pg.flags[h] = PG_REFERENCED
    free0 = m.gd.v_free_count
    tfree = m.cpus[0].meter["v_tfree"]
    deficit = m.pd.vm_pageout_deficit
    r = alloc(m, "VM_ALLOC_NORMAL|VM_ALLOC_NULL_OK", 3, oid)
    assert r.result is None
    assert m.pq.head[PQ_FREE + 3] == h  # freed again: PQ_FREE inserts at the head
    assert m.pg.obj[h] == 0 and m.pg.busy[h] == 0
    assert m.pg.flags[h] == 0  # vm_page_alloc cleared the flags before the insert
    assert m.gd.v_free_count == free0
    assert m.cpus[0].meter["v_tfree"] == tfree + 1
    assert m.pd.vm_pageout_deficit == deficit  # a collision is not an allocation failure
    assert m.vmobj.objects[oid].pages[3] == x - m.first_page
    assert explain(r.record)["why_null"]
    check_invariants(m)


def test_collision_without_null_ok_panics_and_changes_nothing() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    alloc(m, "VM_ALLOC_NORMAL", 3, oid)
    before = state_digest(m)
    with pytest.raises(KernelPanic) as exc:
        alloc(m, "VM_ALLOC_NORMAL", 3, oid)
    assert "PAGE RACE" in str(exc.value)
    assert state_digest(m) == before


def test_collision_without_null_ok_but_failing_gate_returns_null() -> None:
    """The kernel only reaches the insert (and its panic) with a page in hand; a request
    that fails its free-count gate returns NULL first."""
    lab = Lab()
    m, t = lab.m, lab.t
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    lab.free_run(100, t.reserved)
    assert alloc(m, "VM_ALLOC_QUICK", 3, oid).result is not None  # free now 47
    deficit = m.pd.vm_pageout_deficit
    assert alloc(m, "VM_ALLOC_QUICK", 3, oid).result is None
    assert m.pd.vm_pageout_deficit == deficit + 1


def test_collision_panics_when_recycling_the_cache_would_reach_the_reserve() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    lab.free_run(100, t.reserved + 1)
    assert alloc(m, "VM_ALLOC_NORMAL", 3, oid).result is not None  # free 48
    assert alloc(m, "VM_ALLOC_NORMAL", 4, oid).result is not None  # free 47
    lab.cache(7)  # one recycle lifts free to 48: the kernel would get a page, then panic
    before = state_digest(m)
    with pytest.raises(KernelPanic):
        alloc(m, "VM_ALLOC_NORMAL", 3, oid)
    assert state_digest(m) == before


def test_collision_with_too_little_cache_recycles_it_and_returns_null() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    lab.free_run(100, t.reserved - 1)
    assert alloc(m, "VM_ALLOC_INTERRUPT", 3, oid).result is not None  # free 46
    c = lab.cache(7)  # one recycle reaches only 47 < 48
    deficit = m.pd.vm_pageout_deficit
    assert alloc(m, "VM_ALLOC_NORMAL", 3, oid).result is None
    assert m.pg.queue[c] == PQ_FREE + 7  # recycled on the way to the NULL
    assert m.pd.vm_pageout_deficit == deficit + 1
    check_invariants(m)


def test_collision_panic_follows_the_systhread_system_clause() -> None:
    lab = Lab()
    m = lab.m
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    lab.free_run(100, 19)
    assert alloc(m, "VM_ALLOC_INTERRUPT", 3, oid).result is not None  # free 18 > 17
    assert alloc(m, "VM_ALLOC_QUICK", 3, oid).result is None  # gate shut: NULL
    before = state_digest(m)
    with pytest.raises(KernelPanic):  # SYSTEM added: gate open, page in hand, collision
        alloc(m, "VM_ALLOC_QUICK", 3, oid, systhread=True)
    assert state_digest(m) == before


# --- pagedaemon_wakeup from the allocator ------------------------------------------------


def test_allocation_wakes_the_pagedaemon_only_below_paging_start() -> None:
    m = boot()
    r = alloc(m, "VM_ALLOC_NORMAL")
    # a fresh 16 MiB machine is far above v_paging_start (3 * 83 = 249): nothing
    assert m.pd.vm_pages_needed == 0
    assert not [e for e in r.record["events"] if e["event"] == "wakeup"]
    lab = Lab()
    m = lab.m
    lab.free_run(100, 200)  # 200 < 249: vm_paging_start(0) holds
    r = alloc(m, "VM_ALLOC_NORMAL")
    assert r.result is not None
    assert m.pd.vm_pages_needed == 1  # 0 <= 1 -> set to 1 and wakeup(&vm_pages_needed)
    assert {"event": "wakeup", "channel": "vm_pages_needed"} in r.record["events"]


# --- vm_page_grab (§7.3) -----------------------------------------------------------------


def test_grab_allocates_when_absent() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    r = m.call("vm_page_grab", {"object": oid, "pindex": 9, "flags": "VM_ALLOC_NORMAL"})
    i = r.result - m.first_page
    assert m.pg.busy[i] == PBUSY_LOCKED and m.pg.queue[i] == PQ_NONE
    assert m.pg.obj[i] == oid and m.pg.pindex[i] == 9
    assert m.pg.valid[i] == 0  # no ZERO: contents not declared valid
    r = m.call("vm_page_grab", {"object": oid, "pindex": 10, "flags": "NORMAL|ZERO"})
    assert m.pg.valid[r.result - m.first_page] == 0xFF
    r = m.call("vm_page_grab", {"object": oid, "pindex": 11, "flags": "NORMAL|FORCE_ZERO"})
    assert m.pg.valid[r.result - m.first_page] == 0xFF
    check_invariants(m)


def _resident_unbusied(m: Machine, oid: int, pindex: int) -> int:
    pfn = m.call("vm_page_alloc", {"object": oid, "pindex": pindex}).result
    m.call("vm_page_activate", {"m": pfn})
    m.call("vm_page_wakeup", {"m": pfn})
    i: int = pfn - m.first_page
    return i


def test_grab_returns_the_resident_page_hard_busied() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    i = _resident_unbusied(m, oid, 4)
    q = m.pg.queue[i]
    assert q == PQ_ACTIVE + m.pg.pc[i]
    free0 = m.gd.v_free_count
    r = m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "VM_ALLOC_NORMAL"})
    assert r.result == m.first_page + i
    assert m.pg.busy[i] == PBUSY_LOCKED
    assert m.pg.queue[i] == q  # grab does not move it
    assert m.pg.valid[i] == 0
    assert m.gd.v_free_count == free0  # nothing allocated
    check_invariants(m)


@pytest.mark.parametrize(
    ("valid", "flags", "expected"),
    [
        (0x00, "NORMAL|ZERO", 0xFF),  # not valid: ZERO zero-fills
        (0x0F, "NORMAL|ZERO", 0x0F),  # already (partly) valid: ZERO does nothing
        (0x0F, "NORMAL|FORCE_ZERO", 0xFF),  # FORCE_ZERO always
        (0x0F, "NORMAL", 0x0F),
    ],
)
def test_grab_zero_rules_on_a_resident_page(valid: int, flags: str, expected: int) -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    i = _resident_unbusied(m, oid, 4)
    m.pg.valid[i] = valid
    m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": flags})
    assert m.pg.valid[i] == expected


@pytest.mark.parametrize(
    ("hold", "release", "held_word"),
    [
        # a hard busy: vm_page_busy_try sets PBUSY_LOCKED (0x80000000)
        ("vm_page_busy_try", "vm_page_wakeup", PBUSY_LOCKED),
        # one soft busy: the lookup's also_m_busy fails on it, and so sleep_busy sleeps
        ("vm_page_sbusy_hold", "vm_page_sbusy_drop", 1),
    ],
)
def test_grab_of_a_busy_page_without_retry_sleeps_once_then_dereferences_null(
    hold: str, release: str, held_word: int
) -> None:
    """Spec §7.3: the lookup fails, vm_page_sleep_busy(m, TRUE, "pgrbwt") sleeps once,
    then without VM_ALLOC_RETRY the source sets m = NULL and reads m->valid."""
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    i = _resident_unbusied(m, oid, 4)
    pfn = m.first_page + i
    m.call(hold, {"m": pfn}, thread=2)
    assert m.pg.busy[i] == held_word
    assert not m.pg.flags[i] & PG_REFERENCED
    queue, free0 = m.pg.queue[i], m.gd.v_free_count
    r = m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "VM_ALLOC_NORMAL"}, thread=1)
    # the sleep: its interlock set WANTED (0x40000000) and PG_REFERENCED, then tsleep(m)
    assert r.result is None
    assert r.blocked == {"thread": 1, "channel": f"page:{pfn}", "wmesg": "pgrbwt", "timo": 0}
    assert m.pg.busy[i] == held_word | PBUSY_WANTED  # 0xC0000000, or 0x40000001
    check_invariants(m)
    r = m.call(release, {"m": pfn}, thread=2)
    # vm_page_wakeup clears LOCKED|WANTED; sbusy_drop: 0x40000001 - 1 == PBUSY_WANTED, so
    # it clears WANTED too; both wake the grab, which resumes into the NULL dereference
    (resumed,) = r.record["resumed"]
    assert resumed["tid"] == 1 and resumed["fn"] == "vm_page_grab"
    assert resumed["error"].startswith("panic: vm_page_grab: NULL pointer dereference")
    assert "result" not in resumed
    assert m.sched.threads[1].state == "idle"
    assert m.sched.threads[1].last_error == resumed["error"]
    # what the sleep left: PG_REFERENCED; the page is otherwise as the holder left it
    assert m.pg.busy[i] == 0
    assert m.pg.flags[i] & PG_REFERENCED
    assert m.pg.queue[i] == queue and m.pg.obj[i] == oid and m.pg.valid[i] == 0
    assert m.gd.v_free_count == free0  # nothing allocated
    check_invariants(m)


def test_grab_without_retry_of_a_page_with_only_wanted_dereferences_null_at_once() -> None:
    """Busy word PBUSY_WANTED alone: the lookup fails (any bit counts with also_m_busy),
    vm_page_sleep_busy returns without sleeping (neither LOCKED nor a soft count), and the
    NULL dereference follows at once: refused before anything changed."""
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    i = _resident_unbusied(m, oid, 4)
    m.pg.busy[i] = PBUSY_WANTED
    before = state_digest(m)
    with pytest.raises(KernelPanic, match="NULL pointer dereference"):
        m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "VM_ALLOC_NORMAL"}, thread=1)
    assert state_digest(m) == before
    assert 1 not in m.sched.threads


def test_grab_of_a_busy_page_with_retry_sleeps_until_the_page_is_released() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    i = _resident_unbusied(m, oid, 4)
    pfn = m.first_page + i
    m.pg.busy[i] = PBUSY_LOCKED  # some other caller holds it
    free0 = m.gd.v_free_count
    r = m.call("vm_page_grab", {"object": oid, "pindex": 4, "flags": "NORMAL|RETRY"}, thread=1)
    # vm_page_sleep_busy(m, TRUE, "pgrbwt"): WANTED and PG_REFERENCED set, then tsleep(m)
    assert r.result is None
    assert r.blocked == {"thread": 1, "channel": f"page:{pfn}", "wmesg": "pgrbwt", "timo": 0}
    assert m.pg.busy[i] == PBUSY_LOCKED | PBUSY_WANTED
    assert m.pg.flags[i] & PG_REFERENCED
    check_invariants(m)
    r = m.call("vm_page_wakeup", {"m": pfn}, thread=2)  # the holder lets go
    assert r.record["resumed"] == [
        {"tid": 1, "fn": "vm_page_grab", "result": pfn, "timed_out": False}
    ]
    assert m.pg.busy[i] == PBUSY_LOCKED  # hard-busied again, by the grab
    assert m.gd.v_free_count == free0  # the resident page, nothing allocated
    check_invariants(m)


def test_grab_failing_without_retry_waits_once_and_returns_null() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    ticks, deficit, waiting = m.sched.ticks, m.pd.vm_pageout_deficit, m.pd.vm_pages_waiting
    r = m.call("vm_page_grab", {"object": oid, "pindex": 1, "flags": "VM_ALLOC_QUICK"}, thread=1)
    assert m.pd.vm_pageout_deficit == deficit + 1
    # vm_wait(0): 47 free is below free_min: one sleep of hz (100) ticks
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": 100}
    assert m.pd.vm_pages_waiting == waiting + 1
    r = m.call("tick", {"n": 99})
    assert m.sched.threads[1].state == "sleeping"
    r = m.call("tick", {"n": 1})
    assert m.sched.ticks == ticks + 100
    resumed = [e for e in r.record["events"] if e["event"] == "resumed"]
    assert resumed == [
        {"event": "resumed", "tid": 1, "fn": "vm_page_grab", "result": None, "timed_out": True}
    ]
    assert m.pd.vm_pageout_deficit == deficit + 1  # no second allocation attempt
    assert 1 not in m.vmobj.objects[oid].pages
    check_invariants(m)


def test_grab_needs_a_class_flag() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 0}).result
    with pytest.raises(KernelPanic):
        m.call("vm_page_grab", {"object": oid, "pindex": 1, "flags": "VM_ALLOC_ZERO"})


# --- vm_page_alloczwq / vm_page_freezwq (§7.2) ------------------------------------------


def test_alloczwq_returns_a_wired_unbusied_unqueued_page() -> None:
    m = boot()
    wire_adj = m.cpus[0].adj.cnt[CNT_WIRE]
    wire_gd = m.gd.cnt[CNT_WIRE]
    r = m.call("vm_page_alloczwq", {"pindex": 77, "flags": "VM_ALLOC_NORMAL"})
    i = r.result - m.first_page
    assert m.pg.wire[i] == 1
    assert m.pg.busy[i] == 0
    assert m.pg.queue[i] == PQ_NONE
    assert m.pg.obj[i] == 0 and m.pg.pindex[i] == 77
    assert m.pg.valid[i] == 0  # no ZERO
    # wiring 0 -> 1 is counted in gd_vmstats_adj only
    assert m.cpus[0].adj.cnt[CNT_WIRE] == wire_adj + 1
    assert m.gd.cnt[CNT_WIRE] == wire_gd
    r = m.call("vm_page_alloczwq", {"pindex": 78, "flags": "NORMAL|ZERO"})
    assert m.pg.valid[r.result - m.first_page] == 0xFF
    r = m.call("vm_page_alloczwq", {"pindex": 79, "flags": "NORMAL|FORCE_ZERO"})
    assert m.pg.valid[r.result - m.first_page] == 0xFF
    check_invariants(m)


def test_freezwq_passes_through_the_inactive_tail_to_the_free_head() -> None:
    m = boot()
    pfn = m.call("vm_page_alloczwq", {"pindex": 77, "flags": "NORMAL|ZERO"}).result
    i = pfn - m.first_page
    c = m.pg.pc[i]
    adds = m.pq.adds[PQ_INACTIVE + c]
    inactive = m.gd.v_inactive_count
    free0 = m.gd.v_free_count
    wire_adj = m.cpus[0].adj.cnt[CNT_WIRE]
    tfree = m.cpus[0].meter["v_tfree"]
    m.call("vm_page_freezwq", {"m": pfn})
    # unwire 1 -> 0 deactivates to the inactive tail (adds + 1), then the free moves it
    assert m.pq.adds[PQ_INACTIVE + c] == adds + 1
    assert m.gd.v_inactive_count == inactive  # +1 then -1
    assert m.pg.queue[i] == PQ_FREE + c
    assert m.pq.head[PQ_FREE + c] == i
    assert m.gd.v_free_count == free0 + 1
    assert m.pg.wire[i] == 0 and m.pg.busy[i] == 0
    assert m.pg.valid[i] == 0  # vm_page_free clears valid
    assert m.cpus[0].adj.cnt[CNT_WIRE] == wire_adj - 1
    assert m.cpus[0].meter["v_tfree"] == tfree + 1
    check_invariants(m)


def test_alloczwq_failing_without_retry_waits_once() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    lab.free_run(100, t.reserved - 1)
    ticks = m.sched.ticks
    r = m.call("vm_page_alloczwq", {"pindex": 1, "flags": "VM_ALLOC_QUICK"}, thread=1)
    assert r.blocked is not None and r.blocked["timo"] == 100  # one vm_wait(0): hz ticks
    r = m.call("tick", {"n": 100})
    assert m.sched.ticks == ticks + 100
    assert [e for e in r.record["events"] if e["event"] == "resumed"] == [
        {"event": "resumed", "tid": 1, "fn": "vm_page_alloczwq", "result": None, "timed_out": True}
    ]
    assert m.gd.v_free_count == t.reserved - 1  # nothing taken


def test_alloczwq_with_retry_on_an_exhausted_machine_keeps_waiting() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    run = lab.free_run(100, t.reserved - 1)  # 47 < 48: QUICK fails
    deficit = m.pd.vm_pageout_deficit
    r = m.call(
        "vm_page_alloczwq", {"pindex": 1, "flags": "VM_ALLOC_QUICK|VM_ALLOC_RETRY"}, thread=1
    )
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": 100}
    # each hz slice ends in another failed vm_page_alloc and another vm_wait(0)
    for k in (2, 3):
        r = m.call("tick", {"n": 100})
        assert [e["tid"] for e in r.record["events"] if e["event"] == "sleep"] == [1]
        assert m.pd.vm_pageout_deficit == deficit + k
    # one page back on free colour 200 (free 48 == reserved; put there directly, and at
    # 48 < 83 + 16 vm_page_free_wakeup would wake nobody anyway); at the next timeout the
    # retry succeeds: colour 1 (pindex 1), one level of all colours upward from 1 ->
    # colour 100, the first page of the run
    lab.free(200)
    assert m.sched.threads[1].state == "sleeping"
    r = m.call("tick", {"n": 100})
    resumed = [e for e in r.record["events"] if e["event"] == "resumed"]
    assert resumed == [
        {
            "event": "resumed",
            "tid": 1,
            "fn": "vm_page_alloczwq",
            "result": lab.pfn(run[0]),
            "timed_out": True,
        }
    ]
    p = run[0]
    assert m.pg.wire[p] == 1 and m.pg.busy[p] == 0 and m.pg.queue[p] == PQ_NONE
    assert m.pg.pindex[p] == 1
    assert m.gd.v_free_count == t.reserved - 1  # 48 - 1
    check_invariants(m)


def test_freezwq_of_a_page_wired_twice_panics_and_changes_nothing() -> None:
    m = boot()
    pfn = m.call("vm_page_alloczwq", {"pindex": 1, "flags": "NORMAL"}).result
    i = pfn - m.first_page
    m.pg.wire[i] = 2
    before = state_digest(m)
    with pytest.raises(KernelPanic):
        m.call("vm_page_freezwq", {"m": pfn})
    assert state_digest(m) == before


# --- vm_wait (§13.1) ---------------------------------------------------------------------


def _free_and_cache(lab: Lab, free: int, cache: int) -> None:
    lab.free_run(0, free)
    for k in range(cache):
        lab.cache(free + k)


def test_vm_wait_trip_point_for_nice_0() -> None:
    # 16 MiB: free_min 83, paging_wait 166; d = (166 - 83 - 1) >> 1 = 41;
    # vm_wait passes nice + 1 = 1: k = (1 + 20) * 41 / 40 = 861 / 40 = 21
    # -> sleeps iff free + cache < 83 + 21 = 104 (or free < reserved 48)
    lab = Lab()
    m, t = lab.m, lab.t
    assert (t.free_min, t.paging_wait) == (83, 166)
    _free_and_cache(lab, 60, 44)  # 104: no sleep
    before = state_digest(m)
    m.call("vm_wait", {"timo": 0})
    assert state_digest(m) == before

    lab = Lab()
    m = lab.m
    _free_and_cache(lab, 60, 43)  # 103: sleeps
    ticks = m.sched.ticks
    assert m.pd.vm_pages_needed == 0 and m.pd.vm_pages_waiting == 0
    r = m.call("vm_wait", {"timo": 0}, thread=1)
    assert m.pd.vm_pages_needed == 1  # 0 <= 1: bumped
    assert m.pd.vm_pages_waiting == 1
    # timo 0 -> hz (100)
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": 100}
    r = m.call("vm_wait", {"timo": 7}, thread=2)
    assert m.pd.vm_pages_needed == 2  # 1 <= 1: bumped
    assert m.pd.vm_pages_waiting == 2
    assert r.blocked is not None and r.blocked["timo"] == 7
    r = m.call("vm_wait", {"timo": 3}, thread=3)
    assert m.pd.vm_pages_needed == 2  # 2 > 1: left alone
    assert m.pd.vm_pages_waiting == 3
    assert r.blocked is not None and r.blocked["timo"] == 3
    assert m.sched.ticks == ticks  # sleeping takes no time by itself
    check_invariants(m)
    # each sleep times out on its own: thread 3 at +3, thread 2 at +7, thread 1 at +100
    order = []
    for n in (3, 4, 93):
        r = m.call("tick", {"n": n})
        order += [(e["tid"], e["timed_out"]) for e in r.record["events"] if e["event"] == "resumed"]
    assert order == [(3, True), (2, True), (1, True)]
    assert m.sched.ticks == ticks + 100
    assert not m.sched.sleepq
    check_invariants(m)


def test_vm_wait_nice_shifts_the_trip_point() -> None:
    lab = Lab()
    m = lab.m
    _free_and_cache(lab, 60, 43)  # 103
    before = state_digest(m)
    # nice -1 -> vm_paging_min_nice(0): k = 0, trip point 83: 103 is fine, no sleep
    m.call("vm_wait", {"timo": 5}, nice=-1)
    assert state_digest(m) == before

    lab = Lab()
    m = lab.m
    _free_and_cache(lab, 60, 63)  # 123
    # nice 19 -> nice + 1 = 20: k = 40 * 41 / 40 = 41, trip point 83 + 41 = 124 > 123
    r = m.call("vm_wait", {"timo": 5}, nice=19, thread=1)
    assert r.blocked is not None and r.blocked["timo"] == 5
    assert m.pd.vm_pages_waiting == 1
    assert m.sched.threads[1].nice == 19
    # nice 18 -> 19: k = 39 * 41 / 40 = 1599 / 40 = 39, trip point 122 <= 123: no sleep
    before = state_digest(m)
    r = m.call("vm_wait", {"timo": 5}, nice=18, thread=2)
    assert r.blocked is None
    assert state_digest(m) == before


def test_vm_wait_sleeps_below_reserved_free_even_with_plenty_of_cache() -> None:
    lab = Lab()
    m, t = lab.m, lab.t
    _free_and_cache(lab, t.reserved - 1, 200)  # free 47 < 48, free + cache 247
    r = m.call("vm_wait", {"timo": 1})
    assert r.blocked == {"thread": 0, "channel": "v_free_count", "wmesg": "vmwait", "timo": 1}
    assert m.pd.vm_pages_waiting == 1
    r = m.call("tick", {"n": 1}, thread=5)  # thread 0 sleeps; another thread ticks
    assert [e["tid"] for e in r.record["events"] if e["event"] == "resumed"] == [0]


def test_quick_alloc_flag_constants() -> None:
    # sanity on the request encoding used above (spec §1.6)
    assert VM_ALLOC_QUICK == 0x10 and VM_ALLOC_NULL_OK == 0x40

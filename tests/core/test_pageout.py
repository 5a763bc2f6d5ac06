"""Tests for app.core.pageout: the pageout daemon of spec §15 (with §4.2 thresholds, §4.3
predicates, §8 queue transitions and §13 memory pressure).

Machines (worked out by hand from spec §2.2–§2.4 and §4.2):

``MachineConfig.from_size("64MiB")``: phys_avail [0x1000, 0x4000000).
  total = 0x4000000 - 0x1000 = 67104768 bytes (16383 pages); first_page 1; page_range 16383;
  nbits = 0x4000 -> 2048 bytes -> bitmap 4096; end = 0x3FFF000;
  npages = (67104768 - 16383 * 128) / 4096 = 65007744 / 4096 = 15871;
  new_end = trunc_page(0x3FFF000 - 2097024) = 15871 * 4096 -> pfn 1 .. 15870 added:
  P = v_page_count = 15870.
  vm_low_phys_reserved = min(256 MiB, 67104768 / 4 = 0xFFFC00) -> pfn 1 .. 0xFFF (4095)
  are DMA pages; free 15870 - 4095 = 11775.  dma_reserved = min(128 MiB, 67104768 / 16 =
  4194048) -> keep 1023 pages; return (2048, 2048) then (1024, 1024): 3072 pages.
  F = 11775 + 3072 = 14847; v_dma_pages = wired = 4095 - 3072 = 1023.
  v_free_min = 64 + 15870 / 200 = 64 + 79 = 143; v_free_reserved = 143 * 4 / 8 + 7 = 78;
  v_free_severe = 71; v_free_target = v_paging_wait = 286; v_paging_start = 429;
  v_paging_target1 = 572; v_paging_target2 = 715; v_inactive_target = 14847 / 16 = 927;
  vm_max_launder = 16383 / 256 + 16 = 63 + 16 = 79; vm_pageout_stats_scan =
  max(16, 14847 / 1024 / 16 = 0) = 16; vm_pageout_stats_ticks = hz 100 / 10 = 10.
  Free pages are pfn 1024 .. 15870 (14847 pages): 14 whole 1024-frame blocks give every
  colour 14 pages, the partial block 15360 .. 15870 (511 pages) one more to 511 colours.

``MachineConfig.from_size("4MiB")``: total 0x3FF000 = 4190208 (1023 pages); npages =
  (4190208 - 1023 * 128) / 4096 = 991; pfn 1 .. 990: P = 990.  Reserve bound 4190208 / 4 =
  0xFFC00 -> pfn 1 .. 255 (255 DMA pages), free 735; keep 4190208 / 16 / 4096 = 63 pages;
  return (128, 128), (64, 64) = 192 -> F = 927.  v_free_min = 64 + 990 / 200 = 68;
  v_free_reserved = 34 + 7 = 41; v_free_target = v_paging_wait = 136; v_paging_start = 204;
  v_paging_target1 = 272; v_paging_target2 = 340; v_inactive_target = 927 / 16 = 57.

Objects are created with ``pg_color = 0``; with one CPU ``vm_page_alloc(object, pindex)``
asks for colour ``pindex % 1024`` (spec §6.1) and takes that free queue's head when it has
one.  Queue numbers: PQ_FREE 1 + c, PQ_INACTIVE 1025 + c, PQ_ACTIVE 2049 + c, PQ_CACHE
3073 + c, PQ_HOLD 4097 + c.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import numpy as np
import pytest

import app.core.vm_pageout as pageout_module
from app.core.config import MachineConfig
from app.core.constants import (
    PBUSY_LOCKED,
    PG_MAPPED,
    PG_REFERENCED,
    PG_SWAPPED,
    PG_WINATCFLS,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_NONE,
    VM_ALLOC_NORMAL,
)
from app.core.errors import KernelPanic
from app.core.invariants import check_invariants, state_digest
from app.core.kern_synch import Sleep, curthread_is_pagedaemon
from app.core.machine import Machine
from app.core.objects import ObjType, VmObject
from app.core.pmap import (
    pmap_clear_reference,
    pmap_enter,
    pmap_page_is_mapped,
    pmap_touch,
    pmap_ts_referenced,
)
from app.core.state import Trace
from app.core.sysctl import sysctl_get, sysctl_set
from app.core.vm_meter import vmstats_rollup
from app.core.vm_page.alloc import vm_page_alloc
from app.core.vm_page.busy import vm_page_busy_try, vm_page_wakeup
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.object import vm_object_allocate
from app.core.vm_page.pagestate import (
    vm_page_cache,
    vm_page_dirty,
    vm_page_hold,
    vm_page_need_commit,
)
from app.core.vm_page.queues import (
    queue_pages,
    vm_page_activate,
    vm_page_deactivate,
    vm_page_unqueue_nowakeup,
    vm_page_wire,
)
from app.core.vm_page2 import pfn_of
from app.core.vm_pageout import (
    PAGEDAEMON_TID,
    TARGET1,
    TARGET2,
    _pageout_loop,
    _phase_active,
    _phase_inactive,
    _tunable,
    pqaverage,
    vm_pageout_page,
    vm_pageout_page_stats,
    vm_pageout_scan_active,
    vm_pageout_scan_cache,
    vm_pageout_scan_hold,
    vm_pageout_scan_inactive,
)
from app.lab.machine_views import pageout_view, pmap_view

ALLOW_ACTIVE, TRY_TO_CACHE = 1, 2  # the vm_pageout_page flags (pageout.py)


# ---------------------------------------------------------------------------- helpers
def boot(size: str = "64MiB", *, pagedaemon: bool = False) -> Machine:
    m = Machine.boot(MachineConfig.from_size(size, pagedaemon=pagedaemon))
    m.select_cpu(0)
    return m


def new_object(m: Machine, objtype: ObjType = ObjType.OBJT_DEFAULT) -> VmObject:
    return m.vmobj.objects[vm_object_allocate(m, objtype, 1 << 20, 0)]


def alloc(m: Machine, obj: VmObject, pindex: int, *, valid: int = 0xFF) -> int:
    """A hard-busied page of ``obj`` at ``pindex`` on PQ_NONE (valid, clean)."""
    i = vm_page_alloc(m, obj, pindex, VM_ALLOC_NORMAL)
    assert i >= 0
    m.pg.valid[i] = valid
    return i


def inactive(
    m: Machine,
    obj: VmObject,
    pindex: int,
    *,
    dirty: bool = False,
    busy: bool = False,
    valid: int = 0xFF,
) -> int:
    """A page at the tail of its inactive queue (hard-busied iff ``busy``)."""
    i = alloc(m, obj, pindex, valid=valid)
    if dirty:
        vm_page_dirty(m, i)
    vm_page_deactivate(m, i)
    if not busy:
        vm_page_wakeup(m, i)
    return i


def active(
    m: Machine, obj: VmObject, pindex: int, *, act: int | None = None, dirty: bool = False
) -> int:
    """An unbusied page at the tail of its active queue."""
    i = alloc(m, obj, pindex)
    if dirty:
        vm_page_dirty(m, i)
    vm_page_activate(m, i)
    if act is not None:
        m.pg.act[i] = act
    vm_page_wakeup(m, i)
    return i


def base(m: Machine, i: int) -> int:
    """The page's base queue (PQ_NONE, PQ_FREE, ...)."""
    q = int(m.pg.queue[i])
    return q - int(m.pg.pc[i]) if q else PQ_NONE


def touch(m: Machine, i: int, pmap: int, *, write: bool = False) -> None:
    """Map the page in ``pmap`` and access it (the pte's A bit, and M on a write)."""
    pmap_enter(m, i, pmap, write)
    pmap_touch(m, i, pmap, write)


def meter(m: Machine, name: str) -> int:
    value: int = m.cpus[0].meter[name]
    return value


# ============================================================================ §15.1 PQAVERAGE
@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, 2),  # (0 + 1023) / 512 + 1 = 1 + 1
        (1, 3),  # (1 + 1023) / 512 + 1 = 1024 / 512 + 1 = 2 + 1
        (511, 3),  # 1534 / 512 = 2 -> 3
        (512, 3),  # 1535 / 512 = 2 -> 3
        (513, 4),  # 1536 / 512 = 3 -> 4
        (1024, 4),  # 2047 / 512 = 3 -> 4
        (1025, 5),  # 2048 / 512 = 4 -> 5
        (-1, -3),  # (-1 - 1023) / 512 - 1 = -1024 / 512 - 1 = -2 - 1
        (-512, -3),  # -1535 / 512 = -2.998 -> C truncates to -2 -> -3 (floor would be -4)
        (-513, -4),  # -1536 / 512 = -3 -> -4
        (-1024, -4),  # -2047 / 512 = -3.998 -> -3 -> -4 (floor: -5)
        (-1025, -5),  # -2048 / 512 = -4 -> -5
    ],
)
def test_pqaverage(n: int, expected: int) -> None:
    assert pqaverage(n) == expected


# ============================================================================ §15.3 scan_inactive
def _launder_budget(m: Machine, vm_max_launder: int, pass_: int) -> int:
    """The ``max_launder`` scan_inactive hands to vm_pageout_page, captured with a spy."""
    obj = new_object(m)
    i = inactive(m, obj, 300)
    seen: list[int] = []
    real = pageout_module.vm_pageout_page

    def spy(m: Machine, i: int, budget: list[int], pass_: int, flags: int) -> int:
        seen.append(budget[0])
        return real(m, i, budget, pass_, flags)

    m.pd.vm_max_launder = vm_max_launder
    with patch.object(pageout_module, "vm_pageout_page", spy):
        vm_pageout_scan_inactive(m, pass_, int(m.pg.pc[i]), 1)
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    ("vm_max_launder", "pass_", "expected"),
    [
        (80, 0, 1),  # 80/1024 = 0; (0+9)/10 = 0; <= 1 -> 1; 1 >= 80/16 = 5? no -> 1
        (80, 1, 1),  # 0 * 2 = 0 -> same
        (20480, 0, 2),  # 20; (20+9)/10 = 2; 2 >= 1280? no -> 2
        (20480, 1, 4),  # 20 * 2 = 40; (40+9)/10 = 4 -> 4
        (102400, 0, 10),  # 100; 109/10 = 10
        (102400, 1, 20),  # 200; 209/10 = 20
        (16, 0, 2),  # 0 -> 1; 1 >= 16/16 = 1 -> 16/16 + 1 = 2 (the "cap" raises it)
        (31, 0, 2),  # 1 >= 31/16 = 1 -> 1 + 1 = 2
        (32, 0, 1),  # 1 >= 32/16 = 2? no -> 1
        (10, 0, 1),  # 1 >= 10/16 = 0 -> 0 + 1 = 1
    ],
)
def test_scan_inactive_max_launder(vm_max_launder: int, pass_: int, expected: int) -> None:
    m = boot()
    assert _launder_budget(m, vm_max_launder, pass_) == expected


def test_scan_inactive_maxscan_counts_skipped_busy_pages() -> None:
    # maxscan = (lcnt + 9) / 10 + 1: busied pages are skipped (left in place) but each
    # visit counts in v_pdpages.  Colour 40 gets pindex 40, 1064, 2088, ... (40 + 1024 k).
    m = boot()
    obj = new_object(m)
    pages = [inactive(m, obj, 40 + 1024 * k, busy=True) for k in range(11)]
    assert {int(m.pg.pc[i]) for i in pages} == {40}
    q = PQ_INACTIVE + 40
    assert m.pq.lcnt[q] == 11
    before = meter(m, "v_pdpages")
    assert vm_pageout_scan_inactive(m, 0, 40, 100) == 0
    assert meter(m, "v_pdpages") - before == 3  # (11 + 9) / 10 + 1 = 2 + 1
    assert queue_pages(m, q) == pages  # left in place
    # with one page fewer: (10 + 9) / 10 + 1 = 1 + 1 = 2
    vm_page_unqueue_nowakeup(m, pages[-1])
    before = meter(m, "v_pdpages")
    vm_pageout_scan_inactive(m, 0, 40, 100)
    assert meter(m, "v_pdpages") - before == 2
    # a quota of 0 visits nothing (quota - delta > 0 fails at once)
    before = meter(m, "v_pdpages")
    vm_pageout_scan_inactive(m, 0, 40, 0)
    assert meter(m, "v_pdpages") == before
    for i in pages:
        vm_page_wakeup(m, i)
    check_invariants(m)


def test_scan_inactive_stops_when_target2_is_met() -> None:
    # An idle machine is far above v_paging_target2: after the first page handled
    # scan_inactive returns max(delta, quota) = max(1, 3) = 3 and stops.
    m = boot()
    obj = new_object(m)
    pages = [inactive(m, obj, 41 + 1024 * k) for k in range(3)]
    assert vm_pageout_scan_inactive(m, 0, 41, 3) == 3
    assert base(m, pages[0]) == PQ_CACHE  # clean and valid -> cached (step 7)
    assert [base(m, i) for i in pages[1:]] == [PQ_INACTIVE, PQ_INACTIVE]
    check_invariants(m)


def test_scan_inactive_memuse_mode_3_sends_dirty_pages_straight_to_the_laundry() -> None:
    # vm.pageout_memuse_mode >= 3 sets WINATCFLS before vm_pageout_page: a dirty page is
    # laundered on its first visit (no second chance) and, TRY_TO_CACHE being set, cached.
    m = boot()
    sysctl_set(m, "vm.pageout_memuse_mode", 3)
    obj = new_object(m)
    i = inactive(m, obj, 42, dirty=True)
    assert vm_pageout_scan_inactive(m, 0, 42, 1) == 1  # one page laundered; quota 1 -> max(1, 1)
    assert base(m, i) == PQ_CACHE
    assert m.pg.dirty[i] == 0
    check_invariants(m)


# ============================================================================ §15.3 vm_pageout_page
def test_wired_page_is_unqueued() -> None:
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 5, busy=True)
    vm_page_wire(m, i)
    assert vm_pageout_page(m, i, [1], 0, 0) == 0
    assert m.pg.queue[i] == PQ_NONE  # step 1: unqueue_nowakeup
    assert m.pg.busy[i] == 0
    assert m.pg.wire[i] == 1
    check_invariants(m)


def test_held_page_goes_to_the_inactive_tail() -> None:
    m = boot()
    obj = new_object(m)
    a = inactive(m, obj, 6, busy=True)
    b = inactive(m, obj, 6 + 1024)
    q = PQ_INACTIVE + 6
    assert queue_pages(m, q) == [a, b]
    vm_page_hold(m, a)
    assert vm_pageout_page(m, a, [1], 0, 0) == 0  # step 2
    assert queue_pages(m, q) == [b, a]
    assert m.pg.busy[a] == 0 and m.pg.hold[a] == 1
    check_invariants(m)


def test_object_without_references_ignores_reference_history() -> None:
    # Step 3: ref_count 0 -> PG_REFERENCED and the pte A bits are cleared; the clean page
    # is then cached (step 7) instead of being reactivated.  Had the A bit survived,
    # vm_page_cache's unmapping would have collected it back into PG_REFERENCED.
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 7, busy=True)
    touch(m, i, 1)
    m.pg.flags[i] |= PG_REFERENCED
    obj.ref_count = 0
    assert vm_pageout_page(m, i, [1], 0, 0) == 1
    assert base(m, i) == PQ_CACHE
    assert not m.pg.flags[i] & (PG_REFERENCED | PG_MAPPED)
    assert not pmap_page_is_mapped(m, i)
    check_invariants(m)


def test_pmap_references_reactivate_with_a_plus_3_and_uint8_wrap() -> None:
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 8, busy=True)
    for pmap in (1, 2, 3, 4):
        touch(m, i, pmap)
    m.pg.act[i] = 250
    assert vm_pageout_page(m, i, [1], 0, 0) == 0  # step 3, a = 4
    assert base(m, i) == PQ_ACTIVE
    # activate keeps max(250, ACT_INIT 5) = 250; 250 + 4 + 3 = 257 -> u_char 257 - 256 = 1
    assert m.pg.act[i] == 1
    assert m.pg.busy[i] == 0
    assert pmap_ts_referenced(m, i) == 0  # the A bits were consumed
    # from act_count 0 with one reference: activate raises it to ACT_INIT 5, then +1+3 = 9
    j = inactive(m, obj, 9, busy=True)
    touch(m, j, 1)
    assert vm_pageout_page(m, j, [1], 0, 0) == 0
    assert m.pg.act[j] == 9
    check_invariants(m)


def test_pg_referenced_reactivates_with_a_plus_4() -> None:
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 10, busy=True)
    m.pg.flags[i] |= PG_REFERENCED
    assert vm_pageout_page(m, i, [1], 0, 0) == 0  # step 4, a = 0
    assert base(m, i) == PQ_ACTIVE
    assert m.pg.act[i] == 9  # max(0, 5) + 0 + 4
    assert not m.pg.flags[i] & PG_REFERENCED
    j = inactive(m, obj, 11, busy=True)
    m.pg.flags[j] |= PG_REFERENCED
    m.pg.act[j] = 20
    touch(m, j, 1)
    touch(m, j, 2)
    assert vm_pageout_page(m, j, [1], 0, 0) == 0  # step 4, a = 2
    assert m.pg.act[j] == 26  # 20 + 2 + 4
    check_invariants(m)


def test_clean_valid_page_is_cached_at_the_tail() -> None:
    m = boot()
    obj = new_object(m)
    first = inactive(m, obj, 12 + 1024, busy=True)
    assert vm_pageout_page(m, first, [1], 0, 0) == 1
    i = inactive(m, obj, 12, busy=True)
    assert m.pg.pc[i] == m.pg.pc[first] == 12
    before = meter(m, "v_dfree")
    assert vm_pageout_page(m, i, [1], 0, 0) == 1  # step 7
    assert queue_pages(m, PQ_CACHE + 12) == [first, i]
    assert m.pg.obj[i] == obj.id and m.pg.valid[i] == 0xFF  # cache keeps the contents
    assert m.pg.busy[i] == 0
    assert meter(m, "v_dfree") == before  # caching is not a "freed" page
    check_invariants(m)


def test_invalid_page_is_freed() -> None:
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 13, busy=True, valid=0)
    before = meter(m, "v_dfree")
    assert vm_pageout_page(m, i, [1], 0, 0) == 1  # step 6
    assert m.pq.head[PQ_FREE + int(m.pg.pc[i])] == i
    assert 13 not in obj.pages and m.pg.obj[i] == 0
    assert meter(m, "v_dfree") == before + 1
    assert m.pg.busy[i] == 0
    check_invariants(m)


def test_need_commit_page_is_neither_freed_nor_cached() -> None:
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 14, busy=True, valid=0)
    vm_page_need_commit(m, i)
    assert vm_pageout_page(m, i, [1], 0, 0) == 0  # steps 6 and 7 skipped -> step 8
    assert base(m, i) == PQ_INACTIVE
    assert m.pg.flags[i] & PG_WINATCFLS
    check_invariants(m)


def test_dirty_page_gets_a_second_chance_on_pass_0() -> None:
    m = boot()
    obj = new_object(m)
    a = inactive(m, obj, 15, busy=True)
    m.pg.dirty[a] = 0x01  # partly dirty: step 5 makes it fully dirty
    b = inactive(m, obj, 15 + 1024)
    q = PQ_INACTIVE + 15
    assert queue_pages(m, q) == [a, b]
    budget = [3]
    assert vm_pageout_page(m, a, budget, 0, 0) == 0  # step 8
    assert m.pg.flags[a] & PG_WINATCFLS
    assert m.pg.dirty[a] == 0xFF
    assert queue_pages(m, q) == [b, a]
    assert budget == [3] and m.pg.busy[a] == 0
    check_invariants(m)


def test_pmap_modified_bit_makes_a_clean_page_dirty() -> None:
    # Step 5: dirty == 0 -> vm_page_test_dirty finds the pte's M bit.
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 16, busy=True)
    touch(m, i, 1, write=True)
    pmap_clear_reference(m, i)  # no A bit: not a reactivation
    assert vm_pageout_page(m, i, [1], 0, 0) == 0
    assert m.pg.dirty[i] == 0xFF
    assert base(m, i) == PQ_INACTIVE and m.pg.flags[i] & PG_WINATCFLS
    check_invariants(m)


def _cluster_setup(m: Machine, obj: VmObject) -> dict[int, int]:
    """Dirty inactive pages at pindex 126, 127, 128, 129; 127 stays busied (the page
    vm_pageout_page is handed), the others are idle."""
    pages = {p: inactive(m, obj, p, dirty=True, busy=(p == 127)) for p in (126, 127, 128, 129)}
    m.pg.flags[pages[127]] |= PG_WINATCFLS
    m.pg.act[pages[127]] = 7
    return pages


def test_launder_clusters_within_the_aligned_64_page_window() -> None:
    # Step 9: 127 % 64 = 63 -> window [64, 128): going down 126 is dirty, 125 is absent;
    # going up 128 is already outside the window (it starts the next one).
    m = boot()
    obj = new_object(m)
    pages = _cluster_setup(m, obj)
    budget = [5]
    assert vm_pageout_page(m, pages[127], budget, 0, 0) == 2
    assert budget == [3]  # 5 - 2
    for p in (126, 127):
        i = pages[p]
        assert m.pg.dirty[i] == 0  # the (synchronous) pager wrote it
        assert m.pg.flags[i] & PG_SWAPPED  # anonymous memory went to swap
        assert m.pg.flags[i] & PG_WINATCFLS  # copied from 127 onto 126
        assert m.pg.act[i] == 7  # act_count copied too
        assert base(m, i) == PQ_INACTIVE  # no TRY_TO_CACHE, not severe: unbusied only
        assert m.pg.busy[i] == 0
    for p in (128, 129):
        i = pages[p]
        assert m.pg.dirty[i] == 0xFF and not m.pg.flags[i] & PG_SWAPPED
    assert obj.type == ObjType.OBJT_SWAP  # the first pageout made it a swap object
    # swap_pager_putpages: one write of the 2-page cluster
    assert meter(m, "v_swapout") == 1 and meter(m, "v_swappgsout") == 2
    assert meter(m, "v_vnodeout") == 0 and meter(m, "v_vnodepgsout") == 0
    assert sysctl_get(m, "vm.stats.vm.v_swappgsout") == 2
    check_invariants(m)


def test_launder_with_try_to_cache_caches_the_cluster() -> None:
    m = boot()
    obj = new_object(m)
    pages = _cluster_setup(m, obj)
    touch(m, pages[126], 1, write=True)  # a writable mapping: TRY_TO_CACHE unmaps it
    assert vm_pageout_page(m, pages[127], [5], 0, TRY_TO_CACHE) == 2
    assert base(m, pages[126]) == PQ_CACHE and base(m, pages[127]) == PQ_CACHE
    assert not pmap_page_is_mapped(m, pages[126])
    assert base(m, pages[128]) == PQ_INACTIVE
    check_invariants(m)


def test_launder_write_protects_mapped_cluster_pages() -> None:
    m = boot()
    obj = new_object(m)
    pages = _cluster_setup(m, obj)
    touch(m, pages[126], 1, write=True)
    assert vm_pageout_page(m, pages[127], [5], 0, 0) == 2
    # VM_PROT_READ: the mapping stays, read-only, with its M bit collected and clear
    assert pmap_view(m, pages[126])["mappings"] == [
        {"pmap": 1, "writable": False, "referenced": True, "modified": False}
    ]
    assert m.pg.dirty[pages[126]] == 0
    check_invariants(m)


def test_cluster_takes_active_neighbours_only_with_allow_active() -> None:
    m = boot()
    obj = new_object(m)
    pages = _cluster_setup(m, obj)
    vm_page_activate(m, pages[126])
    assert vm_pageout_page(m, pages[127], [5], 0, 0) == 1  # 126 is active: not taken
    assert m.pg.dirty[pages[126]] == 0xFF
    m2 = boot()
    obj2 = new_object(m2)
    pages2 = _cluster_setup(m2, obj2)
    vm_page_activate(m2, pages2[126])
    assert vm_pageout_page(m2, pages2[127], [5], 0, ALLOW_ACTIVE) == 2
    assert m2.pg.dirty[pages2[126]] == 0
    assert base(m2, pages2[126]) == PQ_ACTIVE  # written, left where it was
    check_invariants(m)
    check_invariants(m2)


@pytest.mark.parametrize("blocker", ["clean", "wired", "held", "busy"])
def test_cluster_stops_at_an_unclusterable_neighbour(blocker: str) -> None:
    m = boot()
    obj = new_object(m)
    pages = {p: inactive(m, obj, p, dirty=True) for p in (64, 65, 66)}
    target = pages[66]
    vm_page_busy_try(m, target, True)
    m.pg.flags[target] |= PG_WINATCFLS
    nb = pages[65]
    if blocker == "clean":
        m.pg.dirty[nb] = 0
    elif blocker == "wired":
        vm_page_busy_try(m, nb, True)
        vm_page_wire(m, nb)
        vm_page_wakeup(m, nb)
    elif blocker == "held":
        vm_page_hold(m, nb)
    else:
        vm_page_busy_try(m, nb, True)
    # 66 % 64 = 2: window [64, 128); 65 blocks, so 64 (dirty) is never reached
    assert vm_pageout_page(m, target, [5], 0, 0) == 1
    assert m.pg.dirty[pages[64]] == 0xFF


def test_dirty_page_with_winatcfls_on_pass_0_and_vnode_object_is_laundered() -> None:
    m = boot()
    obj = new_object(m, ObjType.OBJT_VNODE)
    i = inactive(m, obj, 20, dirty=True, busy=True)
    m.pg.flags[i] |= PG_WINATCFLS
    assert vm_pageout_page(m, i, [1], 0, 0) == 1
    assert m.pg.dirty[i] == 0
    assert obj.type == ObjType.OBJT_VNODE and not m.pg.flags[i] & PG_SWAPPED
    # vnode_pager_putpages: one write of one page; the swap counters stay 0
    assert meter(m, "v_vnodeout") == 1 and meter(m, "v_vnodepgsout") == 1
    assert meter(m, "v_swapout") == 0 and meter(m, "v_swappgsout") == 0
    check_invariants(m)


def test_pass_above_0_launders_without_a_second_chance() -> None:
    m = boot()
    obj = new_object(m)
    i = inactive(m, obj, 21, dirty=True, busy=True)
    assert vm_pageout_page(m, i, [1], 1, 0) == 1  # step 8 needs pass == 0
    assert m.pg.dirty[i] == 0 and m.pg.flags[i] & PG_WINATCFLS
    check_invariants(m)


def test_no_launder_budget_leaves_the_page_in_place() -> None:
    m = boot()
    obj = new_object(m)
    a = inactive(m, obj, 22, dirty=True, busy=True)
    b = inactive(m, obj, 22 + 1024)
    m.pg.flags[a] |= PG_WINATCFLS
    assert vm_pageout_page(m, a, [0], 0, 0) == 0  # step 10
    assert queue_pages(m, PQ_INACTIVE + 22) == [a, b]  # not requeued
    assert m.pg.dirty[a] == 0xFF and m.pg.busy[a] == 0
    check_invariants(m)


@pytest.mark.parametrize("name", ["vm.disable_swapspace_pageouts", "vm.defer_swapspace_pageouts"])
def test_swapspace_pageouts_off_requeues_anonymous_pages(name: str) -> None:
    m = boot()
    sysctl_set(m, name, 1)
    obj = new_object(m)
    a = inactive(m, obj, 23, dirty=True, busy=True)
    b = inactive(m, obj, 23 + 1024)
    m.pg.flags[a] |= PG_WINATCFLS
    budget = [2]
    assert vm_pageout_page(m, a, budget, 0, 0) == 0
    assert queue_pages(m, PQ_INACTIVE + 23) == [b, a]  # requeued at the tail
    assert budget == [2] and m.pg.dirty[a] == 0xFF and m.pg.busy[a] == 0
    assert obj.type == ObjType.OBJT_DEFAULT
    # a vnode page is written anyway
    vobj = new_object(m, ObjType.OBJT_VNODE)
    v = inactive(m, vobj, 24, dirty=True, busy=True)
    m.pg.flags[v] |= PG_WINATCFLS
    assert vm_pageout_page(m, v, [1], 0, 0) == 1
    check_invariants(m)


# ============================================================================ §15.4 scan_active
def test_scan_active_referenced_pages_gain_act_and_stay() -> None:
    m = boot()
    obj = new_object(m)
    a = active(m, obj, 30, act=10)
    b = active(m, obj, 30 + 1024, act=60)
    m.pg.flags[a] |= PG_REFERENCED
    touch(m, a, 1)  # a = 1 + 1 = 2
    touch(m, b, 1)
    touch(m, b, 2)  # a = 0 + 2 = 2
    before = meter(m, "v_pdpages")
    assert vm_pageout_scan_active(m, 0, 30, 0, 5) == 0
    assert m.pg.act[a] == 15  # min(10 + 3 + 2, 64)
    assert m.pg.act[b] == 64  # min(60 + 3 + 2 = 65, 64)
    assert queue_pages(m, PQ_ACTIVE + 30) == [a, b]  # no requeue
    assert not m.pg.flags[a] & PG_REFERENCED
    assert meter(m, "v_pdpages") - before == 2
    check_invariants(m)


def test_scan_active_decline_anonymous_and_vnode() -> None:
    m = boot()
    anon = new_object(m)
    a = active(m, anon, 31, act=3)
    b = active(m, anon, 31 + 1024, act=1)
    assert vm_pageout_scan_active(m, 0, 31, 0, 5) == 1
    assert m.pg.act[a] == 2 and base(m, a) == PQ_ACTIVE  # 3 - 1 = 2 >= 0 + 1
    assert m.pg.act[b] == 0 and base(m, b) == PQ_INACTIVE  # 1 - 1 = 0 < 1
    assert m.pq.tail[PQ_INACTIVE + 31] == b
    vn = new_object(m, ObjType.OBJT_VNODE)
    c = active(m, vn, 32, act=3)
    d = active(m, vn, 32 + 1024, act=2)
    assert vm_pageout_scan_active(m, 0, 32, 0, 5) == 1
    assert m.pg.act[c] == 1 and base(m, c) == PQ_ACTIVE  # 3 - 2 = 1 >= 1
    assert m.pg.act[d] == 0 and base(m, d) == PQ_INACTIVE  # 2 - 2 = 0 < 1
    # pass 2 (pd.pass_ 20..29): deactivate once act < 3
    e = active(m, anon, 33, act=3)
    assert vm_pageout_scan_active(m, 2, 33, 0, 5) == 1  # 3 - 1 = 2 < 2 + 1
    assert base(m, e) == PQ_INACTIVE
    check_invariants(m)


def test_scan_active_with_avail_quota_caches_clean_pages() -> None:
    m = boot()
    obj = new_object(m)
    clean = active(m, obj, 34, act=0)
    dirty = active(m, obj, 34 + 1024, act=0, dirty=True)
    rc = m.pd.recycle_count
    assert vm_pageout_scan_active(m, 0, 34, 5, 0) == 2
    assert base(m, clean) == PQ_CACHE and m.pq.tail[PQ_CACHE + 34] == clean
    assert base(m, dirty) == PQ_INACTIVE  # dirty: deactivated instead
    assert m.pd.recycle_count == rc + 2  # both counted while avail_quota - delta > 0
    assert m.pg.busy[clean] == 0 and m.pg.busy[dirty] == 0
    check_invariants(m)


def test_scan_active_inact_quota_bounds_the_deactivations() -> None:
    m = boot()
    obj = new_object(m)
    pages = [active(m, obj, 35 + 1024 * k, act=0) for k in range(3)]
    # lcnt 3 -> maxscan (3 + 9) / 10 + 1 = 2; inact_quota 1: after the first
    # deactivation inact_quota = 0 and avail_quota - delta = 0 - 1 <= 0 -> stop
    assert vm_pageout_scan_active(m, 0, 35, 0, 1) == 1
    assert [base(m, i) for i in pages] == [PQ_INACTIVE, PQ_ACTIVE, PQ_ACTIVE]
    check_invariants(m)


def _objectless_active(m: Machine) -> int:
    """An unbusied page with no object at the tail of its active queue."""
    i = vm_page_alloc(m, None, 0, VM_ALLOC_NORMAL)
    vm_page_activate(m, i)
    vm_page_wakeup(m, i)
    return i


def _to_active_tail(m: Machine, i: int) -> None:
    vm_page_busy_try(m, i, True)
    vm_page_deactivate(m, i)
    vm_page_activate(m, i)
    vm_page_wakeup(m, i)


@pytest.mark.parametrize("inact_quota", [2, 5])
def test_scan_active_reaching_a_page_with_no_object_is_the_null_dereference(
    inact_quota: int,
) -> None:
    """Spec §15.4 / vm_pageout_scan_active: an objectless page the scan busies gets
    actcount 0, then ``switch (m->object->type)`` reads through NULL.  Refused before the
    scan changes anything, even the page deactivated ahead of it."""
    m = boot()
    obj = new_object(m)
    n = _objectless_active(m)
    color = int(m.pg.pc[n])
    a = active(m, obj, color, act=0)  # an object page of the same colour ...
    _to_active_tail(m, n)  # ... ahead of it: the queue is [a, n]
    assert queue_pages(m, PQ_ACTIVE + color) == [a, n]
    before = state_digest(m)
    args = {"pass_": 0, "color": color, "avail_quota": 0, "inact_quota": inact_quota}
    with pytest.raises(KernelPanic, match="NULL pointer dereference") as exc:
        m.call("vm_pageout_scan_active", args)
    assert f"page {pfn_of(m, n):#x}" in str(exc.value)
    assert state_digest(m) == before
    assert base(m, a) == PQ_ACTIVE  # a was not deactivated
    check_invariants(m)


def test_scan_active_stopping_before_a_page_with_no_object_runs() -> None:
    # [a, n]: inact_quota 1 -> a (ref_count 1, act 0 - min(0, 1) = 0 < 1) is deactivated:
    # inact_quota 0 and avail_quota - delta = -1: the loop ends before n
    m = boot()
    obj = new_object(m)
    n = _objectless_active(m)
    color = int(m.pg.pc[n])
    a = active(m, obj, color, act=0)
    _to_active_tail(m, n)
    assert queue_pages(m, PQ_ACTIVE + color) == [a, n]
    args = {"pass_": 0, "color": color, "avail_quota": 0, "inact_quota": 1}
    assert m.call("vm_pageout_scan_active", args).result == 1
    assert base(m, a) == PQ_INACTIVE and base(m, n) == PQ_ACTIVE
    check_invariants(m)


def test_scan_active_skips_a_busy_page_with_no_object() -> None:
    m = boot()
    n = _objectless_active(m)
    vm_page_busy_try(m, n, True)  # busy_try(m, TRUE) fails on it: skipped, no dereference
    args = {"pass_": 0, "color": int(m.pg.pc[n]), "avail_quota": 0, "inact_quota": 5}
    assert m.call("vm_pageout_scan_active", args).result == 0
    assert base(m, n) == PQ_ACTIVE
    check_invariants(m)


def test_scan_active_unqueues_wired_pages_without_counting_them() -> None:
    m = boot()
    obj = new_object(m)
    i = active(m, obj, 36)
    vm_page_busy_try(m, i, True)
    vm_page_wire(m, i)
    vm_page_wakeup(m, i)
    before = meter(m, "v_pdpages")
    assert vm_pageout_scan_active(m, 0, 36, 0, 5) == 0
    assert m.pg.queue[i] == PQ_NONE and m.pg.busy[i] == 0
    assert meter(m, "v_pdpages") == before
    check_invariants(m)


def test_scan_active_object_without_references_is_unmapped_and_deactivated() -> None:
    m = boot()
    obj = new_object(m)
    i = active(m, obj, 37, act=30)
    pmap_enter(m, i, 1, True)
    m.pg.flags[i] |= PG_REFERENCED
    obj.ref_count = 0
    assert vm_pageout_scan_active(m, 0, 37, 0, 5) == 1
    assert base(m, i) == PQ_INACTIVE  # avail_quota 0: deactivated, not cached
    assert m.pg.act[i] == 29  # no reference credit; 30 - 1
    assert not pmap_page_is_mapped(m, i)  # vm_page_protect(NONE) for ref_count 0
    assert not m.pg.flags[i] & PG_REFERENCED
    check_invariants(m)


def test_scan_active_marker_resumes_after_the_last_page() -> None:
    # ACTIVE[38] = [A(10), B(0), C(10), D(0)]: lcnt 4 -> maxscan (4 + 9) / 10 + 1 = 2.
    # 1st call: A 10 -> 9 stays, B 0 -> deactivated; the marker sits after A.
    # 2nd call: lcnt 3 -> maxscan 2: resumes after A: C 10 -> 9 stays, D deactivated.
    m = boot()
    obj = new_object(m)
    a, b, c, d = (active(m, obj, 38 + 1024 * k, act=act) for k, act in enumerate((10, 0, 10, 0)))
    assert queue_pages(m, PQ_ACTIVE + 38) == [a, b, c, d]
    assert vm_pageout_scan_active(m, 0, 38, 0, 100) == 1
    assert (m.pg.act[a], base(m, b), m.pg.act[c]) == (9, PQ_INACTIVE, 10)
    assert vm_pageout_scan_active(m, 0, 38, 0, 100) == 1
    assert m.pg.act[a] == 9  # not visited again
    assert m.pg.act[c] == 9
    assert base(m, d) == PQ_INACTIVE
    # 3rd call: queue [A, C]; the end was reached, the marker went back to the head
    assert vm_pageout_scan_active(m, 0, 38, 0, 100) == 0
    assert (m.pg.act[a], m.pg.act[c]) == (8, 8)
    check_invariants(m)


# ============================================================================ §15.5 scan_cache
def test_scan_cache_frees_cache_pages_down_to_16() -> None:
    # 4 MiB: v_free_target 136.  Cache 40 pages, free 100: the loop runs while free < 136
    # and cache > 16 -> 40 - 16 = 24 pages freed (free 124); the rover advances 23 each.
    m = boot("4MiB")
    obj = new_object(m)
    pages = [inactive(m, obj, p, busy=True) for p in range(40)]
    for i in pages:
        vm_page_cache(m, i)
    gd = m.cpus[0].vmstats
    n = gd.v_free_count - 100
    for p in range(n):
        alloc(m, obj, 1000 + p)
    vmstats_rollup(m)
    assert (gd.v_free_count, gd.v_cache_count) == (100, 40)
    before = meter(m, "v_dfree")
    vm_pageout_scan_cache(m, 0)
    assert (gd.v_free_count, gd.v_cache_count) == (124, 16)
    assert meter(m, "v_dfree") - before == 24
    assert m.pd.rover[0] == 24 * 23  # 552; never meets rover[1] = 511 on the way
    check_invariants(m)


def test_scan_cache_wakes_the_daemon_after_each_page_it_busies() -> None:
    # Spec §15.5: "busy_try; unlock; pagedaemon_wakeup()".  Run on a thread that is not
    # the daemon's (as the teaching step vm_pageout_scan_cache is): 4 MiB, v_free_min 68,
    # v_paging_start 204 > free 100 + cache 40, so the first wakeup sets vm_pages_needed
    # to 1; later ones see vm_pages_needed 1 (<= 1) and set it to 1 again.
    m = boot("4MiB")
    obj = new_object(m)
    pages = [inactive(m, obj, p, busy=True) for p in range(40)]
    for i in pages:
        vm_page_cache(m, i)
    gd = m.cpus[0].vmstats
    for p in range(gd.v_free_count - 100):
        alloc(m, obj, 1000 + p)
    vmstats_rollup(m)
    m.pd.vm_pages_needed = 0  # as if the daemon had taken the allocations' wakeups
    assert not curthread_is_pagedaemon(m)
    vm_pageout_scan_cache(m, 0)
    assert m.pd.vm_pages_needed == 1
    check_invariants(m)


def test_scan_cache_never_speeds_up_the_syncer() -> None:
    # Spec §15.5: the syncer is sped up only when vnodes were skipped, which the simulator
    # (no vnode locks) never does.
    m = boot("4MiB")
    obj = new_object(m)
    for p in range(m.cpus[0].vmstats.v_free_count - 50):  # free 50 < v_free_min 68
        alloc(m, obj, p)
    vmstats_rollup(m)
    m.trace = Trace()
    vm_pageout_scan_cache(m, 0)
    assert not [e for e in m.trace.events if e["event"] == "pageout_syncer_speedup"]
    m.trace = None


# ============================================================================ §15.6 background scans
def _held_free_page(m: Machine, obj: VmObject, pindex: int) -> int:
    """A page freed while held: it sits on PQ_HOLD (spec §8.2)."""
    i = alloc(m, obj, pindex)
    vm_page_hold(m, i)
    vm_page_free_toq(m, i)
    assert base(m, i) == PQ_HOLD
    return i


def test_scan_hold_repairs_a_page_with_hold_count_0() -> None:
    m = boot()
    obj = new_object(m)
    a = _held_free_page(m, obj, 50)
    b = _held_free_page(m, obj, 50 + 1024)
    assert queue_pages(m, PQ_HOLD + 50) == [a, b]
    m.pg.hold[b] = 0  # a lost race: on PQ_HOLD without a hold
    vm_pageout_scan_hold(m, 50)
    assert base(m, b) == PQ_HOLD  # the scan stopped at A, which is really held
    vm_pageout_scan_hold(m, 50)  # resumes after A
    assert m.pq.head[PQ_FREE + 50] == b  # hold + unhold moved it to the free head
    assert m.pg.hold[b] == 0
    assert any("hold_count 0" in line for line in m.console)
    assert queue_pages(m, PQ_HOLD + 50) == [a]
    check_invariants(m)


def test_scan_hold_marker_stays_where_a_repaired_page_was() -> None:
    # PQ_HOLD[51] = [A (held), B (hold 0), C (hold 0)], one page per call:
    # call 1 stops at A (marker after A); call 2 repairs B (B leaves: the marker stays
    # after A); call 3 resumes after A and repairs C.
    m = boot()
    sysctl_set(m, "vm.pageout_stats_scan", 1)
    obj = new_object(m)
    a, b, c = (_held_free_page(m, obj, 51 + 1024 * k) for k in range(3))
    m.pg.hold[b] = 0
    m.pg.hold[c] = 0
    vm_pageout_scan_hold(m, 51)
    assert queue_pages(m, PQ_HOLD + 51) == [a, b, c]
    vm_pageout_scan_hold(m, 51)
    assert queue_pages(m, PQ_HOLD + 51) == [a, c]
    vm_pageout_scan_hold(m, 51)
    assert queue_pages(m, PQ_HOLD + 51) == [a]
    assert base(m, b) == base(m, c) == PQ_FREE
    check_invariants(m)


def _mostly_active(m: Machine, obj: VmObject, start: int) -> None:
    """Activate pages until v_active_count >= v_free_count + cache + inactive."""
    p = start
    while True:
        vmstats_rollup(m)
        vs = m.vmstats
        if vs.v_active_count >= vs.v_free_count + vs.v_cache_count + vs.v_inactive_count:
            return
        active(m, obj, p)
        p += 1


def test_page_stats_returns_early_while_few_pages_are_active() -> None:
    m = boot()
    obj = new_object(m)
    i = active(m, obj, 60, act=7)
    vmstats_rollup(m)
    vm_pageout_page_stats(m, 60)  # 1 active < 14846 free
    assert m.pd.counter0 == 0 and m.pg.act[i] == 7


def test_page_stats_act_arithmetic_and_rsecs_gate() -> None:
    m = boot("4MiB")
    obj = new_object(m)
    # 4 MiB: each colour has at most one free page (pfn < 1024 -> colour = pfn), so the
    # queue ACTIVE[c] holds exactly the page at pindex c.
    a = active(m, obj, 300, act=10)
    m.pg.flags[a] |= PG_REFERENCED
    b = active(m, obj, 301, act=0)
    c = active(m, obj, 302, act=5)
    _mostly_active(m, obj, 400)
    for color in (300, 301, 302):
        vm_pageout_page_stats(m, color)
    assert m.pg.act[a] == 14  # min(10 + 3 + 1, 64)
    assert not m.pg.flags[a] & PG_REFERENCED
    assert m.pg.act[b] == 0 and base(m, b) == PQ_ACTIVE  # not vm_paging_inactive
    assert m.pg.act[c] == 4 and base(m, c) == PQ_ACTIVE  # 5 - 1 = 4 >= actcmp 0
    assert (m.pd.counter0, m.pd.counter1) == (3, 1)  # B counted as a candidate
    # vm.pageout_stats_rsecs 0: one tick after the last paging the scan stops running
    sysctl_set(m, "vm.pageout_stats_rsecs", 0)
    m.call("tick", {"n": 1})  # ticks 1 - uptime 0 = 1 > 0 * hz
    vm_pageout_page_stats(m, 302)
    assert m.pg.act[c] == 4 and m.pd.counter0 == 3
    m.pd.vm_pages_needed = 1  # ... unless the daemon is paging
    vm_pageout_page_stats(m, 302)
    assert m.pg.act[c] == 3 and m.pd.counter0 == 4
    check_invariants(m)


def test_page_stats_deactivates_below_actcmp_when_inactive_is_short() -> None:
    m = boot("4MiB")
    obj = new_object(m)
    b = active(m, obj, 301, act=0)
    c = active(m, obj, 302, act=5)
    pmap_enter(m, c, 1, False)
    _mostly_active(m, obj, 400)
    sysctl_set(m, "vm.pageout_stats_actcmp", 10)
    sysctl_set(m, "vm.v_inactive_target", 100000)  # makes vm_paging_inactive() true
    vmstats_rollup(m)  # the predicate reads the CPU snapshot
    vm_pageout_page_stats(m, 301)
    vm_pageout_page_stats(m, 302)
    assert base(m, b) == PQ_INACTIVE  # act 0 -> deactivated
    assert base(m, c) == PQ_INACTIVE and m.pg.act[c] == 4  # 5 - 1 = 4 < 10
    assert not pmap_page_is_mapped(m, c)  # vm_page_protect(NONE) first
    assert m.pd.counter1 == 2
    check_invariants(m)


def test_page_stats_marker_resumes_after_the_last_page() -> None:
    # ACTIVE[52] = [A(10), B(0), C(10), D(0)], vm.pageout_stats_scan 2, with
    # vm_paging_inactive() true: call 1: A 10 -> 9, B deactivated (marker after A);
    # call 2: C 10 -> 9, D deactivated; A is not visited again.
    m = boot()
    obj = new_object(m)
    a, b, c, d = (active(m, obj, 52 + 1024 * k, act=act) for k, act in enumerate((10, 0, 10, 0)))
    _mostly_active(m, obj, 100000)
    sysctl_set(m, "vm.pageout_stats_scan", 2)
    sysctl_set(m, "vm.v_inactive_target", 100000)
    vmstats_rollup(m)
    vm_pageout_page_stats(m, 52)
    assert (m.pg.act[a], base(m, b), m.pg.act[c]) == (9, PQ_INACTIVE, 10)
    vm_pageout_page_stats(m, 52)
    assert (m.pg.act[a], m.pg.act[c], base(m, d)) == (9, 9, PQ_INACTIVE)
    check_invariants(m)


def test_page_stats_adapts_actcmp() -> None:
    m = boot("4MiB")
    obj = new_object(m)
    for k in range(3):
        active(m, obj, 310 + k, act=20)
    _mostly_active(m, obj, 400)
    sysctl_set(m, "vm.pageout_stats_inalim", 2)
    vm_pageout_page_stats(m, 310)
    vm_pageout_page_stats(m, 311)
    assert (m.pd.counter0, m.pd.counter1) == (2, 0)  # 2 > 2 is false: no adaptation yet
    vm_pageout_page_stats(m, 312)
    # counter0 3 > 2 and counter1 0 < inamin 16 -> actcmp 0 + 1; counters reset
    assert m.sysctl.values["vm.pageout_stats_actcmp"] == 1
    assert (m.pd.counter0, m.pd.counter1) == (0, 0)
    # enough candidates (counter1 >= inamin 0) -> actcmp - 1
    sysctl_set(m, "vm.pageout_stats_inamin", 0)
    sysctl_set(m, "vm.pageout_stats_inalim", 0)
    vm_pageout_page_stats(m, 310)
    assert m.sysctl.values["vm.pageout_stats_actcmp"] == 0
    vm_pageout_page_stats(m, 311)  # actcmp 0 stays 0
    assert m.sysctl.values["vm.pageout_stats_actcmp"] == 0
    # the upper bound is ACT_MAX * 3 / 4 = 48
    sysctl_set(m, "vm.pageout_stats_inamin", 16)
    sysctl_set(m, "vm.pageout_stats_actcmp", 48)
    vm_pageout_page_stats(m, 312)
    assert m.sysctl.values["vm.pageout_stats_actcmp"] == 48


# ============================================================================ §15.2 phases 1 and 2
def test_phase_quotas(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 MiB: free + cache = 927, v_inactive_target 57 (limit 57 / 10 = 5).  Targets raised
    # by hand: target1 = 927 + 2000, target2 = 927 + 3000.  Spies record each colour's call.
    m = boot("4MiB")
    m.vmstats.v_paging_target1 = 927 + 2000
    m.vmstats.v_paging_target2 = 927 + 3000
    vmstats_rollup(m)
    calls: list[tuple[int, ...]] = []

    def scan_inactive(m: Machine, pass_: int, color: int, quota: int) -> int:
        calls.append((pass_, color, quota))
        return 0

    def scan_active(m: Machine, pass_: int, color: int, avail_quota: int, inact_quota: int) -> int:
        calls.append((pass_, color, avail_quota, inact_quota))
        return 0

    monkeypatch.setattr(pageout_module, "vm_pageout_scan_inactive", scan_inactive)
    monkeypatch.setattr(pageout_module, "vm_pageout_scan_active", scan_active)
    m.pd.pass_ = 25  # scans get pass / 10 = 2
    m.pd.q1 = 1000
    m.pd.state = TARGET1
    m.pd.vm_pageout_deficit = 10
    # TARGET1: avail = 2000 + deficit 10 = 2010, not limited: PQAVERAGE(2010) =
    # (2010 + 1023) / 512 + 1 = 5 + 1 = 6; target2 still unmet: all 1024 colours,
    # starting at q1 = 1000 and wrapping back to it
    assert _phase_inactive(m) == 2010
    assert m.pd.vm_pageout_deficit == 0
    assert calls == [(2, (1000 + k) & 1023, 6) for k in range(1024)]
    assert m.pd.q1 == 1000
    # phase 2: inact = 57 - 0 + min(2 * 2010, 5) = 62: PQAVERAGE(2010) = 6,
    # PQAVERAGE(62) = 1085 / 512 + 1 = 3
    calls.clear()
    assert _phase_active(m, 2010) == 2010
    assert calls == [(2, k, 6, 3) for k in range(1024)]
    # TARGET2: avail = 3000 > 5 -> use = 5 + 1 = 6: PQAVERAGE(6) = 1029 / 512 + 1 = 3
    calls.clear()
    m.pd.state = TARGET2
    assert _phase_inactive(m) == 3000
    assert {c[2] for c in calls} == {3} and len(calls) == 1024


# ============================================================================ §15.2 state machine
def _daemon(m: Machine) -> Any:
    return m.sched.threads[PAGEDAEMON_TID]


def _wakeups(record: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    return [e for e in record["events"] if e.get("event") == "wakeup" and e["channel"] == channel]


def test_daemon_state_machine() -> None:
    m = boot("4MiB", pagedaemon=True)
    th = _daemon(m)
    vs = m.vmstats
    assert (vs.v_paging_start, vs.v_paging_target1, vs.v_paging_target2) == (204, 272, 340)
    # boot: the first iteration ran the trickle scans (q3 0 -> 1) and sleeps
    assert (th.state, th.channel, th.wmesg, th.deadline) == (
        "sleeping",
        "vm_pages_needed",
        "psleep",
        10,
    )
    assert m.pd.q3 == 1 and m.pd.passes == 0
    # the timeout expires with no paging needed: trickle scans again, back to sleep
    m.call("tick", {"n": 10})
    assert (th.wmesg, th.deadline) == ("psleep", 20) and m.pd.q3 == 2
    assert m.pd.passes == 0 and meter(m, "v_pdwakeups") == 0
    # woken without a shortage: one pass in TARGET1, then idle again (state kept)
    r = m.call("wakeup", {"channel": "vm_pages_needed"})
    assert m.pd.passes == 1 and meter(m, "v_pdwakeups") == 1
    assert m.pd.state == TARGET1 and m.pd.vm_pages_needed == 0
    assert _wakeups(r.record, "v_free_count")  # phase 4 woke the waiters
    assert (th.wmesg, th.deadline) == ("psleep", m.sched.ticks + 10)
    # free + cache 300: above target1 (272), below target2 (340) -> TARGET2
    obj = new_object(m)
    held = [alloc(m, obj, p) for p in range(927 - 300)]  # kept busied on PQ_NONE
    assert m.cpus[0].vmstats.v_free_count == 300 and m.pd.vm_pages_needed == 0  # no wakeup
    m.call("wakeup", {"channel": "vm_pages_needed"})
    assert m.pd.state == TARGET2 and m.pd.vm_pages_needed == 2
    assert (th.wmesg, th.deadline) == ("pdloop", m.sched.ticks + 1)
    # TARGET2: avail = 340 - 300 = 40 > 0 and nothing to page: pass 1, loop again
    r = m.call("tick", {"n": 1})
    assert m.pd.pass_ == 1
    assert [e for e in r.record["events"] if e["event"] == "pageout_shortage"] == [
        {"event": "pageout_shortage", "avail": 40, "pass_": 1}
    ]
    # free 60 pages: free + cache 360 >= 340 -> idle; state stays TARGET2 (not reset)
    for i in held[:60]:
        vm_page_free_toq(m, i)
    m.call("tick", {"n": 1})
    assert m.pd.vm_pages_needed == 0 and m.pd.pass_ == 0 and m.pd.state == TARGET2
    assert (th.wmesg, th.deadline) == ("psleep", m.sched.ticks + 10)
    # a deficit is added to the shortage: avail = 272 - 360 + 100 = 12 > 0, so phase 1
    # scans colour q1 = 0; then, target2 being met (340 <= 360) and min_dnc(16) false
    # (84 <= 360), "other activity already fixed it": avail = 0, stop after one colour
    assert m.pd.q1 == 0
    m.pd.vm_pageout_deficit = 100
    m.call("wakeup", {"channel": "vm_pages_needed"})
    assert m.pd.vm_pageout_deficit == 0
    assert m.pd.q1 == 1 and m.pd.pass_ == 0 and m.pd.vm_pages_needed == 0
    # hysteresis 1000: vm_paging_min_dnc(1000) (68 + 1000 > 360) keeps it in TARGET1 with
    # vm_pages_needed 2; free + cache 360 >= v_paging_wait 136: waiters are woken
    sysctl_set(m, "vm.page_free_hysteresis", 1000)
    r = m.call("wakeup", {"channel": "vm_pages_needed"})
    assert m.pd.state == TARGET1 and m.pd.vm_pages_needed == 2
    assert _wakeups(r.record, "v_free_count")
    assert (th.wmesg, th.deadline) == ("pdloop", m.sched.ticks + 1)
    r = m.call("tick", {"n": 1})
    assert m.pd.vm_pages_needed == 2 and _wakeups(r.record, "v_free_count")
    sysctl_set(m, "vm.page_free_hysteresis", 16)
    m.call("tick", {"n": 1})
    assert m.pd.vm_pages_needed == 0 and th.wmesg == "psleep"
    for i in held[60:]:
        vm_page_free_toq(m, i)
    check_invariants(m)


# ============================================================================ end to end
def _fill(m: Machine, obj: VmObject, stop_at: int) -> int:
    """Allocate pages 0, 1, ... (odd pindexes dirty), activate and unbusy them, until
    free + cache of CPU 0's snapshot is ``stop_at``; direct calls, so the daemon, once
    woken, waits on the run queue."""
    gd = m.cpus[0].vmstats
    n = 0
    while gd.v_free_count + gd.v_cache_count > stop_at:
        active(m, obj, n, dirty=bool(n % 2))
        n += 1
    return n


def test_daemon_recovers_from_a_shortage_and_releases_a_waiter() -> None:
    m = boot("64MiB", pagedaemon=True)
    vs = m.vmstats
    assert vs.v_page_count == 15870 and vs.v_free_count == 14847
    assert (vs.v_free_min, vs.v_free_reserved, vs.v_free_target) == (143, 78, 286)
    assert (vs.v_paging_start, vs.v_paging_target1, vs.v_paging_target2) == (429, 572, 715)
    assert vs.v_inactive_target == 927
    th = _daemon(m)
    obj = new_object(m)
    n = _fill(m, obj, 170)
    assert n == 14847 - 170
    # crossing v_paging_start (free + cache < 429) woke the daemon: runnable, not yet run
    assert m.pd.vm_pages_needed == 1 and th.state == "runnable" and m.pd.passes == 0
    # vm_wait: vm_paging_min_nice(0 + 1): d = (286 - 143 - 1) >> 1 = 71,
    # k = 21 * 71 / 40 = 37; 143 + 37 = 180 > 170 -> sleep on v_free_count for hz ticks
    r = m.call("vm_wait", {"timo": 0}, thread=5)
    assert r.blocked == {"thread": 5, "channel": "v_free_count", "wmesg": "vmwait", "timo": 100}
    assert m.pd.vm_pages_waiting == 1
    # the daemon ran its first pass at the end of that call.  Phase 1: avail = 572 - 170 =
    # 402, no inactive page.  Phase 2: every colour holds 13..15 active pages (at most one
    # of its 14 or 15 free pages is left), maxscan (13..15 + 9) / 10 + 1 = 3; all have
    # act_count ACT_INIT 5 -> 4: none moves, 1024 * 3 = 3072 pages visited.
    assert r.record["resumed"] == [
        {"tid": PAGEDAEMON_TID, "fn": "vm_pageout_thread", "blocked": "vm_pages_needed"}
    ]
    assert m.pd.passes == 1 and meter(m, "v_pdwakeups") == 1
    assert meter(m, "v_pdpages") == 3072
    assert m.pd.pass_ == 1 and m.pd.state == TARGET1 and m.pd.vm_pages_needed == 1
    assert (th.wmesg, th.deadline) == ("pdloop", m.sched.ticks + 1)
    check_invariants(m)
    waiter = m.sched.threads[5]
    seen_inactive: set[int] = set()
    released_at = None
    for _ in range(60):
        m.call("tick", {"n": 1}, record=False)
        check_invariants(m)
        q = m.pg.arrays["queue"]
        seen_inactive.update(np.flatnonzero((q >= PQ_INACTIVE) & (q < PQ_INACTIVE + 1024)).tolist())
        if released_at is None and waiter.state == "idle":
            released_at = m.sched.ticks
        if m.pd.vm_pages_needed == 0:
            break
    gd = m.cpus[0].vmstats
    assert m.pd.vm_pages_needed == 0 and m.pd.pass_ == 0
    assert gd.v_free_count + gd.v_cache_count >= 715  # v_paging_target2
    # only scan_cache freed pages, and it stops exactly at v_free_target = 2 * 143
    assert gd.v_free_count == 286
    assert meter(m, "v_dfree") == 286 - 170
    assert meter(m, "v_pdwakeups") == m.pd.passes > 1
    assert (th.state, th.channel, th.wmesg, th.deadline) == (
        "sleeping",
        "vm_pages_needed",
        "psleep",
        m.sched.ticks + 10,
    )
    # the waiter was woken (not timed out: its deadline was tick 100) through
    # vm_page_free_wakeup (spec §8.3: free + cache >= v_free_min + 16 and free >= reserved)
    assert released_at is not None and released_at < 100
    assert waiter.last_fn == "vm_wait" and waiter.last_error is None
    assert meter(m, "v_ppwakeups") == 1 and m.pd.vm_pages_waiting == 0
    # pages went active -> inactive -> cache/free; dirty ones through the laundry
    q = m.pg.arrays["queue"]
    via_inactive = np.array(sorted(seen_inactive))
    assert via_inactive.size
    bases = q[via_inactive]
    now_free = (bases >= PQ_FREE) & (bases < PQ_INACTIVE)
    now_cached = (bases >= PQ_CACHE) & (bases < PQ_HOLD)
    assert (now_free | now_cached).any()
    assert (m.pg.arrays["flags"] & PG_SWAPPED).any()
    assert obj.type == ObjType.OBJT_SWAP


def test_daemon_phase_4_wakes_v_free_count_sleepers() -> None:
    # With vm_pages_waiting cleared by hand, vm_page_free_wakeup (§8.3) cannot release the
    # sleeper: only the daemon's own wakeup(&vmstats.v_free_count) at the end of the pass
    # that reaches the target does.
    m = boot("64MiB", pagedaemon=True)
    obj = new_object(m)
    _fill(m, obj, 170)
    m.call("vm_wait", {"timo": 0}, thread=5)
    m.pd.vm_pages_waiting = 0
    waiter = m.sched.threads[5]
    for _ in range(60):
        r = m.call("tick", {"n": 1})
        woke = [e for e in _wakeups(r.record, "v_free_count") if e.get("woke")]
        if waiter.state == "idle":
            assert woke == [{"event": "wakeup", "channel": "v_free_count", "woke": [5]}]
            break
        assert not woke
    else:
        pytest.fail("the waiter was never released")
    assert m.pd.vm_pages_needed == 0  # released by the pass that went idle
    assert meter(m, "v_ppwakeups") == 0
    check_invariants(m)


# ============================================================================ determinism
def _scenario(m: Machine) -> None:
    oid = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 1 << 20}).result
    gd = m.cpus[0].vmstats
    p = 0
    while gd.v_free_count + gd.v_cache_count >= gd.v_paging_start:
        pfn = m.call(
            "vm_page_alloc",
            {"object": oid, "pindex": p, "page_req": "VM_ALLOC_NORMAL"},
            record=False,
        ).result
        i = pfn - m.first_page
        m.pg.valid[i] = 0xFF
        if p % 3 == 0:
            vm_page_dirty(m, i)
        m.call("vm_page_activate", {"m": pfn}, record=False)
        m.call("vm_page_wakeup", {"m": pfn}, record=False)
        p += 1
    m.call("tick", {"n": 25})


def test_same_calls_give_the_same_state() -> None:
    m1 = boot("16MiB", pagedaemon=True)
    m2 = boot("16MiB", pagedaemon=True)
    d0 = state_digest(m1)
    _scenario(m1)
    _scenario(m2)
    assert m1.pd.passes > 0
    assert state_digest(m1) == state_digest(m2) != d0
    assert pageout_view(m1) == pageout_view(m2)
    m2.pd.active_cursor[7] += 1  # the digest covers the daemon's state
    assert state_digest(m1) != state_digest(m2)
    check_invariants(m1)


def test_pageout_view() -> None:
    m = boot("4MiB", pagedaemon=True)
    view = pageout_view(m)
    assert view["enabled"] is True and view["state"] == "IDLE"
    assert view["thread"]["name"] == "pagedaemon" and view["thread"]["systhread"] is True
    assert view["thread"]["wmesg"] == "psleep"
    assert pageout_view(Machine.boot(MachineConfig.from_size("4MiB")))["thread"] is None


def test_busy_pages_are_left_alone_by_every_scan() -> None:
    m = boot()
    obj = new_object(m)
    i = active(m, obj, 70, act=0)
    vm_page_busy_try(m, i, True)
    assert vm_pageout_scan_active(m, 0, 70, 5, 5) == 0
    assert base(m, i) == PQ_ACTIVE and m.pg.busy[i] == PBUSY_LOCKED
    j = inactive(m, obj, 71, busy=True, valid=0)
    assert vm_pageout_scan_inactive(m, 0, 71, 5) == 0
    assert base(m, j) == PQ_INACTIVE


def test_generator_sleep_values() -> None:
    # The loop's first yield on an idle machine: Sleep on vm_pages_needed for
    # vm_pageout_stats_ticks = hz / 10 = 10 ticks, wmesg "psleep".
    m = boot("4MiB")
    gen = _pageout_loop(m)
    assert next(gen) == Sleep("vm_pages_needed", 10, "psleep")


def test_scans_read_the_live_tunables_without_rebuilding_the_sysctl_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression (PageoutOps._tunable): the scans read each vm.* tunable's current value
    straight from ``sysctl.values`` (spec §16.2: the defaults after boot, a sysctl write at
    once), not through ``sysctl_value``, which re-created the 16 defaults on every read
    and was most of the cost of a daemon pass (2 reads per colour x 1024 colours)."""

    m = boot()
    names: list[str] = []

    def spy(machine: Any, name: str) -> int:
        names.append(name)
        return 0

    monkeypatch.setattr(pageout_module, "sysctl_value", spy)
    assert _tunable(m, "vm.pageout_memuse_mode") == 2  # the §16.2 default
    assert _tunable(m, "vm.anonmem_decline") == 1  # ACT_DECLINE
    sysctl_set(m, "vm.pageout_memuse_mode", 3)
    obj = new_object(m)
    i = inactive(m, obj, 42, dirty=True)
    # memuse_mode 3 as written: WINATCFLS first, so the dirty page is laundered at once
    assert vm_pageout_scan_inactive(m, 0, 42, 1) == 1
    assert base(m, i) == PQ_CACHE
    vm_pageout_scan_active(m, 0, 42, 1, 1)
    assert names == []  # the hot path never went through sysctl_value
    check_invariants(m)


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        ("vm_wait_nominal", {}),
        ("vm_wait_pfault", {}),
        ("vm_page_alloczwq", {"flags": "NORMAL|RETRY"}),
    ],
)
def test_a_waiter_with_a_stale_cpu_snapshot_does_not_spin_with_the_daemon(
    fn: str, args: dict[str, Any]
) -> None:
    """Regression (daemon loop, PD_PASSES_PER_TICK): CPU 1's gd_vmstats still says "no
    free page" (refreshed by its own rollups while it drained memory; no tick since),
    while CPU 0 has freed everything and rolled it into the global vmstats.  A waiter on
    CPU 1 sees the stale shortage, vm_wait wakes the daemon (spec §13.1), whose pass finds
    no shortage and wakes the waiter (§15.2 phase 4), which sees the same stale
    snapshot...  This used to loop within the one call until the scheduler gave up
    (WouldSleep after 100000 resumptions, 50000 daemon passes).  Now the daemon runs at
    most PD_PASSES_PER_TICK (8) passes per tick: the call blocks, and at the next tick
    (hardclock refreshes every snapshot first) the waiter finishes."""
    from app.core.vm_pageout import PD_PASSES_PER_TICK

    m = Machine.boot(MachineConfig.from_size("2MiB", cpus=2, pagedaemon=True))
    pages = []
    while isinstance(r := m.call("vm_page_alloc", {"page_req": "INTERRUPT"}, cpu=1).result, int):
        pages.append(r)
    assert m.cpus[1].vmstats.v_free_count == 0
    for pfn in pages:
        m.call("vm_page_free", {"m": pfn}, cpu=0)
    m.call("vmstats_rollup", cpu=0)
    assert m.cpus[1].vmstats.v_free_count == 0 < m.vmstats.v_free_min < m.vmstats.v_free_count
    assert m.sched.ticks == 0
    r = m.call(fn, args, cpu=1, thread=4)
    assert r.blocked is not None and r.blocked["channel"] == "v_free_count"
    assert m.sched.threads[4].state == "sleeping"
    assert m.pd.passes <= PD_PASSES_PER_TICK  # every pass so far ran in tick 0
    check_invariants(m)
    r = m.call("tick", {"n": 1})
    (done,) = [e for e in r.record["events"] if e["event"] == "resumed" and e["tid"] == 4]
    assert done["fn"] == fn and done["timed_out"] is False  # woken by the daemon's pass
    assert m.sched.threads[4].state == "idle" and m.sched.threads[4].last_error is None
    check_invariants(m)


def test_page_stats_keeps_a_user_actcmp_above_48_and_scan_0_scans_nothing() -> None:
    """Spec §15.6: ``if actcmp < ACT_MAX*3/4 (48): actcmp += 1`` — a user value above 48
    is kept, not lowered to 48; and both background scans take "up to
    vm.pageout_stats_scan pages", so 0 scans none."""
    m = boot("4MiB")
    obj = new_object(m)
    for k in range(3):
        active(m, obj, 310 + k, act=20)
    _mostly_active(m, obj, 400)
    sysctl_set(m, "vm.pageout_stats_inalim", 0)  # adapt after every scan
    sysctl_set(m, "vm.pageout_stats_actcmp", 60)
    vm_pageout_page_stats(m, 310)  # counter0 1 > 0, counter1 0 < inamin 16: 60 < 48 is false
    assert m.sysctl.values["vm.pageout_stats_actcmp"] == 60
    sysctl_set(m, "vm.pageout_stats_actcmp", 47)
    vm_pageout_page_stats(m, 311)  # 47 < 48: 47 + 1
    assert m.sysctl.values["vm.pageout_stats_actcmp"] == 48
    # vm.pageout_stats_scan 0: the stats scan visits no page of ACTIVE[312] ...
    sysctl_set(m, "vm.pageout_stats_scan", 0)
    i = queue_pages(m, PQ_ACTIVE + 312)[0]
    counter0 = m.pd.counter0
    vm_pageout_page_stats(m, 312)
    assert m.pd.counter0 == counter0 and m.pg.act[i] == 20
    check_invariants(m)


def test_scan_hold_with_stats_scan_0_repairs_nothing() -> None:
    m = boot()
    sysctl_set(m, "vm.pageout_stats_scan", 0)
    obj = new_object(m)
    a = _held_free_page(m, obj, 53)
    m.pg.hold[a] = 0  # a lost race that a scan of one page would repair
    vm_pageout_scan_hold(m, 53)
    assert queue_pages(m, PQ_HOLD + 53) == [a]


def test_a_dirty_page_with_no_object_is_never_laundered() -> None:
    # Spec §15.3 step 9: "object == NULL ... -> requeue at the inactive tail, unbusy,
    # return 0".  pass 1: no second chance, so step 9 is reached with a budget.
    m = boot()
    a = vm_page_alloc(m, None, 0, VM_ALLOC_NORMAL)
    m.pg.valid[a] = 0xFF
    vm_page_dirty(m, a)
    vm_page_deactivate(m, a)
    color = int(m.pg.pc[a])
    budget = [4]
    assert vm_pageout_page(m, a, budget, 1, 0) == 0
    assert budget == [4] and m.pg.dirty[a] == 0xFF and not m.pg.flags[a] & PG_SWAPPED
    assert base(m, a) == PQ_INACTIVE and queue_pages(m, PQ_INACTIVE + color)[-1] == a
    assert m.pg.busy[a] == 0
    check_invariants(m)


def test_defer_swapspace_pageouts_yields_under_a_real_shortage() -> None:
    # Spec §15.3 step 9: swap_pageouts_ok |= !disable && defer && vm_paging_min().
    # 4 MiB: v_free_min 68; free 50 < 68 makes vm_paging_min() true.
    m = boot("4MiB")
    obj = new_object(m)
    a = inactive(m, obj, 23, dirty=True, busy=True)
    m.pg.flags[a] |= PG_WINATCFLS
    filler = new_object(m)
    for p in range(m.cpus[0].vmstats.v_free_count - 50):
        alloc(m, filler, p)
    vmstats_rollup(m)
    sysctl_set(m, "vm.defer_swapspace_pageouts", 1)
    assert vm_pageout_page(m, a, [1], 0, 0) == 1  # laundered despite defer
    assert m.pg.dirty[a] == 0 and m.pg.flags[a] & PG_SWAPPED
    # disable never yields
    b = inactive(m, obj, 24 + 64, dirty=True, busy=True)
    m.pg.flags[b] |= PG_WINATCFLS
    sysctl_set(m, "vm.disable_swapspace_pageouts", 1)
    assert vm_pageout_page(m, b, [1], 0, 0) == 0 and m.pg.dirty[b] == 0xFF
    check_invariants(m)


def test_cluster_judges_neighbours_after_test_dirty_and_stops_at_the_object_size() -> None:
    # Spec §15.3 step 9 / vm_pageout_clean_helper: a neighbour is taken iff
    # (dirty & valid) != 0 || NEED_COMMIT, judged after vm_page_test_dirty (a page the
    # pmap saw written counts), and the cluster never passes object->size.
    m = boot()
    obj = m.vmobj.objects[vm_object_allocate(m, ObjType.OBJT_DEFAULT, 11, 0)]  # pindex 0 .. 10
    target = inactive(m, obj, 8, dirty=True, busy=True)  # window [0, 64)
    m.pg.flags[target] |= PG_WINATCFLS
    written = inactive(m, obj, 7)  # clean, but written through a mapping
    touch(m, written, 1, write=True)
    vm_page_deactivate(m, written)
    invalid = inactive(m, obj, 6, valid=0)  # dirty bits but nothing valid: not taken
    m.pg.dirty[invalid] = 0xFF
    inactive(m, obj, 9, dirty=True)
    inactive(m, obj, 10, dirty=True)
    beyond = inactive(m, obj, 11, dirty=True)  # pindex 11 >= size 11
    assert vm_pageout_page(m, target, [10], 1, 0) == 4  # 7, 8, 9, 10
    assert m.pg.dirty[written] == 0 and m.pg.flags[written] & PG_SWAPPED
    assert m.pg.dirty[invalid] == 0xFF and not m.pg.flags[invalid] & PG_SWAPPED
    assert m.pg.dirty[beyond] == 0xFF
    check_invariants(m)

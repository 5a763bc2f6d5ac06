"""Tests for app.core.contig: the DMA reserve (``vm_page_alloc_contig``,
``vm_page_free_contig``, ``vm_contig_avail_pages``, spec §7.4–7.6) and contigmalloc's
fallback ``vm_contig_pg_alloc`` with ``vm_contig_pg_clean`` (§7.7).

Every expected number is worked out by hand from the spec; the arithmetic is in the comment
next to it.  ``idx = pfn - first_page``.

Machines
--------
``R32`` = ``MachineConfig.from_size("32MiB")``, finished (worked in tests/core/test_boot.py):
phys_avail ((0x1000, 0x2000000),); first_page 1; pages pfn 1..7934 managed
(v_page_count 7934); at boot vm_low_phys_reserved = min(256 MiB, 33550336 / 4) = 0x7FFC00,
so pfn 1..2047 went to the reserve; startup_finish keeps vm_dma_reserved / 4096 =
2096896 / 4096 = 511 pages and returns (1536, 512), (1024, 512), (512, 512): the reserve is
alist blocks 1..511, vm_low_phys_reserved = 512 << 12 = 0x200000.  Free pages: pfn
512..7934 = 7423.

``NORES`` = phys_avail ((0x400000, 0x1400000),), finished: total = 0x1000000 (16 MiB);
first_page = 0x400 = 1024; last pfn + 1 = 0x1400 = 5120 -> page_range 4096;
nbits 5120 -> 640 bytes -> one bitmap page: end = 0x13FF000;
npages = (16777216 - 4096 * 128) / 4096 = 3968;
new_end = trunc_page(0x13FF000 - 524288) = 0x137F000 -> pfn 0x400..0x137E = 1024..4990,
3967 pages (v_page_count 3967, all free);
vm_low_phys_reserved = min(256 MiB, 16 MiB / 4 = 0x400000): no page has pa < 0x400000,
so the reserve is empty (bl_free 0) and every contig request goes to the fallback scan.
Colours for pfn in [1024, 2048): pfn >> 10 = 1, colour = (pfn ^ 1) & 1023.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app.core.vm_contig as contig_mod
from app.core.config import MachineConfig
from app.core.constants import (
    CNT_FREE,
    CNT_WIRE,
    PAT_WRITE_BACK,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_UNQUEUED,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_NONE,
)
from app.core.errors import InvalidArgument, KernelPanic
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.vm_contig import (
    VM_MEMATTR_UNCACHEABLE,
    _contig_find,
    vm_contig_pg_clean,
    vm_page_alloc_contig,
)
from app.core.vm_page.busy import vm_page_busy_try
from app.core.vm_page.queues import queue_pages
from app.lab.machine_views import dma_alist_view

MiB = 1 << 20
PAGE = 4096
FICT_UNQ = PG_FICTITIOUS | PG_UNQUEUED
NORES = ((0x400000, 0x1400000),)


# --- helpers ---------------------------------------------------------------------------


def boot32() -> Machine:
    return Machine.boot(MachineConfig.from_size("32MiB"))


def boot_nores() -> Machine:
    return Machine.boot(MachineConfig(phys_avail=NORES))


def call(machine: Machine, fn: str, /, **args: Any) -> Any:
    return machine.call(fn, args).result


def idx(m: Machine, pfn: int) -> int:
    return pfn - m.first_page


def queue_pfns(m: Machine, queue: int) -> list[int]:
    return [m.first_page + i for i in queue_pages(m, queue)]


def page_state(m: Machine, pfn: int) -> tuple[int, int, int, int, int, int]:
    """(queue, flags, wire, busy, valid, hold) of one page."""
    pg = m.pg
    i = idx(m, pfn)
    return (pg.queue[i], pg.flags[i], pg.wire[i], pg.busy[i], pg.valid[i], pg.hold[i])


def alloc_contig(m: Machine, size: int, **kw: Any) -> Any:
    return call(m, "vm_page_alloc_contig", size=size, **kw)


def pg_alloc(m: Machine, size: int, **kw: Any) -> Any:
    return call(m, "vm_contig_pg_alloc", size=size, **kw)


# =======================================================================================
# §7.4 vm_page_alloc_contig
# =======================================================================================


def test_reserve_view_of_the_32mib_machine() -> None:
    m = boot32()
    assert dma_alist_view(m) == {
        "bl_free": 511,  # blocks 1..511 (see the module docstring)
        "free_runs": [[1, 511]],
        "vm_low_phys_reserved": 0x200000,  # 512 << 12
        "vm_dma_reserved": 2096896,  # min(128 MiB, 33550336 / 16)
    }
    assert call(m, "vm_contig_avail_pages") == 511


def test_alloc_contig_one_page_is_the_lowest_free_block_as_it_sits_in_the_reserve() -> None:
    m = boot32()
    before = (m.vmstats.cnt[:], m.cpus[0].adj.cnt[:], m.cpus[0].vmstats.cnt[:])
    r = m.call("vm_page_alloc_contig", {"size": PAGE})
    # alist_alloc(0, 1): the lowest free block is 1 (block 0 was never freed: pfn 0 is
    # not in phys_avail)
    assert r.result == 1
    # wired once, FICTITIOUS|UNQUEUED, PQ_NONE, not busy; valid untouched (0)
    assert page_state(m, 1) == (PQ_NONE, FICT_UNQ, 1, 0, 0, 0)
    assert call(m, "vm_contig_avail_pages") == 510  # 511 - 1
    # no counter moves: the pages were counted wired at boot and stay so
    assert (m.vmstats.cnt, m.cpus[0].adj.cnt, m.cpus[0].vmstats.cnt) == before
    assert r.record["moves"] == []
    check_invariants(m)


def test_alloc_contig_rounds_up_to_a_power_of_two_and_frees_the_tail() -> None:
    m = boot32()
    assert alloc_contig(m, PAGE) == 1  # as above; free now 2..511
    # size 12000: npg = (12000 + 4095) >> 12 = 16095 >> 12 = 3 (3.93 truncated);
    # alist rounds 3 up to 4: the lowest 4-aligned fully free block of 4 is 4..7
    # (0..3 holds the never-free 0 and the taken 1); the tail block 7 is freed at once
    assert alloc_contig(m, 12000) == 4
    assert m.contig.alist.free_runs() == [(2, 2), (7, 505)]  # 2..3, 7..511
    assert m.contig.alist.bl_free == 507  # 510 - 3
    assert m.contig.alist.is_free(7)
    # 16 pages: lowest 16-aligned free block: 0..15 is not whole (0, 1, 4, 5, 6), 16..31 is
    assert alloc_contig(m, 16 * PAGE) == 16
    # free: 2..3, 7..15 (9 blocks), 32..511 (480 blocks)
    assert m.contig.alist.free_runs() == [(2, 2), (7, 9), (32, 480)]
    assert m.contig.alist.bl_free == 491  # 507 - 16 = 2 + 9 + 480
    for pfn in (4, 5, 6, 16, 31):
        assert page_state(m, pfn) == (PQ_NONE, FICT_UNQ, 1, 0, 0, 0)
    check_invariants(m)


def test_alloc_contig_ignores_low_and_alignment() -> None:
    m = boot32()
    # low 1 MiB and 64 KiB alignment are only logged: the block is still pfn 1, phys
    # 0x1000, which is below low and not a multiple of 0x10000
    got = alloc_contig(m, PAGE, low=0x100000, alignment=0x10000)
    assert got == 1
    assert (got << 12) < 0x100000
    assert (got << 12) % 0x10000 == 0x1000


def test_alloc_contig_ignores_boundary() -> None:
    m = boot32()
    assert alloc_contig(m, PAGE) == 1
    # 4 pages with an 8 KiB boundary: alist gives the lowest 4-aligned free block, 4..7
    # (phys 0x4000..0x7FFF), which crosses the 8 KiB line at 0x6000:
    # (0x4000 ^ 0x7FFF) & ~(0x2000 - 1) = 0x3FFF & ~0x1FFF = 0x2000 != 0
    got = alloc_contig(m, 4 * PAGE, boundary=0x2000)
    assert got == 4
    first, last = got << 12, ((got + 4) << 12) - 1
    assert (first ^ last) & ~(0x2000 - 1) == 0x2000


def test_alloc_contig_high_limit_frees_the_block_back() -> None:
    m = boot32()
    digest = state_digest(m)
    # 16 pages: alist returns block 16; (16 + 16) << 12 = 0x20000 > high 0x1FFFF -> freed
    # back, NULL; the alist ends exactly as it was
    assert alloc_contig(m, 16 * PAGE, high=0x1FFFF) is None
    assert m.contig.alist.bl_free == 511
    assert m.contig.alist.free_runs() == [(1, 511)]
    assert state_digest(m) == digest
    check_invariants(m)
    # high 0x20000: 0x20000 > 0x20000 is false -> granted
    assert alloc_contig(m, 16 * PAGE, high=0x20000) == 16
    # high 0 means no limit
    assert alloc_contig(m, PAGE, high=0) == 1


def test_alloc_contig_size_limits() -> None:
    m = boot32()
    # 512 pages need a 512-aligned free block: 0..511 holds block 0 (never free) and
    # blocks from 512 up are not in the reserve -> NULL, nothing changes
    assert alloc_contig(m, 512 * PAGE) is None
    # 65536 pages = the alist's radix: always refused
    assert alloc_contig(m, 65536 * PAGE) is None
    assert m.contig.alist.bl_free == 511
    # 256 pages: the 256-aligned block 256..511 is whole
    assert alloc_contig(m, 256 * PAGE) == 256
    assert m.contig.alist.bl_free == 255  # 511 - 256
    assert m.contig.alist.free_runs() == [(1, 255)]
    check_invariants(m)


def test_alloc_contig_memattr_sets_pat_on_every_page() -> None:
    m = boot32()
    # 2 pages: lowest 2-aligned whole block is 2..3 (0..1 holds block 0)
    got = alloc_contig(m, 2 * PAGE, memattr="VM_MEMATTR_UNCACHEABLE")
    assert got == 2
    pat = m.pg.pat
    assert (pat[idx(m, 2)], pat[idx(m, 3)]) == (VM_MEMATTR_UNCACHEABLE, VM_MEMATTR_UNCACHEABLE)
    assert pat[idx(m, 1)] == PAT_WRITE_BACK  # neighbours untouched
    assert pat[idx(m, 4)] == PAT_WRITE_BACK
    # the default attribute leaves pat alone
    assert alloc_contig(m, PAGE, memattr="VM_MEMATTR_DEFAULT") == 1
    assert pat[idx(m, 1)] == PAT_WRITE_BACK
    # free_contig only hands the blocks back: the attribute stays as it was set
    call(m, "vm_page_free_contig", m=2, size=2 * PAGE)
    assert pat[idx(m, 2)] == VM_MEMATTR_UNCACHEABLE
    check_invariants(m)


def test_contig_verbose_logs_the_converted_alignment_and_boundary() -> None:
    m = boot32()
    lines = len(m.console)
    assert alloc_contig(m, PAGE) == 1
    assert len(m.console) == lines  # vm.contig_verbose defaults to 0: no log
    m.contig.verbose = 1
    assert alloc_contig(m, PAGE, alignment=0x10000, boundary=0) == 2
    # alignment max(1, 0x10000 >> 12) = 16 pages, boundary max(1, 0 >> 12) = 1
    assert "alignment=16 boundary=1" in m.console[-1]
    assert "pfn 0x2" in m.console[-1]


def test_alloc_contig_refuses_size_zero_and_absurd_sizes_up_front() -> None:
    m = boot32()
    digest = state_digest(m)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_alloc_contig", {"size": 0})
    with pytest.raises(InvalidArgument):
        vm_page_alloc_contig(m, 0, 0, 0, 0, 0, PAT_WRITE_BACK)
    with pytest.raises(InvalidArgument):  # 2^43 + 1 bytes: beyond the 32-bit block count
        vm_page_alloc_contig(m, 0, 0, 0, 0, (1 << 43) + 1, PAT_WRITE_BACK)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_alloc_contig", {"size": PAGE, "high": -1})
    assert state_digest(m) == digest


# =======================================================================================
# §7.5 vm_page_free_contig
# =======================================================================================


def test_free_contig_returns_a_reserve_block() -> None:
    m = boot32()
    assert alloc_contig(m, 4 * PAGE) == 4  # lowest whole 4-aligned block (0..3 holds 0)
    assert m.contig.alist.bl_free == 507  # 511 - 4
    r = m.call("vm_page_free_contig", {"m": 4, "size": 4 * PAGE})
    assert r.result is None and r.blocked is None
    assert m.contig.alist.bl_free == 511
    assert m.contig.alist.free_runs() == [(1, 511)]
    for pfn in (4, 7):  # the pages stay wired, FICTITIOUS|UNQUEUED, not busy
        assert page_state(m, pfn) == (PQ_NONE, FICT_UNQ, 1, 0, 0, 0)
    check_invariants(m)


def test_free_contig_double_free_panics_and_changes_nothing() -> None:
    m = boot32()
    assert alloc_contig(m, PAGE) == 1
    call(m, "vm_page_free_contig", m=1, size=PAGE)
    digest = state_digest(m)
    with pytest.raises(KernelPanic) as e:
        m.call("vm_page_free_contig", {"m": 1, "size": PAGE})
    assert e.value.function == "alist_free"
    assert state_digest(m) == digest
    # a block never handed out is just as free
    with pytest.raises(KernelPanic):
        m.call("vm_page_free_contig", {"m": 5, "size": PAGE})
    # a range whose first block is allocated but whose second is free: alist_free checks
    # the whole range before marking anything
    assert alloc_contig(m, PAGE) == 1
    with pytest.raises(KernelPanic):
        m.call("vm_page_free_contig", {"m": 1, "size": 2 * PAGE})
    assert not m.contig.alist.is_free(1)
    check_invariants(m)


def test_free_contig_asserts_the_block_ends_below_vm_low_phys_reserved() -> None:
    m = boot32()
    assert alloc_contig(m, 256 * PAGE) == 256  # blocks 256..511
    digest = state_digest(m)
    # pfn 511: pa 0x1FF000 < 0x200000 (reserve path), but 0x1FF000 + 0x2000 = 0x201000 >
    # vm_low_phys_reserved 0x200000 -> KASSERT
    with pytest.raises(KernelPanic) as e:
        m.call("vm_page_free_contig", {"m": 511, "size": 2 * PAGE})
    assert e.value.function == "vm_page_free_contig"
    assert "vm_low_phys_reserved" in e.value.message
    # 0x1FF000 + 0x1000 = 0x200000 <= 0x200000: fine
    assert state_digest(m) == digest
    call(m, "vm_page_free_contig", m=511, size=PAGE)
    assert m.contig.alist.is_free(511)
    check_invariants(m)


def test_free_contig_asserts_a_reserve_page_is_fictitious() -> None:
    m = boot32()
    assert alloc_contig(m, PAGE) == 1
    # vm_page_flag_clear refuses this on a reserve page, so set it directly to reach the
    # KASSERT
    m.pg.flags[idx(m, 1)] &= ~PG_FICTITIOUS
    digest = state_digest(m)
    with pytest.raises(KernelPanic) as e:
        m.call("vm_page_free_contig", {"m": 1, "size": PAGE})
    assert "PG_FICTITIOUS" in e.value.message
    assert state_digest(m) == digest


def test_free_contig_refuses_size_zero() -> None:
    m = boot32()
    assert alloc_contig(m, PAGE) == 1
    digest = state_digest(m)
    with pytest.raises(InvalidArgument):
        m.call("vm_page_free_contig", {"m": 1, "size": 0})
    assert state_digest(m) == digest


# =======================================================================================
# §7.7 vm_contig_pg_alloc: the reserve first, then the address-order scan
# =======================================================================================


def test_fallback_tries_the_reserve_first() -> None:
    m = boot32()
    got = pg_alloc(m, PAGE)
    assert got == 1  # vm_page_alloc_contig's block: a reserve page, FICTITIOUS
    assert page_state(m, 1) == (PQ_NONE, FICT_UNQ, 1, 0, 0, 0)
    assert m.contig.alist.bl_free == 510


def test_fallback_scans_in_address_order_not_queue_order() -> None:
    m = boot_nores()
    assert m.first_page == 1024 and m.vmstats.v_page_count == 3967
    assert m.contig.alist.bl_free == 0
    # colour 1 holds pfn 1024 ((1024 ^ 1) & 1023 = 1), 2051 ((2051 ^ 2) & 1023 = 1),
    # 3074 ((3074 ^ 3) & 1023 = 1) and 4101 ((4101 ^ 4) & 1023 = 1); each was added at the
    # head in ascending order, so the highest is the head and 1024 is the tail
    assert queue_pfns(m, PQ_FREE + 1) == [4101, 3074, 2051, 1024]
    before_global = m.vmstats.cnt[:]
    assert m.cpus[0].adj.cnt == [0, 0, 0, 0, 0]
    free_gd = m.cpus[0].vmstats.cnt[CNT_FREE]
    r = m.call("vm_contig_pg_alloc", {"size": PAGE})
    # the scan starts at vm_page_array[0] = pfn 1024, the lowest address, which the
    # queue-order allocator would hand out last
    assert r.result == 1024
    assert queue_pfns(m, PQ_FREE + 1) == [4101, 3074, 2051]
    # taken: wired once, valid 0xFF, flags 0, on PQ_NONE, not busy
    assert page_state(m, 1024) == (PQ_NONE, 0, 1, 0, 0xFF, 0)
    # counters: the unqueue moved v_free_count -1 in cpu0's snapshot and adjustment; the
    # wiring only in the adjustment; the global vmstats waits for a rollup
    assert m.cpus[0].adj.cnt[CNT_FREE] == -1
    assert m.cpus[0].adj.cnt[CNT_WIRE] == 1
    assert m.cpus[0].vmstats.cnt[CNT_FREE] == free_gd - 1
    assert m.vmstats.cnt == before_global
    check_invariants(m)


def test_fallback_alignment_skips_a_busy_page() -> None:
    m = boot_nores()
    assert call(m, "vm_page_busy_try", m=1025, also_m_busy=False) is False  # busied
    # 4 pages aligned to 16 KiB: candidate 1024 (0x400000 % 0x4000 == 0), but its run
    # 1024..1027 holds the busy 1025 -> start = 1025; next aligned page 1028 (0x404000),
    # run 1028..1031 all free
    assert pg_alloc(m, 4 * PAGE, alignment=0x4000) == 1028
    for pfn in range(1028, 1032):
        assert page_state(m, pfn) == (PQ_NONE, 0, 1, 0, 0xFF, 0)
    assert m.pg.queue[idx(m, 1024)] == PQ_FREE + 1  # (1024 ^ 1) & 1023: untouched
    assert m.cpus[0].adj.cnt[CNT_WIRE] == 4
    assert m.cpus[0].adj.cnt[CNT_FREE] == -4
    check_invariants(m)


def test_fallback_skips_a_soft_busied_page_but_not_a_wanted_one() -> None:
    m = boot_nores()
    call(m, "vm_page_sbusy_hold", m=1024)  # soft count 1 on a free page
    # 1 page: 1024 fails the busy test (soft count), 1025 is the first candidate
    assert pg_alloc(m, PAGE) == 1025
    # PBUSY_WANTED alone is not "busy" for the scan (it tests LOCKED|MASK)
    m.pg.busy[idx(m, 1026)] = PBUSY_WANTED
    assert pg_alloc(m, PAGE) == 1026
    assert m.pg.busy[idx(m, 1026)] == 0  # busy_try took LOCKED, the wakeup cleared both


def test_fallback_boundary() -> None:
    m = boot_nores()
    assert call(m, "vm_page_busy_try", m=1025, also_m_busy=False) is False
    # 4 pages, any page alignment, 16 KiB boundary:
    #   1024: run holds busy 1025;  1025: busy;
    #   1026: 0x402000 ^ (0x402000 + 0x3FFF = 0x405FFF) = 0x7FFF, & ~0x3FFF = 0x4000 -> crosses
    #   1027: 0x403000 ^ 0x406FFF = 0x5FFF, & ~0x3FFF = 0x4000 -> crosses
    #   1028: 0x404000 ^ 0x407FFF = 0x3FFF, & ~0x3FFF = 0 -> run 1028..1031 free
    assert pg_alloc(m, 4 * PAGE, alignment=PAGE, boundary=0x4000) == 1028
    check_invariants(m)


def test_fallback_run_check_covers_the_last_page_of_the_run() -> None:
    m = boot_nores()
    assert call(m, "vm_page_busy_try", m=1027, also_m_busy=False) is False
    # 4 pages: the runs from 1024, 1025 and 1026 all end on or pass the busy 1027, which is
    # itself no candidate; the first whole run starts at 1028
    assert _contig_find(m, 0, 4, 4 * PAGE, 0, (1 << 64) - 1, PAGE, 0) == idx(m, 1028)
    adds = m.pq.adds[:]
    assert pg_alloc(m, 4 * PAGE) == 1028
    assert m.pq.adds == adds  # nothing was taken and given back on the way
    assert base_queue(m, 1024) == PQ_FREE


def test_the_take_does_not_wake_the_pagedaemon() -> None:
    m = boot_nores()
    # make vm_paging_start(0) true on cpu0: v_paging_start 4000 > free + cache = 3967
    m.cpus[0].vmstats.v_paging_start = 4000
    assert m.pd.vm_pages_needed == 0
    assert pg_alloc(m, PAGE) == 1024  # vm_page_unqueue_nowakeup: no pagedaemon_wakeup
    assert m.pd.vm_pages_needed == 0
    call(m, "vm_page_unqueue", m=1025)  # the waking form would have poked it
    assert m.pd.vm_pages_needed == 1


def test_fallback_without_boundary_takes_the_crossing_run() -> None:
    m = boot_nores()
    assert call(m, "vm_page_busy_try", m=1025, also_m_busy=False) is False
    # same layout, boundary 0 (no limit): 1026 is the first page whose run 1026..1029 is
    # free
    assert pg_alloc(m, 4 * PAGE, alignment=PAGE, boundary=0) == 1026


def test_fallback_low_and_high() -> None:
    m = boot_nores()
    digest = state_digest(m)
    # low 0x404001: the first 16 KiB-aligned address at or above it is 0x408000 = pfn 1032;
    # high 0x40BFFF: 0x408000 + 0x4000 = 0x40C000 > high -> the pass ends; three passes, the
    # (empty) inactive queues cleaned after each, NULL, nothing changed
    assert pg_alloc(m, 4 * PAGE, low=0x404001, high=0x40BFFF, alignment=0x4000) is None
    assert state_digest(m) == digest
    # high 0x40C000: 0x40C000 > 0x40C000 is false -> granted
    assert pg_alloc(m, 4 * PAGE, low=0x404001, high=0x40C000, alignment=0x4000) == 1032
    check_invariants(m)


def test_fallback_on_an_exhausted_reserve() -> None:
    m = boot32()
    # drain the reserve 1..511 with blocks 1, 2..3, 4..7, ..., 256..511 (1 + 2 + ... + 256
    # = 511 pages): each is the lowest naturally aligned whole block
    for k in range(9):
        assert alloc_contig(m, PAGE << k) == 1 << k
    assert m.contig.alist.bl_free == 0
    # the scan passes pfn 1..511 (reserve pages: PQ_NONE, wired) and takes 512 (pa 0x200000,
    # the first page returned to the free queues by startup_finish)
    assert pg_alloc(m, PAGE) == 512
    # 2 pages aligned to 8 KiB: 512 is taken, 513 is not aligned, 514..515 are free
    assert pg_alloc(m, 2 * PAGE, alignment=0x2000) == 514
    check_invariants(m)


def test_fallback_panics_up_front() -> None:
    m = boot_nores()
    digest = state_digest(m)
    with pytest.raises(KernelPanic) as e:
        pg_alloc(m, 0)
    assert e.value.message == "size must not be 0"
    # round_page(2^64 - 1) wraps to 0 in 64 bits
    with pytest.raises(KernelPanic) as e:
        pg_alloc(m, (1 << 64) - 1)
    assert e.value.message == "size must not be 0"
    with pytest.raises(KernelPanic) as e:
        pg_alloc(m, PAGE, alignment=0x3000)  # 0x3000 & 0x2FFF = 0x2000 != 0
    assert e.value.message == "alignment must be a power of 2"
    with pytest.raises(KernelPanic) as e:
        pg_alloc(m, PAGE, boundary=0x6000)  # 0x6000 & 0x5FFF = 0x4000 != 0
    assert e.value.message == "boundary must be a power of 2"
    assert state_digest(m) == digest
    # alignment 0 is allowed: alignment - 1 wraps to all ones, so only phys 0 is aligned,
    # and this machine's lowest page is at 0x400000 -> NULL
    assert pg_alloc(m, PAGE, alignment=0) is None
    assert state_digest(m) == digest


def test_fallback_scan_stops_at_v_page_count_quirk() -> None:
    # Two 4 MiB ranges with a hole: (0x400000, 0x800000) = pfn 1024..2047 and
    # (0xC00000, 0x1000000) = pfn 3072..4095.  total 8 MiB; total / 4 = 0x200000 < 0x400000:
    # no reserve.  first_page 1024; page_range 4096 - 1024 = 3072 (hole included).
    # biggestone = 0 (the first of two equal sizes); nbits 4096 -> 512 bytes -> one page:
    # end = 0x800000 - 0x1000 = 0x7FF000; npages = (8388608 - 3072 * 128) / 4096 = 1952;
    # new_end = trunc_page(0x7FF000 - 393216 = 0x79F000): range 0 gives pfn 1024..1950
    # (0x79F - 0x400 = 927 pages), npages 1952 - 927 = 1025; range 1 gives all 1024.
    # v_page_count = 927 + 1024 = 1951, so the scan covers vm_page_array[0 .. 1950] = pfn
    # 1024..2974 and never reaches pfn 3072..4095 (indices 2048..3071).
    holes = ((0x400000, 0x800000), (0xC00000, 0x1000000))
    m = Machine.boot(MachineConfig(phys_avail=holes))
    assert m.vmstats.v_page_count == 1951
    assert m.pg.queue[idx(m, 3072)] != PQ_NONE  # free, on a queue
    assert pg_alloc(m, PAGE, low=0xC00000) is None
    assert pg_alloc(m, PAGE) == 1024


def test_fallback_pages_go_back_through_free_contig() -> None:
    m = boot_nores()
    assert pg_alloc(m, 4 * PAGE, alignment=0x4000) == 1024
    adds_before = m.pq.adds[:]
    tfree = m.cpus[0].meter["v_tfree"]
    # pa 0x400000 >= vm_low_phys_reserved 0x400000: the normal-memory path
    r = m.call("vm_page_free_contig", {"m": 1024, "size": 4 * PAGE})
    assert r.result is None and r.blocked is None
    # colours (pfn ^ 1) & 1023: 1024 -> 1, 1025 -> 0, 1026 -> 3, 1027 -> 2; each page went
    # through the inactive tail (unwire 1 -> 0: adds + 1) and then to its free head
    for pfn, color in ((1024, 1), (1025, 0), (1026, 3), (1027, 2)):
        assert m.pq.head[PQ_FREE + color] == idx(m, pfn)
        assert m.pq.adds[PQ_INACTIVE + color] == adds_before[PQ_INACTIVE + color] + 1
        assert page_state(m, pfn) == (PQ_FREE + color, 0, 0, 0, 0, 0)  # valid cleared
    assert m.cpus[0].meter["v_tfree"] == tfree + 4
    assert m.cpus[0].adj.cnt[CNT_WIRE] == 0  # +4 by the take, -4 by the unwires
    assert m.cpus[0].adj.cnt[CNT_FREE] == 0  # -4, +4
    check_invariants(m)
    # a second free: wire_count 0 -> vm_page_unwire panics, checked before anything
    digest = state_digest(m)
    with pytest.raises(KernelPanic) as e:
        m.call("vm_page_free_contig", {"m": 1024, "size": 4 * PAGE})
    assert e.value.function == "vm_page_unwire"
    assert state_digest(m) == digest


def test_free_contig_checks_every_page_before_freeing_any() -> None:
    m = boot_nores()
    assert pg_alloc(m, 2 * PAGE, alignment=0x2000) == 1024
    call(m, "vm_page_busy_try", m=1025, also_m_busy=False)
    call(m, "vm_page_io_start", m=1025)  # soft count 1
    call(m, "vm_page_wakeup", m=1025)  # hard busy gone, soft busy stays
    digest = state_digest(m)
    with pytest.raises(KernelPanic) as e:
        m.call("vm_page_free_contig", {"m": 1024, "size": 2 * PAGE})
    assert e.value.message == "freeing busy page"
    assert state_digest(m) == digest  # 1024 was not freed either


def test_free_contig_sleeps_on_a_busy_page_and_finishes_after_the_wakeup() -> None:
    m = boot_nores()
    assert pg_alloc(m, 4 * PAGE, alignment=0x4000) == 1024
    call(m, "vm_page_busy_try", m=1026, also_m_busy=False)  # someone holds 1026
    r = m.call("vm_page_free_contig", {"m": 1024, "size": 4 * PAGE}, thread=1)
    assert r.blocked is not None
    assert r.blocked["channel"] == "page:1026" and r.blocked["wmesg"] == "cpgfr"
    # 1024 and 1025 went back (colours 1 and 0), 1026 and 1027 are still wired
    assert m.pg.queue[idx(m, 1024)] == PQ_FREE + 1
    assert m.pg.queue[idx(m, 1025)] == PQ_FREE + 0
    assert page_state(m, 1026)[2] == 1 and page_state(m, 1027)[2] == 1
    # the sleeper set WANTED (and PG_REFERENCED) on 1026
    assert m.pg.busy[idx(m, 1026)] == PBUSY_LOCKED | PBUSY_WANTED
    assert m.pg.flags[idx(m, 1026)] & PG_REFERENCED
    check_invariants(m)
    w = m.call("vm_page_wakeup", {"m": 1026})
    assert w.record["resumed"][0]["tid"] == 1
    # resumed: busied 1026, unwired, freed; then 1027.  Colours (1026 ^ 1) & 1023 = 3 and
    # (1027 ^ 1) & 1023 = 2
    assert m.pg.queue[idx(m, 1026)] == PQ_FREE + 3
    assert m.pg.queue[idx(m, 1027)] == PQ_FREE + 2
    assert m.pg.wire[idx(m, 1026)] == 0 and m.pg.busy[idx(m, 1026)] == 0
    # the free kept PG_REFERENCED (vm_page_free_toq clears only NEED_COMMIT|UNQUEUED) ...
    assert m.pg.flags[idx(m, 1026)] == PG_REFERENCED
    check_invariants(m)
    # ... and the next take clears every flag: 1024..1027 are free again, 1024 is aligned
    assert pg_alloc(m, 4 * PAGE, alignment=0x4000) == 1024
    assert m.pg.flags[idx(m, 1026)] == 0


# =======================================================================================
# The vectorised search against a literal transcription of the spec's loop
# =======================================================================================


def _reference_find(
    m: Machine, start: int, npg: int, size: int, low: int, high: int, alignment: int, boundary: int
) -> int:
    """§7.7's search, page by page: first candidate from ``start``; a candidate whose
    ``phys + size > high`` ends the pass; a run that fails the state tests moves ``start``
    one page on and searches again."""
    pg = m.pg
    mask = (1 << 64) - 1

    def state_ok(i: int) -> bool:
        if i >= m.page_range:
            return False
        base = pg.queue[i] - pg.pc[i]
        return (
            base in (PQ_FREE, PQ_CACHE)
            and pg.wire[i] == 0
            and pg.hold[i] == 0
            and pg.busy[i] & (PBUSY_LOCKED | PBUSY_MASK) == 0
            and not pg.flags[i] & PG_NEED_COMMIT
        )

    while True:
        found = -1
        for i in range(start, m.vmstats.v_page_count):
            phys = (m.first_page + i) << 12
            if (
                state_ok(i)
                and low <= phys < high
                and phys & ((alignment - 1) & mask) == 0
                and (phys ^ ((phys + size - 1) & mask)) & (~(boundary - 1) & mask) == 0
            ):
                found = i
                break
        if found < 0 or ((m.first_page + found) << 12) + size > high:
            return -1
        if all(state_ok(j) for j in range(found + 1, found + npg)):
            return found
        start = found + 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    busy=st.lists(st.integers(0, 63), max_size=24),
    npg=st.integers(1, 9),
    align_shift=st.integers(12, 16),
    boundary_shift=st.sampled_from([0, 13, 14, 15, 16]),
    low_page=st.integers(0, 40),
    high_extra=st.integers(-4, 60),
    start=st.integers(0, 20),
    window=st.sampled_from([1, 3, 8, 1 << 16]),
)
def test_vectorised_find_matches_the_spec_loop(
    busy: list[int],
    npg: int,
    align_shift: int,
    boundary_shift: int,
    low_page: int,
    high_extra: int,
    start: int,
    window: int,
) -> None:
    m = boot_nores()
    for k in busy:  # hard-busy some of the 64 lowest pages
        vm_page_busy_try(m, k, False)
    base = m.first_page << 12
    size = npg * PAGE
    low = base + low_page * PAGE
    high = base + (low_page + high_extra) * PAGE
    alignment = 1 << align_shift
    boundary = 0 if boundary_shift == 0 else 1 << boundary_shift
    if boundary and boundary < size:
        boundary = 0
    expected = _reference_find(m, start, npg, size, low, high, alignment, boundary)
    old = contig_mod._SCAN_WINDOW
    contig_mod._SCAN_WINDOW = window
    try:
        got = _contig_find(m, start, npg, size, low, high, alignment, boundary)
    finally:
        contig_mod._SCAN_WINDOW = old
    assert got == expected


# =======================================================================================
# §7.7 cache pages and vm_contig_pg_clean between the passes
# =======================================================================================
#
# On NORES, pfn 2000..2003 (phys 0x7D0000..0x7D3FFF) are the only pages a request with
# low = 2000 << 12 = 0x7D0000 and high = 2004 << 12 = 0x7D4000 for 4 pages can use: the run
# must start at >= 0x7D0000 and end (start + 0x4000) <= 0x7D4000, so it starts at 2000.
# Their colours, (pfn ^ 1) & 1023: 2000 -> 977, 2001 -> 976, 2002 -> 979, 2003 -> 978.

WIN = (2000, 2001, 2002, 2003)
WIN_COLORS = {2000: 977, 2001: 976, 2002: 979, 2003: 978}
WIN_LOW = 2000 << 12
WIN_HIGH = 2004 << 12


def win_alloc(m: Machine, mflags: str = "M_NOWAIT") -> Any:
    return pg_alloc(m, 4 * PAGE, low=WIN_LOW, high=WIN_HIGH, mflags=mflags)


def make_page(
    m: Machine, pfn: int, obj: int | None, pindex: int, *, active: bool = False, dirty: bool = False
) -> None:
    """Take a free page off PQ_FREE and leave it unbusied on the inactive (or active) tail,
    owned by ``obj`` at ``pindex`` (or object-less), optionally dirty."""
    call(m, "vm_page_unqueue", m=pfn)
    assert call(m, "vm_page_busy_try", m=pfn, also_m_busy=True) is False
    if obj is not None:
        assert call(m, "vm_page_insert", m=pfn, object=obj, pindex=pindex) is True
    call(m, "vm_page_activate" if active else "vm_page_deactivate", m=pfn)
    if dirty:
        call(m, "vm_page_dirty", m=pfn)
    call(m, "vm_page_wakeup", m=pfn)


def base_queue(m: Machine, pfn: int) -> int:
    i = idx(m, pfn)
    return m.pg.queue[i] - m.pg.pc[i]


def test_inactive_pages_are_cached_by_the_first_clean_and_taken_by_the_second_pass() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    for k, pfn in enumerate(WIN):
        make_page(m, pfn, obj, k)
    call(m, "vmstats_rollup")  # the clean's budget is the *global* v_inactive_count (4)
    assert m.vmstats.v_inactive_count == 4
    tfree = m.cpus[0].meter["v_tfree"]
    m.contig.verbose = 1
    # pass 0: no candidate (the pages are inactive) -> clean every inactive colour: each
    # page is clean, unheld, owned -> vm_page_cache (cache tail); pass 1: 2000..2003 are on
    # PQ_CACHE -> each is unmapped, freed (free head) and taken
    assert win_alloc(m) == 2000
    assert "pass 1" in m.console[-1]
    for pfn in WIN:
        assert page_state(m, pfn) == (PQ_NONE, 0, 1, 0, 0xFF, 0)
        assert m.pg.obj[idx(m, pfn)] == 0  # the free took it out of the object
    assert m.vmobj.objects[obj].resident_page_count == 0
    assert m.cpus[0].meter["v_tfree"] == tfree + 4  # one vm_page_free per cache page
    assert m.cpus[0].meter["v_reactivated"] == 0  # the cache pages were freed, not reused
    # cpu0 since the rollup: inactive -4, cache +4 -4, free +4 -4, wire +4
    assert m.cpus[0].adj.cnt == [0, -4, 0, 0, 4]
    check_invariants(m)


def test_clean_walks_only_as_many_pages_as_the_global_inactive_count_says() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    for k, pfn in enumerate(WIN):
        make_page(m, pfn, obj, k)
    # no rollup: the four deactivations sit in cpu0's adjustment, the global
    # v_inactive_count is still 0, so every clean walks 0 pages and nothing gets cached
    assert m.vmstats.v_inactive_count == 0
    assert win_alloc(m) is None
    assert all(base_queue(m, pfn) == PQ_INACTIVE for pfn in WIN)
    check_invariants(m)


def test_cache_pages_are_taken_in_the_first_pass() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    for k, pfn in enumerate(WIN):
        make_page(m, pfn, obj, k)
        call(m, "vm_page_busy_try", m=pfn, also_m_busy=True)
        call(m, "vm_page_cache", m=pfn)
    assert [base_queue(m, pfn) for pfn in WIN] == [PQ_CACHE] * 4
    cache_gd = m.cpus[0].vmstats.cnt[3]
    m.contig.verbose = 1
    assert win_alloc(m) == 2000
    assert "pass 0" in m.console[-1]
    assert m.cpus[0].vmstats.cnt[3] == cache_gd - 4  # v_cache_count in cpu0's snapshot
    assert m.pq.lcnt[PQ_CACHE + 977] == 0
    check_invariants(m)


def test_dirty_pages_are_written_then_cached_then_taken_in_the_third_pass() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_SWAP")
    for k, pfn in enumerate(WIN):
        make_page(m, pfn, obj, k, dirty=True)
    call(m, "vmstats_rollup")
    m.contig.verbose = 1
    # pass 0: clean writes the dirty pages (they stay inactive); pass 1: clean caches them;
    # pass 2: taken
    assert win_alloc(m) == 2000
    assert "pass 2" in m.console[-1]
    check_invariants(m)


def test_one_clean_writes_a_dirty_page_and_leaves_it_in_place() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_VNODE")
    make_page(m, 2000, obj, 0, dirty=True)
    call(m, "vmstats_rollup")
    i = idx(m, 2000)
    assert m.pg.dirty[i] == 0xFF
    vm_contig_pg_clean(m, PQ_INACTIVE + 977, m.vmstats.v_inactive_count)
    # written synchronously: clean, soft-busy count back to 0, unbusied, still inactive
    assert m.pg.dirty[i] == 0
    assert m.pg.busy[i] == 0
    assert base_queue(m, 2000) == PQ_INACTIVE
    vm_contig_pg_clean(m, PQ_INACTIVE + 977, m.vmstats.v_inactive_count)
    assert base_queue(m, 2000) == PQ_CACHE  # now clean: cached
    check_invariants(m)


def test_clean_write_protects_a_writable_mapping_and_collects_its_modified_bit() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    make_page(m, 2000, obj, 0)
    call(m, "pmap_enter", m=2000, pmap=1, writeable=True)
    call(m, "pmap_touch", m=2000, pmap=1, write=True)  # M bit set, m.dirty still 0
    call(m, "vmstats_rollup")
    i = idx(m, 2000)
    assert m.pg.dirty[i] == 0
    vm_contig_pg_clean(m, PQ_INACTIVE + 977, m.vmstats.v_inactive_count)
    # vm_page_test_dirty saw the M bit -> dirty -> the pager write-protected the mapping
    # (collecting and clearing M) and cleaned the page; the mapping stays, read-only, its
    # A bit (set by the touch) untouched: [writable, referenced, modified]
    assert m.pg.dirty[i] == 0
    assert m.pmap.mappings[i] == {1: [False, True, False]}
    assert base_queue(m, 2000) == PQ_INACTIVE
    check_invariants(m)


def test_need_commit_and_device_pages_are_never_cached() -> None:
    m = boot_nores()
    swap = call(m, "vm_object_allocate", type="OBJT_SWAP")
    dev = call(m, "vm_object_allocate", type="OBJT_DEVICE")
    make_page(m, 2000, swap, 0)
    call(m, "vm_page_need_commit", m=2000)
    make_page(m, 2001, dev, 0, dirty=True)  # dirty page of a device object: not written
    make_page(m, 2002, swap, 1)
    make_page(m, 2003, swap, 2)
    call(m, "vmstats_rollup")
    assert win_alloc(m) is None
    assert base_queue(m, 2000) == PQ_INACTIVE
    assert m.pg.flags[idx(m, 2000)] & PG_NEED_COMMIT  # the pager leaves the commit pending
    assert base_queue(m, 2001) == PQ_INACTIVE and m.pg.dirty[idx(m, 2001)] == 0xFF
    assert base_queue(m, 2002) == PQ_CACHE and base_queue(m, 2003) == PQ_CACHE
    check_invariants(m)


def test_active_pages_are_cleaned_only_with_m_waitok_from_the_second_pass() -> None:
    for mflags, expected in (("M_NOWAIT", None), ("M_WAITOK", 2000)):
        m = boot_nores()
        obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
        for k, pfn in enumerate(WIN):
            make_page(m, pfn, obj, k, active=True)
        call(m, "vmstats_rollup")
        assert m.vmstats.v_active_count == 4
        m.contig.verbose = 1
        # M_WAITOK: pass 0 cleans the inactive queues only; pass 1 also the active ones
        # (count = global v_active_count = 4) -> cached; pass 2 takes them
        assert win_alloc(m, mflags) == expected
        if expected is None:
            assert all(base_queue(m, pfn) == PQ_ACTIVE for pfn in WIN)
        else:
            assert "pass 2" in m.console[-1]
        check_invariants(m)


def test_clean_skips_busy_held_wired_and_objectless_pages() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    make_page(m, 2000, obj, 0, dirty=True)
    call(m, "vm_page_hold", m=2000)  # held
    make_page(m, 2001, obj, 1, dirty=True)
    call(m, "vm_page_busy_try", m=2001, also_m_busy=True)
    call(m, "vm_page_wire", m=2001)  # wired (stays on the inactive queue)
    call(m, "vm_page_wakeup", m=2001)
    make_page(m, 2002, obj, 2)
    call(m, "vm_page_busy_try", m=2002, also_m_busy=True)  # someone else holds it busy
    make_page(m, 2003, None, 0)  # no object
    call(m, "vmstats_rollup")
    assert win_alloc(m) is None
    for pfn in WIN:
        assert base_queue(m, pfn) == PQ_INACTIVE  # none was cached
    # the held and the wired page were not written either
    assert m.pg.dirty[idx(m, 2000)] == 0xFF and m.pg.dirty[idx(m, 2001)] == 0xFF
    # the busy page is still the other holder's
    assert m.pg.busy[idx(m, 2002)] == PBUSY_LOCKED
    check_invariants(m)


@pytest.mark.parametrize("blocker", ["hold", "wire", "need_commit", "sbusy"])
def test_scan_passes_over_a_cache_run_with_a_held_wired_committing_or_busy_page(
    blocker: str,
) -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    for k, pfn in enumerate(WIN):
        make_page(m, pfn, obj, k)
        call(m, "vm_page_busy_try", m=pfn, also_m_busy=True)
        call(m, "vm_page_cache", m=pfn)
    if blocker == "hold":
        call(m, "vm_page_hold", m=2001)
    elif blocker == "wire":
        call(m, "vm_page_busy_try", m=2001, also_m_busy=True)
        call(m, "vm_page_wire", m=2001)  # a wired page may sit on PQ_CACHE
        call(m, "vm_page_wakeup", m=2001)
    elif blocker == "need_commit":
        call(m, "vm_page_need_commit", m=2001)
    else:
        call(m, "vm_page_sbusy_hold", m=2001)
    tfree = m.cpus[0].meter["v_tfree"]
    # the run 2000..2003 fails its state test at 2001, so the scan never takes a page: 2000
    # is not freed from the cache and given back, it is not touched at all
    assert win_alloc(m) is None
    assert base_queue(m, 2000) == PQ_CACHE
    assert m.pg.obj[idx(m, 2000)] == obj
    assert m.cpus[0].meter["v_tfree"] == tfree
    check_invariants(m)


def test_a_dirty_cache_page_makes_the_take_give_back_what_it_took() -> None:
    m = boot_nores()
    obj = call(m, "vm_object_allocate", type="OBJT_DEFAULT")
    for k, pfn in enumerate(WIN):
        make_page(m, pfn, obj, k)
        call(m, "vm_page_busy_try", m=pfn, also_m_busy=True)
        call(m, "vm_page_cache", m=pfn)
    # a cache page that became dirty behind the VM's back (set directly: vm_page_dirty
    # refuses cache pages); the scan's state tests do not look at dirty
    m.pg.dirty[idx(m, 2002)] = 0xFF
    adds = {pfn: m.pq.adds[PQ_INACTIVE + c] for pfn, c in WIN_COLORS.items()}
    tfree = m.cpus[0].meter["v_tfree"]
    # pass 0: run 2000..2003 passes; 2000 and 2001 are freed from the cache and taken;
    # 2002 is on PQ_CACHE but dirty -> unbusied, 2000..2001 released (unwire: inactive
    # tail, adds + 1; free: free head); start -> 2001, where no run fits below high.
    # Passes 1 and 2: 2000, 2001 are free, taken and released again the same way.
    assert win_alloc(m) is None
    for pfn in (2000, 2001):
        assert base_queue(m, pfn) == PQ_FREE
        assert m.pq.head[PQ_FREE + WIN_COLORS[pfn]] == idx(m, pfn)
        assert m.pq.adds[PQ_INACTIVE + WIN_COLORS[pfn]] == adds[pfn] + 3  # one per pass
        assert m.pg.wire[idx(m, pfn)] == 0
    assert base_queue(m, 2002) == PQ_CACHE and base_queue(m, 2003) == PQ_CACHE
    # frees: pass 0 two cache pages + two releases, passes 1-2 two releases each = 8
    assert m.cpus[0].meter["v_tfree"] == tfree + 8
    assert m.pg.busy[idx(m, 2002)] == 0
    check_invariants(m)


def test_free_contig_rechecks_a_page_after_sleeping_on_it() -> None:
    m = boot_nores()
    assert pg_alloc(m, 2 * PAGE, alignment=0x2000) == 1024
    call(m, "vm_page_busy_try", m=1025, also_m_busy=False)  # another holder has 1025
    r = m.call("vm_page_free_contig", {"m": 1024, "size": 2 * PAGE}, thread=1)
    assert r.blocked is not None and r.blocked["channel"] == "page:1025"
    assert base_queue(m, 1024) == PQ_FREE  # 1024 went back before the sleep
    # the holder starts I/O on 1025 (soft busy) and then drops its hard busy: the sleeper
    # wakes, busies 1025 and finds a soft-busied page, which vm_page_free would panic on
    call(m, "vm_page_io_start", m=1025)
    w = m.call("vm_page_wakeup", {"m": 1025})
    assert "freeing busy page" in w.record["resumed"][0]["error"]
    # the panic came before the unwire: 1025 is still wired, on no queue, and the hard
    # busy the sleeper took was dropped; the I/O's soft busy (1) remains
    assert page_state(m, 1025) == (PQ_NONE, PG_REFERENCED, 1, 1, 0xFF, 0)
    check_invariants(m)


def test_free_contig_rechecks_the_pages_left_after_a_sleep() -> None:
    m = boot_nores()
    assert pg_alloc(m, 4 * PAGE, alignment=0x4000) == 1024
    call(m, "vm_page_busy_try", m=1025, also_m_busy=False)
    r = m.call("vm_page_free_contig", {"m": 1024, "size": 4 * PAGE}, thread=1)
    assert r.blocked is not None and r.blocked["channel"] == "page:1025"
    # while the freer sleeps, 1026 (further on) gets a soft busy
    call(m, "vm_page_busy_try", m=1026, also_m_busy=False)
    call(m, "vm_page_io_start", m=1026)
    call(m, "vm_page_wakeup", m=1026)
    w = m.call("vm_page_wakeup", {"m": 1025})
    assert "freeing busy page" in w.record["resumed"][0]["error"]
    # the re-check ran before 1025 was touched: 1025 and 1026 are still wired, on no queue
    assert page_state(m, 1025)[:3] == (PQ_NONE, PG_REFERENCED, 1)
    assert page_state(m, 1026)[:3] == (PQ_NONE, 0, 1)
    assert m.pg.busy[idx(m, 1025)] == 0
    check_invariants(m)

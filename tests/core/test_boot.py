"""Tests for app.core.boot: ``vm_page_startup`` / ``vm_add_new_page`` (spec §2.2–2.3),
``vm_page_startup_finish`` (§2.4) and the pageout daemon's threshold initialisation (§4.2).

Every expected number is worked out by hand from the spec; the arithmetic is in the comment
next to it.  ``P(x)`` below means "page frame x" (pfn), ``idx = pfn - first_page``.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.boot import vm_page_startup_finish, vm_pageout_init
from app.core.calls import page_index
from app.core.config import MachineConfig
from app.core.constants import (
    PAT_WRITE_BACK,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_ACTIVE,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_L2_SIZE,
)
from app.core.errors import ConfigError, InvalidArgument
from app.core.invariants import check_invariants
from app.core.machine import Machine
from app.core.vm_page.queues import queue_pages
from app.core.vmstats import predicate_table

MiB = 1 << 20
FICT_UNQ = PG_FICTITIOUS | PG_UNQUEUED


def boot(phys_avail: tuple[tuple[int, int], ...], **kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=phys_avail, **kw))


def queue_pfns(m: Machine, queue: int) -> list[int]:
    """The pfns on ``queue``, head first."""
    return [m.first_page + i for i in queue_pages(m, queue)]


def is_managed(m: Machine, pfn: int) -> bool:
    try:
        page_index(m, pfn)
    except InvalidArgument:
        return False
    return True


class AllocSpy:
    """Records the ``alist_alloc(start, count)`` calls ``vm_page_startup_finish`` makes."""

    def __init__(self, m: Machine) -> None:
        self.calls: list[tuple[int, int]] = []
        alist = m.contig.alist
        real = alist.alloc

        def alloc(start: int, count: int) -> int:
            self.calls.append((start, count))
            return real(start, count)

        alist.alloc = alloc  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------
# §2.2 vm_page_startup: rounding, biggestone, minidump bitmap, page_range, npages, carve-out
# ---------------------------------------------------------------------------------------

UNALIGNED = (
    (0x1800, 0x100800),  # -> [0x2000, 0x100000): pfn 0x2..0xFF, 254 pages
    (0x200000, 0x600000),  # pfn 0x200..0x5FF, 1024 pages (0x400000 bytes)
    (0x800000, 0xC00000),  # pfn 0x800..0xBFF, 1024 pages: ties with the previous range
    (0xC00800, 0xC00C00),  # beg -> 0xC01000, end -> 0xC00000 < beg -> empty (0xC01000, 0xC01000)
)
# total = 0xFE000 + 0x400000 + 0x400000 = 0x8FE000 = 9428992 bytes (2302 pages)
# biggestone = 1 (the FIRST range of the largest size 0x400000; range 2 only ties)
# last = 3 (the empty range still counts): its end is 0xC01000
# nbits = 0xC01000 / 4096 = 3073 -> roundup8 = 3080 -> 385 bytes -> round_page = 4096
# end = trunc_page(0x600000) - 4096 = 0x5FF000 (bitmap at [0x5FF000, 0x600000))
# first_page = 0x2000 / 4096 = 2; page_range = 3073 - 2 = 3071
# npages = (9428992 - 3071 * 128) / 4096 = (9428992 - 393088) / 4096 = 2206 (2206.03)
# new_end = trunc_page(0x5FF000 - 393088) = trunc_page(5894272) = 1439 * 4096 = 0x59F000
# added: range 0: 254 (npages 2206 -> 1952); range 1: pfn 0x200..0x59E = 927 (-> 1025);
#        range 2: 1024 (-> 1); range 3: none.  v_page_count = 254 + 927 + 1024 = 2205
# vm_low_phys_reserved = min(256 MiB, 9428992 / 4) = 2357248 = 0x23F800 (not page aligned)
#   -> DMA pages are pa < 0x23F800: pfn 0x2..0xFF (254) and 0x200..0x23F (64) = 318
# vm_dma_reserved = min(128 MiB, 9428992 / 16) = 589312 bytes -> keep 589312 / 4096 = 143 pages
# free pages = 2205 - 318 = 1887


def test_unaligned_ranges_are_rounded_and_an_empty_last_range_still_sets_page_range() -> None:
    m = boot(UNALIGNED, boot_stage="early")
    assert m.first_page == 2
    assert m.page_range == 3071
    assert m.startup.minidump_bitmap == (0x5FF000, 0x600000)
    assert (m.startup.vm_page_array_start, m.startup.vm_page_array_end) == (0x59F000, 0x5FF000)
    # managed runs as page-array indices (pfn - 2)
    assert m.managed == [(0, 254), (0x200 - 2, 0x59F - 2), (0x800 - 2, 0xC00 - 2)]
    assert m.vmstats.v_page_count == 2205
    # the rounded-off fragments, the carve-out and the bitmap are not managed
    assert is_managed(m, 0x2) and is_managed(m, 0xFF)
    assert not is_managed(m, 0x100)  # past the truncated end of range 0
    assert is_managed(m, 0x59E)
    assert not is_managed(m, 0x59F)  # first page of the page array
    assert not is_managed(m, 0x5FF)  # the minidump bitmap
    assert is_managed(m, 0xBFF)
    assert not is_managed(m, 0xC00)  # inside page_range (index 3070) but never added
    with pytest.raises(InvalidArgument):
        page_index(m, 0x1)  # below first_page
    check_invariants(m)


def test_biggestone_is_the_first_of_equal_largest_ranges() -> None:
    # Had the later tied range (2) been chosen, range 1 would be whole and range 2 carved.
    m = boot(UNALIGNED, boot_stage="early")
    assert is_managed(m, 0xBFF) and not is_managed(m, 0x5FF)
    # a strictly larger later range wins: range 2 grown to 0x401000 bytes
    bigger = UNALIGNED[:2] + ((0x800000, 0xC01000), (0xC01800, 0xC01C00))
    m2 = boot(bigger, boot_stage="early")
    # now range 2 is biggest: nbits = 0xC02 = 3074 -> 385 bytes -> 4096; end = 0xC00000;
    # page_range = 3074 - 2 = 3072, * 128 = 393216 = 0x60000; new_end = 0xBA0000
    assert m2.startup.minidump_bitmap == (0xC00000, 0xC01000)
    assert m2.startup.vm_page_array_start == 0xBA0000
    assert is_managed(m2, 0x5FF)  # range 1 now whole
    assert is_managed(m2, 0xB9F) and not is_managed(m2, 0xBA0)


def test_dma_reserve_pages_at_boot() -> None:
    m = boot(UNALIGNED, boot_stage="early")
    vs = m.vmstats
    assert m.contig.vm_low_phys_reserved == 0x23F800
    assert m.contig.vm_dma_reserved == 589312
    assert vs.v_dma_pages == 318
    assert vs.v_wire_count == 318  # every reserve page is wired once
    assert vs.v_free_count == 1887
    assert vs.v_page_count == 2205  # reserve pages are counted too
    # alist block number == pfn; the reserve is exactly the DMA pages, all free
    assert m.contig.alist.free_runs() == [(2, 254), (0x200, 64)]
    assert m.contig.alist.bl_free == 318
    pg = m.pg
    last_dma = 0x23F - m.first_page  # pa 0x23F000 < 0x23F800
    first_normal = 0x240 - m.first_page  # pa 0x240000 >= 0x23F800
    assert pg.flags[last_dma] == FICT_UNQ
    assert pg.wire[last_dma] == 1
    assert pg.queue[last_dma] == 0
    assert pg.pc[last_dma] == 0x23F  # pfn < 1024: the twist leaves it unchanged
    assert pg.pat[last_dma] == PAT_WRITE_BACK
    assert pg.flags[first_normal] == 0
    assert pg.wire[first_normal] == 0
    assert pg.queue[first_normal] == PQ_FREE + 0x240
    assert pg.pat[first_normal] == PAT_WRITE_BACK
    # only the 1887 normal pages are on queues
    assert sum(m.pq.lcnt[PQ_FREE : PQ_FREE + PQ_L2_SIZE]) == 1887
    assert sum(m.pq.lcnt) == 1887
    # boot updated the global vmstats and copied it into the boot CPU's snapshot
    assert m.cpus[0].vmstats.cnt == [1887, 0, 0, 0, 318]
    assert m.cpus[0].adj.cnt == [0, 0, 0, 0, 0]
    check_invariants(m)


NPAGES_BOUND = (
    (0x2000000, 0x2100000),  # 1 MiB, pfn 0x2000..0x20FF: biggest (first of two equal sizes)
    (0x4E00000, 0x4F00000),  # 1 MiB, pfn 0x4E00..0x4EFF
    (0x4FC0000, 0x5000000),  # 256 KiB, pfn 0x4FC0..0x4FFF
)
# total = 0x100000 + 0x100000 + 0x40000 = 2359296 bytes (576 pages)
# first_page = 0x2000 = 8192; page_range = 0x5000 - 0x2000 = 12288 (holes included)
# npages = (2359296 - 12288 * 128) / 4096 = (2359296 - 1572864) / 4096 = 192
# nbits = 0x5000 = 20480 -> 2560 bytes -> 4096; end = 0x2100000 - 0x1000 = 0x20FF000
# new_end = trunc_page(0x20FF000 - 0x180000) = 0x1F7F000 < 0x2000000: range 0 adds nothing
# range 1: 192 pages 0x4E00..0x4EBF, then at 0x4EC0 "npages-- > 0" fails (0 -> -1);
# the outer loop stops (npages <= 0), so range 2 adds nothing either.
# vm_low_phys_reserved = min(256 MiB, 2359296 / 4 = 0x90000): no page lies below it.


def test_npages_bound_stops_a_later_range_and_ends_the_outer_loop() -> None:
    m = boot(NPAGES_BOUND, boot_stage="early")
    assert m.first_page == 0x2000
    assert m.page_range == 12288
    assert m.startup.vm_page_array_start == 0x1F7F000
    assert m.managed == [(0x4E00 - 0x2000, 0x4EC0 - 0x2000)]
    assert m.vmstats.v_page_count == 192
    assert m.vmstats.v_free_count == 192
    assert m.vmstats.v_dma_pages == 0
    assert not is_managed(m, 0x2000)  # the biggest range lost everything to the carve-out
    assert is_managed(m, 0x4EBF)
    assert not is_managed(m, 0x4EC0)  # the npages bound, not a carve-out
    assert not is_managed(m, 0x4FC0)  # nothing after the budget ran out
    check_invariants(m)


HIGH = ((0xFFC00000, 0x100C00000),)  # 16 MiB straddling 4 GiB: pfn 0xFFC00..0x100BFF
# first_page = 0xFFC00; page_range = 0x100C00 - 0xFFC00 = 4096
# nbits = 0x100C00 = 1051648 (the highest pfn + 1, not page_range) -> 131456 bytes
#   -> round_page = 33 pages = 0x21000; end = 0x100C00000 - 0x21000 = 0x100BDF000
# npages = (16 MiB - 4096 * 128) / 4096 = (16777216 - 524288) / 4096 = 3968
# new_end = 0x100BDF000 - 0x80000 = 0x100B5F000 -> pfn 0xFFC00..0x100B5E = 0xF5F = 3935 pages
# vm_low_phys_reserved = min(256 MiB, 4 MiB): every page is above it, no DMA pages
# colours: pfn ^ pfn>>10 ^ pfn>>20, masked with 1023:
#   0xFFC00..0xFFFFF:   >>10 = 0x3FF, >>20 = 0 -> pc = low ^ 1023
#   0x100000..0x1003FF: >>10 = 0x400 (low bits 0), >>20 = 1 -> pc = low ^ 1
#   0x100400..0x1007FF: >>10 = 0x401 -> 1, >>20 = 1 -> pc = low
#   0x100800..0x100B5E: >>10 = 0x402 -> 2, >>20 = 1 -> pc = low ^ 3


def test_minidump_bitmap_and_carve_out_above_4gib() -> None:
    m = boot(HIGH, boot_stage="early")
    assert m.first_page == 0xFFC00
    assert m.page_range == 4096
    assert m.startup.minidump_bitmap == (0x100BDF000, 0x100C00000)
    assert m.startup.vm_page_array_start == 0x100B5F000
    assert m.managed == [(0, 3935)]
    assert m.vmstats.v_page_count == 3935
    assert m.vmstats.v_free_count == 3935  # early: startup_finish has not run
    assert m.vmstats.v_dma_pages == 0
    assert m.contig.alist.bl_free == 0


def test_minidump_bitmap_rounds_the_bit_count_up_to_whole_bytes() -> None:
    # last end 0x8001000: nbits = 0x8001 = 32769 -> roundup8 = 32776 -> 4097 bytes ->
    # round_page = 8192 (two pages; 32769 / 8 = 4096 bytes would have been one)
    m = boot(((0x1000, 0x8001000),), boot_stage="early")
    assert m.startup.minidump_bitmap == (0x7FFF000, 0x8001000)
    # page_range 32768 -> 4 MiB of page structures below the bitmap
    assert m.startup.vm_page_array_start == 0x7FFF000 - 32768 * 128


@pytest.mark.parametrize(
    ("pfn", "color"),
    [
        (0xFFC00, 1023),  # 0 ^ 0x3FF
        (0xFFFFF, 0),  # 0x3FF ^ 0x3FF
        (0x100000, 1),  # 0 ^ 0 ^ 1: only the pfn>>20 term is non-zero
        (0x100005, 4),  # 5 ^ 1
        (0x100406, 6),  # 6 ^ 1 ^ 1
        (0x100805, 6),  # 5 ^ 2 ^ 1
        (0x100B5E, 861),  # 0x35E = 862; 862 ^ 2 ^ 1 = 861
    ],
)
def test_color_twist_uses_all_three_terms(pfn: int, color: int) -> None:
    m = boot(HIGH, boot_stage="early")
    i = pfn - m.first_page
    assert m.pg.pc[i] == color
    assert m.pg.queue[i] == PQ_FREE + color


def test_pages_go_to_the_head_so_the_highest_address_leads_each_queue() -> None:
    m = boot(HIGH, boot_stage="early")
    # colour 6: low 1017 (6 ^ 1023) in block 0xFFC00, low 7 in 0x100000, low 6 in
    # 0x100400, low 5 in 0x100800 (5 <= 0x35E, so present) -> highest address first
    assert queue_pfns(m, PQ_FREE + 6) == [0x100805, 0x100406, 0x100007, 0xFFFF9]
    # colour 1: low 1022 in 0xFFC00, low 0 in 0x100000, low 1 in 0x100400, low 2 in 0x100800
    assert queue_pfns(m, PQ_FREE + 1) == [0x100802, 0x100401, 0x100000, 0xFFFFE]
    for c in range(PQ_L2_SIZE):
        q = queue_pfns(m, PQ_FREE + c)
        assert q == sorted(q, reverse=True)


def test_every_aligned_1024_frame_block_uses_1024_distinct_colors() -> None:
    m = boot(HIGH, boot_stage="early")
    pc = m.pg.arrays["pc"]
    for block in (0xFFC00, 0x100000, 0x100400):
        a = block - m.first_page
        assert len(set(pc[a : a + 1024].tolist())) == 1024
    # the partial block 0x100800..0x100B5E: 0x35F = 863 pages, 863 distinct colours
    a = 0x100800 - m.first_page
    assert len(set(pc[a : a + 863].tolist())) == 863
    # free colour queues: colours whose "low ^ 3" lies in 0..862 hold 4 pages, others 3
    lcnt = m.pq.lcnt[PQ_FREE : PQ_FREE + PQ_L2_SIZE]
    assert sorted(set(lcnt)) == [3, 4]
    assert lcnt.count(4) == 863
    assert sum(lcnt) == 3935


# ---------------------------------------------------------------------------------------
# §2.4 vm_page_startup_finish
# ---------------------------------------------------------------------------------------

# MachineConfig.from_size("32MiB"): phys_avail = ((0x1000, 0x2000000),)
# total = 0x2000000 - 0x1000 = 33550336 (8191 pages); first_page 1; page_range 8191
# nbits = 8192 -> 1024 bytes -> 4096; end = 0x1FFF000
# npages = (33550336 - 8191 * 128) / 4096 = (33550336 - 1048448) / 4096 = 7935
# new_end = trunc_page(0x1FFF000 - 1048448) = trunc_page(32501888) = 7935 * 4096 = 0x1EFF000
#   -> pfn 1..7934 added: v_page_count = 7934
# vm_low_phys_reserved = min(256 MiB, 33550336 / 4 = 8387584 = 0x7FFC00), not page aligned:
#   pa < 0x7FFC00 -> pfn 1..0x7FF = 2047 DMA pages; free = 7934 - 2047 = 5887
# vm_dma_reserved = min(128 MiB, 33550336 / 16 = 2096896) -> keep 2096896 / 4096 = 511 pages
# return loop (alist free = 1..2047, bl_free 2047):
#   free_info -> (2047, 1536, 512) [the 512-block 1536..2047 is all free]; 2047-511 = 1536
#     >= 512 -> chunk (1536, 512)
#   (1535, 1024, 512): 1024 >= 512 -> chunk (1024, 512)
#   (1023, 512, 512): 512 >= 512 -> chunk (512, 512)
#   bl_free 511 <= 511 -> stop.  Returned 1536 pages; v_dma_pages = 2047 - 1536 = 511
#   vm_low_phys_reserved = 512 << 12 = 0x200000
# console: (511 - 511) * 4 = 0k used, 511 * 4 = 2044k available
# free after the rollup: 5887 + 1536 = 7423; wired: 2047 - 1536 = 511


def test_startup_finish_returns_the_reserve_in_chunks_from_the_top() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    assert m.vmstats.v_page_count == 7934
    assert m.contig.vm_low_phys_reserved == 0x7FFC00
    assert m.vmstats.v_dma_pages == 2047
    assert m.vmstats.cnt == [5887, 0, 0, 0, 2047]
    assert m.pq.set_assoc_mask == 15  # before startup_finish
    assert m.hash.size == 0  # no hash table yet
    spy = AllocSpy(m)
    vm_page_startup_finish(m)
    assert spy.calls == [(1536, 512), (1024, 512), (512, 512)]
    assert m.contig.vm_low_phys_reserved == 0x200000
    assert m.vmstats.v_dma_pages == 511
    assert m.contig.alist.free_runs() == [(1, 511)]
    assert m.console[-1] == "DMA space used: 0k, remaining available: 2044k"
    assert m.pq.set_assoc_mask == 1023  # 1 CPU
    assert m.hash.size == 4096  # 8191 / 16 = 511 < 4096
    check_invariants(m)


def test_startup_finish_counts_through_the_boot_cpus_adjustments() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", cpus=2, boot_stage="early"))
    vm_page_startup_finish(m)
    # the global vmstats is untouched until a rollup ...
    assert m.vmstats.cnt == [5887, 0, 0, 0, 2047]
    # ... the unwire (wire -1) and the free (free +1) went to cpu0's adjustments;
    # the inactive +1/-1 of the pass through the inactive tail cancels out
    assert m.cpus[0].adj.cnt == [1536, 0, 0, 0, -1536]
    # cpu0's snapshot saw the queue moves (free +1536) but not the unwire (wire is stale)
    assert m.cpus[0].vmstats.cnt == [5887 + 1536, 0, 0, 0, 2047]
    assert m.cpus[0].meter["v_tfree"] == 1536
    # cpu1 saw nothing
    assert m.cpus[1].adj.cnt == [0, 0, 0, 0, 0]
    assert m.cpus[1].meter["v_tfree"] == 0
    check_invariants(m)
    vm_pageout_init(m)  # rolls everything up first [I]
    assert m.vmstats.cnt == [7423, 0, 0, 0, 511]
    for cpu in m.cpus:
        assert cpu.adj.cnt == [0, 0, 0, 0, 0]
        assert cpu.vmstats.cnt == [7423, 0, 0, 0, 511]
    check_invariants(m)


def test_returned_pages_passed_through_the_inactive_tail() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    vm_page_startup_finish(m)
    # returned pfns 512..2047.  pfn 512..1023 have colour pfn (512..1023, once each);
    # pfn 1024..2047 have colour (pfn ^ 1) & 1023 (every colour once).  Each unwire
    # deactivated the page to the inactive tail, bumping that queue's adds by one.
    adds = m.pq.adds[PQ_INACTIVE : PQ_INACTIVE + PQ_L2_SIZE]
    assert adds[:512] == [1] * 512
    assert adds[512:] == [2] * 512
    assert sum(m.pq.adds[PQ_FREE : PQ_FREE + PQ_L2_SIZE]) == 0
    assert sum(m.pq.adds[PQ_ACTIVE:]) == 0
    # ... but nothing stayed on an inactive queue
    assert sum(m.pq.lcnt[PQ_INACTIVE : PQ_INACTIVE + PQ_L2_SIZE]) == 0


def test_returned_pages_land_at_the_free_queue_heads_last_chunk_first() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    # colour 600 (binary 1001011000) before the return: the normal pages (c ^ k) + 1024 k
    # for k = 2..7 (all <= 7934), highest first
    assert queue_pfns(m, PQ_FREE + 600) == [7775, 6750, 5725, 4700, 3675, 2650]
    vm_page_startup_finish(m)
    # chunk (1536, 512) came back first: pfn (600 ^ 1) + 1024 = 1625 pushed to the head;
    # chunk (512, 512) came back last: pfn 600 pushed on top of it
    assert queue_pfns(m, PQ_FREE + 600) == [600, 1625, 7775, 6750, 5725, 4700, 3675, 2650]
    # colour 100: pfn 100 stays in the reserve; (100 ^ 1) + 1024 = 1125 (chunk (1024, 512))
    # 100 ^ 2..7 = 102, 103, 96, 97, 98, 99 -> 2150, 3175, 4192, 5217, 6242, 7267
    assert queue_pfns(m, PQ_FREE + 100) == [1125, 7267, 6242, 5217, 4192, 3175, 2150]
    # colour 1023: 1023 (chunk 3), 2046 (chunk 1); (1023 ^ 7) + 7168 = 8184 > 7934 is absent
    assert queue_pfns(m, PQ_FREE + 1023) == [1023, 2046, 7161, 6138, 5115, 4092, 3069]
    pg = m.pg
    returned = 600 - m.first_page
    assert (pg.flags[returned], pg.wire[returned], pg.busy[returned]) == (0, 0, 0)
    assert pg.queue[returned] == PQ_FREE + 600
    kept = 511 - m.first_page  # still in the reserve (pa 0x1FF000 < 0x200000)
    assert (pg.flags[kept], pg.wire[kept], pg.queue[kept]) == (FICT_UNQ, 1, 0)
    check_invariants(m)


def test_startup_finish_trims_chunks_to_powers_of_two() -> None:
    m = boot(UNALIGNED, boot_stage="early")
    spy = AllocSpy(m)
    vm_page_startup_finish(m)
    # reserve free: 2..255 and 512..575 (318), keep 143
    # (318, 544, 32): 318-143 = 175 >= 32 -> (544, 32); (286, 512, 32): 143 -> (512, 32)
    # then leaves 224, 192, 160 whole: 254-143 = 111, 79, 47 >= 32
    # (158, 128, 32): 158-143 = 15 < 32 -> blk 128 + 17 = 145, count 15 -> x = 8,
    #   blk 145 + 7 = 152 -> (152, 8)
    # then the leaf 128..159 is partial: one block at a time from 151 down while
    #   bfree - 143 >= 1: 150 -> 143 takes seven: 151..145
    assert spy.calls == (
        [(544, 32), (512, 32), (224, 32), (192, 32), (160, 32), (152, 8)]
        + [(pfn, 1) for pfn in range(151, 144, -1)]
    )
    assert m.contig.vm_low_phys_reserved == 145 << 12
    assert m.vmstats.v_dma_pages == 318 - 175  # = 143
    assert m.contig.alist.free_runs() == [(2, 143)]
    assert m.console[-1] == "DMA space used: 0k, remaining available: 572k"  # 143 * 4
    # colour 151 (pfn < 1024 keeps its pfn as colour): 2197 = (151 ^ 2) + 2048 and
    # 1174 = (151 ^ 1) + 1024 were there; the returned 151 goes on top
    assert queue_pfns(m, PQ_FREE + 151) == [151, 2197, 1174]
    check_invariants(m)


def test_dma_space_used_counts_reserve_pages_a_driver_took_before_finish() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    # a driver's contigmalloc at attach time: alist_alloc(0, 16) -> lowest 16-aligned
    # free block; 0..15 holds the never-free block 0, so 16..31
    assert m.contig.alist.alloc(0, 16) == 16
    spy = AllocSpy(m)
    vm_page_startup_finish(m)
    # free: 1..15, 32..2047 (2031), keep 511
    # (2031, 1536, 512): 1520 -> (1536, 512); (1519, 1024, 512): 1008 -> (1024, 512)
    # (1007, 512, 512): 496 < 512 -> blk 512 + 16 = 528, count 496 -> x = 256,
    #   blk 528 + 240 = 768 -> (768, 256)
    # then leaves 736, 704, ..., 544 whole (751-511 = 240, 208, ..., 48 >= 32)
    # (527, 512, 32): 16 -> blk 528, count 16 -> (528, 16); bl_free 511 -> stop
    assert spy.calls == [(1536, 512), (1024, 512), (768, 256)] + [
        (blk, 32) for blk in range(736, 543, -32)
    ] + [(528, 16)]
    # returned 512 + 512 + 256 + 7 * 32 + 16 = 1520; v_dma_pages = 2047 - 1520 = 527
    assert m.vmstats.v_dma_pages == 527
    assert m.contig.vm_low_phys_reserved == 528 << 12
    # used = (527 - 511) * 4 = 64k (the driver's 16 pages), available = 511 * 4
    assert m.console[-1] == "DMA space used: 64k, remaining available: 2044k"
    assert m.contig.alist.free_runs() == [(1, 15), (32, 496)]
    check_invariants(m)


def test_the_boot_console_keeps_the_boot_prints() -> None:
    # 32 MiB, one CPU (no NUMA print): the startup_finish line worked out above
    m = Machine.boot(MachineConfig.from_size("32MiB"))
    assert m.startup.boot_console == ["DMA space used: 0k, remaining available: 2044k"]
    assert m.console == m.startup.boot_console
    # the message buffer rolls over (1000 lines, the oldest 100 dropped); dmesg.boot stays
    for k in range(1000):
        m.log(f"line {k}")
    assert m.console[0] == "line 99" and len(m.console) == 901
    assert m.startup.boot_console == ["DMA space used: 0k, remaining available: 2044k"]


def test_an_early_machine_prints_at_startup_finish() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    assert m.startup.boot_console == []
    vm_page_startup_finish(m)
    assert m.startup.boot_console == ["DMA space used: 0k, remaining available: 2044k"]


def test_startup_finish_with_no_reserve_returns_nothing() -> None:
    m = boot(HIGH, boot_stage="early")
    vm_page_startup_finish(m)
    assert m.console[-1] == "DMA space used: 0k, remaining available: 0k"
    assert m.cpus[0].adj.cnt == [0, 0, 0, 0, 0]
    # vm_low_phys_reserved stays min(256 MiB, 16 MiB / 4) = 4 MiB
    assert m.contig.vm_low_phys_reserved == 4 * MiB


def test_reserve_caps_on_a_3gib_machine() -> None:
    # from_size("3GiB"): total = 3 GiB - 4096 = 3221221376
    # vm_low_phys_reserved = min(256 MiB, 805305344) = 256 MiB -> reserve pfn 1..65535
    # vm_dma_reserved = min(128 MiB, 201326336) = 128 MiB -> keep 32768 pages
    # page_range 786431; bitmap 786432 / 8 = 98304 bytes; new_end =
    #   trunc_page(3 GiB - 98304 - 786431 * 128 = 3120464000) = 761832 * 4096 -> pfn 1..761831
    m = Machine.boot(MachineConfig.from_size("3GiB", boot_stage="early"))
    assert m.contig.vm_low_phys_reserved == 256 * MiB
    assert m.contig.vm_dma_reserved == 128 * MiB
    assert m.vmstats.v_dma_pages == 65535
    assert m.vmstats.v_page_count == 761831
    spy = AllocSpy(m)
    vm_page_startup_finish(m)
    # the sequence of the alist test for free [1, 65536) keeping 32768: three 8192s from
    # the top, a 4096, seven 512s, a 256, seven 32s, a 16, then single blocks 32783..32769
    assert spy.calls == (
        [(57344, 8192), (49152, 8192), (40960, 8192), (36864, 4096)]
        + [(32768 + 512 * j, 512) for j in range(7, 0, -1)]
        + [(33024, 256)]
        + [(32768 + 32 * j, 32) for j in range(7, 0, -1)]
        + [(32784, 16)]
        + [(pfn, 1) for pfn in range(32783, 32768, -1)]
    )
    assert m.contig.vm_low_phys_reserved == 32769 << 12
    assert m.vmstats.v_dma_pages == 65535 - 32767  # 32768
    assert m.console[-1] == "DMA space used: 0k, remaining available: 131072k"  # 32768 * 4
    assert m.hash.size == 65536  # 786431 / 16 = 49151 -> 4096 doubled 4 times
    vm_pageout_init(m)
    assert m.vmstats.v_free_count == 761831 - 65535 + 32767  # 729063


@pytest.mark.parametrize(
    ("ncpus", "mask"),
    [
        (1, 1023),  # 1024 / 1 - 1
        (2, 511),  # 1024 / 2 - 1
        (3, 255),  # ncpus_fit 4: 1024 / 4 - 1
        (5, 127),  # ncpus_fit 8
        (8, 127),  # 1024 / 8 - 1
        (32, 31),  # 1024 / 32 - 1
        (33, 15),  # ncpus_fit 64: 15, already the minimum
        (64, 15),  # 1024 / 64 - 1 = 15
        (256, 15),  # 1024 / 256 - 1 = 3 -> raised to 7 -> raised to 15
    ],
)
def test_set_assoc_mask(ncpus: int, mask: int) -> None:
    early = Machine.boot(MachineConfig.from_size("4MiB", cpus=ncpus, boot_stage="early"))
    assert early.pq.set_assoc_mask == 15
    m = Machine.boot(MachineConfig.from_size("4MiB", cpus=ncpus))
    assert m.pq.set_assoc_mask == mask


@pytest.mark.parametrize(
    ("page_range", "hash_size"),
    [
        (8191, 4096),  # 8191 / 16 = 511
        (65551, 4096),  # 65551 / 16 = 4096 (C division): 4096 < 4096 is false
        (65552, 8192),  # 65552 / 16 = 4097 > 4096 -> one doubling
        (100000, 8192),  # 100000 / 16 = 6250 -> 8192
    ],
)
def test_page_hash_size(page_range: int, hash_size: int) -> None:
    # phys_avail [4 KiB, (page_range + 1) pages): first_page 1, so page_range as given
    m = boot(((0x1000, (page_range + 1) * 4096),))
    assert m.page_range == page_range
    assert m.hash.size == hash_size


def test_page_hash_size_is_capped_at_8m_entries() -> None:
    m = Machine.boot(MachineConfig.from_size("4MiB", boot_stage="early"))
    m.page_range = 1 << 28  # only the hash sizing reads it: 2^28 / 16 = 2^24 > 2^23
    vm_page_startup_finish(m)
    assert m.hash.size == 8 * 1024 * 1024


# ---------------------------------------------------------------------------------------
# §4.2 thresholds at the pageout daemon's start
# ---------------------------------------------------------------------------------------


def test_thresholds_of_a_booted_machine() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB"))
    vs = m.vmstats
    # P = v_page_count = 7934 (the 2047 reserve pages included)
    assert vs.v_page_count == 7934
    assert vs.v_free_min == 103  # 64 + 7934 / 200 = 64 + 39
    assert vs.v_free_reserved == 58  # 103 * 4 / 8 + 7 = 51 + 7
    assert vs.v_free_severe == 51  # 103 * 4 / 8
    assert vs.v_pageout_free_min == 32  # 103 * 2 / 8 + 7 = 25 + 7
    assert vs.v_interrupt_free_min == 19  # 103 / 8 + 7 = 12 + 7
    assert vs.v_free_target == 206  # 2 * 103
    assert vs.v_paging_wait == 206  # 2 * 103
    assert vs.v_paging_start == 309  # 3 * 103
    assert vs.v_paging_target1 == 412  # 4 * 103
    assert vs.v_paging_target2 == 515  # 5 * 103
    # F: vm_pageout_init rolls the per-CPU adjustments up first [I], so F is the free
    # count after the returned reserve pages: 7423 / 16 = 463 (not 5887 / 16 = 367)
    assert vs.v_free_count == 7423
    assert vs.v_inactive_target == 463
    # the other daemon-start defaults
    assert m.pd.vm_max_launder == 47  # physmem 8191 pages / 256 + 16 = 31 + 16
    assert m.pd.vm_page_max_wired == 2474  # 7423 / 3
    assert m.pd.vm_pageout_stats_scan == 16  # max(16, 7423 / 1024 / 16 = 0)
    assert m.pd.vm_pageout_stats_ticks == 10  # hz 100 / 10
    # every CPU snapshot carries the thresholds
    assert m.cpus[0].vmstats.v_paging_start == 309


def test_thresholds_of_the_unaligned_map() -> None:
    m = boot(UNALIGNED)
    vs = m.vmstats
    # P = 2205: min = 64 + 11 = 75; reserved = 300 / 8 + 7 = 37 + 7 = 44; severe 37;
    # pageout_free_min = 150 / 8 + 7 = 18 + 7 = 25; interrupt = 75 / 8 + 7 = 9 + 7 = 16
    got = [
        vs.v_free_min,
        vs.v_free_reserved,
        vs.v_free_severe,
        vs.v_pageout_free_min,
        vs.v_interrupt_free_min,
        vs.v_free_target,
        vs.v_paging_wait,
        vs.v_paging_start,
        vs.v_paging_target1,
        vs.v_paging_target2,
    ]
    assert got == [75, 44, 37, 25, 16, 150, 150, 225, 300, 375]
    # F = 1887 + 175 returned = 2062 -> 2062 / 16 = 128
    assert vs.v_free_count == 2062
    assert vs.v_inactive_target == 128


def test_early_machine_has_zero_thresholds_and_no_predicate_trips() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    vs = m.vmstats
    for name in (
        "v_free_min",
        "v_free_reserved",
        "v_free_severe",
        "v_pageout_free_min",
        "v_interrupt_free_min",
        "v_free_target",
        "v_paging_wait",
        "v_paging_start",
        "v_paging_target1",
        "v_paging_target2",
        "v_inactive_target",
    ):
        assert vs.get(name) == 0, name
    assert predicate_table(m.cpus[0].vmstats) == dict.fromkeys(predicate_table(vs), False)
    assert m.vmstats.v_free_count == 5887
    assert m.startup.boot_stage == "early"


def test_a_map_whose_page_array_eats_every_page_is_refused() -> None:
    # [4 KiB, 12 KiB): 2 pages, page_range 2 -> npages = (8192 - 256) / 4096 = 1 > 0;
    # nbits 3 -> 1 byte -> bitmap 4096: end = 0x3000 - 0x1000 = 0x2000;
    # new_end = trunc_page(0x2000 - 256) = 0x1000 = beg: the only range adds nothing
    with pytest.raises(ConfigError, match="no page"):
        boot(((0x1000, 0x3000),))

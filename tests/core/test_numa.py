"""Tests for the NUMA part of app.core.boot: ``vm_numa_organize`` and
``vm_numa_organize_finalize`` (spec §3).  Expected numbers are worked out by hand from the
spec in the comments.  (``vm_get_pg_color`` is covered by the search tests.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from app.core.boot import _push_head_raw, _unlink_raw, vm_numa_organize_finalize
from app.core.config import MachineConfig, NumaRange, Topology
from app.core.constants import PG_FICTITIOUS, PG_UNQUEUED, PQ_FREE, PQ_L2_SIZE
from app.core.invariants import check_invariants
from app.core.machine import Machine
from app.core.vm_page.queues import queue_pages

FICT_UNQ = PG_FICTITIOUS | PG_UNQUEUED


def queue_pfns(m: Machine, queue: int) -> list[int]:
    return [m.first_page + i for i in queue_pages(m, queue)]


def twist(pfn: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The boot colour of spec §2.3, written out again for whole-array checks."""
    color: np.ndarray[Any, Any] = (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & 1023
    return color


# MachineConfig.from_size("16MiB", sockets=2, cores=2, threads=1): phys_avail [0x1000, 16 MiB)
# total = 16773120 (4095 pages); first_page 1; page_range 4095
# npages = (16773120 - 4095 * 128) / 4096 = 3967; bitmap 4096 bytes; end = 0xFFF000
# new_end = trunc_page(0xFFF000 - 524160) = 3967 * 4096 -> pfn 1..3966 added
# vm_low_phys_reserved = min(256 MiB, 16773120 / 4 = 0x3FFC00) -> DMA pfn 1..1023
# even split: span = 16773120; socket 1 starts at 4096 + (8386560 // 4096) * 4096 = 0x800000
#   socket 0 = [0x1000, 0x800000) = pfn 1..2047, socket 1 = [0x800000, 16 MiB) = pfn 2048..4095
# socket_mod = 1024 / 2 = 512; socket 0 colours 0..511, socket 1 colours 512..1023
# boot colours by 1024-block: pfn 1024..2047 -> low ^ 1, 2048..3071 -> low ^ 2,
#   3072..3966 -> low ^ 3  (low = pfn & 1023)


def split_machine(stage: str = "early") -> Machine:
    return Machine.boot(
        MachineConfig.from_size("16MiB", sockets=2, cores=2, threads=1, boot_stage=stage)  # type: ignore[arg-type]
    )


def test_even_split_ranges() -> None:
    m = split_machine()
    assert m.config.numa_ranges() == (
        NumaRange(0x1000, 0x800000 - 0x1000, 0),
        NumaRange(0x800000, 0x800000, 1),
    )


def test_each_socket_gets_its_half_of_the_colors() -> None:
    m = split_machine()
    pc = m.pg.arrays["pc"].astype(np.int64)
    pfn = np.arange(1, 3967, dtype=np.int64)  # the managed pages
    boot_color = twist(pfn)
    socket1 = pfn >= 2048
    expect = np.where(socket1, boot_color % 512 + 512, boot_color % 512)
    assert (pc[pfn - 1] == expect).all()
    # specific pages: pfn 2056 = 2048 + 8, boot colour 8 ^ 2 = 10 -> socket 1 -> 522
    assert m.pg.pc[2056 - 1] == 522
    # pfn 1035 = 1024 + 11, boot colour 11 ^ 1 = 10 -> socket 0 -> 10
    assert m.pg.pc[1035 - 1] == 10
    # pfn 1547 = 1024 + 523, boot colour 523 ^ 1 = 522 -> socket 0 -> 522 % 512 = 10
    assert m.pg.pc[1547 - 1] == 10
    # every queued page sits on the queue of its new colour
    queue = m.pg.arrays["queue"].astype(np.int64)
    on_q = queue != 0
    assert (queue[on_q] == PQ_FREE + pc[on_q]).all()
    check_invariants(m)


def test_unqueued_pages_are_recolored_but_stay_off_the_queues() -> None:
    m = split_machine()
    pg = m.pg
    # DMA page pfn 700 (socket 0): colour 700 -> 700 % 512 = 188, still on no queue
    assert (pg.pc[700 - 1], pg.queue[700 - 1], pg.flags[700 - 1], pg.wire[700 - 1]) == (
        188,
        0,
        FICT_UNQ,
        1,
    )
    # DMA page pfn 300: 300 % 512 = 300, unchanged
    assert pg.pc[300 - 1] == 300
    # pfn 3967..4095 lie in phys_avail and socket 1 but were never added (page array,
    # bitmap): their colour was 0 and becomes 0 % 512 + 512 = 512
    assert set(pg.arrays["pc"][3967 - 1 : 4095].tolist()) == {512}
    assert set(pg.arrays["queue"][3967 - 1 : 4095].tolist()) == {0}


def test_intra_queue_order_after_organize() -> None:
    m = split_machine()
    # colour 10 (socket 0): boot colour (low ^ 1) % 512 == 10 -> low in {11, 523}:
    # pfn 1035, 1547, moved at the head in ascending scan order -> highest first
    assert queue_pfns(m, PQ_FREE + 10) == [1547, 1035]
    # colour 522 (socket 1, c = 10): block 2: low ^ 2 in {10, 522} -> pfn 2056, 2568;
    # block 3: low ^ 3 in {10, 522} -> pfn 3081, 3593 (<= 3966) -> descending
    assert queue_pfns(m, PQ_FREE + 522) == [3593, 3081, 2568, 2056]
    # colour 892 (c = 380): 380 ^ 3 = 383 -> pfn 3584 + 383 = 3967 is not managed
    assert queue_pfns(m, PQ_FREE + 892) == [3455, 2942, 2430]


def test_a_physid_beyond_the_sockets_is_taken_modulo_their_count() -> None:
    # ACPI may name physical ids 2 and 3 on a 2-socket machine: socket_value =
    # (physid % 2) * 512, so 2 -> socket 0 and 3 -> socket 1, exactly the even split
    ranges = (NumaRange(0x1000, 0x800000 - 0x1000, 2), NumaRange(0x800000, 0x800000, 3))
    base = MachineConfig.from_size("16MiB", sockets=2, cores=2, threads=1)
    m = Machine.boot(dataclasses.replace(base, numa=ranges))
    even = split_machine("finished")
    assert (m.pg.arrays["pc"] == even.pg.arrays["pc"]).all()
    assert m.pq.lcnt == even.pq.lcnt
    # pfn 2056: boot colour 8 ^ 2 = 10, physid 3 -> socket 1 -> 10 % 512 + 512 = 522
    assert m.pg.pc[2056 - 1] == 522
    # the finished machine: finalize's print, then startup_finish's
    assert m.startup.boot_console[0] == "vm_page: avg 2 pages per queue, 1024 queues"
    assert m.startup.boot_console[1].startswith("DMA space used: ")
    check_invariants(m)


def test_split_machine_queue_lengths_and_finalize_average() -> None:
    m = split_machine()
    lcnt = m.pq.lcnt[PQ_FREE : PQ_FREE + PQ_L2_SIZE]
    # colours 0..511: two socket-0 pages each (pfn 1024..2047; 1..1023 are DMA)
    assert lcnt[:512] == [2] * 512
    # colour 512 + c: 2 from block 2, 1 from block 3's low half, 1 more when
    # c ^ 3 + 512 <= 894 (pfn <= 3966): c <= 383 except c = 380 -> 383 colours have 4
    assert lcnt[512:].count(4) == 383
    assert lcnt[512:].count(3) == 129
    assert lcnt[512 + 380] == 3 and lcnt[512 + 381] == 4
    assert sum(lcnt) == 2943 == m.vmstats.v_free_count  # 3966 - 1023 DMA pages
    # finalize: scale_lim 1024 (256 * 1 * 2 * 2); total over q[0..1023] = PQ_NONE +
    # colours 0..1022 = 2943 - lcnt(1023) = 2943 - 3 = 2940; avg 2940 / 1024 = 2;
    # lo = 2 - 0 = 2 and no colour is below 2, so nothing moved
    assert m.console == ["vm_page: avg 2 pages per queue, 1024 queues"]


def test_later_organize_calls_end_up_nearer_the_head() -> None:
    # ACPI reports the ranges out of address order; the calls run in the listed order:
    # call 0: [8, 12) MiB socket 0, call 1: [12, 16) MiB socket 1,
    # call 2: [4 KiB, 6 MiB) socket 0, call 3: [6, 8) MiB socket 1
    cfg = MachineConfig(
        phys_avail=((0x1000, 0x1000000),),
        cpus=4,
        topology=Topology(2, 2, 1),
        boot_stage="early",
        numa=(
            NumaRange(0x800000, 0x400000, 0),
            NumaRange(0xC00000, 0x400000, 1),
            NumaRange(0x1000, 0x5FF000, 0),
            NumaRange(0x600000, 0x200000, 1),
        ),
    )
    m = Machine.boot(cfg)
    # colour 10: call 2 moved pfn 1024 + 11 = 1035; call 0 moved 2056 and 2568 (in that
    # order, so 2568 above 2056); call 2 ran later, so 1035 is on top despite its address
    assert queue_pfns(m, PQ_FREE + 10) == [1035, 2568, 2056]
    # colour 522: call 3 moved 1547 (boot colour 522, in [6, 8) MiB); call 1 moved 3081, 3593
    assert queue_pfns(m, PQ_FREE + 522) == [1547, 3593, 3081]
    # colours 0..511: 1 (call 2) + 2 (call 0) = 3; 512 + c: 1 (call 3) + 1 or 2 (call 1)
    # -> total over q[0..1023] = 2943 - lcnt(1023) = 2943 - 2 = 2941 -> avg 2, nothing moves
    assert m.console == ["vm_page: avg 2 pages per queue, 1024 queues"]
    assert sum(m.pq.lcnt) == 2943
    check_invariants(m)


def test_returned_reserve_pages_keep_their_socket_color() -> None:
    m = split_machine("finished")
    # reserve pfn 1..1023, keep 16773120 / 16 / 4096 = 255 pages: (1023, 512, 512) ->
    # (512, 512); then leaves 480, 448, ..., 256 (511-255 = 256, 224, ..., 32 >= 32)
    assert m.contig.vm_low_phys_reserved == 256 << 12
    assert m.vmstats.v_dma_pages == 255
    assert m.console[-1] == "DMA space used: 0k, remaining available: 1020k"
    # pfn 700 (colour 188 after organize) came back in the first chunk; colour 188 also
    # holds 1213 and 1725 (boot colours 188 and 700 -> % 512 = 188)
    assert queue_pfns(m, PQ_FREE + 188) == [700, 1725, 1213]
    check_invariants(m)


def test_one_socket_changes_nothing() -> None:
    m = Machine.boot(MachineConfig.from_size("16MiB", sockets=1, cores=4, boot_stage="early"))
    pfn = np.arange(1, 3967, dtype=np.int64)
    assert (m.pg.arrays["pc"][pfn - 1].astype(np.int64) == twist(pfn)).all()
    # boot order untouched: colour 10 holds 10 ^ k + 1024 k for k = 1, 2, 3 (pfn 10 is DMA)
    assert queue_pfns(m, PQ_FREE + 10) == [3072 + 9, 2048 + 8, 1024 + 11]


@pytest.mark.parametrize(
    ("topology", "scale_lim"),
    [
        ((2, 2, 1), 1024),  # 512 / 2 / 1 = 256 -> 256 * 4
        ((3, 1, 1), 1023),  # 1024 / 3 = 341 -> 341 * 3
        ((3, 2, 1), 1020),  # 341 / 2 = 170 -> 170 * 6
        ((3, 2, 2), 1020),  # 341 / 2 / 2 = 85 -> 85 * 12
        ((7, 1, 1), 1022),  # 1024 / 7 = 146 -> 146 * 7
        ((2, 3, 1), 1020),  # 512 / 3 = 170 -> 170 * 6
    ],
)
def test_finalize_scale_lim(topology: tuple[int, int, int], scale_lim: int) -> None:
    s, c, t = topology
    m = Machine.boot(
        MachineConfig.from_size("4MiB", sockets=s, cores=c, threads=t, boot_stage="early")
    )
    assert len(m.console) == 1
    assert m.console[0].startswith("vm_page: avg ")
    assert m.console[0].endswith(f" pages per queue, {scale_lim} queues")


# ---------------------------------------------------------------------------------------
# vm_numa_organize_finalize on a hand-made queue state
# ---------------------------------------------------------------------------------------

# phys_avail [256 MiB, 320 MiB), 3 sockets x 2 cores x 1 thread:
# total 64 MiB; first_page 0x10000; page_range 0x4000 = 16384
# nbits 0x14000 = 81920 -> 10240 bytes -> 3 pages; end = 0x14000000 - 0x3000 = 0x13FFD000
# npages = (67108864 - 16384 * 128) / 4096 = 15872; new_end = 0x13FFD000 - 0x200000
#   = 0x13DFD000 -> pfn 0x10000..0x13DFC = 0x3DFD = 15869 pages, all above
#   vm_low_phys_reserved = min(256 MiB, 16 MiB): no DMA pages, F = 15869
# scale_lim = (1024 / 3 / 2 / 1 = 170) * 6 = 1020
#
# The state built below: colour 0: 1050 pages; colours 1..1018: 9 each, except 500: 1 and
# 700: 5; colour 1019: 1200; colours 1020..1022: 0; colour 1023: the rest = 15869 - 11400
# = 4469.  Average over q[0..1019] = PQ_NONE + colours 0..1018
#   = 1050 + 9 * 1018 - 8 - 4 = 1050 + 9150 = 10200 -> 10200 / 1020 = 10; lo = 10 - 1 = 9
# (were colour 1019 counted, 11400 / 1020 = 11).  Donors need lcnt >= 10: colours 0, 1019,
# 1023 only (1019 and 1023 are outside the average but still donors).
# i = 500 needs 8: iter 1..1018 skip, 1019, (1020..1022 skip), 1023, 0, and round again:
#   pages from 1019, 1023, 0, 1019, 1023, 0, 1019, 1023; iter stops at 1023.
# i = 700 needs 4: iter CONTINUES from 1023 (it is not reset per receiver): 0, 1019, 1023, 0.
# Colours 1020..1022 (>= scale_lim) are never filled.

DESIGN_AVAIL = ((0x10000000, 0x14000000),)


def design_counts(total: int) -> dict[int, int]:
    counts = dict.fromkeys(range(1, 1019), 9)
    counts[500] = 1
    counts[700] = 5
    counts[0] = 1050
    counts[1019] = 1200
    counts[1023] = total - 11400
    return counts


def test_finalize_round_robin_donors_and_fill_level() -> None:
    m = Machine.boot(
        MachineConfig(
            phys_avail=DESIGN_AVAIL, cpus=6, topology=Topology(3, 2, 1), boot_stage="early"
        )
    )
    assert m.vmstats.v_free_count == 15869
    # rebuild the free queues to the designed state; pages pushed at the head one by one
    free_pages = [i for c in range(PQ_L2_SIZE) for i in queue_pages(m, PQ_FREE + c)]
    assert len(free_pages) == 15869
    for i in free_pages:
        _unlink_raw(m, i)
    free_pages.sort()
    lists: dict[int, list[int]] = {}  # colour -> page indices, head first
    pos = 0
    for color, n in sorted(design_counts(15869).items()):
        for i in free_pages[pos : pos + n]:
            m.pg.pc[i] = color
            _push_head_raw(m, i, PQ_FREE + color)
        lists[color] = free_pages[pos : pos + n][::-1]
        pos += n
    assert pos == 15869
    check_invariants(m)

    vm_numa_organize_finalize(m)

    assert m.console[-1] == "vm_page: avg 10 pages per queue, 1020 queues"
    lcnt = m.pq.lcnt
    assert lcnt[PQ_FREE + 500] == 9  # filled to lo, not to the average
    assert lcnt[PQ_FREE + 700] == 9
    assert lcnt[PQ_FREE + 0] == 1050 - 4  # 2 to colour 500, 2 to colour 700
    assert lcnt[PQ_FREE + 1019] == 1200 - 4  # 3 + 1
    assert lcnt[PQ_FREE + 1023] == 4469 - 4  # 3 + 1
    assert [lcnt[PQ_FREE + c] for c in (1020, 1021, 1022)] == [0, 0, 0]
    assert lcnt[PQ_FREE + 1] == 9 and lcnt[PQ_FREE + 1018] == 9
    # the k-th page taken from a donor is its k-th page from the head; each moved page
    # goes to the head of the receiver, so the last one taken leads
    d0, d1019, d1023 = lists[0], lists[1019], lists[1023]
    assert (
        queue_pages(m, PQ_FREE + 500)
        == [
            d1023[2],
            d1019[2],
            d0[1],
            d1023[1],
            d1019[1],
            d0[0],
            d1023[0],
            d1019[0],
        ]
        + lists[500]
    )
    assert queue_pages(m, PQ_FREE + 700) == [d0[3], d1023[3], d1019[3], d0[2]] + lists[700]
    for i in queue_pages(m, PQ_FREE + 500):
        assert m.pg.pc[i] == 500
    assert m.pg.pc[d0[3]] == 700
    assert m.pg.queue[d0[3]] == PQ_FREE + 700
    assert queue_pages(m, PQ_FREE + 0)[0] == d0[4]
    # no counter moved: the pages are still free
    assert m.vmstats.v_free_count == 15869
    assert sum(lcnt[PQ_FREE : PQ_FREE + PQ_L2_SIZE]) == 15869
    check_invariants(m)

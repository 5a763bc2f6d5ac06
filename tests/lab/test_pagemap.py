"""The physical memory map (``app.lab.pagemap``): hand-worked boots, state moves after
kernel calls, bucket edges and input checks.

Every expected number below is worked out from the configuration (the arithmetic is in
the comments), never copied from the function's output.

Two machines are used:

* **tiny**: ``phys_avail = [(0x1000, 16 MiB)]``, 1 CPU, finished boot.
  first_page = 1, page_range = 4096 - 1 = 4095 records (pfns 1..4095).
  total = 4095 pages = 16 773 120 bytes; npages = (16 773 120 - 4095*128) // 4096
  = 16 248 960 // 4096 = 3967.  The minidump bitmap (4096 bits = 512 bytes -> 1 page)
  and the page array come off the top: end = 16 MiB - 4096, new_end =
  trunc_page(16 773 120 - 524 160 = 16 248 960) = 3967 * 4096.  So the managed pages are
  pfns [1, 3967) = 3966 pages (npages 3967 does not bind) and pfns 3967..4095 = 129 pages
  are unmanaged.
  DMA: vm_low_phys_reserved = min(256 MiB, total/4 = 4 193 280) -> pfns below
  ceil(4 193 280 / 4096 = 1023.75) = 1024, i.e. pfns 1..1023 (1023 pages) go to the
  alist at boot.  vm_dma_reserved = min(128 MiB, total/16 = 1 048 320) -> keep
  1 048 320 // 4096 = 255 pages; vm_page_startup_finish hands the rest back from the top,
  so pfns 1..255 stay in the reserve and 3966 - 255 = 3711 pages are free.
* **holes**: ``phys_avail = [(0x1000, 0x9F000), (0x100000, 8 MiB)]`` (a PC's low memory,
  the ISA hole, then RAM), 1 CPU, ``dma_reserved = 64 pages``.
  first_page = 1, page_range = 2048 - 1 = 2047 (pfns 1..2047).  RAM: pfns [1, 159) = 158
  pages and [256, 2048) = 1792 pages, total 1950 pages = 7 987 200 bytes; npages =
  (7 987 200 - 2047*128) // 4096 = 7 725 184 // 4096 = 1886.  The biggest range (the
  second) loses the minidump bitmap (2048 bits -> 1 page: end = 8 MiB - 4096) and the
  page array: new_end = trunc_page(8 384 512 - 262 016 = 8 122 496) = 1983 * 4096.
  Managed: [1, 159) (158) + [256, 1983) (1727; npages left 1886 - 158 = 1728 does not
  bind) = 1885 pages.  Unmanaged: the hole [159, 256) = 97 pages and [1983, 2048) = 65
  pages, 162 in all (1885 + 162 = 2047).
  DMA: vm_low_phys_reserved = min(256 MiB, 7 987 200 / 4 = 1 996 800) -> pfns below
  ceil(487.5) = 488: [1, 159) + [256, 488) = 158 + 232 = 390 pages at boot; with
  dma_reserved = 64 pages the top 390 - 64 are handed back, leaving pfns 1..64.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_NONE,
)
from app.core.errors import InvalidArgument
from app.core.machine import Machine
from app.lab import pagemap as pagemap_module
from app.lab.machine_views import dma_alist_view
from app.lab.pagemap import MAX_WIDTH, STATES, pagemap

PAGE = 4096
MiB = 1 << 20

TINY = MachineConfig(phys_avail=((0x1000, 16 * MiB),), cpus=1, seed=1)
HOLES = MachineConfig(
    phys_avail=((0x1000, 0x9F000), (0x100000, 8 * MiB)), cpus=1, seed=1, dma_reserved=64 * PAGE
)


@pytest.fixture(scope="module")
def tiny() -> Machine:
    """Booted once, never mutated: the read-only tests share it."""
    return Machine.boot(TINY)


@pytest.fixture(scope="module")
def holes() -> Machine:
    return Machine.boot(HOLES)


def zero_totals(**nonzero: int) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    out.update(nonzero)
    return out


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {s: after[s] - before[s] for s in STATES if after[s] != before[s]}


def totals(m: Machine) -> dict[str, int]:
    result: dict[str, int] = pagemap(m, None, None, 1)["totals"]
    return result


def check_shape(result: dict[str, Any]) -> None:
    """Counts are plain ints, one list per state of ``width`` buckets, summing to the
    totals; every page is in exactly one state; bucket sizes are bucket_pages but the
    last."""
    assert result["states"] == list(STATES)
    width, size = result["width"], result["bucket_pages"]
    n = result["hi"] - result["lo"]
    for state in STATES:
        counts = result["counts"][state]
        assert len(counts) == width
        assert all(type(c) is int for c in counts)
        assert sum(counts) == result["totals"][state]
        assert type(result["totals"][state]) is int
    per_bucket = [sum(result["counts"][s][k] for s in STATES) for k in range(width)]
    assert per_bucket == [size] * (width - 1) + [n - size * (width - 1)]
    assert sum(result["totals"].values()) == n


# ================================================================= boots, worked by hand
def test_tiny_boot_whole_map(tiny: Machine) -> None:
    result = pagemap(tiny, None, None, 1024)
    check_shape(result)
    assert (result["lo"], result["hi"]) == (1, 4096)
    # 4095 pages / 1024 buckets -> ceil(3.999) = 4 pages a bucket, ceil(4095 / 4) = 1024
    # buckets, the last 4095 - 1023*4 = 3 pages.
    assert (result["width"], result["bucket_pages"]) == (1024, 4)
    assert result["totals"] == zero_totals(free=3711, dma_reserve=255, unmanaged=129)


def test_tiny_boot_16_buckets(tiny: Machine) -> None:
    result = pagemap(tiny, None, None, 16)
    check_shape(result)
    # ceil(4095/16 = 255.9) = 256 pages a bucket; ceil(4095/256 = 15.996) = 16 buckets,
    # bucket k = pfns [1 + 256k, 257 + 256k); the last one 4095 - 15*256 = 255 pages.
    assert (result["width"], result["bucket_pages"]) == (16, 256)
    counts = result["counts"]
    # bucket 0 = pfns 1..256: reserve pfns 1..255, pfn 256 free
    assert counts["dma_reserve"] == [255] + [0] * 15
    # bucket 15 = pfns 3841..4095: free 3841..3966 (126), unmanaged 3967..4095 (129)
    assert counts["free"] == [1] + [256] * 14 + [126]
    assert counts["unmanaged"] == [0] * 15 + [129]


def test_holes_one_page_per_bucket_marks_the_holes_exactly(holes: Machine) -> None:
    result = pagemap(holes, 1, 2048, 2047)
    check_shape(result)
    assert (result["width"], result["bucket_pages"]) == (2047, 1)
    # bucket j is pfn 1 + j: the hole pfns 159..255 are buckets 158..254, the page array
    # and minidump pfns 1983..2047 are buckets 1982..2046
    unmanaged = [j for j, c in enumerate(result["counts"]["unmanaged"]) if c]
    assert unmanaged == list(range(158, 255)) + list(range(1982, 2047))
    reserve = [j for j, c in enumerate(result["counts"]["dma_reserve"]) if c]
    assert reserve == list(range(0, 64))  # pfns 1..64
    assert result["totals"] == zero_totals(free=1885 - 64, dma_reserve=64, unmanaged=162)


def test_holes_32_buckets(holes: Machine) -> None:
    result = pagemap(holes, None, None, 32)
    check_shape(result)
    # ceil(2047/32 = 63.97) = 64 pages a bucket, ceil(2047/64 = 31.98) = 32 buckets,
    # bucket k = pfns [1 + 64k, 65 + 64k), the last 2047 - 31*64 = 63 pages.
    assert (result["width"], result["bucket_pages"]) == (32, 64)
    unmanaged = result["counts"]["unmanaged"]
    # bucket 2 = 129..192: hole 159..192 = 34; bucket 3 = 193..256: hole 193..255 = 63;
    # bucket 30 = 1921..1984: 1983, 1984 = 2; bucket 31 = 1985..2047: all 63.
    assert {k: c for k, c in enumerate(unmanaged) if c} == {2: 34, 3: 63, 30: 2, 31: 63}
    assert result["counts"]["dma_reserve"] == [64] + [0] * 31  # pfns 1..64
    free = result["counts"]["free"]
    assert free[:5] == [0, 64, 64 - 34, 64 - 63, 64]
    assert free[30:] == [62, 0]


def test_reserve_matches_the_alist_and_v_dma_pages(holes: Machine) -> None:
    view = dma_alist_view(holes)
    result = pagemap(holes, None, None, 8)
    assert result["totals"]["dma_reserve"] == view["bl_free"] == 64
    assert holes.vmstats.v_dma_pages == 64


def test_early_boot_keeps_the_whole_reserve() -> None:
    # Before vm_page_startup_finish nothing is handed back: all 390 reserve pages (see the
    # module docstring) are free in the alist, 1885 - 390 = 1495 pages are free.
    m = Machine.boot(
        MachineConfig(
            phys_avail=HOLES.phys_avail, cpus=1, seed=1, boot_stage="early", dma_reserved=64 * PAGE
        )
    )
    result = pagemap(m, None, None, 4096)
    check_shape(result)
    assert result["totals"] == zero_totals(free=1495, dma_reserve=390, unmanaged=162)
    assert m.contig.alist.bl_free == 390
    assert m.vmstats.v_free_count == 1495


def test_vmstats_agree_after_boot(tiny: Machine, holes: Machine) -> None:
    for m in (tiny, holes):
        t = totals(m)
        assert t["free"] == m.vmstats.v_free_count  # the reserve is not in v_free_count
        assert t["wired"] + t["dma_reserve"] == m.vmstats.v_wire_count
        assert t["free"] + t["dma_reserve"] == m.vmstats.v_page_count


# ================================================================= states after calls
def call(machine: Machine, fn: str, /, **args: Any) -> Any:
    return machine.call(fn, args).result


def test_each_call_moves_exactly_one_page() -> None:
    m = Machine.boot(TINY)
    before = totals(m)

    def step(fn: str, expected: dict[str, int], /, **args: Any) -> Any:
        nonlocal before
        value = call(m, fn, **args)
        after = totals(m)
        assert moved(before, after) == expected, fn
        before = after
        return value

    # vm_page_alloc: off a free queue, hard-busied, on PQ_NONE
    p = step("vm_page_alloc", {"free": -1, "busy": +1}, page_req="VM_ALLOC_NORMAL")
    step("vm_page_wakeup", {"busy": -1, "none": +1}, m=p)  # idle, on no queue
    step("vm_page_activate", {"none": -1, "active": +1}, m=p)
    step("vm_page_deactivate", {"active": -1, "inactive": +1}, m=p)
    step("vm_page_hold", {"inactive": -1, "hold": +1}, m=p)  # a hold beats the queue
    step("vm_page_unhold", {"hold": -1, "inactive": +1}, m=p)
    step("vm_page_busy_try", {"inactive": -1, "busy": +1}, m=p, also_m_busy=False)
    step("vm_page_cache", {"busy": -1, "cache": +1}, m=p)  # clean: to PQ_CACHE, unbusied
    step("vm_page_busy_try", {"cache": -1, "busy": +1}, m=p, also_m_busy=False)
    step("vm_page_wire", {}, m=p)  # still busied: busy wins over wired
    step("vm_page_wakeup", {"busy": -1, "wired": +1}, m=p)
    step("vm_page_busy_try", {"wired": -1, "busy": +1}, m=p, also_m_busy=False)
    step("vm_page_unwire", {}, m=p, activate=True)
    step("vm_page_wakeup", {"busy": -1, "active": +1}, m=p)
    step("vm_page_sbusy_try", {"active": -1, "busy": +1}, m=p)  # soft-busy counts too
    step("vm_page_sbusy_drop", {"busy": -1, "active": +1}, m=p)
    # freed while held: to PQ_HOLD (hold), and to PQ_FREE at the last unhold
    step("vm_page_busy_try", {"active": -1, "busy": +1}, m=p, also_m_busy=False)
    step("vm_page_hold", {}, m=p)
    step("vm_page_free", {"busy": -1, "hold": +1}, m=p)
    step("vm_page_unhold", {"hold": -1, "free": +1}, m=p)
    assert before == zero_totals(free=3711, dma_reserve=255, unmanaged=129)


def test_contig_allocation_leaves_the_reserve_as_wired_pages() -> None:
    m = Machine.boot(TINY)
    # alist_alloc(0, 4) takes the lowest naturally aligned free 4-block of pfns 1..255:
    # blocks 0..3 hold pfn 0 (not RAM, never free), so 4..7.
    pfn = call(
        m,
        "vm_page_alloc_contig",
        low=0,
        high=0,
        alignment=PAGE,
        boundary=0,
        size=4 * PAGE,
        memattr=6,
    )
    assert pfn == 4
    result = pagemap(m, 1, 9, 8)
    assert result["counts"]["dma_reserve"] == [1, 1, 1, 0, 0, 0, 0, 1]
    assert result["counts"]["wired"] == [0, 0, 0, 1, 1, 1, 1, 0]
    assert moved(zero_totals(free=3711, dma_reserve=255, unmanaged=129), totals(m)) == {
        "dma_reserve": -4,
        "wired": +4,
    }
    call(m, "vm_page_free_contig", m=pfn, size=4 * PAGE)
    assert totals(m) == zero_totals(free=3711, dma_reserve=255, unmanaged=129)


def test_totals_match_vmstats_after_a_mix() -> None:
    m = Machine.boot(TINY)
    kinds = ("active", "inactive", "wired", "cache", "hold_queue", "none")
    for kind in kinds:
        for _ in range(3):
            p = call(m, "vm_page_alloc", page_req="VM_ALLOC_NORMAL")
            if kind == "wired":
                call(m, "vm_page_wire", m=p)
            if kind == "cache":
                call(m, "vm_page_cache", m=p)
                continue
            if kind == "hold_queue":
                call(m, "vm_page_hold", m=p)
                call(m, "vm_page_free", m=p)
                continue
            call(m, "vm_page_wakeup", m=p)
            if kind == "active":
                call(m, "vm_page_activate", m=p)
            elif kind == "inactive":
                call(m, "vm_page_deactivate", m=p)
    call(m, "vmstats_rollup")
    t = totals(m)
    # 6 kinds x 3 pages taken off the free queues: 3711 - 18 = 3693 free
    assert t == zero_totals(
        free=3693,
        active=3,
        inactive=3,
        wired=3,
        cache=3,
        hold=3,
        none=3,
        dma_reserve=255,
        unmanaged=129,
    )
    vs = m.vmstats
    assert t["free"] == vs.v_free_count
    assert t["inactive"] == vs.v_inactive_count
    assert t["cache"] == vs.v_cache_count
    assert t["active"] + t["hold"] == vs.v_active_count  # PQ_HOLD feeds v_active_count
    assert t["wired"] + t["dma_reserve"] == vs.v_wire_count


# ================================================================= bucket edges
def test_width_not_dividing_the_range(tiny: Machine) -> None:
    # 10 pages in 4 buckets: ceil(10/4) = 3 a bucket -> 3, 3, 3, 1
    r = pagemap(tiny, 1, 11, 4)
    check_shape(r)
    assert (r["width"], r["bucket_pages"]) == (4, 3)
    assert r["counts"]["dma_reserve"] == [3, 3, 3, 1]
    # 10 pages in 6 buckets: ceil(10/6) = 2 a bucket, so only ceil(10/2) = 5 buckets
    r = pagemap(tiny, 1, 11, 6)
    check_shape(r)
    assert (r["width"], r["bucket_pages"]) == (5, 2)


def test_width_larger_than_the_range(tiny: Machine) -> None:
    # pfns 250..259: 250..255 in the reserve (6), 256..259 free (4); one page a bucket
    r = pagemap(tiny, 250, 260, MAX_WIDTH)
    check_shape(r)
    assert (r["width"], r["bucket_pages"]) == (10, 1)
    assert r["counts"]["dma_reserve"] == [1] * 6 + [0] * 4
    assert r["counts"]["free"] == [0] * 6 + [1] * 4


def test_sub_range_across_word_and_hole_edges(holes: Machine) -> None:
    # pfns 60..299 (240 pages) in 7 buckets: ceil(240/7 = 34.3) = 35 pages a bucket,
    # ceil(240/35 = 6.86) = 7 buckets, the last 240 - 6*35 = 30.
    r = pagemap(holes, 60, 300, 7)
    check_shape(r)
    assert (r["width"], r["bucket_pages"]) == (7, 35)
    # buckets: 60..94, 95..129, 130..164, 165..199, 200..234, 235..269, 270..299
    # reserve pfns 60..64 (5); hole 159..255: 6 in bucket 2, 35, 35, 21 in bucket 5
    assert r["counts"]["dma_reserve"] == [5, 0, 0, 0, 0, 0, 0]
    assert r["counts"]["unmanaged"] == [0, 0, 6, 35, 35, 21, 0]
    assert r["counts"]["free"] == [30, 35, 29, 0, 0, 14, 30]


def test_one_page(holes: Machine) -> None:
    assert pagemap(holes, 159, 160, 1)["totals"] == zero_totals(unmanaged=1)
    assert pagemap(holes, 2047, 2048, 5)["totals"] == zero_totals(unmanaged=1)
    assert pagemap(holes, 64, 65, 1)["totals"] == zero_totals(dma_reserve=1)
    assert pagemap(holes, 65, 66, 1)["totals"] == zero_totals(free=1)


def test_sub_ranges_add_up(holes: Machine) -> None:
    whole = pagemap(holes, None, None, 1)["totals"]
    parts = [pagemap(holes, a, b, 3)["totals"] for a, b in ((1, 100), (100, 1000), (1000, 2048))]
    assert {s: sum(p[s] for p in parts) for s in STATES} == whole


# ================================================================= input checks
@pytest.mark.parametrize(
    ("lo", "hi", "width", "message"),
    [
        (10, 10, 4, "below hi"),
        (20, 10, 4, "below hi"),
        (0, 10, 4, "inside this machine"),  # pfn 0 precedes first_page 1
        (1, 4097, 4, "inside this machine"),  # one past the last record (pfn 4095)
        (None, None, 0, "width"),
        (None, None, MAX_WIDTH + 1, "width"),
        (True, 10, 4, "integer"),
        (1, "10", 4, "integer"),
        (None, None, 2.5, "integer"),
    ],
)
def test_invalid_inputs(tiny: Machine, lo: Any, hi: Any, width: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        pagemap(tiny, lo, hi, width)


def test_defaults_cover_the_whole_array(tiny: Machine) -> None:
    r = pagemap(tiny)
    assert (r["lo"], r["hi"]) == (tiny.first_page, tiny.first_page + tiny.page_range)
    assert pagemap(tiny, 1, None, 2)["hi"] == 4096
    assert pagemap(tiny, None, 100, 2)["lo"] == 1


# ================================================================= against a plain oracle
def classify_one_by_one(m: Machine, lo: int, hi: int, width: int) -> dict[str, list[int]]:
    """The documented precedence, page by page in plain Python."""
    size = -(-(hi - lo) // width)
    counts = {s: [0] * -(-(hi - lo) // size) for s in STATES}
    reserve = {b for blk, n in m.contig.alist.free_runs() for b in range(blk, blk + n)}
    managed = {i for a, z in m.managed for i in range(a, z)}
    queue_state = {PQ_FREE: "free", PQ_CACHE: "cache", PQ_INACTIVE: "inactive"}
    queue_state[PQ_ACTIVE] = "active"
    pg = m.pg
    for pfn in range(lo, hi):
        i = pfn - m.first_page
        base = pg.queue[i] - pg.pc[i] if pg.queue[i] else PQ_NONE
        if i not in managed:
            state = "unmanaged"
        elif pfn in reserve:
            state = "dma_reserve"
        elif pg.busy[i] & (PBUSY_LOCKED | PBUSY_MASK):
            state = "busy"
        elif pg.wire[i]:
            state = "wired"
        elif pg.hold[i] or base == PQ_HOLD:
            state = "hold"
        else:
            state = queue_state.get(base, "none")
        counts[state][(pfn - lo) // size] += 1
    return counts


def test_agrees_with_a_page_by_page_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small passes (64 and 192 pages) put chunk edges all over the map; contiguous
    # allocations punch holes into the reserve's free runs.
    m = Machine.boot(HOLES)
    for pages in (1, 3, 5):
        call(
            m,
            "vm_page_alloc_contig",
            low=0,
            high=0,
            alignment=PAGE,
            boundary=0,
            size=pages * PAGE,
            memattr=6,
        )
    rng = random.Random(5)
    for _ in range(600):
        p = call(m, "vm_page_alloc", page_req="VM_ALLOC_NORMAL")
        kind = rng.randrange(6)
        if kind == 1:
            call(m, "vm_page_wire", m=p)
        if kind == 2:
            call(m, "vm_page_hold", m=p)
            call(m, "vm_page_free", m=p)
            continue
        if kind:
            call(m, "vm_page_wakeup", m=p)
        if kind == 3:
            call(m, "vm_page_activate", m=p)
        elif kind == 4:
            call(m, "vm_page_deactivate", m=p)
            call(m, "vm_page_hold", m=p)
    first, end = m.first_page, m.first_page + m.page_range
    for chunk in (64, 192):
        monkeypatch.setattr(pagemap_module, "_CHUNK", chunk)
        for lo, hi, width in (
            (first, end, 1024),
            (first, end, 7),
            (3, end - 70, 333),
            (160, 161, 1),
        ):
            assert pagemap(m, lo, hi, width)["counts"] == classify_one_by_one(m, lo, hi, width)

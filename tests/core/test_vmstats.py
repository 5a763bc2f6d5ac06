"""Tests for app.core.vmstats (spec §4.2 thresholds, §4.3 predicates) and the per-CPU
vmstats folding and rollup of app.core.queues (spec §5).  Expected numbers are worked out
by hand from the spec in the comments; predicate trip points are checked one page either
side on hand-built ``VmStats``.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import CNT_ACTIVE, CNT_CACHE, CNT_FREE, CNT_INACTIVE, CNT_WIRE
from app.core.invariants import check_invariants
from app.core.machine import Machine
from app.core.vmstats import (
    VmStats,
    c_div,
    init_thresholds,
    nice_offset,
    predicate_table,
    vm_paging_inactive,
    vm_paging_inactive_count,
    vm_paging_min,
    vm_paging_min_dnc,
    vm_paging_min_nice,
    vm_paging_severe,
    vm_paging_start,
    vm_paging_target1,
    vm_paging_target1_count,
    vm_paging_target2,
    vm_paging_target2_count,
    vm_paging_wait,
)


def stats(free: int = 0, cache: int = 0, inactive: int = 0, **fields: int) -> VmStats:
    """A ``struct vmstats`` with the given counters and thresholds (others zero)."""
    vs = VmStats()
    vs.cnt[CNT_FREE] = free
    vs.cnt[CNT_CACHE] = cache
    vs.cnt[CNT_INACTIVE] = inactive
    for name, value in fields.items():
        vs.set(name, value)
    return vs


# ---------------------------------------------------------------------------------------
# §4.2 threshold formulas
# ---------------------------------------------------------------------------------------


def thresholds(vs: VmStats) -> dict[str, int]:
    names = (
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
    )
    return {n: vs.get(n) for n in names}


def test_thresholds_for_a_million_pages() -> None:
    vs = stats(v_page_count=1_000_000)
    init_thresholds(vs, 950_240)
    assert thresholds(vs) == {
        "v_free_min": 5064,  # 64 + 1000000 / 200
        "v_free_reserved": 2539,  # 5064 * 4 / 8 + 7 = 2532 + 7
        "v_free_severe": 2532,  # 5064 * 4 / 8: 7 BELOW reserved
        "v_pageout_free_min": 1273,  # 5064 * 2 / 8 + 7 = 1266 + 7
        "v_interrupt_free_min": 640,  # 5064 / 8 + 7 = 633 + 7
        "v_free_target": 10128,  # 2x
        "v_paging_wait": 10128,  # 2x
        "v_paging_start": 15192,  # 3x
        "v_paging_target1": 20256,  # 4x
        "v_paging_target2": 25320,  # 5x
        "v_inactive_target": 59390,  # 950240 / 16
    }


def test_thresholds_truncate_like_c() -> None:
    vs = stats(v_page_count=20_399)
    init_thresholds(vs, 31)
    # min = 64 + 20399 / 200 = 64 + 101 = 165; reserved = 660 / 8 + 7 = 82 + 7 = 89;
    # severe = 82; pageout_free_min = 330 / 8 + 7 = 41 + 7 = 48;
    # interrupt = 165 / 8 + 7 = 20 + 7 = 27; inactive_target = 31 / 16 = 1
    t = thresholds(vs)
    assert (t["v_free_min"], t["v_free_reserved"], t["v_free_severe"]) == (165, 89, 82)
    assert (t["v_pageout_free_min"], t["v_interrupt_free_min"]) == (48, 27)
    assert (t["v_paging_wait"], t["v_paging_start"], t["v_paging_target2"]) == (330, 495, 825)
    assert t["v_inactive_target"] == 1


# ---------------------------------------------------------------------------------------
# §4.3 predicates at their trip points
# ---------------------------------------------------------------------------------------


def test_paging_severe_each_clause() -> None:
    # severe > FC (FC = free + cache): with severe 100 and reserved 10
    assert not vm_paging_severe(stats(free=60, cache=40, v_free_severe=100, v_free_reserved=10))
    assert vm_paging_severe(stats(free=60, cache=39, v_free_severe=100, v_free_reserved=10))
    # reserved > FR (free only; cache does not help)
    assert not vm_paging_severe(stats(free=10, cache=500, v_free_severe=100, v_free_reserved=10))
    assert vm_paging_severe(stats(free=9, cache=500, v_free_severe=100, v_free_reserved=10))


def test_paging_min_and_min_dnc() -> None:
    base: dict[str, Any] = {"v_free_min": 200, "v_free_reserved": 50}
    assert not vm_paging_min(stats(free=150, cache=50, **base))  # 200 > 200 is false
    assert vm_paging_min(stats(free=150, cache=49, **base))
    assert not vm_paging_min_dnc(stats(free=150, cache=66, **base), 16)  # 216 > 216 false
    assert vm_paging_min_dnc(stats(free=150, cache=65, **base), 16)
    # the reserve clause
    assert not vm_paging_min(stats(free=50, cache=1000, **base))
    assert vm_paging_min(stats(free=49, cache=1000, **base))
    assert vm_paging_min_dnc(stats(free=49, cache=1000, **base), -1000)


def test_paging_wait() -> None:
    base: dict[str, Any] = {"v_paging_wait": 328, "v_free_reserved": 89}
    assert not vm_paging_wait(stats(free=300, cache=28, **base))
    assert vm_paging_wait(stats(free=300, cache=27, **base))
    assert not vm_paging_wait(stats(free=89, cache=1000, **base))
    assert vm_paging_wait(stats(free=88, cache=1000, **base))


def test_paging_start_with_adjustment() -> None:
    base: dict[str, Any] = {"v_paging_start": 492, "v_free_min": 164, "v_free_reserved": 89}
    # clause 1: start > FC + adj
    assert not vm_paging_start(stats(free=400, cache=92, **base), 0)
    assert vm_paging_start(stats(free=400, cache=91, **base), 0)
    assert not vm_paging_start(stats(free=400, cache=102, **base), -10)  # 492 > 492 false
    assert vm_paging_start(stats(free=400, cache=101, **base), -10)
    # clause 2: min > FR + adj (cache does not count)
    assert not vm_paging_start(stats(free=1188, cache=5000, **base), -1024)  # 164 > 164
    assert vm_paging_start(stats(free=1187, cache=5000, **base), -1024)
    # clause 3: reserved > FR, with no adjustment applied
    assert not vm_paging_start(stats(free=89, cache=5000, **base), 10_000)
    assert vm_paging_start(stats(free=88, cache=5000, **base), 10_000)


def test_paging_targets_and_signed_counts() -> None:
    base: dict[str, Any] = {"v_paging_target1": 656, "v_paging_target2": 820, "v_free_reserved": 89}
    assert not vm_paging_target1(stats(free=600, cache=56, **base))
    assert vm_paging_target1(stats(free=600, cache=55, **base))
    assert not vm_paging_target2(stats(free=800, cache=20, **base))
    assert vm_paging_target2(stats(free=800, cache=19, **base))
    assert vm_paging_target1(stats(free=88, cache=10_000, **base))  # reserve clause
    assert vm_paging_target2(stats(free=88, cache=10_000, **base))
    assert vm_paging_target1_count(stats(free=600, cache=55, **base)) == 1  # 656 - 655
    assert vm_paging_target1_count(stats(free=1000, cache=0, **base)) == -344  # 656 - 1000
    assert vm_paging_target2_count(stats(free=1000, cache=100, **base)) == -280  # 820 - 1100
    assert vm_paging_target2_count(stats(free=10, cache=0, **base)) == 810


def test_paging_inactive() -> None:
    base: dict[str, Any] = {"v_free_min": 164, "v_inactive_target": 500}
    # FC + inactive < 664
    assert not vm_paging_inactive(stats(free=300, cache=64, inactive=300, **base))  # 664
    assert vm_paging_inactive(stats(free=300, cache=64, inactive=299, **base))  # 663
    assert vm_paging_inactive_count(stats(free=300, cache=64, inactive=299, **base)) == 1
    assert vm_paging_inactive_count(stats(free=1000, cache=0, inactive=0, **base)) == -336
    # no reserve clause here: a tiny free count alone does not trip it
    assert not vm_paging_inactive(stats(free=0, cache=0, inactive=664, v_free_reserved=89, **base))


def test_zero_thresholds_trip_nothing() -> None:
    for free in (0, 1, 5000):
        assert predicate_table(stats(free=free)) == dict.fromkeys(predicate_table(stats()), False)
    assert not vm_paging_min_nice(stats(), stats(), 20)


# ---------------------------------------------------------------------------------------
# vm_paging_min_nice
# ---------------------------------------------------------------------------------------

# global: min 164, wait 328 -> d = (328 - 164 - 1) >> 1 = 163 >> 1 = 81
GLOBAL = stats(v_free_min=164, v_paging_wait=328)


@pytest.mark.parametrize(
    ("nice", "k"),
    [
        (0, 0),  # nice 0 is special-cased to 0 ...
        (-20, 0),  # ... and ties with -20: 0 * 81 / 40
        (-1, 38),  # 19 * 81 / 40 = 1539 / 40 = 38.475
        (1, 42),  # 21 * 81 / 40 = 1701 / 40 = 42.525 (what vm_wait uses for nice 0)
        (10, 60),  # 30 * 81 / 40 = 2430 / 40 = 60.75
        (20, 81),  # 40 * 81 / 40 = d
    ],
)
def test_nice_offset(nice: int, k: int) -> None:
    assert nice_offset(GLOBAL, nice) == k


@pytest.mark.parametrize(
    ("wait", "minimum"),
    [
        (166, 164),  # d = 1 >> 1 = 0
        (164, 164),  # d = -1 >> 1 = -1 (arithmetic shift)
        (0, 0),  # thresholds not initialised: d = -1
        (100, 164),  # d = -65 >> 1 = -33
    ],
)
def test_nice_offset_is_zero_when_d_is_not_positive(wait: int, minimum: int) -> None:
    g = stats(v_free_min=minimum, v_paging_wait=wait)
    for nice in (-20, -1, 1, 20):
        assert nice_offset(g, nice) == 0


def test_nice_offset_with_d_of_one() -> None:
    g = stats(v_free_min=164, v_paging_wait=167)  # d = 2 >> 1 = 1
    assert [nice_offset(g, n) for n in (-20, -1, 0, 1, 19, 20)] == [0, 0, 0, 0, 0, 1]
    # 19 / 40 = 0, 21 / 40 = 0, 39 / 40 = 0, 40 / 40 = 1


def test_min_nice_trip_points_use_the_global_d_and_the_cpu_snapshot() -> None:
    # the CPU snapshot has the same v_free_min and reserve but a useless paging_wait:
    # only the GLOBAL vmstats feeds d
    def gd(fc: int) -> VmStats:
        return stats(free=fc, v_free_min=164, v_free_reserved=89, v_paging_wait=0)

    # nice 0 and -20: k = 0 -> trips when 164 > FC
    for nice in (0, -20):
        assert not vm_paging_min_nice(gd(164), GLOBAL, nice)
        assert vm_paging_min_nice(gd(163), GLOBAL, nice)
    # nice -1: k = 38 -> trips when 202 > FC
    assert not vm_paging_min_nice(gd(202), GLOBAL, -1)
    assert vm_paging_min_nice(gd(201), GLOBAL, -1)
    # nice 20: k = 81 -> trips when 245 > FC
    assert not vm_paging_min_nice(gd(245), GLOBAL, 20)
    assert vm_paging_min_nice(gd(244), GLOBAL, 20)


def test_c_division_truncates_toward_zero() -> None:
    assert c_div(81, 40) == 2
    assert c_div(-81, 40) == -2  # Python's // would give -3
    assert c_div(81, -40) == -2
    assert c_div(-81, -40) == 2


# ---------------------------------------------------------------------------------------
# §5 per-CPU adjustments: folding on removal, rollup
# ---------------------------------------------------------------------------------------

# MachineConfig.from_size("8MiB"), finished:
# total 8384512 (2047 pages); page_range 2047; npages = (8384512 - 262016) / 4096 = 1983;
# new_end = 1983 * 4096 -> pfn 1..1982 = 1982 pages (P); reserve: pa < 8384512 / 4 =
# 0x1FFC00 -> pfn 1..511; keep 8384512 / 16 / 4096 = 127 -> chunks 480, 448, ..., 128 of 32
# come back (384 pages): F = (1982 - 511) + 384 = 1855
# thresholds: min = 64 + 1982 / 200 = 73; reserved = 292 / 8 + 7 = 43; start = 219


def alloc(m: Machine, n: int, cpu: int) -> list[int]:
    return [m.call("vm_page_alloc", {}, cpu=cpu, record=False).result for _ in range(n)]


def fold_events(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in record["events"] if e["event"] == "vmstats_fold"]


def test_removal_folds_only_the_overdrawn_counter() -> None:
    m = Machine.boot(MachineConfig.from_size("8MiB"))
    assert m.vmstats.v_free_count == 1855
    assert (m.vmstats.v_free_min, m.vmstats.v_free_reserved, m.vmstats.v_paging_start) == (
        73,
        43,
        219,
    )
    pages = alloc(m, 1024, cpu=0)
    cpu = m.cpus[0]
    # -1024 is not below -1024: nothing folded yet
    assert cpu.adj.cnt[CNT_FREE] == -1024
    assert cpu.vmstats.cnt[CNT_FREE] == 1855 - 1024
    assert m.vmstats.v_free_count == 1855
    # a pending adjustment of another counter
    m.call("vm_page_activate", {"m": pages[0]})
    assert cpu.adj.cnt[CNT_ACTIVE] == 1
    # 1025th removal: adj = -1025 < -1024, and vm_paging_start(-1024) on the snapshot
    # (free 830): 219 > 830 - 1024 -> fold the free counter alone
    r = m.call("vm_page_alloc", {})
    assert fold_events(r.record) == [
        {"event": "vmstats_fold", "counter": "v_free_count", "value": -1025}
    ]
    assert m.vmstats.v_free_count == 1855 - 1025  # 830
    assert cpu.adj.cnt[CNT_FREE] == 0
    assert cpu.vmstats.cnt[CNT_FREE] == 830
    assert cpu.adj.cnt[CNT_ACTIVE] == 1  # not folded
    assert m.vmstats.v_active_count == 0
    # the next removal starts again from 0: no fold
    r = m.call("vm_page_alloc", {})
    assert fold_events(r.record) == []
    assert cpu.adj.cnt[CNT_FREE] == -1
    check_invariants(m)


# MachineConfig.from_size("16MiB", cpus=2), finished:
# pfn 1..3966 (P = 3966); reserve pfn 1..1023, keep 255 -> pfn 256..1023 return (768):
# F = (3966 - 1023) + 768 = 3711; min = 64 + 3966 / 200 = 83; reserved = 332 / 8 + 7 = 48;
# start = 249.  vm_paging_start(-1024 * 2) on a snapshot with free 3711 - n:
#   249 > 3711 - n - 2048  <=>  n > 1414  (min: 83 > 1663 - n <=> n > 1580; reserved no)
# With one CPU the bound would be -1024: 249 > 2687 - n <=> n > 2438.


def test_no_fold_until_paging_start_with_the_ncpus_scaled_adjustment_holds() -> None:
    m = Machine.boot(MachineConfig.from_size("16MiB", cpus=2))
    assert m.vmstats.v_free_count == 3711
    assert (m.vmstats.v_free_min, m.vmstats.v_free_reserved, m.vmstats.v_paging_start) == (
        83,
        48,
        249,
    )
    cpu1 = m.cpus[1]
    alloc(m, 1413, cpu=1)
    r = m.call("vm_page_alloc", {}, cpu=1)  # the 1414th: adj -1414 < -1024, start false
    assert fold_events(r.record) == []
    assert cpu1.adj.cnt[CNT_FREE] == -1414
    assert m.vmstats.v_free_count == 3711
    r = m.call("vm_page_alloc", {}, cpu=1)  # the 1415th: 249 > 3711 - 1415 - 2048 = 248
    assert fold_events(r.record) == [
        {"event": "vmstats_fold", "counter": "v_free_count", "value": -1415}
    ]
    assert m.vmstats.v_free_count == 3711 - 1415  # 2296
    assert cpu1.adj.cnt[CNT_FREE] == 0
    check_invariants(m)


def test_fold_does_not_refresh_the_snapshot_and_rollup_refreshes_only_the_caller() -> None:
    m = Machine.boot(MachineConfig.from_size("16MiB", cpus=2))
    cpu0, cpu1 = m.cpus
    alloc(m, 1415, cpu=1)  # cpu1 folds on its 1415th removal: global free 3711 - 1415 = 2296
    assert m.vmstats.v_free_count == 2296
    # cpu0's snapshot still says 3711 (it saw none of cpu1's removals), so it folds at the
    # same count: global 2296 - 1415 = 881
    alloc(m, 1414, cpu=0)
    assert cpu0.adj.cnt[CNT_FREE] == -1414
    pages0 = alloc(m, 1, cpu=0)
    assert m.vmstats.v_free_count == 881
    assert cpu0.adj.cnt[CNT_FREE] == 0
    # the fold did not copy the global counter back: cpu0 still sees only its own removals
    assert cpu0.vmstats.cnt[CNT_FREE] == 3711 - 1415  # 2296, not 881
    assert cpu1.vmstats.cnt[CNT_FREE] == 2296
    check_invariants(m)
    # pending work on cpu1: three more removals and a wiring
    pages1 = alloc(m, 3, cpu=1)
    m.call("vm_page_wire", {"m": pages1[0]}, cpu=1)
    assert cpu1.adj.cnt[CNT_FREE] == -3 and cpu1.adj.cnt[CNT_WIRE] == 1
    assert cpu1.vmstats.cnt[CNT_WIRE] == 255  # wiring never touches the snapshot
    # and on cpu0 an activation
    m.call("vm_page_activate", {"m": pages0[0]}, cpu=0)
    # vmstats_rollup called on cpu0: every CPU's adjustments fold into the global ...
    m.call("vmstats_rollup", {}, cpu=0)
    assert m.vmstats.v_free_count == 881 - 3
    assert m.vmstats.v_wire_count == 255 + 1
    assert m.vmstats.v_active_count == 1
    assert cpu0.adj.cnt == [0, 0, 0, 0, 0]
    assert cpu1.adj.cnt == [0, 0, 0, 0, 0]
    # ... and only the caller's snapshot is refreshed (counters and thresholds)
    assert cpu0.vmstats.cnt == m.vmstats.cnt
    assert cpu0.vmstats.state_tuple() == m.vmstats.state_tuple()
    assert cpu1.vmstats.cnt[CNT_FREE] == 2296 - 3
    assert cpu1.vmstats.cnt[CNT_WIRE] == 255
    assert cpu1.vmstats.cnt[CNT_ACTIVE] == 0
    check_invariants(m)


def test_early_machine_folds_because_zero_thresholds_let_paging_start_trip() -> None:
    # Early: every threshold is 0, so vm_paging_start(-1024) is "0 > FC - 1024": true as
    # soon as the snapshot's free + cache is below 1024 (the predicates are false only
    # for adj = 0).  8 MiB early: F = 1982 - 511 reserve pages = 1471.
    m = Machine.boot(MachineConfig.from_size("8MiB", boot_stage="early"))
    assert m.vmstats.v_free_count == 1471
    alloc(m, 1024, cpu=0)
    assert m.vmstats.v_free_count == 1471
    # 1025th: adj -1025 < -1024 and 0 > (1471 - 1025) - 1024 = -578
    r = m.call("vm_page_alloc", {})
    assert fold_events(r.record) == [
        {"event": "vmstats_fold", "counter": "v_free_count", "value": -1025}
    ]
    assert m.vmstats.v_free_count == 1471 - 1025  # 446
    assert m.cpus[0].adj.cnt[CNT_FREE] == 0
    check_invariants(m)

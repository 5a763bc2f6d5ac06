"""Tests for app.core.search: page colours and the queue searches (spec §6.1–§6.4).

Every expected colour and probe order below is worked out by hand from the spec's
pseudo-code; the arithmetic is written next to each assertion.  Probe lists are absolute
queue numbers (PQ_FREE = 1 + colour, PQ_CACHE = 3073 + colour).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from app.core.config import MachineConfig
from app.core.constants import PQ_CACHE, PQ_FREE, PQ_NONE
from app.core.invariants import check_invariants
from app.core.machine import Machine
from app.core.state import Trace
from app.core.vm_page.queues import _add_queue, _rem_queue
from app.core.vm_page.search import _list_find, _list_find2, vm_get_pg_color, vm_page_list_find

U64 = 1 << 64


# --- helpers ---------------------------------------------------------------------------


def boot(
    size: str = "8MiB",
    *,
    cpus: int | None = None,
    sockets: int | None = None,
    cores: int | None = None,
    threads: int | None = None,
) -> Machine:
    """A machine stopped after vm_page_startup (boot stage 'early')."""
    config = MachineConfig.from_size(
        size, cpus=cpus, sockets=sockets, cores=cores, threads=threads, boot_stage="early"
    )
    return Machine.boot(config)


def emptied(mask: int | None = None) -> tuple[Machine, dict[int, list[int]]]:
    """A tiny 1-CPU machine whose 1024 free queues were all emptied; the pages taken off
    (now on PQ_NONE, unbusied, no object) are returned by colour so tests can put chosen
    pages back on chosen queues.  Boot stage 'early' leaves set_assoc_mask at 15."""
    m = boot("16MiB")
    assert m.pq.set_assoc_mask == 15  # spec §2.4/§18: 15 until vm_page_startup_finish
    pool: dict[int, list[int]] = {}
    for c in range(1024):
        q = PQ_FREE + c
        while m.pq.head[q] >= 0:
            i = m.pq.head[q]
            _rem_queue(m, i)
            pool.setdefault(c, []).append(i)
    assert len(pool) == 1024  # every colour has at least one page to play with
    if mask is not None:
        m.pq.set_assoc_mask = mask
    return m, pool


def put(m: Machine, pool: dict[int, list[int]], base: int, color: int) -> int:
    i = pool[color].pop()
    _add_queue(m, i, base + color, base == PQ_FREE)
    return i


def find(m: Machine, base: int, index: int) -> tuple[int, list[int]]:
    """m._list_find(base, index) with the probe trace on."""
    m.trace = Trace(probes=[])
    try:
        found = _list_find(m, base, index)
        probes = m.trace.probes
    finally:
        m.trace = None
    assert probes is not None
    return found, probes


def find2(m: Machine, index: int) -> tuple[int, list[int]]:
    m.trace = Trace(probes=[])
    try:
        found = _list_find2(m, index)
        probes = m.trace.probes
    finally:
        m.trace = None
    assert probes is not None
    return found, probes


def q(base: int, *color_ranges: Iterable[int]) -> list[int]:
    """Absolute queue numbers of the colours in the ranges, in order."""
    return [base + c for r in color_ranges for c in r]


# --- §6.1 vm_get_pg_color ----------------------------------------------------------------


def test_pg_color_one_cpu_unknown_topology() -> None:
    m = boot()
    # ncpus 1: cpuscale = 1024/1 = 1024; c = 0*1024 + 1500 % 1024 = 476
    assert m.call("vm_get_pg_color", {"cpuid": 0, "pindex": 1500}).result == 476
    # pindex 1023 -> 1023; pindex 1024 -> 0
    assert vm_get_pg_color(m, 0, None, 1023) == 1023
    assert vm_get_pg_color(m, 0, None, 1024) == 0


def test_pg_color_three_cpus_uses_cpuscale_341() -> None:
    m = boot(cpus=3)
    # cpuscale = 1024/3 = 341 (truncating)
    # cpu 2, pindex 400: 2*341 + 400 % 341 = 682 + 59 = 741
    assert m.call("vm_get_pg_color", {"cpuid": 2, "pindex": 400}).result == 741
    # cpu 0, pindex 340: 0 + 340 = 340; pindex 341: 0 + 0 = 0
    assert vm_get_pg_color(m, 0, None, 340) == 340
    assert vm_get_pg_color(m, 0, None, 341) == 0
    # cpu 1, pindex 1000: 341 + 1000 % 341 (= 1000 - 682 = 318) = 659
    assert vm_get_pg_color(m, 1, None, 1000) == 659
    # cpu 2, pindex 340: 682 + 340 = 1022 (the top colour 1023 is never used with 3 CPUs)
    assert vm_get_pg_color(m, 2, None, 340) == 1022


def test_pg_color_adds_object_color() -> None:
    m = boot(cpus=4)
    oid = m.call("vm_object_allocate", {"pg_color": 200}).result
    # cpuscale = 1024/4 = 256; cpu 3, pindex 100, oc 200: 3*256 + 300 % 256 = 768 + 44 = 812
    assert m.call("vm_get_pg_color", {"cpuid": 3, "object": oid, "pindex": 100}).result == 812
    # cpu 1, pindex 56, oc 200: 256 + 256 % 256 = 256
    assert vm_get_pg_color(m, 1, m.vmobj.objects[oid], 56) == 256


def test_pg_color_known_topology_socket_core_thread_layout() -> None:
    m = boot(sockets=3, cores=2, threads=2)
    assert m.ncpus == 12
    # physcale = 1024/3 = 341, grpscale = 341/2 = 170, cpuscale = 170/2 = 85
    # cpuid 11 = (socket*2 + core)*2 + thread -> socket 2, core 1, thread 1
    #   c = 2*341 + 1*170 + 1*85 + 100 % 85 = 682 + 170 + 85 + 15 = 952
    assert m.call("vm_get_pg_color", {"cpuid": 11, "pindex": 100}).result == 952
    # (unknown topology with 12 CPUs would give 11*85 + 15 = 950: the layouts differ)
    # cpuid 5 -> socket 1, core 0, thread 1: 341 + 0 + 85 + 0 % 85 = 426
    assert vm_get_pg_color(m, 5, None, 0) == 426
    # cpuid 2 -> socket 0, core 1, thread 0: 0 + 170 + 0 + 84 % 85 = 254
    assert vm_get_pg_color(m, 2, None, 84) == 254
    # with an object colour 7, cpuid 6 (socket 1, core 1, thread 0), pindex 80:
    #   341 + 170 + 0 + 87 % 85 = 511 + 2 = 513
    oid = m.call("vm_object_allocate", {"pg_color": 7}).result
    assert vm_get_pg_color(m, 6, m.vmobj.objects[oid], 80) == 513


def test_pg_color_known_topology_power_of_two_matches_flat_layout() -> None:
    m = boot(sockets=2, cores=4, threads=2)
    # physcale 512, grpscale 128, cpuscale 64; cpuid 13 -> socket 1, core 2, thread 1
    #   512 + 256 + 64 + 100 % 64 (= 36) = 868
    assert vm_get_pg_color(m, 13, None, 100) == 868


def test_pg_color_negative_object_color_is_an_unsigned_64_bit_sum() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {}).result
    obj = m.vmobj.objects[oid]
    obj.pg_color = -1
    # (0 + -1) as u64 = 2^64 - 1; 2^64 is a multiple of 1024, so % 1024 = 1023
    assert m.call("vm_get_pg_color", {"object": oid, "pindex": 0}).result == 1023
    # pindex 1: 2^64 wraps to 0 -> colour 0
    assert vm_get_pg_color(m, 0, obj, 1) == 0
    # pindex 2^64 - 1 with pg_color 2: (2^64 + 1) mod 2^64 = 1
    obj.pg_color = 2
    assert m.call("vm_get_pg_color", {"object": oid, "pindex": U64 - 1}).result == 1


def test_pg_color_negative_object_color_with_three_cpus() -> None:
    m = boot(cpus=3)
    oid = m.call("vm_object_allocate", {}).result
    obj = m.vmobj.objects[oid]
    obj.pg_color = -1
    # (2^64 - 1) % 341: 2^10 = 1024 = 3*341 + 1, so 2^10 ≡ 1 and 2^64 = 2^60 * 2^4 ≡ 16;
    # hence (2^64 - 1) % 341 = 15.  cpu 2: 2*341 + 15 = 697.
    # (a signed remainder, -1 % 341 = 340, would give 1022 instead)
    assert vm_get_pg_color(m, 2, obj, 0) == 697
    assert vm_get_pg_color(m, 0, obj, 0) == 15
    # pg_color -3, pindex 5: sum 2 -> cpu 1: 341 + 2 = 343
    obj.pg_color = -3
    assert vm_get_pg_color(m, 1, obj, 5) == 343


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def test_quickcolor_successive_objects_are_23_apart() -> None:
    m = boot(cpus=2)
    addr0 = m.cpus[0].thread_addr
    assert m.cpus[0].quick_color == 0
    a = m.call("vm_object_allocate", {}, cpu=0).result
    b = m.call("vm_object_allocate", {}, cpu=0).result
    ca = m.vmobj.objects[a].pg_color
    cb = m.vmobj.objects[b].pg_color
    # vm_quickcolor: (thread address >> 10) + gd_quick_color (0), truncated to a C int
    assert ca == _int32((addr0 >> 10) + 0)
    # then gd_quick_color += 23: the next object on the same CPU is 23 further
    assert _int32(cb - ca) == 23
    assert cb == _int32((addr0 >> 10) + 23)
    assert m.cpus[0].quick_color == 46  # 0 + 23 + 23
    # CPU 1 has its own gd_quick_color (still 0) and its own thread address
    c = m.call("vm_object_allocate", {}, cpu=1).result
    assert m.vmobj.objects[c].pg_color == _int32((m.cpus[1].thread_addr >> 10) + 0)
    assert m.cpus[1].quick_color == 23


def test_quickcolor_wraps_as_a_c_int() -> None:
    m = boot()
    cpu = m.cpus[0]
    cpu.quick_color = 2**31 - 10  # INT_MAX - 9
    a = m.call("vm_object_allocate", {}).result
    assert m.vmobj.objects[a].pg_color == _int32((cpu.thread_addr >> 10) + 2**31 - 10)
    # (2^31 - 10) + 23 = 2^31 + 13 -> as int32: 2^31 + 13 - 2^32 = -2^31 + 13
    assert cpu.quick_color == -(2**31) + 13
    b = m.call("vm_object_allocate", {}).result
    assert _int32(m.vmobj.objects[b].pg_color - m.vmobj.objects[a].pg_color) == 23


def test_explicit_pg_color_is_honoured() -> None:
    m = boot()
    oid = m.call("vm_object_allocate", {"pg_color": 1000}).result
    assert m.vmobj.objects[oid].pg_color == 1000
    # and it is the oc of vm_get_pg_color: (30 + 1000) % 1024 = 6
    assert m.call("vm_get_pg_color", {"object": oid, "pindex": 30}).result == 6


# --- §6.2/6.3 _vm_page_list_find / _vm_page_list_find_wide -------------------------------


def test_exact_queue_hit_returns_head_and_resets_lastq() -> None:
    m, pool = emptied()
    first = put(m, pool, PQ_FREE, 5)
    second = put(m, pool, PQ_FREE, 5)  # PQ_FREE inserts at the head
    m.pq.lastq[PQ_FREE + 5] = 77
    found, probes = find(m, PQ_FREE, 5)
    assert found == second and found != first
    assert probes == [PQ_FREE + 5]  # only the exact queue: 1 + 5 = 6
    assert m.pq.lastq[PQ_FREE + 5] == -1  # reset by the exact hit
    # _vm_page_list_find leaves the page on its queue
    assert m.pg.queue[found] == PQ_FREE + 5
    # the index is masked with 1023 first: 1029 & 1023 = 5
    assert find(m, PQ_FREE, 1029)[0] == second


def test_failing_search_from_color_0_probes_exact_then_every_color_ascending() -> None:
    m, _ = emptied()
    found, probes = find(m, PQ_FREE, 0)
    assert found == -1
    # exact queue 0, then 0..15, 16..31, 32..63, ... 512..1023: from colour 0 each new
    # level's buddy block lies right above the one searched, so the wide order is 0..1023
    assert probes == [PQ_FREE + 0] + q(PQ_FREE, range(1024))
    assert len(probes) == 1025


def test_failing_search_from_color_5_wraps_inside_the_first_block() -> None:
    m, _ = emptied()
    found, probes = find(m, PQ_FREE, 5)
    assert found == -1
    # level 16: block 0..15 from 5 with wrap: 5..15, 0..4
    # level 32: block 0..31, skip 0..15 -> 16..31; level 64: 32..63; ... level 1024: 512..1023
    expected = [PQ_FREE + 5] + q(
        PQ_FREE,
        range(5, 16),
        range(0, 5),
        range(16, 32),
        range(32, 64),
        range(64, 128),
        range(128, 256),
        range(256, 512),
        range(512, 1024),
    )
    assert probes == expected


def test_failing_search_from_color_21_visits_the_lower_buddy() -> None:
    m, _ = emptied()
    _, probes = find(m, PQ_FREE, 21)
    # level 16: block 16..31 from 21: 21..31, 16..20
    # level 32: block 0..31 minus 16..31 -> 0..15; then 32..63, 64..127, ...
    expected = [PQ_FREE + 21] + q(
        PQ_FREE,
        range(21, 32),
        range(16, 21),
        range(0, 16),
        range(32, 64),
        range(64, 128),
        range(128, 256),
        range(256, 512),
        range(512, 1024),
    )
    assert probes == expected


def test_failing_search_from_color_1000_goes_downward() -> None:
    m, _ = emptied()
    _, probes = find(m, PQ_FREE, 1000)
    # level 16: block 992..1007: 1000..1007, 992..999
    # level 32: block 992..1023 -> 1008..1023; level 64: block 960..1023 -> 960..991;
    # level 128: 896..959; level 256: 768..895; level 512: 512..767; level 1024: 0..511
    expected = [PQ_FREE + 1000] + q(
        PQ_FREE,
        range(1000, 1008),
        range(992, 1000),
        range(1008, 1024),
        range(960, 992),
        range(896, 960),
        range(768, 896),
        range(512, 768),
        range(0, 512),
    )
    assert probes == expected


@pytest.mark.parametrize("mask", [15, 63, 255, 1023])
@pytest.mark.parametrize("start", [0, 5, 21, 511, 512, 1000, 1023])
def test_failing_search_probes_each_color_once_plus_the_exact_queue(mask: int, start: int) -> None:
    m, _ = emptied(mask)
    found, probes = find(m, PQ_FREE, start)
    assert found == -1
    # 1 exact probe + 1024 wide probes, every colour exactly once in the wide part
    assert len(probes) == 1 + 1024
    assert probes[0] == PQ_FREE + start
    assert sorted(probes[1:]) == q(PQ_FREE, range(1024))
    # the wide search begins at the start colour
    assert probes[1] == PQ_FREE + start


def test_mask_1023_is_a_single_level_from_the_start_color() -> None:
    m, _ = emptied(1023)
    _, probes = find(m, PQ_FREE, 5)
    # pqmask = 511 -> (511 << 1) | 1 = 1023: one block of 1024 from 5 with wrap
    assert probes == [PQ_FREE + 5] + q(PQ_FREE, range(5, 1024), range(0, 5))


def test_mask_63_first_level_is_64_colors() -> None:
    m, _ = emptied(63)
    _, probes = find(m, PQ_FREE, 70)
    # level 64: block 64..127 from 70: 70..127, 64..69; level 128: 0..63; then 128..255 ...
    expected = [PQ_FREE + 70] + q(
        PQ_FREE,
        range(70, 128),
        range(64, 70),
        range(0, 64),
        range(128, 256),
        range(256, 512),
        range(512, 1024),
    )
    assert probes == expected


def test_wide_search_returns_first_non_empty_queue_in_probe_order() -> None:
    m, pool = emptied()
    at3 = put(m, pool, PQ_FREE, 3)
    put(m, pool, PQ_FREE, 40)
    put(m, pool, PQ_FREE, 20)
    found, probes = find(m, PQ_FREE, 5)
    # from 5: 5..15 (11 probes), then 0, 1, 2, 3 -> colour 3 is the 15th wide probe
    assert found == at3
    assert probes == [PQ_FREE + 5] + q(PQ_FREE, range(5, 16), range(0, 4))
    # count when found = 14 (>= 8): lastq of the *starting* queue (colour 5) = 3
    assert m.pq.lastq[PQ_FREE + 5] == 3
    assert m.pq.lastq[PQ_FREE + 3] == -1
    check_invariants(m)


def test_lastq_set_only_from_count_8() -> None:
    m, pool = emptied()
    at7 = put(m, pool, PQ_FREE, 7)
    found, _ = find(m, PQ_FREE, 0)
    # from 0 the wide probe of colour k has count k: colour 7 -> count 7 < 8
    assert found == at7
    assert m.pq.lastq[PQ_FREE + 0] == -1
    _rem_queue(m, at7)
    at8 = put(m, pool, PQ_FREE, 8)
    found, _ = find(m, PQ_FREE, 0)
    # colour 8 -> count 8 >= 8: lastq = 8
    assert found == at8
    assert m.pq.lastq[PQ_FREE + 0] == 8


def test_count_quirk_jump_iterations_count_at_the_8_boundary() -> None:
    """With an (artificial) set_assoc_mask of 1 the levels are 2, 4, 8, ... colours, so the
    extra 'jump' count of a non-aligned start lands right at the count-8 boundary."""
    # From colour 4 (aligned to the 4-block): level 2: 4, 5 (counts 0, 1); level 4:
    # skip 4..5 -> 6, 7 (counts 2, 3), budget exactly used; level 8: skip 4..7 -> 0, 1, 2, 3
    # (counts 4, 5, 6, 7).  Colour 3 is the 8th wide probe with count 7: lastq untouched.
    m, pool = emptied(1)
    target = put(m, pool, PQ_FREE, 3)
    found, probes = find(m, PQ_FREE, 4)
    assert found == target
    assert probes == [PQ_FREE + 4] + q(PQ_FREE, [4, 5, 6, 7, 0, 1, 2, 3])
    assert m.pq.lastq[PQ_FREE + 4] == -1

    # From colour 5: level 2: 5, 4 (counts 0, 1); level 4: jump to 6 -> 6, 7 (counts 2, 3),
    # then the wrap re-enters 4..5 with budget 1: jump, budget < 0, count 4 (no probe);
    # level 8: skip 4..7 -> 0, 1, 2, 3 with counts 5, 6, 7, 8.  Colour 3 is again the 8th
    # wide probe but now with count 8: lastq of colour 5 becomes 3.
    m, pool = emptied(1)
    target = put(m, pool, PQ_FREE, 3)
    found, probes = find(m, PQ_FREE, 5)
    assert found == target
    assert probes == [PQ_FREE + 5] + q(PQ_FREE, [5, 4, 6, 7, 0, 1, 2, 3])
    assert m.pq.lastq[PQ_FREE + 5] == 3


def test_count_quirk_one_color_earlier_stays_below_8() -> None:
    # Mask 1 from colour 5: colour 2 is the 7th wide probe with count 7 -> lastq unset
    m, pool = emptied(1)
    target = put(m, pool, PQ_FREE, 2)
    found, _ = find(m, PQ_FREE, 5)
    assert found == target
    assert m.pq.lastq[PQ_FREE + 5] == -1


def test_lastq_replaces_the_start_color_but_exact_queue_is_probed_first() -> None:
    m, _ = emptied()
    m.pq.lastq[PQ_FREE + 5] = 40
    found, probes = find(m, PQ_FREE, 5)
    assert found == -1
    # exact 5 first; then from 40: level 16 block 32..47: 40..47, 32..39; level 32 block
    # 32..63: 48..63; level 64 block 0..63: 0..31; then 64..127, 128..255, 256..511, 512..1023
    expected = [PQ_FREE + 5] + q(
        PQ_FREE,
        range(40, 48),
        range(32, 40),
        range(48, 64),
        range(0, 32),
        range(64, 128),
        range(128, 256),
        range(256, 512),
        range(512, 1024),
    )
    assert probes == expected
    # a failing search leaves lastq alone
    assert m.pq.lastq[PQ_FREE + 5] == 40


def test_lastq_learnt_then_used_then_moved() -> None:
    m, pool = emptied()
    at20 = put(m, pool, PQ_FREE, 20)
    found, _ = find(m, PQ_FREE, 0)
    # from 0 colour 20 is wide probe #20, count 20 >= 8
    assert found == at20
    assert m.pq.lastq[PQ_FREE + 0] == 20
    # vm_page_list_find removes the page it finds
    assert vm_page_list_find(m, PQ_FREE, 0) == at20
    assert m.pg.queue[at20] == PQ_NONE
    at3 = put(m, pool, PQ_FREE, 3)
    found, probes = find(m, PQ_FREE, 0)
    # exact 0; from lastq 20: block 16..31: 20..31, 16..19 (counts 0..15); level 32: 0..15,
    # colour 3 at count 16 + 3 = 19 -> lastq = 3
    assert found == at3
    assert probes == [PQ_FREE + 0] + q(PQ_FREE, range(20, 32), range(16, 20), range(0, 4))
    assert m.pq.lastq[PQ_FREE + 0] == 3


def test_lastq_unchanged_on_success_below_count_8() -> None:
    m, pool = emptied()
    m.pq.lastq[PQ_FREE + 0] = 20
    at22 = put(m, pool, PQ_FREE, 22)
    found, probes = find(m, PQ_FREE, 0)
    # exact 0, then 20, 21, 22: found at count 2
    assert found == at22
    assert probes == q(PQ_FREE, [0, 20, 21, 22])
    assert m.pq.lastq[PQ_FREE + 0] == 20


def test_lastq_reset_only_by_exact_hit() -> None:
    m, pool = emptied()
    m.pq.lastq[PQ_FREE + 0] = 20
    at0 = put(m, pool, PQ_FREE, 0)
    assert find(m, PQ_FREE, 0) == (at0, [PQ_FREE + 0])
    assert m.pq.lastq[PQ_FREE + 0] == -1


def test_lastq_belongs_to_the_starting_queue() -> None:
    m, _ = emptied()
    m.pq.lastq[PQ_FREE + 0] = 40
    _, probes = find(m, PQ_FREE, 1)
    # colour 1 has no lastq: plain search from 1 (block 0..15: 1..15, 0)
    assert probes[:18] == [PQ_FREE + 1] + q(PQ_FREE, range(1, 16), range(0, 1), range(16, 17))


def test_single_type_search_on_the_cache_queues() -> None:
    m, pool = emptied()
    c9 = put(m, pool, PQ_CACHE, 9)
    put(m, pool, PQ_FREE, 1)  # free pages are invisible to a PQ_CACHE search
    found, probes = find(m, PQ_CACHE, 0)
    assert found == c9
    # exact cache 0, then cache 0..9; count 9 -> lastq of PQ_CACHE + 0 = 9
    assert probes == [PQ_CACHE + 0] + q(PQ_CACHE, range(10))
    assert m.pq.lastq[PQ_CACHE + 0] == 9
    assert m.pq.lastq[PQ_FREE + 0] == -1
    check_invariants(m)


# --- §6.4 _vm_page_list_find2 ------------------------------------------------------------


def test_find2_level_order_with_mask_15_from_color_0() -> None:
    m, _ = emptied()
    found, probes = find2(m, 0)
    assert found == -1
    # exact free 0; free16, free32, cache16, free64, cache32, free128, cache64, free256,
    # cache128, free512, cache256, free1024, cache512 (the cache never reaches 1024)
    expected = (
        [PQ_FREE + 0]
        + q(PQ_FREE, range(0, 16))
        + q(PQ_FREE, range(16, 32))
        + q(PQ_CACHE, range(0, 16))
        + q(PQ_FREE, range(32, 64))
        + q(PQ_CACHE, range(16, 32))
        + q(PQ_FREE, range(64, 128))
        + q(PQ_CACHE, range(32, 64))
        + q(PQ_FREE, range(128, 256))
        + q(PQ_CACHE, range(64, 128))
        + q(PQ_FREE, range(256, 512))
        + q(PQ_CACHE, range(128, 256))
        + q(PQ_FREE, range(512, 1024))
        + q(PQ_CACHE, range(256, 512))
    )
    assert probes == expected
    assert len(probes) == 1 + 1024 + 512


def test_find2_level_order_from_color_5() -> None:
    m, _ = emptied()
    _, probes = find2(m, 5)
    expected = (
        [PQ_FREE + 5]
        + q(PQ_FREE, range(5, 16), range(0, 5))
        + q(PQ_FREE, range(16, 32))
        + q(PQ_CACHE, range(5, 16), range(0, 5))
        + q(PQ_FREE, range(32, 64))
        + q(PQ_CACHE, range(16, 32))
    )
    assert probes[: len(expected)] == expected
    assert len(probes) == 1537  # 1 + 1024 + 512
    # the exact cache queue is never probed first
    assert PQ_CACHE + 5 not in probes[:33]


def test_find2_exact_cache_queue_is_not_probed_first() -> None:
    m, pool = emptied()
    put(m, pool, PQ_CACHE, 0)
    f1 = put(m, pool, PQ_FREE, 1)
    found, probes = find2(m, 0)
    # exact free 0 (empty), then free16 from 0: 0, 1 -> the free page wins
    assert found == f1
    assert probes == q(PQ_FREE, [0, 0, 1])


def test_find2_cache16_comes_before_free64() -> None:
    m, pool = emptied()
    put(m, pool, PQ_FREE, 40)
    c3 = put(m, pool, PQ_CACHE, 3)
    found, probes = find2(m, 0)
    # free16 (0..15), free32 (16..31), then cache16 hits colour 3 before free64 reaches 40
    assert found == c3
    assert probes == [PQ_FREE] + q(PQ_FREE, range(32)) + q(PQ_CACHE, range(4))
    # count2 = 3 < 8 and no free success: both lastq stay -1
    assert m.pq.lastq[PQ_FREE + 0] == -1
    assert m.pq.lastq[PQ_CACHE + 0] == -1


def test_find2_free32_comes_before_cache16() -> None:
    m, pool = emptied()
    f20 = put(m, pool, PQ_FREE, 20)
    put(m, pool, PQ_CACHE, 3)
    found, _ = find2(m, 0)
    assert found == f20
    # free count1 = 20 >= 8: lastq of PQ_FREE + 0 = 20
    assert m.pq.lastq[PQ_FREE + 0] == 20
    assert m.pq.lastq[PQ_CACHE + 0] == -1


def test_find2_cache_success_from_count_8_sets_cache_lastq() -> None:
    m, pool = emptied()
    c12 = put(m, pool, PQ_CACHE, 12)
    found, _ = find2(m, 0)
    assert found == c12
    # cache side from 0: colour 12 has count2 12 >= 8 -> PQ_CACHE + 0's lastq = 12
    assert m.pq.lastq[PQ_CACHE + 0] == 12
    assert m.pq.lastq[PQ_FREE + 0] == -1


def test_find2_cache_never_searched_past_512_colors() -> None:
    m, pool = emptied()
    put(m, pool, PQ_CACHE, 600)
    found, probes = find2(m, 0)
    # from 0 the cache side covers 0..511 at most; colour 600 is never probed
    assert found == -1
    assert PQ_CACHE + 600 not in probes
    assert sorted(p for p in probes if p >= PQ_CACHE) == q(PQ_CACHE, range(512))


def test_find2_with_mask_1023_never_searches_the_cache() -> None:
    m, pool = emptied(1023)
    put(m, pool, PQ_CACHE, 1)
    put(m, pool, PQ_CACHE, 0)
    found, probes = find2(m, 0)
    assert found == -1
    # exact free 0, then the one free level of 1024 colours; pqmask1 = 1023 ends the loop
    # before the cache side ever starts (1023 >= (1023 << 1) | 1 is false)
    assert probes == [PQ_FREE] + q(PQ_FREE, range(1024))


def test_find2_exact_free_hit_resets_both_lastq() -> None:
    m, pool = emptied()
    m.pq.lastq[PQ_FREE + 5] = 99
    m.pq.lastq[PQ_CACHE + 5] = 77
    f5 = put(m, pool, PQ_FREE, 5)
    assert find2(m, 5) == (f5, [PQ_FREE + 5])
    assert m.pq.lastq[PQ_FREE + 5] == -1
    assert m.pq.lastq[PQ_CACHE + 5] == -1


def test_find2_both_sides_start_from_free_lastq() -> None:
    m, pool = emptied()
    m.pq.lastq[PQ_FREE + 0] = 40
    m.pq.lastq[PQ_CACHE + 0] = 700  # never used as a start
    c32 = put(m, pool, PQ_CACHE, 32)
    found, probes = find2(m, 0)
    # free16 from 40: 40..47, 32..39; free32: 48..63; cache16 from 40: 40..47, 32
    assert found == c32
    assert probes == (
        [PQ_FREE + 0]
        + q(PQ_FREE, range(40, 48), range(32, 40), range(48, 64))
        + q(PQ_CACHE, range(40, 48), range(32, 33))
    )
    # cache count2 = 8 (40..47 are counts 0..7): lastq of PQ_CACHE + 0 = 32
    assert m.pq.lastq[PQ_CACHE + 0] == 32
    assert m.pq.lastq[PQ_FREE + 0] == 40


def test_find2_cache_success_below_count_8_keeps_cache_lastq() -> None:
    m, pool = emptied()
    m.pq.lastq[PQ_FREE + 0] = 40
    m.pq.lastq[PQ_CACHE + 0] = 700
    c45 = put(m, pool, PQ_CACHE, 45)
    found, _ = find2(m, 0)
    # cache side from 40: 45 at count2 5 < 8
    assert found == c45
    assert m.pq.lastq[PQ_CACHE + 0] == 700


def test_find2_free_success_sets_free_lastq_from_its_start() -> None:
    m, pool = emptied()
    m.pq.lastq[PQ_FREE + 0] = 40
    f50 = put(m, pool, PQ_FREE, 50)
    found, _ = find2(m, 0)
    # free16 40..47, 32..39 (counts 0..15); free32 48.. -> 50 at count 18 -> lastq 50
    assert found == f50
    assert m.pq.lastq[PQ_FREE + 0] == 50


def test_vm_page_list_find_removes_the_page_and_counts_it_out() -> None:
    m, pool = emptied()
    p = put(m, pool, PQ_FREE, 9)
    free_before = m.gd.v_free_count
    assert vm_page_list_find(m, PQ_FREE, 9) == p
    assert m.pg.queue[p] == PQ_NONE
    assert m.pq.lcnt[PQ_FREE + 9] == 0
    assert m.gd.v_free_count == free_before - 1
    assert vm_page_list_find(m, PQ_FREE, 9) == -1
    check_invariants(m)

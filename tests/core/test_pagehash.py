"""Tests for app.core.pagehash: the page hash (spec §11.3), the lookup variants (§11.2) and
``vm_page_rename`` (§11.4).

Machine: ``boot8()`` = phys_avail [0x200000, 0xA00000), boot finished (see
tests/core/test_pageops.py for its layout): first_page = 512, vm_page_array_size = 2048,
so the hash has size 4096 (4096 is not < 2048 / 16 = 128: no doubling) and 4096 + 4
elements.  ``ticks`` starts at 0.  Objects are numbered 1, 2, ... in creation order.

Hash index of (object 1, pindex p), worked by hand from §11.3 (only the CRC-32C itself comes
from the library):
    crc32c(01 00 00 00 00 00 00 00) = 0xC514CFAD
    h = 0xC514CFAD << 2                    = 0x3_1453_3EB4
    h >> 21 = (0x314533EB4 >> 20) >> 1     = 0x3145 >> 1 = 0x18A2
    h ^= 0x18A2: low 12 bits 0xEB4 ^ 0x8A2 = 0x616           (E^8=6, B^A=1, 4^2=6)
    + 4p, & 4095  ->  SET1(p) = (0x616 + 4p) & 0xFFF = (1558 + 4p) % 4096
Object 2: crc32c(02 00 .. 00) = 0x1E5048C4; << 2 = 0x7941_2310; >> 21 = 0x794 >> 1 = 0x3CA;
    low 12 bits 0x310 ^ 0x3CA = 0x0DA = 218.
"""

from __future__ import annotations

from typing import Any

import crc32c
import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPEDMULTI,
    PG_REFERENCED,
    PQ_CACHE,
    PQ_INACTIVE,
)
from app.core.errors import InvalidArgument, InvariantError, KernelPanic
from app.core.invariants import check_invariants, state_digest
from app.core.kern_synch import Sleep
from app.core.machine import Machine
from app.core.sysctl import sysctl_set
from app.core.vm_page.busy import vm_page_sbusy_drop, vm_page_sbusy_hold, vm_page_wakeup
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.hash import (
    _page_hash_alloc,
    page_hash_index,
    page_hash_view,
    vm_page_hash_enter,
)
from app.core.vm_page.lookup import vm_page_lookup_busy_wait
from app.core.vm_page.queues import _add_queue

FIRST_PAGE = 512
SIZE = 4096  # page hash size of boot8()
SET1_P0 = 0x616  # = 1558, see the module docstring
SET2_P0 = 0x0DA  # = 218


def boot8(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),), **kw))


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def new_object(m: Machine, obj_type: str = "OBJT_DEFAULT") -> int:
    return int(m.call("vm_object_allocate", {"type": obj_type}).result)


def page_in(m: Machine, oid: int, pindex: int, *, multi: bool = True, busy: bool = False) -> int:
    """A page of object ``oid`` at ``pindex`` (pfn); PG_MAPPEDMULTI set if ``multi`` (the
    pmap would set it; here it is set by hand); unbusied unless ``busy``."""
    r = m.call("vm_page_alloc", {"object": oid, "pindex": pindex})
    assert r.result is not None
    pfn = int(r.result)
    if multi:
        m.pg.flags[ix(pfn)] |= PG_MAPPEDMULTI
    if not busy:
        m.call("vm_page_wakeup", {"m": pfn})
    return pfn


def entries(m: Machine, object_id: int | None = None) -> list[tuple[int, int, int, int, int]]:
    return [
        (e["slot"], e["pfn"], e["object"], e["pindex"], e["ticks"])
        for e in page_hash_view(m, object_id)["entries"]
    ]


def lookup(m: Machine, oid: int, pindex: int) -> Any:
    return m.call("vm_page_lookup", {"object": oid, "pindex": pindex}).result


def fill(m: Machine, slot: int, i: int, oid: int, pindex: int, ticks: int) -> None:
    """Write one hash element directly (to build a set with chosen ages)."""
    assert _page_hash_alloc(m)
    assert m.hash.m is not None and m.hash.obj is not None
    assert m.hash.pindex is not None and m.hash.ticks is not None
    m.hash.m[slot] = i + 1
    m.hash.obj[slot] = oid
    m.hash.pindex[slot] = pindex
    m.hash.ticks[slot] = ticks


# =========================================================== the index (§11.3)


def test_crc32c_check_value() -> None:
    # spec §11.3: reflected 0x82F63B78, init/xorout 0xFFFFFFFF; check value of "123456789"
    assert crc32c.crc32c(b"123456789") == 0xE3069283


def test_index_arithmetic_worked_by_hand() -> None:
    assert crc32c.crc32c((1).to_bytes(8, "little")) == 0xC514CFAD  # input of the docstring
    assert page_hash_index(1, 0, SIZE) == SET1_P0  # 0x616
    assert page_hash_index(1, 5, SIZE) == 1558 + 20  # + 4 * 5
    # 1558 + 4 * 634 = 4094: the set is 4094..4097, reaching into the 4 spare elements
    assert page_hash_index(1, 634, SIZE) == 4094
    assert page_hash_index(1, 635, SIZE) == 2  # (1558 + 2540) & 4095 = 4098 - 4096
    # the low two bits survive (0x616 & 3 = 2): sets are not aligned to 4
    assert page_hash_index(1, 0, SIZE) & 3 == 2
    assert page_hash_index(2, 0, SIZE) == SET2_P0  # 0x0DA
    # a bigger table keeps more bits: mask 0x3FFF -> 0x3EB4 ^ 0x18A2 = 0x2616
    assert page_hash_index(1, 0, 16384) == 0x2616
    # pindex * 4 wraps modulo 2^64: pindex 2^62 adds 2^64 = 0
    assert page_hash_index(1, 1 << 62, SIZE) == SET1_P0


# =========================================================== vm_page_hash_enter (§11.3)


def test_lookup_enters_a_mappedmulti_page_into_slot_0_of_its_set() -> None:
    m = boot8()
    oid = new_object(m)  # object 1
    pfn = page_in(m, oid, 0)
    assert entries(m) == []
    r = m.call("vm_page_lookup", {"object": oid, "pindex": 0})
    assert r.result == pfn
    # all 4 elements empty: every age = ticks - 0 = 0, none exceeds slot 0's -> slot 0
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 0)]
    ev = {"event": "page_hash_enter", "pfn": pfn, "slot": SET1_P0, "replaced": None}
    assert ev in r.record["events"]
    check_invariants(m)


def test_enter_refreshes_ticks_in_place_and_never_duplicates() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    other = page_in(m, oid, 1, multi=False)
    m.sched.ticks = 50
    # the page sits in slot 2 of its set; slots 0, 1, 3 hold older elements of another
    # page, which a second insertion would evict (slot 3: age 50 - 1 = 49 > slot 0's 40)
    fill(m, SET1_P0 + 0, ix(other), oid, 100, 10)
    fill(m, SET1_P0 + 1, ix(other), oid, 101, 5)
    fill(m, SET1_P0 + 2, ix(pfn), oid, 0, 20)
    fill(m, SET1_P0 + 3, ix(other), oid, 103, 1)
    assert lookup(m, oid, 0) == pfn
    got = {e[0]: e for e in entries(m)}
    assert got[SET1_P0 + 2] == (SET1_P0 + 2, pfn, 1, 0, 50)  # ticks 20 -> 50
    assert got[SET1_P0 + 3][3] == 103  # nothing evicted
    assert sum(1 for e in got.values() if e[1] == pfn) == 1
    # same ticks again: nothing to change
    before = state_digest(m)
    lookup(m, oid, 0)
    assert state_digest(m) == before
    check_invariants(m)


def _victim(m: Machine, ticks: list[int | None], now: int) -> int:
    """Enter a fresh page into a set whose 4 elements carry ``ticks`` (None = empty
    element) at time ``now``; return which slot of the set (0..3) it replaced."""
    oid = 1
    filler = page_in(m, oid, 500, multi=False)
    for k, t in enumerate(ticks):
        if t is not None:
            fill(m, SET1_P0 + k, ix(filler), oid, 900 + k, t)
    m.sched.ticks = now
    pfn = page_in(m, oid, 0)
    assert lookup(m, oid, 0) == pfn
    (slot,) = [e[0] for e in entries(m) if e[1] == pfn]
    check_invariants(m)
    return slot - SET1_P0


@pytest.mark.parametrize(
    ("ticks", "now", "victim", "why"),
    [
        # ages [5, 9, 3, 7]: best_age stays 5; slot 1 (9 > 5) then slot 3 (7 > 5) -> slot 3,
        # although slot 1 is the oldest
        ([95, 91, 97, 93], 100, 3, "last older than slot 0"),
        # ages [9, 5, 3, 7]: nothing exceeds slot 0's 9 -> slot 0
        ([91, 95, 97, 93], 100, 0, "all younger than slot 0"),
        # ages [5, 5, 5, 5]: the test is strict (best_age < age) -> slot 0
        ([95, 95, 95, 95], 100, 0, "equal ages"),
        # slots 1 and 3 empty (ticks 0 -> age 100), slots 0 and 2 age 0 -> slot 3, not
        # the first empty one
        ([100, None, 100, None], 100, 3, "empty slots"),
        # ages [5, -2, -1, 2]: -2 < -1 selects slot 1; -1 does not; 2 < 5 -> slot 1
        ([95, 102, 101, 98], 100, 1, "age < -1"),
    ],
)
def test_victim_choice(ticks: list[int | None], now: int, victim: int, why: str) -> None:
    m = boot8()
    new_object(m)  # object 1
    assert _victim(m, ticks, now) == victim, why


def test_victim_ages_wrap_as_c_int() -> None:
    m = boot8()
    new_object(m)
    # now = 2^31 + 10 -> C int 2^31 + 10 - 2^32 = -2147483638
    now = (1 << 31) + 10
    now32 = -2147483638
    # elements' ticks are C ints too; ages are wrapping 32-bit differences:
    #   slot 0: 2147483643 (2^31 - 5, before the wrap): now32 - 2147483643 = -4294967281
    #           -> + 2^32 = 15
    #   slot 1: -2147483648: now32 + 2147483648 = 10
    #   slot 2: 2147483638: -4294967276 + 2^32 = 20
    #   slot 3: 2147483646: -4294967284 + 2^32 = 12
    # best_age = 15; only slot 2 (20) exceeds it -> slot 2.  (Unwrapped, slot 0's age would
    # be hugely negative, every later slot would replace it and slot 3 would win.)
    ticks: list[int | None] = [2147483643, -2147483648, 2147483638, 2147483646]
    assert _victim(m, ticks, now) == 2
    (e,) = [e for e in entries(m) if e[0] == SET1_P0 + 2]
    assert e[4] == now32  # ticks stored as the C int


def test_a_set_reaches_into_the_spare_elements() -> None:
    m = boot8()
    oid = new_object(m)  # object 1
    filler = page_in(m, oid, 500, multi=False)
    # SET1(634) = (1558 + 4 * 634) & 4095 = 4094: elements 4094..4097 of the 4100
    m.sched.ticks = 100
    fill(m, 4094, ix(filler), oid, 900, 100)  # age 0
    fill(m, 4095, ix(filler), oid, 901, 100)  # age 0
    pfn = page_in(m, oid, 634)
    lookup(m, oid, 634)
    # 4096 and 4097 are empty (age 100 > 0): the last of them, 4097, is the victim
    assert [e for e in entries(m) if e[1] == pfn] == [(4097, pfn, 1, 634, 100)]
    check_invariants(m)


def test_mappedmulti_gate() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0, multi=False)
    assert lookup(m, oid, 0) == pfn
    assert entries(m) == []  # no PG_MAPPEDMULTI: not entered
    m.pg.flags[ix(pfn)] |= PG_MAPPEDMULTI
    lookup(m, oid, 0)
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 0)]


def test_two_pmap_mappings_make_a_page_hashable() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0, multi=False)
    m.call("pmap_enter", {"m": pfn, "pmap": 1})
    lookup(m, oid, 0)
    assert entries(m) == []  # one mapping: no PG_MAPPEDMULTI yet
    m.call("pmap_enter", {"m": pfn, "pmap": 2})  # the second mapping sets it
    assert m.pg.flags[ix(pfn)] & PG_MAPPEDMULTI
    lookup(m, oid, 0)
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 0)]
    check_invariants(m)


def test_vnode_only_gate() -> None:
    m = boot8()
    anon = new_object(m, "OBJT_DEFAULT")  # object 1
    vnode = new_object(m, "OBJT_VNODE")  # object 2
    a = page_in(m, anon, 0)
    v = page_in(m, vnode, 0)
    sysctl_set(m, "vm.page_hash_vnode_only", 1)
    lookup(m, anon, 0)
    lookup(m, vnode, 0)
    assert entries(m) == [(SET2_P0, v, 2, 0, 0)]  # only the vnode page
    sysctl_set(m, "vm.page_hash_vnode_only", 0)
    lookup(m, anon, 0)
    assert entries(m, 1) == [(SET1_P0, a, 1, 0, 0)]
    check_invariants(m)


def test_objectless_page_is_not_entered() -> None:
    m = boot8()
    r = m.call("vm_page_alloc", {"pindex": 0})
    i = ix(int(r.result))
    m.pg.flags[i] |= PG_MAPPEDMULTI
    vm_page_hash_enter(m, i)
    assert entries(m) == []
    assert not page_hash_view(m)["allocated"]


def test_no_hash_before_startup_finish() -> None:
    m = boot8(boot_stage="early")
    assert m.hash.size == 0  # NULL hash
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    assert lookup(m, oid, 0) == pfn
    view = page_hash_view(m)
    assert (view["allocated"], view["elements"], view["entries"]) == (False, 0, [])
    assert m.call("vm_page_hash_get", {"object": oid, "pindex": 0}).result is None
    assert m.pg.busy[ix(pfn)] == 0


# =========================================================== vm_page_hash_get (§11.3)


def test_hash_get_hit_soft_busies_and_refreshes_ticks() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    lookup(m, oid, 0)  # entered at ticks 0
    m.sched.ticks = 7
    r = m.call("vm_page_hash_get", {"object": oid, "pindex": 0})
    assert r.result == pfn
    assert m.pg.busy[ix(pfn)] == 1  # soft-busy count 1, not hard-busied
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 7)]
    check_invariants(m)


def test_hash_get_misses() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    # resident but never entered: a miss (the caller falls back to the RB lookup)
    assert m.call("vm_page_hash_get", {"object": oid, "pindex": 0}).result is None
    lookup(m, oid, 0)
    # another pindex / another object probe their own sets: miss
    assert m.call("vm_page_hash_get", {"object": oid, "pindex": 1}).result is None
    oid2 = new_object(m)
    assert m.call("vm_page_hash_get", {"object": oid2, "pindex": 0}).result is None
    # hard-busied: sbusy_try fails -> miss, busy word untouched
    assert m.call("vm_page_busy_try", {"m": pfn, "also_m_busy": False}).result is False
    assert m.call("vm_page_hash_get", {"object": oid, "pindex": 0}).result is None
    assert m.pg.busy[ix(pfn)] == PBUSY_LOCKED
    check_invariants(m)


def test_hash_get_stale_element_misses() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0, busy=True)
    lookup(m, oid, 0)  # entered (lookup does not need the busy)
    m.call("vm_page_free", {"m": pfn})  # leaves the object; the element stays
    assert m.call("vm_page_hash_get", {"object": oid, "pindex": 0}).result is None
    (e,) = page_hash_view(m)["entries"]
    assert (e["slot"], e["pfn"], e["stale"]) == (SET1_P0, pfn, True)
    check_invariants(m)  # stale elements are legal


# =========================================================== lookups (§11.2)


def test_lookup_busy_wait_sleeps_until_the_owner_wakes_it() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0, busy=True)  # hard-busied by its allocator
    i = ix(pfn)
    gen = vm_page_lookup_busy_wait(m, m.vmobj.objects[oid], 0, False, "pglkbw")
    s = next(gen)
    assert s == Sleep(f"page:{pfn}", 0, "pglkbw")
    assert m.pg.busy[i] == PBUSY_LOCKED | PBUSY_WANTED
    assert m.pg.flags[i] & PG_REFERENCED
    assert entries(m) == []  # nothing entered while waiting
    vm_page_wakeup(m, i)  # the owner lets go: LOCKED and WANTED cleared
    assert m.pg.busy[i] == 0
    with pytest.raises(StopIteration) as done:
        gen.send(False)
    assert done.value.value == i
    assert m.pg.busy[i] == PBUSY_LOCKED  # now ours
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 0)]  # entered on success
    check_invariants(m)


def test_lookup_busy_wait_returns_null_if_the_page_vanished() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0, busy=True)
    gen = vm_page_lookup_busy_wait(m, m.vmobj.objects[oid], 0, False, "pglkbw")
    assert next(gen).channel == f"page:{pfn}"
    vm_page_free_toq(m, ix(pfn))  # the owner frees it (and wakes us)
    with pytest.raises(StopIteration) as done:
        gen.send(False)
    assert done.value.value == -1  # the redone RB lookup finds nothing
    check_invariants(m)


def test_lookup_busy_wait_also_m_busy_waits_for_soft_busy() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    i = ix(pfn)
    vm_page_sbusy_hold(m, i)  # soft count 1
    gen = vm_page_lookup_busy_wait(m, m.vmobj.objects[oid], 0, True, "pglkbw")
    assert next(gen).channel == f"page:{pfn}"
    assert m.pg.busy[i] == PBUSY_WANTED | 1
    vm_page_sbusy_drop(m, i)  # word becomes exactly WANTED -> cleared, wakeup
    with pytest.raises(StopIteration) as done:
        gen.send(False)
    assert done.value.value == i
    assert m.pg.busy[i] == PBUSY_LOCKED


def test_lookup_busy_wait_absent_page_returns_null_without_sleeping() -> None:
    m = boot8()
    oid = new_object(m)
    gen = vm_page_lookup_busy_wait(m, m.vmobj.objects[oid], 3, True, "pglkbw")
    with pytest.raises(StopIteration) as done:
        next(gen)
    assert done.value.value == -1


def test_lookup_busy_wait_through_the_registry() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0, busy=True)
    r = m.call("vm_page_lookup_busy_wait", {"object": oid, "pindex": 0}, thread=5)
    assert r.blocked is not None and r.blocked["channel"] == f"page:{pfn}"
    r2 = m.call("vm_page_wakeup", {"m": pfn})
    (res,) = r2.record["resumed"]
    assert (res["tid"], res["result"]) == (5, pfn)
    assert m.pg.busy[ix(pfn)] == PBUSY_LOCKED
    check_invariants(m)


def test_lookup_busy_try_pair() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    args = {"object": oid, "pindex": 0, "also_m_busy": True}
    assert m.call("vm_page_lookup_busy_try", args).result == {"page": pfn, "error": False}
    assert m.pg.busy[ix(pfn)] == PBUSY_LOCKED
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 0)]
    assert m.call("vm_page_lookup_busy_try", args).result == {"page": pfn, "error": True}
    absent = {"object": oid, "pindex": 1, "also_m_busy": True}
    assert m.call("vm_page_lookup_busy_try", absent).result == {"page": None, "error": False}
    check_invariants(m)


def _sbusy(m: Machine, oid: int, pindex: int, pgoff: int, pgbytes: int) -> Any:
    args = {"object": oid, "pindex": pindex, "pgoff": pgoff, "pgbytes": pgbytes}
    return m.call("vm_page_lookup_sbusy_try", args).result


def test_lookup_sbusy_try() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    i = ix(pfn)
    pg = m.pg
    assert pg.valid[i] == 0
    assert _sbusy(m, oid, 0, 0, 0) is None  # size 0 = "any chunk valid": none is
    pg.valid[i] = 0x02  # chunk 1 = bytes 512..1023
    assert _sbusy(m, oid, 0, 512, 512) == pfn  # bits(512, 512) = 0x02 <= valid
    assert pg.busy[i] == 1  # soft-busied
    assert entries(m) == [(SET1_P0, pfn, 1, 0, 0)]  # and entered
    assert _sbusy(m, oid, 0, 0, 1024) is None  # bits(0, 1024) = 0x03: chunk 0 invalid
    assert _sbusy(m, oid, 0, 100, 0) == pfn  # size 0: something is valid
    assert pg.busy[i] == 2
    assert _sbusy(m, oid, 1, 0, 0) is None  # absent
    pg.valid[i] = 0xFF
    pg.busy[i] = PBUSY_LOCKED
    assert _sbusy(m, oid, 0, 0, 4096) is None  # hard-busied: sbusy_try fails
    assert pg.busy[i] == PBUSY_LOCKED
    pg.busy[i] = 0
    pg.flags[i] |= PG_FICTITIOUS
    assert _sbusy(m, oid, 0, 0, 4096) is None  # fictitious pages are refused
    assert pg.busy[i] == 0


def test_lookup_sbusy_try_range_assertion_panics_first() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = page_in(m, oid, 0)
    m.pg.valid[ix(pfn)] = 0x01
    before = state_digest(m)
    with pytest.raises(KernelPanic):
        _sbusy(m, oid, 0, 4000, 200)  # 4000 + 200 > 4096: vm_page_bits asserts
    assert state_digest(m) == before
    m.pg.valid[ix(pfn)] = 0xFF  # fully valid: the range is never looked at
    assert _sbusy(m, oid, 0, 4000, 200) == pfn


def test_vm_page_next() -> None:
    m = boot8()
    oid = new_object(m)
    p5, p6, p8 = (page_in(m, oid, p) for p in (5, 6, 8))

    def nxt(pfn: int) -> Any:
        return m.call("vm_page_next", {"m": pfn}).result

    assert nxt(p5) == p6  # 6 = 5 + 1
    assert nxt(p6) is None  # successor is 8, not 7
    assert nxt(p8) is None  # no successor
    loose = int(m.call("vm_page_alloc", {"pindex": 5}).result)
    assert nxt(loose) is None  # no object


# =========================================================== vm_page_rename (§11.4)


def test_rename_moves_deactivates_a_cached_page_and_dirties_it() -> None:
    m = boot8()
    a = new_object(m)  # 1
    b = new_object(m)  # 2
    pfn = page_in(m, a, 3, busy=True)
    i = ix(pfn)
    lookup(m, a, 3)  # entered under (1, 3)
    pc = m.pg.pc[i]
    _add_queue(m, i, PQ_CACHE + pc, False)  # a (clean) cached page
    gen_a, gen_b = m.vmobj.objects[a].generation, m.vmobj.objects[b].generation
    m.call("vm_page_rename", {"m": pfn, "new_object": b, "new_pindex": 9})
    assert (m.pg.obj[i], m.pg.pindex[i]) == (2, 9)
    assert 3 not in m.vmobj.objects[a].pages and m.vmobj.objects[b].pages[9] == i
    assert m.vmobj.objects[a].generation == gen_a + 1  # remove
    assert m.vmobj.objects[b].generation == gen_b + 1  # insert
    assert m.pg.queue[i] == PQ_INACTIVE + pc  # deactivated off PQ_CACHE
    assert m.pg.dirty[i] == 0xFF  # always dirtied
    assert m.pg.busy[i] == PBUSY_LOCKED  # still the caller's
    # the hash element for (1, 3) is now stale: a probe misses
    assert m.call("vm_page_hash_get", {"object": a, "pindex": 3}).result is None
    check_invariants(m)


def test_rename_onto_its_own_slot_is_no_collision() -> None:
    m = boot8()
    a = new_object(m)
    pfn = page_in(m, a, 3, busy=True)
    m.call("vm_page_rename", {"m": pfn, "new_object": a, "new_pindex": 3})
    assert m.vmobj.objects[a].pages[3] == ix(pfn)
    assert m.pg.dirty[ix(pfn)] == 0xFF
    check_invariants(m)


def test_rename_target_exists_panics_before_changing_anything() -> None:
    m = boot8()
    a = new_object(m)
    b = new_object(m)
    pfn = page_in(m, a, 3, busy=True)
    page_in(m, b, 7)
    before = state_digest(m)
    with pytest.raises(KernelPanic, match="target exists"):
        m.call("vm_page_rename", {"m": pfn, "new_object": b, "new_pindex": 7})
    assert state_digest(m) == before
    assert m.vmobj.objects[a].pages[3] == ix(pfn)


def test_rename_needs_the_hard_busy() -> None:
    m = boot8()
    a = new_object(m)
    b = new_object(m)
    pfn = page_in(m, a, 3)
    before = state_digest(m)
    with pytest.raises(KernelPanic):
        m.call("vm_page_rename", {"m": pfn, "new_object": b, "new_pindex": 0})
    assert state_digest(m) == before


# =========================================================== view, invariants, digest


def test_view_filters_by_object() -> None:
    m = boot8()
    a = new_object(m)
    b = new_object(m)
    pa = page_in(m, a, 0)
    pb = page_in(m, b, 0)
    lookup(m, a, 0)
    lookup(m, b, 0)
    view = page_hash_view(m)
    assert (view["size"], view["elements"], view["allocated"]) == (4096, 4100, True)  # 4096 + 4
    assert entries(m) == [(SET2_P0, pb, 2, 0, 0), (SET1_P0, pa, 1, 0, 0)]  # slot order
    assert entries(m, 1) == [(SET1_P0, pa, 1, 0, 0)]


def test_digest_covers_the_hash() -> None:
    m = boot8()
    oid = new_object(m)
    page_in(m, oid, 0)
    before = state_digest(m)
    lookup(m, oid, 0)
    after = state_digest(m)
    assert after != before  # only the new element differs
    m.sched.ticks = 4
    lookup(m, oid, 0)  # refreshes the element's ticks 0 -> 4
    refreshed = state_digest(m)
    m.sched.ticks = 0
    assert state_digest(m) not in (before, after)  # the element still says 4
    assert refreshed != after


def test_invariants_catch_a_broken_element() -> None:
    m = boot8()
    oid = new_object(m)
    page_in(m, oid, 0)
    lookup(m, oid, 0)
    check_invariants(m)
    assert m.hash.m is not None
    m.hash.m[SET1_P0] = 2048 + 1  # page index 2048: outside vm_page_array (0..2047)
    with pytest.raises(InvariantError):
        check_invariants(m)


# =========================================================== an object's kernel address


def _crc32c_bitwise(data: bytes) -> int:
    """CRC-32C as spec §11.3 defines it (reflected 0x82F63B78, init and final xor
    0xFFFFFFFF), bit by bit: an implementation independent of the library's."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_an_explicit_address_is_what_the_hash_crcs() -> None:
    m = boot8()
    # object 1 given address 2: its pages hash where object 2's would (SET2_P0 = 218, the
    # docstring's arithmetic), not to SET1_P0
    oid = int(m.call("vm_object_allocate", {"addr": 2}).result)
    assert oid == 1
    pfn = page_in(m, oid, 0)
    lookup(m, oid, 0)
    assert entries(m) == [(SET2_P0, pfn, 1, 0, 0)]  # the cached object is still id 1
    check_invariants(m)


def test_a_real_kernel_address_hashes_as_the_kernel_would() -> None:
    kaddr = 0xFFFFF8001F2E3C00
    assert _crc32c_bitwise(b"123456789") == 0xE3069283  # the spec's check value
    h = _crc32c_bitwise(kaddr.to_bytes(8, "little")) << 2
    h ^= h >> 21
    expect = (h + 3 * 4) & (SIZE - 1)  # pindex 3
    m = boot8()
    m.call("vm_object_allocate", {})  # object 1, at its default address 1
    oid = int(m.call("vm_object_allocate", {"addr": kaddr}).result)
    pfn = page_in(m, oid, 3)
    lookup(m, oid, 3)
    assert entries(m, oid) == [(expect, pfn, oid, 3, 0)]
    assert m.vmobj.objects[oid].addr == kaddr and m.vmobj.objects[1].addr == 1


def test_an_address_is_refused_if_taken_or_out_of_range() -> None:
    m = boot8()
    m.call("vm_object_allocate", {"addr": 0xFFFFF80000001000})
    before = state_digest(m)
    for bad, text in (
        (0xFFFFF80000001000, "already has address 0xfffff80000001000"),
        (0, "64-bit kernel address"),
        (1 << 64, "64-bit kernel address"),
    ):
        with pytest.raises(InvalidArgument, match=text):
            m.call("vm_object_allocate", {"addr": bad})
    assert state_digest(m) == before and len(m.vmobj.objects) == 1


def test_an_explicit_address_is_part_of_the_digest() -> None:
    a, b = boot8(), boot8()
    a.call("vm_object_allocate", {})
    b.call("vm_object_allocate", {})
    assert a.state_digest() == b.state_digest()  # default address: the id, as before
    c = boot8()
    c.call("vm_object_allocate", {"addr": 0xFFFFF80000002000})
    assert c.state_digest() != a.state_digest()

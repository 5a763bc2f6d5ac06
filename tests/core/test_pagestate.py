"""Tests for app.core.pagestate: spec §8.7 vm_page_cache, §8.8 vm_page_try_to_cache,
§8.9 vm_page_try_to_free, §8.10 vm_page_dontneed, §10.1 quick wiring, §10.2 hold/unhold,
§12 valid/dirty bits, §14 commit and fictitious pages, and the madvise verb.

Machine: ``boot8()`` — phys_avail = [0x200000, 0xA00000), one CPU, boot finished (layout
worked out in tests/core/test_pageops.py: 1983 free pages, pfn 512 .. 2494; v_free_min 73).
Objects are created with ``pg_color = 0``, so with one CPU ``vm_page_alloc(object,
pindex)`` starts at colour ``pindex % 1024`` (spec §6.1) and takes that free queue's head.
Colours (spec §2.3, colour = (pfn ^ pfn >> 10) & 1023 here; pages are pushed at the head in
ascending order, so the higher pfn is the head):

* colour 600: [1625, 600]  (1625 ^ 1 = 1624 -> & 1023 = 600)
* colour 601: [1624, 601]  (1624 ^ 1 = 1625 -> & 1023 = 601)
* colour 602: [1627, 602]  (1627 ^ 1 = 1626 -> & 1023 = 602)
* colour 603: [1626, 603]  (1626 ^ 1 = 1627 -> & 1023 = 603)

so pindex 600 gets pfn 1625 and a second page of colour 600 (pindex 1624: 1624 % 1024 =
600) gets pfn 600.  Queue numbers for colour 600: PQ_FREE 1 + 600 = 601, PQ_INACTIVE
1025 + 600 = 1625, PQ_ACTIVE 2049 + 600 = 2649, PQ_CACHE 3073 + 600 = 3673, PQ_HOLD
4097 + 600 = 4697.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    CNT_ACTIVE,
    CNT_FREE,
    CNT_WIRE,
    PBUSY_LOCKED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_NOSYNC,
    PG_REFERENCED,
    PG_UNQUEUED,
)
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.objects import OBJ_MIGHTBEDIRTY, OBJ_WRITEABLE
from app.core.pmap import pmap_page_is_mapped, zeroed_chunks, zeroed_ranges
from app.core.registry import REGISTRY
from app.core.vm_page.pagestate import vm_page_dontneed
from app.core.vm_page.queues import queue_pages, vm_page_activate, vm_page_deactivate
from app.lab.machine_views import fake_page_info, vmstats_view

FIRST_PAGE = 512
P600, P600B, P601, P602, P603 = 1625, 600, 1624, 1627, 1626
Q_FREE, Q_INACT, Q_ACT, Q_CACHE, Q_HOLD = 601, 1625, 2649, 3673, 4697  # colour 600
OBJ_DIRTY_FLAGS = OBJ_WRITEABLE | OBJ_MIGHTBEDIRTY  # 0x80 | 0x100 = 0x180


def boot8() -> Machine:
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))
    m.select_cpu(0)
    return m


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def new_object(m: Machine, otype: str = "OBJT_DEFAULT") -> int:
    return int(m.call("vm_object_allocate", {"type": otype, "size": 4096, "pg_color": 0}).result)


def alloc(m: Machine, obj: int | None, pindex: int) -> int:
    """A hard-busied page (on no queue), valid 0, dirty 0."""
    r = m.call("vm_page_alloc", {"object": obj, "pindex": pindex})
    assert r.result is not None
    return int(r.result)


def busied_active(m: Machine) -> tuple[int, int]:
    """(object, pfn 1625): object page at pindex 600 on PQ_ACTIVE + 600, hard-busied."""
    obj = new_object(m)
    p = alloc(m, obj, 600)
    assert p == P600
    m.call("vm_page_activate", {"m": p})
    return obj, p


def queue_of(m: Machine, pfn: int) -> int:
    return int(m.pg.queue[ix(pfn)])


def locked(m: Machine, pfn: int) -> bool:
    return bool(m.pg.busy[ix(pfn)] & PBUSY_LOCKED)


def refused(m: Machine, exc: type[Exception], fn: str, args: dict[str, Any], text: str) -> None:
    """The call raises ``exc`` mentioning ``text`` and leaves the machine unchanged."""
    before = state_digest(m)
    with pytest.raises(exc) as info:
        m.call(fn, args)
    assert text in str(info.value)
    assert state_digest(m) == before
    check_invariants(m)


# ======================================================================= registry


def test_every_page_state_function_is_registered_with_its_arguments() -> None:
    m3 = ["m", "base", "size"]
    want = {
        "vm_page_cache": ["m"],
        "vm_page_try_to_cache": ["m"],
        "vm_page_try_to_free": ["m"],
        "vm_page_dontneed": ["m"],
        "vm_page_wire_quick": ["m"],
        "vm_page_unwire_quick": ["m"],
        "vm_page_hold": ["m"],
        "vm_page_unhold": ["m"],
        "vm_page_bits": ["base", "size"],
        "vm_page_set_valid": m3,
        "vm_page_set_validclean": m3,
        "vm_page_set_validdirty": m3,
        "vm_page_clear_dirty": m3,
        "vm_page_clear_dirty_end_nonincl": m3,
        "vm_page_clear_dirty_beg_nonincl": m3,
        "vm_page_dirty": ["m"],
        "vm_page_undirty": ["m"],
        "vm_page_test_dirty": ["m"],
        "vm_page_set_invalid": m3,
        "vm_page_zero_invalid": ["m", "setvalid"],
        "vm_page_is_valid": m3,
        "vm_page_copy": ["src", "dst"],
        "vm_page_zero_fill": ["m"],
        "vm_page_need_commit": ["m"],
        "vm_page_clear_commit": ["m"],
        "vm_page_initfake": ["slot", "paddr", "memattr"],
        "madvise": ["object", "pindex", "count", "advice"],
    }
    for name, params in want.items():
        spec = REGISTRY[name]
        assert [p.name for p in spec.params] == params, name
        assert callable(spec.impl), name
    assert not REGISTRY["vm_page_bits"].mutates
    assert not REGISTRY["vm_page_is_valid"].mutates
    assert REGISTRY["madvise"].models == "vm_object_madvise"


# ======================================================================= §12.1 vm_page_bits

BITS_TABLE = [  # spec §12.1: (base, size, result), first/last chunk = base >> 9, (base+size-1) >> 9
    (0, 4096, 0xFF),  # chunks 0..7: (2 << 7) - (1 << 0) = 256 - 1
    (512, 512, 0x02),  # chunk 1: (2 << 1) - (1 << 1) = 4 - 2
    (100, 1, 0x01),  # chunk 0: 2 - 1
    (4000, 96, 0x80),  # 4000 >> 9 = 7, 4095 >> 9 = 7: 256 - 128
    (1234, 0, 0x00),  # "any" base with size 0
    (0, 1, 0x01),  # chunk 0
    (511, 2, 0x03),  # 511 >> 9 = 0, 512 >> 9 = 1: 4 - 1
    (1024, 2048, 0x3C),  # 1024 >> 9 = 2, 3071 >> 9 = 5: 64 - 4 = 60
    (4095, 1, 0x80),  # chunk 7
    (0, 513, 0x03),  # 0, 512 >> 9 = 1: 4 - 1
    (1, 4095, 0xFF),  # 0, 4095 >> 9 = 7: 256 - 1
]


@pytest.mark.parametrize(("base", "size", "bits"), BITS_TABLE)
def test_vm_page_bits_table(base: int, size: int, bits: int) -> None:
    m = boot8()
    assert m.call("vm_page_bits", {"base": base, "size": size}).result == bits


def test_vm_page_bits_asserts_the_range() -> None:
    m = boot8()
    # 4096 + 1 > PAGE_SIZE: KASSERT; 3000 + 1097 = 4097 likewise
    refused(m, KernelPanic, "vm_page_bits", {"base": 4096, "size": 1}, "illegal base/size 4096/1")
    refused(m, KernelPanic, "vm_page_bits", {"base": 3000, "size": 1097}, "illegal base/size")
    assert m.call("vm_page_bits", {"base": 4096, "size": 0}).result == 0  # 4096 <= 4096, size 0


# ======================================================================= §12.2/12.3 valid


def test_set_valid_zeroes_partial_invalid_chunks_only() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)
    m.call("vm_page_set_valid", {"m": p, "base": 100, "size": 1000})
    # bits: 100 >> 9 = 0 .. 1099 >> 9 = 2 -> 0x07; dirty untouched
    assert (m.pg.valid[ix(p)], m.pg.dirty[ix(p)]) == (0x07, 0)
    # zeroing used the old valid (0): [rounddown(100, 512), 100) = [0, 100) and
    # [1100, roundup(1100, 512)) = [1100, 1536)
    assert zeroed_ranges(m, ix(p)) == ((0, 100), (1100, 1536))
    # chunk 2 is valid now: an unaligned range inside it zeroes nothing
    m.call("vm_page_set_valid", {"m": p, "base": 1200, "size": 100})
    assert zeroed_ranges(m, ix(p)) == ((0, 100), (1100, 1536))
    assert m.pg.valid[ix(p)] == 0x07  # 1200 >> 9 = 1299 >> 9 = 2: already set
    # aligned ends zero nothing: [2048, 2560) is chunk 4
    m.call("vm_page_set_valid", {"m": p, "base": 2048, "size": 512})
    assert zeroed_ranges(m, ix(p)) == ((0, 100), (1100, 1536))
    assert m.pg.valid[ix(p)] == 0x17  # 0x07 | 0x10
    check_invariants(m)


def test_set_validclean_clears_the_inclusive_bits() -> None:
    m = boot8()
    obj = new_object(m)
    p = alloc(m, obj, 600)
    m.call("vm_page_set_validdirty", {"m": p, "base": 0, "size": 4096})
    assert (m.pg.valid[ix(p)], m.pg.dirty[ix(p)]) == (0xFF, 0xFF)
    assert m.vmobj.objects[obj].flags & OBJ_DIRTY_FLAGS == 0x180
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_NOSYNC"})
    m.call("vm_page_set_validclean", {"m": p, "base": 100, "size": 1000})
    # chunks 0..2 cleared although chunks 0 (bytes 0..99 not covered) and 2 (1100..1535
    # not covered) are only partly covered: 0xFF & ~0x07 = 0xF8
    assert m.pg.dirty[ix(p)] == 0xF8
    assert m.pg.flags[ix(p)] & PG_NOSYNC  # only a whole-page call clears it
    # the page was fully valid: no zeroing
    assert zeroed_ranges(m, ix(p)) == ()
    m.call("vm_page_set_validclean", {"m": p, "base": 0, "size": 4096})
    assert m.pg.dirty[ix(p)] == 0
    assert not m.pg.flags[ix(p)] & PG_NOSYNC
    check_invariants(m)


def test_valid_changes_need_a_busied_page() -> None:
    m = boot8()
    obj = new_object(m)
    p = alloc(m, obj, 600)
    m.call("vm_page_wakeup", {"m": p})
    for fn in ("vm_page_set_valid", "vm_page_set_validclean", "vm_page_set_validdirty"):
        refused(m, SimulatorRefusal, fn, {"m": p, "base": 0, "size": 512}, "not busied")
    refused(m, SimulatorRefusal, "vm_page_set_invalid", {"m": p, "base": 0, "size": 512}, "busied")
    refused(m, SimulatorRefusal, "vm_page_zero_invalid", {"m": p, "setvalid": True}, "not busied")
    refused(m, SimulatorRefusal, "vm_page_copy", {"src": P601, "dst": p}, "not busied")
    # a soft busy is enough (I/O completion changes valid under it)
    m.call("vm_page_busy_try", {"m": p})
    m.call("vm_page_io_start", {"m": p})
    m.call("vm_page_wakeup", {"m": p})
    m.call("vm_page_set_valid", {"m": p, "base": 0, "size": 512})
    assert m.pg.valid[ix(p)] == 0x01
    # zero_invalid without setvalid does not change valid: no busy needed
    m.call("vm_page_io_finish", {"m": p})
    m.call("vm_page_zero_invalid", {"m": p, "setvalid": False})
    assert m.pg.valid[ix(p)] == 0x01


def test_clear_dirty_variants() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)
    i = ix(p)

    def fresh() -> None:
        m.pg.dirty[i] = 0xFF

    fresh()
    m.call("vm_page_clear_dirty", {"m": p, "base": 1024, "size": 2048})
    assert m.pg.dirty[i] == 0xC3  # 0xFF & ~0x3C
    fresh()
    # end_nonincl(100, 1000): e = 1100 & ~511 = 1024; clear_dirty(100, 924):
    # 0 .. 1023 >> 9 = 1 -> 0x03: the partial first chunk is cleared, chunk 2 stays
    m.call("vm_page_clear_dirty_end_nonincl", {"m": p, "base": 100, "size": 1000})
    assert m.pg.dirty[i] == 0xFC
    fresh()
    # beg_nonincl(100, 1000): e = 1100, b = roundup(100, 512) = 512; clear_dirty(512, 588):
    # 1 .. 1099 >> 9 = 2 -> (2 << 2) - (1 << 1) = 6: chunk 0 stays, partial chunk 2 cleared
    m.call("vm_page_clear_dirty_beg_nonincl", {"m": p, "base": 100, "size": 1000})
    assert m.pg.dirty[i] == 0xF9
    fresh()
    # end_nonincl(100, 300): e = 400 & ~511 = 0 <= base: nothing
    m.call("vm_page_clear_dirty_end_nonincl", {"m": p, "base": 100, "size": 300})
    assert m.pg.dirty[i] == 0xFF
    # beg_nonincl(100, 300): b = 512 >= e = 400: nothing
    m.call("vm_page_clear_dirty_beg_nonincl", {"m": p, "base": 100, "size": 300})
    assert m.pg.dirty[i] == 0xFF
    # end_nonincl only hands e to vm_page_bits: 3600 + 500 = 4100 > 4096 is fine, e = 4096,
    # clear_dirty(3600, 496) -> 3600 >> 9 = 7 .. 4095 >> 9 = 7 -> 0x80
    m.call("vm_page_clear_dirty_end_nonincl", {"m": p, "base": 3600, "size": 500})
    assert m.pg.dirty[i] == 0x7F
    refused(m, KernelPanic, "vm_page_clear_dirty", {"m": p, "base": 3600, "size": 500}, "illegal")
    # whole page clears PG_NOSYNC
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_NOSYNC"})
    m.call("vm_page_clear_dirty", {"m": p, "base": 0, "size": 4096})
    assert m.pg.dirty[i] == 0 and not m.pg.flags[i] & PG_NOSYNC
    check_invariants(m)


def test_vm_page_dirty_undirty_and_test_dirty() -> None:
    m = boot8()
    obj, p = busied_active(m)
    m.call("vm_page_dirty", {"m": p})
    assert m.pg.dirty[ix(p)] == 0xFF
    assert m.vmobj.objects[obj].flags & OBJ_DIRTY_FLAGS == 0x180
    m.call("vm_page_undirty", {"m": p})
    assert m.pg.dirty[ix(p)] == 0
    m.call("vm_page_test_dirty", {"m": p})  # no mapping: nothing
    assert m.pg.dirty[ix(p)] == 0
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    m.call("vm_page_test_dirty", {"m": p})
    assert m.pg.dirty[ix(p)] == 0xFF
    assert m.call("pmap_is_modified", {"m": p}).result is True  # the M bit stays
    # INVARIANTS: not on PQ_FREE (pfn 600 is colour 600's free tail) nor PQ_CACHE
    refused(m, KernelPanic, "vm_page_dirty", {"m": P600B}, "page in free/cache queue!")
    check_invariants(m)


def test_vm_page_dirty_refuses_cached_pages() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_cache", {"m": p})
    assert queue_of(m, p) == Q_CACHE
    refused(m, KernelPanic, "vm_page_dirty", {"m": p}, "page in free/cache queue!")


def test_set_invalid_and_its_object() -> None:
    m = boot8()
    obj = new_object(m)
    p = alloc(m, obj, 600)
    m.call("vm_page_set_validdirty", {"m": p, "base": 0, "size": 4096})
    gen = m.vmobj.objects[obj].generation
    m.call("vm_page_set_invalid", {"m": p, "base": 512, "size": 1024})
    # 512 >> 9 = 1 .. 1535 >> 9 = 2 -> 0x06: 0xFF & ~0x06 = 0xF9 for both
    assert (m.pg.valid[ix(p)], m.pg.dirty[ix(p)]) == (0xF9, 0xF9)
    assert m.vmobj.objects[obj].generation == gen + 1
    q = alloc(m, None, 601)  # no object
    refused(m, KernelPanic, "vm_page_set_invalid", {"m": q, "base": 0, "size": 512}, "NULL")
    check_invariants(m)


def test_zero_invalid_zeroes_runs_of_invalid_chunks() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)
    m.call("vm_page_set_valid", {"m": p, "base": 1024, "size": 512})  # chunk 2
    m.call("vm_page_set_valid", {"m": p, "base": 2560, "size": 1024})  # 2560>>9=5, 3583>>9=6
    assert m.pg.valid[ix(p)] == 0x64  # 0x04 | 0x20 | 0x40
    assert zeroed_ranges(m, ix(p)) == ()  # aligned: nothing zeroed so far
    m.call("vm_page_zero_invalid", {"m": p, "setvalid": False})
    # invalid runs: chunks [0, 2), [3, 5), [7, 8) -> bytes [0, 1024), [1536, 2560), [3584, 4096)
    assert zeroed_ranges(m, ix(p)) == ((0, 1024), (1536, 2560), (3584, 4096))
    assert zeroed_chunks(m, ix(p)) == 0x9B  # chunks 0, 1, 3, 4, 7: 1 + 2 + 8 + 16 + 128
    assert m.pg.valid[ix(p)] == 0x64
    m.call("vm_page_zero_invalid", {"m": p, "setvalid": True})
    assert m.pg.valid[ix(p)] == 0xFF
    check_invariants(m)


def test_is_valid_and_its_size_zero_quirk() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)

    def is_valid(base: int, size: int) -> bool:
        return bool(m.call("vm_page_is_valid", {"m": p, "base": base, "size": size}).result)

    assert is_valid(0, 0) is False  # valid == 0
    m.call("vm_page_set_valid", {"m": p, "base": 1024, "size": 512})  # chunk 2 only
    assert is_valid(0, 0) is True  # size 0: "is anything valid"
    assert is_valid(4000, 0) is True
    assert is_valid(1024, 512) is True
    assert is_valid(1100, 10) is True  # inside chunk 2
    assert is_valid(1000, 100) is False  # chunks 1 (1000 >> 9) and 2 (1099 >> 9): 0x06
    assert is_valid(0, 4096) is False


def test_copy_and_zero_fill_move_contents() -> None:
    m = boot8()
    obj = new_object(m)
    src = alloc(m, obj, 600)
    dst = alloc(m, obj, 601)
    assert m.call("vm_page_zero_fill", {"m": src}).result is True
    assert m.pg.valid[ix(src)] == 0  # valid untouched
    assert zeroed_ranges(m, ix(src)) == ((0, 4096),)
    m.call("vm_page_copy", {"src": src, "dst": dst})
    assert zeroed_ranges(m, ix(dst)) == ((0, 4096),)
    assert (m.pg.valid[ix(dst)], m.pg.dirty[ix(dst)]) == (0xFF, 0xFF)
    assert m.vmobj.objects[obj].flags & OBJ_DIRTY_FLAGS == 0  # set directly, object not marked
    # a write through a mapping makes the contents unknown again
    m.call("vm_page_activate", {"m": dst})
    m.call("pmap_enter", {"m": dst, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": dst, "pmap": 1, "write": False})
    assert zeroed_ranges(m, ix(dst)) == ((0, 4096),)  # a read changes nothing
    m.call("pmap_touch", {"m": dst, "pmap": 1, "write": True})
    assert zeroed_ranges(m, ix(dst)) == ()
    # copying a page of unknown contents over a zeroed one forgets the zeroes
    m.call("vm_page_copy", {"src": dst, "dst": src})
    assert zeroed_ranges(m, ix(src)) == ()
    check_invariants(m)


# ======================================================================= §8.7 vm_page_cache


def test_cache_moves_a_clean_page_to_the_cache_tail_and_wakes_waiters() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.pd.vm_pages_waiting = 1
    r = m.call("vm_page_cache", {"m": p})
    assert queue_of(m, p) == Q_CACHE
    assert not locked(m, p)
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {
        "v_active_count": -1,
        "v_cache_count": 1,
    }
    # vm_page_free_wakeup: free + cache = 1982 + 1 >= v_free_min 73 + 16, so the waiters go
    assert m.pd.vm_pages_waiting == 0
    assert m.cpus[0].meter["v_ppwakeups"] == 1
    check_invariants(m)


def _unqueued(m: Machine) -> int:
    p = alloc(m, new_object(m), 600)  # on PQ_NONE: the flag may be set
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_UNQUEUED"})
    return p


def _fictitious(m: Machine) -> int:
    p = alloc(m, new_object(m), 600)
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_FICTITIOUS"})
    return p


def _need_commit(m: Machine) -> int:
    _, p = busied_active(m)
    m.call("vm_page_need_commit", {"m": p})
    return p


def _held(m: Machine) -> int:
    _, p = busied_active(m)
    m.call("vm_page_hold", {"m": p})
    return p


def _wired(m: Machine) -> int:
    _, p = busied_active(m)
    m.call("vm_page_wire", {"m": p})
    return p


def _soft_busied(m: Machine) -> int:
    _, p = busied_active(m)
    m.call("vm_page_io_start", {"m": p})
    return p


def _already_cached(m: Machine) -> int:
    _, p = busied_active(m)
    m.call("vm_page_cache", {"m": p})
    m.call("vm_page_busy_try", {"m": p})
    return p


REFUSERS: dict[str, Callable[[Machine], int]] = {
    "unqueued": _unqueued,
    "fictitious": _fictitious,
    "need_commit": _need_commit,
    "held": _held,
    "wired": _wired,
    "soft_busied": _soft_busied,
    "already_cached": _already_cached,
}


@pytest.mark.parametrize("case", sorted(REFUSERS))
def test_cache_refusals_only_unbusy(case: str) -> None:
    """For each refusal, vm_page_cache leaves the machine exactly as vm_page_wakeup does."""
    a, b = boot8(), boot8()
    pa, pb = REFUSERS[case](a), REFUSERS[case](b)
    assert locked(a, pa)
    a.call("vm_page_cache", {"m": pa})
    b.call("vm_page_wakeup", {"m": pb})
    assert a.state_digest() == b.state_digest()
    a.check_invariants()


def test_cache_of_a_cached_mapped_flag_panics() -> None:
    m = boot8()
    p = _already_cached(m)
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_MAPPED"})
    refused(m, KernelPanic, "vm_page_cache", {"m": p}, "already cached but PG_MAPPED")


def test_cache_needs_the_hard_busy() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_wakeup", {"m": p})
    refused(m, KernelPanic, "vm_page_cache", {"m": p}, "not hard-busied")


def test_cache_deactivates_a_dirty_page() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_dirty", {"m": p})
    adds = m.pq.adds[Q_INACT]
    m.call("vm_page_cache", {"m": p})
    assert queue_of(m, p) == Q_INACT
    assert m.pq.adds[Q_INACT] == adds + 1  # vm_page_deactivate: to the tail
    assert not locked(m, p)
    check_invariants(m)


def test_cache_unmaps_a_clean_mapped_page() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": False})
    m.call("pmap_touch", {"m": p, "pmap": 2})
    m.call("vm_page_cache", {"m": p})
    assert queue_of(m, p) == Q_CACHE
    assert not pmap_page_is_mapped(m, ix(p))
    assert m.pg.flags[ix(p)] & (PG_MAPPED | PG_REFERENCED) == PG_REFERENCED  # A collected
    check_invariants(m)


def test_cache_of_a_modified_mapping_finds_it_dirty_and_deactivates() -> None:
    m = boot8()
    obj, p = busied_active(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    m.call("vm_page_cache", {"m": p})
    assert queue_of(m, p) == Q_INACT
    assert m.pg.dirty[ix(p)] == 0xFF
    assert m.vmobj.objects[obj].flags & OBJ_DIRTY_FLAGS == 0x180
    assert not pmap_page_is_mapped(m, ix(p))
    check_invariants(m)


# ======================================================================= §8.8 try_to_cache


def test_try_to_cache_clean_page() -> None:
    m = boot8()
    _, p = busied_active(m)
    assert m.call("vm_page_try_to_cache", {"m": p}).result is True
    assert queue_of(m, p) == Q_CACHE
    assert not locked(m, p)
    check_invariants(m)


def test_try_to_cache_unmaps_a_clean_mapped_page() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": False})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": True})
    assert m.call("vm_page_try_to_cache", {"m": p}).result is True
    assert queue_of(m, p) == Q_CACHE
    assert not pmap_page_is_mapped(m, ix(p))
    assert m.pg.flags[ix(p)] & PG_MAPPED == 0
    check_invariants(m)


def test_try_to_cache_dirty_page_stays_put() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_dirty", {"m": p})
    assert m.call("vm_page_try_to_cache", {"m": p}).result is False
    assert queue_of(m, p) == Q_ACT  # the first test returns before any deactivation
    assert not locked(m, p)


def test_try_to_cache_deactivates_an_active_page_the_pmap_dirtied() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    assert m.call("vm_page_try_to_cache", {"m": p}).result is False
    assert queue_of(m, p) == Q_INACT
    assert m.pg.dirty[ix(p)] == 0xFF
    assert pmap_page_is_mapped(m, ix(p))  # test_dirty does not unmap
    assert not locked(m, p)
    check_invariants(m)


def test_try_to_cache_leaves_an_inactive_dirtied_page_inactive() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_deactivate", {"m": p})
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    adds = m.pq.adds[Q_INACT]
    assert m.call("vm_page_try_to_cache", {"m": p}).result is False
    assert queue_of(m, p) == Q_INACT and m.pq.adds[Q_INACT] == adds


@pytest.mark.parametrize(
    "case", ["unqueued", "fictitious", "need_commit", "held", "wired", "already_cached"]
)
def test_try_to_cache_refusals(case: str) -> None:
    a, b = boot8(), boot8()
    pa, pb = REFUSERS[case](a), REFUSERS[case](b)
    assert a.call("vm_page_try_to_cache", {"m": pa}).result is False
    b.call("vm_page_wakeup", {"m": pb})
    assert a.state_digest() == b.state_digest()


def test_try_to_cache_returns_true_for_a_soft_busied_page_it_did_not_cache() -> None:
    m = boot8()
    p = _soft_busied(m)
    # try_to_cache does not look at the soft count; vm_page_cache then refuses
    assert m.call("vm_page_try_to_cache", {"m": p}).result is True
    assert queue_of(m, p) == Q_ACT
    assert m.pg.busy[ix(p)] == 1  # soft count 1 left, hard busy released


# ======================================================================= §8.9 try_to_free


def _clean_inactive_unbusied(m: Machine) -> tuple[int, int]:
    obj, p = busied_active(m)
    m.call("vm_page_deactivate", {"m": p})
    m.call("vm_page_wakeup", {"m": p})
    return obj, p


def test_try_to_free_frees_a_clean_page() -> None:
    m = boot8()
    obj, p = _clean_inactive_unbusied(m)
    r = m.call("vm_page_try_to_free", {"m": p})
    assert r.result is True
    assert queue_pages(m, Q_FREE)[0] == ix(p)
    assert 600 not in m.vmobj.objects[obj].pages
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {
        "v_free_count": 1,
        "v_inactive_count": -1,
    }
    check_invariants(m)


def test_try_to_free_frees_a_cached_page() -> None:
    m = boot8()
    obj, p = busied_active(m)
    m.call("vm_page_cache", {"m": p})
    assert m.call("vm_page_try_to_free", {"m": p}).result is True
    assert queue_of(m, p) == Q_FREE and 600 not in m.vmobj.objects[obj].pages
    check_invariants(m)


def test_try_to_free_unmaps_a_clean_mapped_page() -> None:
    m = boot8()
    _, p = _clean_inactive_unbusied(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": False})
    assert m.call("vm_page_try_to_free", {"m": p}).result is True
    assert not pmap_page_is_mapped(m, ix(p))
    assert queue_of(m, p) == Q_FREE
    check_invariants(m)


def test_try_to_free_keeps_a_page_the_pmap_dirtied() -> None:
    m = boot8()
    _, p = _clean_inactive_unbusied(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    assert m.call("vm_page_try_to_free", {"m": p}).result is False
    assert m.pg.dirty[ix(p)] == 0xFF
    assert pmap_page_is_mapped(m, ix(p))
    assert queue_of(m, p) == Q_INACT and not locked(m, p)
    check_invariants(m)


def _free_refusal(m: Machine, case: str) -> int:
    if case == "free":
        return P600B  # colour 600's free tail
    if case in ("unqueued", "fictitious"):
        p = alloc(m, new_object(m), 600)  # on PQ_NONE, where the flag may be set
        m.call("vm_page_flag_set", {"m": p, "bits": "PG_" + case.upper()})
        m.call("vm_page_wakeup", {"m": p})
        return p
    _, p = _clean_inactive_unbusied(m)
    if case == "hard_busy":
        m.call("vm_page_busy_try", {"m": p})
    elif case == "soft_busy":
        m.call("vm_page_sbusy_hold", {"m": p})
    elif case == "dirty":
        m.call("vm_page_dirty", {"m": p})
    elif case == "held":
        m.call("vm_page_hold", {"m": p})
    elif case == "wired":
        m.call("vm_page_busy_try", {"m": p})
        m.call("vm_page_wire", {"m": p})
        m.call("vm_page_wakeup", {"m": p})
    elif case == "need_commit":
        m.call("vm_page_need_commit", {"m": p})
    elif case == "hold_queue":
        m.call("vm_page_busy_try", {"m": p})
        m.call("vm_page_hold", {"m": p})
        m.call("vm_page_free", {"m": p})  # held: to PQ_HOLD
        m.call("vm_page_hold", {"m": p})  # (hold 2)
        m.pg.hold[ix(p)] = 0  # the race the hold scan repairs: PQ_HOLD with no hold
        assert queue_of(m, p) == Q_HOLD
    return p


@pytest.mark.parametrize(
    "case",
    [
        "free",
        "hard_busy",
        "soft_busy",
        "dirty",
        "held",
        "wired",
        "need_commit",
        "hold_queue",
        "unqueued",
        "fictitious",
    ],
)
def test_try_to_free_refusals_change_nothing(case: str) -> None:
    m = boot8()
    p = _free_refusal(m, case)
    before = state_digest(m)
    assert m.call("vm_page_try_to_free", {"m": p}).result is False
    assert state_digest(m) == before
    check_invariants(m)


# ======================================================================= §8.10 dontneed


def test_dontneed_dice_over_1024_calls() -> None:
    """A clean page on PQ_ACTIVE is re-activated before every call; an anchor page of the
    same colour sits on the inactive queue, so "head" and "tail" are observable."""
    m = boot8()
    obj = new_object(m)
    p = ix(alloc(m, obj, 600))  # pfn 1625
    anchor = ix(alloc(m, obj, 1624))  # 1624 % 1024 = 600: colour 600's other page, pfn 600
    assert anchor == ix(P600B)
    vm_page_deactivate(m, anchor)
    alone: list[int] = []
    tail: list[int] = []
    head: list[int] = []
    for dnw in range(1, 1025):
        vm_page_activate(m, p)
        vm_page_dontneed(m, p)
        assert m.pagestate.dnweight == dnw
        if m.pg.queue[p] == Q_ACT:
            alone.append(dnw)
            assert m.pg.act[p] == 4  # activate set ACT_INIT 5, leave-alone took one
        elif queue_pages(m, Q_INACT) == [p, anchor]:
            head.append(dnw)
        else:
            assert queue_pages(m, Q_INACT) == [anchor, p]
            tail.append(dnw)
    # leave alone: dnw mod 512 < 16 -> 1..15, 512..527, 1024 (15 + 16 + 1 = 32)
    assert alone == [*range(1, 16), *range(512, 528), 1024]
    # tail: dnw mod 128 < 16 outside those -> 128..143, 256..271, 384..399, 640..655,
    # 768..783, 896..911 (6 * 16 = 96)
    want_tail = [d for s in (128, 256, 384, 640, 768, 896) for d in range(s, s + 16)]
    assert tail == want_tail
    assert (len(alone), len(tail), len(head)) == (32, 96, 896)  # 1024 - 32 - 96 = 896
    assert head[:3] == [16, 17, 18]
    # adds: the anchor's deactivation plus the 96 tail deactivations
    assert m.pq.adds[Q_INACT] == 1 + 96
    check_invariants(m)


def test_dontneed_first_call_sees_one_and_leaves_alone() -> None:
    m = boot8()
    _, p = busied_active(m)
    assert m.pagestate.dnweight == 0
    m.call("vm_page_dontneed", {"m": p})
    assert m.pagestate.dnweight == 1
    assert queue_of(m, p) == Q_ACT
    assert m.pg.act[ix(p)] == 4  # ACT_INIT 5 - 1


def test_dontneed_dirty_page_goes_to_the_tail() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_dirty", {"m": p})
    m.pagestate.dnweight = 15  # next dnw = 16: 16 & 0x1F0 = 16, 16 & 0x070 = 16 -> head if clean
    adds = m.pq.adds[Q_INACT]
    m.call("vm_page_dontneed", {"m": p})
    assert queue_of(m, p) == Q_INACT
    assert m.pq.adds[Q_INACT] == adds + 1  # tail insertions bump adds


def test_dontneed_clears_references_and_pulls_in_pmap_dirt() -> None:
    m = boot8()
    obj, p = busied_active(m)
    q = alloc(m, obj, 1624)  # colour 600's other page: a neighbour on the inactive queue
    m.call("vm_page_deactivate", {"m": q})
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_REFERENCED"})
    m.pagestate.dnweight = 15  # dnw 16: the "head" zone for a clean page
    m.call("vm_page_dontneed", {"m": p})
    assert not m.pg.flags[ix(p)] & PG_REFERENCED
    assert m.call("pmap_ts_referenced", {"m": p}).result == 0
    assert m.pg.dirty[ix(p)] == 0xFF  # test_dirty collected the M bit
    assert queue_pages(m, Q_INACT) == [ix(q), ix(p)]  # dirty: tail, despite the dice
    check_invariants(m)


def test_dontneed_leaves_inactive_and_cached_pages_alone() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_deactivate", {"m": p})
    m.pg.act[ix(p)] = 7
    m.pagestate.dnweight = 15
    before_q = queue_pages(m, Q_INACT)
    m.call("vm_page_dontneed", {"m": p})  # dnw 16 would deactivate, but it is inactive
    assert queue_pages(m, Q_INACT) == before_q
    assert m.pg.act[ix(p)] == 6  # 7 >= ACT_INIT: decremented
    m.pg.act[ix(p)] = 4
    m.call("vm_page_dontneed", {"m": p})  # dnw 17
    assert m.pg.act[ix(p)] == 4  # below ACT_INIT: untouched
    assert m.pagestate.dnweight == 17


def test_dnweight_wraps_like_a_c_int() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.pagestate.dnweight = 0x7FFFFFFF
    m.call("vm_page_dontneed", {"m": p})
    assert m.pagestate.dnweight == -(1 << 31)  # INT_MAX + 1 wraps to INT_MIN
    assert queue_of(m, p) == Q_ACT  # INT_MIN & 0x1F0 == 0: leave alone


# ======================================================================= §10.1 quick wiring


def test_wire_quick_and_unwire_quick() -> None:
    m = boot8()
    _, p = busied_active(m)
    refused(m, KernelPanic, "vm_page_wire_quick", {"m": p}, "wire_count was 0")
    refused(m, KernelPanic, "vm_page_unwire_quick", {"m": p}, "wire_count > 0")
    m.call("vm_page_wire", {"m": p})
    assert m.cpus[0].adj.cnt[CNT_WIRE] == 1
    m.call("vm_page_wire_quick", {"m": p})
    assert m.pg.wire[ix(p)] == 2
    assert m.cpus[0].adj.cnt[CNT_WIRE] == 1  # no stats
    assert m.call("vm_page_unwire_quick", {"m": p}).result is False
    assert m.pg.wire[ix(p)] == 1
    assert m.call("vm_page_unwire_quick", {"m": p}).result is True
    assert m.pg.wire[ix(p)] == 1  # the last wiring is left for a real unwire
    check_invariants(m)


# ======================================================================= §10.2 hold


def test_hold_free_unhold_accounting() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)
    m.call("vm_page_hold", {"m": p})
    r = m.call("vm_page_free", {"m": p})
    assert queue_of(m, p) == Q_HOLD
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {"v_active_count": 1}  # HOLD is active
    glob = m.vmstats.cnt[:]
    adj = m.cpus[0].adj.cnt[:]
    snap = m.cpus[0].vmstats.cnt[:]
    r = m.call("vm_page_unhold", {"m": p})
    assert queue_pages(m, Q_FREE)[0] == ix(p)  # PQ_FREE head
    assert m.pg.hold[ix(p)] == 0
    assert r.record["counters"]["cpu0.gd_vmstats_adj"] == {
        "v_free_count": 1,
        "v_active_count": -1,
    }
    assert m.cpus[0].adj.cnt[CNT_FREE] == adj[CNT_FREE] + 1
    assert m.cpus[0].adj.cnt[CNT_ACTIVE] == adj[CNT_ACTIVE] - 1
    assert m.cpus[0].vmstats.cnt[CNT_FREE] == snap[CNT_FREE] + 1
    assert m.cpus[0].vmstats.cnt[CNT_ACTIVE] == snap[CNT_ACTIVE] - 1
    assert m.vmstats.cnt == glob  # the global vmstats is untouched until a rollup
    check_invariants(m)


def test_unhold_moves_only_on_the_last_hold() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)
    m.call("vm_page_hold", {"m": p})
    m.call("vm_page_hold", {"m": p})
    m.call("vm_page_free", {"m": p})
    m.call("vm_page_unhold", {"m": p})
    assert (queue_of(m, p), m.pg.hold[ix(p)]) == (Q_HOLD, 1)
    m.call("vm_page_unhold", {"m": p})
    assert (queue_of(m, p), m.pg.hold[ix(p)]) == (Q_FREE, 0)
    check_invariants(m)


def test_unhold_of_a_page_not_on_pq_hold_only_drops_the_hold() -> None:
    m = boot8()
    _, p = busied_active(m)
    m.call("vm_page_hold", {"m": p})
    m.call("vm_page_unhold", {"m": p})
    assert (queue_of(m, p), m.pg.hold[ix(p)]) == (Q_ACT, 0)
    check_invariants(m)


def test_hold_assertions() -> None:
    m = boot8()
    refused(m, KernelPanic, "vm_page_hold", {"m": P600}, "PQ_FREE")  # a free page
    _, p = busied_active(m)
    refused(m, KernelPanic, "vm_page_unhold", {"m": p}, "hold count 0")


def test_unhold_refuses_to_free_a_wired_held_page() -> None:
    m = boot8()
    p = alloc(m, new_object(m), 600)
    m.call("vm_page_hold", {"m": p})
    m.call("vm_page_free", {"m": p})
    m.call("vm_page_busy_try", {"m": p})
    m.call("vm_page_wire", {"m": p})  # allowed: PQ_HOLD is not PQ_FREE
    refused(m, SimulatorRefusal, "vm_page_unhold", {"m": p}, "allocator")


# ======================================================================= §14 commit / fake


def test_need_commit_and_clear_commit() -> None:
    m = boot8()
    obj, p = busied_active(m)
    m.call("vm_page_need_commit", {"m": p})
    assert m.pg.flags[ix(p)] & PG_NEED_COMMIT
    assert m.vmobj.objects[obj].flags & OBJ_DIRTY_FLAGS == 0x180
    m.call("vm_page_clear_commit", {"m": p})
    assert not m.pg.flags[ix(p)] & PG_NEED_COMMIT
    q = alloc(m, None, 601)
    refused(m, KernelPanic, "vm_page_need_commit", {"m": q}, "NULL pointer")
    refused(m, SimulatorRefusal, "vm_page_need_commit", {"m": P600B}, "free")


def test_initfake_uses_its_own_table() -> None:
    m = boot8()
    counters = vmstats_view(m)
    r = m.call(
        "vm_page_initfake", {"slot": 3, "paddr": 0xFEE00000, "memattr": "VM_MEMATTR_UNCACHEABLE"}
    )
    assert r.result == 3
    assert fake_page_info(m, 3) == {
        "slot": 3,
        "phys_addr": 0xFEE00000,
        "pat_mode": 0,
        "flags": PG_FICTITIOUS | PG_UNQUEUED,  # 0x8 | 0x800
        "busy_count": PBUSY_LOCKED,
        "wire_count": 1,
        "queue": 0,
    }
    # already FICTITIOUS: only the memory attribute changes
    m.call(
        "vm_page_initfake", {"slot": 3, "paddr": 0x1000, "memattr": "VM_MEMATTR_WRITE_COMBINING"}
    )
    info = fake_page_info(m, 3)
    assert info is not None and (info["phys_addr"], info["pat_mode"]) == (0xFEE00000, 1)
    assert vmstats_view(m) == counters  # outside vm_page_array: no vmstats
    check_invariants(m)


# ======================================================================= madvise


def _madvise_object(m: Machine) -> tuple[int, dict[int, int]]:
    """Object with pages at pindex 600 (valid, inactive, unbusied), 601 (valid 0),
    602 (valid, left hard-busied) and 603 (valid, wired)."""
    obj = new_object(m)
    pages = {pi: alloc(m, obj, pi) for pi in (600, 601, 602, 603)}
    assert pages == {600: P600, 601: P601, 602: P602, 603: P603}
    for pi in (600, 602, 603):
        m.call("vm_page_set_valid", {"m": pages[pi], "base": 0, "size": 4096})
    m.call("vm_page_wire", {"m": pages[603]})
    for pi in (600, 601, 603):
        m.call("vm_page_deactivate", {"m": pages[pi]})
        m.call("vm_page_wakeup", {"m": pages[pi]})
    return obj, pages


def test_madvise_willneed_and_dontneed() -> None:
    m = boot8()
    obj, pages = _madvise_object(m)
    q601, q602 = queue_of(m, P601), queue_of(m, P602)
    r = m.call("madvise", {"object": obj, "pindex": 600, "count": 4, "advice": "MADV_WILLNEED"})
    assert r.result == 1  # only pindex 600 qualifies
    assert queue_of(m, P600) == Q_ACT and not locked(m, P600)
    assert queue_of(m, P601) == q601 and queue_of(m, P602) == q602
    assert locked(m, P602)  # someone else's busy is untouched
    assert m.pg.wire[ix(P603)] == 1 and not locked(m, P603)
    r = m.call("madvise", {"object": obj, "pindex": 0, "count": 1 << 20, "advice": "MADV_DONTNEED"})
    assert r.result == 1
    assert m.pagestate.dnweight == 1  # one vm_page_dontneed: dnw 1 leaves it alone
    assert queue_of(m, P600) == Q_ACT and m.pg.act[ix(P600)] == 4
    m.pagestate.dnweight = 15
    m.call("madvise", {"object": obj, "pindex": 600, "count": 1, "advice": "MADV_DONTNEED"})
    assert queue_pages(m, Q_INACT)[0] == ix(P600)  # dnw 16, clean: inactive head
    # a range with no resident page does nothing
    before = state_digest(m)
    assert m.call("madvise", {"object": obj, "pindex": 0, "count": 600, "advice": 4}).result == 0
    assert state_digest(m) == before
    check_invariants(m)


def test_madvise_free_cleans_without_unmapping() -> None:
    m = boot8()
    obj, pages = _madvise_object(m)
    m.call("vm_page_activate", {"m": P600})
    m.call("pmap_enter", {"m": P600, "pmap": 1, "writeable": True})
    m.call("pmap_touch", {"m": P600, "pmap": 1, "write": True})
    m.call("vm_page_dirty", {"m": P600})
    m.pg.act[ix(P600)] = 20
    m.pagestate.dnweight = 15  # dnw 16: head zone
    r = m.call("madvise", {"object": obj, "pindex": 600, "count": 1, "advice": "MADV_FREE"})
    assert r.result == 1
    assert m.pg.dirty[ix(P600)] == 0
    assert m.call("pmap_is_modified", {"m": P600}).result is False
    assert m.pg.act[ix(P600)] == 0
    assert queue_pages(m, Q_INACT)[0] == ix(P600)  # clean now: to the head
    assert pmap_page_is_mapped(m, ix(P600))  # reuse must not fault
    check_invariants(m)


def test_madvise_free_ignores_vnode_objects() -> None:
    m = boot8()
    obj = new_object(m, "OBJT_VNODE")
    p = alloc(m, obj, 600)
    m.call("vm_page_set_valid", {"m": p, "base": 0, "size": 4096})
    m.call("vm_page_dirty", {"m": p})
    m.call("vm_page_wakeup", {"m": p})
    before = state_digest(m)
    assert (
        m.call("madvise", {"object": obj, "pindex": 600, "count": 1, "advice": "MADV_FREE"}).result
        == 0
    )
    assert state_digest(m) == before


def test_madvise_rejects_other_advice() -> None:
    m = boot8()
    obj = new_object(m)
    with pytest.raises(InvalidArgument):
        m.call("madvise", {"object": obj, "pindex": 0, "count": 1, "advice": "MADV_NORMAL"})

"""Tests for app.core.pmap: the simulated pmap (spec §14 ``vm_page_protect`` and the pmap
bullets of §14/§19) and its guards on the lower layers (spec §8.2 "freeing mapped page").

Machine: ``boot8()`` — phys_avail = [0x200000, 0xA00000), one CPU, boot finished (layout
worked out in tests/core/test_pageops.py: 1983 free pages, pfn 512 .. 2494).  Objects are
created with ``pg_color = 0``, so with one CPU ``vm_page_alloc(object, pindex)`` starts at
colour ``(pindex + 0) % 1024`` (spec §6.1) and takes that free queue's head.  Colour 600
holds [1625, 600] (spec §2.3: 1625 ^ 1625 >> 10 = 1625 ^ 1 = 1624, & 1023 = 600; pages are
added at the head in ascending order), so the first page of pindex 600 is pfn 1625.

Queue numbers: PQ_ACTIVE + 600 = 2049 + 600 = 2649, PQ_INACTIVE + 600 = 1025 + 600 = 1625,
PQ_CACHE + 600 = 3073 + 600 = 3673, PQ_FREE + 600 = 1 + 600 = 601.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    PG_MAPPED,
    PG_MAPPEDMULTI,
    PG_REFERENCED,
    PG_WRITEABLE,
    PQ_FREE,
)
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.objects import OBJ_MIGHTBEDIRTY, OBJ_WRITEABLE
from app.core.pmap import (
    VM_PROT_EXECUTE,
    VM_PROT_NONE,
    VM_PROT_READ,
    VM_PROT_WRITE,
    pmap_mapped_sync,
    pmap_page_is_mapped,
    pmap_ts_referenced,
    vm_page_protect,
    vm_page_protect_none,
)
from app.core.registry import REGISTRY
from app.core.vm_page.queues import queue_pages
from app.lab.machine_views import pmap_view

FIRST_PAGE = 512  # 0x200000 / 4096
PFN_600 = 1625  # head of colour 600 (module docstring)
PMAP_BITS = PG_MAPPED | PG_WRITEABLE | PG_MAPPEDMULTI  # 0x20 | 0x10 | 0x40 = 0x70


def boot8() -> Machine:
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))
    return m


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def new_object(m: Machine, otype: str = "OBJT_DEFAULT") -> int:
    return int(m.call("vm_object_allocate", {"type": otype, "size": 4096, "pg_color": 0}).result)


def alloc(m: Machine, obj: int, pindex: int) -> int:
    """A hard-busied page of ``obj`` at ``pindex`` (on no queue)."""
    r = m.call("vm_page_alloc", {"object": obj, "pindex": pindex})
    assert r.result is not None
    return int(r.result)


def active_page(m: Machine) -> tuple[int, int]:
    """(object, pfn): object page at pindex 600, activated, still hard-busied."""
    obj = new_object(m)
    pfn = alloc(m, obj, 600)
    assert pfn == PFN_600
    m.call("vm_page_activate", {"m": pfn})
    return obj, pfn


def flags(m: Machine, pfn: int) -> int:
    return int(m.pg.flags[ix(pfn)])


def refused(m: Machine, exc: type[Exception], fn: str, args: dict[str, Any], text: str) -> None:
    """The call raises ``exc`` mentioning ``text`` and leaves the machine unchanged."""
    before = state_digest(m)
    with pytest.raises(exc) as info:
        m.call(fn, args)
    assert text in str(info.value)
    assert state_digest(m) == before
    check_invariants(m)


# ======================================================================= registry


def test_every_pmap_function_is_registered_with_its_arguments() -> None:
    want = {
        "pmap_enter": ["m", "pmap", "writeable"],
        "pmap_remove": ["m", "pmap"],
        "pmap_touch": ["m", "pmap", "write"],
        "pmap_ts_referenced": ["m"],
        "pmap_is_modified": ["m"],
        "pmap_clear_reference": ["m"],
        "pmap_clear_modify": ["m"],
        "pmap_page_protect": ["m", "prot"],
        "pmap_mapped_sync": ["m"],
        "vm_page_protect": ["m", "prot"],
    }
    for name, params in want.items():
        spec = REGISTRY[name]
        assert [p.name for p in spec.params] == params
        assert callable(spec.impl)
    assert REGISTRY["pmap_is_modified"].mutates is False


# ======================================================================= pmap_enter


def test_enter_sets_mapped_then_writeable_then_mappedmulti() -> None:
    m = boot8()
    _, p = active_page(m)
    assert flags(m, p) & PMAP_BITS == 0
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": False})
    assert flags(m, p) & PMAP_BITS == PG_MAPPED  # one read-only mapping: 0x20
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": True})
    # second mapping, writable: MAPPED | WRITEABLE | MAPPEDMULTI = 0x20 | 0x10 | 0x40
    assert flags(m, p) & PMAP_BITS == 0x70
    assert pmap_view(m, ix(p))["mappings"] == [
        {"pmap": 1, "writable": False, "referenced": False, "modified": False},
        {"pmap": 2, "writable": True, "referenced": False, "modified": False},
    ]
    check_invariants(m)


def test_reenter_changes_protection_and_collects_the_modify_bit() -> None:
    m = boot8()
    obj, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 7, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 7, "write": True})
    assert m.pg.dirty[ix(p)] == 0  # the M bit sits in the pte, not yet in the page
    m.call("pmap_enter", {"m": p, "pmap": 7, "writeable": False})  # write-protect it
    assert m.pg.dirty[ix(p)] == 0xFF  # collected with vm_page_dirty: VM_PAGE_BITS_ALL
    assert m.vmobj.objects[obj].flags & (OBJ_WRITEABLE | OBJ_MIGHTBEDIRTY) == 0x180  # 0x80 | 0x100
    assert pmap_view(m, ix(p))["mappings"] == [
        {"pmap": 7, "writable": False, "referenced": True, "modified": False}
    ]
    assert flags(m, p) & PG_MAPPEDMULTI == 0  # still a single mapping
    check_invariants(m)


def test_enter_refuses_fictitious_free_and_cached_pages() -> None:
    m = boot8()
    obj = new_object(m)
    p = alloc(m, obj, 600)  # on PQ_NONE, busied
    m.call("vm_page_flag_set", {"m": p, "bits": "PG_FICTITIOUS"})
    refused(m, InvalidArgument, "pmap_enter", {"m": p, "pmap": 1}, "FICTITIOUS")
    # pfn 600 is still free (the tail of colour 600's free queue)
    assert m.pg.queue[ix(600)] == 601  # PQ_FREE + 600
    refused(m, InvalidArgument, "pmap_enter", {"m": 600, "pmap": 1}, "free")
    q = alloc(m, obj, 601)  # colour 601's head, pfn 1624
    m.call("vm_page_activate", {"m": q})
    m.call("vm_page_cache", {"m": q})  # clean and unmapped: cached (and unbusied)
    refused(m, InvalidArgument, "pmap_enter", {"m": q, "pmap": 1}, "cached")


def test_flag_guards_protect_the_mapping_summary() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    refused(m, InvalidArgument, "vm_page_flag_clear", {"m": p, "bits": "PG_MAPPED"}, "PG_MAPPED")
    refused(
        m, InvalidArgument, "vm_page_flag_clear", {"m": p, "bits": "PG_WRITEABLE"}, "PG_WRITEABLE"
    )
    # PG_MAPPEDMULTI is not required with a single mapping: clearing it is fine
    m.call("vm_page_flag_clear", {"m": p, "bits": "PG_MAPPEDMULTI|PG_REFERENCED"})
    assert flags(m, p) & PMAP_BITS == PG_MAPPED | PG_WRITEABLE
    # the page is on PQ_ACTIVE, so FICTITIOUS is refused by the queue rule already; take
    # it off the queue to reach the pmap rule
    m.call("vm_page_unqueue", {"m": p})
    refused(m, InvalidArgument, "vm_page_flag_set", {"m": p, "bits": "PG_FICTITIOUS"}, "mappings")


# ======================================================================= remove / sync


def test_remove_is_lazy_and_mapped_sync_recomputes() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": False})
    m.call("pmap_remove", {"m": p, "pmap": 1})
    # lazy: the writable mapping is gone but every flag stays
    assert flags(m, p) & PMAP_BITS == 0x70
    r = m.call("pmap_mapped_sync", {"m": p})
    # one read-only mapping left: MAPPED set, WRITEABLE cleared, MAPPEDMULTI sticky
    assert flags(m, p) & PMAP_BITS == PG_MAPPED | PG_MAPPEDMULTI
    assert r.result == flags(m, p)
    m.call("pmap_remove", {"m": p, "pmap": 2})
    assert flags(m, p) & PMAP_BITS == PG_MAPPED | PG_MAPPEDMULTI  # still lazy
    m.call("pmap_mapped_sync", {"m": p})
    assert flags(m, p) & PMAP_BITS == 0  # no mapping: all three cleared
    check_invariants(m)


def test_remove_collects_modified_and_referenced_bits() -> None:
    m = boot8()
    obj, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 3, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 3, "write": True})
    assert flags(m, p) & PG_REFERENCED == 0
    assert m.vmobj.objects[obj].flags & OBJ_MIGHTBEDIRTY == 0
    m.call("pmap_remove", {"m": p, "pmap": 3})
    assert m.pg.dirty[ix(p)] == 0xFF
    assert flags(m, p) & PG_REFERENCED
    assert m.vmobj.objects[obj].flags & (OBJ_WRITEABLE | OBJ_MIGHTBEDIRTY) == 0x180
    assert not pmap_page_is_mapped(m, ix(p))
    refused(m, InvalidArgument, "pmap_remove", {"m": p, "pmap": 3}, "no mapping")
    check_invariants(m)


def test_mapped_sync_and_page_protect_need_the_hard_busy() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("vm_page_wakeup", {"m": p})
    refused(m, SimulatorRefusal, "pmap_mapped_sync", {"m": p}, "PBUSY_LOCKED")
    refused(
        m, SimulatorRefusal, "pmap_page_protect", {"m": p, "prot": "VM_PROT_NONE"}, "PBUSY_LOCKED"
    )
    refused(m, KernelPanic, "vm_page_protect", {"m": p, "prot": "VM_PROT_NONE"}, "not hard-busied")


# ======================================================================= touch / A and M bits


def test_touch_sets_referenced_and_modified_and_faults_on_read_only() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": False})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": True})
    refused(
        m, InvalidArgument, "pmap_touch", {"m": p, "pmap": 1, "write": True}, "protection fault"
    )
    refused(m, InvalidArgument, "pmap_touch", {"m": p, "pmap": 9}, "no mapping")
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": False})
    assert m.call("pmap_is_modified", {"m": p}).result is False
    m.call("pmap_touch", {"m": p, "pmap": 2, "write": True})
    assert m.call("pmap_is_modified", {"m": p}).result is True
    assert m.pg.dirty[ix(p)] == 0  # hardware bit only
    m.call("pmap_clear_modify", {"m": p})
    assert m.call("pmap_is_modified", {"m": p}).result is False
    assert m.pg.dirty[ix(p)] == 0  # forgotten, not collected
    check_invariants(m)


def test_ts_referenced_counts_and_clears() -> None:
    m = boot8()
    _, p = active_page(m)
    for pmap in (1, 2, 3):
        m.call("pmap_enter", {"m": p, "pmap": pmap, "writeable": True})
    m.call("pmap_touch", {"m": p, "pmap": 1})
    m.call("pmap_touch", {"m": p, "pmap": 3, "write": True})
    assert m.call("pmap_ts_referenced", {"m": p}).result == 2  # pmaps 1 and 3
    assert m.call("pmap_ts_referenced", {"m": p}).result == 0  # cleared by the first call
    assert m.call("pmap_is_modified", {"m": p}).result is True  # M untouched
    for pmap in (1, 2, 3):
        m.call("pmap_touch", {"m": p, "pmap": pmap})
    m.call("pmap_clear_reference", {"m": p})
    assert m.call("pmap_ts_referenced", {"m": p}).result == 0
    assert flags(m, p) & PG_REFERENCED == 0  # the software bit is not the pmap's business
    other = 1624  # colour 601's free head: no mapping at all
    assert pmap_ts_referenced(m, ix(other)) == 0
    check_invariants(m)


# ======================================================================= page_protect


def test_page_protect_read_downgrades_and_collects() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": False})
    m.call("pmap_touch", {"m": p, "pmap": 1, "write": True})
    m.call("pmap_page_protect", {"m": p, "prot": "VM_PROT_READ"})
    assert m.pg.dirty[ix(p)] == 0xFF
    assert flags(m, p) & PMAP_BITS == PG_MAPPED | PG_MAPPEDMULTI  # WRITEABLE cleared
    assert pmap_view(m, ix(p))["mappings"] == [
        {"pmap": 1, "writable": False, "referenced": True, "modified": False},
        {"pmap": 2, "writable": False, "referenced": False, "modified": False},
    ]
    check_invariants(m)


def test_page_protect_none_removes_everything() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": False})
    m.call("pmap_touch", {"m": p, "pmap": 2})
    m.call("pmap_page_protect", {"m": p, "prot": "VM_PROT_NONE"})
    assert not pmap_page_is_mapped(m, ix(p))
    assert flags(m, p) & PMAP_BITS == 0
    assert flags(m, p) & PG_REFERENCED  # pmap 2's A bit
    assert m.pg.dirty[ix(p)] == 0  # nothing was modified
    assert m.pmap.mapping_count == 0
    check_invariants(m)


def test_page_protect_never_raises_protection() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": False})
    before = state_digest(m)
    m.call("pmap_page_protect", {"m": p, "prot": "VM_PROT_READ|VM_PROT_WRITE"})
    m.call("pmap_page_protect", {"m": p, "prot": VM_PROT_WRITE | VM_PROT_EXECUTE})
    assert state_digest(m) == before


# ======================================================================= vm_page_protect (§14)


def test_vm_page_protect_none_syncs_first() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_remove", {"m": p, "pmap": 1})  # flags stale (lazy)
    m.call("vm_page_protect", {"m": p, "prot": "VM_PROT_NONE"})
    assert flags(m, p) & PMAP_BITS == 0
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": True})
    vm_page_protect(m, ix(p), VM_PROT_NONE)
    assert not pmap_page_is_mapped(m, ix(p))
    assert flags(m, p) & PMAP_BITS == 0
    check_invariants(m)


def test_vm_page_protect_read_only_when_writeable() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": False})
    m.call("pmap_remove", {"m": p, "pmap": 1})  # PG_WRITEABLE is now stale
    m.call("vm_page_protect", {"m": p, "prot": "VM_PROT_READ"})
    # sync found no writable mapping: WRITEABLE cleared, the read-only mapping stays
    assert flags(m, p) & PMAP_BITS == PG_MAPPED | PG_MAPPEDMULTI
    assert pmap_page_is_mapped(m, ix(p))
    m.call("pmap_enter", {"m": p, "pmap": 3, "writeable": True})
    m.call("vm_page_protect", {"m": p, "prot": "VM_PROT_READ"})
    assert [x["writable"] for x in pmap_view(m, ix(p))["mappings"]] == [False, False]
    assert flags(m, p) & PG_WRITEABLE == 0
    check_invariants(m)


def test_vm_page_protect_treats_only_exact_none_and_read() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    before = state_digest(m)
    vm_page_protect(m, ix(p), VM_PROT_READ | VM_PROT_EXECUTE)  # 5: neither NONE nor READ
    vm_page_protect(m, ix(p), VM_PROT_READ | VM_PROT_WRITE)
    assert state_digest(m) == before


# ======================================================================= freeing


def test_freeing_a_mapped_page_panics_before_anything_changes() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": False})
    refused(m, KernelPanic, "vm_page_free", {"m": p}, "freeing mapped page")
    m.call("pmap_remove", {"m": p, "pmap": 1})
    assert flags(m, p) & PG_MAPPED  # lazy flag: free_toq's pmap_mapped_sync clears it
    m.call("vm_page_free", {"m": p})
    assert flags(m, p) & PMAP_BITS == 0
    assert queue_pages(m, PQ_FREE + 600)[0] == ix(p)  # back at the free head
    check_invariants(m)


def test_freezwq_of_a_mapped_page_panics_before_the_unwire() -> None:
    m = boot8()
    p = m.call("vm_page_alloczwq", {"pindex": 600}).result  # wired once, not busied
    assert p == PFN_600
    m.call("pmap_enter", {"m": p, "pmap": 1})
    refused(m, KernelPanic, "vm_page_freezwq", {"m": p}, "freeing mapped page")
    assert m.pg.wire[ix(p)] == 1
    m.call("pmap_remove", {"m": p, "pmap": 1})
    m.call("vm_page_freezwq", {"m": p})
    assert m.pg.queue[ix(p)] == 601  # PQ_FREE + 600
    check_invariants(m)


def test_protect_none_placeholder_is_overridden() -> None:
    """pageops' ``vm_page_protect_none`` (used by the allocator's cache recycling) now
    removes the real mappings, and ``pmap_mapped_sync`` (used by free_toq) reads them."""
    m = boot8()
    _, p = active_page(m)
    m.call("pmap_enter", {"m": p, "pmap": 1, "writeable": True})
    m.call("pmap_enter", {"m": p, "pmap": 2, "writeable": False})
    pmap_mapped_sync(m, ix(p))
    assert flags(m, p) & PMAP_BITS == 0x70  # both mappings still there: nothing cleared
    vm_page_protect_none(m, ix(p))
    assert not pmap_page_is_mapped(m, ix(p))
    assert flags(m, p) & PMAP_BITS == 0
    check_invariants(m)

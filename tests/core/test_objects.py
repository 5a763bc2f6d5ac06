"""Tests for app.core.objects / objects_ops: ``vm_object_allocate`` (simulator verb),
``vm_page_insert`` (spec §11.1), ``vm_page_remove`` (§11.5) and ``vm_page_lookup`` (§11.2).

Machine: phys_avail = [0x200000, 0xA00000), see tests/core/test_pageops.py for its layout
(first_page 512, 1983 free pages, colour 600 = [pfn 1625, pfn 600]).
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import (
    PBUSY_LOCKED,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_FREE,
)
from app.core.errors import InvalidArgument, KernelPanic
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.objects import OBJ_MIGHTBEDIRTY, OBJ_WRITEABLE, ObjType

FIRST_PAGE = 512


def boot8(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),), **kw))


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


def alloc(m: Machine, pindex: int = 0, cpu: int = 0) -> int:
    """An object-less page: hard-busied, on no queue, pindex = ``pindex``."""
    r = m.call("vm_page_alloc", {"pindex": pindex}, cpu=cpu)
    assert r.result is not None
    return int(r.result)


def new_object(m: Machine, **args: Any) -> int:
    return int(m.call("vm_object_allocate", args).result)


def as_int32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


# =========================================================== vm_object_allocate


def test_object_ids_count_up_from_one() -> None:
    m = boot8()
    assert [new_object(m) for _ in range(3)] == [1, 2, 3]
    assert sorted(m.vmobj.objects) == [1, 2, 3]


def test_object_defaults() -> None:
    m = boot8()
    o = m.vmobj.objects[new_object(m)]
    assert o.type == ObjType.OBJT_DEFAULT
    assert o.size == 0 and o.ref_count == 1 and o.flags == 0
    assert o.resident_page_count == 0 and len(o.pages) == 0


@pytest.mark.parametrize("name", ["OBJT_VNODE", "objt_swap", "OBJT_DEVICE", "OBJT_PHYS"])
def test_object_types_by_name(name: str) -> None:
    m = boot8()
    o = m.vmobj.objects[new_object(m, type=name, size=64)]
    assert o.type == ObjType[name.upper()]
    assert o.size == 64


@pytest.mark.parametrize("bad", ["OBJT_BOGUS", "VNODE", 2, None, ""])
def test_bad_object_type_is_refused(bad: Any) -> None:
    m = boot8()
    before = state_digest(m)
    with pytest.raises(InvalidArgument, match="type must be one of"):
        m.call("vm_object_allocate", {"type": bad})
    assert state_digest(m) == before
    assert m.vmobj.objects == {}


def test_object_color_comes_from_vm_quickcolor() -> None:
    """spec §6.1: pg_color = (int)((curthread >> 10) + gd_quick_color), then
    gd_quick_color += PQ_PRIME2 (23)."""
    m = boot8(cpus=2)
    addr0 = m.cpus[0].thread_addr
    addr1 = m.cpus[1].thread_addr
    a = m.vmobj.objects[new_object(m)]
    b = m.vmobj.objects[new_object(m)]
    c = m.vmobj.objects[int(m.call("vm_object_allocate", {}, cpu=1).result)]
    assert a.pg_color == as_int32(addr0 >> 10)  # quick_color starts at 0
    assert b.pg_color == as_int32((addr0 >> 10) + 23)
    assert c.pg_color == as_int32(addr1 >> 10)  # CPU 1 has its own quick colour
    assert m.cpus[0].quick_color == 46  # 0 + 23 + 23


def test_explicit_object_color_is_kept_and_does_not_advance_quickcolor() -> None:
    m = boot8()
    o = m.vmobj.objects[new_object(m, pg_color=77)]
    assert o.pg_color == 77
    assert m.cpus[0].quick_color == 0


# =========================================================== vm_page_insert (§11.1)


def test_insert_links_page_and_object() -> None:
    m = boot8(cpus=2)
    oid = new_object(m)
    o = m.vmobj.objects[oid]
    gen = o.generation
    pfn = alloc(m, cpu=1)
    r = m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 9}, cpu=1)
    assert r.result is True
    assert m.pg.obj[ix(pfn)] == oid and m.pg.pindex[ix(pfn)] == 9
    assert o.pages[9] == ix(pfn)
    assert o.resident_page_count == 1
    assert o.generation == gen + 1
    assert m.cpus[1].t_rm == 1 and m.cpus[0].t_rm == 0  # the calling CPU's gd_vmtotal
    assert o.flags == 0  # clean, not writeable, not NEED_COMMIT
    check_invariants(m)


def test_insert_collision_returns_false_and_resets_pindex() -> None:
    m = boot8()
    oid = new_object(m)
    o = m.vmobj.objects[oid]
    first = alloc(m)
    m.call("vm_page_insert", {"m": first, "object": oid, "pindex": 9})
    gen = o.generation
    second = alloc(m, pindex=123)  # an object-less page keeps the caller's pindex
    assert m.pg.pindex[ix(second)] == 123
    r = m.call("vm_page_insert", {"m": second, "object": oid, "pindex": 9})
    assert r.result is False
    assert m.pg.obj[ix(second)] == 0
    assert m.pg.pindex[ix(second)] == 0  # set to 9, then reset to 0 on the collision
    assert o.generation == gen + 1  # bumped before the tree insert, even on failure
    assert o.pages[9] == ix(first) and o.resident_page_count == 1
    assert m.cpus[0].t_rm == 1
    check_invariants(m)


def test_insert_of_an_owned_page_panics_without_changes() -> None:
    m = boot8()
    a, b = new_object(m), new_object(m)
    pfn = alloc(m)
    m.call("vm_page_insert", {"m": pfn, "object": a, "pindex": 1})
    before = state_digest(m)
    gen_b = m.vmobj.objects[b].generation
    with pytest.raises(KernelPanic, match="already inserted"):
        m.call("vm_page_insert", {"m": pfn, "object": b, "pindex": 2})
    assert state_digest(m) == before
    assert m.vmobj.objects[b].generation == gen_b  # the panic comes before the bump


@pytest.mark.parametrize(
    ("valid", "dirty", "flags", "marks"),
    [
        (0x0F, 0x01, 0, True),  # valid & dirty = 0x01
        (0x0F, 0xF0, 0, False),  # dirty bits only where not valid: 0x0F & 0xF0 = 0
        (0x00, 0xFF, 0, False),
        (0x00, 0x00, PG_WRITEABLE, True),
        (0x00, 0x00, PG_NEED_COMMIT, True),
        (0x00, 0x00, PG_REFERENCED, False),
    ],
)
def test_insert_marks_the_object_writeable_dirty(
    valid: int, dirty: int, flags: int, marks: bool
) -> None:
    m = boot8()
    oid = new_object(m)
    pfn = alloc(m)
    m.pg.valid[ix(pfn)] = valid
    m.pg.dirty[ix(pfn)] = dirty
    m.pg.flags[ix(pfn)] = flags
    m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 0})
    want = OBJ_WRITEABLE | OBJ_MIGHTBEDIRTY if marks else 0
    assert m.vmobj.objects[oid].flags == want


def test_insert_of_a_colliding_dirty_page_does_not_mark_the_object() -> None:
    m = boot8()
    oid = new_object(m)
    m.call("vm_page_insert", {"m": alloc(m), "object": oid, "pindex": 0})
    pfn = alloc(m)
    m.pg.flags[ix(pfn)] = PG_WRITEABLE
    assert m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 0}).result is False
    assert m.vmobj.objects[oid].flags == 0  # FALSE is returned before the dirty test


def test_alloc_into_an_object_inserts_at_pindex() -> None:
    m = boot8()
    oid = new_object(m)
    gen = m.vmobj.objects[oid].generation
    pfn = m.call("vm_page_alloc", {"object": oid, "pindex": 5}).result
    assert m.vmobj.objects[oid].pages[5] == ix(pfn)
    assert m.vmobj.objects[oid].generation == gen + 1
    assert m.pg.busy[ix(pfn)] == PBUSY_LOCKED


def test_insert_pindex_may_use_all_64_bits() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = alloc(m)
    top = (1 << 64) - 1
    assert m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": top}).result is True
    assert m.pg.pindex[ix(pfn)] == top
    assert m.call("vm_page_lookup", {"object": oid, "pindex": top}).result == pfn
    check_invariants(m)


# =========================================================== vm_page_remove (§11.5)


def test_remove_needs_the_hard_busy() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = alloc(m)
    m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 4})
    m.call("vm_page_wakeup", {"m": pfn})
    before = state_digest(m)
    with pytest.raises(KernelPanic, match="not busy"):
        m.call("vm_page_remove", {"m": pfn})
    assert state_digest(m) == before


def test_remove_detaches_but_keeps_pindex_busy_and_queue() -> None:
    m = boot8()
    oid = new_object(m)
    o = m.vmobj.objects[oid]
    pfn = alloc(m, pindex=600)  # colour 600 -> pfn 1625
    m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 4})
    m.call("vm_page_activate", {"m": pfn})
    gen = o.generation
    r = m.call("vm_page_remove", {"m": pfn})
    i = ix(pfn)
    assert m.pg.obj[i] == 0
    assert m.pg.pindex[i] == 4  # left as it is
    assert m.pg.busy[i] == PBUSY_LOCKED  # still busied
    assert m.pg.queue[i] == PQ_ACTIVE + 600  # still on its queue
    assert r.record["moves"] == [] and r.record["counters"] == {}
    assert o.generation == gen + 1
    assert o.resident_page_count == 0 and 4 not in o.pages
    assert m.cpus[0].t_rm == 0  # +1 on insert, -1 on remove
    check_invariants(m)


def test_remove_of_an_objectless_page_is_a_no_op_even_unbusied() -> None:
    m = boot8()
    before = state_digest(m)
    r = m.call("vm_page_remove", {"m": 1625})  # a free page, not busied, no object
    assert r.result is None
    assert state_digest(m) == before
    assert m.pg.queue[ix(1625)] == PQ_FREE + 600


# =========================================================== vm_page_lookup (§11.2)


def test_lookup_hit_and_miss() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = alloc(m)
    m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 3})
    m.call("vm_page_wakeup", {"m": pfn})
    before = state_digest(m)
    assert m.call("vm_page_lookup", {"object": oid, "pindex": 3}).result == pfn
    assert m.call("vm_page_lookup", {"object": oid, "pindex": 4}).result is None
    assert m.pg.busy[ix(pfn)] == 0  # lookup does not busy
    assert state_digest(m) == before  # nor change anything else
    other = new_object(m)
    assert m.call("vm_page_lookup", {"object": other, "pindex": 3}).result is None


def test_lookup_after_remove_misses() -> None:
    m = boot8()
    oid = new_object(m)
    pfn = alloc(m)
    m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 3})
    m.call("vm_page_remove", {"m": pfn})
    assert m.call("vm_page_lookup", {"object": oid, "pindex": 3}).result is None
    # the freed slot can be taken again
    assert m.call("vm_page_insert", {"m": pfn, "object": oid, "pindex": 3}).result is True

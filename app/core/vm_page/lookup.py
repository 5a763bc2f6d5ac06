"""The lookups through the page hash (spec §11.3, §11.4): ``vm_page_hash_get``,
``vm_page_lookup_busy_wait``, ``vm_page_lookup_sbusy_try``, ``vm_page_next`` and
``vm_page_rename``.  They sit at the top of ``vm_page``: a hit is busied (``busy``), a miss
falls back to the locked lookup (``object``), a rename dirties the page (``pagestate``)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from app.core.constants import (
    PBUSY_LOCKED,
    PG_FICTITIOUS,
    PQ_CACHE,
    PQ_FREE,
    VM_PAGE_BITS_ALL,
)
from app.core.errors import KernelPanic, SimulatorRefusal
from app.core.kern_synch import Sleep
from app.core.objects import VmObject
from app.core.state import MachineState
from app.core.vm_page.busy import (
    _sleep_on_page,
    vm_page_lookup_busy_try,
    vm_page_sbusy_drop,
    vm_page_sbusy_try,
)
from app.core.vm_page.hash import (
    _U64,
    VM_PAGE_HASH_SET,
    _c_int,
    _hash_ready,
    page_hash_index,
    vm_page_hash_enter,
)
from app.core.vm_page.object import vm_page_insert, vm_page_remove
from app.core.vm_page.pagestate import vm_page_dirty, vm_page_is_valid
from app.core.vm_page.queues import vm_page_deactivate
from app.core.vm_page2 import _check_locked, pfn_of


def vm_page_hash_get(vm: MachineState, obj: VmObject, pindex: int) -> int:
    """``vm_page_hash_get(object, pindex)`` (spec §11.3): probe the 4 elements of the
    set; an element hits if its cached object/pindex match, it names a page, and that
    page really is (object, pindex).  The page must then be soft-busied
    (``vm_page_sbusy_try`` succeeds, i.e. it is not hard-busied; otherwise the probe
    goes on with the next element); identity is re-checked (it cannot change in
    between in the single-threaded simulator; a failure would drop the soft busy and
    go on); on a hit the element's ``ticks`` is refreshed if different.

    Returns the **soft-busied** page, or -1 (a miss: the caller falls back to the
    locked RB-tree lookup).  Stale elements (pages freed, renamed or removed since)
    simply miss."""
    if not _hash_ready(vm):
        return -1
    table = vm.hash
    hm = table.m
    hobj = table.obj
    hpindex = table.pindex
    hticks = table.ticks
    assert hm is not None and hobj is not None and hpindex is not None and hticks is not None
    pg = vm.pg
    oid = obj.id
    base = page_hash_index(obj.addr, pindex, table.size)
    for s in range(base, base + VM_PAGE_HASH_SET):
        if hobj[s] != oid or hpindex[s] != pindex:
            continue
        i = hm[s] - 1
        if i < 0 or pg.obj[i] != oid or pg.pindex[i] != pindex:
            continue
        if vm_page_sbusy_try(vm, i):
            continue
        if pg.obj[i] != oid or pg.pindex[i] != pindex:
            vm_page_sbusy_drop(vm, i)
            continue
        now = _c_int(vm.sched.ticks)
        if hticks[s] != now:
            hticks[s] = now
        return i
    return -1


# ------------------------------------------------------------------ §11.2
def vm_page_lookup_busy_wait(
    vm: MachineState, obj: VmObject, pindex: int, also_m_busy: bool, msg: str
) -> Generator[Sleep, bool, int]:
    """``vm_page_lookup_busy_wait(object, pindex, also_m_busy, msg)`` (spec §11.2): look
    the page up and hard-busy it, sleeping while it is hard-busied (or, with
    ``also_m_busy``, while its busy word is non-zero at all: a soft-busy count, WANTED
    or SWAPINPROG).  Each sleep sets PBUSY_WANTED and PG_REFERENCED and sleeps on the
    page without a timeout; after waking the RB lookup is redone, so a page that was
    removed, freed or renamed meanwhile gives -1 (NULL), and a different page now at
    ``pindex`` is the one waited for.  On success the page is entered into the hash."""
    pg = vm.pg
    busy = pg.busy
    while True:
        i: int = obj.pages.get(pindex, -1)
        if i < 0:
            return -1
        word = busy[i]
        if word & PBUSY_LOCKED or (also_m_busy and word):
            yield _sleep_on_page(vm, i, msg)
            continue
        busy[i] = word | PBUSY_LOCKED
        vm_page_hash_enter(vm, i)
        return i


def vm_page_lookup_sbusy_try(
    vm: MachineState, obj: VmObject, pindex: int, pgoff: int, pgbytes: int
) -> int:
    """``vm_page_lookup_sbusy_try(object, pindex, pgoff, pgbytes)`` (spec §11.2): the page,
    **soft-busied**, or -1.  Refused (-1) if absent, FICTITIOUS, or not fully valid and
    the byte range ``[pgoff, pgoff + pgbytes)`` is not valid (``vm_page_is_valid``:
    ``valid != 0`` and every touched 512-byte chunk valid; ``pgbytes == 0`` asks "is
    any chunk valid"), or hard-busied (``vm_page_sbusy_try`` fails).  The conditions
    are re-checked after the soft busy (they cannot change in between here).  On
    success the page is entered into the hash.

    ``vm_page_bits`` asserts ``pgoff + pgbytes <= PAGE_SIZE``; like the kernel the
    assertion is reached only when the page exists and is not fully valid."""
    i: int = obj.pages.get(pindex, -1)
    if i < 0:
        return -1
    if not _sbusy_lookup_ok(vm, i, pgoff, pgbytes):
        return -1
    if vm_page_sbusy_try(vm, i):
        return -1
    if not _sbusy_lookup_ok(vm, i, pgoff, pgbytes):
        vm_page_sbusy_drop(vm, i)
        return -1
    vm_page_hash_enter(vm, i)
    return i


def _sbusy_lookup_ok(vm: MachineState, i: int, pgoff: int, pgbytes: int) -> bool:
    pg = vm.pg
    if pg.flags[i] & PG_FICTITIOUS:
        return False
    # vm_page_is_valid asserts pgoff + pgbytes <= PAGE_SIZE (vm_page_bits)
    return pg.valid[i] == VM_PAGE_BITS_ALL or vm_page_is_valid(vm, i, pgoff, pgbytes)


def vm_page_next(vm: MachineState, i: int) -> int:
    """``vm_page_next(m)`` (spec §11.2): the RB-tree successor of ``m`` in its object if
    its pindex is exactly ``m.pindex + 1``, else -1 (NULL).  Not a lookup by key: the
    spec's §11.2 lists no ``vm_page_hash_enter`` for it, so the successor is not
    entered into the hash.  For a page without an object the kernel would walk
    garbage links; the simulator answers NULL."""
    pg = vm.pg
    oid = pg.obj[i]
    if oid == 0:
        return -1
    pindex = pg.pindex[i]
    if pindex == _U64:
        return -1
    nxt: int = vm.vmobj.objects[oid].pages.get(pindex + 1, -1)
    return nxt


# ------------------------------------------------------------------ §11.4
def vm_page_rename(vm: MachineState, i: int, new_obj: VmObject, new_pindex: int) -> None:
    """``vm_page_rename(m, new_object, new_pindex)`` (spec §11.4): asserts the page is
    hard-busied; ``vm_page_remove`` (if it has an object), ``vm_page_insert`` into the
    new object — panic "target exists" if another page is already there (checked
    before anything changes; renaming a page onto its own current slot is not a
    collision, since the kernel removes it first) — then, if the page sits on
    PQ_CACHE, ``vm_page_deactivate`` (dirty pages may not be cached), and **always**
    ``vm_page_dirty``.  Pmap mappings are the caller's business; hash elements naming
    the old identity go stale."""
    pg = vm.pg
    fn = "vm_page_rename"
    _check_locked(vm, i, fn)
    occupant: int = new_obj.pages.get(new_pindex, -1)
    if occupant >= 0 and occupant != i:
        raise KernelPanic(fn, f"vm_page_rename: target exists (object {new_obj.id},{new_pindex})")
    if pg.queue[i] - pg.pc[i] == PQ_FREE:
        # vm_page_insert's own refusal, raised here before the remove
        raise SimulatorRefusal(
            "vm_page_insert",
            f"page {pfn_of(vm, i):#x} is on PQ_FREE: the kernel does not check, but the "
            "allocator would then hand out a page that an object still owns, so the "
            "simulator refuses to create one",
        )
    vm_page_remove(vm, i)
    if not vm_page_insert(vm, i, new_obj, new_pindex):  # pragma: no cover - checked above
        raise KernelPanic(fn, f"vm_page_rename: target exists (object {new_obj.id},{new_pindex})")
    if pg.queue[i] - pg.pc[i] == PQ_CACHE:
        vm_page_deactivate(vm, i)
    vm_page_dirty(vm, i)


def _call_hash_get(vm: MachineState, object: VmObject, pindex: int) -> int | None:
    i = vm_page_hash_get(vm, object, pindex)
    return None if i < 0 else pfn_of(vm, i)


def _call_lookup_busy_wait(
    vm: MachineState, object: VmObject, pindex: int, also_m_busy: bool, msg: str
) -> Generator[Sleep, bool, int | None]:
    i = yield from vm_page_lookup_busy_wait(vm, object, pindex, also_m_busy, msg)
    return None if i < 0 else pfn_of(vm, i)


def _call_lookup_busy_try(
    vm: MachineState, object: VmObject, pindex: int, also_m_busy: bool
) -> dict[str, Any]:
    i, error = vm_page_lookup_busy_try(vm, object, pindex, also_m_busy)
    return {"page": None if i < 0 else pfn_of(vm, i), "error": error}


def _call_lookup_sbusy_try(
    vm: MachineState, object: VmObject, pindex: int, pgoff: int, pgbytes: int
) -> int | None:
    i = vm_page_lookup_sbusy_try(vm, object, pindex, pgoff, pgbytes)
    return None if i < 0 else pfn_of(vm, i)


def _call_page_next(vm: MachineState, m: int) -> int | None:
    i = vm_page_next(vm, m)
    return None if i < 0 else pfn_of(vm, i)

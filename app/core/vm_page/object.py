"""Object membership (spec §11.1, §11.2, §11.5): ``vm_object_allocate`` (a simulator verb),
``vm_page_insert``, ``vm_page_remove``, ``vm_page_lookup``.
"""

from __future__ import annotations

from app.core.constants import (
    PBUSY_LOCKED,
    PG_NEED_COMMIT,
    PG_WRITEABLE,
    PQ_L2_SIZE,
)
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal
from app.core.objects import ObjType, VmObject
from app.core.state import MachineState
from app.core.vm_page.hash import vm_page_hash_enter
from app.core.vm_page.search import vm_quickcolor
from app.core.vm_page2 import pfn_of

MAX_OBJECTS = 1 << 20


def vm_object_allocate(
    vm: MachineState,
    obj_type: ObjType,
    size: int,
    pg_color: int | None = None,
    addr: int | None = None,
) -> int:
    """``vm_object_allocate(type, size)``: a new object with ``ref_count`` 1 and
    ``pg_color = vm_quickcolor()`` (unless ``pg_color`` is given).  Returns its id.

    ``addr`` is the object's 64-bit kernel address (``vm_object_t``, e.g.
    ``0xfffff8001f2e3c00``): the page hash CRCs those 8 bytes where the kernel CRCs
    the pointer (spec §11.3), so the hash slots of a real kernel object can be
    reproduced.  By default the object's id plays the pointer.  Two objects cannot
    share an address."""
    if len(vm.vmobj.objects) >= MAX_OBJECTS:
        raise InvalidArgument(f"too many objects (limit {MAX_OBJECTS})")
    if size < 0 or size >= 1 << 64:
        raise InvalidArgument("object size must be 0 .. 2^64-1 pages")
    if addr is not None:
        if not 0 < addr < 1 << 64:
            raise InvalidArgument(f"addr must be a 64-bit kernel address (1 .. 2^64-1), got {addr}")
        for other in vm.vmobj.objects.values():
            if other.addr == addr:
                raise InvalidArgument(
                    f"object {other.id} already has address {addr:#x}; each object needs its own"
                )
    color = vm_quickcolor(vm) if pg_color is None else pg_color
    obj_id = vm.vmobj.next_object_id
    vm.vmobj.next_object_id += 1
    vm.vmobj.objects[obj_id] = VmObject(obj_id, obj_type, size, color, addr)
    return obj_id


def vm_page_insert(vm: MachineState, i: int, obj: VmObject, pindex: int) -> bool:
    """``vm_page_insert(m, object, pindex)``: TRUE on success, FALSE if the object
    already has a page at ``pindex`` (the object's generation is bumped either way).
    Panics if the page already belongs to an object.  (No swap pager: PG_SWAPPED is
    never set here.)"""
    pg = vm.pg
    if pg.obj[i] != 0:
        raise KernelPanic("vm_page_insert", "already inserted")
    if pg.queue[i] and pg.queue[i] <= PQ_L2_SIZE:  # PQ_FREE + colour
        raise SimulatorRefusal(
            "vm_page_insert",
            f"page {pfn_of(vm, i):#x} is on PQ_FREE: the kernel does not check, but the "
            "allocator would then hand out a page that an object still owns, so the "
            "simulator refuses to create one",
        )
    obj.generation += 1
    if pindex in obj.pages:
        # m.object/m.pindex were set and reset: pindex ends up 0
        pg.pindex[i] = 0
        return False
    pg.obj[i] = obj.id
    pg.pindex[i] = pindex
    obj.pages[pindex] = i
    obj.resident_page_count += 1
    vm.cpu.t_rm += 1
    if pg.valid[i] & pg.dirty[i] or pg.flags[i] & (PG_WRITEABLE | PG_NEED_COMMIT):
        obj.set_writeable_dirty()
    return True


def _vm_page_remove(vm: MachineState, i: int) -> None:
    pg = vm.pg
    oid = pg.obj[i]
    if oid == 0:
        return
    obj = vm.vmobj.objects[oid]
    del obj.pages[pg.pindex[i]]
    obj.resident_page_count -= 1
    vm.cpu.t_rm -= 1
    pg.obj[i] = 0  # pindex is left as it is
    obj.generation += 1


def vm_page_remove(vm: MachineState, i: int) -> None:
    """``vm_page_remove(m)``: detach a hard-busied page from its object; the page stays
    busied, keeps its ``pindex`` and stays on its queue."""
    if vm.pg.obj[i] == 0:
        return
    if not vm.pg.busy[i] & PBUSY_LOCKED:
        raise KernelPanic("vm_page_remove", "page not busy")
    _vm_page_remove(vm, i)


def vm_page_lookup(vm: MachineState, obj: VmObject, pindex: int) -> int:
    """``vm_page_lookup(object, pindex)``: the resident page (unbusied) or -1; a hit is
    entered into the page hash."""
    i: int = obj.pages.get(pindex, -1)
    if i >= 0:
        vm_page_hash_enter(vm, i)
    return i

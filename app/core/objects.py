"""VM objects (``struct vm_object``) as far as the page layer sees them, and
``vm_page_insert`` / ``vm_page_remove`` / ``vm_page_lookup`` (spec §11.1, §11.2, §11.5).

Each object keeps its resident pages in a sorted map ``pindex -> page index`` (the kernel's
red-black tree ``rb_memq``).
"""

from __future__ import annotations

from enum import IntEnum

from sortedcontainers import SortedDict


class ObjType(IntEnum):
    """``objtype_t`` values (``vm_object.h``)."""

    OBJT_DEFAULT = 0
    OBJT_SWAP = 1
    OBJT_VNODE = 2
    OBJT_DEVICE = 3
    OBJT_MGTDEVICE = 4
    OBJT_PHYS = 5
    OBJT_DEAD = 6
    OBJT_MARKER = 7


# vm_object flags this layer touches
OBJ_DEAD = 0x0008
OBJ_WRITEABLE = 0x0080
OBJ_MIGHTBEDIRTY = 0x0100


class VmObject:
    """One VM object: id, type, ``pg_color``, ``ref_count``, ``flags``, ``generation``,
    ``resident_page_count``, ``size`` (pages) and the page tree.  ``addr`` is the 64-bit
    value the page hash takes in place of the kernel's object pointer: the id unless
    ``vm_object_allocate`` was given a kernel address."""

    __slots__ = (
        "id",
        "addr",
        "type",
        "size",
        "pg_color",
        "ref_count",
        "flags",
        "generation",
        "resident_page_count",
        "pages",
    )

    def __init__(
        self, obj_id: int, obj_type: ObjType, size: int, pg_color: int, addr: int | None = None
    ) -> None:
        self.id = obj_id
        self.addr = obj_id if addr is None else addr
        self.type = obj_type
        self.size = size
        self.pg_color = pg_color
        self.ref_count = 1
        self.flags = 0
        self.generation = 1
        self.resident_page_count = 0
        self.pages: SortedDict = SortedDict()

    def set_writeable_dirty(self) -> None:
        """``vm_object_set_writeable_dirty``: the object may now hold dirty pages."""
        self.flags |= OBJ_WRITEABLE | OBJ_MIGHTBEDIRTY

    def state_tuple(self) -> tuple[int, ...]:
        items: list[int] = [
            self.id,
            int(self.type),
            self.size,
            self.pg_color,
            self.ref_count,
            self.flags,
            self.generation,
            self.resident_page_count,
        ]
        for pindex, idx in self.pages.items():
            items.append(pindex)
            items.append(idx)
        if self.addr != self.id:
            # only an explicit address changes the tuple, so earlier digests still hold
            items.append(-1)
            items.append(self.addr)
        return tuple(items)

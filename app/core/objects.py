"""VM objects (``struct vm_object``) as far as the page layer sees them, and
``vm_page_insert`` / ``vm_page_remove`` / ``vm_page_lookup`` (spec §11.1, §11.2, §11.5).

Each object keeps its resident pages in a sorted map ``pindex -> page index`` (the kernel's
red-black tree ``rb_memq``), a ``PageTree``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from enum import IntEnum


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


class PageTree:
    """``rb_memq``: ``pindex -> page index``, iterated in pindex order.

    A dict for lookups, inserts and removals (the per-call hot path: constant time, and
    typed, so the compiled core runs them natively) and a sorted key list for ordered
    walks.  The list is kept up to date while keys are appended in rising order or the
    highest key is removed (what a growing object does) and otherwise rebuilt at the next
    ordered walk.  Iteration order, and so every digest, is the sorted map's."""

    __slots__ = ("_map", "_keys", "_ordered")

    def __init__(self, items: Iterable[tuple[int, int]] = ()) -> None:
        self._map: dict[int, int] = dict(items)
        self._keys: list[int] = []
        self._ordered = False

    def _sorted_keys(self) -> list[int]:
        if not self._ordered:
            self._keys = sorted(self._map)
            self._ordered = True
        return self._keys

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, pindex: object) -> bool:
        return pindex in self._map

    def __getitem__(self, pindex: int) -> int:
        return self._map[pindex]

    def get(self, pindex: int, default: int) -> int:
        return self._map.get(pindex, default)

    def __setitem__(self, pindex: int, i: int) -> None:
        m = self._map
        if pindex not in m and self._ordered:
            keys = self._keys
            if not keys or pindex > keys[-1]:
                keys.append(pindex)
            else:
                self._ordered = False
        m[pindex] = i

    def __delitem__(self, pindex: int) -> None:
        del self._map[pindex]
        if self._ordered:
            keys = self._keys
            if keys[-1] == pindex:
                keys.pop()
            else:
                self._ordered = False

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._sorted_keys()))

    def keys(self) -> list[int]:
        """The pindexes, ascending."""
        return list(self._sorted_keys())

    def values(self) -> list[int]:
        """The page indexes, in pindex order."""
        m = self._map
        return [m[k] for k in self._sorted_keys()]

    def items(self) -> list[tuple[int, int]]:
        """``(pindex, page index)`` pairs, in pindex order."""
        m = self._map
        return [(k, m[k]) for k in self._sorted_keys()]

    def irange(self, lo: int, hi: int) -> list[int]:
        """The pindexes from ``lo`` to ``hi`` inclusive, ascending."""
        keys = self._sorted_keys()
        return keys[bisect_left(keys, lo) : bisect_right(keys, hi)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PageTree) and self._map == other._map

    def __repr__(self) -> str:
        return f"PageTree({self.items()!r})"


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
        self.pages = PageTree()

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

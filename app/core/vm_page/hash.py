"""The page hash table (spec §11.3): its allocation at ``vm_page_startup_finish``,
``vm_page_hash_enter`` (which ``vm_page_insert`` calls) and the table's own listing.  The
lookups through it live in ``lookup.py``.

The page hash is a lockless lookup heuristic: ``size + 4`` elements ``{m, object, pindex,
ticks}``; an (object, pindex) pair maps to a *set* of 4 consecutive elements starting at
``page_hash_index(...)`` (sets overlap).  Its size, ``m.hash.size``, is set by
``vm_page_startup_finish``; before that it is 0, the kernel's NULL hash, and every hash
operation is a no-op or a miss.

Storage: four parallel numpy arrays of ``size + 4`` elements, allocated (zeroed, so the
operating system commits pages only when they are written) on the first
``vm_page_hash_enter`` after the size is known — a lookup on a never-written hash is a miss
either way.  The element fields are stored as:

* ``m``: page-array index **+ 1** (0 = NULL), int32;
* ``object``: the object's id (0 = NULL), int32, as the cached value; the 8 little-endian
  bytes hashed by CRC-32C are the object's ``addr`` (its kernel address when
  ``vm_object_allocate`` was given one, else its id), standing in for the kernel's pointer;
* ``pindex``: uint64;
* ``ticks``: the C ``int`` value of ``ticks`` when the element was last written or hit,
  int32.

Time: ``m.sched.ticks`` is an unbounded Python int; the hash models the kernel's ``int ticks``
as its signed 32-bit wrap (``_c_int``), and an age ``ticks - e.ticks`` is computed as a
wrapping 32-bit subtraction (what the compiled code does), so after the clock wraps an
element written "in the future" shows a negative age (the ``age < -1`` clause).
"""

from __future__ import annotations

from typing import Any, Final

import crc32c
import numpy as np

from app.core.constants import (
    PG_MAPPEDMULTI,
)
from app.core.objects import ObjType
from app.core.state import MachineState
from app.core.sysctl import sysctl_value
from app.core.vm_page2 import pfn_of

#: Elements probed per lookup (``VM_PAGE_HASH_SET``).
VM_PAGE_HASH_SET: Final = 4


_U64: Final = (1 << 64) - 1


NDArray = np.ndarray[Any, Any]


def _c_int(x: int) -> int:
    """``x`` as a C ``int`` (two's-complement 32-bit wrap)."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def page_hash_index(object_id: int, pindex: int, size: int) -> int:
    """``vm_page_hash_hash(object, pindex)`` (spec §11.3): the first element of the set for
    (object, pindex) in a hash of ``size`` (a power of two) elements.

    ``h = crc32c(8 little-endian bytes of the object id) << 2`` in a u64; ``h ^= h >> 21``;
    ``h += pindex * 4``; ``h &= size - 1``.  The low two bits are *not* cleared, so sets
    may overlap (the kernel's "mask by ~3" comment notwithstanding)."""
    h = crc32c.crc32c(object_id.to_bytes(8, "little")) << 2
    h ^= h >> 21
    h = (h + pindex * 4) & _U64
    return h & (size - 1)


def _init_hash(vm: MachineState) -> None:
    """Boot state of the page hash: NULL (no elements); ``hash.size`` itself is set
    by ``vm_page_startup_finish``."""
    vm.hash.arrays = None
    vm.hash.m = None
    vm.hash.obj = None
    vm.hash.pindex = None
    vm.hash.ticks = None
    vm.hash.alloc_size = 0


# ------------------------------------------------------------------ storage
def _page_hash_alloc(vm: MachineState) -> bool:
    """Make sure the element arrays exist for the current ``hash.size`` (``size +
    4`` zeroed elements, as ``vm_page_startup_finish`` allocates them).  False while
    the hash is NULL (size 0)."""
    size = vm.hash.size
    if not size:
        return False
    if vm.hash.arrays is not None and vm.hash.alloc_size == size:
        return True
    n = size + VM_PAGE_HASH_SET
    arrays: dict[str, NDArray] = {
        "m": np.zeros(n, dtype=np.int32),
        "object": np.zeros(n, dtype=np.int32),
        "pindex": np.zeros(n, dtype=np.uint64),
        "ticks": np.zeros(n, dtype=np.int32),
    }
    vm.hash.arrays = arrays
    vm.hash.m = memoryview(arrays["m"])  # type: ignore[arg-type]
    vm.hash.obj = memoryview(arrays["object"])  # type: ignore[arg-type]
    vm.hash.pindex = memoryview(arrays["pindex"])  # type: ignore[arg-type]
    vm.hash.ticks = memoryview(arrays["ticks"])  # type: ignore[arg-type]
    vm.hash.alloc_size = size
    return True


def _hash_ready(vm: MachineState) -> bool:
    """The hash is allocated and matches ``hash.size`` (nothing was ever entered
    otherwise, so a probe can only miss)."""
    table = vm.hash
    return table.arrays is not None and table.size != 0 and table.alloc_size == table.size


# ------------------------------------------------------------------ §11.3
def vm_page_hash_enter(vm: MachineState, i: int) -> None:
    """``vm_page_hash_enter(m)`` (spec §11.3), called by every lookup variant on success.

    Gates, in order: the page has PG_MAPPEDMULTI; the hash is allocated; the page lies
    in ``vm_page_array``; it has an object; and if ``vm.page_hash_vnode_only`` is set,
    the object is OBJT_VNODE.  If the page is already in its set, only its ``ticks`` is
    refreshed (and only if different).  Otherwise a victim element is overwritten.

    Victim quirk: the kernel starts with ``best = slot 0`` and ``best_age = age of slot
    0`` and never updates ``best_age``, so the victim is the **last** slot whose age
    exceeds slot 0's (or whose age is below -1: clock wrap / SMP skew), else slot 0 —
    not necessarily the oldest.  An empty element has ``ticks == 0``, so its age is the
    current ``ticks``."""
    pg = vm.pg
    if not pg.flags[i] & PG_MAPPEDMULTI:
        return
    if not vm.hash.size:
        return
    if not 0 <= i < vm.page_range:
        return
    oid = pg.obj[i]
    if oid == 0:
        return
    if (
        sysctl_value(vm, "vm.page_hash_vnode_only")
        and vm.vmobj.objects[oid].type != ObjType.OBJT_VNODE
    ):
        return
    _page_hash_alloc(vm)
    table = vm.hash
    hm = table.m
    hobj = table.obj
    hpindex = table.pindex
    hticks = table.ticks
    assert hm is not None and hobj is not None and hpindex is not None and hticks is not None
    pindex = pg.pindex[i]
    now = _c_int(vm.sched.ticks)
    base = page_hash_index(vm.vmobj.objects[oid].addr, pindex, table.size)
    best = base
    best_age = _c_int(now - hticks[base])
    for s in range(base, base + VM_PAGE_HASH_SET):
        if hm[s] == i + 1 and hobj[s] == oid and hpindex[s] == pindex:
            if hticks[s] != now:
                hticks[s] = now
            return
        age = _c_int(now - hticks[s])
        if age < -1:
            best = s
        if best_age < age:
            best = s
    victim = hm[best] - 1
    hm[best] = i + 1
    hobj[best] = oid
    hpindex[best] = pindex
    hticks[best] = now
    if vm.trace is not None:
        vm.event(
            "page_hash_enter",
            pfn=pfn_of(vm, i),
            slot=best,
            replaced=pfn_of(vm, victim) if victim >= 0 else None,
        )


# ------------------------------------------------------------------ views
def page_hash_view(vm: MachineState, object_id: int | None = None) -> dict[str, Any]:
    """The occupied page-hash elements (optionally only those caching ``object_id``):
    ``slot``, ``pfn``, ``object``, ``pindex``, ``ticks`` and ``stale`` (the page no longer
    is that object's page at that pindex — legal: the kernel never cleans elements)."""
    entries: list[dict[str, Any]] = []
    size = vm.hash.size
    view: dict[str, Any] = {
        "size": size,
        "elements": size + VM_PAGE_HASH_SET if size else 0,
        "allocated": _hash_ready(vm),
        "vnode_only": bool(sysctl_value(vm, "vm.page_hash_vnode_only")),
        "entries": entries,
    }
    arrays = vm.hash.arrays
    if arrays is None or not _hash_ready(vm):
        return view
    pg = vm.pg
    for slot in np.flatnonzero(arrays["m"]).tolist():
        oid = int(arrays["object"][slot])
        if object_id is not None and oid != object_id:
            continue
        i = int(arrays["m"][slot]) - 1
        pindex = int(arrays["pindex"][slot])
        entries.append(
            {
                "slot": slot,
                "pfn": pfn_of(vm, i),
                "object": oid,
                "pindex": pindex,
                "ticks": int(arrays["ticks"][slot]),
                "stale": pg.obj[i] != oid or pg.pindex[i] != pindex,
            }
        )
    return view


# ------------------------------------------------------------------ registry


# ------------------------------------------------------------------ checks
def check_hash_invariants(vm: MachineState) -> None:
    """Structural sanity of the page hash (stale elements are legal, as in the kernel):
    the arrays match ``hash.size``; every occupied element names a page inside
    ``vm_page_array`` and a non-NULL object id that was handed out; unoccupied elements
    are all zero."""
    from app.core.errors import InvariantError

    arrays = vm.hash.arrays
    if arrays is None:
        return
    size = vm.hash.alloc_size
    if vm.hash.size not in (0, size):
        # hash.size changed under an allocated hash: it is reallocated (empty) on
        # the next enter and nothing may be looked up in the old one
        return
    n = size + VM_PAGE_HASH_SET
    for name, arr in arrays.items():
        if arr.shape != (n,):
            raise InvariantError(f"page hash array {name} has {arr.shape[0]} elements, not {n}")
    hm = arrays["m"].astype(np.int64)
    occupied = hm != 0
    if ((hm[occupied] < 1) | (hm[occupied] > vm.page_range)).any():
        raise InvariantError("a page hash element names a page outside vm_page_array")
    objs = arrays["object"][occupied].astype(np.int64)
    if ((objs < 1) | (objs >= vm.vmobj.next_object_id)).any():
        raise InvariantError("a page hash element caches an object id never allocated")
    empty = ~occupied
    if (
        arrays["object"][empty].any()
        or arrays["pindex"][empty].any()
        or arrays["ticks"][empty].any()
    ):
        raise InvariantError("an empty page hash element has non-zero fields")
    if hm[size + VM_PAGE_HASH_SET - 1] != 0:
        # the last spare element is never part of any set (h + 3 <= size + 2)
        raise InvariantError("the page hash's last spare element is in use")


def hash_digest_parts(vm: MachineState) -> list[Any]:
    parts: list[Any] = []
    arrays = vm.hash.arrays
    entries: tuple[tuple[int, ...], ...] = ()
    if arrays is not None and _hash_ready(vm):
        slots = np.flatnonzero(arrays["m"])
        entries = tuple(
            zip(
                slots.tolist(),
                arrays["m"][slots].tolist(),
                arrays["object"][slots].tolist(),
                arrays["pindex"][slots].tolist(),
                arrays["ticks"][slots].tolist(),
                strict=True,
            )
        )
    parts.append(("page_hash", vm.hash.size, entries))
    return parts

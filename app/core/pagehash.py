"""The page hash and the lookup variants (spec §11.2–11.4): ``vm_page_hash_enter``,
``vm_page_hash_get``, ``vm_page_lookup_busy_wait``, ``vm_page_lookup_sbusy_try``,
``vm_page_next`` and ``vm_page_rename`` (``vm_page_lookup`` lives in ``objects_ops.py``,
``vm_page_lookup_busy_try`` in ``alloc.py``; both call ``vm_page_hash_enter`` here).

The page hash is a lockless lookup heuristic: ``size + 4`` elements ``{m, object, pindex,
ticks}``; an (object, pindex) pair maps to a *set* of 4 consecutive elements starting at
``page_hash_index(...)`` (sets overlap).  Its size, ``m.page_hash_size``, is set by
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

Time: ``m.ticks`` is an unbounded Python int; the hash models the kernel's ``int ticks``
as its signed 32-bit wrap (``_c_int``), and an age ``ticks - e.ticks`` is computed as a
wrapping 32-bit subtraction (what the compiled code does), so after the clock wraps an
element written "in the future" shows a negative age (the ``age < -1`` clause).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import crc32c
import numpy as np

from .constants import (
    PBUSY_LOCKED,
    PG_FICTITIOUS,
    PG_MAPPEDMULTI,
    PQ_CACHE,
    PQ_FREE,
    VM_PAGE_BITS_ALL,
)
from .errors import KernelPanic, SimulatorRefusal
from .objects import ObjType, VmObject
from .pagestate import PageStateOps
from .sched import Sleep
from .sysctl import sysctl_value

#: Elements probed per lookup (``VM_PAGE_HASH_SET``).
VM_PAGE_HASH_SET = 4
_U64 = (1 << 64) - 1

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


class HashOps(PageStateOps):
    # The element arrays (None until the first enter after vm_page_startup_finish) and
    # their memoryviews for scalar access on the hot path.
    _hash_arrays: dict[str, NDArray] | None = None
    _hash_m: memoryview | None = None
    _hash_obj: memoryview | None = None
    _hash_pindex: memoryview | None = None
    _hash_ticks: memoryview | None = None
    _hash_alloc_size: int = 0

    def _init_hash(self) -> None:
        """Boot state of the page hash: NULL (no elements); ``page_hash_size`` itself is set
        by ``vm_page_startup_finish``."""
        self._hash_arrays = None
        self._hash_m = None
        self._hash_obj = None
        self._hash_pindex = None
        self._hash_ticks = None
        self._hash_alloc_size = 0

    # ------------------------------------------------------------------ storage
    def _page_hash_alloc(self) -> bool:
        """Make sure the element arrays exist for the current ``page_hash_size`` (``size +
        4`` zeroed elements, as ``vm_page_startup_finish`` allocates them).  False while
        the hash is NULL (size 0)."""
        size = self.page_hash_size
        if not size:
            return False
        if self._hash_arrays is not None and self._hash_alloc_size == size:
            return True
        n = size + VM_PAGE_HASH_SET
        arrays: dict[str, NDArray] = {
            "m": np.zeros(n, dtype=np.int32),
            "object": np.zeros(n, dtype=np.int32),
            "pindex": np.zeros(n, dtype=np.uint64),
            "ticks": np.zeros(n, dtype=np.int32),
        }
        self._hash_arrays = arrays
        self._hash_m = memoryview(arrays["m"])  # type: ignore[arg-type]
        self._hash_obj = memoryview(arrays["object"])  # type: ignore[arg-type]
        self._hash_pindex = memoryview(arrays["pindex"])  # type: ignore[arg-type]
        self._hash_ticks = memoryview(arrays["ticks"])  # type: ignore[arg-type]
        self._hash_alloc_size = size
        return True

    def _hash_ready(self) -> bool:
        """The hash is allocated and matches ``page_hash_size`` (nothing was ever entered
        otherwise, so a probe can only miss)."""
        return (
            self._hash_arrays is not None
            and self.page_hash_size != 0
            and self._hash_alloc_size == self.page_hash_size
        )

    # ------------------------------------------------------------------ §11.3
    def vm_page_hash_enter(self, i: int) -> None:
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
        pg = self.pg
        if not pg.flags[i] & PG_MAPPEDMULTI:
            return
        if not self.page_hash_size:
            return
        if not 0 <= i < self.page_range:
            return
        oid = pg.obj[i]
        if oid == 0:
            return
        if (
            sysctl_value(self, "vm.page_hash_vnode_only")
            and self.objects[oid].type != ObjType.OBJT_VNODE
        ):
            return
        self._page_hash_alloc()
        hm = self._hash_m
        hobj = self._hash_obj
        hpindex = self._hash_pindex
        hticks = self._hash_ticks
        assert hm is not None and hobj is not None and hpindex is not None and hticks is not None
        pindex = pg.pindex[i]
        now = _c_int(self.ticks)
        base = page_hash_index(self.objects[oid].addr, pindex, self.page_hash_size)
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
        if self.trace is not None:
            self.event(
                "page_hash_enter",
                pfn=self.pfn_of(i),
                slot=best,
                replaced=self.pfn_of(victim) if victim >= 0 else None,
            )

    def vm_page_hash_get(self, obj: VmObject, pindex: int) -> int:
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
        if not self._hash_ready():
            return -1
        hm = self._hash_m
        hobj = self._hash_obj
        hpindex = self._hash_pindex
        hticks = self._hash_ticks
        assert hm is not None and hobj is not None and hpindex is not None and hticks is not None
        pg = self.pg
        oid = obj.id
        base = page_hash_index(obj.addr, pindex, self.page_hash_size)
        for s in range(base, base + VM_PAGE_HASH_SET):
            if hobj[s] != oid or hpindex[s] != pindex:
                continue
            i = hm[s] - 1
            if i < 0 or pg.obj[i] != oid or pg.pindex[i] != pindex:
                continue
            if self.vm_page_sbusy_try(i):
                continue
            if pg.obj[i] != oid or pg.pindex[i] != pindex:
                self.vm_page_sbusy_drop(i)
                continue
            now = _c_int(self.ticks)
            if hticks[s] != now:
                hticks[s] = now
            return i
        return -1

    # ------------------------------------------------------------------ §11.2
    def vm_page_lookup_busy_wait(
        self, obj: VmObject, pindex: int, also_m_busy: bool, msg: str
    ) -> Generator[Sleep, bool, int]:
        """``vm_page_lookup_busy_wait(object, pindex, also_m_busy, msg)`` (spec §11.2): look
        the page up and hard-busy it, sleeping while it is hard-busied (or, with
        ``also_m_busy``, while its busy word is non-zero at all: a soft-busy count, WANTED
        or SWAPINPROG).  Each sleep sets PBUSY_WANTED and PG_REFERENCED and sleeps on the
        page without a timeout; after waking the RB lookup is redone, so a page that was
        removed, freed or renamed meanwhile gives -1 (NULL), and a different page now at
        ``pindex`` is the one waited for.  On success the page is entered into the hash."""
        pg = self.pg
        busy = pg.busy
        while True:
            i: int = obj.pages.get(pindex, -1)
            if i < 0:
                return -1
            word = busy[i]
            if word & PBUSY_LOCKED or (also_m_busy and word):
                yield self._sleep_on_page(i, msg)
                continue
            busy[i] = word | PBUSY_LOCKED
            self.vm_page_hash_enter(i)
            return i

    def vm_page_lookup_sbusy_try(self, obj: VmObject, pindex: int, pgoff: int, pgbytes: int) -> int:
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
        if not self._sbusy_lookup_ok(i, pgoff, pgbytes):
            return -1
        if self.vm_page_sbusy_try(i):
            return -1
        if not self._sbusy_lookup_ok(i, pgoff, pgbytes):
            self.vm_page_sbusy_drop(i)
            return -1
        self.vm_page_hash_enter(i)
        return i

    def _sbusy_lookup_ok(self, i: int, pgoff: int, pgbytes: int) -> bool:
        pg = self.pg
        if pg.flags[i] & PG_FICTITIOUS:
            return False
        # vm_page_is_valid asserts pgoff + pgbytes <= PAGE_SIZE (vm_page_bits)
        return pg.valid[i] == VM_PAGE_BITS_ALL or self.vm_page_is_valid(i, pgoff, pgbytes)

    def vm_page_next(self, i: int) -> int:
        """``vm_page_next(m)`` (spec §11.2): the RB-tree successor of ``m`` in its object if
        its pindex is exactly ``m.pindex + 1``, else -1 (NULL).  Not a lookup by key: the
        spec's §11.2 lists no ``vm_page_hash_enter`` for it, so the successor is not
        entered into the hash.  For a page without an object the kernel would walk
        garbage links; the simulator answers NULL."""
        pg = self.pg
        oid = pg.obj[i]
        if oid == 0:
            return -1
        pindex = pg.pindex[i]
        if pindex == _U64:
            return -1
        nxt: int = self.objects[oid].pages.get(pindex + 1, -1)
        return nxt

    # ------------------------------------------------------------------ §11.4
    def vm_page_rename(self, i: int, new_obj: VmObject, new_pindex: int) -> None:
        """``vm_page_rename(m, new_object, new_pindex)`` (spec §11.4): asserts the page is
        hard-busied; ``vm_page_remove`` (if it has an object), ``vm_page_insert`` into the
        new object — panic "target exists" if another page is already there (checked
        before anything changes; renaming a page onto its own current slot is not a
        collision, since the kernel removes it first) — then, if the page sits on
        PQ_CACHE, ``vm_page_deactivate`` (dirty pages may not be cached), and **always**
        ``vm_page_dirty``.  Pmap mappings are the caller's business; hash elements naming
        the old identity go stale."""
        pg = self.pg
        fn = "vm_page_rename"
        self._check_locked(i, fn)
        occupant: int = new_obj.pages.get(new_pindex, -1)
        if occupant >= 0 and occupant != i:
            raise KernelPanic(
                fn, f"vm_page_rename: target exists (object {new_obj.id},{new_pindex})"
            )
        if pg.queue[i] - pg.pc[i] == PQ_FREE:
            # vm_page_insert's own refusal, raised here before the remove
            raise SimulatorRefusal(
                "vm_page_insert",
                f"page {self.pfn_of(i):#x} is on PQ_FREE: the kernel does not check, but the "
                "allocator would then hand out a page that an object still owns, so the "
                "simulator refuses to create one",
            )
        self.vm_page_remove(i)
        if not self.vm_page_insert(i, new_obj, new_pindex):  # pragma: no cover - checked above
            raise KernelPanic(
                fn, f"vm_page_rename: target exists (object {new_obj.id},{new_pindex})"
            )
        if pg.queue[i] - pg.pc[i] == PQ_CACHE:
            self.vm_page_deactivate(i)
        self.vm_page_dirty(i)

    # ------------------------------------------------------------------ views
    def page_hash_view(self, object_id: int | None = None) -> dict[str, Any]:
        """The occupied page-hash elements (optionally only those caching ``object_id``):
        ``slot``, ``pfn``, ``object``, ``pindex``, ``ticks`` and ``stale`` (the page no longer
        is that object's page at that pindex — legal: the kernel never cleans elements)."""
        entries: list[dict[str, Any]] = []
        size = self.page_hash_size
        view: dict[str, Any] = {
            "size": size,
            "elements": size + VM_PAGE_HASH_SET if size else 0,
            "allocated": self._hash_ready(),
            "vnode_only": bool(sysctl_value(self, "vm.page_hash_vnode_only")),
            "entries": entries,
        }
        arrays = self._hash_arrays
        if arrays is None or not self._hash_ready():
            return view
        pg = self.pg
        for slot in np.flatnonzero(arrays["m"]).tolist():
            oid = int(arrays["object"][slot])
            if object_id is not None and oid != object_id:
                continue
            i = int(arrays["m"][slot]) - 1
            pindex = int(arrays["pindex"][slot])
            entries.append(
                {
                    "slot": slot,
                    "pfn": self.pfn_of(i),
                    "object": oid,
                    "pindex": pindex,
                    "ticks": int(arrays["ticks"][slot]),
                    "stale": pg.obj[i] != oid or pg.pindex[i] != pindex,
                }
            )
        return view

    # ------------------------------------------------------------------ registry
    def _call_hash_enter(self, m: int) -> None:
        self.vm_page_hash_enter(m)

    def _call_hash_get(self, object: VmObject, pindex: int) -> int | None:
        i = self.vm_page_hash_get(object, pindex)
        return None if i < 0 else self.pfn_of(i)

    def _call_lookup_busy_wait(
        self, object: VmObject, pindex: int, also_m_busy: bool, msg: str
    ) -> Generator[Sleep, bool, int | None]:
        i = yield from self.vm_page_lookup_busy_wait(object, pindex, also_m_busy, msg)
        return None if i < 0 else self.pfn_of(i)

    def _call_lookup_busy_try(
        self, object: VmObject, pindex: int, also_m_busy: bool
    ) -> dict[str, Any]:
        i, error = self.vm_page_lookup_busy_try(object, pindex, also_m_busy)
        return {"page": None if i < 0 else self.pfn_of(i), "error": error}

    def _call_lookup_sbusy_try(
        self, object: VmObject, pindex: int, pgoff: int, pgbytes: int
    ) -> int | None:
        i = self.vm_page_lookup_sbusy_try(object, pindex, pgoff, pgbytes)
        return None if i < 0 else self.pfn_of(i)

    def _call_page_next(self, m: int) -> int | None:
        i = self.vm_page_next(m)
        return None if i < 0 else self.pfn_of(i)

    def _call_rename(self, m: int, new_object: VmObject, new_pindex: int) -> None:
        self.vm_page_rename(m, new_object, new_pindex)

    # ------------------------------------------------------------------ checks
    def _check_area_invariants(self) -> None:
        """Structural sanity of the page hash (stale elements are legal, as in the kernel):
        the arrays match ``page_hash_size``; every occupied element names a page inside
        ``vm_page_array`` and a non-NULL object id that was handed out; unoccupied elements
        are all zero."""
        super()._check_area_invariants()
        from .invariants import InvariantError

        arrays = self._hash_arrays
        if arrays is None:
            return
        size = self._hash_alloc_size
        if self.page_hash_size not in (0, size):
            # page_hash_size changed under an allocated hash: it is reallocated (empty) on
            # the next enter and nothing may be looked up in the old one
            return
        n = size + VM_PAGE_HASH_SET
        for name, arr in arrays.items():
            if arr.shape != (n,):
                raise InvariantError(f"page hash array {name} has {arr.shape[0]} elements, not {n}")
        hm = arrays["m"].astype(np.int64)
        occupied = hm != 0
        if ((hm[occupied] < 1) | (hm[occupied] > self.page_range)).any():
            raise InvariantError("a page hash element names a page outside vm_page_array")
        objs = arrays["object"][occupied].astype(np.int64)
        if ((objs < 1) | (objs >= self.next_object_id)).any():
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

    def _digest_parts(self) -> list[Any]:
        parts = super()._digest_parts()
        arrays = self._hash_arrays
        entries: tuple[tuple[int, ...], ...] = ()
        if arrays is not None and self._hash_ready():
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
        parts.append(("page_hash", self.page_hash_size, entries))
        return parts

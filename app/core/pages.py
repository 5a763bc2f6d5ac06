"""``vm_page_array``: the page records, one per physical page frame in
``[first_page, first_page + page_range)``, holes included.

The records are stored as a structure of arrays, one packed typed array per field: a
``librt.vecs.vec`` (``vec[i32]``, ``vec[i64]`` ...), which the compiled core (mypyc)
indexes natively, several times faster than a ``memoryview`` or a numpy scalar, and which
the source build indexes as fast as a ``memoryview``.  Queue links (``pageq``) are
page-array indices, -1 for "none"; ``obj`` is an object id, 0 for NULL.  ``phys_addr`` is
derived from the index (``(first_page + i) * PAGE_SIZE``), as ``vm_page_startup`` sets it
for every record.

Each field also has a numpy array in its *canonical* dtype (``PAGE_FIELDS``, the kernel's
type): ``arrays[name]``, a writable view onto the vec's own memory (no copy; a strided
view of the low bytes where the vec's items are wider, see ``PAGE_STORAGE``).  Vectorised
code (boot, contiguous ranges, the invariants, the digest, snapshots, the page map) reads
and writes those; a write through either is seen by the other.  Snapshot files and
``state_digest`` see the canonical dtypes only, exactly as when the fields were numpy
arrays.

Per page this costs 56 bytes, all resident but ``pindex``'s 8 (numpy's zero pages are
lazy) (the kernel's ``struct vm_page`` is 128).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from librt.vecs import vec
from mypy_extensions import i16, i32, i64, mypyc_attr, u8

# field name -> canonical numpy dtype (the kernel's type; snapshots and the digest use it);
# the kernel's name for the field in the comment
PAGE_FIELDS: dict[str, str] = {
    "next": "i4",  # pageq.tqe_next
    "prev": "i4",  # pageq.tqe_prev
    "queue": "u2",  # queue
    "pc": "u2",  # pc (colour)
    "flags": "u4",  # flags (PG_*)
    "busy": "u4",  # busy_count
    "wire": "u4",  # wire_count
    "hold": "i4",  # hold_count
    "obj": "i4",  # object (id, 0 = NULL)
    "pindex": "u8",  # pindex
    "act": "u1",  # act_count
    "valid": "u1",  # valid
    "dirty": "u1",  # dirty
    "pat": "u1",  # pat_mode
}

#: field name -> numpy dtype of its vec's items (``vec[i16]`` is ``i2`` ...).  Chosen so
#: that every value the model can store fits and arithmetic rarely mixes native types:
#: - ``queue``/``pc`` are ``i16`` (queues < 5121, colours < 1024; ``pc + PQ_FREE`` goes
#:   into ``queue``);
#: - ``flags``, ``busy`` and ``wire`` are ``i64``: the kernel's are u_int and every value
#:   is reachable or checked: ``vm_page_flag_set`` accepts any 32-bit word, ``busy_count``
#:   carries PBUSY_LOCKED (bit 31), ``wire_count`` is checked against 0x80000000 and
#:   0xFFFFFFFF (an ``i32`` holds none of these);
#: - ``pindex`` is no vec: the kernel's u64 takes every value up to 2^64-1, which no vec
#:   type holds, so it stays a numpy ``u8`` array read through a ``memoryview`` (touched
#:   once per insert and remove; the compiled core indexes a memoryview generically).
PAGE_STORAGE: dict[str, str] = {
    "next": "i4",
    "prev": "i4",
    "queue": "i2",
    "pc": "i2",
    "flags": "i8",
    "busy": "i8",
    "wire": "i8",
    "hold": "i4",
    "obj": "i4",
    "pindex": "u8",
    "act": "u1",
    "valid": "u1",
    "dirty": "u1",
    "pat": "u1",
}

BYTES_PER_PAGE = sum(np.dtype(t).itemsize for t in PAGE_STORAGE.values())


@mypyc_attr(native_class=False)
class _VecMemory:
    """What a canonical view's memory belongs to: the vec (kept alive as long as the view
    is) and numpy's ``__array_interface__`` describing its items."""

    def __init__(self, owner: object, interface: dict[str, Any]) -> None:
        self.owner = owner
        self.__array_interface__ = interface


def vec_view(v: object, storage: str, canonical: str, n: int) -> np.ndarray[Any, Any]:
    """A writable numpy array of ``n`` items of dtype ``canonical`` onto the memory of
    vec ``v`` (``n`` items of dtype ``storage``, at least as wide): the low bytes of each
    item, little-endian.  A vec's buffer is read-only to the buffer protocol (numpy's
    ``frombuffer`` gives a read-only array), but its items are plain memory that never
    moves while the vec lives: the view is built from the address the buffer exposes."""
    item = np.dtype(storage).itemsize
    want = np.dtype(canonical)
    if n == 0:
        return np.zeros(0, dtype=want)
    base = np.frombuffer(v, dtype=storage)  # type: ignore[call-overload]
    addr: int = base.__array_interface__["data"][0]
    memory = _VecMemory(
        v,
        {
            "shape": (n,),
            "typestr": want.str,
            "data": (addr, False),
            "strides": (item,),
            "version": 3,
        },
    )
    return np.asarray(memory)


class PageArray:
    """The page records of one machine (``vm_page_array``)."""

    __slots__ = (
        "size",
        "arrays",
        "next",
        "prev",
        "queue",
        "pc",
        "flags",
        "busy",
        "wire",
        "hold",
        "obj",
        "pindex",
        "act",
        "valid",
        "dirty",
        "pat",
    )

    size: int
    arrays: dict[str, np.ndarray[Any, Any]]
    next: vec[i32]
    prev: vec[i32]
    queue: vec[i16]
    pc: vec[i16]
    flags: vec[i64]
    busy: vec[i64]
    wire: vec[i64]
    hold: vec[i32]
    obj: vec[i32]
    pindex: memoryview
    act: vec[u8]
    valid: vec[u8]
    dirty: vec[u8]
    pat: vec[u8]

    def __init__(self, size: int, source: dict[str, np.ndarray[Any, Any]] | None = None) -> None:
        """``size`` records, all zero but the links (-1), or copied from ``source`` (the
        canonical arrays of every field, e.g. a snapshot's; ValueError if a value does not
        fit its vec).  Numpy writes through ``arrays`` are not checked: the ``u2`` views of
        ``queue`` and ``pc`` must stay below 2^15 (the queues end at PQ_COUNT = 5121)."""
        self.size = size
        # one zeroed buffer, as wide as the widest field, is the source of every fresh
        # field (its pages are mapped once, not once per field)
        zero = np.zeros(size * 8 if source is None else 0, dtype=np.uint8)

        def init(name: str) -> np.ndarray[Any, Any]:
            if source is not None:
                # the canonical values, widened (-1 links stay -1; u4 words fit an i64)
                return source[name].view(PAGE_FIELDS[name]).astype(PAGE_STORAGE[name])
            if name == "pindex":
                return np.zeros(size, dtype=PAGE_STORAGE[name])  # kept: its own array
            return zero.view(PAGE_STORAGE[name])[:size]

        self.next = vec[i32](init("next"))
        self.prev = vec[i32](init("prev"))
        self.queue = vec[i16](init("queue"))
        self.pc = vec[i16](init("pc"))
        self.flags = vec[i64](init("flags"))
        self.busy = vec[i64](init("busy"))
        self.wire = vec[i64](init("wire"))
        self.hold = vec[i32](init("hold"))
        self.obj = vec[i32](init("obj"))
        self.act = vec[u8](init("act"))
        self.valid = vec[u8](init("valid"))
        self.dirty = vec[u8](init("dirty"))
        self.pat = vec[u8](init("pat"))
        pindex = init("pindex")
        self.pindex = memoryview(pindex)  # type: ignore[arg-type]
        self.arrays = {
            name: pindex
            if name == "pindex"
            else vec_view(getattr(self, name), PAGE_STORAGE[name], dtype, size)
            for name, dtype in PAGE_FIELDS.items()
        }
        if source is None:
            self.arrays["next"][:] = -1
            self.arrays["prev"][:] = -1
            return
        for name, arr in source.items():
            if name == "pindex":
                continue  # the canonical array itself
            stored = np.frombuffer(getattr(self, name), dtype=PAGE_STORAGE[name])
            if not np.array_equal(stored, arr):  # compared by value, not by bits
                # only a queue or colour of 2^15 or more can fail (no queue is that high)
                raise ValueError(f"the page field {name} holds a value no page can have")

    def field(self, name: str) -> np.ndarray[Any, Any]:
        """The canonical numpy view of one field (shares memory with its vec)."""
        return self.arrays[name]

    def nbytes(self) -> int:
        """Bytes the records occupy (the vecs' items)."""
        return self.size * BYTES_PER_PAGE


if sys.byteorder != "little":  # pragma: no cover - the views take the low bytes first
    raise ImportError("app.core.pages needs a little-endian machine")

"""``vm_page_array``: the page records, one per physical page frame in
``[first_page, first_page + page_range)``, holes included.

The records are stored as a structure of arrays (one numpy array per field) so that boot
and batch work can be vectorised, and each array is also exposed as a ``memoryview`` for
fast scalar access on the per-call hot paths (numpy scalar indexing is several times
slower).  Queue links (``pageq``) are page-array indices, -1 for "none"; ``obj`` is an
object id, 0 for NULL.  ``phys_addr`` is derived from the index (``(first_page + i) *
PAGE_SIZE``), as ``vm_page_startup`` sets it for every record.

Per page this costs 44 bytes (the kernel's ``struct vm_page`` is 128).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# field name -> numpy dtype; the kernel's name for the field in the comment
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

BYTES_PER_PAGE = sum(np.dtype(t).itemsize for t in PAGE_FIELDS.values())


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
    next: memoryview
    prev: memoryview
    queue: memoryview
    pc: memoryview
    flags: memoryview
    busy: memoryview
    wire: memoryview
    hold: memoryview
    obj: memoryview
    pindex: memoryview
    act: memoryview
    valid: memoryview
    dirty: memoryview
    pat: memoryview

    def __init__(self, size: int) -> None:
        self.size = size
        self.arrays = {}
        for name, dtype in PAGE_FIELDS.items():
            if name in ("next", "prev"):
                arr = np.full(size, -1, dtype=dtype)
            else:
                arr = np.zeros(size, dtype=dtype)
            self.arrays[name] = arr
            setattr(self, name, memoryview(arr))  # type: ignore[arg-type]

    def field(self, name: str) -> np.ndarray[Any, Any]:
        """The numpy array behind one field (shares memory with the memoryview)."""
        return self.arrays[name]

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

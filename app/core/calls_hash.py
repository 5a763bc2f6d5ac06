"""Callable kernel functions: the page hash, the lookup variants and ``vm_page_rename``
(spec §11.2–11.4).  ``vm_page_lookup`` itself is registered in ``registry.py``."""

from __future__ import annotations

from app.core.vm_page.hash import vm_page_hash_enter
from app.core.vm_page.lookup import (
    _call_hash_get,
    _call_lookup_busy_try,
    _call_lookup_busy_wait,
    _call_lookup_sbusy_try,
    _call_page_next,
    vm_page_rename,
)

from .callspec import PAGE, KernelFunction, param
from .constants import PAGE_SIZE

_OBJECT = param("object", "object", help="the object")
_PINDEX = param("pindex", "pindex", help="page index in the object")
_ALSO = param(
    "also_m_busy", "bool", False, "also treat any non-zero busy word (soft-busy, WANTED) as busy"
)

FUNCTIONS: tuple[KernelFunction, ...] = (
    KernelFunction(
        "vm_page_hash_enter",
        "vm_page_hash_enter",
        (PAGE,),
        "none",
        "Cache a PG_MAPPEDMULTI page of an object in the page hash (choosing a victim slot).",
        vm_page_hash_enter,
    ),
    KernelFunction(
        "vm_page_hash_get",
        "vm_page_hash_get",
        (_OBJECT, _PINDEX),
        "page_or_null",
        "Lockless lookup through the page hash: the page soft-busied, or null on a miss "
        "(the caller would then use the locked lookup).",
        _call_hash_get,
    ),
    KernelFunction(
        "vm_page_lookup_busy_wait",
        "vm_page_lookup_busy_wait",
        (
            _OBJECT,
            _PINDEX,
            _ALSO,
            param("msg", "wmesg", "pglkbw", "the wait message shown while asleep (wmesg)"),
        ),
        "page_or_null",
        "Look a page up and hard-busy it, sleeping while it is busy; null if it does not "
        "exist (or vanished while sleeping).",
        _call_lookup_busy_wait,
        sleeps=True,
    ),
    KernelFunction(
        "vm_page_lookup_busy_try",
        "vm_page_lookup_busy_try",
        (_OBJECT, _PINDEX, _ALSO),
        "pair",
        "Look a page up and try to hard-busy it: {page, error}; error true means the page "
        "exists but is busy (and was not busied); a null page with error false means absent.",
        _call_lookup_busy_try,
    ),
    KernelFunction(
        "vm_page_lookup_sbusy_try",
        "vm_page_lookup_sbusy_try",
        (
            _OBJECT,
            _PINDEX,
            param(
                "pgoff", "int", 0, "byte offset of the range that must be valid", lo=0, hi=PAGE_SIZE
            ),
            param("pgbytes", "int", PAGE_SIZE, "length of that range in bytes", lo=0, hi=PAGE_SIZE),
        ),
        "page_or_null",
        "Look a page up and soft-busy it, unless it is fictitious, the byte range is not "
        "valid, or it is hard-busied.",
        _call_lookup_sbusy_try,
    ),
    KernelFunction(
        "vm_page_next",
        "vm_page_next",
        (PAGE,),
        "page_or_null",
        "The object's page at m.pindex + 1, if the next resident page is exactly there.",
        _call_page_next,
        mutates=False,
    ),
    KernelFunction(
        "vm_page_rename",
        "vm_page_rename",
        (
            PAGE,
            param("new_object", "object", help="the object to move the page to"),
            param("new_pindex", "pindex", help="its page index there"),
        ),
        "none",
        "Move a hard-busied page to another object/pindex (panics if the target exists); "
        "a cached page is deactivated; the page is always dirtied.",
        vm_page_rename,
    ),
)

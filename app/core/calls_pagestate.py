"""Callable kernel functions: page state — cache, dontneed, hold, quick wiring,
valid/dirty bits, commit, fictitious pages, madvise — and the pmap (spec §8.7–8.10,
§10, §12, §14, §19)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core.pmap import (
    PMAP_ID_MAX,
    VM_PROT_NAMES,
    _call_pmap_mapped_sync,
    _call_pmap_page_protect,
    pmap_clear_modify,
    pmap_clear_reference,
    pmap_enter,
    pmap_is_modified,
    pmap_remove,
    pmap_touch,
    pmap_ts_referenced,
    vm_page_protect,
)
from app.core.vm_page.pagestate import (
    FAKE_PAGE_SLOTS,
    MADV_NAMES,
    VM_MEMATTR_NAMES,
    _bits,
    _call_try_to_cache,
    _call_try_to_free,
    vm_object_madvise,
    vm_page_cache,
    vm_page_clear_commit,
    vm_page_clear_dirty,
    vm_page_clear_dirty_beg_nonincl,
    vm_page_clear_dirty_end_nonincl,
    vm_page_copy,
    vm_page_dirty,
    vm_page_dontneed,
    vm_page_hold,
    vm_page_initfake,
    vm_page_is_valid,
    vm_page_need_commit,
    vm_page_set_invalid,
    vm_page_set_valid,
    vm_page_set_validclean,
    vm_page_set_validdirty,
    vm_page_test_dirty,
    vm_page_undirty,
    vm_page_unhold,
    vm_page_unwire_quick,
    vm_page_wire_quick,
    vm_page_zero_fill,
    vm_page_zero_invalid,
)

from .callspec import PAGE, KernelFunction, Param, param
from .constants import PAGE_SIZE, PAT_WRITE_BACK

_BASE = param("base", "int", help="byte offset in the page", lo=0, hi=PAGE_SIZE)
_SIZE = param("size", "int", help="bytes", lo=0, hi=PAGE_SIZE)
_PMAP = param("pmap", "int", help="pmap id (stands in for a pmap_t)", lo=0, hi=PMAP_ID_MAX)
_PROT = param(
    "prot",
    "flags",
    help="VM_PROT_* (NONE removes every mapping, READ write-protects)",
    choices=VM_PROT_NAMES,
)


def _fn(
    name: str,
    params: tuple[Param, ...],
    returns: str,
    help: str,
    impl: Callable[..., Any],
    *,
    mutates: bool = True,
    models: str | None = None,
) -> KernelFunction:
    return KernelFunction(
        name,
        models or name,
        params,
        returns,
        help,
        impl,
        mutates=mutates,
    )


FUNCTIONS: tuple[KernelFunction, ...] = (
    # ---------------------------------------------------------------- §8.7–8.10
    _fn(
        "vm_page_cache",
        (PAGE,),
        "none",
        "Move a hard-busied clean page to the cache tail (unmapping it first); always "
        "unbusies. Dirty/NEED_COMMIT pages are deactivated instead.",
        vm_page_cache,
    ),
    _fn(
        "vm_page_try_to_cache",
        (PAGE,),
        "bool",
        "Cache a hard-busied page if it is clean, unheld, unwired and not cached; always "
        "unbusies. TRUE when it was handed to vm_page_cache.",
        _call_try_to_cache,
    ),
    _fn(
        "vm_page_try_to_free",
        (PAGE,),
        "bool",
        "Busy, unmap and free an unbusied clean page if nothing stops it; TRUE if freed.",
        _call_try_to_free,
    ),
    _fn(
        "vm_page_dontneed",
        (PAGE,),
        "none",
        "MADV_DONTNEED one page: by the global dnweight dice leave it alone, or "
        "deactivate it to the inactive tail or head.",
        vm_page_dontneed,
    ),
    # ---------------------------------------------------------------- §10
    _fn(
        "vm_page_wire_quick",
        (PAGE,),
        "none",
        "wire_count + 1 on an already-wired page (no vmstats); panics if it was 0.",
        vm_page_wire_quick,
    ),
    _fn(
        "vm_page_unwire_quick",
        (PAGE,),
        "bool",
        "wire_count − 1 unless it is 1: then TRUE without decrementing (do a real unwire).",
        vm_page_unwire_quick,
    ),
    _fn(
        "vm_page_hold",
        (PAGE,),
        "none",
        "hold_count + 1 (prevents reuse: a held page that is freed goes to PQ_HOLD).",
        vm_page_hold,
    ),
    _fn(
        "vm_page_unhold",
        (PAGE,),
        "none",
        "hold_count − 1; the last unhold of a PQ_HOLD page moves it to the PQ_FREE head.",
        vm_page_unhold,
    ),
    # ---------------------------------------------------------------- §12
    _fn(
        "vm_page_bits",
        (_BASE, _SIZE),
        "int",
        "The valid/dirty bits (one per 512-byte chunk) a byte range touches.",
        _bits,
        mutates=False,
    ),
    _fn(
        "vm_page_set_valid",
        (PAGE, _BASE, _SIZE),
        "none",
        "Zero invalid partial chunks at the range's ends, then mark the range valid.",
        vm_page_set_valid,
    ),
    _fn(
        "vm_page_set_validclean",
        (PAGE, _BASE, _SIZE),
        "none",
        "As set_valid, and clear the dirty bits (of every touched chunk); whole page: "
        "clear PG_NOSYNC.",
        vm_page_set_validclean,
    ),
    _fn(
        "vm_page_set_validdirty",
        (PAGE, _BASE, _SIZE),
        "none",
        "Mark the range valid and dirty; the object becomes writeable/dirty.",
        vm_page_set_validdirty,
    ),
    _fn(
        "vm_page_clear_dirty",
        (PAGE, _BASE, _SIZE),
        "none",
        "Clear the dirty bits of the range; whole page: clear PG_NOSYNC.",
        vm_page_clear_dirty,
    ),
    _fn(
        "vm_page_clear_dirty_end_nonincl",
        (PAGE, _BASE, param("size", "int", help="bytes", lo=0, hi=PAGE_SIZE + 511)),
        "none",
        "Clear dirty bits but keep a partial last chunk dirty.",
        vm_page_clear_dirty_end_nonincl,
    ),
    _fn(
        "vm_page_clear_dirty_beg_nonincl",
        (PAGE, _BASE, _SIZE),
        "none",
        "Clear dirty bits but keep a partial first chunk dirty.",
        vm_page_clear_dirty_beg_nonincl,
    ),
    _fn(
        "vm_page_dirty",
        (PAGE,),
        "none",
        "Mark the whole page dirty (not allowed on PQ_CACHE/PQ_FREE pages).",
        vm_page_dirty,
    ),
    _fn(
        "vm_page_undirty",
        (PAGE,),
        "none",
        "dirty = 0 (the pmap modify bits are untouched).",
        vm_page_undirty,
    ),
    _fn(
        "vm_page_test_dirty",
        (PAGE,),
        "none",
        "If the pmap says the page was modified, mark it fully dirty.",
        vm_page_test_dirty,
    ),
    _fn(
        "vm_page_set_invalid",
        (PAGE, _BASE, _SIZE),
        "none",
        "Clear valid and dirty bits of the range; bumps the object's generation.",
        vm_page_set_invalid,
    ),
    _fn(
        "vm_page_zero_invalid",
        (PAGE, param("setvalid", "bool", False, "then mark the whole page valid")),
        "none",
        "Zero every run of invalid chunks; optionally mark the whole page valid.",
        vm_page_zero_invalid,
    ),
    _fn(
        "vm_page_is_valid",
        (PAGE, _BASE, _SIZE),
        "bool",
        "Whether the range is valid (size 0: whether any chunk is valid).",
        vm_page_is_valid,
        mutates=False,
    ),
    _fn(
        "vm_page_copy",
        (
            param("src", "page", help="source page (pfn)"),
            param("dst", "page", help="destination page (pfn), busied"),
        ),
        "none",
        "Copy a page's contents; the destination becomes fully valid and dirty.",
        vm_page_copy,
    ),
    _fn(
        "vm_page_zero_fill",
        (PAGE,),
        "bool",
        "Zero the page's contents (valid bits untouched); returns TRUE.",
        vm_page_zero_fill,
    ),
    # ---------------------------------------------------------------- §14
    _fn(
        "vm_page_need_commit",
        (PAGE,),
        "none",
        "Set PG_NEED_COMMIT and mark the object writeable/dirty.",
        vm_page_need_commit,
    ),
    _fn(
        "vm_page_clear_commit",
        (PAGE,),
        "none",
        "Clear PG_NEED_COMMIT.",
        vm_page_clear_commit,
    ),
    _fn(
        "vm_page_initfake",
        (
            param(
                "slot",
                "int",
                help="slot of the fictitious-page table (pages outside vm_page_array)",
                lo=0,
                hi=FAKE_PAGE_SLOTS - 1,
            ),
            param("paddr", "int", 0, "physical address", lo=0, hi=(1 << 64) - 1),
            param(
                "memattr",
                "choice",
                PAT_WRITE_BACK,
                "memory attribute",
                choices=VM_MEMATTR_NAMES,
            ),
        ),
        "int",
        "Initialise a fictitious page (outside vm_page_array): FICTITIOUS|UNQUEUED, wired "
        "once, hard-busied. An already fictitious slot only gets the new memattr.",
        vm_page_initfake,
    ),
    _fn(
        "madvise",
        (
            param("object", "object", help="the object"),
            param("pindex", "pindex", 0, "first page index"),
            param("count", "size_pages", 1, "number of page indices"),
            param(
                "advice",
                "choice",
                help="MADV_WILLNEED, MADV_DONTNEED or MADV_FREE",
                choices=MADV_NAMES,
            ),
        ),
        "int",
        "Apply madvise advice to an object's resident pages (simulator verb for "
        "vm_object_madvise); returns how many pages it was applied to.",
        vm_object_madvise,
        models="vm_object_madvise",
    ),
    # ---------------------------------------------------------------- pmap
    _fn(
        "pmap_enter",
        (PAGE, _PMAP, param("writeable", "bool", False, "writable mapping")),
        "none",
        "Map the page in a pmap (simulator verb): sets PG_MAPPED, PG_WRITEABLE, and "
        "PG_MAPPEDMULTI from the second mapping on.",
        pmap_enter,
    ),
    _fn(
        "pmap_remove",
        (PAGE, _PMAP),
        "none",
        "Remove a pmap's mapping of the page (simulator verb); M bit -> vm_page_dirty, A "
        "bit -> PG_REFERENCED; the page flags stay (lazy).",
        pmap_remove,
    ),
    _fn(
        "pmap_touch",
        (PAGE, _PMAP, param("write", "bool", False, "a write access")),
        "none",
        "Simulated CPU access through a mapping: sets its referenced bit, and modified on "
        "a write (a write to a read-only mapping is refused as a fault).",
        pmap_touch,
    ),
    _fn(
        "pmap_ts_referenced",
        (PAGE,),
        "int",
        "Count the page's mappings with the referenced bit set, clearing those bits.",
        pmap_ts_referenced,
    ),
    _fn(
        "pmap_is_modified",
        (PAGE,),
        "bool",
        "Whether any mapping of the page has its modified bit set.",
        pmap_is_modified,
        mutates=False,
    ),
    _fn(
        "pmap_clear_reference",
        (PAGE,),
        "none",
        "Clear the referenced bit of every mapping of the page.",
        pmap_clear_reference,
    ),
    _fn(
        "pmap_clear_modify",
        (PAGE,),
        "none",
        "Clear the modified bit of every mapping of the page (forgetting the changes).",
        pmap_clear_modify,
    ),
    _fn(
        "pmap_page_protect",
        (PAGE, _PROT),
        "none",
        "Lower every mapping of a hard-busied page: NONE removes them, READ makes them "
        "read-only; never raises protection.",
        _call_pmap_page_protect,
    ),
    _fn(
        "pmap_mapped_sync",
        (PAGE,),
        "int",
        "Recompute PG_MAPPED/PG_WRITEABLE of a hard-busied page from its mappings; "
        "returns the new flags.",
        _call_pmap_mapped_sync,
    ),
    _fn(
        "vm_page_protect",
        (PAGE, _PROT),
        "none",
        "Lower the protection of a hard-busied page's mappings (NONE: unmap, READ: "
        "write-protect), after pmap_mapped_sync.",
        vm_page_protect,
    ),
)

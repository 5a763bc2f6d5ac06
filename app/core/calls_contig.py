"""Callable kernel functions: contiguous memory (spec §7.4–7.7) — the DMA reserve
(``vm_page_alloc_contig``, ``vm_page_free_contig``, ``vm_contig_avail_pages``) and
contigmalloc's fallback over normal memory (``vm_contig_pg_alloc``)."""

from __future__ import annotations

from typing import Final

from app.core.vm_contig import (
    CONTIG_MAX_SIZE,
    MALLOC_FLAG_CHOICES,
    MEMATTR_CHOICES,
    _call_alloc_contig,
    _call_contig_pg_alloc,
    vm_contig_avail_pages,
    vm_page_free_contig,
)

from .callspec import PAGE, KernelFunction, param
from .constants import PAGE_SIZE

_U64_MAX: Final = (1 << 64) - 1


_LOW = param("low", "int", 0, "lowest acceptable physical address (bytes)", lo=0, hi=_U64_MAX)
_ALIGN = param(
    "alignment", "int", PAGE_SIZE, "alignment in bytes (a power of two)", lo=0, hi=_U64_MAX
)
_BOUNDARY = param(
    "boundary", "int", 0, "address boundary the block must not cross (0 = none)", lo=0, hi=_U64_MAX
)

FUNCTIONS: tuple[KernelFunction, ...] = (
    KernelFunction(
        "vm_page_alloc_contig",
        "vm_page_alloc_contig",
        (
            _LOW,
            param(
                "high",
                "int",
                0,
                "highest end address, checked after the fact (0 = no limit)",
                lo=0,
                hi=_U64_MAX,
            ),
            _ALIGN,
            _BOUNDARY,
            param("size", "int", help="bytes (rounded up to pages)", lo=1, hi=CONTIG_MAX_SIZE),
            param(
                "memattr",
                "choice",
                "VM_MEMATTR_DEFAULT",
                "memory attribute (PAT) for the pages; DEFAULT is WRITE_BACK",
                choices=MEMATTR_CHOICES,
            ),
        ),
        "page_or_null",
        "Take pages from the DMA reserve: the lowest naturally aligned power-of-two block "
        "(low, alignment and boundary are ignored; high is checked after the fact). The "
        "pages stay wired, FICTITIOUS|UNQUEUED, on no queue.",
        _call_alloc_contig,
    ),
    KernelFunction(
        "vm_page_free_contig",
        "vm_page_free_contig",
        (PAGE, param("size", "int", help="bytes (rounded up to pages)", lo=1, hi=CONTIG_MAX_SIZE)),
        "none",
        "Give back a contiguous block: reserve pages return to the alist; pages the "
        "fallback took from normal memory are busy-waited, unwired and freed one by one.",
        vm_page_free_contig,
        sleeps=True,
    ),
    KernelFunction(
        "vm_contig_pg_alloc",
        "vm_contig_pg_alloc",
        (
            param("size", "int", help="bytes (rounded up to pages)", lo=0, hi=_U64_MAX),
            _LOW,
            param(
                "high",
                "int",
                _U64_MAX,
                "physical addresses must stay below this",
                lo=0,
                hi=_U64_MAX,
            ),
            _ALIGN,
            _BOUNDARY,
            param(
                "mflags",
                "flags",
                "M_WAITOK",
                "malloc flags: M_WAITOK also cleans the active queues from the second pass",
                choices=MALLOC_FLAG_CHOICES,
            ),
        ),
        "page_or_null",
        "contigmalloc's page allocator: the DMA reserve first, then up to three address-order "
        "scans of normal memory for a free/cache run meeting low/high/alignment/boundary, "
        "cleaning the inactive (and with M_WAITOK the active) queues between passes. The "
        "run comes back wired, valid, flags 0, on no queue.",
        _call_contig_pg_alloc,
    ),
    KernelFunction(
        "vm_contig_avail_pages",
        "vm_contig_avail_pages",
        (),
        "int",
        "Free pages left in the DMA reserve (the alist's bl_free).",
        vm_contig_avail_pages,
        mutates=False,
    ),
)

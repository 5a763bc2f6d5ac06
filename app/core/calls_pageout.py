"""Callable kernel functions: memory pressure and the pageout daemon (spec §8.3, §15).

The daemon's scans normally run on the ``pagedaemon`` thread; calling one of them here
runs that single step on the caller's thread, for teaching and experiments."""

from __future__ import annotations

from app.core.vm_page.free import vm_page_free_wakeup
from app.core.vm_pageout import (
    _call_clean_helper,
    _call_deactivate_locked,
    _call_list_find,
    _call_pageout_page,
    _call_pmap_collect,
    _call_scan_active,
    vm_pageout_page_stats,
    vm_pageout_scan_cache,
    vm_pageout_scan_hold,
    vm_pageout_scan_inactive,
)

from .callspec import PAGE, KernelFunction, param

_COLOR = param("color", "int", 0, "the page color (0 .. 1023)", lo=0, hi=1023, aliases=("colour",))
_PASS = param("pass_", "int", 0, "the daemon's pass / 10 (0 = first pass)", lo=0, hi=0x7FFFFFFF)
_QUOTA = param("quota", "int", 16, "pages wanted from this colour", lo=-(1 << 31), hi=(1 << 31) - 1)
_FLAGS = param(
    "flags",
    "flags",
    0,
    "VM_PAGEOUT_* flags",
    choices=(("ALLOW_ACTIVE", 1), ("TRY_TO_CACHE", 2)),
)

FUNCTIONS: tuple[KernelFunction, ...] = (
    KernelFunction(
        "vm_page_free_wakeup",
        "vm_page_free_wakeup",
        (),
        "none",
        "Wake vm_wait sleepers / the daemon if enough pages are free again.",
        vm_page_free_wakeup,
    ),
    KernelFunction(
        "vm_page_deactivate_locked",
        "vm_page_deactivate_locked",
        (PAGE,),
        "none",
        "Deactivate to the inactive tail (the caller holds the page spinlock).",
        _call_deactivate_locked,
    ),
    KernelFunction(
        "vm_page_list_find",
        "vm_page_list_find",
        (
            param(
                "basequeue",
                "queue",
                help="the queue type (PQ_FREE, free or its index 1, ...)",
                choices=(
                    ("PQ_FREE", 1),
                    ("PQ_INACTIVE", 1025),
                    ("PQ_ACTIVE", 2049),
                    ("PQ_CACHE", 3073),
                    ("PQ_HOLD", 4097),
                ),
            ),
            param("index", "int", 0, "the colour to start from", lo=0, hi=1023),
        ),
        "page_or_null",
        "Find a page of a queue type from a colour (widening search) and take it off its queue.",
        _call_list_find,
    ),
    KernelFunction(
        "vm_pageout_page",
        "vm_pageout_page",
        (
            PAGE,
            _PASS,
            _FLAGS,
            param("max_launder", "int", 1, "laundering budget", lo=0, hi=1 << 20),
        ),
        "int",
        "The daemon's decision for one hard-busied inactive page; returns pages freed/cached/laundered.",
        _call_pageout_page,
    ),
    KernelFunction(
        "vm_pageout_clean_helper",
        "vm_pageout_clean_helper",
        (PAGE, _FLAGS),
        "int",
        "Launder a hard-busied dirty page with its clusterable neighbours; returns pages written.",
        _call_clean_helper,
    ),
    KernelFunction(
        "vm_pageout_scan_inactive",
        "vm_pageout_scan_inactive",
        (_PASS, _COLOR, _QUOTA),
        "int",
        "One inactive-queue scan of one colour; returns pages freed/cached/laundered.",
        vm_pageout_scan_inactive,
    ),
    KernelFunction(
        "vm_pageout_scan_active",
        "vm_pageout_scan_active",
        (
            _PASS,
            _COLOR,
            param("avail_quota", "int", 0, "pages wanted freed", lo=-(1 << 31), hi=(1 << 31) - 1),
            param(
                "inact_quota",
                "int",
                16,
                "pages wanted deactivated",
                lo=-(1 << 31),
                hi=(1 << 31) - 1,
            ),
        ),
        "int",
        "One active-queue scan of one colour from its marker; returns pages moved.",
        _call_scan_active,
    ),
    KernelFunction(
        "vm_pageout_scan_cache",
        "vm_pageout_scan_cache",
        (param("avail", "int", 0, "the remaining shortage", lo=-(1 << 31), hi=(1 << 31) - 1),),
        "none",
        "Free cache pages while free is below target (the cache rover).",
        vm_pageout_scan_cache,
    ),
    KernelFunction(
        "vm_pageout_page_stats",
        "vm_pageout_page_stats",
        (_COLOR,),
        "none",
        "The background act_count scan of one active colour.",
        vm_pageout_page_stats,
    ),
    KernelFunction(
        "vm_pageout_scan_hold",
        "vm_pageout_scan_hold",
        (_COLOR,),
        "none",
        "The background repair scan of one PQ_HOLD colour.",
        vm_pageout_scan_hold,
    ),
    KernelFunction(
        "pmap_collect",
        "pmap_collect",
        (),
        "none",
        "Release unused pmap memory (nothing to release in the simulated pmap).",
        _call_pmap_collect,
    ),
)

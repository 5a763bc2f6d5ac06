"""Callable kernel functions: threads, sleeping, time and the busy word (spec §9, §13, §19)."""

from __future__ import annotations

from app.core.calls import _call_tick, _call_wakeup_channel
from app.core.vm_page.alloc import vm_wait_nominal, vm_wait_pfault
from app.core.vm_page.busy import (
    vm_page_busy_wait,
    vm_page_flag_clear,
    vm_page_flag_set,
    vm_page_flash,
    vm_page_io_finish,
    vm_page_io_start,
    vm_page_sbusy_drop,
    vm_page_sbusy_hold,
    vm_page_sbusy_try,
    vm_page_sleep_busy,
)

from .callspec import PAGE, KernelFunction, param
from .constants import PG_FLAG_NAMES

_PG_FLAGS = tuple((name, bit) for bit, name in PG_FLAG_NAMES.items())
_ALSO = param("also_m_busy", "bool", False, "also wait for soft-busy (any busy bit for busy_wait)")
_MSG = param("msg", "wmesg", "pgwait", "the wait message shown while asleep (wmesg)")

FUNCTIONS: tuple[KernelFunction, ...] = (
    KernelFunction(
        "tick",
        "hardclock",
        (param("n", "int", 1, "how many ticks to advance", lo=0, hi=1_000_000),),
        "int",
        "Advance simulated time: each tick rolls up per-CPU vmstats and expires sleeps. "
        "Returns the new ticks.",
        _call_tick,
        on_thread=False,
    ),
    KernelFunction(
        "wakeup",
        "wakeup",
        (param("channel", "channel", help="'page:<pfn>', 'vm_pages_needed', 'v_free_count', ..."),),
        "int",
        "Wake every thread sleeping on a channel; returns how many were woken.",
        _call_wakeup_channel,
        on_thread=False,
    ),
    KernelFunction(
        "vm_page_busy_wait",
        "vm_page_busy_wait",
        (PAGE, _ALSO, _MSG),
        "none",
        "Sleep until the page can be hard-busied, then busy it.",
        vm_page_busy_wait,
        sleeps=True,
    ),
    KernelFunction(
        "vm_page_sleep_busy",
        "vm_page_sleep_busy",
        (PAGE, _ALSO, _MSG),
        "none",
        "If the page is busy, sleep once until it is released (acquires nothing).",
        vm_page_sleep_busy,
        sleeps=True,
    ),
    KernelFunction(
        "vm_page_io_start",
        "vm_page_io_start",
        (PAGE,),
        "none",
        "Soft-busy count + 1 (the page must be hard-busied).",
        vm_page_io_start,
    ),
    KernelFunction(
        "vm_page_io_finish",
        "vm_page_io_finish",
        (PAGE,),
        "none",
        "Soft-busy count − 1 (wakes nobody: that code is compiled out).",
        vm_page_io_finish,
    ),
    KernelFunction(
        "vm_page_sbusy_try",
        "vm_page_sbusy_try",
        (PAGE,),
        "int",
        "Soft-busy the page unless hard-busied: 0 on success, 1 on failure.",
        vm_page_sbusy_try,
    ),
    KernelFunction(
        "vm_page_sbusy_hold",
        "vm_page_sbusy_hold",
        (PAGE,),
        "none",
        "Soft-busy count + 1 unconditionally.",
        vm_page_sbusy_hold,
    ),
    KernelFunction(
        "vm_page_sbusy_drop",
        "vm_page_sbusy_drop",
        (PAGE,),
        "none",
        "Soft-busy count − 1; wakes waiters when only WANTED is left.",
        vm_page_sbusy_drop,
    ),
    KernelFunction(
        "vm_page_flash",
        "vm_page_flash",
        (PAGE,),
        "none",
        "If WANTED is set, clear it and wake the waiters.",
        vm_page_flash,
    ),
    KernelFunction(
        "vm_page_flag_set",
        "vm_page_flag_set",
        (PAGE, param("bits", "flags", help="PG_* flags to set", choices=_PG_FLAGS)),
        "none",
        "Atomically OR PG_* flags into the page's flags.",
        vm_page_flag_set,
    ),
    KernelFunction(
        "vm_page_flag_clear",
        "vm_page_flag_clear",
        (PAGE, param("bits", "flags", help="PG_* flags to clear", choices=_PG_FLAGS)),
        "none",
        "Atomically clear PG_* flags in the page's flags.",
        vm_page_flag_clear,
    ),
    KernelFunction(
        "vm_wait_pfault",
        "vm_wait_pfault",
        (),
        "none",
        "Page-fault wait: sleep in hz/10+1 tick slices while memory is severe.",
        vm_wait_pfault,
        sleeps=True,
    ),
    KernelFunction(
        "vm_wait_nominal",
        "vm_wait_nominal",
        (),
        "none",
        "vm_wait(0) until memory is above v_free_min.",
        vm_wait_nominal,
        sleeps=True,
    ),
)

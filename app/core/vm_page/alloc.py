"""Allocation (spec §6.5, §7.1–7.3, §13.1): the selectors ``vm_page_select_free``,
``vm_page_select_cache`` and ``vm_page_select_free_or_cache``, ``vm_page_alloc``,
``vm_page_grab``, ``vm_page_alloczwq`` / ``vm_page_freezwq`` and ``vm_wait``.
"""

from __future__ import annotations

from typing import Any

from app.core.constants import (
    CNT_CACHE,
    CNT_FREE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_UNQUEUED,
    PG_WRITEABLE,
    PQ_CACHE,
    PQ_FREE,
    PQ_L2_SIZE,
    VM_ALLOC_CLASS_MASK,
    VM_ALLOC_CPU_SHIFT,
    VM_ALLOC_CPU_SPEC,
    VM_ALLOC_FORCE_ZERO,
    VM_ALLOC_INTERRUPT,
    VM_ALLOC_NORMAL,
    VM_ALLOC_NULL_OK,
    VM_ALLOC_RETRY,
    VM_ALLOC_SYSTEM,
    VM_ALLOC_ZERO,
    VM_PAGE_BITS_ALL,
)
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal, WouldSleep
from app.core.kern_synch import (
    KernelGen,
    Sleep,
    curthread_is_pagedaemon,
    curthread_lowmemkill,
    wakeup,
)
from app.core.objects import VmObject
from app.core.pmap import pmap_check_freezwq, pmap_zero_page, vm_page_protect_none
from app.core.state import MachineState
from app.core.vm_meter import count_lag, vmstats_rollup
from app.core.vm_page.busy import (
    _clear_busy,
    vm_page_busy_try,
    vm_page_lookup_busy_try,
    vm_page_wakeup,
)
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.object import vm_page_insert
from app.core.vm_page.queues import (
    _deactivate_locked,
    _rem_queue,
    pagedaemon_wakeup,
    vm_page_unwire,
    vm_page_wire,
)
from app.core.vm_page.search import _list_find, _list_find2, vm_get_pg_color
from app.core.vm_page2 import pfn_of
from app.core.vmstats import VmStats, vm_paging_min, vm_paging_min_nice, vm_paging_severe

_RECYCLE_BLOCKERS = PG_NEED_COMMIT | PG_MAPPED


def _gate_open(gd: VmStats, page_req: int, free: int, cache: int) -> bool:
    """The free-count test at the top of ``vm_page_alloc``'s loop (spec §7.1), on the
    calling CPU's snapshot ``gd`` with the given free and cache counts."""
    return bool(
        free >= gd.v_free_reserved
        or (page_req & VM_ALLOC_INTERRUPT and free > 0)
        or (page_req & VM_ALLOC_SYSTEM and cache == 0 and free > gd.v_interrupt_free_min)
    )


_GRAB_NULL_DEREF = (
    "NULL pointer dereference: the page was busy and VM_ALLOC_RETRY is not set, so after "
    "vm_page_sleep_busy the source sets m = NULL and then reads m->valid (spec §7.3); pass "
    "VM_ALLOC_RETRY, as every kernel caller does"
)


def Sleep_on_page(m: MachineState, i: int, wmesg: str) -> Sleep:  # noqa: N802
    """``vm_page_busy_wait``'s sleep (set PBUSY_WANTED and PG_REFERENCED, then tsleep on
    the page); used here because busy.py sits above this module."""
    m.pg.busy[i] |= PBUSY_WANTED
    m.pg.flags[i] |= PG_REFERENCED
    return Sleep(f"page:{pfn_of(m, i)}", 0, wmesg)


# ------------------------------------------------------------ selectors (§6.5)
def _select_fail_deactivate(vm: MachineState, i: int) -> None:
    """A page another thread had busied: deactivate it (it was already removed)."""
    _deactivate_locked(vm, i, False)


def _check_selected_free(vm: MachineState, i: int) -> None:
    pg = vm.pg
    if pg.flags[i] & (PG_UNQUEUED | PG_NEED_COMMIT) or pg.hold[i] or pg.wire[i]:
        raise KernelPanic(
            "vm_page_select_free",
            f"free page {pfn_of(vm, i):#x} is UNQUEUED/NEED_COMMIT, held or wired",
        )


def vm_page_select_free(vm: MachineState, color: int) -> int:
    """``vm_page_select_free(color)``: a hard-busied free page taken off its queue, or
    -1.  A free page somebody else busied is deactivated and the search repeats."""
    while True:
        i = _list_find(vm, PQ_FREE, color)
        if i < 0:
            return -1
        if not vm.pg.busy[i] & (PBUSY_LOCKED | PBUSY_MASK):
            _check_selected_free(vm, i)
        vm.pq.selected_queue = vm.pg.queue[i]
        _rem_queue(vm, i)
        if vm_page_busy_try(vm, i, True):
            _select_fail_deactivate(vm, i)
            continue
        pagedaemon_wakeup(vm)
        return i


def _recyclable(vm: MachineState, i: int) -> bool:
    pg = vm.pg
    return (
        not pg.flags[i] & _RECYCLE_BLOCKERS
        and pg.hold[i] == 0
        and pg.wire[i] == 0
        and (pg.dirty[i] & pg.valid[i]) == 0
    )


def vm_page_select_cache(vm: MachineState, color: int) -> int:
    """``vm_page_select_cache(color)``: a recyclable, hard-busied cache page taken off
    its queue, or -1; unrecyclable ones are deactivated on the way."""
    while True:
        i = _list_find(vm, PQ_CACHE, color)
        if i < 0:
            return -1
        vm.pq.selected_queue = vm.pg.queue[i]
        _rem_queue(vm, i)
        if vm_page_busy_try(vm, i, True):
            _select_fail_deactivate(vm, i)
            continue
        if _recyclable(vm, i):
            pagedaemon_wakeup(vm)
            return i
        _deactivate_locked(vm, i, False)
        _clear_busy(vm, i)


def vm_page_select_free_or_cache(vm: MachineState, color: int) -> tuple[int, bool]:
    """``vm_page_select_free_or_cache(color, &fromcache)``."""
    pg = vm.pg
    while True:
        i = _list_find2(vm, color)
        if i < 0:
            return -1, False
        vm.pq.selected_queue = pg.queue[i]
        if vm_page_busy_try(vm, i, True):
            _rem_queue(vm, i)
            _select_fail_deactivate(vm, i)
            continue
        if pg.queue[i] - pg.pc[i] == PQ_FREE:
            if pg.flags[i] & (PG_UNQUEUED | PG_NEED_COMMIT) or pg.hold[i] or pg.wire[i]:
                pg.busy[i] &= ~PBUSY_LOCKED  # undo, then panic as the KASSERT would
                _check_selected_free(vm, i)
            _rem_queue(vm, i)
            pagedaemon_wakeup(vm)
            return i, False
        _rem_queue(vm, i)
        if _recyclable(vm, i):
            pagedaemon_wakeup(vm)
            return i, True
        _deactivate_locked(vm, i, False)
        _clear_busy(vm, i)


# ------------------------------------------------------------ vm_page_alloc (§7.1)
def _check_alloc_flags(vm: MachineState, page_req: int, function: str) -> int:
    if not page_req & VM_ALLOC_CLASS_MASK:
        raise KernelPanic(
            function,
            "page_req needs one of VM_ALLOC_NORMAL, VM_ALLOC_QUICK, VM_ALLOC_INTERRUPT "
            "or VM_ALLOC_SYSTEM",
        )
    if page_req & VM_ALLOC_CPU_SPEC:
        cpuid = page_req >> VM_ALLOC_CPU_SHIFT
        if cpuid >= vm.ncpus:
            raise InvalidArgument(
                f"VM_ALLOC_CPU({cpuid}) names a CPU this machine does not have (it has {vm.ncpus})"
            )
        return cpuid
    return vm.cpu.cpuid


def vm_page_alloc(vm: MachineState, obj: VmObject | None, pindex: int, page_req: int) -> int:
    """``vm_page_alloc(object, pindex, page_req)``: a page, hard-busied, on no queue,
    ``flags``/``act_count``/``valid``/``dirty`` zero, inserted into ``object`` at
    ``pindex`` — or -1 (NULL).  Free-count gates per class (spec §7.1): all classes
    pass when ``free >= v_free_reserved``; INTERRUPT also when ``free > 0``; SYSTEM
    also when ``cache == 0 and free > v_interrupt_free_min``; otherwise only NORMAL,
    and only by recycling cache pages.  VM_ALLOC_ZERO is ignored here."""
    cpuid = _check_alloc_flags(vm, page_req, "vm_page_alloc")
    if vm.curthread_systhread:
        page_req |= VM_ALLOC_SYSTEM
    if (
        obj is not None
        and pindex in obj.pages
        and not page_req & VM_ALLOC_NULL_OK
        and _alloc_would_get_page(vm, page_req)
    ):
        raise KernelPanic(
            "vm_page_alloc",
            f"PAGE RACE {obj.id}/{pindex:#x}: the object already has a page at this "
            "pindex and VM_ALLOC_NULL_OK is not set",
        )
    color = vm_get_pg_color(vm, cpuid, obj, pindex)
    trace = vm.trace
    explain: dict[str, Any] | None = None
    if trace is not None:
        explain = {
            "event": "alloc",
            "color": color,
            "color_policy": vm.policy.page_color,
            "recycled_cache": [],
            "rollups": 0,
        }
        trace.probes = []
    pg = vm.pg
    rolled_up = False
    i = -1
    gd = vm.gd
    if page_req & VM_ALLOC_NORMAL and gd.cnt[CNT_FREE] >= gd.v_free_reserved:
        # fast path: the exact free colour queue has an idle, selectable head.  The loop
        # below would take it the same way (the gate is open for every class,
        # _vm_page_list_find2's first probe is this queue, the busy_try succeeds, the page
        # is free and selectable), so a record says the same: one probe, found there.
        q = PQ_FREE + color
        pq = vm.pq
        head = pq.head[q]
        if (
            head >= 0
            and not pg.busy[head]
            and not pg.flags[head] & (PG_UNQUEUED | PG_NEED_COMMIT)
            and not pg.hold[head]
            and not pg.wire[head]
        ):
            i = head
            lastq = pq.lastq
            lastq[q] = -1
            lastq[PQ_CACHE + color] = -1
            if trace is not None and trace.probes is not None:
                trace.probes.append(q)
            pq.selected_queue = q
            pg.busy[i] = PBUSY_LOCKED
            _rem_queue(vm, i)
            pagedaemon_wakeup(vm)
    while i < 0:
        gd = vm.gd
        free = gd.cnt[CNT_FREE]
        if _gate_open(gd, page_req, free, gd.cnt[CNT_CACHE]):
            if page_req & VM_ALLOC_NORMAL:
                i, fromcache = vm_page_select_free_or_cache(vm, color)
                if i >= 0 and fromcache:
                    _recycle_cache_page(vm, i, explain)
                    i = -1
                    continue
            else:
                i = vm_page_select_free(vm, color)
        elif page_req & VM_ALLOC_NORMAL:
            i = vm_page_select_cache(vm, color)
            if i >= 0:
                _recycle_cache_page(vm, i, explain)
                i = -1
                continue
            return _alloc_failed(
                vm,
                explain,
                free,
                f"free count {free} is below v_free_reserved ({gd.v_free_reserved}) and no "
                "cache page could be recycled (every PQ_CACHE colour searched: see probes)",
            )
        else:
            return _alloc_failed(
                vm,
                explain,
                free,
                f"free count {free} is below v_free_reserved ({gd.v_free_reserved}) "
                "and this request class may not dig deeper",
            )
        if i < 0:
            if rolled_up:
                # Counters still say "free pages exist" but every queue is empty: the
                # kernel would spin here forever.
                raise WouldSleep(
                    "vm_page_alloc",
                    "cpu",
                    "the counters allow an allocation but every free queue is empty; "
                    "the kernel would spin in this loop forever",
                )
            vmstats_rollup(vm)
            rolled_up = True
            if explain is not None:
                explain["rollups"] += 1
            continue
        break
    # success: i is hard-busied and on PQ_NONE
    if explain is not None and trace is not None:
        explain["found_queue"] = vm.pq.selected_queue
        explain["probes"] = trace.probes
        trace.probes = None
    pg.flags[i] = 0
    pg.act[i] = 0
    pg.valid[i] = 0
    if obj is not None:
        if not vm_page_insert(vm, i, obj, pindex):
            vm_page_free_toq(vm, i)  # collision with NULL_OK (checked above)
            i = -1
            if explain is not None:
                explain["why_null"] = "the object already has a page at pindex (NULL_OK)"
    else:
        pg.pindex[i] = pindex
    pagedaemon_wakeup(vm)
    if explain is not None and trace is not None:
        explain["result"] = pfn_of(vm, i) if i >= 0 else None
        trace.events.append(explain)
    return i


def _alloc_would_get_page(vm: MachineState, page_req: int) -> bool:
    """Would ``vm_page_alloc`` end up holding a page (and so reach the insert that
    panics on a collision)?  Evaluated without changing anything: the gate on the
    CPU snapshot, or, for NORMAL below the gate, the gate after recycling each
    recyclable cache page in turn.  Approximations (rare races the single-threaded
    simulator can only create by hand): unrecyclable cache pages are counted as still
    cached for the SYSTEM clause, and a snapshot that promises pages the queues do not
    hold counts as success."""
    gd = vm.gd
    free = gd.cnt[CNT_FREE]
    cache = gd.cnt[CNT_CACHE]
    if _gate_open(gd, page_req, free, cache):
        return True
    if not page_req & VM_ALLOC_NORMAL:
        return False
    recyclable = 0
    pg = vm.pg
    heads = vm.pq.head
    for q in range(PQ_CACHE, PQ_CACHE + PQ_L2_SIZE):
        i = heads[q]
        while i >= 0:
            if not pg.busy[i] & (PBUSY_LOCKED | PBUSY_MASK) and _recyclable(vm, i):
                recyclable += 1
            i = pg.next[i]
    return any(_gate_open(gd, page_req, free + k, cache - k) for k in range(1, recyclable + 1))


def _recycle_cache_page(vm: MachineState, i: int, explain: dict[str, Any] | None) -> None:
    """``found_cache`` in ``vm_page_alloc``: free the recyclable cache page (the
    object lock is always available in the simulator) and retry."""
    if vm.pg.dirty[i]:
        raise KernelPanic("vm_page_alloc", "cache page is dirty")
    if explain is not None:
        explain["recycled_cache"].append(pfn_of(vm, i))
    if vm.pg.flags[i] & (PG_MAPPED | PG_WRITEABLE):
        vm_page_protect_none(vm, i)
    vm_page_free_toq(vm, i)


def _alloc_failed(vm: MachineState, explain: dict[str, Any] | None, free: int, why: str) -> int:
    """NULL from the free-count gate (``free`` is the count it read from the calling
    CPU's snapshot): the deficit, the daemon woken, and with a record the explanation
    (with ``count_lag``: whether that snapshot lagged)."""
    if explain is not None:
        explain["count_lag"] = count_lag(vm, CNT_FREE, free, f"cpu{vm.cpu.cpuid}.gd_vmstats")
    vm.pd.vm_pageout_deficit += 1
    pagedaemon_wakeup(vm)
    trace = vm.trace
    if explain is not None and trace is not None:
        explain["result"] = None
        explain["why_null"] = why
        explain["probes"] = trace.probes
        trace.probes = None
        trace.events.append(explain)
    return -1


# ------------------------------------------------------------ vm_wait (§13.1)
def vm_wait(vm: MachineState, timo: int) -> KernelGen:
    """``vm_wait(timo)``: below the nice-shifted minimum (``vm_paging_min_nice(nice +
    1)``: I/O waits are slightly nicer), poke the pagedaemon, count a waiter and sleep
    *once* on ``&vmstats.v_free_count`` for ``timo`` ticks (``hz`` when 0: never
    forever).  The pageout daemon itself waits on ``vm_pageout_pages_needed``."""
    if timo == 0:
        timo = vm.sched.hz
    if curthread_is_pagedaemon(vm):
        if vm_paging_min(vm.gd):
            vm.pd.vm_pageout_pages_needed = 1
            yield Sleep("vm_pageout_pages_needed", timo, "VMWait")
        return None
    if vm_paging_min_nice(vm.gd, vm.vmstats, vm.curthread_nice + 1):
        pd = vm.pd
        if pd.vm_pages_needed <= 1:
            pd.vm_pages_needed += 1
            wakeup(vm, "vm_pages_needed")
        pd.vm_pages_waiting += 1
        yield Sleep("v_free_count", timo, "vmwait")
    return None


def vm_wait_pfault(vm: MachineState) -> KernelGen:
    """``vm_wait_pfault()`` (page-fault path, spec §13.2): below ``vm_paging_min_nice(
    nice)`` sleep at least once in ``hz/10 + 1`` tick slices, and keep sleeping while
    memory is severe — unless the process is being OOM-killed (P_LOWMEMKILL)."""
    if not vm_paging_min_nice(vm.gd, vm.vmstats, vm.curthread_nice):
        return None
    pd = vm.pd
    while True:
        if pd.vm_pages_needed <= 1:
            pd.vm_pages_needed += 1
            wakeup(vm, "vm_pages_needed")
        pd.vm_pages_waiting += 1
        yield Sleep("v_free_count", vm.sched.hz // 10 + 1, "pfault")
        if curthread_lowmemkill(vm):
            break
        if not vm_paging_severe(vm.gd):
            break
    return None


def vm_wait_nominal(vm: MachineState) -> KernelGen:
    """``vm_wait_nominal()``: ``while vm_paging_min(): vm_wait(0)``."""
    while vm_paging_min(vm.gd):
        yield from vm_wait(vm, 0)
    return None


def vm_test_nominal(vm: MachineState) -> bool:
    """``vm_test_nominal()``: 1 iff ``vm_paging_min()``."""
    return vm_paging_min(vm.gd)


def vm_page_grab(vm: MachineState, obj: VmObject, pindex: int, flags: int) -> KernelGen:
    """``vm_page_grab(object, pindex, flags)``: the hard-busied page at ``pindex``,
    allocating it if absent (NULL_OK forced on with RETRY); zero-filled (``valid =
    0xFF``) with VM_ALLOC_ZERO when it was not valid, or always with
    VM_ALLOC_FORCE_ZERO.  Without RETRY, NULL whenever it had to ``vm_wait``.

    Quirk (spec §7.3): when the page exists but is busy and VM_ALLOC_RETRY is not set,
    the source calls ``vm_page_sleep_busy`` once, sets ``m = NULL``, leaves the loop
    and reads ``m->valid``: a NULL dereference.  The simulator does the same: the
    thread sleeps once on the page (``pgrbwt``), and the panic is reported when it
    resumes (in the waking call's ``resumed`` list and the thread's ``last_error``).
    What the sleep left stays: the interlock set PBUSY_WANTED and PG_REFERENCED on
    the page before sleeping; the wakeup that resumed the thread cleared WANTED,
    PG_REFERENCED remains; nothing else changed (the grab acquired nothing).  When
    ``vm_page_sleep_busy`` does not sleep (only WANTED/SWAPINPROG in the busy word),
    the dereference follows at once and the call is refused before any change."""
    _check_alloc_flags(vm, flags, "vm_page_grab")
    while True:
        i, err = vm_page_lookup_busy_try(vm, obj, pindex, True)
        if err:
            # vm_page_sleep_busy(m, TRUE, "pgrbwt"): one sleep, acquires nothing
            word = vm.pg.busy[i]
            if not word & (PBUSY_LOCKED | PBUSY_MASK) and not flags & VM_ALLOC_RETRY:
                # vm_page_sleep_busy returns at once (neither LOCKED nor a soft count)
                raise KernelPanic("vm_page_grab", _GRAB_NULL_DEREF)
            if not word & (PBUSY_LOCKED | PBUSY_MASK):
                # Only WANTED/SWAPINPROG is set: the lookup keeps failing (any bit
                # counts) while vm_page_sleep_busy returns at once (only LOCKED or the
                # soft count count), so the kernel spins until another CPU changes the
                # word.  Nothing else runs during this call: a hang, reported before
                # this iteration changes anything.
                raise WouldSleep(
                    "vm_page_grab",
                    "cpu",
                    f"page {pfn_of(vm, i):#x} has busy word {word:#x} (WANTED/SWAPINPROG "
                    "without a busy holder): the lookup fails and vm_page_sleep_busy does "
                    "not sleep, so the kernel would spin in this loop forever",
                )
            yield Sleep_on_page(vm, i, "pgrbwt")
            if not flags & VM_ALLOC_RETRY:
                raise KernelPanic("vm_page_grab", _GRAB_NULL_DEREF)
            continue
        if i < 0:
            req = flags
            if flags & VM_ALLOC_RETRY:
                req |= VM_ALLOC_NULL_OK
            i = vm_page_alloc(vm, obj, pindex, req & ~VM_ALLOC_RETRY)
            if i >= 0:
                break
            yield from vm_wait(vm, 0)
            if not flags & VM_ALLOC_RETRY:
                return -1
            continue
        break
    pg = vm.pg
    if pg.valid[i] == 0:
        if flags & (VM_ALLOC_ZERO | VM_ALLOC_FORCE_ZERO):
            pmap_zero_page(vm, i)
            pg.valid[i] = VM_PAGE_BITS_ALL
    elif flags & VM_ALLOC_FORCE_ZERO:
        pmap_zero_page(vm, i)
        pg.valid[i] = VM_PAGE_BITS_ALL
    return i


# ------------------------------------------------------------ zwq (§7.2)
def vm_page_alloczwq(vm: MachineState, pindex: int, flags: int) -> KernelGen:
    """``vm_page_alloczwq(pindex, flags)``: an object-less page, wired once and *not*
    busied, on no queue; zero-filled (``valid = 0xFF``) with ZERO/FORCE_ZERO.  NULL
    only after one ``vm_wait`` when VM_ALLOC_RETRY is not set."""
    _check_alloc_flags(vm, flags, "vm_page_alloczwq")
    while True:
        i = vm_page_alloc(vm, None, pindex, flags & ~VM_ALLOC_RETRY)
        if i >= 0:
            break
        yield from vm_wait(vm, 0)
        if not flags & VM_ALLOC_RETRY:
            return -1
    if flags & (VM_ALLOC_ZERO | VM_ALLOC_FORCE_ZERO):
        pmap_zero_page(vm, i)
        vm.pg.valid[i] = VM_PAGE_BITS_ALL
    vm_page_wire(vm, i)
    vm_page_wakeup(vm, i)
    return i


def _check_freezwq(vm: MachineState, i: int) -> None:
    pg = vm.pg
    fn = "vm_page_freezwq"
    if pg.flags[i] & PG_FICTITIOUS:
        raise SimulatorRefusal(
            fn,
            "the page is FICTITIOUS, so it is not a vm_page_alloczwq page; the kernel "
            "does not check (unwire and free skip a fictitious page), the simulator "
            "refuses",
        )
    if pg.wire[i] != 1:
        raise KernelPanic(
            fn,
            "vm_page_unwire: invalid wire count: 0"
            if pg.wire[i] == 0
            else f"vm_page_free: invalid wire count ({pg.wire[i] - 1})",
        )
    pmap_check_freezwq(vm, i)


def vm_page_freezwq(vm: MachineState, i: int) -> KernelGen:
    """``vm_page_freezwq(m)``: busy-wait (may sleep), unwire (1 -> 0 deactivates to
    the inactive tail) and free.  The wire count is checked before sleeping and again
    after waking, before anything changes."""
    _check_freezwq(vm, i)
    pg = vm.pg
    while pg.busy[i] & PBUSY_LOCKED:
        yield Sleep_on_page(vm, i, "pgzwq")
    _check_freezwq(vm, i)
    if pg.busy[i] & PBUSY_MASK:
        raise KernelPanic("vm_page_freezwq", "vm_page_free: freeing busy page")
    pg.busy[i] |= PBUSY_LOCKED
    vm_page_unwire(vm, i, False)
    vm_page_free_toq(vm, i)
    return None

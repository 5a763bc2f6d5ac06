"""The page queues, the lowest part of ``vm_page.c`` (spec §5, §8, §10): insertion and
removal (``_vm_page_add_queue_spinlocked``, ``_vm_page_rem_queue_spinlocked``) with the
per-CPU vmstats accounting and its folding rule, and the moves between queues built on
them: activation and deactivation, ``vm_page_unqueue``, wiring and unwiring, and
``pagedaemon_wakeup`` (``vm_pageout.c``'s, here because these moves call it).

Every public operation checks the kernel's KASSERTs first and raises ``KernelPanic``
before it changes anything.  Page arguments are page-array indices here; the call registry
translates the pfns users give.
"""

from __future__ import annotations

from typing import Final

from app.core.constants import (
    ACT_INIT,
    CNT_NAMES,
    CNT_WIRE,
    PG_FICTITIOUS,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_L2_SIZE,
    PQ_NONE,
)
from app.core.errors import KernelPanic, SimulatorRefusal
from app.core.kern_synch import curthread_is_pagedaemon, wakeup
from app.core.state import QUEUE_COUNTER, MachineState
from app.core.vm_page2 import _check_locked, pfn_of
from app.core.vmstats import vm_paging_min, vm_paging_start

_FOLD_LIMIT: Final = -1024


_NOT_QUEUEABLE: Final = PG_FICTITIOUS | PG_UNQUEUED


def _rem_queue(vm: MachineState, i: int) -> int:
    """``_vm_page_rem_queue_spinlocked``: unlink page ``i`` from its queue, count it
    out of the current CPU's ``gd_vmstats`` and ``gd_vmstats_adj`` (folding the
    adjustment into the global vmstats when it is below -1024 and
    ``vm_paging_start(-1024 * ncpus)`` holds), and return the old *base* queue
    (PQ_NONE if it was on none)."""
    pg = vm.pg
    q = pg.queue[i]
    if q == PQ_NONE:
        return PQ_NONE
    trace = vm.trace
    if trace is not None and i not in trace.first_queue:
        trace.first_queue[i] = q
    pq = vm.pq
    nxt: int = pg.next[i]
    prv: int = pg.prev[i]
    if prv < 0:
        pq.head[q] = nxt
    else:
        pg.next[prv] = nxt
    if nxt < 0:
        pq.tail[q] = prv
    else:
        pg.prev[nxt] = prv
    pg.next[i] = -1
    pg.prev[i] = -1
    pg.queue[i] = PQ_NONE
    # (item = item - 1 rather than item -= 1: the compiled core does the former with
    # native integer arithmetic, the latter with a generic in-place operator)
    lcnt = pq.lcnt
    lcnt[q] = lcnt[q] - 1
    k = QUEUE_COUNTER[q]
    adj = vm.adj.cnt
    adj[k] = adj[k] - 1
    cnt = vm.gd.cnt
    cnt[k] = cnt[k] - 1
    if adj[k] < _FOLD_LIMIT and vm_paging_start(vm.gd, _FOLD_LIMIT * vm.ncpus):
        # atomic_swap_long(&adj, 0) added to the global counter; gd not refreshed
        vm.vmstats.cnt[k] += adj[k]
        vm.event("vmstats_fold", counter=CNT_NAMES[k], value=adj[k])
        adj[k] = 0
    return q - pg.pc[i]


def _add_queue(vm: MachineState, i: int, queue: int, athead: bool) -> None:
    """``_vm_page_add_queue_spinlocked``: put page ``i`` (on PQ_NONE) on ``queue``;
    PQ_FREE always at the head (LIFO, cache-hot), others at the head iff
    ``athead``.  Callers check the KASSERTs first; reaching one here is a bug.

    The seam ``free_queue_end`` (``seams.SEAMS``) sits at "PQ_FREE always at the head":
    its choice ``tail`` puts every page added to a PQ_FREE queue at the tail."""
    pg = vm.pg
    if pg.queue[i] != PQ_NONE or pg.flags[i] & (PG_FICTITIOUS | PG_UNQUEUED):
        raise KernelPanic(
            "_vm_page_add_queue_spinlocked", "page already queued or FICTITIOUS/UNQUEUED"
        )
    trace = vm.trace
    if trace is not None and i not in trace.first_queue:
        trace.first_queue[i] = PQ_NONE
    pg.queue[i] = queue
    pq = vm.pq
    if queue <= PQ_L2_SIZE:  # queues 1..1024 are PQ_FREE: the head, unless the seam says
        athead = vm.policy.free_to_head
    if athead:
        heads = pq.head
        old = heads[queue]
        pg.prev[i] = -1
        pg.next[i] = old
        if old < 0:
            pq.tail[queue] = i
        else:
            pg.prev[old] = i
        heads[queue] = i
    else:
        tails = pq.tail
        old = tails[queue]
        pg.next[i] = -1
        pg.prev[i] = old
        if old < 0:
            pq.head[queue] = i
        else:
            pg.next[old] = i
        tails[queue] = i
    lcnt = pq.lcnt
    lcnt[queue] = lcnt[queue] + 1
    k = QUEUE_COUNTER[queue]
    cnt = vm.adj.cnt
    cnt[k] = cnt[k] + 1
    cnt = vm.gd.cnt
    cnt[k] = cnt[k] + 1


def _unlink(vm: MachineState, i: int, queue: int) -> None:
    """Take page ``i`` out of ``queue``'s list (links and head/tail only)."""
    pg = vm.pg
    pq = vm.pq
    nxt: int = pg.next[i]
    prv: int = pg.prev[i]
    if prv < 0:
        pq.head[queue] = nxt
    else:
        pg.next[prv] = nxt
    if nxt < 0:
        pq.tail[queue] = prv
    else:
        pg.prev[nxt] = prv


def _link(vm: MachineState, i: int, queue: int, athead: bool) -> None:
    """Put page ``i`` at the head or tail of ``queue``'s list (links only)."""
    pg = vm.pg
    pq = vm.pq
    if athead:
        old = pq.head[queue]
        pg.prev[i] = -1
        pg.next[i] = old
        if old < 0:
            pq.tail[queue] = i
        else:
            pg.prev[old] = i
        pq.head[queue] = i
    else:
        old = pq.tail[queue]
        pg.next[i] = -1
        pg.prev[i] = old
        if old < 0:
            pq.head[queue] = i
        else:
            pg.next[old] = i
        pq.tail[queue] = i


def _move_within(vm: MachineState, i: int, queue: int, athead: bool) -> None:
    """Requeue page ``i`` inside its current queue (head or tail) without touching
    counters, as the pageout daemon does under the queue lock alone.  (``_rem_queue``
    and ``_add_queue`` inline the same list steps: they are the hot paths.)"""
    _unlink(vm, i, queue)
    _link(vm, i, queue, athead)


def queue_pages(vm: MachineState, queue: int) -> list[int]:
    """Page indices on ``queue`` from head to tail."""
    out = []
    nxt = vm.pg.next
    i = vm.pq.head[queue]
    while i >= 0:
        out.append(i)
        i = nxt[i]
    return out


# ------------------------------------------------------------ pagedaemon / wakeups
def pagedaemon_wakeup(vm: MachineState) -> None:
    """``pagedaemon_wakeup()`` (``vm_pageout.c``, spec §13.4)."""
    gd = vm.gd
    if vm_paging_start(gd, 0) and not curthread_is_pagedaemon(vm):
        pd = vm.pd
        if pd.vm_pages_needed <= 1:
            pd.vm_pages_needed = 1
            wakeup(vm, "vm_pages_needed")
        elif vm_paging_min(gd):
            pd.vm_pages_needed += 1


# ------------------------------------------------------------ wiring (spec §10.1)
def vm_page_wire(vm: MachineState, i: int) -> None:
    """``vm_page_wire(m)``: 0 -> 1 counts in ``gd_vmstats_adj.v_wire_count`` only; the
    page stays on its queue.  No-op for FICTITIOUS pages."""
    _check_locked(vm, i, "vm_page_wire")
    pg = vm.pg
    if pg.flags[i] & PG_FICTITIOUS:
        return
    if pg.queue[i] - pg.pc[i] == PQ_FREE:
        raise SimulatorRefusal(
            "vm_page_wire",
            f"page {pfn_of(vm, i):#x} is on PQ_FREE: vm_page_wire does not check, but a "
            "wired free page trips the allocator's KASSERT (wire_count == 0) when it is "
            "selected, so the simulator refuses to create one",
        )
    w = pg.wire[i]
    if w >= 0xFFFFFFFF:
        raise KernelPanic("vm_page_wire", "wire_count overflow")
    pg.wire[i] = w + 1
    if w == 0:
        vm.adj.cnt[CNT_WIRE] += 1


def vm_page_unwire(vm: MachineState, i: int, activate: bool) -> None:
    """``vm_page_unwire(m, activate)``: 1 -> 0 uncounts the wiring and activates
    (``activate`` or NEED_COMMIT) or deactivates the page, unless UNQUEUED."""
    _check_locked(vm, i, "vm_page_unwire")
    pg = vm.pg
    flags = pg.flags[i]
    if flags & PG_FICTITIOUS:
        return
    w = pg.wire[i]
    if w == 0 or w >= 0x80000000:  # (int)wire_count <= 0
        raise KernelPanic("vm_page_unwire", f"invalid wire count: {w}")
    pg.wire[i] = w - 1
    if w == 1:
        vm.adj.cnt[CNT_WIRE] -= 1
        if flags & PG_UNQUEUED:
            return
        if activate or flags & PG_NEED_COMMIT:
            vm_page_activate(vm, i)
        else:
            vm_page_deactivate(vm, i)


# ------------------------------------------------------------ activation (§8.5)
def vm_page_activate(vm: MachineState, i: int) -> None:
    """``vm_page_activate(m)``: move to the tail of PQ_ACTIVE (from any queue or none),
    ``act_count = max(act_count, ACT_INIT)``; counts a reactivation from PQ_CACHE and
    wakes the pagedaemon when the page came from FREE or CACHE.  Allowed on wired
    pages; ignores FICTITIOUS/UNQUEUED pages (beyond the act_count bump)."""
    pg = vm.pg
    if pg.queue[i] - pg.pc[i] == PQ_ACTIVE or pg.flags[i] & _NOT_QUEUEABLE:
        if pg.act[i] < ACT_INIT:
            pg.act[i] = ACT_INIT
        return
    old = _rem_queue(vm, i)
    if old == PQ_CACHE:
        meter = vm.cpu.meter
        meter["v_reactivated"] = meter["v_reactivated"] + 1
    if pg.act[i] < ACT_INIT:
        pg.act[i] = ACT_INIT
    _add_queue(vm, i, PQ_ACTIVE + pg.pc[i], False)
    if old in (PQ_CACHE, PQ_FREE):
        pagedaemon_wakeup(vm)


def vm_page_soft_activate(vm: MachineState, i: int) -> None:
    """``vm_page_soft_activate(m)``: as ``vm_page_activate`` (the already-active case
    takes no lock, which the simulator cannot observe)."""
    vm_page_activate(vm, i)


def _deactivate_locked(vm: MachineState, i: int, athead: bool) -> None:
    """``_vm_page_deactivate_locked(m, athead)`` (spec §8.6)."""
    pg = vm.pg
    if pg.queue[i] - pg.pc[i] == PQ_INACTIVE or pg.flags[i] & _NOT_QUEUEABLE:
        return
    old = _rem_queue(vm, i)
    if old == PQ_CACHE:
        meter = vm.cpu.meter
        meter["v_reactivated"] = meter["v_reactivated"] + 1
    pg.flags[i] &= ~PG_WINATCFLS
    q = PQ_INACTIVE + pg.pc[i]
    _add_queue(vm, i, q, athead)
    if not athead:
        adds = vm.pq.adds
        adds[q] = adds[q] + 1


def vm_page_deactivate(vm: MachineState, i: int) -> None:
    """``vm_page_deactivate(m)``: to the inactive *tail* (bumping the queue's
    ``adds``), clearing PG_WINATCFLS; ``act_count`` untouched; allowed on wired pages."""
    _deactivate_locked(vm, i, False)


# ------------------------------------------------------------ unqueue (§8.4)
def vm_page_unqueue_nowakeup(vm: MachineState, i: int) -> None:
    """``vm_page_unqueue_nowakeup(m)``: take the page off whatever queue it is on."""
    _rem_queue(vm, i)


def vm_page_unqueue(vm: MachineState, i: int) -> None:
    """``vm_page_unqueue(m)``: as the no-wakeup form, then ``pagedaemon_wakeup()`` if
    the page came from PQ_FREE or PQ_CACHE."""
    old = _rem_queue(vm, i)
    if old in (PQ_FREE, PQ_CACHE):
        pagedaemon_wakeup(vm)

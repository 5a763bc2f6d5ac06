"""Freeing (spec §8.2, §8.3): ``vm_page_free_toq`` with every KASSERT and panic evaluated
before anything changes (the pmap's check first: a page that still has mappings), and
``vm_page_free_wakeup``, which wakes the daemon's and ``vm_wait``'s sleepers once enough
pages are free."""

from __future__ import annotations

from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WRITEABLE,
    PQ_FREE,
    PQ_HOLD,
    PQ_NONE,
)
from app.core.errors import KernelPanic
from app.core.kern_synch import wakeup
from app.core.pmap import pmap_check_free_toq, pmap_mapped_sync
from app.core.state import MachineState
from app.core.vm_page.busy import _clear_busy
from app.core.vm_page.object import _vm_page_remove
from app.core.vm_page.queues import _add_queue, _rem_queue
from app.core.vmstats import vm_paging_min_dnc, vm_paging_target1


def vm_page_free_wakeup(vm: MachineState) -> None:
    """``vm_page_free_wakeup()`` after a page reached FREE or CACHE (spec §8.3)."""
    gd = vm.gd
    c = gd.cnt
    pd = vm.pd
    if pd.vm_pageout_pages_needed and c[3] + c[0] >= gd.v_pageout_free_min:
        pd.vm_pageout_pages_needed = 0
        wakeup(vm, "vm_pageout_pages_needed")
    if pd.vm_pages_waiting and (
        not vm_paging_min_dnc(gd, pd.vm_page_free_hysteresis) or not vm_paging_target1(gd)
    ):
        pd.vm_pages_waiting = 0
        wakeup(vm, "v_free_count")
        meter = vm.cpu.meter
        meter["v_ppwakeups"] = meter["v_ppwakeups"] + 1


# ------------------------------------------------------------ freeing (§8.2)
def _check_free_toq(vm: MachineState, i: int) -> None:
    """The KASSERTs and panics of ``vm_page_free_toq``, evaluated up front (the pmap's
    first: a page that still has mappings)."""
    pmap_check_free_toq(vm, i)
    pg = vm.pg
    fn = "vm_page_free_toq"
    busy = pg.busy[i]
    # The PBUSY_LOCKED KASSERT comes before the busy/free diagnostics (spec §8.2).
    if not busy & PBUSY_LOCKED:
        raise KernelPanic(fn, "page is not busied: vm_page_free_toq requires PBUSY_LOCKED")
    if busy & PBUSY_MASK or pg.queue[i] - pg.pc[i] == PQ_FREE:
        what = "freeing busy page" if busy & PBUSY_MASK else "freeing free page"
        raise KernelPanic(
            fn,
            f"vm_page_free: pindex({pg.pindex[i]}), busy {busy:#x}, hold({pg.hold[i]}): {what}",
        )
    if pg.flags[i] & PG_FICTITIOUS:
        if pg.queue[i] != PQ_NONE:
            raise KernelPanic(fn, "fictitious page on a queue")
        return
    w = pg.wire[i]
    if w:
        raise KernelPanic(
            fn,
            f"vm_page_free: invalid wire count ({w}), pindex: {pg.pindex[i]:#x}"
            if w > 1
            else "vm_page_free: freeing wired page",
        )


def vm_page_free_toq(vm: MachineState, i: int) -> None:
    """``vm_page_free_toq(m)`` (also ``vm_page_free``, ``vm_page_free_zero``): detach
    from the object, clear valid/dirty, NEED_COMMIT and UNQUEUED, and put the page at
    the head of PQ_FREE, or at the tail of PQ_HOLD when it is held; then unbusy and
    ``vm_page_free_wakeup()``.  Other flags and ``act_count`` are left as they are.  (Which
    end of PQ_FREE is the seam ``free_queue_end``'s, in ``_add_queue``.)"""
    _check_free_toq(vm, i)
    pg = vm.pg
    meter = vm.cpu.meter
    meter["v_tfree"] = meter["v_tfree"] + 1  # (not +=: see queues._rem_queue)
    if pg.flags[i] & (PG_MAPPED | PG_WRITEABLE):
        pmap_mapped_sync(vm, i)
    _vm_page_remove(vm, i)
    if pg.flags[i] & PG_FICTITIOUS:
        _clear_busy(vm, i)
        return
    _rem_queue(vm, i)
    pg.valid[i] = 0
    pg.dirty[i] = 0
    pg.flags[i] &= ~(PG_NEED_COMMIT | PG_UNQUEUED)
    if pg.hold[i]:
        _add_queue(vm, i, PQ_HOLD + pg.pc[i], False)
    else:
        _add_queue(vm, i, PQ_FREE + pg.pc[i], True)
    _clear_busy(vm, i)
    vm_page_free_wakeup(vm)

"""Page state transitions used by allocation and freeing (spec §8, §9, §10): the busy
primitives, wiring, activation/deactivation, ``vm_page_unqueue``, ``vm_page_free_toq``,
``vm_page_free_wakeup`` and ``pagedaemon_wakeup``.

Every public operation checks the kernel's KASSERTs first and raises ``KernelPanic``
before it changes anything.  Page arguments are page-array indices here; the call registry
translates the pfns users give.
"""

from __future__ import annotations

from .constants import (
    ACT_INIT,
    CNT_WIRE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_NONE,
)
from .errors import KernelPanic, SimulatorRefusal
from .objects_ops import ObjectOps
from .vmstats import vm_paging_min, vm_paging_min_dnc, vm_paging_start, vm_paging_target1

_NOT_QUEUEABLE = PG_FICTITIOUS | PG_UNQUEUED


class PageOps(ObjectOps):
    # ------------------------------------------------------------ pagedaemon / wakeups
    def pagedaemon_wakeup(self) -> None:
        """``pagedaemon_wakeup()`` (``vm_pageout.c``, spec §13.4)."""
        gd = self.gd
        if vm_paging_start(gd, 0) and not self.curthread_is_pagedaemon():
            if self.vm_pages_needed <= 1:
                self.vm_pages_needed = 1
                self.wakeup("vm_pages_needed")
            elif vm_paging_min(gd):
                self.vm_pages_needed += 1

    def vm_page_free_wakeup(self) -> None:
        """``vm_page_free_wakeup()`` after a page reached FREE or CACHE (spec §8.3)."""
        gd = self.gd
        c = gd.cnt
        if self.vm_pageout_pages_needed and c[3] + c[0] >= gd.v_pageout_free_min:
            self.vm_pageout_pages_needed = 0
            self.wakeup("vm_pageout_pages_needed")
        if self.vm_pages_waiting and (
            not vm_paging_min_dnc(gd, self.vm_page_free_hysteresis) or not vm_paging_target1(gd)
        ):
            self.vm_pages_waiting = 0
            self.wakeup("v_free_count")
            self.cpu.meter["v_ppwakeups"] += 1

    # ------------------------------------------------------------ busy (spec §9)
    def vm_page_busy_try(self, i: int, also_m_busy: bool) -> bool:
        """``vm_page_busy_try(m, also_m_busy)``: TRUE on *failure*.  Fails if hard-busy,
        or (with ``also_m_busy``) if the soft-busy count is non-zero; WANTED or
        SWAPINPROG alone do not make it fail."""
        busy = self.pg.busy
        word = busy[i]
        if word & PBUSY_LOCKED or (also_m_busy and word & PBUSY_MASK):
            return True
        busy[i] = word | PBUSY_LOCKED
        return False

    def _check_locked(self, i: int, function: str) -> None:
        if not self.pg.busy[i] & PBUSY_LOCKED:
            raise KernelPanic(
                function, f"page {self.pfn_of(i):#x} is not hard-busied (PBUSY_LOCKED)"
            )

    def vm_page_wakeup(self, i: int) -> None:
        """``vm_page_wakeup(m)``: clear hard-busy and WANTED, ``wakeup(m)`` if WANTED was
        set.  Asserts the page is hard-busied."""
        self._check_locked(i, "vm_page_wakeup")
        self._clear_busy(i)

    def _clear_busy(self, i: int) -> None:
        busy = self.pg.busy
        word = busy[i]
        busy[i] = word & ~(PBUSY_LOCKED | PBUSY_WANTED)
        if word & PBUSY_WANTED:
            self.wakeup(f"page:{self.pfn_of(i)}")

    # ------------------------------------------------------------ wiring (spec §10.1)
    def vm_page_wire(self, i: int) -> None:
        """``vm_page_wire(m)``: 0 -> 1 counts in ``gd_vmstats_adj.v_wire_count`` only; the
        page stays on its queue.  No-op for FICTITIOUS pages."""
        self._check_locked(i, "vm_page_wire")
        pg = self.pg
        if pg.flags[i] & PG_FICTITIOUS:
            return
        if pg.queue[i] - pg.pc[i] == PQ_FREE:
            raise SimulatorRefusal(
                "vm_page_wire",
                f"page {self.pfn_of(i):#x} is on PQ_FREE: vm_page_wire does not check, but a "
                "wired free page trips the allocator's KASSERT (wire_count == 0) when it is "
                "selected, so the simulator refuses to create one",
            )
        w = pg.wire[i]
        if w >= 0xFFFFFFFF:
            raise KernelPanic("vm_page_wire", "wire_count overflow")
        pg.wire[i] = w + 1
        if w == 0:
            self.adj.cnt[CNT_WIRE] += 1

    def vm_page_unwire(self, i: int, activate: bool) -> None:
        """``vm_page_unwire(m, activate)``: 1 -> 0 uncounts the wiring and activates
        (``activate`` or NEED_COMMIT) or deactivates the page, unless UNQUEUED."""
        self._check_locked(i, "vm_page_unwire")
        pg = self.pg
        flags = pg.flags[i]
        if flags & PG_FICTITIOUS:
            return
        w = pg.wire[i]
        if w == 0 or w >= 0x80000000:  # (int)wire_count <= 0
            raise KernelPanic("vm_page_unwire", f"invalid wire count: {w}")
        pg.wire[i] = w - 1
        if w == 1:
            self.adj.cnt[CNT_WIRE] -= 1
            if flags & PG_UNQUEUED:
                return
            if activate or flags & PG_NEED_COMMIT:
                self.vm_page_activate(i)
            else:
                self.vm_page_deactivate(i)

    # ------------------------------------------------------------ activation (§8.5)
    def vm_page_activate(self, i: int) -> None:
        """``vm_page_activate(m)``: move to the tail of PQ_ACTIVE (from any queue or none),
        ``act_count = max(act_count, ACT_INIT)``; counts a reactivation from PQ_CACHE and
        wakes the pagedaemon when the page came from FREE or CACHE.  Allowed on wired
        pages; ignores FICTITIOUS/UNQUEUED pages (beyond the act_count bump)."""
        pg = self.pg
        if pg.queue[i] - pg.pc[i] == PQ_ACTIVE or pg.flags[i] & _NOT_QUEUEABLE:
            if pg.act[i] < ACT_INIT:
                pg.act[i] = ACT_INIT
            return
        old = self._rem_queue(i)
        if old == PQ_CACHE:
            self.cpu.meter["v_reactivated"] += 1
        if pg.act[i] < ACT_INIT:
            pg.act[i] = ACT_INIT
        self._add_queue(i, PQ_ACTIVE + pg.pc[i], False)
        if old in (PQ_CACHE, PQ_FREE):
            self.pagedaemon_wakeup()

    def vm_page_soft_activate(self, i: int) -> None:
        """``vm_page_soft_activate(m)``: as ``vm_page_activate`` (the already-active case
        takes no lock, which the simulator cannot observe)."""
        self.vm_page_activate(i)

    def _deactivate_locked(self, i: int, athead: bool) -> None:
        """``_vm_page_deactivate_locked(m, athead)`` (spec §8.6)."""
        pg = self.pg
        if pg.queue[i] - pg.pc[i] == PQ_INACTIVE or pg.flags[i] & _NOT_QUEUEABLE:
            return
        old = self._rem_queue(i)
        if old == PQ_CACHE:
            self.cpu.meter["v_reactivated"] += 1
        pg.flags[i] &= ~PG_WINATCFLS
        q = PQ_INACTIVE + pg.pc[i]
        self._add_queue(i, q, athead)
        if not athead:
            self.q_adds[q] += 1

    def vm_page_deactivate(self, i: int) -> None:
        """``vm_page_deactivate(m)``: to the inactive *tail* (bumping the queue's
        ``adds``), clearing PG_WINATCFLS; ``act_count`` untouched; allowed on wired pages."""
        self._deactivate_locked(i, False)

    # ------------------------------------------------------------ unqueue (§8.4)
    def vm_page_unqueue_nowakeup(self, i: int) -> None:
        """``vm_page_unqueue_nowakeup(m)``: take the page off whatever queue it is on."""
        self._rem_queue(i)

    def vm_page_unqueue(self, i: int) -> None:
        """``vm_page_unqueue(m)``: as the no-wakeup form, then ``pagedaemon_wakeup()`` if
        the page came from PQ_FREE or PQ_CACHE."""
        old = self._rem_queue(i)
        if old in (PQ_FREE, PQ_CACHE):
            self.pagedaemon_wakeup()

    # ------------------------------------------------------------ pmap (minimal)
    def pmap_zero_page(self, i: int) -> None:
        """``pmap_zero_page(pa)``: zero the page's contents (modelled by ``pmap.py``)."""

    def pmap_mapped_sync(self, i: int) -> None:
        """``pmap_mapped_sync(m)``: recompute PG_MAPPED/PG_WRITEABLE from the page's real
        mappings.  Core engine I has no pmap: a page has no mappings, so both clear."""
        self.pg.flags[i] &= ~(PG_MAPPED | PG_WRITEABLE)

    def vm_page_protect_none(self, i: int) -> None:
        """``vm_page_protect(m, VM_PROT_NONE)``: remove every mapping (clears PG_MAPPED and
        PG_WRITEABLE)."""
        self.pg.flags[i] &= ~(PG_MAPPED | PG_WRITEABLE)

    # ------------------------------------------------------------ freeing (§8.2)
    def _check_free_toq(self, i: int) -> None:
        """The KASSERTs and panics of ``vm_page_free_toq``, evaluated up front."""
        pg = self.pg
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

    def vm_page_free_toq(self, i: int) -> None:
        """``vm_page_free_toq(m)`` (also ``vm_page_free``, ``vm_page_free_zero``): detach
        from the object, clear valid/dirty, NEED_COMMIT and UNQUEUED, and put the page at
        the head of PQ_FREE, or at the tail of PQ_HOLD when it is held; then unbusy and
        ``vm_page_free_wakeup()``.  Other flags and ``act_count`` are left as they are."""
        self._check_free_toq(i)
        pg = self.pg
        self.cpu.meter["v_tfree"] += 1
        if pg.flags[i] & (PG_MAPPED | PG_WRITEABLE):
            self.pmap_mapped_sync(i)
        self._vm_page_remove(i)
        if pg.flags[i] & PG_FICTITIOUS:
            self._clear_busy(i)
            return
        self._rem_queue(i)
        pg.valid[i] = 0
        pg.dirty[i] = 0
        pg.flags[i] &= ~(PG_NEED_COMMIT | PG_UNQUEUED)
        if pg.hold[i]:
            self._add_queue(i, PQ_HOLD + pg.pc[i], False)
        else:
            self._add_queue(i, PQ_FREE + pg.pc[i], True)
        self._clear_busy(i)
        self.vm_page_free_wakeup()


__all__ = ["PageOps", "PQ_NONE"]

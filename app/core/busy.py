"""The busy word (spec §9): ``vm_page_busy_wait``, ``vm_page_sleep_busy``,
``vm_page_io_start`` / ``vm_page_io_finish``, ``vm_page_sbusy_try`` / ``_hold`` /
``_drop``, ``vm_page_flash`` and ``vm_page_flag_set`` / ``_clear``.

(``vm_page_busy_try`` and ``vm_page_wakeup`` live in ``pageops.py``.)  Sleeping always
sets PBUSY_WANTED and PG_REFERENCED first; whoever clears the hard busy, or drops the
last soft busy, wakes the sleepers.  The functions that sleep are generators (see
``sched.py``).
"""

from __future__ import annotations

from typing import Any

from .alloc import AllocOps
from .constants import PBUSY_LOCKED, PBUSY_MASK, PBUSY_WANTED, PG_REFERENCED
from .errors import KernelPanic, SimulatorRefusal
from .sched import KernelGen, Sleep

_SOFT_OVERFLOW = (
    "the soft-busy count is at its maximum (PBUSY_MASK). The kernel does not check: one "
    "more would carry into PBUSY_SWAPINPROG, so the simulator refuses"
)


class BusyOps(AllocOps):
    def _sleep_on_page(self, i: int, wmesg: str, timo: int = 0) -> Sleep:
        """Arm the interlock: set PBUSY_WANTED (and PG_REFERENCED), then ``tsleep(m)``."""
        self.pg.busy[i] |= PBUSY_WANTED
        self.pg.flags[i] |= PG_REFERENCED
        return Sleep(f"page:{self.pfn_of(i)}", timo, wmesg)

    def vm_page_busy_wait(self, i: int, also_m_busy: bool, msg: str) -> KernelGen:
        """``vm_page_busy_wait(m, also_m_busy, msg)``: sleep until the page can be
        hard-busied, then busy it (never fails).  With ``also_m_busy`` *any* non-zero busy
        word — a soft-busy count, WANTED or SWAPINPROG alone — makes it sleep (unlike
        ``vm_page_busy_try``, which only looks at the soft count)."""
        busy = self.pg.busy
        while True:
            word = busy[i]
            if word & PBUSY_LOCKED or (also_m_busy and word):
                yield self._sleep_on_page(i, msg)
                continue
            busy[i] = word | PBUSY_LOCKED
            return None

    def vm_page_sleep_busy(self, i: int, also_m_busy: bool, msg: str) -> KernelGen:
        """``vm_page_sleep_busy(m, also_m_busy, msg)``: if the page is busy, sleep *once*
        until it is released; acquires nothing."""
        word = self.pg.busy[i]
        if not word & PBUSY_LOCKED and (not also_m_busy or not word & PBUSY_MASK):
            return None
        yield self._sleep_on_page(i, msg)
        return None

    def vm_page_io_start(self, i: int) -> None:
        """``vm_page_io_start(m)``: soft-busy count + 1; the page must be hard-busied."""
        word = self.pg.busy[i]
        if not word & PBUSY_LOCKED:
            raise KernelPanic("vm_page_io_start", "page not busy")
        if word & PBUSY_MASK == PBUSY_MASK:
            raise SimulatorRefusal("vm_page_io_start", _SOFT_OVERFLOW)
        self.pg.busy[i] = word + 1

    def vm_page_io_finish(self, i: int) -> None:
        """``vm_page_io_finish(m)``: soft-busy count − 1.  No wakeup: the kernel's wakeup
        code here is compiled out (quirk)."""
        word = self.pg.busy[i]
        if not word & PBUSY_MASK:
            raise KernelPanic("vm_page_io_finish", "soft-busy count is already 0")
        self.pg.busy[i] = word - 1

    def vm_page_sbusy_try(self, i: int) -> int:
        """``vm_page_sbusy_try(m)``: 0 on success (soft count + 1), 1 if hard-busied."""
        word = self.pg.busy[i]
        if word & PBUSY_LOCKED:
            return 1
        if word & PBUSY_MASK == PBUSY_MASK:
            raise SimulatorRefusal("vm_page_sbusy_try", _SOFT_OVERFLOW)
        self.pg.busy[i] = word + 1
        return 0

    def vm_page_sbusy_hold(self, i: int) -> None:
        """``vm_page_sbusy_hold(m)``: soft count + 1 unconditionally."""
        word = self.pg.busy[i]
        if word & PBUSY_MASK == PBUSY_MASK:
            raise SimulatorRefusal("vm_page_sbusy_hold", _SOFT_OVERFLOW)
        self.pg.busy[i] = word + 1

    def vm_page_sbusy_drop(self, i: int) -> None:
        """``vm_page_sbusy_drop(m)``: soft count − 1; if the whole word is then exactly
        PBUSY_WANTED (no hard busy, no soft busy, no SWAPINPROG), clear WANTED and
        ``wakeup(m)``."""
        word = self.pg.busy[i]
        if not word & PBUSY_MASK:
            raise SimulatorRefusal(
                "vm_page_sbusy_drop",
                f"page {self.pfn_of(i):#x} has no soft busy to drop (busy word {word:#x}). The "
                "kernel does not check: its atomic decrement would borrow from the flag bits "
                "(PBUSY_SWAPINPROG, PBUSY_WANTED, PBUSY_LOCKED), so the simulator refuses",
            )
        word -= 1
        if word == PBUSY_WANTED:
            self.pg.busy[i] = 0
            self.wakeup(f"page:{self.pfn_of(i)}")
        else:
            self.pg.busy[i] = word

    def vm_page_flash(self, i: int) -> None:
        """``vm_page_flash(m)``: if WANTED, clear it and ``wakeup(m)``."""
        word = self.pg.busy[i]
        if word & PBUSY_WANTED:
            self.pg.busy[i] = word & ~PBUSY_WANTED
            self.wakeup(f"page:{self.pfn_of(i)}")

    def vm_page_flag_set(self, i: int, bits: int) -> None:
        """``vm_page_flag_set(m, bits)``: atomic OR on ``flags``; no assertions.  The
        simulator refuses PG_FICTITIOUS/PG_UNQUEUED/PG_NEED_COMMIT on a queued free page
        (the allocator would trip its KASSERT on it later)."""
        self._check_flag_change(i, bits)
        self.pg.flags[i] |= bits

    def vm_page_flag_clear(self, i: int, bits: int) -> None:
        """``vm_page_flag_clear(m, bits)``: atomic AND-NOT on ``flags``; no assertions.
        The simulator refuses clearing PG_FICTITIOUS/PG_UNQUEUED on a page of the DMA
        reserve (below ``vm_low_phys_reserved``): the reserve's pages must stay
        FICTITIOUS|UNQUEUED while the alist may hand them out (and
        ``vm_page_free_contig`` takes them back by that mark).  Elsewhere clearing them
        is harmless: the page stays on PQ_NONE."""
        from .constants import PAGE_SHIFT, PG_FICTITIOUS, PG_UNQUEUED

        if (
            self.pg.flags[i] & bits & (PG_FICTITIOUS | PG_UNQUEUED)
            and self.pfn_of(i) << PAGE_SHIFT < self.vm_low_phys_reserved
        ):
            raise SimulatorRefusal(
                "vm_page_flag_clear",
                f"page {self.pfn_of(i):#x} belongs to the DMA reserve, whose pages must stay "
                "PG_FICTITIOUS|PG_UNQUEUED while the alist may hand them out; the kernel "
                "does not check, the simulator keeps its reserve consistent",
            )
        self.pg.flags[i] &= ~bits

    def _check_flag_change(self, i: int, bits: int) -> None:
        from .constants import PG_FICTITIOUS, PG_NEED_COMMIT, PG_UNQUEUED

        pg = self.pg
        if pg.queue[i] and bits & (PG_FICTITIOUS | PG_UNQUEUED):
            raise SimulatorRefusal(
                "vm_page_flag_set",
                "a queued page cannot become FICTITIOUS/UNQUEUED: vm_page_flag_set itself "
                "asserts nothing, but the queue code later asserts such pages are never on "
                "a queue, so the simulator refuses to create one",
            )
        if bits & PG_NEED_COMMIT and pg.queue[i] and pg.queue[i] <= 1024:
            raise SimulatorRefusal(
                "vm_page_flag_set",
                "a free page cannot need a commit: vm_page_flag_set itself asserts nothing, "
                "but the allocator asserts it when it selects the page, so the simulator "
                "refuses to create one",
            )

    def _check_area_invariants(self) -> None:
        """Invariants of the areas above the allocator; each mixin extends this."""

    def _digest_parts(self) -> list[Any]:
        """State of the areas above the allocator, for ``state_digest``; each mixin
        extends this."""
        return []

"""The busy word (spec §9): ``vm_page_busy_wait``, ``vm_page_sleep_busy``,
``vm_page_io_start`` / ``vm_page_io_finish``, ``vm_page_sbusy_try`` / ``_hold`` /
``_drop``, ``vm_page_flash`` and ``vm_page_flag_set`` / ``_clear``.

``vm_page_busy_try``, ``vm_page_wakeup`` and ``vm_page_lookup_busy_try`` live here too.
Sleeping always sets PBUSY_WANTED and PG_REFERENCED first; whoever clears the hard busy,
or drops the last soft busy, wakes the sleepers.  The functions that sleep are generators
(see ``kern_synch.py``).
"""

from __future__ import annotations

from typing import Final

from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_SWAPINPROG,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_UNQUEUED,
)
from app.core.errors import KernelPanic, SimulatorRefusal
from app.core.kern_synch import KernelGen, Sleep, wakeup
from app.core.objects import VmObject
from app.core.pmap import pmap_check_flag_change, pmap_check_flag_clear
from app.core.state import MachineState
from app.core.vm_page.hash import vm_page_hash_enter
from app.core.vm_page2 import _check_locked, pfn_of

_SOFT_OVERFLOW: Final = (
    "the soft-busy count is at its maximum (PBUSY_MASK). The kernel does not check: one "
    "more would carry into PBUSY_SWAPINPROG, so the simulator refuses"
)


# ------------------------------------------------------------ busy (spec §9)
def describe_busy(word: int) -> str:
    """The busy word in words, for explanations: hard busy (PBUSY_LOCKED), the soft-busy
    count (I/O in progress), WANTED (a sleeper waits) and SWAPINPROG."""
    parts = []
    if word & PBUSY_LOCKED:
        parts.append("hard-busied (PBUSY_LOCKED)")
    if word & PBUSY_MASK:
        parts.append(f"soft-busied {word & PBUSY_MASK} time(s) (I/O in progress)")
    if word & PBUSY_WANTED:
        parts.append("PBUSY_WANTED (a thread sleeps on it)")
    if word & PBUSY_SWAPINPROG:
        parts.append("PBUSY_SWAPINPROG (swap I/O)")
    return ", ".join(parts) or "not busy"


def vm_page_busy_try(vm: MachineState, i: int, also_m_busy: bool) -> bool:
    """``vm_page_busy_try(m, also_m_busy)``: TRUE on *failure*.  Fails if hard-busy,
    or (with ``also_m_busy``) if the soft-busy count is non-zero; WANTED or
    SWAPINPROG alone do not make it fail."""
    busy = vm.pg.busy
    word = busy[i]
    if word & PBUSY_LOCKED or (also_m_busy and word & PBUSY_MASK):
        return True
    busy[i] = word | PBUSY_LOCKED
    return False


def vm_page_wakeup(vm: MachineState, i: int) -> None:
    """``vm_page_wakeup(m)``: clear hard-busy and WANTED, ``wakeup(m)`` if WANTED was
    set.  Asserts the page is hard-busied."""
    _check_locked(vm, i, "vm_page_wakeup")
    _clear_busy(vm, i)


def _clear_busy(vm: MachineState, i: int) -> None:
    busy = vm.pg.busy
    word = busy[i]
    busy[i] = word & ~(PBUSY_LOCKED | PBUSY_WANTED)
    if word & PBUSY_WANTED:
        wakeup(vm, f"page:{pfn_of(vm, i)}")


# ------------------------------------------------------------ grab (§7.3)
def vm_page_lookup_busy_try(
    vm: MachineState, obj: VmObject, pindex: int, also_m_busy: bool
) -> tuple[int, bool]:
    """``vm_page_lookup_busy_try(object, pindex, also_m_busy, &error)``: (page, error).
    error TRUE means the page exists but is busy (hard, or with ``also_m_busy`` any
    bit of the busy word) and was not busied; (-1, FALSE) means absent."""
    i: int = obj.pages.get(pindex, -1)
    if i < 0:
        return -1, False
    word = vm.pg.busy[i]
    if word & PBUSY_LOCKED or (also_m_busy and word):
        return i, True
    vm.pg.busy[i] = word | PBUSY_LOCKED
    vm_page_hash_enter(vm, i)
    return i, False


def _sleep_on_page(vm: MachineState, i: int, wmesg: str, timo: int = 0) -> Sleep:
    """Arm the interlock: set PBUSY_WANTED (and PG_REFERENCED), then ``tsleep(m)``."""
    vm.pg.busy[i] |= PBUSY_WANTED
    vm.pg.flags[i] |= PG_REFERENCED
    return Sleep(f"page:{pfn_of(vm, i)}", timo, wmesg)


def vm_page_busy_wait(vm: MachineState, i: int, also_m_busy: bool, msg: str) -> KernelGen:
    """``vm_page_busy_wait(m, also_m_busy, msg)``: sleep until the page can be
    hard-busied, then busy it (never fails).  With ``also_m_busy`` *any* non-zero busy
    word — a soft-busy count, WANTED or SWAPINPROG alone — makes it sleep (unlike
    ``vm_page_busy_try``, which only looks at the soft count)."""
    busy = vm.pg.busy
    while True:
        word = busy[i]
        if word & PBUSY_LOCKED or (also_m_busy and word):
            yield _sleep_on_page(vm, i, msg)
            continue
        busy[i] = word | PBUSY_LOCKED
        return None


def vm_page_sleep_busy(vm: MachineState, i: int, also_m_busy: bool, msg: str) -> KernelGen:
    """``vm_page_sleep_busy(m, also_m_busy, msg)``: if the page is busy, sleep *once*
    until it is released; acquires nothing."""
    word = vm.pg.busy[i]
    if not word & PBUSY_LOCKED and (not also_m_busy or not word & PBUSY_MASK):
        return None
    yield _sleep_on_page(vm, i, msg)
    return None


def vm_page_io_start(vm: MachineState, i: int) -> None:
    """``vm_page_io_start(m)``: soft-busy count + 1; the page must be hard-busied."""
    word = vm.pg.busy[i]
    if not word & PBUSY_LOCKED:
        raise KernelPanic("vm_page_io_start", "page not busy")
    if word & PBUSY_MASK == PBUSY_MASK:
        raise SimulatorRefusal("vm_page_io_start", _SOFT_OVERFLOW)
    vm.pg.busy[i] = word + 1


def vm_page_io_finish(vm: MachineState, i: int) -> None:
    """``vm_page_io_finish(m)``: soft-busy count − 1.  No wakeup: the kernel's wakeup
    code here is compiled out (quirk)."""
    word = vm.pg.busy[i]
    if not word & PBUSY_MASK:
        raise KernelPanic("vm_page_io_finish", "soft-busy count is already 0")
    vm.pg.busy[i] = word - 1


def vm_page_sbusy_try(vm: MachineState, i: int) -> int:
    """``vm_page_sbusy_try(m)``: 0 on success (soft count + 1), 1 if hard-busied."""
    word = vm.pg.busy[i]
    if word & PBUSY_LOCKED:
        return 1
    if word & PBUSY_MASK == PBUSY_MASK:
        raise SimulatorRefusal("vm_page_sbusy_try", _SOFT_OVERFLOW)
    vm.pg.busy[i] = word + 1
    return 0


def vm_page_sbusy_hold(vm: MachineState, i: int) -> None:
    """``vm_page_sbusy_hold(m)``: soft count + 1 unconditionally."""
    word = vm.pg.busy[i]
    if word & PBUSY_MASK == PBUSY_MASK:
        raise SimulatorRefusal("vm_page_sbusy_hold", _SOFT_OVERFLOW)
    vm.pg.busy[i] = word + 1


def vm_page_sbusy_drop(vm: MachineState, i: int) -> None:
    """``vm_page_sbusy_drop(m)``: soft count − 1; if the whole word is then exactly
    PBUSY_WANTED (no hard busy, no soft busy, no SWAPINPROG), clear WANTED and
    ``wakeup(m)``."""
    word = vm.pg.busy[i]
    if not word & PBUSY_MASK:
        raise SimulatorRefusal(
            "vm_page_sbusy_drop",
            f"page {pfn_of(vm, i):#x} has no soft busy to drop (busy word {word:#x}). The "
            "kernel does not check: its atomic decrement would borrow from the flag bits "
            "(PBUSY_SWAPINPROG, PBUSY_WANTED, PBUSY_LOCKED), so the simulator refuses",
        )
    word -= 1
    if word == PBUSY_WANTED:
        vm.pg.busy[i] = 0
        wakeup(vm, f"page:{pfn_of(vm, i)}")
    else:
        vm.pg.busy[i] = word


def vm_page_flash(vm: MachineState, i: int) -> None:
    """``vm_page_flash(m)``: if WANTED, clear it and ``wakeup(m)``."""
    word = vm.pg.busy[i]
    if word & PBUSY_WANTED:
        vm.pg.busy[i] = word & ~PBUSY_WANTED
        wakeup(vm, f"page:{pfn_of(vm, i)}")


def vm_page_flag_set(vm: MachineState, i: int, bits: int) -> None:
    """``vm_page_flag_set(m, bits)``: atomic OR on ``flags``; no assertions.  The
    simulator refuses PG_FICTITIOUS/PG_UNQUEUED/PG_NEED_COMMIT on a queued free page
    (the allocator would trip its KASSERT on it later)."""
    _check_flag_change(vm, i, bits)
    vm.pg.flags[i] |= bits


def vm_page_flag_clear(vm: MachineState, i: int, bits: int) -> None:
    """``vm_page_flag_clear(m, bits)``: atomic AND-NOT on ``flags``; no assertions.
    The simulator refuses clearing PG_FICTITIOUS/PG_UNQUEUED on a page of the DMA
    reserve (below ``vm_low_phys_reserved``): the reserve's pages must stay
    FICTITIOUS|UNQUEUED while the alist may hand them out (and
    ``vm_page_free_contig`` takes them back by that mark).  Elsewhere clearing them
    is harmless: the page stays on PQ_NONE.  The pmap's refusal comes first."""
    pmap_check_flag_clear(vm, i, bits)
    from app.core.constants import PAGE_SHIFT

    if (
        vm.pg.flags[i] & bits & (PG_FICTITIOUS | PG_UNQUEUED)
        and pfn_of(vm, i) << PAGE_SHIFT < vm.contig.vm_low_phys_reserved
    ):
        raise SimulatorRefusal(
            "vm_page_flag_clear",
            f"page {pfn_of(vm, i):#x} belongs to the DMA reserve, whose pages must stay "
            "PG_FICTITIOUS|PG_UNQUEUED while the alist may hand them out; the kernel "
            "does not check, the simulator keeps its reserve consistent",
        )
    vm.pg.flags[i] &= ~bits


def _check_flag_change(vm: MachineState, i: int, bits: int) -> None:

    pg = vm.pg
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
    pmap_check_flag_change(vm, i, bits)

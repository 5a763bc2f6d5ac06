"""Page state (spec §8.7–8.10, §10.1–10.2, §12, §14): ``vm_page_cache``,
``vm_page_try_to_cache``, ``vm_page_try_to_free``, ``vm_page_dontneed``,
``vm_page_hold`` / ``vm_page_unhold``, ``vm_page_wire_quick`` / ``vm_page_unwire_quick``,
the valid/dirty bit functions, ``vm_page_need_commit`` / ``vm_page_clear_commit``,
``vm_page_initfake`` and the ``madvise`` simulator verb (``vm_object_madvise``).

Every function checks the kernel's assertions (and the simulator's refusals) first and
raises before it changes anything.

Two modelling choices:

* **Busy for valid changes.**  Spec §1.2 lists "any change of ``valid``" among the locking
  rules worth asserting.  The functions that change ``valid`` (``vm_page_set_valid``,
  ``_validclean``, ``_validdirty``, ``vm_page_set_invalid``, ``vm_page_zero_invalid`` with
  ``setvalid``, and ``vm_page_copy`` for its destination) therefore require the page to be
  busied — hard-busied *or soft-busied*: [I] the kernel's I/O completion path
  (``bufdone`` → ``vm_page_set_validclean``) changes ``valid`` under a soft busy.
* **Fictitious pages** (``vm_page_initfake``) live outside ``vm_page_array`` in the kernel
  (device and GPU memory).  The simulator keeps them in a small separate table,
  ``fake_pages``, indexed by a caller-chosen slot number (the storage the caller owns):
  they never enter the page array, the queues or vmstats, so ``check_invariants`` is
  unaffected by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from app.core.constants import (
    ACT_INIT,
    DEV_BMASK,
    DEV_BSHIFT,
    DEV_BSIZE,
    PAGE_SIZE,
    PAT_WRITE_BACK,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_NOSYNC,
    PG_REFERENCED,
    PG_UNQUEUED,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_NAMES,
    VM_PAGE_BITS_ALL,
)
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal
from app.core.objects import ObjType, VmObject
from app.core.pmap import (
    VM_PROT_NONE,
    _pmap_collect_modified,
    pmap_clear_modify,
    pmap_clear_reference,
    pmap_copy_page,
    pmap_is_modified,
    pmap_mapped_sync,
    pmap_zero_page,
    pmap_zero_page_area,
    vm_page_protect,
)
from app.core.state import MachineState
from app.core.vm_page.busy import (
    describe_busy,
    vm_page_busy_try,
    vm_page_lookup_busy_try,
    vm_page_wakeup,
)
from app.core.vm_page.free import vm_page_free_toq, vm_page_free_wakeup
from app.core.vm_page.queues import (
    _add_queue,
    _deactivate_locked,
    _rem_queue,
    vm_page_activate,
    vm_page_deactivate,
)
from app.core.vm_page2 import _check_locked, pfn_of

# madvise(2) advice values (``sys/mman.h``) handled by vm_object_madvise
MADV_WILLNEED: Final = 3


MADV_DONTNEED: Final = 4


MADV_FREE: Final = 5


MADV_NAMES: Final = (
    ("MADV_WILLNEED", MADV_WILLNEED),
    ("MADV_DONTNEED", MADV_DONTNEED),
    ("MADV_FREE", MADV_FREE),
)


# x86 PAT memory attributes (VM_MEMATTR_*)
VM_MEMATTR_NAMES: Final = (
    ("VM_MEMATTR_UNCACHEABLE", 0x00),
    ("VM_MEMATTR_WRITE_COMBINING", 0x01),
    ("VM_MEMATTR_WRITE_THROUGH", 0x04),
    ("VM_MEMATTR_WRITE_PROTECTED", 0x05),
    ("VM_MEMATTR_WRITE_BACK", PAT_WRITE_BACK),
    ("VM_MEMATTR_WEAK_UNCACHEABLE", 0x07),
)


#: Slots of the fictitious-page table (``vm_page_initfake``).
FAKE_PAGE_SLOTS: Final = 1024


_NO_CACHE: Final = PG_UNQUEUED | PG_NEED_COMMIT | PG_FICTITIOUS


def vm_page_bits(base: int, size: int) -> int:
    """``vm_page_bits(base, size)`` (spec §12.1) without its assertion: the valid/dirty
    bits of every 512-byte chunk the byte range touches, even by one byte."""
    if size == 0:
        return 0
    first = base >> DEV_BSHIFT
    last = (base + size - 1) >> DEV_BSHIFT
    return (2 << last) - (1 << first)


@dataclass
class FakePage:
    """A fictitious ``struct vm_page`` outside ``vm_page_array`` (the fields
    ``vm_page_initfake`` sets)."""

    phys_addr: int
    pat_mode: int
    flags: int = PG_FICTITIOUS | PG_UNQUEUED
    busy: int = PBUSY_LOCKED
    wire: int = 1
    queue: int = 0

    def state_tuple(self) -> tuple[int, ...]:
        return (self.phys_addr, self.pat_mode, self.flags, self.busy, self.wire, self.queue)


def _init_pagestate(vm: MachineState) -> None:
    """Boot state: no fictitious pages (``dnweight`` is part of the core state)."""
    vm.pagestate.fake_pages = {}


# ================================================================ helpers
def _base(vm: MachineState, i: int) -> int:
    pg = vm.pg
    return int(pg.queue[i]) - int(pg.pc[i])


def _bits(vm: MachineState, base: int, size: int) -> int:
    """``vm_page_bits`` with its KASSERT (``base + size <= PAGE_SIZE``); negative
    arguments are refused (the C code would shift by a negative amount)."""
    if base < 0 or size < 0:
        raise InvalidArgument(f"vm_page_bits: base and size must not be negative ({base}/{size})")
    if base + size > PAGE_SIZE:
        raise KernelPanic("vm_page_bits", f"illegal base/size {base}/{size}")
    return vm_page_bits(base, size)


def _check_busied_for_valid(vm: MachineState, i: int, fn: str) -> None:
    """The locking rule of spec §1.2 (``valid`` changes only under a busy).  The
    kernel states it in comments and asserts nothing, so breaking it is the
    simulator's refusal, not a panic."""
    if not vm.pg.busy[i] & (PBUSY_LOCKED | PBUSY_MASK):
        raise SimulatorRefusal(
            fn,
            f"page {pfn_of(vm, i):#x} is not busied: m->valid may change only while the "
            "page is busied (the kernel's locking rule, which it does not assert; busy "
            "the page first, e.g. vm_page_busy_try)",
        )


def _in_dma_reserve(vm: MachineState, i: int) -> bool:
    pfn = pfn_of(vm, i)
    alist = vm.contig.alist
    return bool(vm.pg.flags[i] & PG_FICTITIOUS) and pfn < alist.blocks and alist.is_free(pfn)


# ================================================================ §8.7–8.9 cache / free
def vm_page_cache(vm: MachineState, i: int) -> None:
    """``vm_page_cache(m)`` (spec §8.7): the page is hard-busied by the caller and is
    always unbusied.  Refuses (just unbusies) UNQUEUED, NEED_COMMIT or FICTITIOUS,
    soft-busied, wired or held pages, and pages already cached (asserting such a page
    is not PG_MAPPED).  Otherwise a mapped page is unmapped first
    (``vm_page_protect(NONE)`` + ``pmap_mapped_sync``; the M bits collected may make
    it dirty); then it is re-checked: still refused → unbusy; dirty or NEED_COMMIT →
    ``vm_page_deactivate``; else moved to the *tail* of PQ_CACHE + pc, unbusied and
    ``vm_page_free_wakeup()``.  Object association and ``valid`` are kept."""
    _check_locked(vm, i, "vm_page_cache")
    pg = vm.pg
    if pg.flags[i] & _NO_CACHE or pg.busy[i] & PBUSY_MASK or pg.wire[i] or pg.hold[i]:
        vm_page_wakeup(vm, i)
        return
    if _base(vm, i) == PQ_CACHE:
        if pg.flags[i] & PG_MAPPED:
            raise KernelPanic(
                "vm_page_cache", f"page {pfn_of(vm, i):#x} is already cached but PG_MAPPED"
            )
        vm_page_wakeup(vm, i)
        return
    if pg.flags[i] & (PG_MAPPED | PG_WRITEABLE):
        vm_page_protect(vm, i, VM_PROT_NONE)
        pmap_mapped_sync(vm, i)
    flags = pg.flags[i]
    if flags & (PG_UNQUEUED | PG_MAPPED) or pg.busy[i] & PBUSY_MASK or pg.wire[i] or pg.hold[i]:
        vm_page_wakeup(vm, i)
    elif pg.dirty[i] or flags & PG_NEED_COMMIT:
        vm_page_deactivate(vm, i)
        vm_page_wakeup(vm, i)
    else:
        _rem_queue(vm, i)
        _add_queue(vm, i, PQ_CACHE + pg.pc[i], False)
        vm_page_wakeup(vm, i)
        vm_page_free_wakeup(vm)


def vm_page_try_to_cache(vm: MachineState, i: int) -> int:
    """``vm_page_try_to_cache(m)`` (spec §8.8): the page is hard-busied by the caller
    and always unbusied.  0 (just unbusy) if dirty, held, wired, already cached, or
    UNQUEUED/NEED_COMMIT/FICTITIOUS.  Then ``vm_page_test_dirty``: if that reveals dirt
    (or NEED_COMMIT) an *active* page is deactivated and 0 returned.  Otherwise
    ``vm_page_cache`` and 1.

    Quirk: 1 means "handed to vm_page_cache", not "cached": a soft-busied page, or one
    that unmapping showed dirty, is left uncached (or deactivated) by
    ``vm_page_cache`` and the return value is still 1."""
    _check_locked(vm, i, "vm_page_try_to_cache")
    pg = vm.pg
    base = _base(vm, i)
    if pg.dirty[i] or pg.hold[i] or pg.wire[i] or base == PQ_CACHE or pg.flags[i] & _NO_CACHE:
        vm_page_wakeup(vm, i)
        return 0
    vm_page_test_dirty(vm, i)
    if pg.dirty[i] or pg.flags[i] & PG_NEED_COMMIT:
        if base == PQ_ACTIVE:
            vm_page_deactivate(vm, i)
        vm_page_wakeup(vm, i)
        return 0
    vm_page_cache(vm, i)
    return 1


def vm_page_try_to_free(vm: MachineState, i: int) -> int:
    """``vm_page_try_to_free(m)`` (spec §8.9) on an *unbusied* page: 0 if it cannot be
    hard-busied (``vm_page_busy_try(m, TRUE)``: hard- or soft-busy).  Then 0 (unbusy)
    if dirty, held, wired, UNQUEUED/NEED_COMMIT/FICTITIOUS, or on PQ_FREE/PQ_HOLD;
    ``vm_page_test_dirty`` → 0 if dirty or NEED_COMMIT; ``vm_page_protect(NONE)`` →
    0 if unmapping revealed dirt; else ``vm_page_free`` and 1."""
    if vm_page_busy_try(vm, i, True):
        return 0
    pg = vm.pg
    if (
        pg.dirty[i]
        or pg.hold[i]
        or pg.wire[i]
        or pg.flags[i] & _NO_CACHE
        or _base(vm, i) in (PQ_FREE, PQ_HOLD)
    ):
        vm_page_wakeup(vm, i)
        return 0
    vm_page_test_dirty(vm, i)
    if pg.dirty[i] or pg.flags[i] & PG_NEED_COMMIT:
        vm_page_wakeup(vm, i)
        return 0
    vm_page_protect(vm, i, VM_PROT_NONE)
    if pg.dirty[i] or pg.flags[i] & PG_NEED_COMMIT:
        vm_page_wakeup(vm, i)
        return 0
    vm_page_free_toq(vm, i)
    return 1


# ================================================================ §8.10 dontneed
def vm_page_dontneed(vm: MachineState, i: int) -> None:
    """``vm_page_dontneed(m)`` (spec §8.10; the caller has busied the page — the kernel
    does not assert it).  ``dnw = ++dnweight`` (global, a C ``int``; the first call
    sees 1):

    * ``(dnw & 0x1F0) == 0`` (dnw mod 512 < 16) or the page is on PQ_INACTIVE or
      PQ_CACHE: leave it alone, except ``act_count -= 1`` if ``act_count >=
      ACT_INIT``;
    * else clear PG_REFERENCED and the pmap's reference bits, ``vm_page_test_dirty`` if
      ``dirty == 0``, and deactivate: to the inactive *tail* if the page is dirty or
      ``(dnw & 0x070) == 0`` (dnw mod 128 < 16), otherwise to the *head*.

    Per 512 consecutive ``dnw`` values a clean page is left alone 16 times, goes to the
    tail 48 times and to the head 448 times.

    The seam ``dontneed`` (``seams.SEAMS``) sits at the dice: its choices ``tail`` and
    ``head`` deactivate every page not already on PQ_INACTIVE or PQ_CACHE to that end
    (``dnweight`` still counts the call)."""
    pg = vm.pg
    dnw = vm.pagestate.dnweight + 1
    if dnw > 0x7FFFFFFF:  # C int wrap
        dnw -= 1 << 32
    vm.pagestate.dnweight = dnw
    base = _base(vm, i)
    choice = vm.policy.dontneed
    dice = choice == "kernel"
    if (dice and (dnw & 0x1F0) == 0) or base in (PQ_INACTIVE, PQ_CACHE):
        act = pg.act[i]
        if act >= ACT_INIT:
            pg.act[i] = act - 1
        if vm.trace is not None:
            vm.event("dontneed", **_dontneed_why(vm, i, dnw, base, "left alone", act))
        return
    pg.flags[i] &= ~PG_REFERENCED
    pmap_clear_reference(vm, i)
    if pg.dirty[i] == 0:
        vm_page_test_dirty(vm, i)
    athead = not (pg.dirty[i] or (dnw & 0x070) == 0) if dice else choice == "head"
    if vm.trace is not None:
        branch = (
            "deactivated to the inactive head" if athead else "deactivated to the inactive tail"
        )
        vm.event("dontneed", **_dontneed_why(vm, i, dnw, base, branch, pg.act[i]))
    _deactivate_locked(vm, i, athead)


def _dontneed_why(
    vm: MachineState, i: int, dnw: int, base: int, branch: str, act: int
) -> dict[str, Any]:
    """The ``dontneed`` event's fields: the dice value ``dnw`` (its place in the cycle of 512),
    the branch taken and the rule that chose it, in numbers.  Reads only."""
    pg = vm.pg
    phase = dnw & 0x1FF
    mod128 = dnw & 0x7F
    where = f"dnw {dnw} is {phase} of 512"
    if branch == "left alone":
        if base in (PQ_INACTIVE, PQ_CACHE):
            rule = f"the page is already on {PQ_NAMES[base]}: always left alone"
        else:
            rule = f"{where}: dnw mod 512 = {phase} < 16, the 1 in 32 calls that leave it alone"
        if act >= ACT_INIT:
            rule += f"; act_count {act} -> {act - 1} (it was >= ACT_INIT {ACT_INIT})"
        else:
            rule += f"; act_count {act} stays (below ACT_INIT {ACT_INIT})"
    elif vm.policy.dontneed != "kernel":
        rule = (
            f"this machine's policy sets the seam dontneed to {vm.policy.dontneed!r} instead "
            "of the kernel's dice: every page not on PQ_INACTIVE or PQ_CACHE goes to the "
            f"inactive {vm.policy.dontneed}"
        )
    elif pg.dirty[i]:
        rule = (
            f"{where} (mod 512 = {phase} >= 16): deactivated; the page is dirty "
            f"(dirty {pg.dirty[i]:#04x}), and a dirty page always goes to the tail"
        )
    elif mod128 < 16:
        rule = (
            f"{where}: mod 512 = {phase} >= 16 and dnw mod 128 = {mod128} < 16, the 3 in 32 "
            "calls that deactivate a clean page to the inactive tail"
        )
    else:
        rule = (
            f"{where}: mod 512 = {phase} >= 16 and dnw mod 128 = {mod128} >= 16, the 28 in 32 "
            "calls that deactivate a clean page to the inactive head (reclaimed first, as if "
            "cached)"
        )
    return {
        "pfn": pfn_of(vm, i),
        "dnw": dnw,
        "phase": phase,
        "of": 512,
        "dnw_mod_128": mod128,
        "queue": PQ_NAMES[base] if pg.queue[i] else "PQ_NONE",
        "dirty": int(pg.dirty[i]),
        "branch": branch,
        "policy": vm.policy.dontneed,
        "why": f"{branch}: {rule}",
    }


# ================================================================ §10.1 quick wiring
def vm_page_wire_quick(vm: MachineState, i: int) -> None:
    """``vm_page_wire_quick(m)``: ``wire_count += 1`` with no vmstats; panics if the
    count was 0 (only an already-wired page may be wired this way).  Refused for a
    page sitting free in the DMA reserve (nobody owns it)."""
    pg = vm.pg
    w = pg.wire[i]
    if w == 0:
        raise KernelPanic("vm_page_wire_quick", "wire_count was 0")
    if _in_dma_reserve(vm, i):
        raise InvalidArgument(
            f"vm_page_wire_quick: page {pfn_of(vm, i):#x} is free in the DMA reserve; "
            "allocate it (vm_page_alloc_contig) first"
        )
    if w >= 0xFFFFFFFF:
        raise SimulatorRefusal(
            "vm_page_wire_quick",
            "wire_count is at its maximum: the kernel does not check and the count "
            "would wrap to 0, so the simulator refuses",
        )
    pg.wire[i] = w + 1


def vm_page_unwire_quick(vm: MachineState, i: int) -> bool:
    """``vm_page_unwire_quick(m)``: asserts ``wire_count > 0``; at exactly 1 returns
    TRUE *without* decrementing (the caller must busy the page and do a real
    ``vm_page_unwire``), else decrements and returns FALSE."""
    pg = vm.pg
    w = pg.wire[i]
    if w == 0:
        raise KernelPanic("vm_page_unwire_quick", "wire_count > 0 assertion failed (it is 0)")
    if w == 1:
        return True
    pg.wire[i] = w - 1
    return False


# ================================================================ §10.2 hold
def vm_page_hold(vm: MachineState, i: int) -> None:
    """``vm_page_hold(m)``: ``hold_count += 1``; asserts the page is not on PQ_FREE.
    A hold prevents reuse only: a held page that is freed goes to PQ_HOLD."""
    pg = vm.pg
    if _base(vm, i) == PQ_FREE:
        raise KernelPanic("vm_page_hold", f"page {pfn_of(vm, i):#x} is on PQ_FREE")
    if pg.hold[i] >= 0x7FFFFFFF:
        raise InvalidArgument("vm_page_hold: hold_count would overflow")
    pg.hold[i] += 1


def vm_page_unhold(vm: MachineState, i: int) -> None:
    """``vm_page_unhold(m)``: asserts ``hold_count > 0`` and not on PQ_FREE;
    ``hold_count -= 1``; when that drops the last hold of a page on PQ_HOLD (a page
    freed while held) the page moves to the *head* of PQ_FREE + pc.  PQ_HOLD counts in
    v_active_count, so that move is active −1, free +1 in the calling CPU's
    ``gd_vmstats`` and ``gd_vmstats_adj``.  No ``vm_page_free_wakeup``.

    The simulator refuses (up front) to put a page on PQ_FREE that the allocator would
    trip over: wired, owned by an object, or UNQUEUED/NEED_COMMIT/FICTITIOUS (someone
    changed a freed page while it was held)."""
    pg = vm.pg
    h = pg.hold[i]
    base = _base(vm, i)
    if h <= 0 or base == PQ_FREE:
        raise KernelPanic(
            "vm_page_unhold",
            f"hold count {h} or page on PQ_FREE (page {pfn_of(vm, i):#x})",
        )
    to_free = h == 1 and base == PQ_HOLD
    if to_free and (pg.wire[i] or pg.obj[i] or pg.flags[i] & _NO_CACHE):
        raise SimulatorRefusal(
            "vm_page_unhold",
            f"page {pfn_of(vm, i):#x} on PQ_HOLD is wired, owned by an object or "
            "UNQUEUED/NEED_COMMIT/FICTITIOUS: the kernel would move it to PQ_FREE "
            "without a check and trip the allocator's KASSERTs later, so the simulator "
            "refuses",
        )
    pg.hold[i] = h - 1
    if to_free:
        _rem_queue(vm, i)
        _add_queue(vm, i, PQ_FREE + pg.pc[i], True)


# ================================================================ §12 valid / dirty
def _vm_page_zero_valid(vm: MachineState, i: int, base: int, size: int) -> None:
    """``_vm_page_zero_valid(m, base, size)`` (spec §12.2), with ``valid`` as it is
    *before* the caller updates it: zero ``[rounddown(base, 512), base)`` if ``base``
    is unaligned and its chunk is not valid, and ``[end, roundup(end, 512))`` if
    ``end = base + size`` is unaligned and its chunk is not valid."""
    if size == 0:
        return
    valid = vm.pg.valid[i]
    frag = base & ~DEV_BMASK
    if frag != base and not valid & (1 << (base >> DEV_BSHIFT)):
        pmap_zero_page_area(vm, i, frag, base - frag)
    end = base + size
    frag = end & ~DEV_BMASK
    if frag != end and not valid & (1 << (end >> DEV_BSHIFT)):
        pmap_zero_page_area(vm, i, end, DEV_BSIZE - (end & DEV_BMASK))


def vm_page_set_valid(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_set_valid(m, base, size)``: partial-chunk zeroing, then ``valid |=
    vm_page_bits(base, size)``; ``dirty`` untouched."""
    bits = _bits(vm, base, size)
    _check_busied_for_valid(vm, i, "vm_page_set_valid")
    _vm_page_zero_valid(vm, i, base, size)
    vm.pg.valid[i] |= bits


def vm_page_set_validclean(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_set_validclean(m, base, size)``: partial-chunk zeroing, ``valid |=
    bits``, ``dirty &= ~bits``; for the whole page also clear PG_NOSYNC (the pmap
    modify bits are *not* cleared).  Quirk: ``bits`` is the inclusive set, so a
    partially covered chunk is marked clean too (the source comment says only fully
    covered chunks)."""
    bits = _bits(vm, base, size)
    _check_busied_for_valid(vm, i, "vm_page_set_validclean")
    _vm_page_zero_valid(vm, i, base, size)
    pg = vm.pg
    pg.valid[i] |= bits
    pg.dirty[i] &= ~bits & 0xFF  # a u8 item: the mask as a u8
    if base == 0 and size == PAGE_SIZE:
        pg.flags[i] &= ~PG_NOSYNC


def vm_page_set_validdirty(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_set_validdirty(m, base, size)``: no zeroing; ``valid |= bits``,
    ``dirty |= bits``; marks the object (if any) writeable/dirty."""
    bits = _bits(vm, base, size)
    _check_busied_for_valid(vm, i, "vm_page_set_validdirty")
    pg = vm.pg
    pg.valid[i] |= bits
    pg.dirty[i] |= bits
    oid = pg.obj[i]
    if oid:
        vm.vmobj.objects[oid].set_writeable_dirty()


def vm_page_clear_dirty(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_clear_dirty(m, base, size)``: ``dirty &= ~bits``; for the whole page
    also clear PG_NOSYNC."""
    bits = _bits(vm, base, size)
    pg = vm.pg
    pg.dirty[i] &= ~bits & 0xFF  # a u8 item: the mask as a u8
    if base == 0 and size == PAGE_SIZE:
        pg.flags[i] &= ~PG_NOSYNC


def vm_page_clear_dirty_end_nonincl(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_clear_dirty_end_nonincl(m, base, size)``: ``e = (base + size) &
    ~511``; if ``base < e``: ``vm_page_clear_dirty(m, base, e - base)`` — a partial
    *last* chunk stays dirty (a partial first chunk is cleared).  Only ``e`` reaches
    ``vm_page_bits``, so ``base + size`` may exceed PAGE_SIZE by up to 511 bytes."""
    if base < 0 or size < 0:
        raise InvalidArgument("vm_page_clear_dirty_end_nonincl: base and size must not be negative")
    e = (base + size) & ~DEV_BMASK
    if base < e:
        vm_page_clear_dirty(vm, i, base, e - base)


def vm_page_clear_dirty_beg_nonincl(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_clear_dirty_beg_nonincl(m, base, size)``: ``e = base + size``, ``b =
    roundup(base, 512)``; if ``b < e``: ``vm_page_clear_dirty(m, b, e - b)`` — a
    partial *first* chunk stays dirty (a partial last chunk is cleared)."""
    if base < 0 or size < 0:
        raise InvalidArgument("vm_page_clear_dirty_beg_nonincl: base and size must not be negative")
    e = base + size
    b = (base + DEV_BMASK) & ~DEV_BMASK
    if b < e:
        vm_page_clear_dirty(vm, i, b, e - b)


def vm_page_dirty(vm: MachineState, i: int) -> None:
    """``vm_page_dirty(m)``: INVARIANTS-asserts the page is not on PQ_CACHE or PQ_FREE;
    if ``dirty != VM_PAGE_BITS_ALL``: ``dirty = VM_PAGE_BITS_ALL`` and the object (if
    any) is marked writeable/dirty."""
    if _base(vm, i) in (PQ_CACHE, PQ_FREE):
        raise KernelPanic("vm_page_dirty", "page in free/cache queue!")
    _pmap_collect_modified(vm, i)


def vm_page_undirty(vm: MachineState, i: int) -> None:
    """``vm_page_undirty(m)``: ``dirty = 0`` (the pmap modify bits are untouched)."""
    vm.pg.dirty[i] = 0


def vm_page_test_dirty(vm: MachineState, i: int) -> None:
    """``vm_page_test_dirty(m)``: if ``dirty != VM_PAGE_BITS_ALL`` and the pmap reports
    the page modified, ``vm_page_dirty(m)`` (the M bits themselves stay set)."""
    if vm.pg.dirty[i] != VM_PAGE_BITS_ALL and pmap_is_modified(vm, i):
        vm_page_dirty(vm, i)


def vm_page_set_invalid(vm: MachineState, i: int, base: int, size: int) -> None:
    """``vm_page_set_invalid(m, base, size)``: ``valid &= ~bits``, ``dirty &= ~bits``,
    ``m.object.generation += 1``.  The object must exist: with none the kernel
    dereferences NULL (reported as a panic)."""
    bits = _bits(vm, base, size)
    _check_busied_for_valid(vm, i, "vm_page_set_invalid")
    pg = vm.pg
    oid = pg.obj[i]
    if not oid:
        raise KernelPanic("vm_page_set_invalid", "NULL pointer dereference: m->object is NULL")
    pg.valid[i] &= ~bits & 0xFF  # a u8 item: the mask as a u8
    pg.dirty[i] &= ~bits & 0xFF  # a u8 item: the mask as a u8
    vm.vmobj.objects[oid].generation += 1


def vm_page_zero_invalid(vm: MachineState, i: int, setvalid: bool) -> None:
    """``vm_page_zero_invalid(m, setvalid)``: zero every maximal run of invalid chunks
    ``[b, i)`` (scanning ``i = 0..8``, 8 being the sentinel), then, with ``setvalid``,
    ``valid = VM_PAGE_BITS_ALL``."""
    if setvalid:
        _check_busied_for_valid(vm, i, "vm_page_zero_invalid")
    pg = vm.pg
    valid = pg.valid[i]
    nchunks = PAGE_SIZE // DEV_BSIZE
    b = 0
    for k in range(nchunks + 1):
        if k == nchunks or valid & (1 << k):
            if k > b:
                pmap_zero_page_area(vm, i, b << DEV_BSHIFT, (k - b) << DEV_BSHIFT)
            b = k + 1
    if setvalid:
        pg.valid[i] = VM_PAGE_BITS_ALL


def vm_page_is_valid(vm: MachineState, i: int, base: int, size: int) -> bool:
    """``vm_page_is_valid(m, base, size)``: ``valid != 0 and (valid & bits) == bits``.
    Quirk: with ``size == 0`` (bits 0) this answers "is any chunk valid"."""
    bits = _bits(vm, base, size)
    valid = vm.pg.valid[i]
    return bool(valid) and (valid & bits) == bits


def vm_page_copy(vm: MachineState, src: int, dst: int) -> None:
    """``vm_page_copy(src_m, dest_m)``: copy the contents (``pmap_copy_page``); then
    ``dest.valid = dest.dirty = VM_PAGE_BITS_ALL`` (set directly: the object is not
    marked dirty)."""
    _check_busied_for_valid(vm, dst, "vm_page_copy")
    pmap_copy_page(vm, src, dst)
    pg = vm.pg
    pg.valid[dst] = VM_PAGE_BITS_ALL
    pg.dirty[dst] = VM_PAGE_BITS_ALL


def vm_page_zero_fill(vm: MachineState, i: int) -> bool:
    """``vm_page_zero_fill(m)``: zero the contents (``pmap_zero_page``); returns TRUE;
    ``valid`` untouched."""
    pmap_zero_page(vm, i)
    return True


# ================================================================ §14 special pages
def vm_page_need_commit(vm: MachineState, i: int) -> None:
    """``vm_page_need_commit(m)``: set PG_NEED_COMMIT and
    ``vm_object_set_writeable_dirty(m->object)``.  [I] The object is not tested for
    NULL (unlike ``vm_page_set_validdirty``): an object-less page is reported as the
    NULL dereference.  The simulator refuses freed pages (PQ_FREE/PQ_HOLD): the
    allocator asserts free pages never need a commit."""
    pg = vm.pg
    if _base(vm, i) in (PQ_FREE, PQ_HOLD):
        raise SimulatorRefusal(
            "vm_page_need_commit",
            f"page {pfn_of(vm, i):#x} is free (on {PQ_NAMES[_base(vm, i)]}): a free page "
            "cannot need a commit; vm_page_need_commit asserts nothing, but the allocator "
            "asserts it when it selects the page, so the simulator refuses",
        )
    oid = pg.obj[i]
    if not oid:
        raise KernelPanic(
            "vm_page_need_commit",
            "NULL pointer dereference: vm_object_set_writeable_dirty(m->object) with no object",
        )
    pg.flags[i] |= PG_NEED_COMMIT
    vm.vmobj.objects[oid].set_writeable_dirty()


def vm_page_clear_commit(vm: MachineState, i: int) -> None:
    """``vm_page_clear_commit(m)``: clear PG_NEED_COMMIT."""
    vm.pg.flags[i] &= ~PG_NEED_COMMIT


def vm_page_initfake(vm: MachineState, slot: int, paddr: int, memattr: int) -> int:
    """``vm_page_initfake(m, paddr, memattr)`` on the fictitious page in ``slot`` of the
    fake-page table (see the module docstring).  An empty slot is a zeroed ``struct
    vm_page``: it gets ``phys_addr = paddr``, ``queue = PQ_NONE``, ``flags =
    FICTITIOUS|UNQUEUED``, ``busy_count = PBUSY_LOCKED`` (returned hard-busied),
    ``wire_count = 1`` (no vmstats: it is outside the page array) and the memory
    attribute.  Quirk: a slot already FICTITIOUS only gets the new memory attribute
    (``paddr`` is ignored).  Returns the slot."""
    if not 0 <= slot < FAKE_PAGE_SLOTS:
        raise InvalidArgument(f"vm_page_initfake: slot must be from 0 to {FAKE_PAGE_SLOTS - 1}")
    if not 0 <= paddr < 1 << 64:
        raise InvalidArgument("vm_page_initfake: paddr must be from 0 to 2^64-1")
    fake = vm.pagestate.fake_pages.get(slot)
    if fake is not None and fake.flags & PG_FICTITIOUS:
        fake.pat_mode = memattr
        return slot
    vm.pagestate.fake_pages[slot] = FakePage(phys_addr=paddr, pat_mode=memattr)
    return slot


# ================================================================ madvise
def vm_object_madvise(vm: MachineState, obj: VmObject, pindex: int, count: int, advice: int) -> int:
    """``vm_object_madvise(object, pindex, count, advice)`` for the pages resident in
    ``[pindex, pindex + count)`` (simulator verb ``madvise``); returns how many pages
    the advice was applied to.  The spec is silent on this function; the simulator
    follows the kernel's loop as we understand it [U]:

    * each resident page is hard-busied with ``vm_page_lookup_busy_try(…, TRUE)``;
      a page that is busy in any way is *skipped* (the kernel sleeps on it, "madvpo",
      and looks it up again; the simulator does not wait);
    * a busied page that is wired, FICTITIOUS/UNQUEUED/NEED_COMMIT or not fully valid
      is left alone (unbusied);
    * MADV_WILLNEED: ``vm_page_activate``;
    * MADV_DONTNEED: ``vm_page_dontneed`` (consumes a ``dnweight`` value);
    * MADV_FREE: only for OBJT_DEFAULT/OBJT_SWAP objects (the kernel also requires
      OBJ_ONEMAPPING, which the simulator's objects do not carry: treated as set;
      other objects are skipped entirely): ``pmap_clear_modify``, ``dirty = 0``,
      ``act_count = 0``, then ``vm_page_dontneed`` — the page becomes clean and is
      deactivated (mostly to the inactive head) without being unmapped, so reuse
      does not fault.  Swap space is not modelled (no swap_pager_freespace);
    * the page is unbusied.

    Shadow-object chains are not modelled: only ``object``'s own pages are visited."""
    if advice not in (MADV_WILLNEED, MADV_DONTNEED, MADV_FREE):
        raise InvalidArgument("madvise: advice must be MADV_WILLNEED, MADV_DONTNEED or MADV_FREE")
    explain = vm.trace is not None
    if advice == MADV_FREE and obj.type not in (ObjType.OBJT_DEFAULT, ObjType.OBJT_SWAP):
        if explain:
            vm.event(
                "madvise",
                advice="MADV_FREE",
                applied=0,
                why=(
                    f"nothing done: object {obj.id} is {obj.type.name}; MADV_FREE applies only "
                    "to OBJT_DEFAULT and OBJT_SWAP objects (anonymous memory)"
                ),
            )
        return 0
    end = min(pindex + count, 1 << 64)
    if end <= pindex:
        if explain:
            vm.event(
                "madvise",
                advice=_ADVICE_NAMES[advice],
                applied=0,
                why=f"nothing done: the range [{pindex:#x}, +{count}) is empty",
            )
        return 0
    pg = vm.pg
    done = 0
    skipped: list[dict[str, Any]] = []
    for pi in list(obj.pages.irange(pindex, end - 1)):
        i, busy = vm_page_lookup_busy_try(vm, obj, pi, True)
        if busy or i < 0:
            if explain and i >= 0:
                skipped.append(
                    {
                        "pfn": pfn_of(vm, i),
                        "pindex": pi,
                        "why": f"busy: {describe_busy(int(pg.busy[i]))}; the kernel sleeps on "
                        "it (madvpo) and retries, the simulator skips it",
                    }
                )
            continue
        if pg.wire[i] or pg.flags[i] & _NO_CACHE or pg.valid[i] != VM_PAGE_BITS_ALL:
            if explain:
                skipped.append(
                    {"pfn": pfn_of(vm, i), "pindex": pi, "why": _madvise_left_alone(vm, i)}
                )
            vm_page_wakeup(vm, i)
            continue
        if advice == MADV_WILLNEED:
            vm_page_activate(vm, i)
        elif advice == MADV_DONTNEED:
            vm_page_dontneed(vm, i)
        else:
            pmap_clear_modify(vm, i)
            pg.dirty[i] = 0
            pg.act[i] = 0
            vm_page_dontneed(vm, i)
        vm_page_wakeup(vm, i)
        done += 1
    if explain:
        resident = done + len(skipped)
        vm.event(
            "madvise",
            advice=_ADVICE_NAMES[advice],
            applied=done,
            resident=resident,
            skipped=skipped,
            why=(
                f"applied to {done} of the {resident} resident page(s) in [{pindex:#x}, "
                f"{end:#x}); {len(skipped)} skipped (each says why)"
                if resident
                else f"nothing done: object {obj.id} has no resident page in "
                f"[{pindex:#x}, {end:#x})"
            ),
        )
    return done


_ADVICE_NAMES: Final = {value: name for name, value in MADV_NAMES}


def _madvise_left_alone(vm: MachineState, i: int) -> str:
    """Why ``vm_object_madvise`` unbusied a page it had busied without advising it."""
    pg = vm.pg
    if pg.wire[i]:
        return f"wired (wire_count {pg.wire[i]}): madvise leaves wired pages alone"
    flags = pg.flags[i]
    if flags & _NO_CACHE:
        names = [
            name
            for name, bit in (
                ("FICTITIOUS", PG_FICTITIOUS),
                ("UNQUEUED", PG_UNQUEUED),
                ("NEED_COMMIT", PG_NEED_COMMIT),
            )
            if flags & bit
        ]
        return f"{'|'.join(names)}: madvise leaves such pages alone"
    return (
        f"not fully valid (valid {pg.valid[i]:#04x}, not {VM_PAGE_BITS_ALL:#04x}): madvise "
        "advises only fully valid pages (a page becomes valid when its contents are filled: "
        "vm_page_set_valid base=0 size=4096, or vm_page_grab with VM_ALLOC_ZERO)"
    )


# ================================================================ invariants, digest
def check_pagestate_invariants(vm: MachineState) -> None:
    from app.core.errors import InvariantError

    for slot, fake in vm.pagestate.fake_pages.items():
        if not 0 <= slot < FAKE_PAGE_SLOTS:
            raise InvariantError(f"fake page slot {slot} out of range")
        if (
            fake.flags != PG_FICTITIOUS | PG_UNQUEUED
            or fake.queue != 0
            or fake.wire != 1
            or fake.busy != PBUSY_LOCKED
        ):
            raise InvariantError(f"fake page {slot} is not as vm_page_initfake left it")


def pagestate_digest_parts(vm: MachineState) -> list[Any]:
    parts: list[Any] = []
    parts.append(
        (
            "fake_pages",
            tuple((s, f.state_tuple()) for s, f in sorted(vm.pagestate.fake_pages.items())),
        )
    )
    return parts


# ================================================================ registry wrappers


def _call_try_to_cache(vm: MachineState, m: int) -> bool:
    return bool(vm_page_try_to_cache(vm, m))


def _call_try_to_free(vm: MachineState, m: int) -> bool:
    return bool(vm_page_try_to_free(vm, m))

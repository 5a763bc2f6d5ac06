"""A simple pmap (spec §14 ``vm_page_protect``, §19 pmap note): per page a set of
mappings, each with its own writable / referenced / modified bits, plus a model of the
page's contents as far as zeroing goes.

**Mappings.**  ``vm.pmap.mappings[i]`` maps a pmap id (an int standing in for a ``pmap_t``)
to ``[writable, referenced, modified]`` — the pte's RW, A and M bits.  The table is sparse:
a page without mappings has no entry.  Only *managed* mappings are modelled (the ones with
a reverse map, which drive PG_MAPPED/PG_WRITEABLE): FICTITIOUS pages have no reverse map
(spec §1.4), so ``pmap_enter`` refuses them.

The page flags are the kernel's lazy summary of the mappings:

* ``pmap_enter`` sets PG_MAPPED, PG_WRITEABLE for a writable mapping, and PG_MAPPEDMULTI
  when the page gets its second (or later) mapping;
* ``pmap_remove`` drops one mapping but clears **no** flag: the flags only say the page
  *may* be mapped / writeable; ``pmap_mapped_sync`` recomputes them (which is why
  ``vm_page_free_toq`` and ``vm_page_protect`` call it first);
* PG_MAPPEDMULTI ("possibly mapped by several pmaps") is sticky: it is cleared only
  together with PG_MAPPED, when the page is found to have no mapping at all
  (``pmap_page_protect(NONE)`` or ``pmap_mapped_sync``).  Going from two mappings back to
  one leaves it set.

So the flags may claim more than the mappings hold, never less: a page with a mapping has
PG_MAPPED, with a writable mapping PG_WRITEABLE, with two or more PG_MAPPEDMULTI
(``check_invariants`` proves this).

**Collecting the hardware bits.**  As in real pmaps, when a mapping is removed
(``pmap_remove``, ``pmap_page_protect(NONE)``) its M bit is collected into the page with
``vm_page_dirty`` and its A bit into PG_REFERENCED; when a writable mapping is
write-protected (``pmap_page_protect(READ)``, or ``pmap_enter`` re-entering it read-only)
its M bit is collected the same way and cleared.  Nothing is lost: a page's
modifications are always either in ``m.dirty`` or in some mapping's M bit.

**Where a page may be mapped.**  Never on PQ_FREE, PQ_HOLD (freed) or PQ_CACHE:
``vm_page_cache`` unmaps before caching, ``vm_page_free_toq`` panics on a mapped page, and
``pmap_enter`` refuses such pages (the fault path takes a page out of the cache before
mapping it).

**Contents.**  ``page_zeroed[i]`` lists the byte ranges ``[a, b)`` of the page known to hold
zeroes (sorted, disjoint, merged), so partial-chunk zeroing (spec §12.2) is observable.
Pages boot with unknown contents (no entry).  ``pmap_zero_page``, ``pmap_zero_page_area``
and ``pmap_copy_page`` are the pmap primitives the page layer uses; a write through a
mapping (``pmap_touch(write=True)``) makes the whole page unknown again.  Freeing and
allocating a page never touch its contents (the kernel does not zero on free).
"""

from __future__ import annotations

from typing import Any, Final

from app.core.constants import (
    PAGE_SIZE,
    PBUSY_LOCKED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_MAPPEDMULTI,
    PG_REFERENCED,
    PG_WRITEABLE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    VM_PAGE_BITS_ALL,
)
from app.core.errors import InvalidArgument, InvariantError, KernelPanic, SimulatorRefusal
from app.core.state import MachineState
from app.core.vm_page2 import _check_locked, pfn_of

# vm_prot_t (``vm/vm.h``)
VM_PROT_NONE: Final = 0x00


VM_PROT_READ: Final = 0x01


VM_PROT_WRITE: Final = 0x02


VM_PROT_EXECUTE: Final = 0x04


VM_PROT_ALL: Final = 0x07


VM_PROT_NAMES: Final = (
    ("VM_PROT_NONE", VM_PROT_NONE),
    ("VM_PROT_READ", VM_PROT_READ),
    ("VM_PROT_WRITE", VM_PROT_WRITE),
    ("VM_PROT_EXECUTE", VM_PROT_EXECUTE),
)


# indices into one mapping's bit list
PTE_W: Final = 0  # writable (RW)


PTE_A: Final = 1  # referenced (A)


PTE_M: Final = 2  # modified (M)


#: Limits that keep one machine's pmap table small.
MAX_MAPPINGS_PER_PAGE: Final = 1024


MAX_MAPPINGS: Final = 1 << 20


PMAP_ID_MAX: Final = (1 << 31) - 1


_PMAP_FLAGS = PG_MAPPED | PG_WRITEABLE | PG_MAPPEDMULTI


_UNMAPPABLE_QUEUES = (PQ_FREE, PQ_HOLD, PQ_CACHE)


Ranges = tuple[tuple[int, int], ...]


def _ranges_add(ranges: Ranges, a: int, b: int) -> Ranges:
    """``ranges`` with ``[a, b)`` added (merged with overlapping or adjacent ranges)."""
    if a >= b:
        return ranges
    out: list[tuple[int, int]] = []
    for x, y in ranges:
        if y < a or x > b:
            out.append((x, y))
        else:
            a = min(a, x)
            b = max(b, y)
    out.append((a, b))
    out.sort()
    return tuple(out)


def zeroed_chunk_mask(ranges: Ranges) -> int:
    """Bit ``k`` set iff the whole 512-byte chunk ``k`` lies inside a zeroed range."""
    mask = 0
    for k in range(PAGE_SIZE >> 9):
        lo, hi = k << 9, (k + 1) << 9
        if any(x <= lo and hi <= y for x, y in ranges):
            mask |= 1 << k
    return mask


_FLAG_NAMES = (
    (PG_MAPPED, "PG_MAPPED"),
    (PG_WRITEABLE, "PG_WRITEABLE"),
    (PG_MAPPEDMULTI, "PG_MAPPEDMULTI"),
)


def _init_pmap(vm: MachineState) -> None:
    """Boot state: no mappings, every page's contents unknown."""
    vm.pmap.mappings = {}
    vm.pmap.mapping_count = 0
    vm.pmap.page_zeroed = {}


# ================================================================ helpers
def _pmap_required_flags(vm: MachineState, i: int) -> int:
    """The PG_* bits the page's mappings require (the flags may hold more)."""
    maps = vm.pmap.mappings.get(i)
    if not maps:
        return 0
    need = PG_MAPPED
    if any(bits[PTE_W] for bits in maps.values()):
        need |= PG_WRITEABLE
    if len(maps) >= 2:
        need |= PG_MAPPEDMULTI
    return need


def pmap_page_is_mapped(vm: MachineState, i: int) -> bool:
    """Whether the page has at least one (managed) mapping."""
    return i in vm.pmap.mappings


def _pmap_collect_modified(vm: MachineState, i: int) -> None:
    """A mapping's M bit reaches the page: ``vm_page_dirty(m)`` as the pmap calls it
    (``dirty = VM_PAGE_BITS_ALL`` and the object marked writeable/dirty).  Its
    INVARIANTS assertion (not on CACHE/FREE) cannot trip: mapped pages are never
    there."""
    pg = vm.pg
    if pg.dirty[i] != VM_PAGE_BITS_ALL:
        pg.dirty[i] = VM_PAGE_BITS_ALL
        oid = pg.obj[i]
        if oid:
            vm.vmobj.objects[oid].set_writeable_dirty()


def _pmap_mapping(vm: MachineState, i: int, pmap: int, fn: str) -> list[bool]:
    maps = vm.pmap.mappings.get(i)
    if not maps or pmap not in maps:
        raise InvalidArgument(f"{fn}: pmap {pmap} has no mapping of page {pfn_of(vm, i):#x}")
    return maps[pmap]


# ================================================================ simulator verbs
def pmap_enter(vm: MachineState, i: int, pmap: int, writeable: bool) -> None:
    """``pmap_enter(pmap, va, m, prot, wired)`` reduced to what the page layer sees
    (simulator verb): give ``pmap`` a mapping of the page, writable or read-only.

    Sets PG_MAPPED, PG_WRITEABLE if ``writeable``, and PG_MAPPEDMULTI when the page
    now has two or more mappings.  A new mapping starts with its A and M bits clear
    (the access that caused the fault is modelled separately by ``pmap_touch``).
    Re-entering an existing mapping changes its protection; going from writable to
    read-only collects the M bit into the page first (``vm_page_dirty``).

    Refused (InvalidArgument): FICTITIOUS pages (no reverse map: their mappings are
    unmanaged and never touch PG_MAPPED), and pages on PQ_FREE, PQ_HOLD or PQ_CACHE
    (the kernel only maps pages it has looked up and taken out of the cache)."""
    pg = vm.pg
    if pg.flags[i] & PG_FICTITIOUS:
        raise InvalidArgument(
            "pmap_enter: the page is FICTITIOUS: it has no reverse map (spec §1.4), so "
            "its mappings are unmanaged and the simulator does not model them"
        )
    base = pg.queue[i] - pg.pc[i]
    if base in _UNMAPPABLE_QUEUES:
        what = {PQ_FREE: "free", PQ_HOLD: "freed (on PQ_HOLD)", PQ_CACHE: "cached"}[base]
        raise InvalidArgument(
            f"pmap_enter: page {pfn_of(vm, i):#x} is {what}: the fault path only maps "
            "pages it has allocated or looked up (a cached page is taken out of the "
            "cache first)"
        )
    if not 0 <= pmap <= PMAP_ID_MAX:
        raise InvalidArgument(f"pmap_enter: pmap id must be from 0 to {PMAP_ID_MAX}")
    maps = vm.pmap.mappings.get(i)
    if maps is not None and pmap in maps:
        bits = maps[pmap]
        if bits[PTE_W] and not writeable and bits[PTE_M]:
            _pmap_collect_modified(vm, i)
            bits[PTE_M] = False
        bits[PTE_W] = bool(writeable)
    else:
        if maps is not None and len(maps) >= MAX_MAPPINGS_PER_PAGE:
            raise InvalidArgument(
                f"pmap_enter: page already has {MAX_MAPPINGS_PER_PAGE} mappings (simulator limit)"
            )
        if vm.pmap.mapping_count >= MAX_MAPPINGS:
            raise InvalidArgument(f"pmap_enter: {MAX_MAPPINGS} mappings exist (simulator limit)")
        if maps is None:
            maps = vm.pmap.mappings[i] = {}
        maps[pmap] = [bool(writeable), False, False]
        vm.pmap.mapping_count += 1
    flags = pg.flags[i] | PG_MAPPED
    if writeable:
        flags |= PG_WRITEABLE
    if len(maps) >= 2:
        flags |= PG_MAPPEDMULTI
    pg.flags[i] = flags


def pmap_remove(vm: MachineState, i: int, pmap: int) -> None:
    """``pmap_remove(pmap, va, va + PAGE_SIZE)`` for one page (simulator verb): drop
    ``pmap``'s mapping.  Its M bit is collected with ``vm_page_dirty`` and its A bit
    into PG_REFERENCED.  The page flags are left alone (lazy: PG_MAPPED etc. are only
    recomputed by ``pmap_mapped_sync``).  InvalidArgument if there is no such
    mapping."""
    bits = _pmap_mapping(vm, i, pmap, "pmap_remove")
    if bits[PTE_M]:
        _pmap_collect_modified(vm, i)
    if bits[PTE_A]:
        vm.pg.flags[i] |= PG_REFERENCED
    maps = vm.pmap.mappings[i]
    del maps[pmap]
    vm.pmap.mapping_count -= 1
    if not maps:
        del vm.pmap.mappings[i]


def pmap_touch(vm: MachineState, i: int, pmap: int, write: bool) -> None:
    """A simulated CPU access through ``pmap``'s mapping (simulator verb): the MMU sets
    the pte's A bit, and on a write its M bit.  A write also makes the page's contents
    unknown (no longer known to be zero).  A write through a read-only mapping would
    be a protection fault (vm_fault would have to upgrade or copy the page, which is
    not modelled): refused with InvalidArgument, as is a pmap without a mapping."""
    bits = _pmap_mapping(vm, i, pmap, "pmap_touch")
    if write and not bits[PTE_W]:
        raise InvalidArgument(
            f"pmap_touch: write through pmap {pmap}'s read-only mapping of page "
            f"{pfn_of(vm, i):#x} is a protection fault; pmap_enter it writable first"
        )
    bits[PTE_A] = True
    if write:
        bits[PTE_M] = True
        vm.pmap.page_zeroed.pop(i, None)


# ================================================================ pmap functions
def pmap_ts_referenced(vm: MachineState, i: int) -> int:
    """``pmap_ts_referenced(m)``: the number of the page's mappings whose A bit is set;
    clears those bits (spec §19: no cap on the count)."""
    maps = vm.pmap.mappings.get(i)
    if not maps:
        return 0
    count = 0
    for bits in maps.values():
        if bits[PTE_A]:
            bits[PTE_A] = False
            count += 1
    return count


def pmap_is_modified(vm: MachineState, i: int) -> bool:
    """``pmap_is_modified(m)``: whether any mapping's M bit is set."""
    maps = vm.pmap.mappings.get(i)
    if not maps:
        return False
    return any(bits[PTE_M] for bits in maps.values())


def pmap_clear_reference(vm: MachineState, i: int) -> None:
    """``pmap_clear_reference(m)``: clear every mapping's A bit (PG_REFERENCED, the
    page's software copy, is the caller's business)."""
    for bits in vm.pmap.mappings.get(i, {}).values():
        bits[PTE_A] = False


def pmap_clear_modify(vm: MachineState, i: int) -> None:
    """``pmap_clear_modify(m)``: clear every mapping's M bit (the modifications are
    forgotten, not collected; ``m.dirty`` is untouched)."""
    for bits in vm.pmap.mappings.get(i, {}).values():
        bits[PTE_M] = False


def pmap_page_protect(vm: MachineState, i: int, prot: int) -> None:
    """``pmap_page_protect(m, prot)``: lower the protection of every mapping of the
    page; never raises it.

    * ``prot`` without READ, WRITE or EXECUTE (VM_PROT_NONE): remove every mapping
      (collecting M bits with ``vm_page_dirty`` and A bits into PG_REFERENCED) and
      clear PG_MAPPED, PG_WRITEABLE and PG_MAPPEDMULTI;
    * READ and/or EXECUTE without WRITE: make writable mappings read-only (collecting
      and clearing their M bits) and clear PG_WRITEABLE; PG_MAPPED stays;
    * with WRITE: nothing."""
    if prot & VM_PROT_WRITE:
        return
    pg = vm.pg
    maps = vm.pmap.mappings.get(i)
    if prot & (VM_PROT_READ | VM_PROT_EXECUTE):
        if maps:
            for bits in maps.values():
                if bits[PTE_W]:
                    if bits[PTE_M]:
                        _pmap_collect_modified(vm, i)
                        bits[PTE_M] = False
                    bits[PTE_W] = False
        pg.flags[i] &= ~PG_WRITEABLE
        return
    if maps:
        referenced = False
        for bits in maps.values():
            if bits[PTE_M]:
                _pmap_collect_modified(vm, i)
            referenced = referenced or bits[PTE_A]
        if referenced:
            pg.flags[i] |= PG_REFERENCED
        vm.pmap.mapping_count -= len(maps)
        del vm.pmap.mappings[i]
    pg.flags[i] &= ~_PMAP_FLAGS


def pmap_mapped_sync(vm: MachineState, i: int) -> None:
    """``pmap_mapped_sync(m)``: recompute PG_MAPPED and PG_WRITEABLE from the page's
    real mappings.  With no mapping left PG_MAPPEDMULTI is cleared too; with two or
    more it is set; with exactly one it is left as it is (sticky "possibly several",
    see the module docstring).  (The kernel function also returns the new flags; read
    ``pg.flags`` after the call.)"""
    pg = vm.pg
    maps = vm.pmap.mappings.get(i)
    flags = pg.flags[i]
    if not maps:
        pg.flags[i] = flags & ~_PMAP_FLAGS
        return
    flags |= PG_MAPPED
    if any(bits[PTE_W] for bits in maps.values()):
        flags |= PG_WRITEABLE
    else:
        flags &= ~PG_WRITEABLE
    if len(maps) >= 2:
        flags |= PG_MAPPEDMULTI
    pg.flags[i] = flags


def vm_page_protect(vm: MachineState, i: int, prot: int) -> None:
    """``vm_page_protect(m, prot)`` (spec §14; asserts the page is hard-busied):

    * VM_PROT_NONE: ``pmap_mapped_sync``; if the page is then MAPPED or WRITEABLE,
      ``pmap_page_protect(NONE)`` (removes every mapping, clears both flags);
    * VM_PROT_READ: if PG_WRITEABLE is set and ``pmap_mapped_sync`` confirms it,
      ``pmap_page_protect(READ)`` (clears PG_WRITEABLE);
    * anything else: nothing — it never raises protection (and, like the kernel's
      inline, treats only exactly NONE and exactly READ)."""
    _check_locked(vm, i, "vm_page_protect")
    pg = vm.pg
    if prot == VM_PROT_NONE:
        pmap_mapped_sync(vm, i)
        if pg.flags[i] & (PG_MAPPED | PG_WRITEABLE):
            pmap_page_protect(vm, i, VM_PROT_NONE)
    elif prot == VM_PROT_READ and pg.flags[i] & PG_WRITEABLE:
        pmap_mapped_sync(vm, i)
        if pg.flags[i] & PG_WRITEABLE:
            pmap_page_protect(vm, i, VM_PROT_READ)


def vm_page_protect_none(vm: MachineState, i: int) -> None:
    """``vm_page_protect(m, VM_PROT_NONE)`` (the form the allocator uses)."""
    vm_page_protect(vm, i, VM_PROT_NONE)


# ================================================================ contents
def pmap_zero_page(vm: MachineState, i: int) -> None:
    """``pmap_zero_page(pa)``: the whole page is now zero."""
    vm.pmap.page_zeroed[i] = ((0, PAGE_SIZE),)


def pmap_zero_page_area(vm: MachineState, i: int, off: int, size: int) -> None:
    """``pmap_zero_page_area(pa, off, size)``: bytes ``[off, off + size)`` are now
    zero."""
    if size <= 0:
        return
    ranges = _ranges_add(vm.pmap.page_zeroed.get(i, ()), off, off + size)
    vm.pmap.page_zeroed[i] = ranges


def pmap_copy_page(vm: MachineState, src: int, dst: int) -> None:
    """``pmap_copy_page(src, dst)``: ``dst`` now holds what ``src`` holds."""
    ranges = vm.pmap.page_zeroed.get(src)
    if ranges:
        vm.pmap.page_zeroed[dst] = ranges
    else:
        vm.pmap.page_zeroed.pop(dst, None)


def zeroed_ranges(vm: MachineState, i: int) -> Ranges:
    """The byte ranges of page ``i`` known to be zero."""
    return vm.pmap.page_zeroed.get(i, ())


def zeroed_chunks(vm: MachineState, i: int) -> int:
    """Mask of page ``i``'s 512-byte chunks known to be entirely zero."""
    return zeroed_chunk_mask(vm.pmap.page_zeroed.get(i, ()))


# ================================================================ guards on lower layers
def pmap_check_free_toq(vm: MachineState, i: int) -> None:
    """``vm_page_free_toq``: after ``pmap_mapped_sync`` the kernel asserts the page is
    not PG_MAPPED (before its busy checks), and later panics if the pmap still has
    mappings; both mean "the page still has a mapping" here."""
    if i in vm.pmap.mappings:
        raise KernelPanic(
            "vm_page_free_toq",
            f"freeing mapped page {pfn_of(vm, i):#x} ({len(vm.pmap.mappings[i])} mapping(s) left)",
        )


def pmap_check_freezwq(vm: MachineState, i: int) -> None:
    """``vm_page_freezwq`` ends in ``vm_page_free_toq``: a still-mapped page panics
    there, which the simulator reports before the unwire (only once the page is not
    hard-busied by someone else, i.e. when the call proceeds without sleeping)."""
    if i in vm.pmap.mappings and not vm.pg.busy[i] & PBUSY_LOCKED:
        raise KernelPanic("vm_page_free_toq", f"freeing mapped page {pfn_of(vm, i):#x}")


def pmap_check_flag_change(vm: MachineState, i: int, bits: int) -> None:
    """``vm_page_flag_set``: the simulator also refuses making a mapped page
    FICTITIOUS (a page with managed mappings has a reverse map)."""
    if bits & PG_FICTITIOUS and i in vm.pmap.mappings:
        raise InvalidArgument(
            "vm_page_flag_set: the page has managed mappings; it cannot become FICTITIOUS"
        )


def pmap_check_flag_clear(vm: MachineState, i: int, bits: int) -> None:
    """``vm_page_flag_clear(m, bits)``; the simulator refuses clearing PG_MAPPED,
    PG_WRITEABLE or PG_MAPPEDMULTI while the page's mappings require them (only the
    pmap clears those; clearing them by hand would let a mapped page be cached,
    recycled or freed)."""
    clash = bits & _pmap_required_flags(vm, i)
    if clash:
        raise InvalidArgument(
            f"vm_page_flag_clear: page {pfn_of(vm, i):#x} still has mappings that need "
            f"{', '.join(n for b, n in _FLAG_NAMES if clash & b)}; use pmap_remove / "
            "pmap_page_protect"
        )


# ================================================================ invariants, digest
def check_pmap_invariants(vm: MachineState) -> None:
    """The mapping table is well formed; every mapped page is a managed, non-FICTITIOUS
    page off the FREE/HOLD/CACHE queues whose flags cover its mappings; an M bit only
    on a writable mapping; the zeroed ranges are sorted, disjoint and merged."""

    pg = vm.pg
    total = 0
    for i, maps in vm.pmap.mappings.items():
        if not 0 <= i < vm.page_range or not any(a <= i < z for a, z in vm.managed):
            raise InvariantError(f"pmap: page index {i} is not a managed page")
        if not maps:
            raise InvariantError(f"pmap: page {i} has an empty mapping set")
        total += len(maps)
        for pmap, bits in maps.items():
            if len(bits) != 3 or not 0 <= pmap <= PMAP_ID_MAX:
                raise InvariantError(f"pmap: page {i} pmap {pmap}: malformed mapping {bits}")
            if bits[PTE_M] and not bits[PTE_W]:
                raise InvariantError(f"pmap: page {i} pmap {pmap}: M bit on a read-only mapping")
        flags = pg.flags[i]
        need = _pmap_required_flags(vm, i)
        if flags & need != need:
            raise InvariantError(
                f"pmap: page {i} has flags {flags:#x} but its mappings need {need:#x}"
            )
        if flags & PG_FICTITIOUS:
            raise InvariantError(f"pmap: FICTITIOUS page {i} has managed mappings")
        if pg.queue[i] - pg.pc[i] in _UNMAPPABLE_QUEUES:
            raise InvariantError(f"pmap: page {i} is mapped but on queue {pg.queue[i]}")
    if total != vm.pmap.mapping_count:
        raise InvariantError(
            f"pmap: {total} mappings in the table, mapping_count {vm.pmap.mapping_count}"
        )
    for i, ranges in vm.pmap.page_zeroed.items():
        if not 0 <= i < vm.page_range or not ranges:
            raise InvariantError(f"contents: bad entry for page {i}: {ranges!r}")
        prev_end = -1
        for a, b in ranges:
            if not (0 <= a < b <= PAGE_SIZE) or a <= prev_end:
                raise InvariantError(f"contents: page {i} ranges not sorted/merged: {ranges!r}")
            prev_end = b


def pmap_digest_parts(vm: MachineState) -> list[Any]:
    parts: list[Any] = []
    parts.append(
        (
            "pmap",
            tuple(
                (i, tuple((p, tuple(bits)) for p, bits in sorted(maps.items())))
                for i, maps in sorted(vm.pmap.mappings.items())
            ),
        )
    )
    parts.append(("zeroed", tuple(sorted(vm.pmap.page_zeroed.items()))))
    return parts


# ================================================================ registry wrappers


def _check_busied_for_flags(vm: MachineState, i: int, fn: str) -> None:
    """Spec §1.2: clearing PG_MAPPED / PG_WRITEABLE requires the page hard-busied
    (checked on the user-callable forms; internal callers hold the busy)."""
    if not vm.pg.busy[i] & PBUSY_LOCKED:
        raise SimulatorRefusal(
            fn,
            f"page {pfn_of(vm, i):#x} is not hard-busied (PBUSY_LOCKED): PG_MAPPED and "
            "PG_WRITEABLE may be cleared only under the hard busy (the kernel's locking "
            "rule, which the pmap does not assert); busy the page first",
        )


def _call_pmap_page_protect(vm: MachineState, m: int, prot: int) -> None:
    _check_busied_for_flags(vm, m, "pmap_page_protect")
    pmap_page_protect(vm, m, prot)


def _call_pmap_mapped_sync(vm: MachineState, m: int) -> int:
    _check_busied_for_flags(vm, m, "pmap_mapped_sync")
    pmap_mapped_sync(vm, m)
    return int(vm.pg.flags[m])

"""Contiguous memory (spec §7.4–7.7): the DMA reserve's allocator ``vm_page_alloc_contig`` /
``vm_page_free_contig`` / ``vm_contig_avail_pages`` (``vm_page.c``) and ``contigmalloc``'s
fallback over normal memory, ``vm_contig_pg_alloc`` with ``vm_contig_pg_clean``
(``vm_contig.c``).

The reserve is the radix alist ``vm_contig_alist`` (block number == pfn, ``alist.py``);
its pages sit wired once, FICTITIOUS|UNQUEUED, on PQ_NONE whether they are free in the
alist or handed out.  The fallback scans ``vm_page_array`` in *address* order (not queue
order) for a run of free or cache pages; the scan is vectorised with numpy, the per-page
takes are done one by one as the kernel does them.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from app.core.constants import (
    ALIST_BLOCK_NONE,
    CNT_INACTIVE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_NEED_COMMIT,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_L2_SIZE,
    VM_PAGE_BITS_ALL,
)
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal
from app.core.kern_synch import KernelGen
from app.core.objects import ObjType
from app.core.pmap import VM_PROT_READ, pmap_page_is_mapped, vm_page_protect, vm_page_protect_none
from app.core.state import MachineState
from app.core.vm_meter import count_lag
from app.core.vm_page.busy import (
    vm_page_busy_try,
    vm_page_busy_wait,
    vm_page_io_finish,
    vm_page_io_start,
    vm_page_wakeup,
)
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.pagestate import vm_page_cache, vm_page_test_dirty
from app.core.vm_page.queues import (
    queue_pages,
    vm_page_unqueue_nowakeup,
    vm_page_unwire,
    vm_page_wire,
)
from app.core.vm_page2 import pfn_of

NDArray = np.ndarray[Any, Any]


_U64_MAX: Final = (1 << 64) - 1


# --- malloc(9) flags (``sys/malloc.h``) that contigmalloc passes down [I] ------------------
#: Only M_WAITOK changes what ``vm_contig_pg_alloc`` does (it lets pass 1 and 2 also clean
#: the active queues).  DragonFly's own ``M_NOWAIT`` is the composite
#: ``M_RNOWAIT|M_NULLOK|M_USE_RESERVE``; its ``M_RNOWAIT`` bit (0x0001) is used here.
M_NOWAIT = 0x0001


M_WAITOK = 0x0002


M_ZERO = 0x0100


MALLOC_FLAG_CHOICES: tuple[tuple[str, int], ...] = (
    ("M_NOWAIT", M_NOWAIT),
    ("M_WAITOK", M_WAITOK),
    ("M_ZERO", M_ZERO),
)


# --- x86_64 memory attributes (``vm_memattr_t`` = PAT index, ``pmap.h``) [I] ---------------
VM_MEMATTR_UNCACHEABLE = 0x00


VM_MEMATTR_WRITE_COMBINING = 0x01


VM_MEMATTR_WRITE_THROUGH = 0x04


VM_MEMATTR_WRITE_PROTECTED = 0x05


VM_MEMATTR_WRITE_BACK = 0x06


VM_MEMATTR_UNCACHED = 0x07


VM_MEMATTR_DEFAULT = VM_MEMATTR_WRITE_BACK


MEMATTR_CHOICES: tuple[tuple[str, int], ...] = (
    ("VM_MEMATTR_DEFAULT", VM_MEMATTR_DEFAULT),
    ("VM_MEMATTR_UNCACHEABLE", VM_MEMATTR_UNCACHEABLE),
    ("VM_MEMATTR_WRITE_COMBINING", VM_MEMATTR_WRITE_COMBINING),
    ("VM_MEMATTR_WRITE_THROUGH", VM_MEMATTR_WRITE_THROUGH),
    ("VM_MEMATTR_WRITE_PROTECTED", VM_MEMATTR_WRITE_PROTECTED),
    ("VM_MEMATTR_WRITE_BACK", VM_MEMATTR_WRITE_BACK),
    ("VM_MEMATTR_UNCACHED", VM_MEMATTR_UNCACHED),
)


#: The largest contiguous request the simulator models, in bytes (8 TiB = 2^31 pages).  The
#: kernel hands the page count to ``alist_alloc`` as a 32-bit ``alist_blk_t``: bigger counts
#: are truncated, and a count above 2^31 that is not a power of two overflows the alist's
#: power-of-two round-up.  Every request of 65536 pages or more fails anyway (the alist's
#: radix), so nothing a caller could use is lost.
CONTIG_MAX_SIZE = 1 << 43


#: Pages examined per numpy step of the fallback scan (the scan stops at the first hit).
_SCAN_WINDOW = 1 << 16


#: Object types whose dirty pages ``vm_contig_pg_clean`` writes back (spec §7.7).
_CLEANABLE_TYPES = (ObjType.OBJT_VNODE, ObjType.OBJT_SWAP, ObjType.OBJT_DEFAULT)


def _check_u64(value: int, name: str, function: str) -> None:
    if not 0 <= value <= _U64_MAX:
        raise InvalidArgument(f"{function}: {name} must be from 0 to 2^64-1, got {value}")


def _init_contig(vm: MachineState) -> None:
    """Boot-time state of this area: ``vm.contig_verbose`` as the loader left it (0)."""
    vm.contig.verbose = 0


# ================================================================ the DMA reserve
def _check_contig_size(vm: MachineState, size: int, function: str) -> None:
    if size == 0:
        raise InvalidArgument(
            f"{function}: size 0 — the kernel would hand alist a zero block count, a "
            "request the allocator is not written for; give at least one byte"
        )
    if not 0 < size <= CONTIG_MAX_SIZE:
        raise InvalidArgument(
            f"{function}: size {size} is out of range (1 .. 2^43 bytes): the kernel passes "
            "the page count to alist as a 32-bit block count, so a larger size would be "
            "truncated or overflow its power-of-two round-up"
        )


def vm_page_alloc_contig(
    vm: MachineState, low: int, high: int, alignment: int, boundary: int, size: int, memattr: int
) -> int:
    """``vm_page_alloc_contig(low, high, alignment, boundary, size, memattr)`` (spec
    §7.4): ``npg = (size + 4095) >> 12`` pages from the DMA reserve, or -1 (NULL).

    ``alist_alloc(start=0, npg)`` gives the lowest naturally aligned free power-of-two
    block (a count that is not a power of two is rounded up and the tail freed at once).
    ``low``, ``alignment`` and ``boundary`` are ignored — alignment and boundary are
    converted to pages (``max(1, x >> 12)``) only for the ``vm.contig_verbose`` log line.
    ``high`` is checked after the fact: if ``(blk + npg) << 12 > high`` (``high != 0``)
    the block is freed back and the call returns NULL.  The pages come back exactly as
    they sit in the reserve (wired once, FICTITIOUS|UNQUEUED, PQ_NONE, not busied;
    valid/dirty untouched); a ``memattr`` other than the default is stored in each page's
    ``pat_mode`` (after asserting each page is FICTITIOUS) and is not reset when the
    pages go back.  Not modelled: the ``bootverbose`` "<KB>k nospace" line.
    Sizes of 0 or above ``CONTIG_MAX_SIZE`` are refused (``InvalidArgument``)."""
    function = "vm_page_alloc_contig"
    _check_contig_size(vm, size, function)
    for name, value in (
        ("low", low),
        ("high", high),
        ("alignment", alignment),
        ("boundary", boundary),
    ):
        _check_u64(value, name, function)
    if not 0 <= memattr <= 0xFF:
        raise InvalidArgument(f"{function}: memattr must be a PAT index (0 .. 255), got {memattr}")
    align_pages = max(1, alignment >> PAGE_SHIFT)
    boundary_pages = max(1, boundary >> PAGE_SHIFT)
    npg = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    alist = vm.contig.alist
    why = _reserve_why(vm, npg) if vm.trace is not None else None
    blk = alist.alloc(0, npg)
    if blk == ALIST_BLOCK_NONE:
        if why is not None:
            vm.event("alloc_contig", result=None, **why)
        return -1
    if high != 0 and ((blk + npg) << PAGE_SHIFT) > high:
        alist.free(blk, npg)
        if why is not None:
            why["why_null"] = (
                f"the reserve's block at pfn {blk:#x} ends at byte {(blk + npg) << PAGE_SHIFT:#x}, "
                f"above high {high:#x}: freed back. alist always hands out its lowest fitting "
                "block and high is only checked afterwards (low, alignment and boundary are "
                "ignored)"
            )
            vm.event("alloc_contig", result=None, **why)
        return -1
    i = blk - vm.first_page
    if vm.contig.verbose:
        vm.log(
            f"vm_page_alloc_contig: low={low:#x} high={high:#x} alignment={align_pages} "
            f"boundary={boundary_pages} (pages, ignored) npg={npg} -> pfn {blk:#x}"
        )
    if memattr != VM_MEMATTR_DEFAULT:
        flags = vm.pg.arrays["flags"][i : i + npg]
        if not (flags & PG_FICTITIOUS).all():
            alist.free(blk, npg)  # nothing may stay changed by a panicking call
            raise KernelPanic(function, 'assertion "m->flags & PG_FICTITIOUS" failed')
        vm.pg.arrays["pat"][i : i + npg] = memattr
    if why is not None:
        del why["why_null"]
        vm.event("alloc_contig", result=blk, **why)
    return i


def _alist_round(npg: int) -> int:
    """The block size ``alist_alloc`` really looks for: ``npg`` rounded up to a power of
    two (the tail beyond ``npg`` is freed at once)."""
    rounded = 1
    while rounded < npg:
        rounded <<= 1
    return rounded


def _reserve_why(vm: MachineState, npg: int) -> dict[str, Any]:
    """What ``vm_page_alloc_contig`` would find in the DMA reserve for ``npg`` pages, in
    numbers, and the reason if nothing fits (``why_null``, the alist's own condition: a
    free, naturally aligned block of ``npg`` rounded up to a power of two).  Reads only;
    called before the allocation."""
    alist = vm.contig.alist
    rounded = _alist_round(npg)
    runs = alist.free_runs()
    largest_run = max(runs, key=lambda r: r[1], default=None)
    aligned = 0
    aligned_at = None
    for start, count in runs:
        size = 1
        while size * 2 <= count:
            size *= 2
        while size > aligned:
            first = -(-start // size) * size  # the first multiple of size in the run
            if first + size <= start + count:
                aligned, aligned_at = size, first
                break
            size //= 2
    out: dict[str, Any] = {
        "npg": npg,
        "block": rounded,
        "bl_free": alist.bl_free,
        "largest_free_run": list(largest_run) if largest_run else None,
        "largest_aligned_block": [aligned_at, aligned] if aligned else None,
        "ignored": "low, alignment and boundary (only high is checked, after the fact)",
    }
    if alist.bl_free == 0:
        out["why_null"] = "the DMA reserve has no free page" + (
            " (this machine reserved none: dma_reserved 0)" if not vm.contig.vm_dma_reserved else ""
        )
    elif rounded >= alist.radix:
        out["why_null"] = (
            f"{npg} pages round up to a block of {rounded}, not below the alist's radix "
            f"({alist.radix}): alist_alloc refuses it"
        )
    elif aligned < rounded:
        run = (
            f"the largest free run is {largest_run[1]} pages at pfn {largest_run[0]:#x}"
            if largest_run
            else "there is no free run"
        )
        out["why_null"] = (
            f"{npg} pages need a free block of {rounded} pages (npg rounded up to a power of "
            f"two) starting at a multiple of {rounded}; the reserve has {alist.bl_free} free "
            f"pages, {run}, and its largest naturally aligned free block is {aligned} pages"
            + (f" at pfn {aligned_at:#x}" if aligned_at is not None else "")
        )
    else:
        out["why_null"] = None
    return out


def vm_contig_avail_pages(vm: MachineState) -> int:
    """``vm_contig_avail_pages()``: free pages in the DMA reserve (``alist bl_free``)."""
    return vm.contig.alist.bl_free


def _check_range_managed(vm: MachineState, i: int, npg: int, function: str) -> None:
    """Every page of ``[i, i + npg)`` must be one the VM manages.  The kernel would walk
    into page structures of holes (or past ``vm_page_array``) and put garbage frames into
    the reserve or the free queues; the simulator refuses such a range."""
    end = i + npg
    for a, z in vm.managed:
        if a <= i < z:
            if end <= z:
                return
            break
    raise InvalidArgument(
        f"{function}: pfns {pfn_of(vm, i):#x} .. {pfn_of(vm, end - 1):#x} are not all "
        "pages the VM manages (a hole in phys_avail or the end of memory lies inside)"
    )


def _check_free_contig_page(vm: MachineState, i: int) -> None:
    """What ``vm_page_unwire(m, 0)`` then ``vm_page_free(m)`` would panic on for a page
    the caller has hard-busied (spec §8.2, §10.1), evaluated before either runs: a wire
    count other than 1 (0 panics in the unwire, more in the free), a soft-busy count,
    or a mapping left in some pmap."""
    pg = vm.pg
    flags = pg.flags[i]
    wire = pg.wire[i]
    if not flags & PG_FICTITIOUS:
        if wire == 0 or wire >= 0x80000000:
            raise KernelPanic("vm_page_unwire", f"invalid wire count: {wire}")
        if wire > 1:
            raise KernelPanic(
                "vm_page_free_toq",
                f"vm_page_free: invalid wire count ({wire - 1}), pindex: {pg.pindex[i]:#x}",
            )
    if pg.busy[i] & PBUSY_MASK:
        raise KernelPanic("vm_page_free_toq", "freeing busy page")
    if pmap_page_is_mapped(vm, i):
        raise KernelPanic("vm_page_free_toq", f"freeing mapped page {pfn_of(vm, i):#x}")


def vm_page_free_contig(vm: MachineState, i: int, size: int) -> KernelGen:
    """``vm_page_free_contig(m, size)`` (spec §7.5), a generator (it may sleep).

    A block from the reserve (``phys(m) < vm_low_phys_reserved``) goes back to the
    alist; its pages stay wired, FICTITIOUS|UNQUEUED and unbusied.  The kernel's KASSERTs
    (``wire_count == 1``, FICTITIOUS, ``phys + size <= vm_low_phys_reserved``) and the
    alist's double-free panic are checked before anything changes.

    Pages from the fallback (normal memory) are released one by one:
    ``vm_page_busy_wait(m, FALSE, "cpgfr")`` (sleeps while another holder has the page
    hard-busied), ``vm_page_unwire(m, 0)`` (1 -> 0: to the inactive tail) and
    ``vm_page_free`` (to the free head).  Every page is checked up front, and the pages
    left are checked again after each sleep, since other threads ran meanwhile — a panic
    then leaves the pages before them freed, as in the kernel (the simulator drops the
    busy it had just taken, so nothing else changed)."""
    function = "vm_page_free_contig"
    _check_contig_size(vm, size, function)
    npg = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    _check_range_managed(vm, i, npg, function)
    pg = vm.pg
    pfn = pfn_of(vm, i)
    phys = pfn << PAGE_SHIFT
    if phys < vm.contig.vm_low_phys_reserved:
        if pg.wire[i] != 1:
            raise KernelPanic(function, 'assertion "m->wire_count == 1" failed')
        if not pg.flags[i] & PG_FICTITIOUS:
            raise KernelPanic(function, 'assertion "m->flags & PG_FICTITIOUS" failed')
        if phys + size > vm.contig.vm_low_phys_reserved:
            raise KernelPanic(function, 'assertion "pa + size <= vm_low_phys_reserved" failed')
        if vm.contig.verbose:
            vm.log(f"vm_page_free_contig: pfn {pfn:#x} npg={npg} back to the reserve")
        vm.contig.alist.free(pfn, npg)  # panics on a double free before changing
        return None
    for j in range(i, i + npg):
        _check_free_contig_page(vm, j)
    for j in range(i, i + npg):
        slept = bool(pg.busy[j] & PBUSY_LOCKED)
        yield from vm_page_busy_wait(vm, j, False, "cpgfr")
        if slept:
            # other threads ran while this one slept: check what is left again
            try:
                for k in range(j, i + npg):
                    _check_free_contig_page(vm, k)
            except KernelPanic:
                vm_page_wakeup(vm, j)
                raise
        vm_page_unwire(vm, j, False)
        vm_page_free_toq(vm, j)
    return None


# ================================================================ contigmalloc fallback
def vm_contig_pg_alloc(
    vm: MachineState, size: int, low: int, high: int, alignment: int, boundary: int, mflags: int
) -> int:
    """``vm_contig_pg_alloc(size, low, high, alignment, boundary, mflags)`` (spec §7.7):
    the page-array index of the first page of a physically contiguous run, or -1.

    ``size = round_page(size)`` (64-bit: a size within a page of 2^64 wraps to 0); a
    size of 0, or an alignment or boundary that is not a power of two (0 allowed),
    panics before anything happens.  The DMA reserve is tried first
    (``vm_page_alloc_contig``, whose pages are FICTITIOUS and wired).  Otherwise up to
    three passes scan ``vm_page_array[start .. v_page_count)`` in address order for the
    first page on PQ_FREE or PQ_CACHE with ``low <= phys < high``, ``phys &
    (alignment - 1) == 0``, ``(phys ^ (phys + size - 1)) & ~(boundary - 1) == 0``,
    ``phys + size <= high``, not wired, not held, not hard- or soft-busied and not
    NEED_COMMIT; the next ``npg - 1`` pages must pass the same *state* tests (the
    address tests apply to the first page only).  A failed run restarts the search one
    page further (``start += 1``).  The run's pages are then taken one by one (see
    ``_contig_take``).  When the scan comes up empty, every inactive colour queue is
    cleaned (``vm_contig_pg_clean``), and from the second pass on with M_WAITOK every
    active one too, and the next pass starts again at 0.  The cleaning happens after the
    last pass as well, before NULL is returned.  Each clean's page budget is the *global*
    ``vmstats.v_inactive_count`` (``v_active_count``), re-read per colour: it lags the
    per-CPU adjustments until the next rollup (hardclock does one every tick).

    Quirks kept: the scan bound is ``vmstats.v_page_count`` although it indexes
    ``vm_page_array`` (holes included), so with holes in ``phys_avail`` the top of the
    array is never scanned; a run running past the end of ``vm_page_array`` fails
    (the kernel would read beyond the array).  Alignment 0 leaves only physical address
    0 acceptable (``alignment - 1`` wraps to all ones); boundary 0 means no limit.
    ``M_ZERO`` is contigmalloc's business and ignored here."""
    function = "vm_contig_pg_alloc"
    for name, value in (
        ("size", size),
        ("low", low),
        ("high", high),
        ("alignment", alignment),
        ("boundary", boundary),
    ):
        _check_u64(value, name, function)
    size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & _U64_MAX
    if size == 0:
        raise KernelPanic(function, "size must not be 0")
    if alignment & (alignment - 1):
        raise KernelPanic(function, "alignment must be a power of 2")
    if boundary & (boundary - 1):
        raise KernelPanic(function, "boundary must be a power of 2")
    if size > CONTIG_MAX_SIZE:
        _check_contig_size(vm, size, function)
    i = vm_page_alloc_contig(vm, low, high, alignment, boundary, size, VM_MEMATTR_DEFAULT)
    if i >= 0:
        return i
    npg = size >> PAGE_SHIFT
    start = 0
    explain = vm.trace is not None
    passes: list[dict[str, Any]] = []
    for pass_no in range(3):
        took_failed: list[int] = []
        while True:
            first = _contig_find(vm, start, npg, size, low, high, alignment, boundary)
            if first < 0:
                break
            if _contig_take(vm, first, npg):
                if vm.contig.verbose:
                    vm.log(
                        f"vm_contig_pg_alloc: pass {pass_no}: pfn {pfn_of(vm, first):#x} npg={npg}"
                    )
                if explain:
                    passes.append({"pass": pass_no, "found": pfn_of(vm, first)})
                    vm.event("contig_pg_alloc", result=pfn_of(vm, first), npg=npg, passes=passes)
                return first
            if explain:
                took_failed.append(pfn_of(vm, first))
            start = first + 1
        diagnosis = _scan_why(vm, npg, size, low, high, alignment, boundary) if explain else None
        # best-effort flush of the inactive queues (every caller, even M_NOWAIT), and of
        # the active queues from the second pass on when the caller may wait
        tally: dict[str, int] | None = (
            {"visited": 0, "cached": 0, "written": 0} if explain else None
        )
        budget = vm.vmstats.v_inactive_count  # global: it lags the per-CPU adjustments
        lag = count_lag(vm, CNT_INACTIVE, budget, "vmstats") if explain else None
        for color in range(PQ_L2_SIZE):
            vm_contig_pg_clean(vm, PQ_INACTIVE + color, vm.vmstats.v_inactive_count, tally)
        cleaned_active = pass_no > 0 and bool(mflags & M_WAITOK)
        if cleaned_active:
            for color in range(PQ_L2_SIZE):
                vm_contig_pg_clean(vm, PQ_ACTIVE + color, vm.vmstats.v_active_count, tally)
        if explain:
            passes.append(
                {
                    "pass": pass_no,
                    "found": None,
                    "take_failed": took_failed,
                    "scan": diagnosis,
                    "cleaned": {
                        "queues": "PQ_INACTIVE and PQ_ACTIVE" if cleaned_active else "PQ_INACTIVE",
                        "budget_per_colour": budget,
                        "budget_lag": lag,
                        **(tally or {}),
                    },
                }
            )
        start = 0
    if explain:
        last = passes[-1]
        scan = last["scan"]
        assert scan is not None
        vm.event(
            "contig_pg_alloc",
            result=None,
            npg=npg,
            passes=passes,
            why_null=(
                f"the DMA reserve could not serve it (see alloc_contig), and three scans of "
                f"normal memory found no run: {scan['why']}. Between the passes the fallback "
                f"cleaned the inactive queues"
                + (" and, with M_WAITOK, the active ones" if mflags & M_WAITOK else "")
                + f": {sum(p['cleaned']['cached'] for p in passes)} page(s) cached, "
                f"{sum(p['cleaned']['written'] for p in passes)} written back"
            ),
        )
    return -1


def _longest_run(ok: NDArray) -> tuple[int, int]:
    """The longest run of True in ``ok``: (start index, length); (0, 0) if none."""
    if not ok.size or not ok.any():
        return 0, 0
    padded = np.concatenate(([False], ok, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


def _scan_why(
    vm: MachineState,
    npg: int,
    size: int,
    low: int,
    high: int,
    alignment: int,
    boundary: int,
) -> dict[str, Any]:
    """Why a pass of ``vm_contig_pg_alloc``'s scan found no run, in numbers: the longest
    run of takeable pages (free or cache, not wired, held, busied or NEED_COMMIT), and
    how many run starts survive each of the scan's address tests in turn (``low <= phys
    < high`` with ``phys + size <= high``, the alignment, the boundary).  The first test
    that leaves none is the one that cut the runs.  Reads only."""
    limit = min(vm.vmstats.v_page_count, vm.page_range)
    state = _contig_state_ok(vm, 0, vm.page_range)
    at, longest = _longest_run(state[:limit])
    out: dict[str, Any] = {
        "scanned_pages": limit,
        "longest_run": [pfn_of(vm, at), longest] if longest else None,
    }
    starts = limit - npg + 1 if npg <= vm.page_range else 0
    if starts <= 0 or longest < npg:
        out["runs"] = 0
        out["cut_by"] = "state"
        out["why"] = (
            f"no {npg} takeable pages in a row (free or cache, not wired, held, busied or "
            "NEED_COMMIT): the longest such run is "
            + (f"{longest} pages at pfn {pfn_of(vm, at):#x}" if longest else "empty")
        )
        return out
    bad = np.zeros(state.size + 1, dtype=np.int64)
    np.cumsum(~state, out=bad[1:])
    n = min(starts, state.size - npg + 1)
    ok = (bad[npg : npg + n] - bad[:n]) == 0
    phys = np.arange(vm.first_page, vm.first_page + n, dtype=np.uint64) << np.uint64(PAGE_SHIFT)
    counts = {"runs": int(ok.sum())}
    ok &= (phys >= np.uint64(low)) & (phys < np.uint64(high))
    ok &= (phys + np.uint64(size & _U64_MAX)) <= np.uint64(high)
    counts["in_low_high"] = int(ok.sum())
    ok &= (phys & np.uint64((alignment - 1) & _U64_MAX)) == 0
    counts["aligned"] = int(ok.sum())
    span = np.uint64((size - 1) & _U64_MAX)
    ok &= ((phys ^ (phys + span)) & np.uint64(~(boundary - 1) & _U64_MAX)) == 0
    counts["within_boundary"] = int(ok.sum())
    out.update(counts)
    runs = counts["runs"]
    if counts["in_low_high"] == 0:
        out["cut_by"] = "low/high"
        out["why"] = (
            f"{runs} run start(s) of {npg} takeable pages exist, none with low {low:#x} <= "
            f"phys and phys + size <= high {high:#x}"
        )
    elif counts["aligned"] == 0:
        out["cut_by"] = "alignment"
        out["why"] = (
            f"{counts['in_low_high']} run start(s) of {npg} takeable pages lie in "
            f"[low, high), none at a multiple of the alignment {alignment:#x}"
            + (" (alignment 0 accepts only physical address 0)" if alignment == 0 else "")
        )
    elif counts["within_boundary"] == 0:
        out["cut_by"] = "boundary"
        out["why"] = (
            f"{counts['aligned']} aligned run start(s) of {npg} takeable pages lie in "
            f"[low, high), but each run crosses a {boundary:#x}-byte boundary"
        )
    else:
        out["cut_by"] = "take"
        out["why"] = (
            f"{counts['within_boundary']} run start(s) pass every test now, but taking them "
            "failed page by page (see take_failed)"
        )
    return out


def _contig_state_ok(vm: MachineState, lo: int, hi: int) -> NDArray:
    """The per-page state tests of the fallback scan for ``vm_page_array[lo:hi]``: on
    PQ_FREE or PQ_CACHE, ``wire_count == 0``, ``hold_count == 0``, neither hard- nor
    soft-busied (WANTED alone does not count) and not NEED_COMMIT."""
    arr = vm.pg.arrays
    base = arr["queue"][lo:hi].astype(np.int32)
    base -= arr["pc"][lo:hi]
    ok: NDArray = (base == PQ_FREE) | (base == PQ_CACHE)
    ok &= arr["wire"][lo:hi] == 0
    ok &= arr["hold"][lo:hi] == 0
    ok &= (arr["busy"][lo:hi] & np.uint32(PBUSY_LOCKED | PBUSY_MASK)) == 0
    ok &= (arr["flags"][lo:hi] & np.uint32(PG_NEED_COMMIT)) == 0
    return ok


def _contig_find(
    vm: MachineState,
    start: int,
    npg: int,
    size: int,
    low: int,
    high: int,
    alignment: int,
    boundary: int,
) -> int:
    """The search loop of ``vm_contig_pg_alloc`` between two takes: the first index
    ``s >= start`` (``s < v_page_count``) whose page passes every test and whose next
    ``npg - 1`` pages pass the state tests, or -1 when the pass ends.

    The kernel stops a pass at the first candidate (in address order) with
    ``phys + size > high``; since that bound only grows with the address, every later
    candidate fails it too, so folding it into the first page's tests finds the same
    run or the same failure.  Vectorised over windows of ``max(65536, npg)`` pages."""
    limit = min(vm.vmstats.v_page_count, vm.page_range)
    if npg > vm.page_range:
        return -1
    u64 = np.uint64
    window = max(_SCAN_WINDOW, npg)
    align_mask = u64((alignment - 1) & _U64_MAX)
    boundary_mask = u64(~(boundary - 1) & _U64_MAX)
    span = u64((size - 1) & _U64_MAX)
    size64 = u64(size & _U64_MAX)
    low64 = u64(low)
    high64 = u64(high)
    pos = start
    while pos < limit:
        end = min(limit, pos + window)
        ext = min(vm.page_range, end + npg - 1)
        state = _contig_state_ok(vm, pos, ext)
        ok = state[: end - pos].copy()
        phys = np.arange(pos + vm.first_page, end + vm.first_page, dtype=np.uint64)
        phys <<= u64(PAGE_SHIFT)
        ok &= phys >= low64
        ok &= phys < high64
        ok &= (phys & align_mask) == 0
        ok &= ((phys ^ (phys + span)) & boundary_mask) == 0  # uint64 arithmetic wraps
        ok &= (phys + size64) <= high64
        if npg > 1:
            bad = np.zeros(state.size + 1, dtype=np.int64)
            np.cumsum(~state, out=bad[1:])
            whole = max(0, min(end - pos, state.size - npg + 1))  # runs inside the array
            ok[whole:] = False
            ok[:whole] &= (bad[npg : npg + whole] - bad[:whole]) == 0
        hit = int(np.argmax(ok)) if ok.size else 0
        if ok.size and ok[hit]:
            return pos + hit
        pos = end
    return -1


def _contig_take(vm: MachineState, start: int, npg: int) -> bool:
    """Take the run ``[start, start + npg)`` page by page, as ``vm_contig_pg_alloc``
    does; False (with the pages taken so far released) when a page cannot be taken.

    Per page: ``vm_page_busy_try(m, TRUE)`` — on failure release the taken pages; a
    PQ_CACHE page that is clean, unheld, unwired and not NEED_COMMIT is unmapped
    (``vm_page_protect(m, VM_PROT_NONE)``), freed, and the same page tried again; a page
    not on PQ_FREE, or held, is unbusied and the taken pages released; otherwise it is
    taken off its queue without a pagedaemon wakeup, ``valid = 0xFF``, ``flags = 0``,
    wired (``v_wire_count`` +1 through the per-CPU adjustment) and unbusied.

    Spec ambiguity: §7.7 says "if on PQ_CACHE and clean/unheld"; a dirty cache page is
    read as failing that test (release and move on), not as a panic."""
    pg = vm.pg
    k = start
    end = start + npg
    while k < end:
        if vm_page_busy_try(vm, k, True):
            _contig_release(vm, start, k - start)
            return False
        base = pg.queue[k] - pg.pc[k]
        if (
            base == PQ_CACHE
            and pg.hold[k] == 0
            and pg.wire[k] == 0
            and not pg.flags[k] & PG_NEED_COMMIT
            and pg.dirty[k] == 0
        ):
            vm_page_protect_none(vm, k)
            vm_page_free_toq(vm, k)
            continue  # retry the same page, now free
        if base != PQ_FREE or pg.hold[k]:
            vm_page_wakeup(vm, k)
            _contig_release(vm, start, k - start)
            return False
        vm_page_unqueue_nowakeup(vm, k)
        pg.valid[k] = VM_PAGE_BITS_ALL
        pg.flags[k] = 0
        vm_page_wire(vm, k)
        vm_page_wakeup(vm, k)
        k += 1
    return True


def _contig_release(vm: MachineState, start: int, count: int) -> None:
    """``vm_contig_pg_free(start, count * PAGE_SIZE)``: give back pages taken by
    ``_contig_take`` — busy, ``vm_page_unwire(m, 0)`` (1 -> 0: inactive tail, ``adds``
    + 1), ``vm_page_free`` (free head).  The kernel busy-waits; here the pages were
    unbusied a moment ago in this very call and no other thread ran since, so the
    busy is always free and nothing sleeps.  Nothing taken: nothing to do."""
    for j in range(start, start + count):
        if vm_page_busy_try(vm, j, False):  # pragma: no cover - see the docstring
            raise SimulatorRefusal("vm_contig_pg_free", "a page just taken is busy")
        vm_page_unwire(vm, j, False)
        vm_page_free_toq(vm, j)


def vm_contig_pg_clean(
    vm: MachineState, queue: int, count: int, tally: dict[str, int] | None = None
) -> None:
    """``vm_contig_pg_clean(queue, count)`` (spec §7.7): walk ``queue`` from the head
    for at most ``count`` pages.  Each page is busied (``vm_page_busy_try(m, TRUE)``;
    skipped when that fails); wired, held and object-less pages are unbusied and
    skipped; ``vm_page_test_dirty`` [I] picks up pmap-modified pages; a dirty or
    NEED_COMMIT page of a vnode, swap or default object is written synchronously
    (``_pager_put_sync``) and unbusied — it stays where it is, a later clean caches it;
    dirty pages of other object types are only unbusied (spec silent; nothing writes
    them); a clean, unheld page goes to the cache (``vm_page_cache``, which unbusies).

    The kernel walks with a marker page inserted after each visited page; the simulator
    walks a snapshot of the queue order taken at the start.  The two agree because
    nothing the walk does puts a page back on the walked queue (caching moves it to
    PQ_CACHE, cleaning leaves it in place, and no other thread runs during the walk);
    a page that left the queue is passed over without using up ``count``, as the
    marker would never meet it.  ``tally`` (explanations only) counts the pages visited,
    written back and cached."""
    pg = vm.pg
    for i in queue_pages(vm, queue):
        if pg.queue[i] != queue:
            continue
        if count <= 0:
            break
        count -= 1
        if tally is not None:
            tally["visited"] += 1
        if vm_page_busy_try(vm, i, True):
            continue
        if pg.wire[i] or pg.hold[i] or pg.obj[i] == 0:
            vm_page_wakeup(vm, i)
            continue
        vm_page_test_dirty(vm, i)
        if pg.dirty[i] or pg.flags[i] & PG_NEED_COMMIT:
            if vm.vmobj.objects[pg.obj[i]].type in _CLEANABLE_TYPES:
                _pager_put_sync(vm, i)
                if tally is not None:
                    tally["written"] += 1
            vm_page_wakeup(vm, i)
        else:
            vm_page_cache(vm, i)
            if tally is not None and pg.queue[i] - pg.pc[i] == PQ_CACHE:
                tally["cached"] += 1


def _pager_put_sync(vm: MachineState, i: int) -> None:
    """Write one hard-busied dirty page through a synchronous pager (spec §15.8, §19:
    pager I/O completes at once): ``vm_page_io_start``, write-protect the mappings
    (``vm_page_protect(m, VM_PROT_READ)``), ``dirty = 0``, ``vm_page_io_finish``.  The
    page stays busied for the caller.  PG_NEED_COMMIT is left set: committing is the
    filesystem's business, so such a page is never cached.

    The kernel uses ``vm_object_page_clean(object, 0, 0, OBJPC_SYNC)`` for a vnode
    object (which cleans *every* dirty page of the object) and
    ``vm_pageout_flush(&m, 1, 0)`` for swap/default objects; the simulator writes just
    this page in both cases."""
    vm_page_io_start(vm, i)
    vm_page_protect(vm, i, VM_PROT_READ)
    vm.pg.dirty[i] = 0
    vm_page_io_finish(vm, i)


def _call_alloc_contig(
    vm: MachineState, low: int, high: int, alignment: int, boundary: int, size: int, memattr: int
) -> int | None:
    i = vm_page_alloc_contig(vm, low, high, alignment, boundary, size, memattr)
    return None if i < 0 else pfn_of(vm, i)


def _call_contig_pg_alloc(
    vm: MachineState, size: int, low: int, high: int, alignment: int, boundary: int, mflags: int
) -> int | None:
    i = vm_contig_pg_alloc(vm, size, low, high, alignment, boundary, mflags)
    return None if i < 0 else pfn_of(vm, i)


# ================================================================ checks
def check_contig_invariants(vm: MachineState) -> None:
    """Every block free in the DMA reserve lies below ``vm_low_phys_reserved`` (blocks
    only go back through ``vm_page_free_contig``, which asserts it, and boot lowers the
    bound only past blocks it has taken out), and the bound never exceeds the alist's
    65536 blocks."""
    from app.core.errors import InvariantError

    runs = vm.contig.alist.free_runs()
    if runs:
        blk, count = runs[-1]
        if (blk + count - 1) << PAGE_SHIFT >= vm.contig.vm_low_phys_reserved:
            raise InvariantError(
                f"reserve block {blk + count - 1:#x} is free but lies at or above "
                f"vm_low_phys_reserved {vm.contig.vm_low_phys_reserved:#x}"
            )
    if vm.contig.vm_low_phys_reserved > vm.contig.alist.blocks << PAGE_SHIFT:
        raise InvariantError("vm_low_phys_reserved lies beyond the DMA alist's blocks")


def contig_digest_parts(vm: MachineState) -> list[Any]:
    return [("contig", vm.contig.verbose)]

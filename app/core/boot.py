"""Boot: ``vm_page_startup``, ``vm_add_new_page``, ``vm_numa_organize``,
``vm_numa_organize_finalize``, ``vm_page_startup_finish`` and the pageout daemon's
threshold initialisation (spec §2, §3, §4.2).

Boot is vectorised with numpy but reproduces the kernel's sequential result exactly: pages
are "added" in ascending address order, each at the head of its colour queue, so a queue
ends up in descending address order.  ``_bulk_push_head`` builds the lists that a sequence
of head insertions would build.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from app.core.alist import Alist
from app.core.config import MachineConfig
from app.core.constants import (
    CNT_FREE,
    CNT_WIRE,
    DMA_ALIST_BLOCKS,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAT_WRITE_BACK,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_COUNT,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_L2_SIZE,
    SIZEOF_VM_PAGE,
    VM_PAGE_HASH_MAX,
)
from app.core.errors import ConfigError
from app.core.kern_synch import _init_sched
from app.core.pages import PageArray
from app.core.pmap import _init_pmap
from app.core.seams import Policy
from app.core.state import Cpu, MachineState
from app.core.sysctl import ensure_sysctl_state
from app.core.vm_contig import _init_contig
from app.core.vm_meter import hardclock_rollup
from app.core.vm_page.hash import _init_hash
from app.core.vm_page.pagestate import _init_pagestate
from app.core.vm_page.queues import _link, _unlink
from app.core.vm_pageout import _init_pageout, start_pagedaemon
from app.core.vmstats import VmStats, init_thresholds

NDArray = np.ndarray[Any, Any]


def trunc_page(x: int) -> int:
    return x & ~(PAGE_SIZE - 1)


def round_page(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def page_color(pfn: NDArray) -> NDArray:
    """The boot colour "twist": ``(pfn ^ pfn/1024 ^ pfn/1048576) & 1023`` (spec §2.3)."""
    twist = pfn >> 10
    twist ^= pfn
    twist ^= pfn >> 20
    twist &= PQ_L2_SIZE - 1
    color: NDArray = twist.astype(np.uint16)
    return color


# ------------------------------------------------------------------ helpers
def _boot_log(vm: MachineState, line: str) -> None:
    """A kprintf of the boot-time code (``vm_page_startup_finish``,
    ``vm_numa_organize_finalize``): it goes to the console and is kept in
    ``boot_console`` (what ``dmesg.boot`` keeps of a real boot)."""
    vm.startup.boot_console.append(line)
    vm.log(line)


def _init_empty_state(vm: MachineState, config: MachineConfig) -> None:
    vm.config = config
    vm.policy = Policy(dict(config.policy))
    vm.ncpus = config.cpus
    vm.rng = random.Random(config.seed)
    vm.sched.hz = config.hz
    vm.sched.ticks = 0
    vm.console = []
    vm.startup.boot_console = []
    vm.trace = None
    vm.pq.head = [-1] * PQ_COUNT
    vm.pq.tail = [-1] * PQ_COUNT
    vm.pq.lcnt = [0] * PQ_COUNT
    vm.pq.adds = [0] * PQ_COUNT
    vm.pq.lastq = [-1] * PQ_COUNT
    vm.vmstats = VmStats()
    # Simulated kernel-thread addresses (only vm_quickcolor looks at them).
    vm.cpus = [Cpu(c, 0xFFFFF80000000000 | (vm.rng.getrandbits(28) << 12)) for c in range(vm.ncpus)]
    vm.select_cpu(0)
    vm.curthread_systhread = False
    vm.curthread_nice = 0
    vm.vmobj.objects = {}
    vm.vmobj.next_object_id = 1
    vm.pq.set_assoc_mask = 15
    vm.hash.size = 0
    vm.pd.vm_pages_needed = 0
    vm.pd.vm_pageout_deficit = 0
    vm.pd.vm_pages_waiting = 0
    vm.pd.vm_pageout_pages_needed = 0
    vm.pd.vm_page_free_hysteresis = 16
    vm.pagestate.dnweight = 0
    vm.startup.boot_stage = "early"
    # pageout daemon tunables: 0 until the daemon starts (0 = "compute at start")
    vm.pd.vm_max_launder = 0
    vm.pd.vm_page_max_wired = 0
    vm.pd.vm_pageout_stats_scan = 0
    vm.pd.vm_pageout_stats_ticks = 0
    ensure_sysctl_state(vm)
    _init_sched(vm)


#: Pages ``_bulk_push_head`` sorts at once (its temporaries: ~20 bytes a page).
_PUSH_CHUNK: Final = 1 << 22


def _bulk_push_head(vm: MachineState, idx: NDArray | int, queues: NDArray) -> None:
    """Insert pages ``idx`` (all on no list) at the head of ``queues`` one after the
    other, in array order, touching only the lists and ``lcnt`` (boot adds pages to
    the global vmstats directly).  An int ``idx`` stands for the pages ``idx,
    idx + 1, ...`` (one per queue given), with no index array.

    Pushing pages one after the other, the work splits into consecutive chunks done in
    order (each chunk's first pages link to the heads the previous chunk left): the
    sort's temporaries are those of one chunk (``_PUSH_CHUNK`` pages), which bounds the
    peak memory of a large boot."""
    n = len(queues)
    if n > _PUSH_CHUNK:
        for lo in range(0, n, _PUSH_CHUNK):
            part = queues[lo : lo + _PUSH_CHUNK]
            _bulk_push_head(
                vm, idx + lo if isinstance(idx, int) else idx[lo : lo + len(part)], part
            )
        return
    if n == 0:
        return
    queues = queues.astype(np.uint16, copy=False)
    # Pages grouped by queue, in array order within a group (a stable radix sort of the
    # 16-bit keys).  The sorted page numbers are intp, so the scatters below use them
    # as they are (an int32 index array is converted on every fancy assignment).
    order = np.argsort(queues, kind="stable")
    if isinstance(idx, int):
        sidx = order
        sidx += idx
    else:
        sidx = idx.astype(np.intp, copy=False)[order]
    del order
    # groups, in ascending queue order as sorted: [starts[g], ends[g]] in sorted positions
    counts = np.bincount(queues)
    queue_of_group = np.flatnonzero(counts)
    group_sizes = counts[queue_of_group]
    ends = np.cumsum(group_sizes) - 1
    starts = ends - group_sizes + 1
    # In insertion order g0..gk the list becomes gk, ..., g1, g0, old list: inside a
    # group each page's next is the one before it, its prev the one after it; a group's
    # first page links to the old head, its last page has no prev.  (Assigned straight
    # from the sorted pages: numpy casts intp to int32 on the fly, no temporary.)
    group_q = queue_of_group.tolist()
    firsts = sidx[starts].tolist()
    lasts = sidx[ends].tolist()
    sizes = group_sizes.tolist()
    old_heads = [vm.pq.head[q] for q in group_q]
    arr = vm.pg.arrays
    nxt = arr["next"]
    nxt[sidx[1:]] = sidx[:-1]
    nxt[sidx[starts]] = old_heads
    prv = arr["prev"]
    prv[sidx[:-1]] = sidx[1:]
    prv[sidx[ends]] = -1
    # the queue of each page is its own key: written in array order (no scatter)
    if isinstance(idx, int):
        arr["queue"][idx : idx + n] = queues
    else:
        arr["queue"][idx] = queues
    prev_mv = vm.pg.prev
    for q, first, last, size, old in zip(group_q, firsts, lasts, sizes, old_heads, strict=True):
        if old >= 0:
            prev_mv[old] = first
        else:
            vm.pq.tail[q] = first
        vm.pq.head[q] = last
        vm.pq.lcnt[q] += size


# ------------------------------------------------------------------ §2.2
def vm_page_startup(vm: MachineState) -> None:
    """``vm_page_startup()`` with ``vm_add_new_page`` for every page (spec §2.2–2.3)."""
    cfg = vm.config
    ranges = cfg.rounded_phys_avail()
    total = sum(e - b for b, e in ranges)
    biggestone = 0
    biggest = -1
    for k, (b, e) in enumerate(ranges):
        if e - b > biggest:
            biggest = e - b
            biggestone = k
    last = len(ranges) - 1
    end = trunc_page(ranges[biggestone][1])
    # minidump bitmap, carved from the top of the biggest range
    nbits = ranges[last][1] // PAGE_SIZE
    dump_size = round_page(((nbits + 7) // 8 * 8) // 8)
    end -= dump_size
    vm.first_page = ranges[0][0] // PAGE_SIZE
    vm.page_range = ranges[last][1] // PAGE_SIZE - vm.first_page
    npages = (total - vm.page_range * SIZEOF_VM_PAGE) // PAGE_SIZE
    # DMA reserve (real kernels, not vkernels)
    vm.contig.vm_low_phys_reserved = min(65536 << PAGE_SHIFT, total // 4)
    dma = cfg.dma_reserved
    vm.contig.vm_dma_reserved = dma if dma else min(128 * 1024 * 1024, total // 16)
    vm.contig.alist = Alist(DMA_ALIST_BLOCKS)
    new_end = trunc_page(end - vm.page_range * SIZEOF_VM_PAGE)
    vm.startup.vm_page_array_end = end
    vm.startup.vm_page_array_start = new_end
    vm.startup.minidump_bitmap = (end, end + dump_size)
    vm.pg = PageArray(vm.page_range)
    vs = vm.vmstats
    vs.v_page_count = 0
    vs.cnt[CNT_FREE] = 0
    # Which pages vm_add_new_page sees, range by range (npages-- is a post-decrement:
    # the failing test still consumes one unit, which only matters for termination).
    runs: list[tuple[int, int]] = []
    for k, (b, e) in enumerate(ranges):
        if npages <= 0:
            break
        limit = new_end if k == biggestone else e
        avail = max(0, (limit - b + PAGE_SIZE - 1) // PAGE_SIZE) if limit > b else 0
        count = min(avail, npages)
        npages -= count
        if count < avail:
            npages -= 1
        if count > 0:
            runs.append((b // PAGE_SIZE, b // PAGE_SIZE + count))
    vm.managed = [(a - vm.first_page, z - vm.first_page) for a, z in runs]
    if not runs:
        raise ConfigError(
            "this memory map leaves no page for the VM once the page array is carved "
            "out; give more memory"
        )
    # pfns ascend, so the DMA-reserved pages (low addresses) are a prefix.  Every page
    # of the runs is written run by run through slices (no index arrays).
    first = vm.first_page
    arr = vm.pg.arrays
    pc = arr["pc"]
    step = 1 << 20
    limit_pfn = -(-vm.contig.vm_low_phys_reserved >> PAGE_SHIFT)  # pfn << 12 < reserved
    ndma = 0
    total_pages = 0
    for a, z in runs:
        for lo in range(a, z, step):  # chunks keep the int64 temporaries small
            hi = min(lo + step, z)
            pc[lo - first : hi - first] = page_color(np.arange(lo, hi, dtype=np.int64))
        arr["pat"][a - first : z - first] = PAT_WRITE_BACK
        dma_end = min(max(limit_pfn, a), z)  # [a, dma_end): below the reserve's limit
        arr["flags"][a - first : dma_end - first] = PG_FICTITIOUS | PG_UNQUEUED
        arr["wire"][a - first : dma_end - first] = 1
        ndma += dma_end - a
        total_pages += z - a
    dma_idx = np.concatenate(
        [np.arange(a - first, min(max(limit_pfn, a), z) - first, dtype=np.intp) for a, z in runs]
    )
    nfree = total_pages - ndma
    vs.v_page_count = total_pages
    vs.v_dma_pages = ndma
    vs.cnt[CNT_WIRE] += ndma
    vs.cnt[CNT_FREE] = nfree
    if ndma:
        dma_pfn = dma_idx.astype(np.int64) + first
        breaks = np.flatnonzero(np.diff(dma_pfn) != 1) + 1
        for seg in np.split(dma_pfn, breaks):
            vm.contig.alist.free(int(seg[0]), int(seg.size))
    if len(runs) == 1:  # the usual map: the free pages are one range, no index array
        lo, hi = runs[0][0] - first + ndma, runs[0][1] - first
        queues = pc[lo:hi] + np.uint16(PQ_FREE)
        _bulk_push_head(vm, lo, queues)
    else:
        keep = np.concatenate(
            [
                np.arange(min(max(limit_pfn, a), z) - first, z - first, dtype=np.intp)
                for a, z in runs
            ]
        )
        queues = pc[keep]  # a copy (fancy index): the free queue of each page, in place
        queues += np.uint16(PQ_FREE)
        _bulk_push_head(vm, keep, queues)
    vm.cpus[0].vmstats.copy_from(vs)


# ------------------------------------------------------------------ §3
def vm_numa_organize_all(vm: MachineState) -> None:
    """``vm_numa_organize(ran_beg, bytes, physid)`` for every memory affinity range,
    in order, then ``vm_numa_organize_finalize()`` (spec §3).

    Every queued page is moved to the head of its socket's colour queue in scan order;
    the result is built in one pass: per queue, pages moved by later calls first, each
    call's pages in descending address order, then unmoved pages in their old order.
    """
    topo = vm.config.topology
    numa = vm.config.numa_ranges()
    if topo is None or topo.sockets <= 1 or not numa:
        return
    phys_ids = topo.sockets
    socket_mod = PQ_L2_SIZE // phys_ids
    arr = vm.pg.arrays
    rank = np.full(vm.page_range, -1, dtype=np.int16)
    pc = arr["pc"]
    array_end = (vm.first_page + vm.page_range) * PAGE_SIZE
    avail = vm.config.rounded_phys_avail()
    for k, r in enumerate(numa):
        socket_value = (r.socket % phys_ids) * socket_mod
        ran_beg, ran_end = r.base, r.base + r.size
        for b, e in avail:
            lo = max(b, ran_beg)
            hi = min(e, ran_end, array_end)
            if hi <= lo:
                continue
            a = (lo - vm.first_page * PAGE_SIZE + PAGE_SIZE - 1) // PAGE_SIZE
            z = (hi - vm.first_page * PAGE_SIZE + PAGE_SIZE - 1) // PAGE_SIZE
            if z <= a:
                continue
            pc[a:z] = ((pc[a:z] % socket_mod) + socket_value) & (PQ_L2_SIZE - 1)
            rank[a:z] = k
    # rebuild the free lists: insertion order is the reverse of the final order
    queued = np.flatnonzero(arr["queue"] != 0)
    for q in range(PQ_FREE, PQ_FREE + PQ_L2_SIZE):
        vm.pq.head[q] = -1
        vm.pq.tail[q] = -1
        vm.pq.lcnt[q] = 0
    arr["next"][queued] = -1
    arr["prev"][queued] = -1
    arr["queue"][queued] = 0
    qrank = rank[queued]
    order = np.argsort(qrank, kind="stable")  # ascending rank, ascending address
    ins = queued[order]
    _bulk_push_head(vm, ins, PQ_FREE + pc[ins].astype(np.int64))
    vm_numa_organize_finalize(vm)


def _unlink_raw(vm: MachineState, i: int) -> None:
    """Unlink a boot-time page from its queue: ``lcnt`` only, no vmstats (spec §3)."""
    pg = vm.pg
    q = pg.queue[i]
    _unlink(vm, i, q)
    pg.next[i] = -1
    pg.prev[i] = -1
    pg.queue[i] = 0
    vm.pq.lcnt[q] -= 1


def _push_head_raw(vm: MachineState, i: int, q: int) -> None:
    """Insert a boot-time page at the head of ``q``: ``lcnt`` only, no vmstats."""
    _link(vm, i, q, True)
    vm.pg.queue[i] = q
    vm.pq.lcnt[q] += 1


def vm_numa_organize_finalize(vm: MachineState) -> None:
    """``vm_numa_organize_finalize()``: refill starved free colours from donors
    (spec §3.2), quirk included: the average is taken over ``vm_page_queues[0 ..
    scale_lim-1]`` (PQ_NONE plus colours 0..scale_lim-2).  Deviation: the kernel loops
    forever if no donor ever reaches the average; the simulator stops after one full
    fruitless round of all 1024 donors and logs it."""
    topo = vm.config.topology
    assert topo is not None
    s = PQ_L2_SIZE // topo.sockets // topo.cores // topo.threads
    scale_lim = s * topo.threads * topo.cores * topo.sockets
    total = sum(vm.pq.lcnt[0:scale_lim])  # indexes from 0: the source's off-by-one
    lcnt_hi = total // scale_lim
    lcnt_lo = lcnt_hi - lcnt_hi // 10
    _boot_log(vm, f"vm_page: avg {lcnt_hi} pages per queue, {scale_lim} queues")
    it = 0
    for i in range(scale_lim):
        q = PQ_FREE + i
        fruitless = 0
        while vm.pq.lcnt[q] < lcnt_lo:
            it = (it + 1) & (PQ_L2_SIZE - 1)
            donor = PQ_FREE + it
            if vm.pq.lcnt[donor] < lcnt_hi:
                fruitless += 1
                if fruitless > PQ_L2_SIZE:
                    _boot_log(vm, "vm_page: numa finalize: no donor left (the kernel would hang)")
                    return
                continue
            fruitless = 0
            m = vm.pq.head[donor]
            _unlink_raw(vm, m)
            vm.pg.pc[m] = i
            _push_head_raw(vm, m, q)


# ------------------------------------------------------------------ §2.4
def vm_page_startup_finish(vm: MachineState) -> None:
    """``vm_page_startup_finish()`` (spec §2.4): the set-associativity mask, return of
    most of the DMA reserve to the free queues in power-of-two chunks from the top,
    and the page hash size."""
    ncpus_fit = 1
    while ncpus_fit < vm.ncpus:
        ncpus_fit <<= 1
    mask = PQ_L2_SIZE // ncpus_fit - 1
    if mask < 7:
        mask = 7
    if mask < 15:
        mask = 15
    vm.pq.set_assoc_mask = mask
    keep = vm.contig.vm_dma_reserved // PAGE_SIZE
    alist = vm.contig.alist
    vs = vm.vmstats
    while True:
        bfree, blk, count = alist.free_info()
        if bfree <= keep or count == 0:
            break
        bfree -= keep
        if count > bfree:
            blk += count - bfree
            count = bfree
        x = 1 << (count.bit_length() - 1)
        blk += count - x
        count = x
        got = alist.alloc(blk, count)
        if got != blk:
            _boot_log(vm, f"vm_page_startup_finish: alist_alloc returned {got}, expected {blk}")
            break
        vs.v_dma_pages -= count
        vm.contig.vm_low_phys_reserved = blk << PAGE_SHIFT
        _return_reserve_pages(vm, blk - vm.first_page, count)
    bl_free = alist.bl_free
    _boot_log(
        vm,
        f"DMA space used: {(vs.v_dma_pages - bl_free) * 4}k, remaining available: {bl_free * 4}k",
    )
    size = 4096
    while size < vm.page_range // 16:
        size <<= 1
    vm.hash.size = min(size, VM_PAGE_HASH_MAX)


def _return_reserve_pages(vm: MachineState, start: int, count: int) -> None:
    """The per-page loop of ``vm_page_startup_finish`` for one returned chunk: clear
    FICTITIOUS|UNQUEUED, busy, ``vm_page_unwire(m, 0)`` (1 -> 0: deactivated to the
    inactive tail, bumping that queue's ``adds``), ``vm_page_free`` (to the free
    head).  Vectorised: the net effect is identical (the inactive stop is undone by
    the free; only ``adds``, ``v_tfree`` and the per-CPU counters remember it)."""
    arr = vm.pg.arrays
    if count == 0:
        return
    run = slice(start, start + count)
    arr["flags"][run] &= ~np.uint32(PG_FICTITIOUS | PG_UNQUEUED)
    arr["wire"][run] = 0
    arr["valid"][run] = 0
    arr["dirty"][run] = 0
    pcs = arr["pc"][run].astype(np.int64)
    adds = np.bincount(pcs, minlength=PQ_L2_SIZE).tolist()
    for c, n in enumerate(adds):
        if n:
            vm.pq.adds[PQ_INACTIVE + c] += n
    _bulk_push_head(vm, start, PQ_FREE + pcs)
    cpu = vm.cpus[0]
    cpu.adj.cnt[CNT_WIRE] -= count
    cpu.adj.cnt[CNT_FREE] += count
    cpu.vmstats.cnt[CNT_FREE] += count
    cpu.meter["v_tfree"] += count


def vm_pageout_init(vm: MachineState) -> None:
    """The threshold initialisation at the start of the pageout daemon thread
    (``vm_pageout_thread`` setup, spec §4.2), preceded by the hardclock rollups that
    run between ``vm_page_startup_finish`` and the daemon's start [I]."""
    hardclock_rollup(vm)
    vs = vm.vmstats
    free = vs.cnt[CNT_FREE]
    init_thresholds(vs, free)
    # defaults applied only where the tunable is still 0 (spec §4.2)
    if vm.pd.vm_max_launder == 0:
        vm.pd.vm_max_launder = physmem_pages(vm) // 256 + 16
    if vm.pd.vm_page_max_wired == 0:
        vm.pd.vm_page_max_wired = free // 3
    if vm.pd.vm_pageout_stats_scan == 0:
        vm.pd.vm_pageout_stats_scan = max(16, free // 1024 // 16)
    if vm.pd.vm_pageout_stats_ticks == 0:
        vm.pd.vm_pageout_stats_ticks = vm.sched.hz // 10
    for cpu in vm.cpus:
        cpu.vmstats.copy_from(vs)


def physmem_pages(vm: MachineState) -> int:
    """``physmem``: pages of RAM in phys_avail."""
    return sum(max(0, trunc_page(e) - round_page(b)) // PAGE_SIZE for b, e in vm.config.phys_avail)


#: The areas above the allocator, initialised at boot in this order.
AREA_INITS: tuple[Callable[[MachineState], None], ...] = (
    _init_pmap,
    _init_pagestate,
    _init_hash,
    _init_contig,
    _init_pageout,
)


def boot_machine(vm: MachineState, config: MachineConfig) -> None:
    """Boot: ``vm_page_startup`` (+ NUMA organisation), the areas' state; with boot stage
    ``finished`` also ``vm_page_startup_finish``, the pageout daemon's threshold
    initialisation and (when configured) the daemon itself."""
    _init_empty_state(vm, config)
    vm_page_startup(vm)
    for init in AREA_INITS:
        init(vm)
    vm_numa_organize_all(vm)
    if config.boot_stage == "finished":
        vm_page_startup_finish(vm)
        vm_pageout_init(vm)
        vm.startup.boot_stage = "finished"
        if config.pagedaemon:
            start_pagedaemon(vm)

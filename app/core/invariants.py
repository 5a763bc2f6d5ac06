"""Debug checks and the state digest.

``check_invariants`` proves, from scratch, that every page is on exactly the queue its
fields name (links, heads, tails and ``lcnt`` agree), that every vmstats counter equals a
recount (global + pending per-CPU adjustments), that object trees and page fields agree,
and that the DMA reserve holds exactly the pages the alist says are free.
``state_digest`` hashes all state, so two runs of the same calls can be compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from app.core.constants import (
    CNT_ACTIVE,
    CNT_CACHE,
    CNT_FREE,
    CNT_INACTIVE,
    CNT_NAMES,
    CNT_WIRE,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_COUNT,
    PQ_L2_SIZE,
)
from app.core.errors import InvariantError
from app.core.pages import PAGE_FIELDS
from app.core.pmap import check_pmap_invariants, pmap_digest_parts
from app.core.state import MachineState
from app.core.vm_contig import check_contig_invariants, contig_digest_parts
from app.core.vm_page.hash import check_hash_invariants, hash_digest_parts
from app.core.vm_page.pagestate import check_pagestate_invariants, pagestate_digest_parts
from app.core.vm_pageout import check_pageout_invariants, pageout_digest_parts

#: The areas above the allocator, in the order their invariants are checked and their
#: state enters the digest (fixed: the digests of recorded journals depend on it).
AREA_CHECKS: tuple[Callable[[MachineState], None], ...] = (
    check_pmap_invariants,
    check_pagestate_invariants,
    check_hash_invariants,
    check_contig_invariants,
    check_pageout_invariants,
)
AREA_DIGESTS: tuple[Callable[[MachineState], list[Any]], ...] = (
    pmap_digest_parts,
    pagestate_digest_parts,
    hash_digest_parts,
    contig_digest_parts,
    pageout_digest_parts,
)


def _fail(msg: str) -> None:
    raise InvariantError(msg)


def check_invariants(vm: MachineState) -> None:
    """Raise ``InvariantError`` unless the whole machine is consistent."""
    arr = vm.pg.arrays
    queue = arr["queue"].astype(np.int64)
    nxt = arr["next"].astype(np.int64)
    prv = arr["prev"].astype(np.int64)
    pc = arr["pc"].astype(np.int64)
    flags = arr["flags"]
    n = vm.page_range
    on_q = queue != 0
    # 1. queue field agrees with colour; unqueueable pages are never queued
    base_ok = (queue[on_q] - 1) % PQ_L2_SIZE == pc[on_q]
    if not base_ok.all():
        bad = int(np.flatnonzero(on_q)[np.flatnonzero(~base_ok)[0]])
        _fail(
            f"page {bad}: on queue {queue[bad]} (colour {(queue[bad] - 1) % PQ_L2_SIZE}) "
            f"but its pc is {pc[bad]}"
        )
    if (flags[on_q] & (PG_FICTITIOUS | PG_UNQUEUED)).any():
        _fail("a FICTITIOUS or UNQUEUED page sits on a queue")
    if ((nxt[~on_q] != -1) | (prv[~on_q] != -1)).any():
        _fail("a page on PQ_NONE still has queue links")
    # 2. links are mutual and stay inside one queue
    idx = np.flatnonzero(on_q)
    hn = nxt[idx]
    has_next = hn >= 0
    if ((hn < -1) | (hn >= n)).any():
        _fail("a next link points outside vm_page_array")
    src = idx[has_next]
    dst = hn[has_next]
    if (prv[dst] != src).any() or (queue[dst] != queue[src]).any():
        _fail("next/prev links disagree or cross queues")
    hp = prv[idx]
    has_prev = hp >= 0
    src = idx[has_prev]
    dst = hp[has_prev]
    if (nxt[dst] != src).any() or (queue[dst] != queue[src]).any():
        _fail("prev/next links disagree or cross queues")
    # 3. heads, tails and lcnt agree with a recount, and each list is one chain
    counts = np.bincount(queue[on_q], minlength=PQ_COUNT)
    heads = idx[~has_prev]
    tails = idx[hn < 0]
    head_q = np.bincount(queue[heads], minlength=PQ_COUNT)
    tail_q = np.bincount(queue[tails], minlength=PQ_COUNT)
    expect_head = np.full(PQ_COUNT, -1, dtype=np.int64)
    expect_head[queue[heads]] = heads
    expect_tail = np.full(PQ_COUNT, -1, dtype=np.int64)
    expect_tail[queue[tails]] = tails
    if vm.pq.lcnt[0] != 0 or vm.pq.head[0] != -1:
        _fail("PQ_NONE's header is in use")
    for q in range(1, PQ_COUNT):
        c = int(counts[q])
        if vm.pq.lcnt[q] != c:
            _fail(f"queue {q}: lcnt {vm.pq.lcnt[q]} but {c} pages carry it")
        if c and (head_q[q] != 1 or tail_q[q] != 1):
            _fail(f"queue {q}: {head_q[q]} heads and {tail_q[q]} tails")
        if vm.pq.head[q] != (int(expect_head[q]) if c else -1):
            _fail(f"queue {q}: head {vm.pq.head[q]} is not the page without prev")
        if vm.pq.tail[q] != (int(expect_tail[q]) if c else -1):
            _fail(f"queue {q}: tail {vm.pq.tail[q]} is not the page without next")
    # one chain per queue: follow all lists at once (pointer doubling) from the heads
    _check_chains(vm, nxt, idx, queue, counts)
    # 4. vmstats counters equal a recount
    recount = [0] * 5
    for q in range(1, PQ_COUNT):
        k = (CNT_FREE, CNT_INACTIVE, CNT_ACTIVE, CNT_CACHE, CNT_ACTIVE)[(q - 1) // PQ_L2_SIZE]
        recount[k] += int(counts[q])
    recount[CNT_WIRE] = int(np.count_nonzero(arr["wire"]))
    for k in range(5):
        total = vm.vmstats.cnt[k] + sum(cpu.adj.cnt[k] for cpu in vm.cpus)
        if total != recount[k]:
            _fail(f"{CNT_NAMES[k]}: global + pending = {total}, recount = {recount[k]}")
    # 5. objects and page fields agree
    obj_ids = arr["obj"]
    owned = np.flatnonzero(obj_ids)
    total_resident = 0
    for oid, obj in vm.vmobj.objects.items():
        if obj.resident_page_count != len(obj.pages):
            _fail(
                f"object {oid}: resident_page_count {obj.resident_page_count} != {len(obj.pages)}"
            )
        total_resident += len(obj.pages)
        for pindex, i in obj.pages.items():
            if obj_ids[i] != oid or int(arr["pindex"][i]) != pindex:
                _fail(f"object {oid}: page {i} at pindex {pindex} does not point back")
    if total_resident != owned.size:
        _fail(f"{owned.size} pages name an object but objects hold {total_resident}")
    if sum(cpu.t_rm for cpu in vm.cpus) != total_resident:
        _fail("gd_vmtotal.t_rm does not add up to the resident pages")
    # 6. the DMA reserve: every alist-free block is a wired FICTITIOUS|UNQUEUED page
    alist = vm.contig.alist
    alist.check()
    for blk, count in alist.free_runs():
        a = blk - vm.first_page
        z = a + count
        if a < 0 or z > n:
            _fail(f"alist block run {blk}+{count} lies outside vm_page_array")
        f = flags[a:z]
        if ((f & (PG_FICTITIOUS | PG_UNQUEUED)) != (PG_FICTITIOUS | PG_UNQUEUED)).any():
            _fail(f"reserve run {blk}+{count} has a page that is not FICTITIOUS|UNQUEUED")
        if (arr["wire"][a:z] != 1).any() or (queue[a:z] != 0).any():
            _fail(f"reserve run {blk}+{count} has a page not wired once or on a queue")
    # 7. nothing outside managed memory was ever touched
    managed = np.zeros(n, dtype=bool)
    for a, z in vm.managed:
        managed[a:z] = True
    if (on_q & ~managed).any() or (obj_ids[~managed] != 0).any():
        _fail("a page outside managed memory is queued or owned")
    # 8. threads: every sleeping thread is on exactly its channel's sleep queue
    sleeping = {id(t) for lst in vm.sched.sleepq.values() for t in lst}
    for th in vm.sched.threads.values():
        on_sq = id(th) in sleeping
        if (th.state == "sleeping") != on_sq:
            _fail(f"thread {th.tid}: state {th.state} but on a sleep queue: {on_sq}")
        if on_sq and th not in vm.sched.sleepq.get(th.channel, []):
            _fail(f"thread {th.tid} sleeps on {th.channel} but is queued elsewhere")
        if th.state != "idle" and th.gen is None:
            _fail(f"thread {th.tid} is {th.state} with no suspended call")
    for channel in vm.sched.sleepq:
        if channel.startswith("page:"):
            i = int(channel[5:]) - vm.first_page
            if not vm.pg.busy[i] & PBUSY_WANTED:
                _fail(f"threads sleep on {channel} but its PBUSY_WANTED is clear (lost wakeup)")
    for check in AREA_CHECKS:
        check(vm)


def _check_chains(vm: MachineState, nxt: Any, idx: Any, queue: Any, counts: Any) -> None:
    """Every queued page is reachable from its queue's head: the length of each chain
    from its head equals lcnt (which rules out cycles hanging off nowhere)."""
    if idx.size == 0:
        return
    # rank[i] = distance to the tail, by pointer doubling over the queued pages
    n = nxt.size
    succ = nxt.copy()
    dist = np.where(succ >= 0, 1, 0).astype(np.int64)
    dist[~(queue != 0)] = 0
    succ[queue == 0] = -1
    for _ in range(max(1, int(n).bit_length() + 1)):
        has = succ >= 0
        if not has.any():
            break
        s = succ[has]
        dist[has] += dist[s]
        nxt2 = succ.copy()
        nxt2[has] = succ[s]
        succ = nxt2
    for q in range(1, PQ_COUNT):
        h = vm.pq.head[q]
        if h >= 0 and int(dist[h]) + 1 != int(counts[q]):
            _fail(
                f"queue {q}: the chain from its head holds {int(dist[h]) + 1} pages, lcnt {counts[q]}"
            )


def state_digest(vm: MachineState) -> str:
    """A hash of all state (pages, queue headers, vmstats, CPUs, objects, alist,
    globals, RNG): equal digests mean equal machines."""
    h = hashlib.blake2b(digest_size=16)
    for name in PAGE_FIELDS:
        h.update(vm.pg.arrays[name].tobytes())
    for lst in (vm.pq.head, vm.pq.tail, vm.pq.lcnt, vm.pq.adds, vm.pq.lastq):
        h.update(np.asarray(lst, dtype=np.int64).tobytes())
    h.update(repr(vm.vmstats.state_tuple()).encode())
    for cpu in vm.cpus:
        h.update(repr(cpu.state_tuple()).encode())
    for oid in sorted(vm.vmobj.objects):
        h.update(repr(vm.vmobj.objects[oid].state_tuple()).encode())
    h.update(vm.contig.alist.state_bytes())
    h.update(
        repr(
            (
                vm.first_page,
                vm.page_range,
                vm.contig.vm_low_phys_reserved,
                vm.contig.vm_dma_reserved,
                vm.pq.set_assoc_mask,
                vm.hash.size,
                vm.pd.vm_pages_needed,
                vm.pd.vm_pageout_deficit,
                vm.pd.vm_pages_waiting,
                vm.pd.vm_pageout_pages_needed,
                vm.pagestate.dnweight,
                vm.sched.ticks,
                vm.vmobj.next_object_id,
                vm.rng.getstate(),
                vm.pd.vm_page_free_hysteresis,
                vm.pd.vm_max_launder,
                vm.pd.vm_page_max_wired,
                vm.pd.vm_pageout_stats_scan,
                vm.pd.vm_pageout_stats_ticks,
                sorted(vm.sysctl.values.items()),
                vm.sched.sleep_seq,
                [t.tid for t in vm.sched.runq],
            )
        ).encode()
    )
    for tid in sorted(vm.sched.threads):
        h.update(repr(vm.sched.threads[tid].state_tuple()).encode())
    h.update(repr([part for digest in AREA_DIGESTS for part in digest(vm)]).encode())
    return h.hexdigest()

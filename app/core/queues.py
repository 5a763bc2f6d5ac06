"""Queue insertion and removal (``_vm_page_add_queue_spinlocked``,
``_vm_page_rem_queue_spinlocked``) with the per-CPU vmstats accounting and its folding
rule, and ``vmstats_rollup`` (spec §1.5, §5, §8.1)."""

from __future__ import annotations

from .constants import (
    CNT_NAMES,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_L2_SIZE,
    PQ_NONE,
)
from .errors import KernelPanic
from .state import QUEUE_COUNTER, MachineState
from .vmstats import vm_paging_start

_FOLD_LIMIT = -1024


class QueueOps(MachineState):
    def _rem_queue(self, i: int) -> int:
        """``_vm_page_rem_queue_spinlocked``: unlink page ``i`` from its queue, count it
        out of the current CPU's ``gd_vmstats`` and ``gd_vmstats_adj`` (folding the
        adjustment into the global vmstats when it is below -1024 and
        ``vm_paging_start(-1024 * ncpus)`` holds), and return the old *base* queue
        (PQ_NONE if it was on none)."""
        pg = self.pg
        q = pg.queue[i]
        if q == PQ_NONE:
            return PQ_NONE
        trace = self.trace
        if trace is not None and i not in trace.first_queue:
            trace.first_queue[i] = q
        nxt = pg.next[i]
        prv = pg.prev[i]
        if prv < 0:
            self.q_head[q] = nxt
        else:
            pg.next[prv] = nxt
        if nxt < 0:
            self.q_tail[q] = prv
        else:
            pg.prev[nxt] = prv
        pg.next[i] = -1
        pg.prev[i] = -1
        pg.queue[i] = PQ_NONE
        self.q_lcnt[q] -= 1
        k = QUEUE_COUNTER[q]
        adj = self.adj.cnt
        adj[k] -= 1
        self.gd.cnt[k] -= 1
        if adj[k] < _FOLD_LIMIT and vm_paging_start(self.gd, _FOLD_LIMIT * self.ncpus):
            # atomic_swap_long(&adj, 0) added to the global counter; gd not refreshed
            self.vmstats.cnt[k] += adj[k]
            self.event("vmstats_fold", counter=CNT_NAMES[k], value=adj[k])
            adj[k] = 0
        return q - pg.pc[i]

    def _add_queue(self, i: int, queue: int, athead: bool) -> None:
        """``_vm_page_add_queue_spinlocked``: put page ``i`` (on PQ_NONE) on ``queue``;
        PQ_FREE always at the head (LIFO, cache-hot), others at the head iff
        ``athead``.  Callers check the KASSERTs first; reaching one here is a bug."""
        pg = self.pg
        if pg.queue[i] != PQ_NONE or pg.flags[i] & (PG_FICTITIOUS | PG_UNQUEUED):
            raise KernelPanic(
                "_vm_page_add_queue_spinlocked", "page already queued or FICTITIOUS/UNQUEUED"
            )
        trace = self.trace
        if trace is not None and i not in trace.first_queue:
            trace.first_queue[i] = PQ_NONE
        pg.queue[i] = queue
        if athead or queue <= PQ_L2_SIZE:  # queues 1..1024 are PQ_FREE
            old = self.q_head[queue]
            pg.prev[i] = -1
            pg.next[i] = old
            if old < 0:
                self.q_tail[queue] = i
            else:
                pg.prev[old] = i
            self.q_head[queue] = i
        else:
            old = self.q_tail[queue]
            pg.next[i] = -1
            pg.prev[i] = old
            if old < 0:
                self.q_head[queue] = i
            else:
                pg.next[old] = i
            self.q_tail[queue] = i
        self.q_lcnt[queue] += 1
        k = QUEUE_COUNTER[queue]
        self.adj.cnt[k] += 1
        self.gd.cnt[k] += 1

    def _unlink(self, i: int, queue: int) -> None:
        """Take page ``i`` out of ``queue``'s list (links and head/tail only)."""
        pg = self.pg
        nxt = pg.next[i]
        prv = pg.prev[i]
        if prv < 0:
            self.q_head[queue] = nxt
        else:
            pg.next[prv] = nxt
        if nxt < 0:
            self.q_tail[queue] = prv
        else:
            pg.prev[nxt] = prv

    def _link(self, i: int, queue: int, athead: bool) -> None:
        """Put page ``i`` at the head or tail of ``queue``'s list (links only)."""
        pg = self.pg
        if athead:
            old = self.q_head[queue]
            pg.prev[i] = -1
            pg.next[i] = old
            if old < 0:
                self.q_tail[queue] = i
            else:
                pg.prev[old] = i
            self.q_head[queue] = i
        else:
            old = self.q_tail[queue]
            pg.next[i] = -1
            pg.prev[i] = old
            if old < 0:
                self.q_head[queue] = i
            else:
                pg.next[old] = i
            self.q_tail[queue] = i

    def _move_within(self, i: int, queue: int, athead: bool) -> None:
        """Requeue page ``i`` inside its current queue (head or tail) without touching
        counters, as the pageout daemon does under the queue lock alone.  (``_rem_queue``
        and ``_add_queue`` inline the same list steps: they are the hot paths.)"""
        self._unlink(i, queue)
        self._link(i, queue, athead)

    def vmstats_rollup_cpu(self, cpuid: int) -> None:
        """``vmstats_rollup_cpu(gd)``: move every non-zero pending adjustment of one CPU
        into the global vmstats."""
        adj = self.cpus[cpuid].adj.cnt
        glob = self.vmstats.cnt
        for k in range(5):
            if adj[k]:
                glob[k] += adj[k]
                adj[k] = 0

    def vmstats_rollup(self) -> None:
        """``vmstats_rollup()``: roll up every CPU, then copy the global vmstats into the
        *calling* CPU's snapshot only (spec §5)."""
        for cpuid in range(self.ncpus):
            self.vmstats_rollup_cpu(cpuid)
        self.gd.copy_from(self.vmstats)
        self.event("vmstats_rollup", cpu=self.cpu.cpuid)

    def hardclock_rollup(self) -> None:
        """What hardclock does for this layer every tick [I]: each CPU rolls up its own
        adjustments and refreshes its own snapshot."""
        for cpu in self.cpus:
            self.vmstats_rollup_cpu(cpu.cpuid)
        for cpu in self.cpus:
            cpu.vmstats.copy_from(self.vmstats)

    def queue_pages(self, queue: int) -> list[int]:
        """Page indices on ``queue`` from head to tail."""
        out = []
        nxt = self.pg.next
        i = self.q_head[queue]
        while i >= 0:
            out.append(i)
            i = nxt[i]
        return out

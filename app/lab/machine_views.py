"""Read-only views of a machine for people (moved out of the core: the kernel has no such
thing): one page, the threads, the queues, vmstats
and a summary."""

from __future__ import annotations

from typing import Any

from app.core.calls import page_index
from app.core.constants import (
    CNT_NAMES,
    PAGE_SIZE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_SWAPINPROG,
    PBUSY_WANTED,
    PQ_L2_MASK,
)
from app.core.pmap import PTE_A, PTE_M, PTE_W, zeroed_chunks, zeroed_ranges
from app.core.registry import flag_names, queue_name
from app.core.state import MachineState
from app.core.vm_meter import pending_adjustment
from app.core.vm_pageout import PAGEDAEMON_TID, STATE_NAMES
from app.core.vmstats import ALL_FIELDS, predicate_table


# ================================================================= views
def page_info(vm: MachineState, pfn: int) -> dict[str, Any]:
    """Every field of one page, decoded."""
    i = page_index(vm, pfn, "pfn")
    pg = vm.pg
    busy = pg.busy[i]
    q = pg.queue[i]
    oid = pg.obj[i]
    return {
        "pfn": pfn,
        "phys_addr": pfn * PAGE_SIZE,
        "queue": queue_name(q),
        "queue_index": q,
        "pc": pg.pc[i],
        "flags": pg.flags[i],
        "flag_names": flag_names(pg.flags[i]),
        "busy_count": busy,
        "busy": {
            "locked": bool(busy & PBUSY_LOCKED),
            "wanted": bool(busy & PBUSY_WANTED),
            "swapinprog": bool(busy & PBUSY_SWAPINPROG),
            "soft_count": busy & PBUSY_MASK,
        },
        "wire_count": pg.wire[i],
        "hold_count": pg.hold[i],
        "object": oid or None,
        "pindex": pg.pindex[i],
        "act_count": pg.act[i],
        "valid": pg.valid[i],
        "dirty": pg.dirty[i],
        "pat_mode": pg.pat[i],
        "waiters": waiters(vm, f"page:{pfn}"),
        "mappings": pmap_view(vm, i),
    }


def threads_view(vm: MachineState) -> list[dict[str, Any]]:
    """Every known thread: what it runs, where it sleeps (channel, wmesg, deadline)."""
    return [vm.threads[tid].view() for tid in sorted(vm.threads)]


def waiters(vm: MachineState, channel: str) -> list[int]:
    """Thread ids sleeping on ``channel``, in the order they went to sleep."""
    return [th.tid for th in vm.sleepq.get(channel, [])]


def queue_info(vm: MachineState, queue: int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    pages: list[int] = []
    nxt = vm.pg.next
    i = vm.q_head[queue]
    pos = 0
    while i >= 0 and len(pages) < limit:
        if pos >= offset:
            pages.append(vm.first_page + i)
        pos += 1
        i = nxt[i]
    return {
        "queue": queue_name(queue),
        "lcnt": vm.q_lcnt[queue],
        "adds": vm.q_adds[queue],
        "lastq": vm.q_lastq[queue],
        "pages": pages,
    }


def vmstats_view(vm: MachineState) -> dict[str, Any]:
    return {
        "global": vm.vmstats.as_dict(),
        "cpus": [
            {
                "cpu": cpu.cpuid,
                "gd_vmstats": {n: cpu.vmstats.get(n) for n in ALL_FIELDS},
                "gd_vmstats_adj": {n: cpu.adj.cnt[k] for k, n in enumerate(CNT_NAMES)},
                "gd_cnt": dict(cpu.meter),
            }
            for cpu in vm.cpus
        ],
        "predicates": predicate_table(vm.cpus[0].vmstats),
    }


def counts_lag(vm: MachineState) -> dict[str, dict[str, int]]:
    """The global counts that lag their CPUs' pending adjustments (``gd_vmstats_adj``,
    not yet folded in by ``vmstats_rollup`` or a tick's hardclock): per count, the
    global value, the adjustments pending and the folded value a rollup would give."""
    out: dict[str, dict[str, int]] = {}
    for k, name in enumerate(CNT_NAMES):
        pending = pending_adjustment(vm, k)
        if pending:
            value = vm.vmstats.cnt[k]
            out[name] = {"global": value, "pending": pending, "folded": value + pending}
    return out


def lag_note(lag: dict[str, dict[str, int]]) -> str | None:
    """One sentence for ``counts_lag``: which global counts lag, and what folds them."""
    if not lag:
        return None
    parts = ", ".join(f"{name} {v['global']} (folded: {v['folded']})" for name, v in lag.items())
    return (
        f"the global counts lag the per-CPU adjustments not yet rolled up: {parts}; "
        "vmstats_rollup or the next tick (hardclock) folds them"
    )


def summary(vm: MachineState) -> dict[str, Any]:
    """The machine at a glance: its size and the global vmstats counts, with
    ``counts_lag`` / ``lag_note`` saying which of them lag the per-CPU adjustments."""
    vs = vm.vmstats
    lag = counts_lag(vm)
    return {
        "boot_stage": vm.boot_stage,
        "ncpus": vm.ncpus,
        "first_page": vm.first_page,
        "vm_page_array_size": vm.page_range,
        "v_page_count": vs.v_page_count,
        "v_free_count": vs.v_free_count,
        "v_cache_count": vs.v_cache_count,
        "v_inactive_count": vs.v_inactive_count,
        "v_active_count": vs.v_active_count,
        "v_wire_count": vs.v_wire_count,
        "v_dma_pages": vs.v_dma_pages,
        "dma_free_pages": vm.vm_contig_alist.bl_free,
        "vm_low_phys_reserved": vm.vm_low_phys_reserved,
        "vm_dma_reserved": vm.vm_dma_reserved,
        "set_assoc_mask": vm.set_assoc_mask,
        "page_hash_size": vm.page_hash_size,
        "ticks": vm.ticks,
        "counts_lag": lag,
        "lag_note": lag_note(lag),
    }


# ---- the areas' own views (the pageout daemon, the DMA reserve, the page hash, the pmap)
# ------------------------------------------------------------ views / checks
def pageout_view(vm: MachineState) -> dict[str, Any]:
    th = vm.threads.get(PAGEDAEMON_TID)
    return {
        "enabled": vm.pd_enabled,
        "state": STATE_NAMES[vm.pd_state],
        "pass": vm.pd_pass,
        "passes": vm.pd_passes,
        "vm_pages_needed": vm.vm_pages_needed,
        "vm_pageout_deficit": vm.vm_pageout_deficit,
        "vm_pages_waiting": vm.vm_pages_waiting,
        "q1": vm.pd_q1,
        "q2": vm.pd_q2,
        "q3": vm.pd_q3 & PQ_L2_MASK,
        "cache_rover": vm.pd_rover[0] & PQ_L2_MASK,
        "thread": th.view() if th is not None else None,
    }


# ================================================================ views and calls
def dma_alist_view(vm: MachineState) -> dict[str, Any]:
    """The DMA reserve at a glance: free pages (``bl_free``), the free runs as
    ``[start pfn, count]``, ``vm_low_phys_reserved`` and ``vm_dma_reserved``."""
    alist = vm.vm_contig_alist
    return {
        "bl_free": alist.bl_free,
        "free_runs": [[blk, count] for blk, count in alist.free_runs()],
        "vm_low_phys_reserved": vm.vm_low_phys_reserved,
        "vm_dma_reserved": vm.vm_dma_reserved,
    }


def pmap_view(vm: MachineState, i: int) -> dict[str, Any]:
    """The page's mappings and known-zero contents, for display."""
    return {
        "mappings": [
            {
                "pmap": pmap,
                "writable": bits[PTE_W],
                "referenced": bits[PTE_A],
                "modified": bits[PTE_M],
            }
            for pmap, bits in sorted(vm.pmap_mappings.get(i, {}).items())
        ],
        "zeroed_ranges": [list(r) for r in zeroed_ranges(vm, i)],
        "zeroed_chunks": zeroed_chunks(vm, i),
    }


def fake_page_info(vm: MachineState, slot: int) -> dict[str, Any] | None:
    fake = vm.fake_pages.get(slot)
    if fake is None:
        return None
    return {
        "slot": slot,
        "phys_addr": fake.phys_addr,
        "pat_mode": fake.pat_mode,
        "flags": fake.flags,
        "busy_count": fake.busy,
        "wire_count": fake.wire,
        "queue": fake.queue,
    }

"""Plain-words explanations of a page's state: can it be freed or reused right now, and
if not, why."""

from __future__ import annotations

from typing import Any

from app.core.calls import page_index
from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
)
from app.core.machine import Machine
from app.lab.machine_views import waiters


def explain_page(m: Machine, pfn: int) -> dict[str, Any]:
    """Why the page cannot be freed (``vm_page_free``) or reused by the allocator now."""
    i = page_index(m, pfn, "pfn")
    pg = m.pg
    q = pg.queue[i]
    base = q - pg.pc[i] if q else 0
    busy = pg.busy[i]
    blockers: list[str] = []
    if pg.wire[i]:
        blockers.append(
            f"wired {pg.wire[i]} time(s): vm_page_free panics on a wired page; unwire it first"
        )
    if pg.hold[i]:
        blockers.append(
            f"held {pg.hold[i]} time(s): freeing sends it to PQ_HOLD until the last vm_page_unhold"
        )
    if busy & PBUSY_MASK:
        blockers.append(
            f"soft-busied {busy & PBUSY_MASK} time(s) (I/O in progress): 'freeing busy page'"
        )
    if not busy & PBUSY_LOCKED:
        blockers.append(
            "not hard-busied: the caller of vm_page_free must hold the busy (vm_page_busy_try)"
        )
    if pg.flags[i] & PG_MAPPED:
        blockers.append("mapped in a pmap: unmap it (vm_page_protect NONE) before freeing")
    if pg.flags[i] & PG_FICTITIOUS:
        blockers.append(
            "FICTITIOUS: freeing only detaches it from its object; it never reaches PQ_FREE"
        )
    if pg.flags[i] & PG_UNQUEUED and not pg.flags[i] & PG_FICTITIOUS:
        blockers.append("UNQUEUED: never placed on a paging queue until freed")
    if pg.flags[i] & PG_NEED_COMMIT:
        blockers.append(
            "NEED_COMMIT: must be committed (laundered) before it can be cached or freed by reclaim"
        )
    if base == PQ_FREE:
        where = "on PQ_FREE: already free ('freeing free page'); the allocator can take it"
    elif base == PQ_CACHE:
        where = "on PQ_CACHE: clean and reusable; the allocator recycles it (VM_ALLOC_NORMAL)"
    elif base == PQ_HOLD:
        where = "on PQ_HOLD: freed while held; it reaches PQ_FREE at the last unhold"
    elif base == PQ_INACTIVE:
        where = "on PQ_INACTIVE: a reclaim candidate for the pageout daemon"
    elif base == PQ_ACTIVE:
        where = (
            "on PQ_ACTIVE: in use; the pageout daemon ages it (act_count) before deactivating it"
        )
    else:
        where = "on no queue: owned by its caller (just allocated, wired, or in the DMA reserve)"
    return {
        "where": where,
        "can_free_now": not blockers,
        "blockers": blockers,
        "waiters": waiters(m, f"page:{pfn}"),
    }

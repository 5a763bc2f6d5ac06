"""Plain-words explanations of a page's state: can it be freed or reused right now, and
if not, why."""

from __future__ import annotations

from typing import Any

from app.core.calls import describe_busy, page_index
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
from app.core.machine import CallResult, Machine
from app.core.registry import REGISTRY
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


# ================================================================= busy holders
#: Functions whose returned page comes back hard-busied by the call (``pair``: the pfn
#: first, the error flag second).
_BUSIES_RESULT = frozenset(
    ("vm_page_alloc", "vm_page_grab", "vm_page_lookup_busy_wait", "vm_page_lookup_busy_try")
)


#: Each function's page parameters (the ones ``BusyHolders`` watches).
_PAGE_PARAMS: dict[str, tuple[str, ...]] = {
    name: names
    for name, spec in REGISTRY.items()
    if (names := tuple(p.name for p in spec.params if p.kind == "page"))
}


class BusyHolders:
    """Which thread's call took each page's hard busy.  The kernel keeps no owner in the
    busy word; the lab infers one from the calls it runs, to tell a thread that sleeps on
    a page it holds busy itself (a self-deadlock) from one that waits for another.

    A page argument that a call found unbusied and left hard-busied, and a page returned
    hard-busied by an allocating or busying lookup, is held by the calling thread; a page
    found unbusied afterwards is held by nobody.  Bookkeeping for explanations, kept next
    to the machine by its host (``hosts.shard.Shard.holders``): not part of the machine's
    state or digest (it starts empty whenever the machine is booted, loaded or rebuilt,
    and an explanation then says it does not know the holder).

    The holders are a function of the calls: a host rebuilding a machine derives them
    again while it replays the journal (``hosts.shard.replay_onto``), and a snapshot
    carries the ones it was taken with in its header's ``extra`` (``to_json``;
    ``from_json`` reads them back), since the calls before a snapshot are not replayed.
    So an answer after a parking, a server restart or a host rebuild names the same
    holder as before it."""

    def __init__(self) -> None:
        self.by_pfn: dict[int, tuple[int, int, str]] = {}

    def to_json(self) -> list[list[Any]]:
        """The holders as plain JSON, ``[[pfn, thread, seq, fn], ...]`` by pfn (every
        entry, so that a machine loaded with them answers exactly as this one)."""
        return [[pfn, *held] for pfn, held in sorted(self.by_pfn.items())]

    @classmethod
    def from_json(cls, value: Any) -> BusyHolders:
        """Holders from ``to_json``'s form; entries of any other shape are left out (a
        snapshot header is read from a file: it explains, it must not break a load)."""
        out = cls()
        if not isinstance(value, list):
            return out
        for item in value:
            if (
                isinstance(item, list)
                and len(item) == 4
                and all(type(x) is int for x in item[:3])
                and isinstance(item[3], str)
                and item[3] in REGISTRY
            ):
                out.by_pfn[item[0]] = (item[1], item[2], item[3])
        return out

    def before(self, m: Machine, fn: str, args: dict[str, Any]) -> list[tuple[int, bool]]:
        """The page arguments of the call and whether each is hard-busied now."""
        out = []
        for name in _PAGE_PARAMS.get(fn, ()):
            pfn = args.get(name)
            if type(pfn) is int:
                locked = _locked(m, pfn)
                if locked is not None:
                    out.append((pfn, locked))
        return out

    def after(
        self,
        m: Machine,
        fn: str,
        pages: list[tuple[int, bool]],
        result: CallResult,
        tid: int,
        seq: int,
    ) -> None:
        """Update the holders once the call ran (``pages`` from ``before``)."""
        by_pfn = self.by_pfn
        for pfn, was in pages:
            now = _locked(m, pfn)
            if not now:
                by_pfn.pop(pfn, None)
            elif not was and result.blocked is None:
                by_pfn[pfn] = (tid, seq, fn)
        if fn in _BUSIES_RESULT:
            value = result.result
            if isinstance(value, list | tuple):
                value = value[0] if value and not value[-1] else None
            if type(value) is int and _locked(m, value):
                by_pfn[value] = (tid, seq, fn)

    def holder(self, m: Machine, pfn: int) -> tuple[int, int, str] | None:
        """The thread, seq and function that took the page's hard busy, if the lab saw
        it and the page is still hard-busied."""
        held = self.by_pfn.get(pfn)
        if held is None or not _locked(m, pfn):
            return None
        return held


def _locked(m: Machine, pfn: int) -> bool | None:
    """Whether page ``pfn`` is hard-busied; None outside the page array."""
    i = pfn - m.first_page
    if not 0 <= i < m.page_range:
        return None
    return bool(m.pg.busy[i] & PBUSY_LOCKED)


def sleep_why(m: Machine, holders: BusyHolders, tid: int, other_thread: bool = True) -> str:
    """Why thread ``tid`` sleeps and what ends it, in words: for a page channel the
    page's busy word and who holds it — plainly a self-deadlock when the sleeper holds the
    page busy itself — then the ways out (``Machine.sleep_remedy``: the timeout only when
    there is one)."""
    th = m.threads[tid]
    text = f"thread {tid} is {th.state} in {th.fn} (on {th.channel})"
    channel = th.channel
    if channel.startswith("page:"):
        pfn = int(channel.partition(":")[2])
        i = pfn - m.first_page
        busy = describe_busy(int(m.pg.busy[i])) if 0 <= i < m.page_range else "unknown"
        held = holders.holder(m, pfn)
        if held is not None and held[0] == tid:
            return (
                f"{text}: a self-deadlock. Page {pfn} ({busy}) is held busy by thread {tid} "
                f"itself (it took the busy in call #{held[1]}, {held[2]}), and a thread "
                "waiting for its own page never releases it: in a kernel it would hang "
                f"forever. Here: {m.sleep_remedy(th, other_thread)}"
            )
        who = (
            f"held by thread {held[0]} (call #{held[1]}, {held[2]})"
            if held is not None
            else "its holder is not known to the lab"
        )
        return (
            f"{text}: it waits for page {pfn} ({busy}; {who}) to be released; "
            f"{m.sleep_remedy(th, other_thread)}"
        )
    return f"{text}; {m.sleep_remedy(th, other_thread)}"


def explain_call(
    m: Machine,
    holders: BusyHolders,
    fn: str,
    pages: list[tuple[int, bool]],
    result: CallResult,
    seq: int,
) -> None:
    """After a call ran: update the busy holders, and when the call left its thread
    asleep, add ``why`` to its ``blocked`` answer (``sleep_why``: a self-deadlock said
    plainly; the timeout only when there is one)."""
    blocked = result.blocked
    if blocked is None and not pages and fn not in _BUSIES_RESULT:
        return  # the common case: nothing to note
    tid = blocked["thread"] if blocked is not None else m.curthread.tid
    holders.after(m, fn, pages, result, tid, seq)
    if blocked is not None:
        th = m.threads.get(tid)
        if th is not None and th.state == "sleeping":
            blocked["why"] = sleep_why(m, holders, tid)
            if th.channel.startswith("page:"):
                blocked["holder"] = holder_fields(m, holders, int(th.channel[5:]))


def holder_fields(m: Machine, holders: BusyHolders, pfn: int) -> dict[str, Any] | None:
    """``blocked.holder`` for a sleep on page ``pfn``: who took its hard busy, as fields
    (``pfn``, ``thread``, ``seq``: the call, ``fn``), or None when the lab does not know
    (the page is not hard-busied, or was busied by something the lab did not see)."""
    held = holders.holder(m, pfn)
    if held is None:
        return None
    return {"pfn": pfn, "thread": held[0], "seq": held[1], "fn": held[2]}

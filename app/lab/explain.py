"""Plain-words explanations of a page's state: can it be freed or reused right now, and
if not, why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.calls import describe_busy, page_index
from app.core.constants import (
    CNT_CACHE,
    CNT_FREE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_SIZE,
)
from app.core.machine import CallResult, Machine
from app.core.registry import REGISTRY
from app.core.seams import KERNEL, SEAMS
from app.core.vmstats import nice_offset
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
        if pg.dirty[i] and pg.flags[i] & PG_WINATCFLS:
            where += (
                "; dirty, and the daemon has passed it over once (PG_WINATCFLS: a dirty "
                "page gets a second chance in pass 0): the next scan that reaches it "
                "launders it, while its launder budget lasts"
            )
        elif pg.dirty[i]:
            where += (
                "; dirty: it cannot be cached before it is laundered, and the first scan "
                "in pass 0 only marks it (PG_WINATCFLS) and requeues it"
            )
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
        "dontneed_next": dontneed_next(m, i, base),
    }


def dontneed_next(m: Machine, i: int, base: int) -> dict[str, Any]:
    """What ``vm_page_dontneed`` would do to page index ``i`` if it were the next call to
    throw the global dice (``dnw = dnweight + 1``, spec §8.10): ``dnw``, its ``phase``
    (``dnw mod 512``) and the ``branch``, so a student can predict the dice instead of
    guessing.  Any other call to dontneed or madvise first moves the dice on."""
    dnw = int(m.pagestate.dnweight) + 1
    if dnw > 0x7FFFFFFF:
        dnw -= 1 << 32
    dirty = bool(m.pg.dirty[i])
    if base in (PQ_INACTIVE, PQ_CACHE):
        branch, why = "left alone", "it is on PQ_INACTIVE or PQ_CACHE already"
    elif (dnw & 0x1F0) == 0:
        branch, why = "left alone", f"dnw mod 512 = {dnw & 0x1FF} < 16"
    elif dirty:
        branch, why = "deactivated to the inactive tail", "the page is dirty"
    elif (dnw & 0x070) == 0:
        branch, why = "deactivated to the inactive tail", f"dnw mod 128 = {dnw & 0x7F} < 16"
    else:
        branch, why = (
            "deactivated to the inactive head",
            f"dnw mod 512 = {dnw & 0x1FF} >= 16 and dnw mod 128 = {dnw & 0x7F} >= 16",
        )
    if branch != "left alone" and not dirty and m.pg.flags[i] & PG_MAPPED:
        why += " (if a mapping has modified it, vm_page_test_dirty makes it dirty: the tail)"
    return {"dnw": dnw, "phase": dnw & 0x1FF, "branch": branch, "why": why}


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
        return _busy_now(m, [args.get(name) for name in _PAGE_PARAMS.get(fn, ())])

    def before_row(
        self, m: Machine, row: Sequence[Any], positions: tuple[int, ...]
    ) -> list[tuple[int, bool]]:
        """``before`` for a call given as values (a compact batch's row) whose page
        arguments are at ``positions`` (``holder_plan``)."""
        return _busy_now(m, [row[at] for at in positions])

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
        first, busy = m.first_page, m.pg.busy
        for pfn, was in pages:  # each in the page array (``before``)
            now = busy[pfn - first] & PBUSY_LOCKED
            if not now:
                by_pfn.pop(pfn, None)
            elif not was and result.blocked is None:
                by_pfn[pfn] = (tid, seq, fn)
        if fn in _BUSIES_RESULT:
            value = result.result
            if type(value) is not int and isinstance(value, list | tuple):
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


def holder_plan(fn: str, names: Sequence[str]) -> tuple[tuple[int, ...], bool]:
    """How ``BusyHolders`` follows the calls of ``fn`` that give the values of ``names``
    in that order (a compact batch's form): the positions of the page arguments
    ``before`` reads, in the order it reads them, and whether the call may return a page
    it hard-busied.  With neither, ``explain_call`` has nothing to note for a call that
    did not sleep."""
    positions = tuple(names.index(p) for p in _PAGE_PARAMS.get(fn, ()) if p in names)
    return positions, fn in _BUSIES_RESULT


def _busy_now(m: Machine, values: list[Any]) -> list[tuple[int, bool]]:
    """Each value that is a page of the array, and whether it is hard-busied now."""
    out = []
    for pfn in values:
        if type(pfn) is int:
            locked = _locked(m, pfn)
            if locked is not None:
                out.append((pfn, locked))
    return out


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
    th = m.sched.threads[tid]
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
    if channel == "v_free_count":
        gd = m.cpus[th.cpu].vmstats if 0 <= th.cpu < len(m.cpus) else m.vmstats
        need = int(gd.v_free_min) + int(m.pd.vm_page_free_hysteresis)
        have = int(gd.cnt[CNT_FREE]) + int(gd.cnt[CNT_CACHE])
        text += (
            f": it waits for free pages; a free that brings free + cache (now {have}) to "
            f"v_free_min + vm_page_free_hysteresis = {need} wakes it (vm_page_free_wakeup)"
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
        th = m.sched.threads.get(tid)
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


# ================================================================= call annotations
#: Calls whose record gets the colour derivation on its ``alloc`` events (``color_from``).
_COLOURED = frozenset(("vm_page_alloc", "vm_page_grab"))


def precall(m: Machine, fn: str, cpu: int, nice: int, thread: int | None) -> dict[str, Any] | None:
    """What a call's explanation needs from the state *before* it runs (the numbers its
    decision reads, which the call and the daemon it wakes then change): for ``vm_wait``
    the calling CPU's free and cache counts and the thresholds.  None for other calls
    (the common case: nothing is read)."""
    if fn != "vm_wait" or not 0 <= cpu < len(m.cpus):
        return None
    th = m.sched.threads.get(cpu if thread is None else thread)
    if th is not None and th.name == "pagedaemon":
        return None  # the daemon waits on vm_pageout_pages_needed: another rule
    gd = m.cpus[cpu].vmstats
    offset = nice_offset(m.vmstats, nice + 1)
    return {
        "cpu": cpu,
        "free": int(gd.cnt[CNT_FREE]),
        "cache": int(gd.cnt[CNT_CACHE]),
        "v_free_min": int(gd.v_free_min),
        "v_free_reserved": int(gd.v_free_reserved),
        "nice": nice,
        "nice_offset": offset,
        "hysteresis": int(m.pd.vm_page_free_hysteresis),
        "v_paging_target1": int(gd.v_paging_target1),
    }


def annotate(
    m: Machine, fn: str, args: dict[str, Any], result: CallResult, pre: dict[str, Any] | None
) -> None:
    """Explanations the lab adds to a call's record once it ran (read-only): the colour
    derivation on ``alloc`` events (``color_from``, ``color_why``) and a ``vm_wait`` event
    saying why ``vm_wait`` slept or returned at once, with the numbers it read."""
    record = result.record
    if not record:
        return
    events = record.setdefault("events", [])
    if fn in _COLOURED:
        for ev in events:
            if type(ev) is dict and ev.get("event") == "alloc":
                _explain_colour(m, args, record.get("cpu", 0), ev)
                break
    if pre is not None and fn == "vm_wait":
        events.append(_vm_wait_event(m, args, result, pre))
    summary = _pageout_summary(record)
    if summary is not None:
        events.append(summary)


#: What each queue pair of a move means when the pageout daemon makes it.
_DAEMON_MOVES = {
    "PQ_INACTIVE->PQ_CACHE": "clean inactive pages cached (reusable by vm_page_alloc)",
    "PQ_INACTIVE->PQ_FREE": "inactive pages freed (cached, then freed by the cache scan, in this call)",
    "PQ_CACHE->PQ_FREE": "cache pages freed (the cache scan, up to v_free_target free)",
    "PQ_ACTIVE->PQ_INACTIVE": "active pages deactivated (act_count aged to 0)",
    "PQ_INACTIVE->PQ_ACTIVE": "inactive pages reactivated (referenced since)",
    "PQ_INACTIVE->PQ_INACTIVE": "inactive pages requeued (dirty, or not yet old enough)",
}


def _pageout_summary(record: dict[str, Any]) -> dict[str, Any] | None:
    """The ``pageout_summary`` event when the pageout daemon ran in the call (its
    ``gd_cnt`` counters moved): pages it examined (``v_pdpages``), freed (``v_dfree``),
    laundered (``pageout_flush``) and the moves of the call by queue pair, in words."""
    counters = record.get("counters") or {}
    cnt: dict[str, int] = {}
    for scope, fields in counters.items():
        if scope.endswith(".gd_cnt") and isinstance(fields, dict):
            for name, delta in fields.items():
                if type(delta) is int:
                    cnt[name] = cnt.get(name, 0) + delta
    if not cnt.get("v_pdpages") and not cnt.get("v_pdwakeups"):
        return None
    pairs: dict[str, int] = {}
    for mv in record.get("moves") or ():
        pair = f"{mv['from'].partition(':')[0]}->{mv['to'].partition(':')[0]}"
        pairs[pair] = pairs.get(pair, 0) + 1
    laundered = sum(
        len(e.get("pfns", ()))
        for e in record.get("events") or ()
        if type(e) is dict and e.get("event") == "pageout_flush"
    )
    parts = [f"{n} {_DAEMON_MOVES[p]}" for p, n in pairs.items() if p in _DAEMON_MOVES]
    if laundered:
        parts.append(f"{laundered} dirty page(s) laundered (pageout_flush)")
    return {
        "event": "pageout_summary",
        "wakeups": cnt.get("v_pdwakeups", 0),
        "scanned": cnt.get("v_pdpages", 0),
        "freed": cnt.get("v_dfree", 0),
        "laundered": laundered,
        "moves": pairs,
        "why": (
            f"the pageout daemon ran ({cnt.get('v_pdwakeups', 0)} wakeup(s) with a scan): it "
            f"examined {cnt.get('v_pdpages', 0)} page(s) (v_pdpages) and freed "
            f"{cnt.get('v_dfree', 0)} (v_dfree); "
            + ("; ".join(parts) if parts else "it moved no page")
            + ". pagelab pageout shows its state and targets"
        ),
    }


def _explain_colour(m: Machine, args: dict[str, Any], cpu: int, ev: dict[str, Any]) -> None:
    """``color_from`` and ``color_why`` on an ``alloc`` event: how ``vm_get_pg_color``
    turned the CPU, the object's ``pg_color`` and the pindex into the colour it searched
    first (left out when the inputs cannot be read back from the arguments).  On a
    machine whose policy replaces ``vm_get_pg_color`` (the seam ``page_color``), the
    choice that did it instead."""
    policy = ev.get("color_policy", KERNEL)
    if policy != KERNEL:
        means = dict(SEAMS["page_color"].choices).get(policy, "")
        ev["color_why"] = (
            f"colour {ev.get('color')}: this machine's policy sets the seam page_color to "
            f"{policy!r} ({means}) instead of the kernel's vm_get_pg_color"
        )
        return
    pindex = args.get("pindex", 0)
    oid = args.get("object")
    obj = m.vmobj.objects.get(oid) if type(oid) is int else None
    if type(pindex) is not int or (oid is not None and obj is None):
        return
    oc = obj.pg_color if obj is not None else 0
    key = (pindex + oc) & ((1 << 64) - 1)
    topo = m.config.topology
    if not 0 <= cpu < len(m.config.color_slices):
        return
    base, share = m.config.color_slices[cpu]
    if topo is not None:
        phys_id, core_id, ht_id = topo.ids_of(cpu)
        owner = (
            f"CPU {cpu} (socket {phys_id}, core {core_id}, thread {ht_id}) owns {share} of "
            f"the {PQ_L2_SIZE} colours ({PQ_L2_SIZE} / {topo.sockets} socket(s) / "
            f"{topo.cores} core(s) / {topo.threads} thread(s))"
        )
    else:
        owner = (
            f"CPU {cpu} owns {share} of the {PQ_L2_SIZE} colours ({PQ_L2_SIZE} / {m.ncpus} CPU(s))"
        )
    if share <= 0:
        return
    offset = key % share
    if (base + offset) & (PQ_L2_SIZE - 1) != ev.get("color"):
        return  # not the rule this allocation followed: say nothing rather than mislead
    source = (
        f"(pindex {pindex} + object {oid}'s pg_color {oc}) mod {share} = {offset}"
        if obj is not None
        else f"pindex {pindex} mod {share} = {offset} (no object: pg_color 0)"
    )
    ev["color_from"] = {
        "cpu": cpu,
        "object_pg_color": oc if obj is not None else None,
        "pindex": pindex,
        "share": share,
        "base": base,
        "offset": offset,
    }
    ev["color_why"] = (
        f"colour {ev.get('color')} (vm_get_pg_color): {owner}, colours {base}..{base + share - 1}; "
        f"within them {source}, so {base} + {offset}. The allocator looks at that colour's "
        "queue first and widens the search to neighbouring colours when it is empty (probes)"
    )


def _vm_wait_event(
    m: Machine, args: dict[str, Any], result: CallResult, pre: dict[str, Any]
) -> dict[str, Any]:
    """The ``vm_wait`` event: the test ``vm_paging_min_nice(nice + 1)`` with the numbers
    the call read, whether it slept, for how long and what wakes it."""
    free, cache = pre["free"], pre["cache"]
    need = pre["v_free_min"] + pre["nice_offset"]
    below_min = need > free + cache
    below_reserved = pre["v_free_reserved"] > free
    timo_arg = args.get("timo", 0)
    timo = m.sched.hz if timo_arg == 0 else timo_arg
    slept = result.blocked is not None and result.blocked.get("channel") == "v_free_count"
    test = (
        f"free {free} + cache {cache} = {free + cache} "
        f"{'<' if below_min else '>='} v_free_min {pre['v_free_min']} + "
        f"{pre['nice_offset']} (the nice offset of nice {pre['nice']} + 1: vm_wait is slightly "
        f"nicer than an allocation) = {need}"
        + (f"; free {free} < v_free_reserved {pre['v_free_reserved']}" if below_reserved else "")
        + f", read from cpu{pre['cpu']}.gd_vmstats"
    )
    if slept:
        why = (
            f"slept: {test}. vm_wait woke the pageout daemon (vm_pages_needed) and sleeps on "
            f"v_free_count for {timo} tick(s)"
            + (
                f" (timo 0 means hz = {m.sched.hz}: vm_wait never sleeps forever)"
                if timo_arg == 0
                else ""
            )
            + f". A free that brings free + cache to v_free_min + vm_page_free_hysteresis = "
            f"{pre['v_free_min'] + pre['hysteresis']} or more, or above v_paging_target1 "
            f"{pre['v_paging_target1']}, wakes it (vm_page_free_wakeup), as does its timeout"
        )
    else:
        why = f"returned at once: {test}, not below the minimum, so there is nothing to wait for"
    return {
        "event": "vm_wait",
        "free": free,
        "cache": cache,
        "v_free_min": pre["v_free_min"],
        "nice_offset": pre["nice_offset"],
        "threshold": need,
        "v_free_reserved": pre["v_free_reserved"],
        "read_from": f"cpu{pre['cpu']}.gd_vmstats",
        "slept": slept,
        "timo": timo if slept else None,
        "wakes_at": pre["v_free_min"] + pre["hysteresis"] if slept else None,
        "why": why,
    }

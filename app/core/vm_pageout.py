"""The pageout daemon (``vm_pageout.c``, spec §15) as a simulated kernel thread.

The primary daemon runs the §15.2 loop as a generator on its own thread (``pagedaemon``,
CPU 0, ``TDF_SYSTHREAD``): each iteration runs the hold and stats trickle scans on one
colour, sleeps on ``vm_pages_needed`` for ``vm.pageout_stats_ticks`` unless paging is
needed, then runs the three phases (inactive scan, active scan, cache scan) and decides
its next state.  It is started at boot when ``MachineConfig.pagedaemon`` is set (and the
boot stage is ``finished``), woken by ``pagedaemon_wakeup`` and by its timeout.

Simplifications (spec §15.8 allows them), each marked where it happens:

* Scan markers are cursors: the persistent per-colour markers remember the page the
  marker sits after (the visited page, or, when the scan itself took that page off the
  queue, the page before it: where a real marker would be left), and a scan resumes after
  it while that page is still on the queue (else from the head); the temporary marker of
  the inactive scan is the saved successor of the page being processed (if that
  successor left the queue meanwhile, this colour's scan stops early).  With real marker
  pages a scan could continue past such moves.
* Pager I/O is synchronous: a laundered page is clean when the flush returns; there is
  no swap space accounting (swap never fills, so the OOM killer never fires).
* The kernel's daemon loops back at once while it still has a shortage; the simulator
  sleeps one tick between such passes so simulated time moves and other threads run.
* A pass takes real time in the kernel, while simulated time only moves on ``tick``: the
  simulator runs at most ``PD_PASSES_PER_TICK`` passes per tick and defers a later wakeup
  to the next tick.  Without that bound a waiter whose CPU snapshot is stale (its
  hardclock has not refreshed ``gd_vmstats`` yet) and the daemon wake each other forever
  within one call: ``vm_wait_nominal``, ``vm_wait_pfault`` or a RETRY allocation sees
  the stale shortage, ``vm_wait`` wakes the daemon, whose pass finds none and wakes the
  waiter (§15.2 phase 4), which sees the same stale shortage...  In the kernel the next
  hardclock ends that spin; here the deferred pass runs after it.
* The emergency pager and the RSS-enforcing vmdaemon are not simulated.
"""

from __future__ import annotations

from typing import Any, Final

from app.core.constants import (
    ACT_MAX,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_MARKER,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_SWAPPED,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_MASK,
)
from app.core.errors import InvalidArgument, InvariantError, KernelPanic, SimulatorRefusal
from app.core.kern_synch import MAX_THREADS, KernelGen, Sleep, Thread, _enter, start_call, wakeup
from app.core.objects import OBJ_DEAD, ObjType
from app.core.pmap import (
    PTE_A,
    VM_PROT_NONE,
    VM_PROT_READ,
    pmap_clear_modify,
    pmap_clear_reference,
    pmap_ts_referenced,
    vm_page_protect,
)
from app.core.state import MachineState
from app.core.sysctl import sysctl_value
from app.core.vm_meter import vmstats_rollup
from app.core.vm_page.busy import (
    vm_page_busy_try,
    vm_page_io_finish,
    vm_page_io_start,
    vm_page_wakeup,
)
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.pagestate import (
    vm_page_cache,
    vm_page_dirty,
    vm_page_test_dirty,
    vm_page_try_to_cache,
    vm_page_unhold,
)
from app.core.vm_page.queues import (
    _deactivate_locked,
    _move_within,
    pagedaemon_wakeup,
    vm_page_activate,
    vm_page_deactivate,
    vm_page_unqueue_nowakeup,
)
from app.core.vm_page.search import vm_page_list_find
from app.core.vm_page2 import _check_locked, pfn_of
from app.core.vmstats import (
    c_div,
    vm_paging_inactive,
    vm_paging_min,
    vm_paging_min_dnc,
    vm_paging_severe,
    vm_paging_start,
    vm_paging_target1,
    vm_paging_target1_count,
    vm_paging_target2,
    vm_paging_target2_count,
    vm_paging_wait,
)

PAGEDAEMON_TID = MAX_THREADS  # not addressable by users


IDLE, TARGET1, TARGET2 = 0, 1, 2


STATE_NAMES = ("IDLE", "TARGET1", "TARGET2")


BLIST_MAX_ALLOC = 64  # [I] cluster window on current x86_64 (spec §20.4)


VM_CACHE_SCAN_MIN = 16


#: [simulator] Most paging passes the daemon runs within one tick (see the module notes).
PD_PASSES_PER_TICK = 8


_ALLOW_ACTIVE = 1


#: Where the daemon's loop sleeps (``_pageout_loop``): the labels a resume may name.
PD_SLEEP_LABELS = ("psleep", "throttle", "shortage", "paging", "target")


_TRY_TO_CACHE: Final = 2


def pqaverage(n: int) -> int:
    """``PQAVERAGE(n)``: a generous per-colour share of a shortage (spec §15.1)."""
    if n >= 0:
        return (n + 1023) // 512 + 1
    return c_div(n - 1023, 512) - 1


def _init_pageout(vm: MachineState) -> None:
    vm.pd.enabled = bool(vm.config.pagedaemon)
    vm.pd.state = IDLE
    vm.pd.pass_ = 0
    vm.pd.q1 = vm.pd.q2 = vm.pd.q3 = 0
    vm.pd.uptime = 0
    vm.pd.rover = [0, 511]
    vm.pd.hold_cursor = [-1] * 1024
    vm.pd.stats_cursor = [-1] * 1024
    vm.pd.active_cursor = [-1] * 1024
    vm.pd.counter0 = 0
    vm.pd.counter1 = 0
    vm.pd.recycle_count = 0
    vm.pd.passes = 0
    vm.pd.pass_tick = -1  # the tick of the last pass, and how many ran in it
    vm.pd.tick_passes = 0
    vm.pd.parked_at = ""


def resume_pagedaemon(vm: MachineState, th: Thread) -> None:
    """Give the (sleeping) daemon thread ``th`` a fresh generator parked at the sleep
    ``pd.parked_at`` names: how a machine loaded from a snapshot gets its daemon back."""
    gen = _pageout_loop(vm, vm.pd.parked_at)
    next(gen)  # the placeholder sleep: the thread is already on its sleep queue
    th.gen = gen


def start_pagedaemon(vm: MachineState) -> None:
    """Create the ``pagedaemon`` thread and run it up to its first sleep."""
    th = Thread(PAGEDAEMON_TID, 0, "pagedaemon")
    th.is_pagedaemon = True
    th.systhread = True
    vm.sched.threads[th.tid] = th
    saved = vm.curthread
    start_call(vm, th, "vm_pageout_thread", {}, _pageout_loop(vm))
    _enter(vm, saved)


# ------------------------------------------------------------ helpers
def _tunable(vm: MachineState, name: str) -> int:
    """The C variable behind a ``vm.*`` tunable, as the daemon's code reads it: the
    value in ``sysctl.values`` (filled with the §16.2 defaults at boot and written by
    ``sysctl``).  Read directly: ``sysctl_value`` re-creates the defaults on every
    call, which made it most of the cost of a daemon pass (two reads per colour, 1024
    colours, per scan phase); it stays the fallback for a name missing there."""
    value = vm.sysctl.values.get(name)
    return sysctl_value(vm, name) if value is None else value


def _cursor_next(vm: MachineState, cursors: list[int], color: int, queue: int) -> int:
    c = cursors[color]
    if c >= 0 and vm.pg.queue[c] == queue:
        nxt: int = vm.pg.next[c]
        return nxt
    return vm.pq.head[queue]


def _cursor_set(
    vm: MachineState, cursors: list[int], color: int, queue: int, i: int, prv: int
) -> None:
    """Leave the persistent marker after the page ``i`` just visited ("move marker
    after m", spec §15.4/§15.6); if the scan took ``i`` off the queue the marker stays
    where ``i`` was, i.e. after ``prv``, ``i``'s predecessor when it was visited (-1 =
    the queue head)."""
    cursors[color] = i if vm.pg.queue[i] == queue else prv


def _on_queue_or_end(vm: MachineState, i: int, queue: int) -> int:
    return i if i >= 0 and vm.pg.queue[i] == queue else -1


def _act_add(vm: MachineState, i: int, amount: int) -> None:
    """``act_count += amount`` on the page's ``uint8_t`` (wraps, no clamp)."""
    act: int = vm.pg.act[i]  # an int: the u8 item would refuse (not wrap) the sum
    vm.pg.act[i] = (act + amount) & 0xFF


# ------------------------------------------------------------ §15.2 main loop
def _pageout_loop(vm: MachineState, resume_at: str = "") -> KernelGen:
    """``vm_pageout_thread`` (primary daemon) main loop, spec §15.2.

    Each ``yield`` is a labelled sleep (``_pd_sleep``; the label is kept in
    ``pd.parked_at``), so that the loop can be resumed where it sleeps in a fresh
    generator: a machine loaded from a snapshot (``app/core/snapshot.py``) cannot
    carry the suspended generator over.  With ``resume_at`` the generator first yields
    a placeholder sleep (the thread already sleeps on its channel; whoever primes the
    generator discards it), then takes the value its sleep is resumed with
    (``timed_out``) and continues right after the labelled ``yield``."""
    at = ""  # "": the top of the loop; else the label of the sleep just resumed
    timed_out = False
    if resume_at:
        if resume_at not in PD_SLEEP_LABELS:
            raise ValueError(f"the pageout loop has no sleep labelled {resume_at!r}")
        timed_out = yield Sleep("vm_pages_needed", 0, "resume")
        # after the other sleeps the loop goes back to its top
        at = resume_at if resume_at in ("psleep", "throttle") else ""
    while True:
        if at == "":
            if vm.pd.pass_ > 0x7FFF0000:
                vm.pd.pass_ = 0x70000000
            color = vm.pd.q3 & PQ_L2_MASK
            vm_pageout_scan_hold(vm, color)
            vm_pageout_page_stats(vm, color)
            vm.pd.q3 += 1
            if vm.pd.vm_pages_needed == 0:
                ticks = vm.pd.vm_pageout_stats_ticks or max(1, vm.sched.hz // 10)
                timed_out = yield _pd_sleep(vm, "psleep", ticks, "psleep")
                at = "psleep"
        if at == "psleep":
            if timed_out and not vm_paging_start(vm.gd, 0) and vm.pd.vm_pages_needed == 0:
                at = ""
                continue
            vm.pd.uptime = vm.sched.ticks
            vm.pd.vm_pages_needed = 1
            vm.pd.state = TARGET1
            wakeup(vm, "vm_pagedaemon_uptime")
        # [simulator] at most PD_PASSES_PER_TICK passes per tick (module notes)
        if vm.pd.pass_tick == vm.sched.ticks and vm.pd.tick_passes >= PD_PASSES_PER_TICK:
            yield _pd_sleep(vm, "throttle", 1, "pdloop")
            at = "throttle"  # the throttle test again
            continue
        at = ""
        if vm.pd.pass_tick != vm.sched.ticks:
            vm.pd.pass_tick = vm.sched.ticks
            vm.pd.tick_passes = 0
        vm.pd.tick_passes += 1
        vm.cpu.meter["v_pdwakeups"] += 1
        vm.pd.passes += 1
        avail = _phase_inactive(vm)
        avail = _phase_active(vm, avail)
        vm_pageout_scan_cache(vm, avail)
        gd = vm.gd
        if avail > 0:
            vm.pd.pass_ += 1
            vm.event("pageout_shortage", avail=avail, pass_=vm.pd.pass_)
            # the kernel loops back at once; the simulator yields one tick
            yield _pd_sleep(vm, "shortage", 1, "pdloop")
            continue
        vm.pd.pass_ = 0
        if vm_paging_start(gd, 0) or vm_paging_min_dnc(gd, vm.pd.vm_page_free_hysteresis):
            vm.pd.state = TARGET1
            vm.pd.vm_pages_needed = 2
            if not vm_paging_wait(gd):
                wakeup(vm, "v_free_count")
            yield _pd_sleep(vm, "paging", 1, "pdloop")
        elif vm.pd.vm_pages_needed:
            if vm_paging_target1(gd):
                vm.pd.state = TARGET1
                vm.pd.vm_pages_needed = 2
            elif vm_paging_target2(gd):
                vm.pd.state = TARGET2
                vm.pd.vm_pages_needed = 2
            else:
                vm.pd.vm_pages_needed = 0  # back to idle (state is not reset)
            wakeup(vm, "v_free_count")
            if vm.pd.vm_pages_needed:
                yield _pd_sleep(vm, "target", 1, "pdloop")


def _pd_sleep(vm: MachineState, label: str, ticks: int, wmesg: str) -> Sleep:
    """The daemon's ``tsleep`` at the loop's sleep ``label`` (remembered for a resume)."""
    vm.pd.parked_at = label
    return Sleep("vm_pages_needed", ticks, wmesg)


# ------------------------------------------------------------ phase 1
def _phase_inactive(vm: MachineState) -> int:
    vmstats_rollup(vm)
    vm.pd.uptime = vm.sched.ticks
    gd = vm.gd
    if vm.pd.state == TARGET1:
        avail = vm_paging_target1_count(gd)
    else:
        avail = vm_paging_target2_count(gd)
    avail += vm.pd.vm_pageout_deficit
    vm.pd.vm_pageout_deficit = 0
    if avail > 0:
        use = avail
        limit = vm.vmstats.v_inactive_target // 10
        if vm.pd.state == TARGET2 and use > limit:
            use = limit + 1
        quota = pqaverage(use)
        delta = 0
        color = vm.pd.q1
        for _ in range(1024):
            delta += vm_pageout_scan_inactive(vm, vm.pd.pass_ // 10, color & PQ_L2_MASK, quota)
            color += 1
            if avail - delta <= 0:
                break
            if not vm_paging_target2(gd) and not vm_paging_min_dnc(
                gd, vm.pd.vm_page_free_hysteresis
            ):
                avail = 0
                break
        avail -= delta
        vm.pd.q1 = color & PQ_L2_MASK
    return avail


def vm_pageout_scan_inactive(vm: MachineState, pass_: int, color: int, quota: int) -> int:
    """``vm_pageout_scan_inactive(pass, q, avail, &vnodes_skipped)`` (spec §15.3)."""
    vm_max_launder = vm.pd.vm_max_launder
    max_launder = vm_max_launder // 1024
    if pass_:
        max_launder *= 2
    max_launder = (max_launder + 9) // 10
    if max_launder <= 1:
        max_launder = 1
    if max_launder >= vm_max_launder // 16:
        max_launder = vm_max_launder // 16 + 1
    budget = [max_launder]
    q = PQ_INACTIVE + color
    maxscan = (vm.pq.lcnt[q] + 9) // 10 + 1
    delta = 0
    memuse3 = _tunable(vm, "vm.pageout_memuse_mode") >= 3
    allow_active = _ALLOW_ACTIVE if _tunable(vm, "vm.pageout_allow_active") else 0
    pg = vm.pg
    i = vm.pq.head[q]  # the temporary marker starts at the head
    while i >= 0 and maxscan > 0 and quota - delta > 0:
        maxscan -= 1
        nxt = pg.next[i]
        vm.cpu.meter["v_pdpages"] += 1
        if pg.flags[i] & PG_MARKER or vm_page_busy_try(vm, i, True):
            i = _on_queue_or_end(vm, nxt, q)
            continue
        if memuse3:
            pg.flags[i] |= PG_WINATCFLS
        flags = allow_active | (_TRY_TO_CACHE if pg.flags[i] & PG_WINATCFLS else 0)
        delta += vm_pageout_page(vm, i, budget, pass_, flags)
        if not vm_paging_target2(vm.gd):
            delta = max(delta, quota)
            break
        i = _on_queue_or_end(vm, nxt, q)
    return delta


def vm_pageout_page(vm: MachineState, i: int, budget: list[int], pass_: int, flags: int) -> int:
    """``vm_pageout_page(m, &max_launder, ..., pass, flags)``: the decision table of
    spec §15.3 for one busied inactive page; returns pages freed/cached/laundered."""
    pg = vm.pg
    q = pg.queue[i]
    if pg.wire[i]:
        vm_page_unqueue_nowakeup(vm, i)
        vm_page_wakeup(vm, i)
        return 0
    if pg.hold[i]:
        if q - pg.pc[i] == PQ_INACTIVE:
            _move_within(vm, i, q, False)
        vm_page_wakeup(vm, i)
        return 0
    obj = vm.vmobj.objects.get(pg.obj[i]) if pg.obj[i] else None
    if obj is None or obj.ref_count == 0:
        pg.flags[i] &= ~PG_REFERENCED
        pmap_clear_reference(vm, i)
    elif not pg.flags[i] & PG_REFERENCED:
        a = pmap_ts_referenced(vm, i)
        if a > 0:
            vm_page_activate(vm, i)
            _act_add(vm, i, a + 3)
            vm_page_wakeup(vm, i)
            return 0
    if pg.flags[i] & PG_REFERENCED:
        pg.flags[i] &= ~PG_REFERENCED
        a = pmap_ts_referenced(vm, i)
        vm_page_activate(vm, i)
        _act_add(vm, i, a + 4)
        vm_page_wakeup(vm, i)
        return 0
    if pg.dirty[i] == 0:
        vm_page_test_dirty(vm, i)
    else:
        vm_page_dirty(vm, i)
    need_commit = pg.flags[i] & PG_NEED_COMMIT
    if pg.valid[i] == 0 and not need_commit:
        vm_page_protect(vm, i, VM_PROT_NONE)
        vm_page_free_toq(vm, i)
        vm.cpu.meter["v_dfree"] += 1
        return 1
    if pg.dirty[i] == 0 and not need_commit:
        vm_page_cache(vm, i)
        return 1
    if not pg.flags[i] & PG_WINATCFLS and pass_ == 0:
        pg.flags[i] |= PG_WINATCFLS  # second chance: dirty pages circulate twice
        if pg.queue[i] - pg.pc[i] == PQ_INACTIVE:
            _move_within(vm, i, pg.queue[i], False)
        vm_page_wakeup(vm, i)
        return 0
    if budget[0] > 0:
        return _launder(vm, i, obj, budget, flags)
    vm_page_wakeup(vm, i)
    return 0


# ------------------------------------------------------------ laundering
def _launder(vm: MachineState, i: int, obj: Any, budget: list[int], flags: int) -> int:
    """Step 9 of spec §15.3: launder, unless swap pageouts are off for a swap-backed
    object, or the page has no (live) object: then back to the inactive tail."""
    pg = vm.pg
    pg.flags[i] |= PG_WINATCFLS
    swap_pageouts_ok = True
    if obj is not None and obj.type in (ObjType.OBJT_DEFAULT, ObjType.OBJT_SWAP):
        disable = _tunable(vm, "vm.disable_swapspace_pageouts")
        defer = _tunable(vm, "vm.defer_swapspace_pageouts")
        swap_pageouts_ok = not (defer or disable)
        # defer yields under a real shortage; disable never does
        swap_pageouts_ok |= bool(not disable and defer and vm_paging_min(vm.gd))
    if not swap_pageouts_ok or obj is None or obj.flags & OBJ_DEAD:
        # a dirty page with no object is never laundered
        if pg.queue[i] - pg.pc[i] == PQ_INACTIVE:
            _move_within(vm, i, pg.queue[i], False)
        vm_page_wakeup(vm, i)
        return 0
    cluster = vm_pageout_clean_helper(vm, i, obj, flags)
    count = vm_pageout_flush(vm, cluster, flags)
    budget[0] -= count
    return count


def vm_pageout_clean_helper(vm: MachineState, i: int, obj: Any, flags: int) -> list[int]:
    """``vm_pageout_clean_helper``: the busied page plus its dirty, unwired, unheld,
    inactive (or, with ALLOW_ACTIVE, active) neighbours of the same object inside the
    aligned ``BLIST_MAX_ALLOC`` window, each busied; WINATCFLS and act_count copied."""
    if obj is None:
        return [i]
    pg = vm.pg
    pindex = pg.pindex[i]
    base = pindex - pindex % BLIST_MAX_ALLOC
    run = [i]

    def take(p: int) -> bool:
        j = obj.pages.get(p, -1)
        if j < 0 or pg.wire[j] or pg.hold[j]:
            return False
        # judged after vm_page_test_dirty, so pmap-modified pages count
        vm_page_test_dirty(vm, j)
        if not (pg.dirty[j] & pg.valid[j]) and not pg.flags[j] & PG_NEED_COMMIT:
            return False
        b = pg.queue[j] - pg.pc[j]
        if b != PQ_INACTIVE and not (flags & _ALLOW_ACTIVE and b == PQ_ACTIVE):
            return False
        if pg.flags[j] & (PG_FICTITIOUS | PG_UNQUEUED) or vm_page_busy_try(vm, j, True):
            return False
        pg.flags[j] = (pg.flags[j] & ~PG_WINATCFLS) | (pg.flags[i] & PG_WINATCFLS)
        pg.act[j] = pg.act[i]
        return True

    p = pindex - 1
    while p >= base and take(p):
        run.insert(0, obj.pages[p])
        p -= 1
    p = pindex + 1
    while p < base + BLIST_MAX_ALLOC and p < obj.size and take(p):
        run.append(obj.pages[p])
        p += 1
    return run


def vm_pageout_flush(vm: MachineState, pages: list[int], flags: int) -> int:
    """``vm_pageout_flush``: soft-busy each page, write-protect it (or unmap it when
    TRY_TO_CACHE), drop the hard busy, write through the (synchronous) pager, then
    finish each page: TRY_TO_CACHE → try_to_cache, severe shortage → deactivate."""
    pg = vm.pg
    for j in pages:
        vm_page_io_start(vm, j)
        vm_page_protect(vm, j, VM_PROT_NONE if flags & _TRY_TO_CACHE else VM_PROT_READ)
        vm_page_wakeup(vm, j)
    _count_pager_write(vm, pg.obj[pages[0]], len(pages))
    for j in pages:  # the pager writes them: clean now
        pg.dirty[j] = 0
        pmap_clear_modify(vm, j)
        oid = pg.obj[j]
        if oid:
            obj = vm.vmobj.objects[oid]
            if obj.type in (ObjType.OBJT_DEFAULT, ObjType.OBJT_SWAP):
                obj.type = ObjType.OBJT_SWAP  # the first pageout makes it a swap object
                pg.flags[j] |= PG_SWAPPED
    for j in pages:
        pg.busy[j] |= PBUSY_LOCKED  # vm_page_busy_wait: nobody else holds it here
        vm_page_io_finish(vm, j)
        if flags & _TRY_TO_CACHE:
            vm_page_try_to_cache(vm, j)
        elif vm_paging_severe(vm.gd):
            vm_page_deactivate(vm, j)
            vm_page_wakeup(vm, j)
        else:
            vm_page_wakeup(vm, j)
    vm.event("pageout_flush", pfns=[pfn_of(vm, j) for j in pages])
    return len(pages)


def _count_pager_write(vm: MachineState, oid: int, count: int) -> None:
    """``vm_pager_put_pages``' accounting: ``swap_pager_putpages`` counts one
    ``v_swapout`` and ``count`` ``v_swappgsout`` per write (anonymous objects, which
    the first pageout turns into swap objects), ``vnode_pager_putpages`` one
    ``v_vnodeout`` and ``count`` ``v_vnodepgsout``.  The simulator's pager writes a
    whole cluster at once."""
    obj = vm.vmobj.objects.get(oid) if oid else None
    if obj is None:
        return
    meter = vm.cpu.meter
    if obj.type in (ObjType.OBJT_DEFAULT, ObjType.OBJT_SWAP):
        meter["v_swapout"] += 1
        meter["v_swappgsout"] += count
    elif obj.type == ObjType.OBJT_VNODE:
        meter["v_vnodeout"] += 1
        meter["v_vnodepgsout"] += count


# ------------------------------------------------------------ phase 2
def _phase_active(vm: MachineState, avail: int) -> int:
    vmstats_rollup(vm)
    vm.pd.uptime = vm.sched.ticks
    vs = vm.vmstats
    inact = vs.v_inactive_target - vs.v_inactive_count
    if avail > 0:
        inact += min(avail * 2, vs.v_inactive_target // 10)
    if inact > 0:
        delta = 0
        color = vm.pd.q2
        for _ in range(1024):
            delta += vm_pageout_scan_active(
                vm, vm.pd.pass_ // 10, color & PQ_L2_MASK, pqaverage(avail), pqaverage(inact)
            )
            color += 1
            if inact - delta <= 0 and avail - delta <= 0:
                break
            if vm.vmstats.v_inactive_count > vs.v_inactive_target:
                inact = 0
                break
        inact -= delta
        avail -= delta
        vm.pd.q2 = color & PQ_L2_MASK
    return avail


def vm_pageout_scan_active(
    vm: MachineState, pass_: int, color: int, avail_quota: int, inact_quota: int
) -> int:
    """``vm_pageout_scan_active`` (spec §15.4) from the colour's persistent marker."""
    q = PQ_ACTIVE + color
    pg = vm.pg
    maxscan = (vm.pq.lcnt[q] + 9) // 10 + 1
    delta = 0
    anon_decline = _tunable(vm, "vm.anonmem_decline")
    file_decline = _tunable(vm, "vm.filemem_decline")
    cursors = vm.pd.active_cursor
    i = _cursor_next(vm, cursors, color, q)
    while i >= 0 and maxscan > 0 and (avail_quota - delta > 0 or inact_quota > 0):
        maxscan -= 1
        nxt = pg.next[i]
        prv = pg.prev[i]
        cursors[color] = i  # the marker now sits after this page
        if pg.flags[i] & PG_MARKER or vm_page_busy_try(vm, i, True):
            i = _on_queue_or_end(vm, nxt, q)
            continue
        if pg.wire[i]:
            vm_page_unqueue_nowakeup(vm, i)
            vm_page_wakeup(vm, i)
            cursors[color] = prv  # i left: the marker stays where i was
            i = _on_queue_or_end(vm, nxt, q)
            continue
        vm.cpu.meter["v_pdpages"] += 1
        obj = vm.vmobj.objects.get(pg.obj[i]) if pg.obj[i] else None
        ref_count = obj.ref_count if obj is not None else 0
        a = 0
        if ref_count:
            a = (1 if pg.flags[i] & PG_REFERENCED else 0) + pmap_ts_referenced(vm, i)
            if a:
                act: int = pg.act[i]  # int arithmetic (u8 would refuse a sum past 255)
                pg.act[i] = min(act + 3 + a, ACT_MAX)
        pg.flags[i] &= ~PG_REFERENCED
        if a and ref_count:
            vm_page_wakeup(vm, i)
            i = _on_queue_or_end(vm, nxt, q)
            continue
        anon = obj is None or obj.type in (ObjType.OBJT_DEFAULT, ObjType.OBJT_SWAP)
        act = pg.act[i]
        pg.act[i] = act - min(act, anon_decline if anon else file_decline)
        if ref_count == 0 or pg.act[i] < pass_ + 1:
            inact_quota -= 1
            if avail_quota - delta > 0 or ref_count == 0:
                if avail_quota - delta > 0:
                    vm.pd.recycle_count += 1
                vm_page_protect(vm, i, VM_PROT_NONE)
                if (
                    pg.dirty[i] == 0
                    and not pg.flags[i] & PG_NEED_COMMIT
                    and avail_quota - delta > 0
                ):
                    vm_page_cache(vm, i)
                else:
                    vm_page_deactivate(vm, i)
                    vm_page_wakeup(vm, i)
            else:
                vm_page_deactivate(vm, i)
                vm_page_wakeup(vm, i)
            delta += 1
        else:
            vm_page_wakeup(vm, i)
        _cursor_set(vm, cursors, color, q, i, prv)
        i = _on_queue_or_end(vm, nxt, q)
    if i < 0:
        cursors[color] = -1  # end reached: the marker goes back to the head
    return delta


# ------------------------------------------------------------ phase 3
def vm_pageout_scan_cache(vm: MachineState, avail: int) -> None:
    """``vm_pageout_scan_cache`` (spec §15.5), primary rover.  The loop condition reads
    the daemon CPU's snapshot, which is exact here (the kernel reads the global
    vmstats, which every CPU's hardclock keeps refreshing meanwhile)."""
    vmstats_rollup(vm)
    vm.pd.uptime = vm.sched.ticks
    gd = vm.gd
    pg = vm.pg
    rover = vm.pd.rover
    while (
        gd.v_free_count < gd.v_free_target or gd.v_free_count < gd.v_free_min
    ) and gd.v_cache_count > VM_CACHE_SCAN_MIN:
        if (rover[0] - rover[1]) & PQ_L2_MASK == 0:
            rover[0] += 23
            continue
        i = vm_page_list_find(vm, PQ_CACHE, rover[0] & PQ_L2_MASK)
        if i < 0:
            break
        if vm_page_busy_try(vm, i, True):
            _deactivate_locked(vm, i, False)
            continue
        # as the kernel does after each page it busied; a no-op on the daemon's own
        # thread, it matters when the scan is run as a teaching step on another one
        pagedaemon_wakeup(vm)
        if pg.flags[i] & PG_MAPPED or pg.valid[i] & pg.dirty[i]:
            vm.log("WARNING! page race during find/busy")
        if (
            pg.flags[i] & (PG_UNQUEUED | PG_NEED_COMMIT | PG_MAPPED)
            or pg.hold[i]
            or pg.wire[i]
            or pg.valid[i] & pg.dirty[i]
        ):
            vm_page_deactivate(vm, i)
            vm_page_wakeup(vm, i)
            continue
        vm_page_protect(vm, i, VM_PROT_NONE)
        vm_page_free_toq(vm, i)
        vm.cpu.meter["v_dfree"] += 1
        rover[0] += 23

    # "if vm_paging_target1(): if vnodes_skipped and vm_paging_min(): speed up the
    # syncer" (spec §15.5): no vnode lock ever fails here, vnodes_skipped stays 0, so
    # the syncer is never sped up; the swapout daemon is not simulated.


# ------------------------------------------------------------ background scans
def vm_pageout_scan_hold(vm: MachineState, color: int) -> None:
    """The hold-queue repair scan (spec §15.6): stop at the first page that is really
    held; a page on PQ_HOLD with hold_count 0 (a lost race) gets hold+unhold."""
    q = PQ_HOLD + color
    pg = vm.pg
    cursors = vm.pd.hold_cursor
    i = _cursor_next(vm, cursors, color, q)
    n = vm.pd.vm_pageout_stats_scan  # "up to vm.pageout_stats_scan pages": 0 is none
    while i >= 0 and n > 0:
        n -= 1
        nxt = pg.next[i]
        prv = pg.prev[i]
        cursors[color] = i
        if pg.hold[i]:
            return
        vm.log(f"pageout: repairing held page {pfn_of(vm, i):#x} with hold_count 0")
        pg.hold[i] = 1
        vm_page_unhold(vm, i)
        _cursor_set(vm, cursors, color, q, i, prv)
        i = _on_queue_or_end(vm, nxt, q)
    if i < 0:
        cursors[color] = -1


def vm_pageout_page_stats(vm: MachineState, color: int) -> None:
    """``vm_pageout_page_stats`` (spec §15.6): keeps act_count meaningful."""
    vs = vm.vmstats
    if vs.v_active_count < vs.v_free_count + vs.v_cache_count + vs.v_inactive_count:
        return
    rsecs = _tunable(vm, "vm.pageout_stats_rsecs")
    if (
        vm.pd.vm_pages_needed == 0
        and not vm_paging_inactive(vm.gd)
        and vm.sched.ticks - vm.pd.uptime > rsecs * vm.sched.hz
    ):
        return
    q = PQ_ACTIVE + color
    pg = vm.pg
    cursors = vm.pd.stats_cursor
    actcmp = _tunable(vm, "vm.pageout_stats_actcmp")
    n = min(vm.pq.lcnt[q], vm.pd.vm_pageout_stats_scan)  # 0: scans nothing
    i = _cursor_next(vm, cursors, color, q)
    while i >= 0 and n > 0:
        n -= 1
        nxt = pg.next[i]
        prv = pg.prev[i]
        cursors[color] = i
        vm.pd.counter0 += 1
        if vm_page_busy_try(vm, i, True):
            i = _on_queue_or_end(vm, nxt, q)
            continue
        if pg.wire[i]:
            vm_page_unqueue_nowakeup(vm, i)
            vm_page_wakeup(vm, i)
            cursors[color] = prv  # i left: the marker stays where i was
            i = _on_queue_or_end(vm, nxt, q)
            continue
        if pg.hold[i]:
            vm_page_wakeup(vm, i)
            i = _on_queue_or_end(vm, nxt, q)
            continue
        a = 0
        if pg.flags[i] & PG_REFERENCED:
            pg.flags[i] &= ~PG_REFERENCED
            a = 1
        a += pmap_ts_referenced(vm, i)
        if a:
            act: int = pg.act[i]  # int arithmetic (u8 would refuse a sum past 255)
            pg.act[i] = min(act + 3 + a, ACT_MAX)
        elif pg.act[i] == 0:
            if vm_paging_inactive(vm.gd):
                vm_page_protect(vm, i, VM_PROT_NONE)
                vm_page_deactivate(vm, i)
            vm.pd.counter1 += 1
        else:
            pg.act[i] -= 1
            if pg.act[i] < actcmp:
                if vm_paging_inactive(vm.gd):
                    vm_page_protect(vm, i, VM_PROT_NONE)
                    vm_page_deactivate(vm, i)
                vm.pd.counter1 += 1
        vm_page_wakeup(vm, i)
        _cursor_set(vm, cursors, color, q, i, prv)
        i = _on_queue_or_end(vm, nxt, q)
    if i < 0:
        cursors[color] = -1
    if vm.pd.counter0 > _tunable(vm, "vm.pageout_stats_inalim"):
        if vm.pd.counter1 < _tunable(vm, "vm.pageout_stats_inamin"):
            if actcmp < ACT_MAX * 3 // 4:  # a user value above 48 is kept, not lowered
                vm.sysctl.values["vm.pageout_stats_actcmp"] = actcmp + 1
        elif actcmp > 0:
            vm.sysctl.values["vm.pageout_stats_actcmp"] = actcmp - 1
        vm.pd.counter0 = vm.pd.counter1 = 0


# ------------------------------------------------------------ registry wrappers


def _call_deactivate_locked(vm: MachineState, m: int) -> None:
    _deactivate_locked(vm, m, False)


def _call_list_find(vm: MachineState, basequeue: int, index: int) -> int | None:
    i = vm_page_list_find(vm, basequeue, index)
    return None if i < 0 else pfn_of(vm, i)


def _check_pageout_page(vm: MachineState, m: int, fn: str) -> None:
    _check_locked(vm, m, fn)
    if vm.pg.busy[m] & PBUSY_MASK:
        raise SimulatorRefusal(
            fn,
            "the page is soft-busied (I/O in progress): vm_pageout_page asserts nothing "
            "about it, but its scan never passes such a page (vm_page_busy_try(m, TRUE) "
            "fails on it), so the simulator refuses",
        )
    if vm.pg.queue[m] - vm.pg.pc[m] != PQ_INACTIVE:
        raise InvalidArgument(f"{fn} works on a page of an inactive queue")


def _call_pageout_page(vm: MachineState, m: int, pass_: int, flags: int, max_launder: int) -> int:
    _check_pageout_page(vm, m, "vm_pageout_page")
    return vm_pageout_page(vm, m, [max_launder], pass_, flags)


def _call_clean_helper(vm: MachineState, m: int, flags: int) -> int:
    _check_pageout_page(vm, m, "vm_pageout_clean_helper")
    obj = vm.vmobj.objects.get(vm.pg.obj[m]) if vm.pg.obj[m] else None
    return vm_pageout_flush(vm, vm_pageout_clean_helper(vm, m, obj, flags), flags)


def _call_scan_active(
    vm: MachineState, pass_: int, color: int, avail_quota: int, inact_quota: int
) -> int:
    _check_scan_active(vm, pass_, color, avail_quota, inact_quota)
    return vm_pageout_scan_active(vm, pass_, color, avail_quota, inact_quota)


def _check_scan_active(
    vm: MachineState, pass_: int, color: int, avail_quota: int, inact_quota: int
) -> None:
    """``vm_pageout_scan_active``'s NULL dereference, found before the scan changes
    anything: a page with no object that the scan busies (not a marker, not busy, not
    wired) gets ``actcount = 0`` and then ``switch (m->object->type)``.  This walks the
    scan's control flow without its side effects (the pages before it leave the queue
    or stay, ``delta`` and ``inact_quota`` count as in the scan) to see whether such
    a page is reached before the scan stops."""
    q = PQ_ACTIVE + color
    pg = vm.pg
    maxscan = (vm.pq.lcnt[q] + 9) // 10 + 1
    delta = 0
    anon_decline = _tunable(vm, "vm.anonmem_decline")
    file_decline = _tunable(vm, "vm.filemem_decline")
    i = _cursor_next(vm, vm.pd.active_cursor, color, q)
    while i >= 0 and maxscan > 0 and (avail_quota - delta > 0 or inact_quota > 0):
        maxscan -= 1
        nxt = _on_queue_or_end(vm, pg.next[i], q)
        busy = pg.busy[i]
        if pg.flags[i] & PG_MARKER or busy & (PBUSY_LOCKED | PBUSY_MASK) or pg.wire[i]:
            i = nxt  # skipped, or (wired) taken off the queue
            continue
        oid = pg.obj[i]
        if not oid:
            raise KernelPanic(
                "vm_pageout_scan_active",
                f"NULL pointer dereference: page {pfn_of(vm, i):#x} on the active queue "
                "has no object; with actcount 0 the scan reads m->object->type",
            )
        obj = vm.vmobj.objects[oid]
        a = 0
        if obj.ref_count:
            maps = vm.pmap.mappings.get(i, {})
            a = (1 if pg.flags[i] & PG_REFERENCED else 0) + sum(
                1 for bits in maps.values() if bits[PTE_A]
            )
            if a:
                i = nxt  # reactivated in place: no delta
                continue
        anon = obj.type in (ObjType.OBJT_DEFAULT, ObjType.OBJT_SWAP)
        act: int = pg.act[i]
        act -= min(act, anon_decline if anon else file_decline)
        if obj.ref_count == 0 or act < pass_ + 1:
            inact_quota -= 1
            delta += 1
        i = nxt


def _call_pmap_collect(vm: MachineState) -> None:
    """``pmap_collect()``: the simulated pmap keeps no reclaimable memory."""


def check_pageout_invariants(vm: MachineState) -> None:
    if vm.pd.enabled and vm.startup.boot_stage == "finished":
        th = vm.sched.threads.get(PAGEDAEMON_TID)
        if th is None or th.state == "idle":
            raise InvariantError("the pageout daemon thread is not running")


def pageout_digest_parts(vm: MachineState) -> list[Any]:
    return [
        (
            vm.pd.enabled,
            vm.pd.state,
            vm.pd.pass_,
            vm.pd.q1,
            vm.pd.q2,
            vm.pd.q3,
            vm.pd.uptime,
            tuple(vm.pd.rover),
            tuple(vm.pd.hold_cursor),
            tuple(vm.pd.stats_cursor),
            tuple(vm.pd.active_cursor),
            vm.pd.counter0,
            vm.pd.counter1,
            vm.pd.recycle_count,
            vm.pd.passes,
            vm.pd.pass_tick,
            vm.pd.tick_passes,
        )
    ]

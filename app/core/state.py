"""The state one simulated machine holds: everything the kernel keeps in globals for the
page layer, in one typed place (``MachineState``), one record per area.  The areas'
modules are functions over it; ``Machine`` (``machine.py``) adds boot, dispatch and
records.  No module-level mutable state: two machines never share anything.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .alist import Alist
from .config import MachineConfig
from .constants import (
    CNT_ACTIVE,
    CNT_CACHE,
    CNT_FREE,
    CNT_INACTIVE,
    PQ_COUNT,
    PQ_L2_SIZE,
)
from .objects import VmObject
from .pages import PageArray
from .seams import Policy
from .vmstats import CORE_METER_FIELDS, METER_FIELDS, PAGER_METER_FIELDS, VmStats

if TYPE_CHECKING:  # types of the areas' state, declared here, defined by the areas
    import numpy as np

    from app.core.pmap import Ranges

    from .kern_synch import Thread
    from .vm_page.pagestate import FakePage

#: ``cnt_offset`` of every queue header, as an index into ``VmStats.cnt`` (-1 for PQ_NONE).
QUEUE_COUNTER: Final[tuple[int, ...]] = (-1,) + tuple(
    (CNT_FREE, CNT_INACTIVE, CNT_ACTIVE, CNT_CACHE, CNT_ACTIVE)[(q - 1) // PQ_L2_SIZE]
    for q in range(1, PQ_COUNT)
)


class Cpu:
    """Per-CPU ``globaldata`` fields of this layer: the vmstats snapshot
    (``gd_vmstats``), the pending adjustments (``gd_vmstats_adj``), the event counters
    (``gd_cnt``), ``gd_quick_color`` and ``gd_vmtotal.t_rm``."""

    __slots__ = ("cpuid", "vmstats", "adj", "meter", "quick_color", "t_rm", "thread_addr")

    def __init__(self, cpuid: int, thread_addr: int) -> None:
        self.cpuid = cpuid
        self.vmstats = VmStats()
        self.adj = VmStats()
        self.meter: dict[str, int] = {name: 0 for name in METER_FIELDS}
        self.quick_color = 0
        self.t_rm = 0
        # Simulated address of the thread running on this CPU (vm_quickcolor uses it).
        self.thread_addr = thread_addr

    def state_tuple(self) -> tuple[int, ...]:
        meter = self.meter
        # The pager's counters join the tuple only once one is non-zero, so the digest of
        # a machine that never laundered a page is what it was before they existed (and
        # journals recorded then still replay to the same digests).
        pager = tuple(meter[n] for n in PAGER_METER_FIELDS)
        return (
            self.cpuid,
            *self.vmstats.state_tuple(),
            *self.adj.state_tuple(),
            *(meter[n] for n in CORE_METER_FIELDS),
            self.quick_color,
            self.t_rm,
            self.thread_addr,
            *(pager if any(pager) else ()),
        )


class Trace:
    """What one call changed: page queue moves (page index -> queue before its first move
    in the call) and notable events (wakeups, rollups, console lines).  A plain slotted
    class: one is made for every recorded call."""

    __slots__ = ("first_queue", "events", "probes")

    def __init__(
        self,
        first_queue: dict[int, int] | None = None,
        events: list[dict[str, Any]] | None = None,
        probes: list[int] | None = None,
    ) -> None:
        self.first_queue: dict[int, int] = {} if first_queue is None else first_queue
        self.events: list[dict[str, Any]] = [] if events is None else events
        self.probes = probes


# ---------------------------------------------------------------- the areas' records
# One record per area, named after the kernel file (or part of one) that keeps the globals.
# Fields carry the kernel's names; a prefix the flat state used to tell areas apart (q_,
# pd_, _hash_, pmap_) is the record's name instead.  A field without a default is set by
# boot (``boot.py`` and the area's ``_init_*``), as every kernel global is at startup;
# reading one before is an AttributeError.


@dataclass(slots=True, eq=False)
class PageQueues:
    """``vm_page.c``: the 5121 queue headers (``struct vpgqueues vm_page_queues[]``) as
    parallel lists indexed by queue, and the colour search's ``set_assoc_mask``.  Written
    by ``vm_page/queues.py`` (links, ``lcnt``, ``adds``) and ``vm_page/search.py``
    (``lastq``)."""

    head: list[int] = field(init=False)  # TAILQ_FIRST(&pl), -1 for none
    tail: list[int] = field(init=False)  # TAILQ_LAST(&pl)
    lcnt: list[int] = field(init=False)
    adds: list[int] = field(init=False)
    lastq: list[int] = field(init=False)
    set_assoc_mask: int = field(init=False)
    # the queue the last vm_page_alloc took its page from (for its explanation)
    selected_queue: int = 0


@dataclass(slots=True, eq=False)
class VmObjects:
    """``vm_object.c``: every object by id, and the next id ``vm_object_allocate`` hands
    out.  Written by ``vm_page/object.py``."""

    objects: dict[int, VmObject] = field(init=False)
    next_object_id: int = field(init=False)


@dataclass(slots=True, eq=False)
class PageHash:
    """``vm_page.c``'s page hash (``vm_page_hash``, ``vm_page_hash_size``): element
    arrays allocated by ``vm_page_startup_finish``, NULL (None) until then.  ``m``,
    ``obj``, ``pindex`` and ``ticks`` are memoryviews onto ``arrays``.  Written by
    ``vm_page/hash.py``."""

    size: int = field(init=False)  # vm_page_hash_size
    arrays: dict[str, np.ndarray[Any, Any]] | None = None
    m: memoryview | None = None
    obj: memoryview | None = None
    pindex: memoryview | None = None
    ticks: memoryview | None = None
    alloc_size: int = 0  # the size ``arrays`` were allocated for


@dataclass(slots=True, eq=False)
class Contig:
    """``vm_contig.c`` and the DMA reserve ``vm_page_startup`` sets aside: the alist of
    reserved blocks (``vm_contig_alist``), the low-memory bound and the reserve's size.
    Written by ``vm_contig.py`` (and boot)."""

    alist: Alist = field(init=False)  # vm_contig_alist
    vm_low_phys_reserved: int = field(init=False)
    vm_dma_reserved: int = field(init=False)
    verbose: int = 0  # vm_contig_verbose


@dataclass(slots=True, eq=False)
class Pageout:
    """``vm_pageout.c``: its globals (the paging requests and waiters the page layer sets,
    the tunables the daemon computes at its start, spec §4.2) and the daemon thread's loop
    state, resumable at its labelled sleeps.  Written by ``vm_pageout.py``; the requests
    also by ``vm_page/alloc.py``, ``free.py`` and ``queues.py`` (``pagedaemon_wakeup``)."""

    vm_pages_needed: int = field(init=False)
    vm_pageout_deficit: int = field(init=False)
    vm_pages_waiting: int = field(init=False)
    vm_pageout_pages_needed: int = field(init=False)
    vm_page_free_hysteresis: int = field(init=False)
    vm_max_launder: int = field(init=False)
    vm_page_max_wired: int = field(init=False)
    vm_pageout_stats_scan: int = field(init=False)
    vm_pageout_stats_ticks: int = field(init=False)
    # the daemon thread (vm_pageout_thread): its locals kept across sleeps
    enabled: bool = field(init=False)
    state: int = field(init=False)
    pass_: int = field(init=False)  # ``pass``
    q1: int = field(init=False)
    q2: int = field(init=False)
    q3: int = field(init=False)
    uptime: int = field(init=False)
    rover: list[int] = field(init=False)
    hold_cursor: list[int] = field(init=False)
    stats_cursor: list[int] = field(init=False)
    active_cursor: list[int] = field(init=False)
    counter0: int = field(init=False)
    counter1: int = field(init=False)
    recycle_count: int = field(init=False)
    passes: int = field(init=False)
    pass_tick: int = field(init=False)
    tick_passes: int = field(init=False)
    parked_at: str = field(init=False)  # the label of the sleep it is parked at


@dataclass(slots=True, eq=False)
class Sched:
    """``kern_synch.c`` and ``kern_clock.c``: threads, sleep queues (by wait channel), the
    run queue, ``ticks`` and ``hz``.  Written by ``kern_synch.py``."""

    threads: dict[int, Thread] = field(init=False)
    sleepq: dict[str, list[Thread]] = field(init=False)
    runq: deque[Thread] = field(init=False)
    sleep_seq: int = field(init=False)
    ticks: int = field(init=False)
    hz: int = field(init=False)
    # threads the tick verb resumed, for its record
    tick_resumed: list[dict[str, Any]] = field(default_factory=list)
    # Machine.call's transient CPU threads (never in ``threads``)
    idle_threads: dict[int, Thread] | None = None


@dataclass(slots=True, eq=False)
class Pmap:
    """``pmap.c`` as far as the page layer sees it: each page's mappings (page index ->
    {pmap id: PTE bits}) and which byte ranges of a page are known zeroed.  Written by
    ``pmap.py``."""

    mappings: dict[int, dict[int, list[bool]]] = field(init=False)
    mapping_count: int = field(init=False)
    page_zeroed: dict[int, Ranges] = field(init=False)


@dataclass(slots=True, eq=False)
class PageStateGlobals:
    """``vm_page.c``'s page-state globals: ``vm_page_dontneed``'s ``dnweight`` and the
    fictitious pages (``vm_page_initfake``).  Written by ``vm_page/pagestate.py``."""

    dnweight: int = field(init=False)
    fake_pages: dict[int, FakePage] = field(init=False)


@dataclass(slots=True, eq=False)
class Startup:
    """What ``vm_page_startup`` laid out (for display) and how far boot went, with the
    boot console (``dmesg.boot``).  Written by ``boot.py``."""

    boot_stage: str = field(init=False)
    boot_console: list[str] = field(init=False)
    vm_page_array_start: int = field(init=False)
    vm_page_array_end: int = field(init=False)
    minidump_bitmap: tuple[int, int] = field(init=False)


@dataclass(slots=True, eq=False)
class SysctlValues:
    """The tunables a sysctl keeps by value (``{name: value}``, the C variables behind
    ``vm.*`` leaves the code above reads through ``sysctl_value``).  Written by
    ``sysctl.py`` and ``vm_pageout.py``."""

    values: dict[str, int] = field(default_factory=dict)


#: The slot of ``CallingThread``, named by a constant so that mypy treats the base's slots
#: as unknown: its dataclass plugin would otherwise give ``MachineState`` the slots of its
#: own fields only and reject ``vm.curthread = th`` (the base's slot is real at runtime).
_CURTHREAD = "curthread"


class CallingThread:
    """``curthread``: the thread the current call runs as (``kern_synch._enter`` sets it).

    It is declared on this plain slotted base instead of among ``MachineState``'s
    dataclass fields because mypyc builds a dataclass's field annotations from the
    types' runtime objects, and ``Thread`` is defined by ``kern_synch``, which imports
    this module: it cannot be a runtime object here (the compiled core would crash on
    import).  A plain class's attribute types need no runtime object."""

    __slots__ = (_CURTHREAD,)
    curthread: Thread


@dataclass(slots=True, eq=False, repr=False)
class MachineState(CallingThread):
    """All state of one machine: every global of the layer in one typed place.  The
    areas' functions take it as their first argument (``vm``).

    The records hold each area's globals (``vm.pq.lcnt``, ``vm.pd.pass_``,
    ``vm.sched.threads`` ...); only the area a record names writes it.  Kept here directly
    is what every call touches: the machine (``config``, its seams' ``policy``, ``ncpus``,
    ``rng``, the
    ``console``), the page array (``pg``, ``first_page``, ``page_range``, ``managed``: a
    pfn argument is checked against them), the counters (``vmstats``, ``cpus``) and the
    calling context: the CPU (``cpu``, its ``gd`` and ``adj``), ``curthread`` (declared on
    the base ``CallingThread``) with its ``curthread_nice`` and ``curthread_systhread``,
    and the call's ``trace``.

    ``MachineState()`` makes the records empty; boot fills them."""

    config: MachineConfig = field(init=False)
    policy: Policy = field(init=False)  # the named seams' choices (from config.policy)
    ncpus: int = field(init=False)
    rng: random.Random = field(init=False)
    console: list[str] = field(init=False)
    # vm_page_array
    pg: PageArray = field(init=False)
    first_page: int = field(init=False)
    page_range: int = field(init=False)  # vm_page_array_size
    managed: list[tuple[int, int]] = field(init=False)  # index runs [a, b) boot gave the VM
    # vmstats: global and per CPU
    vmstats: VmStats = field(init=False)
    cpus: list[Cpu] = field(init=False)
    # the calling context
    cpu: Cpu = field(init=False)
    gd: VmStats = field(init=False)  # cpu.vmstats (gd_vmstats)
    adj: VmStats = field(init=False)  # cpu.adj (gd_vmstats_adj)
    curthread_systhread: bool = field(init=False)
    curthread_nice: int = field(init=False)
    trace: Trace | None = field(init=False)
    # the areas
    pq: PageQueues = field(default_factory=PageQueues)
    vmobj: VmObjects = field(default_factory=VmObjects)
    hash: PageHash = field(default_factory=PageHash)
    contig: Contig = field(default_factory=Contig)
    pd: Pageout = field(default_factory=Pageout)
    sched: Sched = field(default_factory=Sched)
    pmap: Pmap = field(default_factory=Pmap)
    pagestate: PageStateGlobals = field(default_factory=PageStateGlobals)
    startup: Startup = field(default_factory=Startup)
    sysctl: SysctlValues = field(default_factory=SysctlValues)

    def select_cpu(self, cpuid: int) -> None:
        """Run the following calls on ``cpuid`` (``mycpu``)."""
        cpu = self.cpus[cpuid]
        self.cpu = cpu
        self.gd = cpu.vmstats
        self.adj = cpu.adj

    def log(self, line: str) -> None:
        """A kernel console line (kprintf)."""
        self.console.append(line)
        if len(self.console) > 1000:
            del self.console[:100]
        if self.trace is not None:
            self.trace.events.append({"event": "console", "line": line})

    def event(self, name: str, **data: Any) -> None:
        if self.trace is not None:
            data["event"] = name
            self.trace.events.append(data)

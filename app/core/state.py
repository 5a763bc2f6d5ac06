"""The state one simulated machine holds: everything the kernel keeps in globals for the
page layer, in one typed class (``MachineState``).  The areas' modules are functions over
it; ``Machine`` (``machine.py``) adds boot, dispatch and records.  No module-level mutable
state: two machines never share anything.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

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
    from collections import deque

    import numpy as np

    from app.core.pmap import Ranges

    from .kern_synch import Thread
    from .vm_page.pagestate import FakePage

#: ``cnt_offset`` of every queue header, as an index into ``VmStats.cnt`` (-1 for PQ_NONE).
QUEUE_COUNTER: tuple[int, ...] = (-1,) + tuple(
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


class MachineState:
    """All state of one machine, every global of the layer in one typed place, grouped by
    the area (kernel file) that owns it.  Attributes use the kernel's names where it has
    them.  The areas' functions take this state as their first argument (``vm``); only
    the area named in a group's comment writes that group."""

    config: MachineConfig
    ncpus: int
    # the named seams' choices (seams.Policy, from config.policy)
    policy: Policy
    # vm_page_array
    pg: PageArray
    first_page: int
    page_range: int  # vm_page_array_size
    managed: list[tuple[int, int]]  # page-index runs [a, b) that boot handed to the VM
    # the 5121 queue headers (struct vpgqueues), as parallel lists
    q_head: list[int]
    q_tail: list[int]
    q_lcnt: list[int]
    q_adds: list[int]
    q_lastq: list[int]
    # vmstats
    vmstats: VmStats
    cpus: list[Cpu]
    # the calling context
    cpu: Cpu
    gd: VmStats
    adj: VmStats
    curthread_systhread: bool
    curthread_nice: int
    # objects
    objects: dict[int, VmObject]
    next_object_id: int
    # contiguous memory
    vm_contig_alist: Alist
    vm_low_phys_reserved: int
    vm_dma_reserved: int
    # searches
    set_assoc_mask: int
    # page hash (allocated by vm_page_startup_finish)
    page_hash_size: int
    # pageout daemon globals touched by this layer
    vm_pages_needed: int
    vm_pageout_deficit: int
    vm_pages_waiting: int
    vm_pageout_pages_needed: int
    vm_page_free_hysteresis: int
    # boot layout (for display)
    vm_page_array_start: int
    vm_page_array_end: int
    minidump_bitmap: tuple[int, int]
    # pageout daemon tunables computed at its start (spec §4.2)
    vm_max_launder: int
    vm_page_max_wired: int
    vm_pageout_stats_scan: int
    vm_pageout_stats_ticks: int
    sysctl_values: dict[str, int]
    # misc
    dnweight: int
    ticks: int
    hz: int
    boot_stage: str
    rng: random.Random
    console: list[str]
    boot_console: list[str]
    trace: Trace | None
    # kern_synch: threads, sleep queues, run queue
    threads: dict[int, Thread]
    sleepq: dict[str, list[Thread]]
    runq: deque[Thread]
    sleep_seq: int
    curthread: Thread
    _tick_resumed: list[dict[str, Any]] = []  # threads the tick verb resumed, for its record
    _idle_threads: dict[int, Thread] | None = None  # Machine.call's transient CPU threads
    # vm_page_alloc
    _selected_queue: int = 0
    # pmap: mappings and zeroed ranges
    pmap_mappings: dict[int, dict[int, list[bool]]]
    pmap_mapping_count: int
    page_zeroed: dict[int, Ranges]
    # vm_page/pagestate: fake pages
    fake_pages: dict[int, FakePage]
    # the page hash (vm_page_hash_enter), allocated by vm_page_startup_finish
    _hash_arrays: dict[str, np.ndarray[Any, Any]] | None = None
    _hash_m: memoryview | None = None
    _hash_obj: memoryview | None = None
    _hash_pindex: memoryview | None = None
    _hash_ticks: memoryview | None = None
    _hash_alloc_size: int = 0
    # vm_contig
    vm_contig_verbose: int = 0
    # the pageout daemon (vm_pageout.c), resumable at its labelled sleeps
    pd_enabled: bool
    pd_state: int
    pd_pass: int
    pd_q1: int
    pd_q2: int
    pd_q3: int
    pd_uptime: int
    pd_rover: list[int]
    pd_hold_cursor: list[int]
    pd_stats_cursor: list[int]
    pd_active_cursor: list[int]
    pd_counter0: int
    pd_counter1: int
    pd_recycle_count: int
    pd_passes: int
    pd_pass_tick: int
    pd_tick_passes: int
    pd_parked_at: str

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

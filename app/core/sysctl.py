"""The ``vm.*`` sysctls of the page layer (spec §16.1 ``vm_page.c``, §16.2 ``vm_pageout.c``,
§16.3 ``vm_meter.c``): names, C types, read-only / read-write flags, units, descriptions
and where each value lives on a machine.

The table (``SYSCTLS``) is immutable module data; every value lives on the machine:

* ``vm_meter.c`` thresholds (``vm.v_free_min`` ...) and the ``vm.stats.vm.*`` mirrors
  read and write the **global** ``m.vmstats``.  A write goes straight into the global
  structure, as ``SYSCTL_*(&vmstats.field)`` does: nothing recomputes the thresholds
  derived from it, and the per-CPU snapshots ``m.cpus[c].vmstats`` (which the paging
  predicates read) only see it at the next rollup (``vmstats_rollup`` refreshes the
  calling CPU's snapshot, the hardclock every CPU's).
* ``vm.stats.vm.v_free_count`` and the other queue counters read the global vmstats as it
  stands (not rolled up first, like the kernel's plain ``SYSCTL_*`` on ``&vmstats``): they
  may lag the per-CPU pending adjustments by up to a tick.
* the per-CPU event counters (``vm.stats.vm.v_tfree`` ...) are summed over every CPU's
  ``gd_cnt`` into a ``u_int`` (wrapping, as the kernel's summing handler does).
* the pageout tunables the simulator's code already reads keep their machine attributes:
  ``vm.page_free_hysteresis`` is ``m.pd.vm_page_free_hysteresis`` (read by
  ``vm_page_free_wakeup``), ``vm.max_launder`` / ``vm.pageout_stats_scan`` /
  ``vm.pageout_stats_ticks`` are ``m.pd.vm_max_launder`` / ``m.pd.vm_pageout_stats_scan`` /
  ``m.pd.vm_pageout_stats_ticks`` (0 until the pageout daemon starts, i.e. on a machine booted
  with ``boot_stage='early'``; the daemon's start fills in ``physmem/256 + 16``,
  ``max(16, v_free_count/1024/16)`` and ``hz/10``).
* every other tunable lives in ``m.sysctl.values`` (``{name: value}``), created with the
  §16.2 defaults by ``ensure_sysctl_state(m)``.  The pageout daemon and the page hash
  read them from there (``sysctl_value(m, "vm.page_hash_vnode_only")``).

Public surface: ``sysctl_list``, ``sysctl_get``, ``sysctl_set``, ``format_sysctl``,
``format_sysctl_all``, ``loader_tunables``, ``ensure_sysctl_state``, ``sysctl_value``.
Every refusal is an ``InvalidArgument`` raised before anything changes.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from .constants import ACT_DECLINE
from .errors import InvalidArgument
from .state import MachineState
from .vmstats import METER_FIELDS

CType = Literal["int", "u_int", "long", "u_long"]
Getter = Callable[[MachineState], int]
Setter = Callable[[MachineState, int], None]

#: The value range of each C type (x86_64: int 32 bits, long 64 bits).
CTYPE_RANGE: dict[str, tuple[int, int]] = {
    "int": (-(1 << 31), (1 << 31) - 1),
    "u_int": (0, (1 << 32) - 1),
    "long": (-(1 << 63), (1 << 63) - 1),
    "u_long": (0, (1 << 64) - 1),
}

_U_INT_MASK = (1 << 32) - 1


@dataclass(frozen=True)
class Sysctl:
    """One sysctl leaf: ``SYSCTL_INT/UINT/LONG/ULONG(...)`` or a ``SYSCTL_PROC``.

    ``setter`` is ``None`` for a read-only (``CTLFLAG_RD``) sysctl.  ``source`` names the
    kernel file that declares it; ``confidence`` is the spec's tag (``V``, ``I``, ``U``).
    """

    name: str
    ctype: CType
    unit: str
    description: str
    getter: Getter
    setter: Setter | None
    source: str
    confidence: str

    @property
    def writable(self) -> bool:
        return self.setter is not None

    def as_dict(self, m: MachineState) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.ctype,
            "writable": self.writable,
            "unit": self.unit,
            "description": self.description,
            "value": self.getter(m),
            "source": self.source,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class LoaderTunable:
    """A ``TUNABLE_*`` read from the loader environment at boot (``/boot/loader.conf``)."""

    name: str
    ctype: CType
    unit: str
    description: str
    also_sysctl: bool


# ------------------------------------------------------------------ machine-held values
#: Defaults of the tunables kept in ``m.sysctl.values`` (spec §16.1, §16.2).
TUNABLE_DEFAULTS: dict[str, int] = {
    "vm.page_hash_vnode_only": 0,
    "vm.anonmem_decline": ACT_DECLINE,
    "vm.filemem_decline": 2,
    "vm.queue_idle_perc": 20,
    "vm.emerg_launder": 100,
    "vm.pageout_stats_actcmp": 0,
    "vm.pageout_stats_inamin": 16,
    "vm.pageout_stats_inalim": 4096,
    "vm.pageout_stats_rsecs": 300,
    "vm.pageout_memuse_mode": 2,
    "vm.pageout_allow_active": 1,
    "vm.pageout_debug": 0,
    "vm.swap_enabled": 1,
    "vm.defer_swapspace_pageouts": 0,
    "vm.disable_swapspace_pageouts": 0,
    "vm.pageout_lock_miss": 0,
}


def ensure_sysctl_state(m: MachineState) -> dict[str, int]:
    """Create ``m.sysctl.values`` with the default of every tunable it holds (idempotent:
    existing values are kept, missing ones added) and return it."""
    values = m.sysctl.values
    for name, default in TUNABLE_DEFAULTS.items():
        values.setdefault(name, default)
    return values


def sysctl_value(m: MachineState, name: str) -> int:
    """The current value of a tunable kept in ``m.sysctl.values`` (what kernel code reads
    from the C variable behind the sysctl), e.g. ``vm.page_hash_vnode_only``."""
    if name not in TUNABLE_DEFAULTS:
        raise InvalidArgument(f"{name} is not a tunable held in sysctl.values")
    return ensure_sysctl_state(m)[name]


def _tunable(name: str) -> tuple[Getter, Setter]:
    def get(m: MachineState) -> int:
        return ensure_sysctl_state(m)[name]

    def put(m: MachineState, value: int) -> None:
        ensure_sysctl_state(m)[name] = value

    return get, put


def _attr(attr: str) -> tuple[Getter, Setter]:
    # A field of the pageout daemon's record.  The daemon's start assigns these; before it
    # (boot_stage 'early') the C variables are still 0.
    def get(m: MachineState) -> int:
        value: int = getattr(m.pd, attr)
        return value

    def put(m: MachineState, value: int) -> None:
        setattr(m.pd, attr, value)

    return get, put


def _vmstats(field: str) -> tuple[Getter, Setter]:
    def get(m: MachineState) -> int:
        return m.vmstats.get(field)

    def put(m: MachineState, value: int) -> None:
        m.vmstats.set(field, value)

    return get, put


def _meter_sum(field: str) -> Getter:
    def get(m: MachineState) -> int:
        return sum(cpu.meter[field] for cpu in m.cpus) & _U_INT_MASK

    return get


def _zero(m: MachineState) -> int:
    return 0


def _dma_reserved(m: MachineState) -> int:
    return m.contig.vm_dma_reserved


def _dma_free_pages(m: MachineState) -> int:
    return m.contig.alist.bl_free


# ------------------------------------------------------------------ the table
# Rows: (name, C type, unit, description).  Where each value lives is decided by name:
# ``_ATTR_BACKED`` -> a machine attribute, ``TUNABLE_DEFAULTS`` -> ``m.sysctl.values``,
# ``vm.v_*`` / ``vm.stats.vm.*`` -> the global vmstats or the per-CPU meters.
Row = tuple[str, CType, str, str]

_PAGE_C = "vm_page.c"
_PAGEOUT_C = "vm_pageout.c"
_METER_C = "vm_meter.c"

_PAGE_ROWS: tuple[Row, ...] = (
    ("vm.dma_reserved", "u_long", "bytes", "Memory reserved for DMA"),
    # The source gives this one the same description as vm.dma_reserved (spec §16.1).
    ("vm.dma_free_pages", "u_int", "pages", "Memory reserved for DMA"),
    ("vm.page_hash_vnode_only", "int", "boolean", "Only enter OBJT_VNODE pages in the page hash"),
)

# Descriptions: the kernel's own strings where vm_pageout.c gives one (anonmem_decline,
# filemem_decline, page_free_hysteresis, max_launder, emerg_launder, memuse_mode,
# allow_active, debug, swap_enabled, the swapspace pair, lock_miss, max_wired), otherwise
# the meaning the spec (§16.2) gives.
_PAGEOUT_ROWS: tuple[Row, ...] = (
    ("vm.anonmem_decline", "u_int", "act_count", "active->inactive anon memory"),
    ("vm.filemem_decline", "int", "act_count", "active->inactive file cache"),
    ("vm.page_free_hysteresis", "int", "pages", "Free more pages than the minimum required"),
    ("vm.queue_idle_perc", "int", "percent", "Page queue idle percentage (declared, unused)"),
    ("vm.max_launder", "int", "pages", "Limit dirty flushes in pageout"),
    ("vm.emerg_launder", "int", "pages", "Emergency pager minimum"),
    ("vm.pageout_stats_actcmp", "int", "act_count", "Stats-scan deactivation act_count (0..48)"),
    ("vm.pageout_stats_inamin", "int", "pages", "Stats-scan deactivations wanted per window"),
    ("vm.pageout_stats_inalim", "int", "pages", "Pages in a stats-scan adaptation window"),
    ("vm.pageout_stats_ticks", "int", "ticks", "Pageout idle wake-up interval (0: hz/10)"),
    ("vm.pageout_stats_scan", "int", "pages", "Pages per stats scan (0: max(16, free/16384))"),
    ("vm.pageout_stats_rsecs", "long", "seconds", "Stats scans continue this long after paging"),
    ("vm.pageout_memuse_mode", "int", "mode", "memoryuse resource mode"),
    ("vm.pageout_allow_active", "int", "boolean", "allow inactive+active"),
    ("vm.pageout_debug", "int", "count", "debug pageout pages (count)"),
    ("vm.swap_enabled", "int", "boolean", "Enable entire process swapout"),
    ("vm.defer_swapspace_pageouts", "int", "boolean", "Give preference to dirty pages in mem"),
    ("vm.disable_swapspace_pageouts", "int", "boolean", "Disallow swapout of dirty pages"),
    ("vm.pageout_lock_miss", "int", "count", "vget() lock misses during pageout"),
    # vm_page_max_wired: v_free_count / 3 when the pageout daemon starts (0 before)
    ("vm.max_wired", "int", "pages", "System-wide limit to wired page count"),
)

# §16.3 [I]: the vmstats fields are ``long`` in the current struct (spec §4.1), so their
# sysctls are taken to be ``long``; v_page_size is the struct's one ``u_int``.  The
# per-CPU event counters are ``u_int`` fields of ``struct vmmeter``, described by the
# meaning ``sys/vmmeter.h`` gives each field.  Provenance: the four ``vm.v_paging_*``
# names are [U] (from secondary docs, not seen in source; their ``confidence`` says so),
# the rest [I] (the 2017-era vm_meter.c).
_METER_ROWS: tuple[Row, ...] = (
    ("vm.v_free_min", "u_long", "pages", "Minimum number of free pages desired"),
    ("vm.v_free_target", "u_long", "pages", "Number of free pages desired"),
    ("vm.v_free_reserved", "u_long", "pages", "Free pages reserved against deadlock"),
    ("vm.v_inactive_target", "u_long", "pages", "Number of inactive pages desired"),
    ("vm.v_pageout_free_min", "u_long", "pages", "Free pages kept for the pageout daemon"),
    ("vm.v_free_severe", "u_long", "pages", "Severe free-page shortage threshold"),
    ("vm.v_paging_wait", "long", "pages", "Allocating threads wait below this"),
    ("vm.v_paging_start", "long", "pages", "The pageout daemon starts below this"),
    ("vm.v_paging_target1", "long", "pages", "First paging target"),
    ("vm.v_paging_target2", "long", "pages", "Second paging target"),
    ("vm.stats.vm.v_page_size", "u_int", "bytes", "Page size in bytes"),
    ("vm.stats.vm.v_page_count", "long", "pages", "Total number of pages in the system"),
    ("vm.stats.vm.v_free_reserved", "long", "pages", "Free pages reserved against deadlock"),
    ("vm.stats.vm.v_free_target", "long", "pages", "Number of free pages desired"),
    ("vm.stats.vm.v_free_min", "long", "pages", "Minimum number of free pages desired"),
    ("vm.stats.vm.v_free_count", "long", "pages", "Number of free pages"),
    ("vm.stats.vm.v_wire_count", "long", "pages", "Number of wired pages"),
    ("vm.stats.vm.v_active_count", "long", "pages", "Number of active pages (PQ_HOLD included)"),
    ("vm.stats.vm.v_inactive_target", "long", "pages", "Number of inactive pages desired"),
    ("vm.stats.vm.v_inactive_count", "long", "pages", "Number of inactive pages"),
    ("vm.stats.vm.v_cache_count", "long", "pages", "Number of pages on the cache queue"),
    ("vm.stats.vm.v_pageout_free_min", "long", "pages", "Free pages kept for the pageout daemon"),
    ("vm.stats.vm.v_interrupt_free_min", "long", "pages", "Free pages kept for interrupts"),
    ("vm.stats.vm.v_vm_faults", "u_int", "count", "Number of address memory faults"),
    ("vm.stats.vm.v_cow_faults", "u_int", "count", "Number of copy-on-writes"),
    ("vm.stats.vm.v_cow_optim", "u_int", "count", "Number of optimized copy-on-writes"),
    ("vm.stats.vm.v_zfod", "u_int", "count", "Pages zero filled on demand"),
    ("vm.stats.vm.v_ozfod", "u_int", "count", "Optimized zero fill pages"),
    ("vm.stats.vm.v_swapin", "u_int", "count", "Swap pager pageins"),
    ("vm.stats.vm.v_swapout", "u_int", "count", "Swap pager pageouts"),
    ("vm.stats.vm.v_swappgsin", "u_int", "pages", "Swap pager pages paged in"),
    ("vm.stats.vm.v_swappgsout", "u_int", "pages", "Swap pager pages paged out"),
    ("vm.stats.vm.v_vnodein", "u_int", "count", "Vnode pager pageins"),
    ("vm.stats.vm.v_vnodeout", "u_int", "count", "Vnode pager pageouts"),
    ("vm.stats.vm.v_vnodepgsin", "u_int", "pages", "Vnode pager pages paged in"),
    ("vm.stats.vm.v_vnodepgsout", "u_int", "pages", "Vnode pager pages paged out"),
    ("vm.stats.vm.v_intrans", "u_int", "count", "Intransit blocking page faults"),
    ("vm.stats.vm.v_reactivated", "u_int", "count", "Number of pages reactivated from free list"),
    ("vm.stats.vm.v_pdwakeups", "u_int", "count", "Number of times daemon has awaken from sleep"),
    ("vm.stats.vm.v_pdpages", "u_int", "pages", "Number of pages analyzed by daemon"),
    ("vm.stats.vm.v_dfree", "u_int", "pages", "Pages freed by daemon"),
    ("vm.stats.vm.v_pfree", "u_int", "pages", "Pages freed by exiting processes"),
    ("vm.stats.vm.v_tfree", "u_int", "pages", "Total pages freed"),
    ("vm.stats.vm.v_forks", "u_int", "count", "Number of fork() calls"),
    ("vm.stats.vm.v_vforks", "u_int", "count", "Number of vfork() calls"),
    ("vm.stats.vm.v_rforks", "u_int", "count", "Number of rfork() calls"),
    ("vm.stats.vm.v_kthreads", "u_int", "count", "Number of fork() calls by kernel"),
    ("vm.stats.vm.v_forkpages", "u_int", "pages", "Number of VM pages affected by fork()"),
    ("vm.stats.vm.v_vforkpages", "u_int", "pages", "Number of VM pages affected by vfork()"),
    ("vm.stats.vm.v_rforkpages", "u_int", "pages", "Number of VM pages affected by rfork()"),
    (
        "vm.stats.vm.v_kthreadpages",
        "u_int",
        "pages",
        "Number of VM pages affected by fork() by kernel",
    ),
    # v_ppwakeups counts the vm_wait sleepers woken (vm_page_free_wakeup's wakeup of
    # &vmstats.v_free_count), not busy-page waiters
    ("vm.stats.vm.v_ppwakeups", "u_int", "count", "Wakeups on processes stalled on VM"),
)

#: ``struct vmmeter`` fields this layer never fills (faults, page-ins, forks: the work of
#: other kernel files): their sysctls read 0.
_UNFILLED_METER = frozenset(
    {
        "v_vm_faults",
        "v_cow_faults",
        "v_cow_optim",
        "v_zfod",
        "v_ozfod",
        "v_swapin",
        "v_swappgsin",
        "v_vnodein",
        "v_vnodepgsin",
        "v_intrans",
        "v_forks",
        "v_vforks",
        "v_rforks",
        "v_kthreads",
        "v_forkpages",
        "v_vforkpages",
        "v_rforkpages",
        "v_kthreadpages",
    }
)

#: Tunables whose C variable is a field of the pageout daemon's record (``m.pd``) the
#: simulator's code already reads.
_ATTR_BACKED: dict[str, str] = {
    "vm.page_free_hysteresis": "vm_page_free_hysteresis",
    "vm.max_launder": "vm_max_launder",
    "vm.pageout_stats_ticks": "vm_pageout_stats_ticks",
    "vm.pageout_stats_scan": "vm_pageout_stats_scan",
    "vm.max_wired": "vm_page_max_wired",
}
_READ_ONLY = frozenset({"vm.dma_reserved", "vm.dma_free_pages", "vm.pageout_lock_miss"})
_FIXED_GETTERS: dict[str, Getter] = {
    "vm.dma_reserved": _dma_reserved,
    "vm.dma_free_pages": _dma_free_pages,
}
_STATS_PREFIX: Final = "vm.stats.vm."


def _build(row: Row, source: str) -> Sysctl:
    name, ctype, unit, description = row
    get: Getter
    put: Setter | None
    if name in _FIXED_GETTERS:
        get, put = _FIXED_GETTERS[name], None
    elif name in _ATTR_BACKED:
        get, put = _attr(_ATTR_BACKED[name])
    elif name in TUNABLE_DEFAULTS:
        get, put = _tunable(name)
    elif name.startswith(_STATS_PREFIX):
        field = name.removeprefix(_STATS_PREFIX)
        if field in _UNFILLED_METER:
            get = _zero
        elif field in METER_FIELDS:
            get = _meter_sum(field)
        else:
            get = _vmstats(field)[0]
        put = None
    else:
        get, put = _vmstats(name.removeprefix("vm."))
    if name in _READ_ONLY:
        put = None
    if source == _METER_C:
        confidence = "U" if name.startswith("vm.v_paging_") else "I"
    elif name == "vm.max_wired":
        confidence = "I"  # seen in an older vm_pageout.c, not in the one the spec read
    else:
        confidence = "V"
    return Sysctl(name, ctype, unit, description, get, put, source, confidence)


#: Every sysctl, in declaration order (vm_page.c, vm_pageout.c, vm_meter.c).
SYSCTLS: tuple[Sysctl, ...] = (
    tuple(_build(row, _PAGE_C) for row in _PAGE_ROWS)
    + tuple(_build(row, _PAGEOUT_C) for row in _PAGEOUT_ROWS)
    + tuple(_build(row, _METER_C) for row in _METER_ROWS)
)
#: The same, by name.
SYSCTL_BY_NAME: dict[str, Sysctl] = {s.name: s for s in SYSCTLS}

#: The ``struct vmmeter`` fields, in the order of their ``vm.stats.vm.*`` sysctls.
_VMMETER_ROWS: tuple[Row, ...] = tuple(
    row
    for row in _METER_ROWS
    if row[0].startswith(_STATS_PREFIX)
    and (
        row[0].removeprefix(_STATS_PREFIX) in METER_FIELDS
        or row[0].removeprefix(_STATS_PREFIX) in _UNFILLED_METER
    )
)


def _cpu_meter(cpu: int, field: str) -> Getter:
    def get(m: MachineState) -> int:
        return m.cpus[cpu].meter[field] & _U_INT_MASK

    return get


@functools.lru_cache(maxsize=16)
def _cpu_sysctls(ncpus: int) -> tuple[Sysctl, ...]:
    """``vm.cpuN.vmmeter`` for each CPU (``vm_meter.c`` adds one per CPU at boot).  The
    kernel exports each as one opaque ``struct vmmeter`` (``vmstat -P`` reads it); here
    its fields are leaves, ``vm.cpuN.vmmeter.<field>``: that CPU's own ``gd_cnt``."""
    out: list[Sysctl] = []
    for cpu in range(ncpus):
        for name, ctype, unit, description in _VMMETER_ROWS:
            field = name.removeprefix(_STATS_PREFIX)
            get = _zero if field in _UNFILLED_METER else _cpu_meter(cpu, field)
            out.append(
                Sysctl(
                    f"vm.cpu{cpu}.vmmeter.{field}",
                    ctype,
                    unit,
                    f"{description} (CPU {cpu})",
                    get,
                    None,
                    _METER_C,
                    "I",
                )
            )
    return tuple(out)


def _all_sysctls(m: MachineState) -> tuple[Sysctl, ...]:
    return SYSCTLS + _cpu_sysctls(len(m.cpus))


#: Loader tunables of the page layer (spec §16.1).  Read at boot only.
LOADER_TUNABLES: tuple[LoaderTunable, ...] = (
    LoaderTunable(
        "vm.dma_reserved",
        "u_long",
        "bytes",
        "DMA reserve kept after boot; 0 means min(128 MiB, total/16)",
        True,
    ),
    LoaderTunable(
        "vm.contig_verbose", "int", "boolean", "Log contiguous allocations and frees", False
    ),
)

#: Names that are not integer sysctl leaves here, with the reason.
_NOT_A_SYSCTL: dict[str, str] = {
    "vm.contig_verbose": (
        "vm.contig_verbose is a loader tunable only (set in /boot/loader.conf at boot), "
        "not a sysctl"
    ),
    "vm.page_hash_debug": "vm.page_hash_debug is compiled out of the kernel",
    "vm.vmstats": "vm.vmstats is an opaque struct vmstats; read the vmstats view instead",
    "vm.vmmeter": "vm.vmmeter is an opaque struct vmmeter; read the vm.stats.vm.* counters",
    "vm.vmtotal": "vm.vmtotal is an opaque struct vmtotal, not modelled",
    "vm.v_cache_min": "vm.v_cache_min was removed from the kernel (v_cache_min no longer exists)",
    "vm.v_cache_max": "vm.v_cache_max was removed from the kernel (v_cache_max no longer exists)",
}


# ------------------------------------------------------------------ lookup
def _children(m: MachineState, prefix: str) -> list[str]:
    node = prefix + "."
    return [s.name for s in _all_sysctls(m) if s.name.startswith(node)]


def _lookup(m: MachineState, name: Any) -> Sysctl:
    if not isinstance(name, str):
        raise InvalidArgument(f"a sysctl name must be a string like 'vm.v_free_min', got {name!r}")
    sysctl = SYSCTL_BY_NAME.get(name)
    if sysctl is not None:
        return sysctl
    if name.startswith("vm.cpu"):
        for s in _cpu_sysctls(len(m.cpus)):
            if s.name == name:
                return s
        cpu = name.removeprefix("vm.cpu").split(".", 1)[0]
        if cpu.isdigit() and int(cpu) >= len(m.cpus):
            raise InvalidArgument(
                f"{name}: this machine has CPUs 0..{len(m.cpus) - 1}, so no vm.cpu{cpu}"
            )
    if name in _NOT_A_SYSCTL:
        raise InvalidArgument(_NOT_A_SYSCTL[name])
    children = _children(m, name)
    if children:
        raise InvalidArgument(
            f"{name} is a node, not a value; it holds {len(children)} sysctls "
            f"(e.g. {', '.join(children[:3])})"
        )
    close = difflib.get_close_matches(name, list(SYSCTL_BY_NAME), n=3, cutoff=0.6)
    if not name.startswith("vm.") and "vm." + name in SYSCTL_BY_NAME:
        close.insert(0, "vm." + name)
    hint = f"; did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""
    raise InvalidArgument(f"unknown sysctl {name!r}{hint}")


def _check_value(sysctl: Sysctl, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(
            f"{sysctl.name} is a {sysctl.ctype}: the value must be an integer, got {value!r}"
        )
    lo, hi = CTYPE_RANGE[sysctl.ctype]
    if not lo <= value <= hi:
        unsigned = " (unsigned: a negative write is refused)" if lo == 0 and value < 0 else ""
        raise InvalidArgument(
            f"{value} does not fit {sysctl.name}'s C type {sysctl.ctype} ({lo} .. {hi}){unsigned}"
        )
    return value


# ------------------------------------------------------------------ public surface
def sysctl_list(m: MachineState) -> list[dict[str, Any]]:
    """Every sysctl with its current value: ``name``, ``type`` (C type), ``writable``,
    ``unit``, ``description``, ``value``, plus ``source`` (kernel file) and
    ``confidence`` (spec tag), in declaration order, then each CPU's
    ``vm.cpuN.vmmeter.*``."""
    return [s.as_dict(m) for s in _all_sysctls(m)]


def sysctl_get(m: MachineState, name: str) -> int:
    """``sysctl name``: the current value.  Unknown names, loader-only tunables and
    nodes are refused with ``InvalidArgument`` (suggesting close names)."""
    return _lookup(m, name).getter(m)


def sysctl_set(m: MachineState, name: str, value: int) -> tuple[int, int]:
    """``sysctl name=value``: write a read-write sysctl and return ``(old, new)``.
    Refused, with nothing changed, for an unknown or read-only name, a non-integer (booleans
    included) or a value outside the sysctl's C type.  No derived value is recomputed."""
    sysctl = _lookup(m, name)
    if sysctl.setter is None:
        raise InvalidArgument(f"{sysctl.name} is read-only")
    new = _check_value(sysctl, value)
    old = sysctl.getter(m)
    sysctl.setter(m, new)
    return old, new


def format_sysctl(m: MachineState, name: str) -> str:
    """One line of BSD ``sysctl`` output: ``"vm.v_free_min: 1234"`` (no newline)."""
    sysctl = _lookup(m, name)
    return f"{sysctl.name}: {sysctl.getter(m)}"


def format_sysctl_all(m: MachineState, prefix: str = "vm") -> str:
    """BSD ``sysctl <prefix>``: one ``name: value`` line (newline-terminated) for every
    sysctl at or below ``prefix`` (a node such as ``vm.stats`` or a leaf), in declaration
    order."""
    if not isinstance(prefix, str) or not _children(m, prefix):
        return format_sysctl(m, prefix) + "\n"  # a leaf, or raises the most helpful message
    return "".join(
        f"{s.name}: {s.getter(m)}\n" for s in _all_sysctls(m) if s.name.startswith(prefix + ".")
    )


def loader_tunables(m: MachineState) -> list[dict[str, Any]]:
    """The page layer's loader tunables (read-only at run time) with the value the loader
    passed: ``vm.dma_reserved`` from the machine configuration (0 = computed at boot),
    ``vm.contig_verbose`` always 0 (the simulator logs nothing extra)."""
    given = {"vm.dma_reserved": m.config.dma_reserved, "vm.contig_verbose": 0}
    return [
        {
            "name": t.name,
            "type": t.ctype,
            "unit": t.unit,
            "description": t.description,
            "value": given[t.name],
            "also_sysctl": t.also_sysctl,
        }
        for t in LOADER_TUNABLES
    ]


__all__ = [
    "CTYPE_RANGE",
    "LOADER_TUNABLES",
    "SYSCTLS",
    "SYSCTL_BY_NAME",
    "TUNABLE_DEFAULTS",
    "LoaderTunable",
    "Sysctl",
    "ensure_sysctl_state",
    "format_sysctl",
    "format_sysctl_all",
    "loader_tunables",
    "sysctl_get",
    "sysctl_list",
    "sysctl_set",
    "sysctl_value",
]

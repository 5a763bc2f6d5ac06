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
  ``vm.page_free_hysteresis`` is ``m.vm_page_free_hysteresis`` (read by
  ``vm_page_free_wakeup``), ``vm.max_launder`` / ``vm.pageout_stats_scan`` /
  ``vm.pageout_stats_ticks`` are ``m.vm_max_launder`` / ``m.vm_pageout_stats_scan`` /
  ``m.vm_pageout_stats_ticks`` (0 until the pageout daemon starts, i.e. on a machine booted
  with ``boot_stage='early'``; the daemon's start fills in ``physmem/256 + 16``,
  ``max(16, v_free_count/1024/16)`` and ``hz/10``).
* every other tunable lives in ``m.sysctl_values`` (``{name: value}``), created with the
  §16.2 defaults by ``ensure_sysctl_state(m)``.  The pageout daemon and the page hash
  read them from there (``sysctl_value(m, "vm.page_hash_vnode_only")``).

Public surface: ``sysctl_list``, ``sysctl_get``, ``sysctl_set``, ``format_sysctl``,
``format_sysctl_all``, ``loader_tunables``, ``ensure_sysctl_state``, ``sysctl_value``.
Every refusal is an ``InvalidArgument`` raised before anything changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
_VALUES_ATTR = "sysctl_values"


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
#: Defaults of the tunables kept in ``m.sysctl_values`` (spec §16.1, §16.2).
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
    """Create ``m.sysctl_values`` with the default of every tunable it holds (idempotent:
    existing values are kept, missing ones added) and return it."""
    values: dict[str, int] | None = getattr(m, _VALUES_ATTR, None)
    if values is None:
        values = {}
        setattr(m, _VALUES_ATTR, values)
    for name, default in TUNABLE_DEFAULTS.items():
        values.setdefault(name, default)
    return values


def sysctl_value(m: MachineState, name: str) -> int:
    """The current value of a tunable kept in ``m.sysctl_values`` (what kernel code reads
    from the C variable behind the sysctl), e.g. ``vm.page_hash_vnode_only``."""
    if name not in TUNABLE_DEFAULTS:
        raise InvalidArgument(f"{name} is not a tunable held in sysctl_values")
    return ensure_sysctl_state(m)[name]


def _tunable(name: str) -> tuple[Getter, Setter]:
    def get(m: MachineState) -> int:
        return ensure_sysctl_state(m)[name]

    def put(m: MachineState, value: int) -> None:
        ensure_sysctl_state(m)[name] = value

    return get, put


def _attr(attr: str) -> tuple[Getter, Setter]:
    # The pageout daemon's start assigns these; before it (boot_stage 'early') the C
    # variables are still 0.
    def get(m: MachineState) -> int:
        value: int = getattr(m, attr, 0)
        return value

    def put(m: MachineState, value: int) -> None:
        setattr(m, attr, value)

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


def _dma_reserved(m: MachineState) -> int:
    return m.vm_dma_reserved


def _dma_free_pages(m: MachineState) -> int:
    return m.vm_contig_alist.bl_free


# ------------------------------------------------------------------ the table
# Rows: (name, C type, unit, description).  Where each value lives is decided by name:
# ``_ATTR_BACKED`` -> a machine attribute, ``TUNABLE_DEFAULTS`` -> ``m.sysctl_values``,
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

_PAGEOUT_ROWS: tuple[Row, ...] = (
    ("vm.anonmem_decline", "u_int", "act_count", "act_count decline per scan, anonymous memory"),
    ("vm.filemem_decline", "int", "act_count", "act_count decline per scan, file-backed memory"),
    ("vm.page_free_hysteresis", "int", "pages", "Free pages above v_free_min before waking"),
    ("vm.queue_idle_perc", "int", "percent", "Page queue idle percentage (declared, unused)"),
    ("vm.max_launder", "int", "pages", "Laundering budget basis (0: physmem/256 + 16)"),
    ("vm.emerg_launder", "int", "pages", "Inactive shortage the emergency pager needs"),
    ("vm.pageout_stats_actcmp", "int", "act_count", "Stats-scan deactivation act_count (0..48)"),
    ("vm.pageout_stats_inamin", "int", "pages", "Stats-scan deactivations wanted per window"),
    ("vm.pageout_stats_inalim", "int", "pages", "Pages in a stats-scan adaptation window"),
    ("vm.pageout_stats_ticks", "int", "ticks", "Pageout idle wake-up interval (0: hz/10)"),
    ("vm.pageout_stats_scan", "int", "pages", "Pages per stats scan (0: max(16, free/16384))"),
    ("vm.pageout_stats_rsecs", "long", "seconds", "Stats scans continue this long after paging"),
    ("vm.pageout_memuse_mode", "int", "mode", "RSS enforcement: 0 off, 1 passive, 2/3 active"),
    ("vm.pageout_allow_active", "int", "boolean", "Launder clusters may include active pages"),
    ("vm.pageout_debug", "int", "boolean", "Pageout daemon debug prints"),
    ("vm.swap_enabled", "int", "boolean", "Allow whole-process swapout requests"),
    ("vm.defer_swapspace_pageouts", "int", "boolean", "Prefer not to page anonymous memory out"),
    ("vm.disable_swapspace_pageouts", "int", "boolean", "Never page anonymous memory out"),
    ("vm.pageout_lock_miss", "int", "count", "Vnode lock failures during pageout"),
)

# §16.3 [I]: the vmstats fields are ``long`` in the current struct (spec §4.1), so their
# sysctls are taken to be ``long``; v_page_size is the struct's one ``u_int``.  The
# per-CPU event counters are ``u_int`` fields of ``struct vmmeter``.
_UNVERIFIED = " [U: unverified name, not seen in source]"
_METER_ROWS: tuple[Row, ...] = (
    ("vm.v_free_min", "u_long", "pages", "Minimum number of free pages desired"),
    ("vm.v_free_target", "u_long", "pages", "Number of free pages desired"),
    ("vm.v_free_reserved", "u_long", "pages", "Free pages reserved against deadlock"),
    ("vm.v_inactive_target", "u_long", "pages", "Number of inactive pages desired"),
    ("vm.v_pageout_free_min", "u_long", "pages", "Free pages kept for the pageout daemon"),
    ("vm.v_free_severe", "u_long", "pages", "Severe free-page shortage threshold"),
    ("vm.v_paging_wait", "long", "pages", "Allocating threads wait below this" + _UNVERIFIED),
    ("vm.v_paging_start", "long", "pages", "The pageout daemon starts below this" + _UNVERIFIED),
    ("vm.v_paging_target1", "long", "pages", "First paging target" + _UNVERIFIED),
    ("vm.v_paging_target2", "long", "pages", "Second paging target" + _UNVERIFIED),
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
    ("vm.stats.vm.v_pdwakeups", "u_int", "count", "Pageout daemon wakeups (all CPUs)"),
    ("vm.stats.vm.v_pdpages", "u_int", "count", "Pages examined by the pageout daemon (all CPUs)"),
    ("vm.stats.vm.v_dfree", "u_int", "count", "Pages freed by the pageout daemon (all CPUs)"),
    ("vm.stats.vm.v_tfree", "u_int", "count", "Total pages freed (all CPUs)"),
    ("vm.stats.vm.v_reactivated", "u_int", "count", "Pages reactivated from cache (all CPUs)"),
    ("vm.stats.vm.v_ppwakeups", "u_int", "count", "Wakeups of busy-page waiters (all CPUs)"),
)

#: Tunables whose C variable is a machine attribute the simulator's code already reads.
_ATTR_BACKED: dict[str, str] = {
    "vm.page_free_hysteresis": "vm_page_free_hysteresis",
    "vm.max_launder": "vm_max_launder",
    "vm.pageout_stats_ticks": "vm_pageout_stats_ticks",
    "vm.pageout_stats_scan": "vm_pageout_stats_scan",
}
_READ_ONLY = frozenset({"vm.dma_reserved", "vm.dma_free_pages", "vm.pageout_lock_miss"})
_FIXED_GETTERS: dict[str, Getter] = {
    "vm.dma_reserved": _dma_reserved,
    "vm.dma_free_pages": _dma_free_pages,
}
_STATS_PREFIX = "vm.stats.vm."


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
        get = _meter_sum(field) if field in METER_FIELDS else _vmstats(field)[0]
        put = None
    else:
        get, put = _vmstats(name.removeprefix("vm."))
    if name in _READ_ONLY:
        put = None
    if source == _METER_C:
        confidence = "U" if name.startswith("vm.v_paging_") else "I"
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
def _children(prefix: str) -> list[str]:
    node = prefix + "."
    return [s.name for s in SYSCTLS if s.name.startswith(node)]


def _lookup(name: Any) -> Sysctl:
    if not isinstance(name, str):
        raise InvalidArgument(f"a sysctl name must be a string like 'vm.v_free_min', got {name!r}")
    sysctl = SYSCTL_BY_NAME.get(name)
    if sysctl is not None:
        return sysctl
    if name in _NOT_A_SYSCTL:
        raise InvalidArgument(_NOT_A_SYSCTL[name])
    children = _children(name)
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
    ``confidence`` (spec tag), in declaration order."""
    return [s.as_dict(m) for s in SYSCTLS]


def sysctl_get(m: MachineState, name: str) -> int:
    """``sysctl name``: the current value.  Unknown names, loader-only tunables and
    nodes are refused with ``InvalidArgument`` (suggesting close names)."""
    return _lookup(name).getter(m)


def sysctl_set(m: MachineState, name: str, value: int) -> tuple[int, int]:
    """``sysctl name=value``: write a read-write sysctl and return ``(old, new)``.
    Refused, with nothing changed, for an unknown or read-only name, a non-integer (booleans
    included) or a value outside the sysctl's C type.  No derived value is recomputed."""
    sysctl = _lookup(name)
    if sysctl.setter is None:
        raise InvalidArgument(f"{sysctl.name} is read-only")
    new = _check_value(sysctl, value)
    old = sysctl.getter(m)
    sysctl.setter(m, new)
    return old, new


def format_sysctl(m: MachineState, name: str) -> str:
    """One line of BSD ``sysctl`` output: ``"vm.v_free_min: 1234"`` (no newline)."""
    sysctl = _lookup(name)
    return f"{sysctl.name}: {sysctl.getter(m)}"


def format_sysctl_all(m: MachineState, prefix: str = "vm") -> str:
    """BSD ``sysctl <prefix>``: one ``name: value`` line (newline-terminated) for every
    sysctl at or below ``prefix`` (a node such as ``vm.stats`` or a leaf), in declaration
    order."""
    if isinstance(prefix, str) and prefix in SYSCTL_BY_NAME:
        return format_sysctl(m, prefix) + "\n"
    if not isinstance(prefix, str) or not _children(prefix):
        _lookup(prefix)  # raises with the most helpful message
    return "".join(f"{s.name}: {s.getter(m)}\n" for s in SYSCTLS if s.name.startswith(prefix + "."))


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

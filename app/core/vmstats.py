"""``struct vmstats``, the per-CPU ``gd_vmstats`` / ``gd_vmstats_adj`` pair, the per-CPU
event counters (``struct vmmeter``) and the paging predicates of ``vm_page2.h``.

Spec §4 and §5.  The five dynamic queue counters live in a small list ``cnt`` indexed by
``CNT_FREE .. CNT_WIRE`` so that the queue code can adjust "the counter this queue feeds"
(``cnt_offset``) without a lookup by name.
"""

from __future__ import annotations

from .constants import CNT_ACTIVE, CNT_CACHE, CNT_FREE, CNT_INACTIVE, CNT_NAMES, CNT_WIRE, PAGE_SIZE

#: Static fields of ``struct vmstats`` in the kernel's order (spec §4.1).
STATIC_FIELDS = (
    "v_page_size",
    "v_page_count",
    "v_free_severe",
    "v_free_reserved",
    "v_free_min",
    "v_free_target",
    "v_inactive_target",
    "v_paging_wait",
    "v_paging_start",
    "v_paging_target1",
    "v_paging_target2",
    "v_pageout_free_min",
    "v_interrupt_free_min",
    "v_dma_pages",
)
#: Dynamic counters, in the kernel's order (``v_dma_avail`` is not fed by a queue).
DYNAMIC_FIELDS = (
    "v_free_count",
    "v_wire_count",
    "v_active_count",
    "v_inactive_count",
    "v_cache_count",
    "v_dma_avail",
)
ALL_FIELDS = STATIC_FIELDS + DYNAMIC_FIELDS

#: ``struct vmmeter`` per-CPU event counters this layer bumps.
CORE_METER_FIELDS = (
    "v_tfree",
    "v_reactivated",
    "v_ppwakeups",
    "v_pdwakeups",
    "v_pdpages",
    "v_dfree",
)
#: The pager's counters: ``swap_pager_putpages`` / ``vnode_pager_putpages`` count each
#: write of a laundered cluster (the simulator's pager is synchronous, one write per
#: cluster); ``v_pfree`` counts pages ``vm_object_terminate`` frees, which the simulator
#: does not model, so it stays 0.
PAGER_METER_FIELDS = (
    "v_swapout",
    "v_swappgsout",
    "v_vnodeout",
    "v_vnodepgsout",
    "v_pfree",
)
METER_FIELDS = CORE_METER_FIELDS + PAGER_METER_FIELDS


class VmStats:
    """One ``struct vmstats``: the global one, a CPU's snapshot, or a CPU's pending
    adjustments (where only the counters are used)."""

    __slots__ = STATIC_FIELDS + ("cnt", "v_dma_avail")

    v_page_size: int
    v_page_count: int
    v_free_severe: int
    v_free_reserved: int
    v_free_min: int
    v_free_target: int
    v_inactive_target: int
    v_paging_wait: int
    v_paging_start: int
    v_paging_target1: int
    v_paging_target2: int
    v_pageout_free_min: int
    v_interrupt_free_min: int
    v_dma_pages: int
    cnt: list[int]
    v_dma_avail: int

    def __init__(self) -> None:
        for name in STATIC_FIELDS:
            setattr(self, name, 0)
        self.v_page_size = PAGE_SIZE
        self.cnt = [0, 0, 0, 0, 0]
        self.v_dma_avail = 0

    # Named access to the queue counters (the hot paths index ``cnt`` directly).
    @property
    def v_free_count(self) -> int:
        return self.cnt[CNT_FREE]

    @property
    def v_inactive_count(self) -> int:
        return self.cnt[CNT_INACTIVE]

    @property
    def v_active_count(self) -> int:
        return self.cnt[CNT_ACTIVE]

    @property
    def v_cache_count(self) -> int:
        return self.cnt[CNT_CACHE]

    @property
    def v_wire_count(self) -> int:
        return self.cnt[CNT_WIRE]

    def get(self, name: str) -> int:
        """A field by its kernel name."""
        if name in CNT_NAMES:
            return self.cnt[CNT_NAMES.index(name)]
        value: int = getattr(self, name)
        return value

    def set(self, name: str, value: int) -> None:
        if name in CNT_NAMES:
            self.cnt[CNT_NAMES.index(name)] = value
        else:
            setattr(self, name, value)

    def copy_from(self, other: VmStats) -> None:
        """Structure copy (``*gd_vmstats = vmstats``)."""
        for name in STATIC_FIELDS:
            setattr(self, name, getattr(other, name))
        self.cnt[:] = other.cnt
        self.v_dma_avail = other.v_dma_avail

    def as_dict(self) -> dict[str, int]:
        return {name: self.get(name) for name in ALL_FIELDS}

    def state_tuple(self) -> tuple[int, ...]:
        return tuple(self.get(name) for name in ALL_FIELDS)


def init_thresholds(vs: VmStats, free_count: int) -> None:
    """The pageout daemon's threshold initialisation (``vm_pageout_thread`` setup,
    spec §4.2).  ``P = v_page_count`` (DMA-reserve pages included), ``F`` = the global
    ``v_free_count`` at that moment."""
    pages = vs.v_page_count
    vs.v_free_min = 64 + pages // 200
    vs.v_free_reserved = vs.v_free_min * 4 // 8 + 7
    vs.v_free_severe = vs.v_free_min * 4 // 8
    vs.v_pageout_free_min = vs.v_free_min * 2 // 8 + 7
    vs.v_interrupt_free_min = vs.v_free_min * 1 // 8 + 7
    vs.v_free_target = vs.v_free_min * 2
    vs.v_paging_wait = vs.v_free_min * 2
    vs.v_paging_start = vs.v_free_min * 3
    vs.v_paging_target1 = vs.v_free_min * 4
    vs.v_paging_target2 = vs.v_free_min * 5
    vs.v_inactive_target = free_count // 16


def c_div(a: int, b: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def nice_offset(global_vs: VmStats, nice: int) -> int:
    """The extra pages ``vm_paging_min_nice(nice)`` adds to ``v_free_min``: 0 for
    ``nice == 0`` (the most lenient, like -20: a quirk), else ``(nice + 20) * d / 40`` with
    ``d = (v_paging_wait - v_free_min - 1) >> 1`` from the *global* vmstats (spec §4.3)."""
    if nice == 0:
        return 0
    d = (global_vs.v_paging_wait - global_vs.v_free_min - 1) >> 1
    if d <= 0:
        return 0
    return c_div((nice + 20) * d, 40)


# --- predicates of vm_page2.h; ``gd`` is the calling CPU's snapshot -----------------
def vm_paging_severe(gd: VmStats) -> bool:
    """``vm_paging_severe()``."""
    c = gd.cnt
    return gd.v_free_severe > c[CNT_FREE] + c[CNT_CACHE] or gd.v_free_reserved > c[CNT_FREE]


def vm_paging_min_dnc(gd: VmStats, n: int) -> bool:
    """``vm_paging_min_dnc(n)``."""
    c = gd.cnt
    return gd.v_free_min + n > c[CNT_FREE] + c[CNT_CACHE] or gd.v_free_reserved > c[CNT_FREE]


def vm_paging_min(gd: VmStats) -> bool:
    """``vm_paging_min()``."""
    return vm_paging_min_dnc(gd, 0)


def vm_paging_min_nice(gd: VmStats, global_vs: VmStats, nice: int) -> bool:
    """``vm_paging_min_nice(nice)``."""
    return vm_paging_min_dnc(gd, nice_offset(global_vs, nice))


def vm_paging_wait(gd: VmStats) -> bool:
    """``vm_paging_wait()``."""
    c = gd.cnt
    return gd.v_paging_wait > c[CNT_FREE] + c[CNT_CACHE] or gd.v_free_reserved > c[CNT_FREE]


def vm_paging_start(gd: VmStats, adj: int) -> bool:
    """``vm_paging_start(adj)``."""
    c = gd.cnt
    free = c[CNT_FREE]
    return (
        gd.v_paging_start > free + c[CNT_CACHE] + adj
        or gd.v_free_min > free + adj
        or gd.v_free_reserved > free
    )


def vm_paging_target1(gd: VmStats) -> bool:
    """``vm_paging_target1()``."""
    c = gd.cnt
    return gd.v_paging_target1 > c[CNT_FREE] + c[CNT_CACHE] or gd.v_free_reserved > c[CNT_FREE]


def vm_paging_target1_count(gd: VmStats) -> int:
    """``vm_paging_target1_count()`` (signed)."""
    c = gd.cnt
    return gd.v_paging_target1 - (c[CNT_FREE] + c[CNT_CACHE])


def vm_paging_target2(gd: VmStats) -> bool:
    """``vm_paging_target2()``."""
    c = gd.cnt
    return gd.v_paging_target2 > c[CNT_FREE] + c[CNT_CACHE] or gd.v_free_reserved > c[CNT_FREE]


def vm_paging_target2_count(gd: VmStats) -> int:
    """``vm_paging_target2_count()`` (signed)."""
    c = gd.cnt
    return gd.v_paging_target2 - (c[CNT_FREE] + c[CNT_CACHE])


def vm_paging_inactive(gd: VmStats) -> bool:
    """``vm_paging_inactive()``."""
    c = gd.cnt
    return c[CNT_FREE] + c[CNT_CACHE] + c[CNT_INACTIVE] < gd.v_free_min + gd.v_inactive_target


def vm_paging_inactive_count(gd: VmStats) -> int:
    """``vm_paging_inactive_count()``."""
    c = gd.cnt
    return (gd.v_free_min + gd.v_inactive_target) - (c[CNT_FREE] + c[CNT_CACHE] + c[CNT_INACTIVE])


PREDICATES = (
    "vm_paging_severe",
    "vm_paging_min",
    "vm_paging_wait",
    "vm_paging_start",
    "vm_paging_target1",
    "vm_paging_target2",
    "vm_paging_inactive",
)


def predicate_table(gd: VmStats) -> dict[str, bool]:
    """Every paging predicate evaluated on one CPU snapshot (for display)."""
    return {
        "vm_paging_severe": vm_paging_severe(gd),
        "vm_paging_min": vm_paging_min(gd),
        "vm_paging_wait": vm_paging_wait(gd),
        "vm_paging_start": vm_paging_start(gd, 0),
        "vm_paging_target1": vm_paging_target1(gd),
        "vm_paging_target2": vm_paging_target2(gd),
        "vm_paging_inactive": vm_paging_inactive(gd),
    }


__all__ = [
    "CNT_ACTIVE",
    "CNT_CACHE",
    "CNT_FREE",
    "CNT_INACTIVE",
    "CNT_WIRE",
]

"""Views of a machine for humans: the bodies of the GET state views, shared by the HTTP
routes and the stream so that both always say the same thing at the same seq."""

from __future__ import annotations

from typing import Any

from app.core.constants import PQ_BASES, PQ_L2_SIZE, PQ_NAMES
from app.core.machine import Machine

from .explain import explain_page

#: The queue types the visualiser shows, in the order of ``queues_view``.
QUEUE_TYPES: tuple[str, ...] = tuple(PQ_NAMES[b] for b in PQ_BASES)


def vmstats_view(m: Machine) -> dict[str, Any]:
    """Global and per-CPU vmstats and the paging predicates (``GET …/vmstats`` without
    the field help)."""
    return m.vmstats_view()


def queues_view(m: Machine) -> dict[str, list[int]]:
    """``lcnt`` of the 5 × 1024 coloured queues, one list of 1024 per queue type."""
    lcnt = m.q_lcnt
    return {PQ_NAMES[b]: lcnt[b : b + PQ_L2_SIZE] for b in PQ_BASES}


def threads_view(m: Machine) -> dict[str, Any]:
    """Threads, the wait channels they sleep on, and the simulated clock."""
    return {
        "threads": m.threads_view(),
        "channels": {c: m.waiters(c) for c in m.sleepq},
        "ticks": m.ticks,
    }


def pageout_view(m: Machine) -> dict[str, Any]:
    """The pageout daemon's state."""
    return m.pageout_view()


def page_view(m: Machine, pfn: int) -> dict[str, Any]:
    """Every field of a page, decoded, and why it can or cannot be freed or reused now.
    Raises ``InvalidArgument`` for a pfn the machine does not manage."""
    info = m.page_info(pfn)
    info["explain"] = explain_page(m, pfn)
    return info

"""Views of a machine for humans: the bodies of the GET state views, shared by the HTTP
routes and the stream so that both always say the same thing at the same seq."""

from __future__ import annotations

from typing import Any

from app.core.constants import PQ_BASES, PQ_L2_SIZE, PQ_NAMES
from app.core.machine import Machine

from . import machine_views as mv
from .explain import explain_page

#: The queue types the visualiser shows, in the order of ``queues_view``.
QUEUE_TYPES: tuple[str, ...] = tuple(PQ_NAMES[b] for b in PQ_BASES)


def vmstats_view(m: Machine) -> dict[str, Any]:
    """Global and per-CPU vmstats and the paging predicates (``GET …/vmstats`` without
    the field help)."""
    return mv.vmstats_view(m)


def queues_view(m: Machine) -> dict[str, list[int]]:
    """``lcnt`` of the 5 × 1024 coloured queues, one list of 1024 per queue type."""
    lcnt = m.pq.lcnt
    return {PQ_NAMES[b]: lcnt[b : b + PQ_L2_SIZE] for b in PQ_BASES}


def threads_view(m: Machine) -> dict[str, Any]:
    """Threads, the wait channels they sleep on, and the simulated clock."""
    return {
        "threads": mv.threads_view(m),
        "channels": {c: mv.waiters(m, c) for c in m.sched.sleepq},
        "ticks": m.sched.ticks,
    }


def pageout_view(m: Machine) -> dict[str, Any]:
    """The pageout daemon's state."""
    return mv.pageout_view(m)


def page_view(m: Machine, pfn: int) -> dict[str, Any]:
    """Every field of a page, decoded, and why it can or cannot be freed or reused now.
    Raises ``InvalidArgument`` for a pfn the machine does not manage."""
    info = mv.page_info(m, pfn)
    info["explain"] = explain_page(m, pfn)
    return info


def topology_view(m: Machine) -> dict[str, Any]:
    """The CPU topology as the kernel's probe gives it (``cpu_topology_phys_ids``,
    ``_core_ids``, ``_ht_ids``), each CPU's socket/core/thread, and the memory affinity
    ranges with the socket ``vm_numa_organize`` files them under (``physid %
    phys_ids``) and the page colours that socket owns (spec §3.1).

    Without a probed topology every CPU is its own core of socket 0 and NUMA
    organisation does nothing (``phys_ids <= 1``)."""
    cfg = m.config
    topo = cfg.topology
    sockets, cores, threads = (topo.sockets, topo.cores, topo.threads) if topo else (1, m.ncpus, 1)
    cpus = []
    for cpu in range(m.ncpus):
        socket, core, thread = topo.ids_of(cpu) if topo else (0, cpu, 0)
        cpus.append({"cpu": cpu, "socket": socket, "core": core, "thread": thread})
    organized = topo is not None and sockets > 1
    socket_mod = PQ_L2_SIZE // sockets
    ranges = []
    for r in cfg.numa_ranges():
        socket = r.socket % sockets
        ranges.append(
            {
                "base": r.base,
                "size": r.size,
                "physid": r.socket,
                "socket": socket,
                # the colours [first, last] this range's pages are recoloured into
                "colors": [socket * socket_mod, (socket + 1) * socket_mod - 1]
                if organized
                else None,
            }
        )
    return {
        "probed": topo is not None,
        "sockets": sockets,
        "cores": cores,
        "threads": threads,
        "cpus": cpus,
        "numa": ranges,
        "numa_organized": organized,
    }


def console_view(m: Machine) -> dict[str, Any]:
    """The kernel console: the boot messages (``dmesg.boot``) and the message buffer's
    last lines (at most 1000), oldest first."""
    return {"boot": list(m.startup.boot_console), "lines": list(m.console)}

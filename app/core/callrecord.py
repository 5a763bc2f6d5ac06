"""A call's record: what one call changed, for the people watching — the pages it moved
between queues, the counters that changed and the events it logged.  ``Machine.call``
takes a ``counter_snapshot`` before the call and makes the record from it and the call's
``Trace`` after."""

from __future__ import annotations

from typing import Any, Final

from app.core.constants import CNT_NAMES, PQ_COUNT
from app.core.registry import queue_name
from app.core.state import MachineState, Trace

#: The counters a record compares: global vmstats, the CPU's gd_vmstats_adj and
#: gd_vmstats (five counts each) and its gd_cnt's values (in the dict's own order: no
#: call adds a key, so the order after the call is the same).
Before = tuple[list[int], list[int], list[int], list[int]]

_QUEUE_NAMES: Final = tuple(queue_name(q) for q in range(PQ_COUNT))


# Final: the compiled core reads them without a lookup
_C0: Final = CNT_NAMES[0]
_C1: Final = CNT_NAMES[1]
_C2: Final = CNT_NAMES[2]
_C3: Final = CNT_NAMES[3]
_C4: Final = CNT_NAMES[4]

#: Per CPU id: the names of its three counter groups in a record (made once per CPU).
_CPU_GROUPS: Final[dict[int, tuple[str, str, str]]] = {}


def _cpu_groups(cpuid: int) -> tuple[str, str, str]:
    groups = _CPU_GROUPS.get(cpuid)
    if groups is None:
        groups = _CPU_GROUPS[cpuid] = (
            f"cpu{cpuid}.gd_vmstats_adj",
            f"cpu{cpuid}.gd_vmstats",
            f"cpu{cpuid}.gd_cnt",
        )
    return groups


def _delta(old: list[int], new: list[int]) -> dict[str, int]:
    """The five page counts that differ, by name (unrolled: this runs for every record)."""
    out: dict[str, int] = {}
    if new[0] != old[0]:
        out[_C0] = new[0] - old[0]
    if new[1] != old[1]:
        out[_C1] = new[1] - old[1]
    if new[2] != old[2]:
        out[_C2] = new[2] - old[2]
    if new[3] != old[3]:
        out[_C3] = new[3] - old[3]
    if new[4] != old[4]:
        out[_C4] = new[4] - old[4]
    return out


def counter_snapshot(vm: MachineState) -> Before:
    """The counters a record reports, before the call: the global and the current
    CPU's five page counts (vmstats, gd_vmstats_adj, gd_vmstats) and the CPU's event
    counters (gd_cnt)."""
    cpu = vm.cpu
    return (vm.vmstats.cnt[:], cpu.adj.cnt[:], cpu.vmstats.cnt[:], list(cpu.meter.values()))


def make_record(vm: MachineState, trace: Trace, before: Before) -> dict[str, Any]:
    """The record of the call ``before`` was taken for: each page's queue move (from
    its queue before its first move to where it is now), the counters that changed
    (global vmstats and the current CPU's gd_vmstats_adj, gd_vmstats and gd_cnt) and the
    events the call logged."""
    queue = vm.pg.queue
    first = vm.first_page
    names = _QUEUE_NAMES
    moves = []
    for i, q0 in trace.first_queue.items():
        moves.append({"pfn": first + i, "from": names[q0], "to": names[queue[i]]})
    g0, a0, s0, m0 = before
    cpu = vm.cpu
    counters: dict[str, dict[str, int]] = {}
    new = vm.vmstats.cnt
    if new != g0:
        counters["vmstats"] = _delta(g0, new)
    adj_cnt, gd_cnt = cpu.adj.cnt, cpu.vmstats.cnt
    meter = cpu.meter
    m1 = list(meter.values())
    if adj_cnt != a0 or gd_cnt != s0 or m1 != m0:
        adj_name, gd_name, cnt_name = _cpu_groups(cpu.cpuid)
        if adj_cnt != a0:
            counters[adj_name] = _delta(a0, adj_cnt)
        if gd_cnt != s0:
            counters[gd_name] = _delta(s0, gd_cnt)
        if m1 != m0:
            changed: dict[str, int] = {}
            for k, name in enumerate(meter):
                if m1[k] != m0[k]:
                    changed[name] = m1[k] - m0[k]
            counters[cnt_name] = changed
    return {"cpu": cpu.cpuid, "moves": moves, "counters": counters, "events": trace.events}

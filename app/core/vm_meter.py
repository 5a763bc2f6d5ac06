"""``sys/vm/vm_meter.c``'s folding of the per-CPU counts (spec §1.5): ``vmstats_rollup``,
``vmstats_rollup_cpu`` and the rollup ``hardclock`` runs on every CPU each tick.  Until a
rollup, the global ``vmstats`` lags the CPUs' pending adjustments (``gd_vmstats_adj``);
``count_lag`` says how far a count a decision just read lags them."""

from __future__ import annotations

from typing import Any

from app.core.constants import CNT_NAMES
from app.core.state import MachineState


def vmstats_rollup_cpu(vm: MachineState, cpuid: int) -> None:
    """``vmstats_rollup_cpu(gd)``: move every non-zero pending adjustment of one CPU
    into the global vmstats."""
    adj = vm.cpus[cpuid].adj.cnt
    glob = vm.vmstats.cnt
    for k in range(5):
        if adj[k]:
            glob[k] += adj[k]
            adj[k] = 0


def vmstats_rollup(vm: MachineState) -> None:
    """``vmstats_rollup()``: roll up every CPU, then copy the global vmstats into the
    *calling* CPU's snapshot only (spec §5)."""
    for cpuid in range(vm.ncpus):
        vmstats_rollup_cpu(vm, cpuid)
    vm.gd.copy_from(vm.vmstats)
    vm.event("vmstats_rollup", cpu=vm.cpu.cpuid)


def hardclock_rollup(vm: MachineState) -> None:
    """What hardclock does for this layer every tick [I]: each CPU rolls up its own
    adjustments and refreshes its own snapshot."""
    for cpu in vm.cpus:
        vmstats_rollup_cpu(vm, cpu.cpuid)
    for cpu in vm.cpus:
        cpu.vmstats.copy_from(vm.vmstats)


def pending_adjustment(vm: MachineState, k: int) -> int:
    """What a rollup would add now to the global count ``CNT_NAMES[k]``: the sum of every
    CPU's pending adjustment (``gd_vmstats_adj``)."""
    return sum(cpu.adj.cnt[k] for cpu in vm.cpus)


def count_lag(vm: MachineState, k: int, read: int, where: str) -> dict[str, Any]:
    """How the count ``CNT_NAMES[k]`` that a decision just read (``read``, from
    ``where``: the global ``vmstats`` or a CPU's ``gd_vmstats`` snapshot) compares with
    the value a rollup would give now: the global count plus every CPU's pending
    adjustment.  For explanations only: reads, changes nothing."""
    folded = vm.vmstats.cnt[k] + pending_adjustment(vm, k)
    name = CNT_NAMES[k]
    note: dict[str, Any] = {
        "count": name,
        "read_from": where,
        "read": read,
        "folded": folded,
        "stale": read != folded,
        "folded_by": "vmstats_rollup (hardclock does it every tick)",
    }
    if read != folded:
        note["why"] = (
            f"{where}.{name} read {read}, but the per-CPU adjustments not yet folded in "
            f"make it {folded}: the count lags until vmstats_rollup (or the next tick's "
            "hardclock) folds them"
        )
    return note

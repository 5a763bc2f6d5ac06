"""``sys/vm/vm_meter.c``'s folding of the per-CPU counts (spec §1.5): ``vmstats_rollup``,
``vmstats_rollup_cpu`` and the rollup ``hardclock`` runs on every CPU each tick.  Until a
rollup, the global ``vmstats`` lags the CPUs' pending adjustments."""

from __future__ import annotations

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

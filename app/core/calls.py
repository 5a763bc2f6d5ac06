"""The registry's adaptors: the few callables whose user-facing shape differs from the
kernel function's (a page index returned as a pfn or null, a verb of the simulator), and the
page and object lookups arguments go through."""

from __future__ import annotations

from typing import Any

from app.core.constants import (
    PBUSY_LOCKED,
)
from app.core.ddb import ddb_command
from app.core.errors import InvalidArgument
from app.core.kern_synch import KernelGen, tick, wakeup
from app.core.objects import ObjType, VmObject
from app.core.state import MachineState
from app.core.sysctl import sysctl_get, sysctl_set
from app.core.vm_meter import vmstats_rollup
from app.core.vm_page.alloc import (
    vm_page_alloc,
    vm_page_alloczwq,
    vm_page_freezwq,
    vm_page_grab,
    vm_test_nominal,
    vm_wait,
    vm_wait_nominal,
    vm_wait_pfault,
)
from app.core.vm_page.busy import (
    vm_page_busy_try,
    vm_page_busy_wait,
    vm_page_flag_clear,
    vm_page_flag_set,
    vm_page_flash,
    vm_page_io_finish,
    vm_page_io_start,
    vm_page_sbusy_drop,
    vm_page_sbusy_hold,
    vm_page_sbusy_try,
    vm_page_sleep_busy,
    vm_page_wakeup,
)
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.object import (
    vm_object_allocate,
    vm_page_insert,
    vm_page_lookup,
    vm_page_remove,
)
from app.core.vm_page.queues import (
    pagedaemon_wakeup,
    vm_page_activate,
    vm_page_deactivate,
    vm_page_soft_activate,
    vm_page_unqueue,
    vm_page_unqueue_nowakeup,
    vm_page_unwire,
    vm_page_wire,
)
from app.core.vm_page.search import vm_get_pg_color
from app.core.vm_page2 import _check_locked

_U64_MAX = (1 << 64) - 1


def page_index(vm: MachineState, pfn: Any, what: str = "m") -> int:
    """Validate a pfn given by a user and return its page-array index."""
    if not isinstance(pfn, int) or isinstance(pfn, bool):
        raise InvalidArgument(f"{what} must be a page frame number (an integer), got {pfn!r}")
    i = pfn - vm.first_page
    if not 0 <= i < vm.page_range:
        raise InvalidArgument(
            f"pfn {pfn} ({pfn:#x}) is outside this machine's pages "
            f"({vm.first_page:#x} .. {vm.first_page + vm.page_range - 1:#x})"
        )
    for a, z in vm.managed:
        if a <= i < z:
            return i
    raise InvalidArgument(
        f"pfn {pfn:#x} is not a page the VM manages (a hole in phys_avail, the page "
        "array, the minidump bitmap, or beyond npages)"
    )


def object_by_id(vm: MachineState, oid: Any, what: str = "object") -> VmObject:
    if not isinstance(oid, int) or isinstance(oid, bool):
        raise InvalidArgument(f"{what} must be an object id (an integer), got {oid!r}")
    obj = vm.objects.get(oid)
    if obj is None:
        raise InvalidArgument(f"there is no object {oid}; create one with vm_object_allocate")
    return obj


def _pfn_or_none(vm: MachineState, i: int) -> int | None:
    return None if i < 0 else vm.first_page + i


# ---- the implementations behind the registry -----------------------------------
def _call_object_allocate(
    vm: MachineState, type: ObjType, size: int, pg_color: int | None, addr: int | None
) -> int:
    return vm_object_allocate(vm, type, size, pg_color, addr)


def _call_alloc(
    vm: MachineState, object: VmObject | None, pindex: int, page_req: int
) -> int | None:
    return _pfn_or_none(vm, vm_page_alloc(vm, object, pindex, page_req))


def _page_result(vm: MachineState, gen: KernelGen) -> KernelGen:
    """Adapt a sleeping call that returns a page index to return its pfn (or None)."""
    i = yield from gen
    return _pfn_or_none(vm, i)


def _call_grab(vm: MachineState, object: VmObject, pindex: int, flags: int) -> KernelGen:
    return _page_result(vm, vm_page_grab(vm, object, pindex, flags))


def _call_alloczwq(vm: MachineState, pindex: int, flags: int) -> KernelGen:
    return _page_result(vm, vm_page_alloczwq(vm, pindex, flags))


def _call_freezwq(vm: MachineState, m: int) -> KernelGen:
    return vm_page_freezwq(vm, m)


def _call_free(vm: MachineState, m: int) -> None:
    vm_page_free_toq(vm, m)


def _call_unqueue(vm: MachineState, m: int) -> None:
    vm_page_unqueue(vm, m)


def _call_unqueue_nowakeup(vm: MachineState, m: int) -> None:
    vm_page_unqueue_nowakeup(vm, m)


def _call_activate(vm: MachineState, m: int) -> None:
    vm_page_activate(vm, m)


def _call_soft_activate(vm: MachineState, m: int) -> None:
    vm_page_soft_activate(vm, m)


def _call_deactivate(vm: MachineState, m: int) -> None:
    vm_page_deactivate(vm, m)


def _call_busy_try(vm: MachineState, m: int, also_m_busy: bool) -> bool:
    return vm_page_busy_try(vm, m, also_m_busy)


def _call_wakeup(vm: MachineState, m: int) -> None:
    vm_page_wakeup(vm, m)


def _call_wire(vm: MachineState, m: int) -> None:
    vm_page_wire(vm, m)


def _call_unwire(vm: MachineState, m: int, activate: bool) -> None:
    if not vm.pg.busy[m] & PBUSY_LOCKED:
        _check_locked(vm, m, "vm_page_unwire")
    vm_page_unwire(vm, m, activate)


def _call_insert(vm: MachineState, m: int, object: VmObject, pindex: int) -> bool:
    return vm_page_insert(vm, m, object, pindex)


def _call_remove(vm: MachineState, m: int) -> None:
    vm_page_remove(vm, m)


def _call_lookup(vm: MachineState, object: VmObject, pindex: int) -> int | None:
    return _pfn_or_none(vm, vm_page_lookup(vm, object, pindex))


def _call_vm_wait(vm: MachineState, timo: int) -> KernelGen:
    return vm_wait(vm, timo)


def _call_vm_wait_pfault(vm: MachineState) -> KernelGen:
    return vm_wait_pfault(vm)


def _call_vm_wait_nominal(vm: MachineState) -> KernelGen:
    return vm_wait_nominal(vm)


def _call_sysctl(vm: MachineState, name: str, value: int | None) -> int:
    if value is None:
        return sysctl_get(vm, name)
    old, _new = sysctl_set(vm, name, value)
    return old


def _call_ddb(vm: MachineState, command: str) -> str:
    return ddb_command(vm, command)


def _call_tick(vm: MachineState, n: int) -> int:
    vm._tick_resumed = tick(vm, n)
    return vm.ticks


def _call_wakeup_channel(vm: MachineState, channel: str) -> int:
    n = len(vm.sleepq.get(channel, ()))
    wakeup(vm, channel)
    return n


def _call_busy_wait(vm: MachineState, m: int, also_m_busy: bool, msg: str) -> KernelGen:
    return vm_page_busy_wait(vm, m, also_m_busy, msg)


def _call_sleep_busy(vm: MachineState, m: int, also_m_busy: bool, msg: str) -> KernelGen:
    return vm_page_sleep_busy(vm, m, also_m_busy, msg)


def _call_io_start(vm: MachineState, m: int) -> None:
    vm_page_io_start(vm, m)


def _call_io_finish(vm: MachineState, m: int) -> None:
    vm_page_io_finish(vm, m)


def _call_sbusy_try(vm: MachineState, m: int) -> int:
    return vm_page_sbusy_try(vm, m)


def _call_sbusy_hold(vm: MachineState, m: int) -> None:
    vm_page_sbusy_hold(vm, m)


def _call_sbusy_drop(vm: MachineState, m: int) -> None:
    vm_page_sbusy_drop(vm, m)


def _call_flash(vm: MachineState, m: int) -> None:
    vm_page_flash(vm, m)


def _call_flag_set(vm: MachineState, m: int, bits: int) -> None:
    vm_page_flag_set(vm, m, bits)


def _call_flag_clear(vm: MachineState, m: int, bits: int) -> None:
    vm_page_flag_clear(vm, m, bits)


def _call_test_nominal(vm: MachineState) -> bool:
    return vm_test_nominal(vm)


def _call_pagedaemon_wakeup(vm: MachineState) -> None:
    pagedaemon_wakeup(vm)


def _call_rollup(vm: MachineState) -> None:
    vmstats_rollup(vm)


def _call_pg_color(vm: MachineState, cpuid: int, object: VmObject | None, pindex: int) -> int:
    return vm_get_pg_color(vm, cpuid, object, pindex)

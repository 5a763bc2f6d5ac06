"""The registry's adaptors: the few callables whose user-facing shape differs from the
kernel function's (a page index returned as a pfn or null, a verb of the simulator), and the
page and object lookups arguments go through."""

from __future__ import annotations

from typing import Any, Final

from app.core.constants import (
    PBUSY_LOCKED,
)
from app.core.errors import InvalidArgument
from app.core.kern_synch import KernelGen, tick, wakeup
from app.core.objects import VmObject
from app.core.state import MachineState
from app.core.sysctl import sysctl_get, sysctl_set
from app.core.vm_page.alloc import (
    vm_page_alloc,
    vm_page_alloczwq,
    vm_page_grab,
)
from app.core.vm_page.busy import describe_busy as describe_busy  # for the lab's explanations
from app.core.vm_page.object import (
    vm_page_lookup,
)
from app.core.vm_page.queues import (
    vm_page_unwire,
)
from app.core.vm_page2 import _check_locked

_U64_MAX: Final = (1 << 64) - 1


def page_index(vm: MachineState, pfn: Any, what: str = "m") -> int:
    """Validate a pfn given by a user and return its page-array index."""
    if not isinstance(pfn, int) or isinstance(pfn, bool):
        raise InvalidArgument(f"{what} must be a page frame number (an integer), got {pfn!r}")
    i = pfn - vm.first_page
    if not 0 <= i < vm.page_range:
        raise InvalidArgument(
            f"pfn {pfn} ({pfn:#x}) is outside this machine's pages "
            f"({vm.first_page:#x} .. {vm.first_page + vm.page_range - 1:#x})",
            kind="no-such-page",
        )
    for a, z in vm.managed:
        if a <= i < z:
            return i
    raise InvalidArgument(
        f"pfn {pfn} ({pfn:#x}) is not a page the VM manages (a hole in phys_avail, the page "
        "array, the minidump bitmap, or beyond npages)",
        kind="no-such-page",
    )


def object_by_id(vm: MachineState, oid: Any, what: str = "object") -> VmObject:
    if not isinstance(oid, int) or isinstance(oid, bool):
        raise InvalidArgument(f"{what} must be an object id (an integer), got {oid!r}")
    obj = vm.vmobj.objects.get(oid)
    if obj is None:
        raise InvalidArgument(f"there is no object {oid}; create one with vm_object_allocate")
    return obj


def _pfn_or_none(vm: MachineState, i: int) -> int | None:
    return None if i < 0 else vm.first_page + i


# ---- the implementations behind the registry -----------------------------------


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


def _call_unwire(vm: MachineState, m: int, activate: bool) -> None:
    if not vm.pg.busy[m] & PBUSY_LOCKED:
        _check_locked(vm, m, "vm_page_unwire")
    vm_page_unwire(vm, m, activate)


def _call_lookup(vm: MachineState, object: VmObject, pindex: int) -> int | None:
    return _pfn_or_none(vm, vm_page_lookup(vm, object, pindex))


def _call_sysctl(vm: MachineState, name: str, value: int | None) -> int:
    if value is None:
        return sysctl_get(vm, name)
    old, _new = sysctl_set(vm, name, value)
    return old


def _call_tick(vm: MachineState, n: int) -> int:
    vm.sched.tick_resumed = tick(vm, n)
    return vm.sched.ticks


def _call_wakeup_channel(vm: MachineState, channel: str) -> int:
    n = len(vm.sched.sleepq.get(channel, ()))
    wakeup(vm, channel)
    return n

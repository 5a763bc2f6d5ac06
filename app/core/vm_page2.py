"""TODO docstring for vm_page2"""

from __future__ import annotations

from app.core.constants import (
    PAGE_SIZE,
    PBUSY_LOCKED,
)
from app.core.errors import KernelPanic
from app.core.state import MachineState


def pfn_of(vm: MachineState, i: int) -> int:
    """Physical page number of page-array index ``i``."""
    return vm.first_page + i


def phys_addr(vm: MachineState, i: int) -> int:
    return (vm.first_page + i) * PAGE_SIZE


def _check_locked(vm: MachineState, i: int, function: str) -> None:
    if not vm.pg.busy[i] & PBUSY_LOCKED:
        raise KernelPanic(function, f"page {pfn_of(vm, i):#x} is not hard-busied (PBUSY_LOCKED)")

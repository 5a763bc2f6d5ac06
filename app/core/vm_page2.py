"""``sys/vm/vm_page2.h`` and ``vm_page.h``'s small helpers the layers below ``vm_page``
need too: ``VM_PAGE_TO_PHYS`` (``pfn_of``, ``phys_addr``) and the page lock assertion
(``_check_locked``).  Functions take page-array indices; a pfn is ``first_page + i``."""

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

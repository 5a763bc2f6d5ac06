"""The busy word (spec §9): vm_page_busy_wait, vm_page_sleep_busy, vm_page_io_start/finish, vm_page_sbusy_*, vm_page_flash, vm_page_flag_set/clear."""

from __future__ import annotations

from typing import Any

from .alloc import AllocOps


class BusyOps(AllocOps):
    def _check_area_invariants(self) -> None:
        """Invariants of the areas above the allocator; each mixin extends this."""

    def _digest_parts(self) -> list[Any]:
        """State of the areas above the allocator, for ``state_digest``; each mixin
        extends this."""
        return []

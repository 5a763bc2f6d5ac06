"""Page state (spec §8.7–8.10, §10.2, §12, §14): vm_page_cache, vm_page_try_to_cache, vm_page_try_to_free, vm_page_dontneed, vm_page_hold/unhold, valid/dirty bits, vm_page_initfake, vm_page_need_commit/clear_commit, madvise."""

from __future__ import annotations

from typing import Any

from .pmap import PmapOps


class PageStateOps(PmapOps):
    def _check_area_invariants(self) -> None:
        super()._check_area_invariants()

    def _digest_parts(self) -> list[Any]:
        return super()._digest_parts()

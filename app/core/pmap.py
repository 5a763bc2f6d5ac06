"""A simple pmap model (spec §14, §19): per-page mappings with referenced/modified bits; pmap_enter, pmap_remove, pmap_ts_referenced, pmap_is_modified, pmap_page_protect, pmap_mapped_sync, pmap_clear_reference."""

from __future__ import annotations

from typing import Any

from .busy import BusyOps


class PmapOps(BusyOps):
    def _check_area_invariants(self) -> None:
        super()._check_area_invariants()

    def _digest_parts(self) -> list[Any]:
        return super()._digest_parts()

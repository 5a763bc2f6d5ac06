"""Contiguous memory (spec §7.4–7.7): vm_page_alloc_contig, vm_page_free_contig, vm_contig_pg_alloc (contigmalloc fallback)."""

from __future__ import annotations

from typing import Any

from .pagehash import HashOps


class ContigOps(HashOps):
    def _check_area_invariants(self) -> None:
        super()._check_area_invariants()

    def _digest_parts(self) -> list[Any]:
        return super()._digest_parts()

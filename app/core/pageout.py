"""Memory pressure and the pageout daemon (spec §13, §15)."""

from __future__ import annotations

from typing import Any

from .contig import ContigOps


class PageoutOps(ContigOps):
    def _check_area_invariants(self) -> None:
        super()._check_area_invariants()

    def _digest_parts(self) -> list[Any]:
        return super()._digest_parts()

"""Who may see and drive which instance: the one seam every access decision goes through.

Today the lab is open (no accounts): everyone may do everything.  The accounts issue fills
this in; the stream and the API already ask it, so nothing else changes then.  A refusal
must look exactly like a missing instance, so that nothing leaks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import Instance


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking (anonymous in the open lab)."""

    name: str = "anonymous"


ANONYMOUS = Principal()


class Access:
    """The open policy: every principal may watch every instance."""

    def can_watch(self, principal: Principal, inst: Instance) -> bool:
        return True

"""Who may see and drive which instance: the one seam every access decision goes through.

In the open lab (no accounts) everyone is ``ANONYMOUS``, an admin-like principal, and may
do everything.  With accounts (``PAGELAB_AUTH=token``) the policy is ``accounts.can_read``
and ``accounts.can_write``, fed with the instance's owner, the owner's course and the
instance's shares.  A refusal must look exactly like a missing instance, so that nothing
leaks: callers answer ``unknown-instance`` with the same text as for a missing id.

``can_read`` may query the database (the owner's course, the shares): call it off the
event loop (``anyio.to_thread``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .accounts import Accounts, Principal, can_read, can_write

if TYPE_CHECKING:
    from .service import Instance

__all__ = ["ANONYMOUS", "Access", "Principal"]

#: the open lab's principal: owns everything it creates as "" and may do everything
ANONYMOUS = Principal(name="", role="admin", course=None, user_id=0)


class Access:
    """The policy over instances; open (everything allowed) without ``accounts``."""

    def __init__(self, accounts: Accounts | None = None) -> None:
        self.accounts = accounts

    def can_read(self, principal: Principal, inst: Instance) -> bool:
        """May ``principal`` see (read, stream, fork, export) ``inst``?  May do I/O."""
        accounts = self.accounts
        if accounts is None or principal.role == "admin" or principal.name == inst.owner:
            return True
        owner = accounts.user(inst.owner) if inst.owner else None
        course = owner.course if owner is not None else None
        # broadcasts (an instance shown read-only to a whole course) are not stored yet
        return can_read(principal, inst.owner, course, accounts.shared_with(inst.id), set())

    def can_write(self, principal: Principal, inst: Instance) -> bool:
        """May ``principal`` change (call, reset, restore, delete, share) ``inst``?"""
        return self.accounts is None or can_write(principal, inst.owner)

    def can_watch(self, principal: Principal, inst: Instance) -> bool:
        return self.can_read(principal, inst)

"""Who may see and drive which instance: the one seam every access decision goes through.

In the open lab (no accounts) everyone is ``ANONYMOUS``, an admin-like principal, and may
do everything.  With accounts (``PAGELAB_AUTH=token``) the policy is ``accounts.can_read``
and ``accounts.can_write``, fed with the instance's owner, the owner's course, the
instance's shares and the courses it is broadcast to.  A refusal must look exactly like a
missing instance, so that nothing leaks: callers answer ``unknown-instance`` with the same
text as for a missing one.

``can_read`` and ``relation`` may query the database (the owner's course, the shares, the
broadcasts): call them off the event loop (``anyio.to_thread``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .accounts import Accounts, Principal, can_read, can_write

if TYPE_CHECKING:
    from .service import Instance

__all__ = ["ANONYMOUS", "Access", "Principal", "Relation"]

#: why a principal may see an instance (``Access.relation``)
Relation = Literal["own", "admin", "shared", "broadcast", "course"]

#: the open lab's principal: owns everything it creates as "" and may do everything
ANONYMOUS = Principal(name="", role="admin", course=None, user_id=0)


class Access:
    """The policy over instances; open (everything allowed) without ``accounts``."""

    def __init__(self, accounts: Accounts | None = None) -> None:
        self.accounts = accounts

    def can_read(self, principal: Principal, inst: Instance) -> bool:
        """May ``principal`` see (read, stream, fork, export) ``inst``?  May do I/O."""
        return self.relation(principal, inst) is not None

    def relation(self, principal: Principal, inst: Instance) -> Relation | None:
        """Why ``principal`` may see ``inst`` (None: may not): it is theirs (``own``), they
        are an admin, it is shared with them, broadcast to their course, or of their
        course and they teach it.  May do I/O (the owner's course, shares, broadcasts)."""
        accounts = self.accounts
        if principal.name == inst.owner:
            return "own"
        if accounts is None or principal.role == "admin":
            return "admin"
        owner = accounts.user(inst.owner) if inst.owner else None
        course = owner.course if owner is not None else None
        shared = accounts.shared_with(inst.id)
        broadcast = accounts.broadcast_courses(inst.id)
        if not can_read(principal, inst.owner, course, shared, broadcast):
            return None
        if principal.name in shared:
            return "shared"
        if principal.course is not None and principal.course in broadcast:
            return "broadcast"
        return "course"

    def can_write(self, principal: Principal, inst: Instance) -> bool:
        """May ``principal`` change (call, reset, restore, delete, share) ``inst``?"""
        return self.accounts is None or can_write(principal, inst.owner)

    def can_watch(self, principal: Principal, inst: Instance) -> bool:
        return self.can_read(principal, inst)

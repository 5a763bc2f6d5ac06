"""Instance references: what an ``{instance_id}`` path segment may say.

* ``42``: the instance with id 42 (digits are always an id);
* ``box``: the caller's own instance named ``box`` (in the open lab: the one named
  ``box``, all instances there belong to ``""``);
* ``ann:box``: user ann's instance named ``box``; ``:box`` names the open lab's owner
  ``""`` (user names never contain ``:``, so the first ``:`` splits owner from name, and a
  name made of digits is reached as ``owner:42``).

A reference resolves to an id once per request (``resolve``, remembered on the request so
that the access guard and the route see the same instance).  Resolution leaks nothing: a
name the caller may not read answers, through the guard, exactly as a missing one, and
every message echoes only what the caller typed.
"""

from __future__ import annotations

import re
from typing import Final

from starlette.requests import HTTPConnection

from app.lab.access import Principal
from app.lab.accounts import NAME_PATTERN
from app.lab.service import Instance, Lab, LabError

#: an instance's name, as ``InstanceCreate`` accepts it
INSTANCE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: the largest id a path accepts
MAX_ID: Final = 1 << 31
#: longest reference: a user name, ':', an instance name
MAX_REF: Final = 64 + 1 + 64
REF_HELP: Final = "an id (42), the name of one of your instances (box) or owner:name (ann:box)"
_STATE_KEY: Final = "pagelab_instance_ref"


def unknown(ref: str | int) -> LabError:
    """What a refusal answers: word for word what a missing instance answers."""
    return LabError("unknown-instance", f"there is no instance {ref}")


def parse(ref: str) -> int | tuple[str | None, str]:
    """An id, or (owner, name) where owner None means the caller.  A reference that is
    neither is a 422 saying what one looks like."""
    if 0 < len(ref) <= MAX_REF and ref.isascii():
        if ref.isdigit():
            number = int(ref)
            if 1 <= number <= MAX_ID:
                return number
            raise LabError("validation", f"instance id {ref} is out of range (1 to {MAX_ID})")
        owner, colon, name = ref.partition(":")
        if not colon and INSTANCE_NAME.fullmatch(owner):
            return None, owner
        owner_ok = owner == "" or NAME_PATTERN.fullmatch(owner) is not None
        if colon and owner_ok and INSTANCE_NAME.fullmatch(name):
            return owner, name
    shown = ref if len(ref) <= MAX_REF else ref[:MAX_REF] + "…"
    raise LabError("validation", f"{shown!r} is not an instance reference: use {REF_HELP}")


def find(lab: Lab, principal: Principal, ref: str) -> Instance | None:
    """The instance ``ref`` names (None if none): no access decision here."""
    parsed = parse(ref)
    if isinstance(parsed, int):
        return lab.instances.get(parsed)
    owner, name = parsed
    if owner is None:
        owner = principal.name
    for attempt in range(2):
        for inst in list(lab.instances.values()):
            if inst.name == name and inst.owner == owner:
                return inst
        if lab.cluster is None or attempt:
            break
        lab.cluster.refresh()  # made through another API node, perhaps
    return None


def resolve(conn: HTTPConnection, principal: Principal, ref: str) -> Instance | None:
    """``find``, once per request: later callers get the instance the first one found
    (None once it is deleted), so a name re-used meanwhile is not a different check."""
    lab: Lab = conn.app.state.lab
    known: tuple[str, int | None] | None = getattr(conn.state, _STATE_KEY, None)
    if known is not None and known[0] == ref:
        return None if known[1] is None else lab.instances.get(known[1])
    inst = find(lab, principal, ref)
    setattr(conn.state, _STATE_KEY, (ref, None if inst is None else inst.id))
    return inst


def ref_of(inst: Instance, principal: Principal, owner_shown: bool) -> str:
    """The shortest reference ``principal`` can type for ``inst``: its name when it is
    theirs, ``owner:name`` when they may see its owner, else its id."""
    if inst.owner == principal.name:
        return str(inst.id) if inst.name.isdigit() else inst.name
    if owner_shown:
        return f"{inst.owner}:{inst.name}"
    return str(inst.id)

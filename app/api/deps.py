"""What every router takes: the lab (owned by the app's lifespan) and an instance, named
by a reference (``app.api.refs``: ``42``, ``box`` or ``ann:box``) and resolved to its id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.lab.service import Lab

from .auth import PrincipalDep
from .refs import MAX_REF, REF_HELP, resolve, unknown


async def get_lab(request: Request) -> Lab:
    lab: Lab = request.app.state.lab
    return lab


LabDep = Annotated[Lab, Depends(get_lab)]


async def instance_ref(
    request: Request,
    principal: PrincipalDep,
    instance_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_REF,
            description=f"the instance: {REF_HELP}",
            examples=["1", "box", "ann:box"],
        ),
    ],
) -> int:
    """The id of the instance the path names (the router's guard has checked access)."""
    inst = resolve(request, principal, instance_id)
    if inst is None:
        raise unknown(instance_id)
    return inst.id


InstanceId = Annotated[int, Depends(instance_ref)]

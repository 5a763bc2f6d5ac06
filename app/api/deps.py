"""What every router takes: the lab (owned by the app's lifespan) and an instance id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.lab.service import Lab

InstanceId = Annotated[int, Path(ge=1, le=1 << 31, description="instance id")]


async def get_lab(request: Request) -> Lab:
    lab: Lab = request.app.state.lab
    return lab


LabDep = Annotated[Lab, Depends(get_lab)]

"""The ASGI application: ``uvicorn app.main:app``.

Boots one default instance (a 1 GiB, 2-CPU teaching box) at start-up.  The complete HTTP
API arrives with the HTTP API issue; for now the server lists its instances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

from app.core.config import MachineConfig
from app.lab.instances import InstanceRegistry


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    registry = InstanceRegistry()
    registry.create("default", MachineConfig.from_size("1GiB", cpus=2, seed=1))
    app.state.registry = registry
    yield


app = FastAPI(title="PageLab", version="0.1.0", lifespan=lifespan)


@app.get("/api/v1/instances", operation_id="list_instances")
def list_instances() -> list[dict[str, Any]]:
    """Every simulated machine with its configuration and vmstats summary."""
    registry: InstanceRegistry = app.state.registry
    return [inst.view() for inst in registry.list()]


@app.get("/api/v1/instances/{instance_id}", operation_id="get_instance")
def get_instance(instance_id: int) -> dict[str, Any]:
    registry: InstanceRegistry = app.state.registry
    inst = registry.get(instance_id)
    if inst is None:
        raise HTTPException(404, f"there is no instance {instance_id}")
    return inst.view()


@app.get("/healthz", operation_id="health")
def health() -> dict[str, str]:
    return {"status": "ok"}

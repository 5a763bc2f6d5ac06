"""Instance hosts: where the lab's machines live (``docs/placements.md``).

``make_host`` picks the placement from the settings: ``inprocess`` (the default),
``workers`` (``PAGELAB_WORKERS`` local processes, instances sharded by id) or ``ray``
(host actors on a Ray cluster, ``PAGELAB_RAY_ADDRESS``; the ``[ray]`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import InstanceHost
from .inprocess import InProcessHost

if TYPE_CHECKING:
    from ..settings import Settings


def make_host(settings: Settings) -> InstanceHost:
    """The instance host the settings ask for (worker processes and actors start here)."""
    if settings.placement == "workers":
        from .workers import WorkerHost

        return WorkerHost(settings.workers)
    if settings.placement == "ray":
        from .ray_host import RayHost

        return RayHost(
            settings.workers, settings.ray_address, settings.ray_namespace, settings.cluster
        )
    return InProcessHost()


__all__ = ["InProcessHost", "InstanceHost", "make_host"]

"""The Ray placement (``PAGELAB_PLACEMENT=ray``): host actors on a Ray cluster, each
holding the machines of the instances whose id falls on it (``iid % PAGELAB_WORKERS``).

Each actor runs a ``Shard`` and answers the same messages as a worker process
(``remote.answer``), one at a time.  Ray places the actors on the cluster's nodes (one CPU
each) and restarts one that dies (``max_restarts``); the restarted actor is empty, so
the lab rebuilds the instances it held from the journal and snapshots in the shared
database on their next use, and asks the question that failed once more.  Without
``PAGELAB_RAY_ADDRESS`` a local Ray with two CPUs starts in the server's process.

Ray is an optional extra (``pip install 'pagelab[ray]'``): it is imported only here.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
import uuid
from typing import Any

import structlog

from .base import HostLost
from .remote import RemoteHost, answer, unwrap
from .shard import Shard

log = structlog.get_logger(__name__)

#: How often Ray restarts a host actor that died (-1: without limit).
MAX_RESTARTS = -1
#: Longest the lab waits for Ray to restart a host actor before answering 503.
RESTART_WAIT_S = 60.0


class HostActor:
    """The body of a host actor: a shard answering messages."""

    def __init__(self) -> None:
        self.shard = Shard(portable=True)

    def ask(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        return answer(self.shard, op, args)

    def pid(self) -> int:
        return os.getpid()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("PAGELAB_PLACEMENT=ray needs Ray: pip install 'pagelab[ray]'") from None
    return ray


class RayHost(RemoteHost):
    """``actors`` named host actors; ``address`` the cluster (None: a local Ray)."""

    name = "ray"

    def __init__(self, actors: int, address: str | None, namespace: str = "pagelab") -> None:
        super().__init__(actors)
        ray = _ray()
        if not ray.is_initialized():
            if address:
                ray.init(address=address, namespace=namespace, log_to_driver=False)
            else:
                # the actors import the same ``app`` as this process
                root = str(pathlib.Path(__file__).resolve().parents[3])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
                ray.init(
                    num_cpus=max(2, actors),
                    namespace=namespace,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                )
        self.ray = ray
        remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, num_cpus=1)(HostActor)
        # named per server process, so that two servers (or two tests) never share one
        self.group = uuid.uuid4().hex[:8]
        self.actors = [
            remote.options(name=f"pagelab-{self.group}-host-{i}", namespace=namespace).remote()
            for i in range(actors)
        ]
        #: each actor's process (a new one after a restart: a new epoch)
        self._pids: list[int] = ray.get([a.pid.remote() for a in self.actors])
        self._lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)

    async def _ask(self, shard: int, op: str, args: tuple[Any, ...]) -> Any:
        try:
            ok, value = await self.actors[shard].ask.remote(op, args)
        except self._lost_errors as e:
            self.lost += 1
            log.warning("instance host actor lost", shard=shard, reason=str(e)[:200])
            await self._recovered(shard)
            raise HostLost(shard, f"its actor died ({type(e).__name__})") from None
        return unwrap(ok, value)

    async def _recovered(self, shard: int) -> None:
        """Wait (bounded) until Ray has restarted the shard's actor, so that the lab's
        rebuild and retry reach a live one; a new process is a new epoch."""
        deadline = time.monotonic() + RESTART_WAIT_S
        delay = 0.05
        while True:
            try:
                pid = await self.actors[shard].pid.remote()
            except self._lost_errors:
                if time.monotonic() > deadline:
                    self._epochs[shard] += 1
                    return
                await asyncio.sleep(delay)  # Ray is restarting it
                delay = min(delay * 2, 1.0)
                continue
            if pid != self._pids[shard]:
                self._pids[shard] = pid
                self._epochs[shard] += 1
            return

    async def pid(self, shard: int) -> int:
        """The process of a host actor (tests kill one)."""
        pid: int = await self.actors[shard].pid.remote()
        return pid

    async def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as e:  # already gone
                log.debug("host actor not killed", reason=str(e))


__all__ = ["HostActor", "RayHost"]

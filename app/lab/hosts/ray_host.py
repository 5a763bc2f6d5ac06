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

from .base import (
    CallReply,
    HostLost,
    Key,
    Refusal,
    SliceReply,
    Started,
    UnknownKey,
    WorkloadReply,
    portable,
)
from .remote import RemoteHost, answer, unwrap
from .shard import Shard

log = structlog.get_logger(__name__)

#: How often Ray restarts a host actor that died (-1: without limit).
MAX_RESTARTS = -1
#: Longest the lab waits for Ray to restart a host actor before answering 503.
RESTART_WAIT_S = 60.0


#: Where the lab's seq of the instance's last call is in the arguments of the questions
#: that run calls (``call``, ``slice``, ``workload_slice``: after the key).
SEQ_AT = {"call": 5, "slice": 5, "workload_slice": 4}


class HostActor:
    """The body of a host actor: a shard answering messages.

    With ``shared`` (several API nodes use the actor: ``PAGELAB_CLUSTER``) it also keeps
    each machine's *head*: the seq of the last call that reached it, as the lab numbers
    them.  A node holding an instance compares it with the head it read from the
    database (``app.lab.cluster``), and a call sent with another seq than the head is
    refused with ``UnknownKey``: the machine ran a call no node acknowledged (its node
    died before its journal entry was committed), so the lab rebuilds it from the
    journal and asks again."""

    def __init__(self, shared: bool = False) -> None:
        self.shard = Shard(portable=True)
        self.shared = shared
        self.heads: dict[Key, int] = {}

    def ask(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        if not self.shared:
            return answer(self.shard, op, args)
        at = SEQ_AT.get(op)
        if at is None:
            if op in ("start", "drop"):  # a new machine's head is marked once rebuilt
                self.heads.pop(args[0], None)
            return answer(self.shard, op, args)
        key: Key = args[0]
        seq: int = args[at]
        head = self.heads.get(key)
        if head is not None and head != seq and key in self.shard.machines:
            return False, portable(
                UnknownKey(
                    f"machine {key[0]}.{key[1]} is at call {head}, not {seq}: it ran calls "
                    "no node acknowledged"
                )
            )
        ok, value = answer(self.shard, op, args)
        if ok:
            self.heads[key] = seq + _reached(value)
        return ok, value

    def head(self, key: Key) -> tuple[int | None, int] | None:
        """The machine's head (None: not marked since it was installed) and page range;
        None without the machine."""
        m = self.shard.machines.get(key)
        return None if m is None else (self.heads.get(key), m.page_range)

    def mark(self, key: Key, seq: int) -> bool:
        """The machine installed under ``key`` is the state after call ``seq``."""
        if key not in self.shard.machines:
            return False
        self.heads[key] = seq
        return True

    def pid(self) -> int:
        return os.getpid()


def _reached(value: Any) -> int:
    """How many calls of an answer reached the machine (each took a seq)."""
    if isinstance(value, CallReply):
        return 0 if isinstance(value.outcome, Refusal) else 1
    if isinstance(value, SliceReply):
        return value.ran - sum(1 for e in value.errors.values() if isinstance(e, Refusal))
    if isinstance(value, WorkloadReply):
        return sum(1 for out in value.outcomes if not isinstance(out, Refusal))
    return 0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("PAGELAB_PLACEMENT=ray needs Ray: pip install 'pagelab[ray]'") from None
    return ray


class RayHost(RemoteHost):
    """``actors`` named host actors; ``address`` the cluster (None: a local Ray).

    With ``shared`` (``PAGELAB_CLUSTER``: several API nodes) the actors are *detached*
    and named ``pagelab-host-<k>`` in the namespace, so every node finds the same ones by
    name (the first node to start creates them; they outlive every node), and a node
    that stops leaves them running.  Otherwise each server makes its own, named after a
    random group, and kills them when it stops."""

    name = "ray"

    def __init__(
        self, actors: int, address: str | None, namespace: str = "pagelab", shared: bool = False
    ) -> None:
        super().__init__(actors)
        ray = _ray()
        # the actors import the same ``app`` as this process
        root = str(pathlib.Path(__file__).resolve().parents[3])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
        if not ray.is_initialized():
            if address:
                ray.init(
                    address=address,
                    namespace=namespace,
                    log_to_driver=False,
                    runtime_env=runtime_env if shared else None,
                )
            else:
                ray.init(
                    num_cpus=max(2, actors),
                    namespace=namespace,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env=runtime_env,
                )
        self.ray = ray
        self.shared = shared
        remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, num_cpus=1)(HostActor)
        if shared:
            self.group = "shared"
            self.actors = [
                remote.options(
                    name=f"pagelab-host-{i}",
                    namespace=namespace,
                    lifetime="detached",
                    get_if_exists=True,
                ).remote(True)
                for i in range(actors)
            ]
        else:
            # named per server process, so that two servers (or two tests) never share one
            self.group = uuid.uuid4().hex[:8]
            self.actors = [
                remote.options(name=f"pagelab-{self.group}-host-{i}", namespace=namespace).remote()
                for i in range(actors)
            ]
        #: each actor's process (a new one after a restart: a new epoch)
        self._pids: list[int] = ray.get([a.pid.remote() for a in self.actors])
        self._lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
        #: machines this node installed whose head is not marked yet (``shared``)
        self.unmarked: set[Key] = set()

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

    async def start(
        self,
        key: Key,
        config: Any,
        data: bytes | None = None,
        *,
        verify: bool = True,
        digest: str | None = None,
    ) -> Started:
        if self.shared:
            self.unmarked.add(key)
        return await super().start(key, config, data, verify=verify, digest=digest)

    async def _actor(self, shard: int, method: str, *args: Any) -> Any:
        """A method of a host actor other than ``ask`` (``HostLost`` if it died)."""
        try:
            return await getattr(self.actors[shard], method).remote(*args)
        except self._lost_errors as e:
            self.lost += 1
            await self._recovered(shard)
            raise HostLost(shard, f"its actor died ({type(e).__name__})") from None

    async def head(self, key: Key) -> tuple[int | None, int] | None:
        """The machine's head and page range (``HostActor.head``; ``shared`` only)."""
        head: tuple[int | None, int] | None = await self._actor(self.shard_of(key[0]), "head", key)
        return head

    async def mark(self, key: Key, seq: int) -> None:
        """Mark a machine this node installed as the state after call ``seq``."""
        self.unmarked.discard(key)
        await self._actor(self.shard_of(key[0]), "mark", key, seq)

    async def pid(self, shard: int) -> int:
        """The process of a host actor (tests kill one)."""
        pid: int = await self.actors[shard].pid.remote()
        return pid

    async def close(self) -> None:
        if self.shared:  # the other API nodes still use them
            return
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as e:  # already gone
                log.debug("host actor not killed", reason=str(e))


__all__ = ["HostActor", "RayHost"]

"""What the out-of-process placements share: the question as a message, the answer's
errors made real again, and a client that turns ``InstanceHost`` calls into messages.

A question is ``(op, args)`` — a ``Shard`` method and its plain arguments — and an answer
``(ok, value)``: the method's return value, or the error it raised as a ``PortableError``
(the core's errors do not survive pickling as themselves).  ``RemoteHost`` implements the
whole ``InstanceHost`` protocol on top of one coroutine, ``_ask(shard, op, args)``, which
each placement provides (a pipe to a worker process, a Ray actor method).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.config import MachineConfig
from app.core.snapshot import Capture

from .base import (
    Call,
    CallReply,
    Ctx,
    FormCalls,
    Key,
    PackedCalls,
    PortableError,
    SliceReply,
    Started,
    WorkloadReply,
    portable,
    revive_error,
)
from .shard import Shard, revive_errors, revive_outcomes

#: The ``Shard`` methods a message may name.
OPS = frozenset(
    {
        "start",
        "replay",
        "call",
        "slice",
        "workload_start",
        "workload_slice",
        "workload_drop",
        "view",
        "frame",
        "digest",
        "capture",
        "full_record",
        "drop",
        "stats",
    }
)


@dataclass(frozen=True, slots=True)
class Step:
    """A journal entry as a host needs it (the store's ``Entry`` without its imports)."""

    seq: int
    fn: str
    args: dict[str, Any]
    ctx: dict[str, Any]


def steps(entries: Sequence[Any]) -> list[Step]:
    return [Step(e.seq, e.fn, e.args, e.ctx) for e in entries]


def answer(shard: Shard, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
    """Run one question on a shard (in the host process): ``(True, value)`` or
    ``(False, portable error)``."""
    try:
        if op not in OPS:
            raise ValueError(f"no host operation {op!r}")
        if op == "stats":
            return True, {"machines": len(shard.machines), "calls": shard.calls}
        return True, getattr(shard, op)(*args)
    except Exception as e:
        return False, portable(e)


def unwrap(ok: bool, value: Any) -> Any:
    """The value of an answer, or its error raised."""
    if not ok:
        raise revive_error(value) if isinstance(value, PortableError) else value
    if isinstance(value, CallReply):
        value.outcome = revive_outcomes([value.outcome])[0]
    elif isinstance(value, SliceReply):
        revive_errors(value.errors)
    elif isinstance(value, WorkloadReply):
        revive_outcomes(value.outcomes)
    return value


class RemoteHost:
    """An ``InstanceHost`` whose shards answer messages (``_ask``): instance ``iid``'s
    machines live on shard ``iid % shards``."""

    name = "remote"

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self._epochs = [0] * shards
        #: calls a batch slice is sent with, per machine: grown while slices finish all
        #: they were given, shrunk to what a slice's 10 ms fit otherwise
        self._chunk: dict[Key, int] = {}
        self.lost = 0

    # ------------------------------------------------------------ for subclasses
    async def _ask(self, shard: int, op: str, args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------ placement
    def shard_of(self, iid: int) -> int:
        return iid % self.shards

    def epoch(self, shard: int) -> int:
        return self._epochs[shard]

    async def _on(self, key: Key, op: str, *args: Any) -> Any:
        return await self._ask(key[0] % self.shards, op, (key, *args))

    # ------------------------------------------------------------ the protocol
    async def start(
        self,
        key: Key,
        config: MachineConfig,
        data: bytes | None = None,
        *,
        verify: bool = True,
        digest: str | None = None,
    ) -> Started:
        started: Started = await self._on(key, "start", config, data, verify, digest)
        return started

    async def replay(self, key: Key, entries: Sequence[Any]) -> int:
        if not entries:
            return 0
        refused: int = await self._on(key, "replay", steps(entries))
        return refused

    async def call(
        self,
        key: Key,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        record: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> CallReply:
        reply: CallReply = await self._on(key, "call", fn, args, ctx, record, seq, waiting)
        return reply

    async def slice(
        self,
        key: Key,
        calls: Sequence[Call],
        start: int,
        record: bool,
        stop_on_error: bool,
        seq: int,
        waiting: tuple[int, ...] = (),
    ) -> SliceReply:
        chunk = self._chunk.get(key, 256)
        # a compact batch goes as its columns packed (``PackedCalls``); others as a list
        part = calls[start : start + chunk]
        sent = PackedCalls.of(part) if isinstance(part, FormCalls) else list(part)
        reply: SliceReply = await self._on(
            key, "slice", sent, 0, record, stop_on_error, seq, waiting
        )
        ran = reply.ran
        if ran >= min(chunk, len(calls) - start) and not reply.stopped:
            self._chunk[key] = min(chunk * 2, 1 << 16)
        elif not reply.stopped:  # the slice's time ran out: send about what fits
            self._chunk[key] = max(64, ran + ran // 2)
        return reply

    async def workload_start(
        self, key: Key, wid: int, kind: str, params: dict[str, Any] | None, seed: int
    ) -> dict[str, Any]:
        made: dict[str, Any] = await self._on(key, "workload_start", wid, kind, params, seed)
        return made

    async def workload_slice(
        self, key: Key, wid: int, limit: int, record: bool, seq: int, waiting: tuple[int, ...] = ()
    ) -> WorkloadReply:
        reply: WorkloadReply = await self._on(
            key, "workload_slice", wid, limit, record, seq, waiting
        )
        return reply

    async def workload_drop(self, key: Key, wid: int) -> None:
        await self._on(key, "workload_drop", wid)

    async def view(self, key: Key, name: str, kwargs: dict[str, Any]) -> Any:
        return await self._on(key, "view", name, kwargs)

    async def frame(self, key: Key, request: dict[str, Any]) -> dict[str, Any]:
        material: dict[str, Any] = await self._on(key, "frame", request)
        return material

    async def digest(self, key: Key) -> str:
        digest: str = await self._on(key, "digest")
        return digest

    async def capture(self, key: Key, busy_ok: bool = True) -> Capture | str:
        cap: Capture | str = await self._on(key, "capture")
        return cap

    async def full_record(
        self,
        config: MachineConfig,
        base: bytes | None,
        near: bytes | None,
        near_seq: int,
        entries: Sequence[Any],
        shard: int,
    ) -> tuple[dict[str, Any], int]:
        out: tuple[dict[str, Any], int] = await self._ask(
            shard, "full_record", (config, base, near, near_seq, steps(entries))
        )
        return out

    async def drop(self, key: Key) -> None:
        self._chunk.pop(key, None)
        await self._on(key, "drop")

    async def close(self) -> None:
        return None

    def load(self) -> dict[str, Any]:
        return {str(i): {"epoch": e} for i, e in enumerate(self._epochs)}


__all__ = ["OPS", "RemoteHost", "Step", "answer", "steps", "unwrap"]

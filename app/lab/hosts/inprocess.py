"""The in-process placement (the default): the machines live in the lab's own process.

A question is a method call on the ``Shard``.  Most calls take microseconds, so they run
on the event loop (a worker-thread hand-off would cost more than the call); work that
grows with the machine or an argument runs in a worker thread (``anyio.to_thread``) so
the loop keeps serving other instances — the same split the lab made before the host
boundary existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from app.core.config import MachineConfig
from app.core.machine import Machine
from app.core.snapshot import Capture

from .base import Call, CallReply, Ctx, Key, SliceReply, Started, WorkloadReply
from .shard import Shard

#: Calls whose cost grows with the machine's size or an argument (ticks, scans, madvise
#: ranges): run in a worker thread.
SLOW_FUNCTIONS = frozenset(
    {
        "tick",
        "vm_contig_pg_alloc",
        "madvise",
        "vm_pageout_scan_inactive",
        "vm_pageout_scan_active",
        "vm_pageout_scan_cache",
    }
)

#: Above this many pages a call (which may wake the pageout daemon for a pass over every
#: colour) or a view runs in a worker thread too.
INLINE_MAX_PAGES = 1 << 20
#: Batch slices with at most this many calls left run on the event loop.
INLINE_BATCH = 64
#: Workload slices at most this many calls long run on the event loop.
INLINE_WORKLOAD = 32
#: Views whose cost grows with the machine.
SLOW_VIEWS = frozenset({"pagemap", "objects", "sysctls", "invariants"})


class InProcessHost:
    """One shard, in this process."""

    name = "inprocess"

    def __init__(self) -> None:
        self.shard = Shard()

    def shard_of(self, iid: int) -> int:
        return 0

    def epoch(self, shard: int) -> int:
        return 0

    def local(self, key: Key) -> Machine | None:
        """The machine itself (tests and benchmarks of this placement only)."""
        return self.shard.machines.get(key)

    def _big(self, key: Key) -> bool:
        m = self.shard.machines.get(key)
        return m is not None and m.page_range > INLINE_MAX_PAGES

    async def start(
        self,
        key: Key,
        config: MachineConfig,
        data: bytes | None = None,
        *,
        verify: bool = True,
        digest: str | None = None,
    ) -> Started:
        return await anyio.to_thread.run_sync(
            lambda: self.shard.start(key, config, data, verify, digest)
        )

    async def replay(self, key: Key, entries: Sequence[Any]) -> int:
        if not entries:
            return 0
        return await anyio.to_thread.run_sync(self.shard.replay, key, entries)

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
        shard = self.shard
        m = shard.machine(key)
        if fn in SLOW_FUNCTIONS or m.page_range > INLINE_MAX_PAGES or len(m.sched.sleepq) > 64:
            return await anyio.to_thread.run_sync(
                lambda: shard.call(key, fn, args, ctx, record, seq, waiting)
            )
        return shard.call(key, fn, args, ctx, record, seq, waiting)

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
        shard = self.shard
        if len(calls) - start <= INLINE_BATCH and not self._big(key):
            return shard.slice(key, calls, start, record, stop_on_error, seq, waiting)
        return await anyio.to_thread.run_sync(
            lambda: shard.slice(key, calls, start, record, stop_on_error, seq, waiting)
        )

    async def workload_start(
        self, key: Key, wid: int, kind: str, params: dict[str, Any] | None, seed: int
    ) -> dict[str, Any]:
        return self.shard.workload_start(key, wid, kind, params, seed)

    async def workload_slice(
        self, key: Key, wid: int, limit: int, record: bool, seq: int, waiting: tuple[int, ...] = ()
    ) -> WorkloadReply:
        shard = self.shard
        if limit <= INLINE_WORKLOAD and not self._big(key):
            return shard.workload_slice(key, wid, limit, record, seq, waiting)
        return await anyio.to_thread.run_sync(
            lambda: shard.workload_slice(key, wid, limit, record, seq, waiting)
        )

    async def workload_drop(self, key: Key, wid: int) -> None:
        self.shard.workload_drop(key, wid)

    async def view(self, key: Key, name: str, kwargs: dict[str, Any]) -> Any:
        if name in SLOW_VIEWS and self._big(key):
            return await anyio.to_thread.run_sync(lambda: self.shard.view(key, name, kwargs))
        return self.shard.view(key, name, kwargs)

    async def frame(self, key: Key, request: dict[str, Any]) -> dict[str, Any]:
        return self.shard.frame(key, request)

    async def digest(self, key: Key) -> str:
        # hashing a 64 GiB machine takes about a second
        return await anyio.to_thread.run_sync(self.shard.digest, key)

    async def capture(self, key: Key, busy_ok: bool = True) -> Capture | str:
        if self._big(key) or self.shard.machine(key).page_range > INLINE_MAX_PAGES >> 4:
            return await anyio.to_thread.run_sync(self.shard.capture, key)
        return self.shard.capture(key)

    async def full_record(
        self,
        config: MachineConfig,
        base: bytes | None,
        near: bytes | None,
        near_seq: int,
        entries: Sequence[Any],
        shard: int,
    ) -> tuple[dict[str, Any], int]:
        return await anyio.to_thread.run_sync(
            lambda: self.shard.full_record(config, base, near, near_seq, entries)
        )

    async def drop(self, key: Key) -> None:
        self.shard.drop(key)

    async def close(self) -> None:
        self.shard.machines.clear()

    def load(self) -> dict[str, Any]:
        return {"0": {"machines": len(self.shard.machines), "calls": self.shard.calls}}

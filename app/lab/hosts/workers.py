"""The worker-process placement (``PAGELAB_PLACEMENT=workers``): ``PAGELAB_WORKERS`` local
processes, each with its own interpreter (its own GIL: one server uses every core), each
holding the machines of the instances whose id falls on it (``iid % workers``).

Each worker is a spawned process running ``serve``: it reads questions from its end of
a pipe, answers them one at a time on its ``Shard``, and writes the answers back.  In the
lab's process two threads per worker move the pickled messages (a writer fed by a queue,
a reader that hands each answer to the event loop with ``call_soon_threadsafe``), so the
event loop never waits on a pipe.

When a worker dies (killed, out of memory), its reader sees the pipe close: every
question still waiting for it fails with ``HostLost``, a new process is spawned in its
place and the worker's epoch goes up, so the lab rebuilds each of its instances from the
journal and snapshots on next use and asks the failed question once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import queue
import signal
import threading
from typing import Any

import structlog

from .base import HostLost
from .remote import RemoteHost, answer, unwrap
from .shard import Shard

log = structlog.get_logger(__name__)


def serve(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: answer questions until the pipe closes (the lab stopped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is for the server
    shard = Shard(portable=True)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        rid, op, args = message
        ok, value = answer(shard, op, args)
        try:
            conn.send((rid, ok, value))
        except (BrokenPipeError, OSError):
            return


class Worker:
    """One worker process, the pipe to it, and the questions it has not answered yet."""

    def __init__(self, index: int, host: WorkerHost) -> None:
        self.index = index
        self.host = host
        self.epoch = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.closing = False
        self._spawn()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=serve, args=(theirs,), name=f"pagelab-host-{self.index}", daemon=True
        )
        self.process.start()
        theirs.close()
        self.conn = ours
        self.outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        epoch = self.epoch
        threading.Thread(
            target=self._write, args=(ours, self.outbox), daemon=True, name="pagelab-host-w"
        ).start()
        threading.Thread(
            target=self._read, args=(ours, epoch), daemon=True, name="pagelab-host-r"
        ).start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def _write(
        self, conn: multiprocessing.connection.Connection, outbox: queue.SimpleQueue[Any]
    ) -> None:
        while True:
            message = outbox.get()
            try:
                conn.send(message)  # pickled here, off the event loop
            except (OSError, ValueError):
                return  # the reader sees the process gone
            if message is None:  # the process stops after reading it
                return

    def _read(self, conn: multiprocessing.connection.Connection, epoch: int) -> None:
        loop = self.host.loop
        while True:
            try:
                rid, ok, value = conn.recv()
            except (EOFError, OSError) as e:
                reason = f"its process exited ({type(e).__name__})"
                loop = self.host.loop
                if loop is not None and not loop.is_closed():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self._lost, epoch, reason)
                return
            loop = self.host.loop
            if loop is None or loop.is_closed():
                continue
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._answered, rid, ok, value)

    def _answered(self, rid: int, ok: bool, value: Any) -> None:
        fut = self.pending.pop(rid, None)
        if fut is None or fut.done():
            return
        try:
            fut.set_result(unwrap(ok, value))
        except Exception as e:
            fut.set_exception(e)

    def _lost(self, epoch: int, reason: str) -> None:
        """The process died: fail what it owed, start another (once per death)."""
        if epoch != self.epoch or self.closing:
            return
        self.process.join(timeout=0)
        code = self.process.exitcode
        why = f"{reason}, exit code {code}" if code is not None else reason
        log.warning("instance host process lost", shard=self.index, reason=why)
        self.host.lost += 1
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(HostLost(self.index, why))
        self.outbox.put(None)
        with contextlib.suppress(OSError):
            self.conn.close()
        self.epoch += 1
        self.host._epochs[self.index] = self.epoch
        self._spawn()

    async def ask(self, op: str, args: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        if self.host.loop is not loop:
            self.host.loop = loop
        if not self.process.is_alive() and not self.closing:
            # it died while nobody was waiting (its reader had no loop to tell)
            self._lost(self.epoch, "its process exited")
        rid = next(self.ids)
        fut: asyncio.Future[Any] = loop.create_future()
        self.pending[rid] = fut
        self.outbox.put((rid, op, args))
        try:
            return await fut
        finally:
            self.pending.pop(rid, None)

    def stop(self) -> None:
        """Ask the process to exit (``close`` waits for it)."""
        self.closing = True
        self.outbox.put(None)

    def close(self) -> None:
        self.stop()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()


class WorkerHost(RemoteHost):
    """``workers`` local processes, instances sharded by id."""

    name = "workers"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self.loop = asyncio.get_running_loop()
        self.workers = [Worker(i, self) for i in range(workers)]

    async def _ask(self, shard: int, op: str, args: tuple[Any, ...]) -> Any:
        return await self.workers[shard].ask(op, args)

    def pids(self) -> list[int | None]:
        """The worker processes' ids (tests kill one)."""
        return [w.pid for w in self.workers]

    async def close(self) -> None:
        for w in self.workers:
            w.stop()
        for w in self.workers:
            w.close()

    def load(self) -> dict[str, Any]:
        return {
            str(w.index): {"epoch": w.epoch, "pid": w.pid, "waiting": len(w.pending)}
            for w in self.workers
        }


__all__ = ["WorkerHost", "serve"]

"""The worker-process placement (``PAGELAB_PLACEMENT=workers``): ``PAGELAB_WORKERS`` local
processes, each with its own interpreter (its own GIL: one server uses every core), each
holding the machines of the instances whose id falls on it (``iid % workers``).

Each worker is a spawned process running ``serve``: it reads questions from its end of
a pipe, answers them one at a time on its ``Shard``, and writes the answers back.  The
lab's event loop reads the answers when the pipe is readable and writes small questions
itself; large ones go through a writer thread (``Worker``), so the loop never waits on a
pipe.

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
import select
import signal
import threading
from multiprocessing.reduction import ForkingPickler
from typing import Any

import structlog

from .base import HostLost
from .remote import RemoteHost, answer, unwrap
from .shard import Shard

log = structlog.get_logger(__name__)


def serve(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: answer questions until the pipe closes (the lab stopped)."""
    # Ctrl-C or a SIGTERM sent to the server's process group is for the server: it
    # stops its workers itself once its own shutdown is done (and a worker whose server
    # died sees its pipe close and exits)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
    """One worker process, the pipe to it, and the questions it has not answered yet.

    Answers are read on the event loop when the pipe is readable (``add_reader``): each
    is a whole message the worker wrote at once.  Questions are written on the event loop
    too while nothing else is being written (a small write to a pipe with room never
    blocks); a large one, or one behind another, goes through a writer thread, so the
    loop never waits for a busy worker to drain its pipe."""

    #: questions up to this size are written on the event loop
    INLINE_BYTES = 16 * 1024

    def __init__(self, index: int, host: WorkerHost) -> None:
        self.index = index
        self.host = host
        self.epoch = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None
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
        # whether another answer waits, asked without blocking: ``Connection.poll``
        # builds a selector per question, which costs more than reading a small answer
        self.more = select.poll()
        self.more.register(ours.fileno(), select.POLLIN)
        self.sending = threading.Lock()  # one writer at a time on the pipe
        self.outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(
            target=self._write, args=(ours, self.outbox, self.sending), daemon=True
        ).start()
        self.loop = None  # the reader is attached on the next question

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @staticmethod
    def _write(
        conn: multiprocessing.connection.Connection,
        outbox: queue.SimpleQueue[Any],
        sending: threading.Lock,
    ) -> None:
        while True:
            data = outbox.get()  # a pickled question, or None: stop
            try:
                with sending:
                    if data is None:
                        conn.send(None)  # the process stops after reading it
                        return
                    conn.send_bytes(data)
            except (OSError, ValueError):
                return  # the reader sees the process gone

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.loop is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.conn.fileno())
        self.loop = loop
        loop.add_reader(self.conn.fileno(), self._readable, self.epoch)

    def _readable(self, epoch: int) -> None:
        if epoch != self.epoch:
            return
        conn, more = self.conn, self.more
        try:
            while True:  # called when the pipe is readable: at least one answer waits
                rid, ok, value = conn.recv()
                self._answered(rid, ok, value)
                if not more.poll(0):
                    break
        except (EOFError, OSError) as e:
            self._lost(epoch, f"its process exited ({type(e).__name__})")

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
        if self.loop is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.conn.fileno())
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
        if self.loop is not loop:
            self._attach(loop)
        if not self.process.is_alive() and not self.closing:
            # it died while nobody was waiting
            self._lost(self.epoch, "its process exited")
            self._attach(loop)
        rid = next(self.ids)
        fut: asyncio.Future[Any] = loop.create_future()
        self.pending[rid] = fut
        data = ForkingPickler.dumps((rid, op, args))
        queued = True
        if len(data) <= self.INLINE_BYTES and self.sending.acquire(blocking=False):
            try:
                if self.outbox.empty():  # nothing queued before it: in order
                    queued = False
                    self.conn.send_bytes(data)
            except OSError:
                pass  # the reader sees the process gone
            finally:
                self.sending.release()
        if queued:
            self.outbox.put(data)
        try:
            return await fut
        finally:
            self.pending.pop(rid, None)

    def stop(self) -> None:
        """Ask the process to exit (``close`` waits for it)."""
        self.closing = True
        if self.loop is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.conn.fileno())
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

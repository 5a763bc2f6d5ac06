"""Several API nodes as one service (``PAGELAB_CLUSTER``; ``docs/placements.md``).

Every node serves every instance: behind any load balancer, without sticky sessions,
a request may land on any of them.  They share the Postgres of the labs issue and the
host actors of the Ray placement (detached, found by name: ``RayHost(shared=True)``),
and nothing an answer depends on is only in one node's memory:

* **One writer at a time.**  ``InstanceLock`` is an instance's lock in cluster mode: the
  node's ``asyncio.Lock`` (one request of this node at a time), then a Postgres advisory
  lock on the instance, held in an open transaction for as long as the lab holds the
  instance (``pg_advisory_xact_lock``: released by the commit, or by Postgres when the
  node dies and its connection drops).  Every ``async with inst.lock`` and ``Lab.hold``
  of the lab takes it, so calls, batches, workload slices, stream ticks, snapshots,
  resets and deletes of one instance are ordered across nodes exactly as one node
  orders them.
* **The head in the database.**  Taking the lock reads the instance's generation and
  its *head* (seq and call count: ``instance_heads``; refused calls take a seq without a
  journal entry, so the journal alone cannot say it) and brings the node's ``Instance``
  up to date; letting go first waits until the journal holds every call the node made
  (acknowledged calls are durable before anyone else can build on them), then writes
  the head in the transaction whose commit releases the lock.
* **The machine checked, not trusted.**  The host actor notes each machine's head too
  (``HostActor.heads``).  When it is not the head the database has — the node that
  made a call died before its journal entry was committed, or the actor restarted
  empty — the machine is rebuilt from snapshots and the journal before it is used, and
  a call sent with a seq other than the actor's head is refused (``UnknownKey``), so it
  is rebuilt and asked again (``Lab.ask``).
* **Instances read through.**  ``ClusterInstances`` is the lab's ``instances`` mapping:
  an id this node has not seen is read from the database; listings, name lookups,
  quotas and creations read the instance rows again (``refresh``).
* **Streams.**  A stream tick holds the instance like a call does; when other nodes
  made calls since, their journal entries join this node's ring as events (function,
  arguments, context, result: no page moves, which only the node that made the call
  had), and the state topics are read from the shared machine as always.

What a node still keeps for itself (``docs/placements.md`` lists it): call-rate buckets,
stream and workload counts for their quotas, workloads it started (driven by it, listed
by it), waiters for sleeping threads, and the quota cache (read again after
``QUOTA_CACHE_S``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog
from sqlalchemy import Connection, create_engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError

from .hosts.base import HostLost
from .store import (
    config_from_json,
    instance_heads,
    instances,
    journal,
    load_snapshots,
)

if TYPE_CHECKING:
    from .hosts.ray_host import RayHost
    from .service import Instance, Lab

log = structlog.get_logger(__name__)

#: The advisory locks' first key: instances (second key: the instance id), and the one
#: lock creations take (second key 0).
INSTANCE_LOCKS = 0x50474C
CREATE_LOCKS = 0x50474D
#: Longest a node waits for another node's hold on an instance before answering 503.
LOCK_TIMEOUT_S = 30
#: Connections one node may have open for holds at once (the lab's store has its own).
POOL_SIZE = 8
POOL_OVERFLOW = 24


@dataclass(slots=True)
class Head:
    """An instance as the database has it when a node takes its lock."""

    generation: int
    seq: int
    calls: int
    #: the last journalled seq of that generation
    journalled: int


class ClusterInstances(dict[int, "Instance"]):
    """The lab's instances, read through to the database: ``get``, ``in`` and ``[]``
    of an id this node does not know yet read its row (a blocking query on the event
    loop: once per instance and node).  ``values()`` is this node's copy; ``refresh``
    brings it in line with the rows (new instances added, deleted ones dropped)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self.cluster = cluster

    def get(self, iid: int, default: Any = None) -> Any:
        inst = super().get(iid)
        if inst is None:
            inst = self.cluster.adopt(iid)
        return default if inst is None else inst

    def __contains__(self, iid: object) -> bool:
        return isinstance(iid, int) and self.get(iid) is not None

    def __missing__(self, iid: int) -> Instance:
        inst = self.cluster.adopt(iid)
        if inst is None:
            raise KeyError(iid)
        return inst

    def refresh(self) -> int:
        """Read the instance rows again (blocking); how many there are."""
        return self.cluster.refresh()


class InstanceLock:
    """An instance's lock across the API nodes (``Instance.lock`` in cluster mode): this
    node's ``asyncio.Lock``, then the instance's advisory lock in Postgres; the
    instance is brought up to date on the way in and its head written on the way out
    (``Cluster.enter``/``leave``).  Not re-entrant, like ``asyncio.Lock``."""

    def __init__(self, cluster: Cluster, inst: Instance) -> None:
        self.cluster = cluster
        self.inst = inst
        self.local = asyncio.Lock()
        self.held: Held | None = None

    def locked(self) -> bool:
        return self.local.locked()

    async def __aenter__(self) -> None:
        await self.local.acquire()
        try:
            # shielded: a request cancelled now must not leave the database lock taken
            with anyio.CancelScope(shield=True):
                self.held = await self.cluster.enter(self.inst)
        except BaseException:
            self.local.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        held, self.held = self.held, None
        try:
            if held is not None:
                with anyio.CancelScope(shield=True):
                    await self.cluster.leave(self.inst, held)
        finally:
            self.local.release()


@dataclass(slots=True)
class Held:
    """A node's hold on an instance: the transaction holding its advisory lock, and the
    head read when it was taken."""

    conn: Connection
    head: Head


class Cluster:
    """What makes the lab one of several API nodes (``Lab.cluster``)."""

    def __init__(self, lab: Lab) -> None:
        store = lab.store
        assert store is not None, "PAGELAB_CLUSTER needs a database"
        self.lab = lab
        self.store = store
        # the holds' own connections: each is open for as long as a request holds an
        # instance, and must never wait for the store's pool (nor it for them)
        self.engine = create_engine(
            store.url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_pre_ping=True
        )
        self.instances = ClusterInstances(self)
        #: holds taken, and those that found other nodes' calls or a machine to rebuild
        self.holds = 0
        self.caught_up = 0
        self.rebuilt = 0

    @property
    def host(self) -> RayHost:
        host: RayHost = self.lab.host  # type: ignore[assignment]
        return host

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ instances
    def adopt(self, iid: int) -> Instance | None:
        """Instance ``iid`` from its row (None: there is none), added to this node's
        instances; its seq and machine are read when it is first held."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(instances).where(instances.c.id == iid)).first()
        if row is None:
            return None
        return self._adopted(row)

    def _adopted(self, row: Any) -> Instance:
        from .service import Instance

        lab = self.lab
        inst = Instance(row.id, row.name, config_from_json(row.config), row.preset)
        inst.created = row.created
        inst.host = lab.host
        inst.record_bound = lab.settings.record_max_moves
        inst.generation = row.generation
        inst.owner = row.owner
        inst.history = None
        inst.last_used = lab.clock()
        base = load_snapshots(self.store, row.id, row.generation, 0, limit=1)
        inst.base = base[0].data if base else None
        inst.lock = InstanceLock(self, inst)  # type: ignore[assignment]
        dict.__setitem__(self.instances, row.id, inst)
        lab._next_id = max(lab._next_id, row.id + 1)
        return inst

    def refresh(self) -> int:
        """Bring this node's instances in line with the rows: adopt the new ones, drop
        those deleted through another node (blocking)."""
        with self.store.engine.connect() as conn:
            ids = {r.id for r in conn.execute(select(instances.c.id))}
            new = ids - dict.keys(self.instances)
            rows = (
                conn.execute(select(instances).where(instances.c.id.in_(new))).all() if new else []
            )
        for row in rows:
            self._adopted(row)
        for iid in [i for i in dict.keys(self.instances) if i not in ids]:
            self.forget(iid)
        return len(ids)

    def forget(self, iid: int) -> None:
        """An instance deleted through another node leaves this one."""
        inst = dict.pop(self.instances, iid, None)
        if inst is None:
            return
        lab = self.lab
        lab.retired_calls.update(inst.calls_by_fn)
        lab.retired_refusals.update(inst.refused_by_fn)
        inst.hosted = False
        for run in inst.workloads.values():
            run.cancel("the instance was deleted")
        for futures in inst.waiters.values():
            for f in futures:
                if not f.done():
                    f.set_result({"error": "the instance was deleted"})
        inst.waiters.clear()

    async def refreshed(self) -> int:
        """``refresh`` off the event loop."""
        return await anyio.to_thread.run_sync(self.refresh)

    @asynccontextmanager
    async def creating(self) -> AsyncIterator[None]:
        """The cluster's one creation at a time: its names, ids and quotas are checked
        against every node's instances (read again under the lock)."""
        conn = await anyio.to_thread.run_sync(self._lock, CREATE_LOCKS, 0)
        try:
            await self.refreshed()
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._end, conn, True)

    async def created(self, inst: Instance) -> None:
        """A new instance (made by this node): its lock, its head, its machine marked."""
        inst.lock = InstanceLock(self, inst)  # type: ignore[assignment]
        await anyio.to_thread.run_sync(self._write_head, inst.id, inst.generation, inst.seq, 0)
        await self._mark(inst)

    # ------------------------------------------------------------ holds
    def _lock(self, first: int, second: int) -> Connection:
        """A transaction holding advisory lock ``(first, second)`` (blocking)."""
        conn = self.engine.connect()
        try:
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'"))
            conn.execute(select(func.pg_advisory_xact_lock(first, second)))
        except OperationalError as e:
            conn.rollback()
            conn.close()
            from .service import LabError

            raise LabError(
                "unavailable",
                f"another API node has held this for more than {LOCK_TIMEOUT_S} s; try "
                "again in a moment",
                retry_after=2,
            ) from e
        except BaseException:
            conn.rollback()
            conn.close()
            raise
        return conn

    def _take(self, iid: int) -> Held | None:
        """Lock instance ``iid`` and read its head (None: it was deleted)."""
        conn = self._lock(INSTANCE_LOCKS, iid)
        try:
            generation = conn.execute(
                select(instances.c.generation).where(instances.c.id == iid)
            ).scalar()
            if generation is None:
                self._end(conn, False)
                return None
            top = conn.execute(
                select(func.max(journal.c.seq)).where(
                    journal.c.instance_id == iid, journal.c.generation == generation
                )
            ).scalar()
            journalled = int(top or 0)
            row = conn.execute(
                select(instance_heads).where(instance_heads.c.instance_id == iid)
            ).first()
            if row is not None and row.generation == generation:
                seq = max(int(row.seq), journalled)
                calls = int(row.calls) + max(0, journalled - int(row.seq))
            else:  # written by a single server (or before its first hold): the journal's
                count = conn.execute(
                    select(func.count()).where(
                        journal.c.instance_id == iid, journal.c.generation == generation
                    )
                ).scalar()
                seq, calls = journalled, int(count or 0)
        except BaseException:
            self._end(conn, False)
            raise
        return Held(conn, Head(generation, seq, calls, journalled))

    @staticmethod
    def _end(conn: Connection, commit: bool) -> None:
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()

    async def enter(self, inst: Instance) -> Held:
        """Take the instance's lock and bring ``inst`` up to date with the database and
        its machine: ``LabError`` (unknown instance) when it was deleted meanwhile."""
        held = await anyio.to_thread.run_sync(self._take, inst.id)
        if held is None:
            self.forget(inst.id)
            from .service import LabError

            raise LabError("unknown-instance", f"there is no instance {inst.id}")
        try:
            self.holds += 1
            await self._update(inst, held.head)
            await self._check_machine(inst)
        except BaseException:
            await anyio.to_thread.run_sync(self._end, held.conn, False)
            raise
        return held

    async def _update(self, inst: Instance, head: Head) -> None:
        """Other nodes' work since this node last held the instance: a reset or restore
        (a new generation), calls (a higher seq; their journal entries join the ring when
        someone here watches its events)."""
        if head.generation != inst.generation:
            inst.generation = head.generation
            inst.hosted = False
            inst.ring.clear()
            inst.pending = []
            inst.digest_cache = None
            inst.snapshot_seq = 0
            inst.seq = head.seq  # a new timeline: no events to catch up with
            for futures in inst.waiters.values():
                for f in futures:
                    if not f.done():
                        f.set_result({"error": "the instance was reset or restored"})
            inst.waiters.clear()
        elif head.seq > inst.seq and self.lab.stream.records_wanted(inst.id):
            # no more than the ring keeps (a viewer further behind gets a summary)
            after = max(inst.seq, head.seq - (inst.ring.maxlen or 0))
            entries = await anyio.to_thread.run_sync(
                lambda: list(self.store.entries(inst.id, head.generation, after))
            )
            self.caught_up += 1
            for e in entries:
                if e.seq > head.seq:
                    break
                inst.fn_counts[e.fn] += 1
                inst.ring.append(
                    {
                        "seq": e.seq,
                        "fn": e.fn,
                        "args": e.args,
                        "ctx": e.ctx,
                        "source": e.source,
                        "result": e.result,
                    }
                )
        inst.seq = head.seq
        inst.calls = head.calls
        inst.journal_seq = head.journalled

    async def _check_machine(self, inst: Instance) -> None:
        """Whether the host actor's machine is the state after the instance's seq: then
        it counts as hosted here; else it is rebuilt on the way into ``Lab.hold``."""
        host = self.host
        try:
            got = await host.head(inst.key)
        except HostLost:
            got = None
        if got is not None and got[0] == inst.seq:
            inst.hosted = True
            inst.size = got[1]
            inst.epoch = host.epoch(host.shard_of(inst.id))
            inst.parked = None
        else:
            if inst.hosted:
                self.rebuilt += 1
            inst.hosted = False
            inst.parked = None

    async def leave(self, inst: Instance, held: Held) -> None:
        """Let go of the instance: once the journal holds its calls, write its head (or
        remove it when it was deleted) and commit, which releases the lock."""
        lab = self.lab
        gone = dict.get(self.instances, inst.id) is not inst
        commit = True
        try:
            if not gone:
                if inst.pending or inst.journal_seq > held.head.journalled:
                    await lab.sync(inst)
                if inst.key in self.host.unmarked and inst.hosted:
                    await self._mark(inst)
        except BaseException:
            commit = False  # the next node reads the journal; its head stays as it was
            raise
        finally:
            head = held.head
            changed = (inst.generation, inst.seq, inst.calls) != (
                head.generation,
                head.seq,
                head.calls,
            )
            await anyio.to_thread.run_sync(
                self._release,
                held.conn,
                inst.id,
                None if gone else (inst.generation, inst.seq, inst.calls) if changed else (),
                commit,
            )

    def _release(
        self, conn: Connection, iid: int, head: tuple[int, int, int] | tuple[()] | None, ok: bool
    ) -> None:
        """Write the head (None: delete it; ``()``: unchanged) and end the transaction."""
        try:
            if ok and head is None:
                conn.execute(delete(instance_heads).where(instance_heads.c.instance_id == iid))
            elif ok and head:
                self._upsert(conn, iid, *head)
        except Exception as e:  # the next node falls back on the journal
            log.warning("instance head not written", instance=iid, reason=str(e))
            ok = False
        try:
            self._end(conn, ok)
        except Exception as e:  # the connection is gone, and the lock with it
            log.warning("instance lock not released cleanly", instance=iid, reason=str(e))

    @staticmethod
    def _upsert(conn: Connection, iid: int, generation: int, seq: int, calls: int) -> None:
        values = {"generation": generation, "seq": seq, "calls": calls, "updated": time.time()}
        stmt = pg_insert(instance_heads).values(instance_id=iid, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["instance_id"], set_=values))

    def _write_head(self, iid: int, generation: int, seq: int, calls: int) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, iid, generation, seq, calls)

    async def _mark(self, inst: Instance) -> None:
        host = self.host
        for key in [k for k in host.unmarked if k[0] == inst.id and k != inst.key]:
            host.unmarked.discard(key)  # an older generation's, dropped
        try:
            await host.mark(inst.key, inst.seq)
        except HostLost:  # the next hold finds no machine and rebuilds it
            inst.hosted = False

    # ------------------------------------------------------------ workloads
    @staticmethod
    def workload_ids() -> int:
        """Where this node's workload ids start: workloads live next to their machine in
        a host actor every node shares, so two nodes must not both use workload 1."""
        return random.randrange(1, 1 << 20) << 10


__all__ = ["Cluster", "ClusterInstances", "InstanceLock"]

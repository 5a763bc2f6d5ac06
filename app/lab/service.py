"""The lab: the instances this server hosts and the rules for driving them.

Each instance is one machine, held by the lab's instance host (``app.lab.hosts``: in
this process, in worker processes or in Ray actors), and an ``asyncio.Lock``: calls on
one instance are serialised, calls on different instances run concurrently.  The lab
keeps everything else here — seqs, the journal, quotas, the stream's ring, waiters,
snapshots — and reaches a machine only through the host, by its key.  A call whose
simulated thread sleeps can wait (bounded) for another request's call to wake it: after
every call the lab resolves the waiters whose threads finished.  When a host process
dies, its instances are rebuilt from the journal and snapshots on their next use and the
call that failed is retried once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import anyio.to_thread
import structlog

from app.core import snapshot
from app.core.config import MachineConfig
from app.core.constants import PAGE_SIZE
from app.core.errors import (
    ConfigError,
    InvalidArgument,
    KernelPanic,
    SimulatorRefusal,
    WouldSleep,
)
from app.core.machine import CallResult, Machine
from app.core.registry import REGISTRY

from .access import Access
from .accounts import Accounts, Quotas
from .cluster import Cluster
from .hosts import make_host
from .hosts.base import (
    Call,
    Ctx,
    FormCalls,
    HostLost,
    InstanceHost,
    Key,
    Refusal,
    SliceReply,
    UnknownKey,
)
from .hosts.shard import (
    BATCH_SLICE_S,
    refused_result,
    replay_onto,
    unknown_function,
)
from .metrics import Metrics
from .presets import PRESETS
from .quota import CallRate, QuotaCache, default_page_budget, page_structs
from .records import full_record_path, name_queues, summarise
from .settings import Settings
from .store import (
    Entry,
    EntryRun,
    History,
    JournalItem,
    JournalWriter,
    Store,
    StoredInstance,
    StoredSnapshot,
    item_last_seq,
    journal_stats,
    load_snapshots,
    save_snapshot,
    set_parked,
)
from .stream import StreamHub, StreamSettings
from .workload_runner import RUNNING_STATES, WorkloadRun, WorkloadRunner

T = TypeVar("T")
#: re-exported: the API layer builds calls with the lab's names
__all__ = ["BATCH_SLICE_S", "Call", "Ctx", "Lab", "LabError"]
log = structlog.get_logger(__name__)


def config_pages(config: MachineConfig) -> int:
    """The pages of RAM a configuration describes (what quotas count)."""
    return sum(end - begin for begin, end in config.phys_avail) // PAGE_SIZE


def replay(config: MachineConfig, entries: list[Entry]) -> Machine:
    """Boot ``config`` and run ``entries`` in order: the machine those calls made.  A call
    refused where the journal does not say so means the journal and the core disagree:
    it is logged and skipped (``shard.replay_onto``)."""
    m = Machine.boot(config)
    refused = replay_onto(m, entries)
    if refused:
        log.warning("replay refused journalled calls", refused=refused, entries=len(entries))
    return m


def _newest_first(
    store: Store, iid: int, generation: int, upto: int | None
) -> Iterator[StoredSnapshot]:
    """The instance generation's snapshots at or before ``upto``, newest first, read one
    at a time (each is a megabyte or more: an older one only when a newer one failed)."""
    top = upto
    while True:
        rows = load_snapshots(store, iid, generation, top, limit=1)
        if not rows:
            return
        yield rows[0]
        if rows[0].seq == 0:
            return
        top = rows[0].seq - 1


class LabError(Exception):
    """A service-level refusal: ``kind`` picks the problem type and HTTP status."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.extra = extra


@dataclass
class BatchColumns:
    """A compact batch's outcome, one column per field: ``results[k]`` and ``seqs[k]`` of
    call ``k`` (None for a refused call, and a seq of None for one refused before it got
    a seq), the refused calls as ``(k, error)``, the calls that slept as ``(k, blocked)``,
    and with ``record`` each call's record (None if refused).  Shorter than the batch when
    ``stop_on_error`` stopped it."""

    results: list[Any] = field(default_factory=list)
    seqs: list[int | None] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    blocked: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)
    #: ``seqs`` as runs ``(index, first_seq, count)``: calls ``index`` to ``index + count
    #: - 1`` got seqs ``first_seq`` onwards (kept as the slices are noted: ``add_run``)
    runs: list[tuple[int, int, int]] = field(default_factory=list)

    def add_run(self, index: int, first: int, count: int) -> None:
        """Calls ``index`` onwards got ``count`` seqs from ``first``: the last run grows
        when they follow it in both index and seq."""
        runs = self.runs
        if runs:
            k, s, n = runs[-1]
            if k + n == index and s + n == first:
                runs[-1] = (k, s, n + count)
                return
        runs.append((index, first, count))


#: Call records each instance keeps for its viewers.
RING_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ParkedView:
    """What a parked instance still answers without its machine (listings, digests)."""

    summary: dict[str, Any]
    digest: str
    page_range: int


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """A state captured after call ``seq``, on its way to the store."""

    capture: snapshot.Capture
    seq: int
    generation: int
    journal_seq: int
    previous: int  # the instance's snapshot_seq before: restored if the write fails


@dataclass
class Rebuilt:
    """A machine rebuilt from the store (installed in the host): the snapshot it started
    from (None: booted) and the journal entries replayed on it."""

    page_range: int
    snapshot: StoredSnapshot | None
    replayed: list[Entry]

    @property
    def base_seq(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.seq


@dataclass
class Instance:
    id: int
    name: str
    config: MachineConfig
    preset: str | None
    #: its machine is in the host (False while the instance is parked, or after its host
    #: was lost: ``Lab.hold`` brings it back)
    hosted: bool = False
    created: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    calls: int = 0
    digest_cache: tuple[int, int, str] | None = None  # (generation, calls, digest)
    generation: int = 0
    #: calls waiting for their sleeping thread, by thread (an outcome, or None: the wait
    #: was ended while the thread still sleeps)
    waiters: dict[int, list[asyncio.Future[dict[str, Any] | None]]] = field(default_factory=dict)
    #: every call run, accepted and refused, by function (``pagelab_kernel_calls``; kept
    #: whether anyone watches, unlike ``fn_counts``)
    calls_by_fn: Counter[str] = field(default_factory=Counter)
    refused_by_fn: Counter[str] = field(default_factory=Counter)
    #: the seq of the last kernel call made on this machine (0 after boot)
    seq: int = 0
    #: the latest call records, for the stream (bounded: a viewer never holds a call up)
    ring: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RING_SIZE))
    #: cumulative calls per function and page moves per queue-type pair (stream summaries)
    fn_counts: Counter[str] = field(default_factory=Counter)
    move_counts: Counter[str] = field(default_factory=Counter)
    error_count: int = 0
    workloads: dict[int, WorkloadRun] = field(default_factory=dict)
    owner: str = ""
    #: accepted calls not yet handed to the journal (flushed under the lock)
    pending: list[JournalItem] = field(default_factory=list)
    #: the journal itself when the lab has no store (None: grown past what memory keeps)
    history: History | None = field(default_factory=History)
    #: seq of the newest snapshot of this generation (saved, or being saved)
    snapshot_seq: int = 0
    snapshotting: bool = False
    #: seq of the last call handed to the journal
    journal_seq: int = 0
    #: when a request last used the machine (the lab's clock; the idle culler reads it)
    last_used: float = field(default_factory=time.time)
    #: set while the machine is parked on disk
    parked: ParkedView | None = None
    #: the snapshot an imported instance started from (its seq 0 instead of a boot)
    base: bytes | None = None
    #: a record with more moves or events than this goes into the stream's ring
    #: summarised (``PAGELAB_RECORD_MAX_MOVES``; the full one: ``…/journal/{seq}/record``)
    record_bound: int = 10_000
    #: pages its machine manages (known from its boot or load)
    size: int = 0
    #: the host holding it, and that host's shard epoch when the machine was installed
    host: InstanceHost | None = None
    epoch: int = 0
    #: the summary of a machine hosted in another process, as last asked for the metrics
    #: (``Lab.refresh_summaries``; None: never asked, or the machine is in this process)
    remote_summary: dict[str, Any] | None = None

    @property
    def key(self) -> Key:
        """The machine's name in the host."""
        return (self.id, self.generation)

    @property
    def live(self) -> Machine | None:
        """The machine itself when it is hosted in this process (tests, benchmarks of
        the in-process placement); None when it is parked or hosted elsewhere."""
        local = getattr(self.host, "local", None)
        return local(self.key) if self.hosted and local is not None else None

    @property
    def machine(self) -> Machine:
        """``live``, which must be there (in-process placement, under ``Lab.hold``)."""
        m = self.live
        if m is None:
            raise RuntimeError(f"instance {self.id} is not hosted in this process")
        return m

    @property
    def page_range(self) -> int:
        return self.parked.page_range if self.parked is not None else self.size

    def record(
        self,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        source: str,
        result: CallResult | None,
        error: dict[str, Any] | None = None,
        watched: bool = True,
    ) -> int:
        """``note`` for a call's ``CallResult`` (None: refused, ``error`` says why)."""
        if result is None:
            return self.note(fn, args, ctx, source, None, None, None, error, watched)
        return self.note(
            fn, args, ctx, source, result.result, result.blocked, result.record, error, watched
        )

    def note(
        self,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        source: str,
        value: Any,
        blocked: dict[str, Any] | None,
        rec: dict[str, Any] | None,
        error: dict[str, Any] | None,
        watched: bool,
        compact: dict[str, Any] | None = None,
    ) -> int:
        """Give one kernel call its seq: an accepted call (``error`` None; its result
        ``value``, ``blocked`` when it slept, its record ``rec``) joins the journal's
        pending entries and, while someone watches the instance's events (``watched``),
        its record joins the ring for the stream.  ``compact`` is ``ctx.compact()`` when
        the caller has it (a batch's calls share a few contexts).  Runs under the
        instance's lock: cheap appends, never a wait."""
        self.seq += 1
        cctx = compact if compact is not None else ctx.compact()
        if error is None:
            self.calls_by_fn[fn] += 1
            self.pending.append(
                Entry(self.id, self.generation, self.seq, fn, args, cctx, source, value)
            )
        else:
            self.refused_by_fn[fn] += 1
            if error.get("type") == "would-sleep":
                # Refused with WouldSleep: the kernel would have hung, but only after what
                # it did first (a vmstats rollup, vm_wait's bookkeeping), which stays done
                # (errors.WouldSleep).  Journalled with the refusal as its result, so that
                # a replay makes the same changes and expects the same refusal.
                journalled = refused_result(error)
                self.pending.append(
                    Entry(self.id, self.generation, self.seq, fn, args, cctx, source, journalled)
                )
        if not watched:  # nobody can see this call's record: the journal has what it needs
            return self.seq
        event: dict[str, Any] = {
            "seq": self.seq,
            "fn": fn,
            "args": args,
            "ctx": cctx,
            "source": source,
        }
        self.fn_counts[fn] += 1
        if error is not None:
            event["error"] = error
            self.error_count += 1
        else:
            event["result"] = value
            if blocked is not None:
                event["blocked"] = blocked
            if rec:
                moves = rec.get("moves", ())
                shown = summarise(rec, self.record_bound, full_record_path(self.id, self.seq))
                event["moves"] = shown.get("moves", [])
                event["counters"] = rec.get("counters", {})
                event["events"] = shown.get("events", [])
                if shown is not rec:  # a bulk call: its viewers get the summary
                    for key in ("summarised", "moves_total", "move_counts", "moves_tail"):
                        event[key] = shown[key]
                    for key in ("events_total", "event_counts", "events_tail", "full_record"):
                        event[key] = shown[key]
                if "resumed" in rec:
                    event["resumed"] = rec["resumed"]
                counts = self.move_counts
                for mv in moves:
                    src = mv["from"].partition(":")[0]
                    dst = mv["to"].partition(":")[0]
                    counts[f"{src}->{dst}"] += 1
        self.ring.append(event)
        return self.seq


class Lab:
    def __init__(self, settings: Settings | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings or Settings()
        #: the app's metrics registry (``GET /metrics``); the lab is read at each scrape
        self.metrics = metrics or Metrics()
        #: calls by function of deleted instances (the counters never go down)
        self.retired_calls: Counter[str] = Counter()
        self.retired_refusals: Counter[str] = Counter()
        #: set once the server stops taking work (``drain``)
        self.draining = False
        self.instances: dict[int, Instance] = {}
        self._next_id = 1
        self._create_lock = asyncio.Lock()
        self._booting_names: set[tuple[str, str]] = set()
        self.access = Access()
        self.store: Store | None = None
        self.journal: JournalWriter | None = None
        #: users, tokens, shares: only in token mode (PAGELAB_AUTH=token), which needs a store
        self.accounts: Accounts | None = None
        #: page structures all instances may hold in all (0: no budget)
        self.page_budget = (
            default_page_budget()
            if self.settings.page_budget is None
            else self.settings.page_budget
        )
        #: page structures of machines booting now (a create, or a reset's second copy)
        self._booking_pages = 0
        #: per-user call-rate buckets (token mode: ``calls_per_s``)
        self.call_rate = CallRate(self.metrics.refused)
        self.quota_cache: QuotaCache | None = None
        if self.settings.database_url:
            self.store = Store(
                self.settings.database_url, sqlite_synchronous=self.settings.sqlite_synchronous
            )
            self.journal = JournalWriter(self.store, observe=self.metrics.journal_commit.observe)
            self._next_id = self.store.next_instance_id()
            if self.settings.auth == "token":
                self.accounts = Accounts(self.store)
                self.access = Access(self.accounts)
                self.quota_cache = QuotaCache(self.accounts)
        self.workloads = WorkloadRunner(self, self.settings.max_workloads)
        #: where the machines live (``PAGELAB_PLACEMENT``)
        self.host: InstanceHost = make_host(self.settings)
        #: one of several API nodes (``PAGELAB_CLUSTER``): instances read through to the
        #: database, held one node at a time (``app.lab.cluster``)
        self.cluster: Cluster | None = None
        if self.settings.cluster:
            self.cluster = Cluster(self)
            self.instances = self.cluster.instances
            self.workloads._next_id = Cluster.workload_ids()
        #: host processes or actors found dead, and the calls retried after rebuilding
        self.hosts_lost = 0
        #: the clock of ``last_used`` and the idle culler (tests replace it)
        self.clock: Callable[[], float] = time.time
        #: journal entries replayed to rebuild machines (restart, revival, restore)
        self.replayed = 0
        #: instances ``restore_all`` brought back at start; None until it has run
        self.restored: int | None = None
        self.snapshots_saved = 0
        self.revivals = 0
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._culler: asyncio.Task[None] | None = None
        st = self.settings
        self.stream = StreamHub(
            self,
            StreamSettings(
                events_per_frame=st.stream_events_per_frame,
                buffer_frames=st.stream_buffer_frames,
                stuck_after_s=st.stream_stuck_after_s,
                watch_pages=st.stream_watch_pages,
                lag_s=st.stream_lag_s,
            ),
        )
        self.metrics.attach(self)

    async def drain(self) -> int:
        """Stop taking work, first thing on SIGTERM (``python -m app.serve`` calls it before
        the server closes its connections; ``shutdown`` calls it too, a no-op then): the
        idle culler stops, running workloads pause (a slice running now finishes), calls
        waiting for a sleeping thread answer at once as if their wait had timed out, and
        every stream is closed with 1001 (going away), its close frame sent.  Returns the
        streams closed."""
        if self.draining:
            return 0
        self.draining = True
        if self._culler is not None:
            self._culler.cancel()
            self._culler = None
        paused = self.workloads.pause_all("paused: the server is shutting down")
        for inst in self.instances.values():
            for futures in inst.waiters.values():
                for f in futures:
                    if not f.done():  # answered as a wait that timed out: still asleep
                        f.set_result(None)
            inst.waiters.clear()
        closed = await self.stream.close_all()
        log.info("draining", streams_closed=closed, workloads_paused=paused)
        return closed

    async def shutdown(self) -> None:
        """The lifespan's end, after the server answered the requests in flight: ``drain``,
        wait for every call still running (a workload's slice) by taking each instance's
        lock, hand the journal what it holds, finish the snapshots being written, then
        snapshot every machine changed since its last snapshot (so the next start loads
        it instead of replaying its journal; ``PAGELAB_SNAPSHOT_ON_SHUTDOWN``, never with
        ``PAGELAB_SNAPSHOT_EVERY=0``), and close the journal and the store."""
        await self.drain()
        for inst in list(self.instances.values()):
            async with inst.lock:
                self.flush(inst, wait=False)
        self.workloads.stop_tasks()
        await self.settle()
        written = 0
        st = self.settings
        if (
            self.store is not None
            and st.snapshot_on_shutdown
            and st.snapshot_every
            and self.cluster is None  # the machines outlive this node
        ):
            for inst in list(self.instances.values()):
                if not inst.hosted or inst.seq == inst.snapshot_seq:
                    continue
                try:
                    saved = await self.save_snapshot(inst)
                except Exception as e:  # the journal has every call: a restart replays it
                    saved = False
                    log.warning("snapshot at shutdown failed", instance=inst.id, reason=str(e))
                if saved:
                    written += 1
                else:
                    log.warning(
                        "no snapshot at shutdown (a thread sleeps in a call): the next start "
                        "replays this instance's journal since its last one",
                        instance=inst.id,
                        seq=inst.seq,
                    )
        if self.journal is not None:
            await anyio.to_thread.run_sync(self.journal.close)
        if self.store is not None:
            self.store.close()
        if self.cluster is not None:
            self.cluster.close()
        await self.host.close()
        self.metrics.detach()
        log.info("lab shut down", instances=len(self.instances), snapshots_written=written)

    def refuse(self, quota: str, kind: str, message: str, **extra: Any) -> LabError:
        """A refusal by ``quota`` (a user's quota or a server cap; counted in
        ``pagelab_quota_refusals_total``), to raise."""
        self.metrics.refused(quota)
        return LabError(kind, message, **extra)

    # ------------------------------------------------------------ the journal
    def flush(self, inst: Instance, wait: bool = True) -> asyncio.Future[None] | None:
        """Hand the instance's newly accepted calls to the journal (under its lock, so in
        seq order).  With a store, returns a future done once they are durable; without
        one, they join the in-memory history."""
        entries = inst.pending
        if not entries:
            return None
        inst.pending = []
        inst.journal_seq = item_last_seq(entries[-1])
        if self.journal is None:
            if inst.history is not None:
                inst.history.extend(entries)
                if len(inst.history) > self.settings.history_max:
                    inst.history = None
            return None
        return self.journal.submit(entries, wait)

    async def sync(self, inst: Instance) -> None:
        """Everything the instance's journal was handed so far (its workloads' calls
        too) is on disk: flush, and wait for the writer to pass this point."""
        self.flush(inst, wait=False)
        if self.journal is not None:
            await self.durable(self.journal.submit([], wait=True))

    async def durable(self, fut: asyncio.Future[None] | None) -> None:
        """Wait until a flush is on disk (a call is acknowledged only then)."""
        if fut is None:
            return
        try:
            await fut
        except Exception as e:
            raise LabError(
                "unavailable",
                f"the call ran but could not be saved ({e}); it is not acknowledged",
            ) from e

    async def restore_all(self) -> int:
        """Bring back every instance in the store: load its newest usable snapshot (or
        boot its configuration) into the host and replay the journal after it.
        Instances parked when the server stopped stay parked (a faster start; the first
        request brings each back).  Returns how many came back."""
        store = self.store
        if store is None:
            self.restored = 0
            return 0
        if self.cluster is not None:  # the machines live on; each is checked when held
            self.restored = await self.cluster.refreshed()
            return self.restored
        stored = await anyio.to_thread.run_sync(store.load_instances)
        for row in stored:
            inst = await self._restored(row)
            self.instances[inst.id] = inst
            self._next_id = max(self._next_id, inst.id + 1)
            log.info(
                "instance restored",
                instance=inst.id,
                name=inst.name,
                calls=inst.calls,
                parked=inst.parked is not None,
                snapshot_seq=inst.snapshot_seq,
            )
        self.restored = len(stored)
        return len(stored)

    async def _restored(self, row: StoredInstance) -> Instance:
        """One stored instance as it comes back at start."""
        store = self.store
        assert store is not None
        calls, last_seq = await anyio.to_thread.run_sync(
            journal_stats, store, row.id, row.generation
        )
        inst = Instance(row.id, row.name, row.config, row.preset, False, row.created)
        inst.host = self.host
        inst.record_bound = self.settings.record_max_moves
        inst.generation = row.generation
        inst.owner = row.owner
        inst.calls = calls
        inst.history = None
        inst.journal_seq = last_seq
        inst.last_used = self.clock()
        inst.base = await anyio.to_thread.run_sync(self._base_of, row.id, row.generation)
        if row.parked:
            view = await anyio.to_thread.run_sync(
                self._parked_view, row.id, row.generation, last_seq
            )
            if view is not None:
                inst.parked, seq = view
                inst.seq = inst.snapshot_seq = seq
                inst.digest_cache = (inst.generation, inst.calls, inst.parked.digest)
                return inst
        rebuilt = await self._rebuild(inst)
        inst.snapshot_seq = rebuilt.base_seq
        inst.seq = max(rebuilt.base_seq, last_seq)
        if row.parked:
            await anyio.to_thread.run_sync(set_parked, store, row.id, False, row.last_used)
        return inst

    def _base_of(self, iid: int, generation: int) -> bytes | None:
        """The snapshot an imported instance started from (its seq 0 row), if any."""
        assert self.store is not None
        rows = load_snapshots(self.store, iid, generation, 0, limit=1)
        return rows[0].data if rows else None

    def _parked_view(
        self, iid: int, generation: int, last_seq: int
    ) -> tuple[ParkedView, int] | None:
        """A parked instance's view from its newest snapshot's header, if that snapshot
        is sound and no journalled call came after it (else None: it is loaded instead)."""
        assert self.store is not None
        for snap in load_snapshots(self.store, iid, generation, limit=1):
            try:
                header = snapshot.read_header(snap.data)
            except snapshot.SnapshotError as e:
                log.warning("parked instance's snapshot unusable", instance=iid, reason=str(e))
                return None
            extra = header.get("extra")
            if (
                snap.seq < last_seq
                or not isinstance(extra, dict)
                or not isinstance(extra.get("summary"), dict)
                or type(extra.get("page_range")) is not int
            ):
                return None
            return ParkedView(extra["summary"], snap.digest, extra["page_range"]), snap.seq
        return None

    async def _start(
        self,
        inst: Instance,
        key: Key,
        entries: list[Entry],
        near: StoredSnapshot | None = None,
    ) -> int:
        """Install ``inst``'s machine under ``key``: a boot of its configuration (or its
        ``base`` snapshot) with ``entries`` replayed; with ``near`` (a snapshot taken
        after entry ``near.seq`` of these), that snapshot with only the entries after it.
        Returns its page range."""
        host = self.host
        if near is not None:
            started = await host.start(key, inst.config, near.data)
            if started.reason is None:
                after = [e for e in entries if e.seq > near.seq]
                await self._replay(inst, key, after)
                return started.page_range
            log.warning(
                "snapshot unusable, replaying the whole journal",
                instance=near.instance_id,
                seq=near.seq,
                reason=started.reason,
            )
        started = await host.start(key, inst.config, inst.base)
        if started.reason is not None:
            raise LabError("validation", f"the snapshot file is not usable: {started.reason}")
        await self._replay(inst, key, entries)
        return started.page_range

    async def _replay(self, inst: Instance, key: Key, entries: list[Entry]) -> None:
        if not entries:
            return
        refused = await self.host.replay(key, entries)
        self.replayed += len(entries)
        if refused:
            log.warning(
                "replay refused journalled calls: the journal and the core disagree",
                instance=inst.id,
                refused=refused,
            )

    async def _rebuild(
        self, inst: Instance, upto: int | None = None, key: Key | None = None
    ) -> Rebuilt:
        """Install the machine of the instance's generation after its journal (up to seq
        ``upto``) under ``key`` (its own key by default): its newest snapshot (at or
        before ``upto``) that loads, has the instance's configuration and the digest
        recorded with it, plus the journal after it; any failure is logged as a warning
        and the next older snapshot tried, then a full replay.  Without a store, a
        replay of the journal kept in memory."""
        store = self.store
        iid, generation, config = inst.id, inst.generation, inst.config
        key = key or inst.key
        used: StoredSnapshot | None = None
        page_range = 0
        candidates = 0
        had_base_row = False
        if store is None:
            entries = [e for e in inst.history or () if upto is None or e.seq <= upto]
            page_range = await self._start(inst, key, entries)
            self._hosted(inst, key, page_range)
            return Rebuilt(page_range, None, entries)
        newest = _newest_first(store, iid, generation, upto)
        while True:
            snap = await anyio.to_thread.run_sync(lambda: next(newest, None))
            if snap is None:
                break
            candidates += 1
            had_base_row = had_base_row or snap.seq == 0
            started = await self.host.start(
                key, config, snap.data, verify=False, digest=snap.digest
            )
            if started.reason is not None:
                log.warning(
                    "snapshot unusable, trying an older one or a full replay",
                    instance=iid,
                    generation=generation,
                    seq=snap.seq,
                    reason=started.reason,
                )
                continue
            used, page_range = snap, started.page_range
            break
        after = 0 if used is None else used.seq
        entries = await anyio.to_thread.run_sync(
            lambda: list(store.entries(iid, generation, after))
        )
        if upto is not None:
            entries = [e for e in entries if e.seq <= upto]
        every = self.settings.snapshot_every
        if used is None and every and len(entries) >= every:
            log.warning(
                "no usable snapshot: replaying the whole journal",
                instance=iid,
                generation=generation,
                calls=len(entries),
            )
        if used is None:
            if had_base_row and inst.base is None:
                log.error(
                    "the snapshot this instance was imported from is unusable: it comes back "
                    "from a boot of its configuration",
                    instance=iid,
                )
            started = await self.host.start(key, config, inst.base)
            if started.reason is not None:  # its imported snapshot no longer loads
                started = await self.host.start(key, config)
            page_range = started.page_range
        await self._replay(inst, key, entries)
        if key == inst.key:
            self._hosted(inst, key, page_range)
        return Rebuilt(page_range, used, entries)

    async def _drop(self, key: Key) -> None:
        """Forget a machine in the host; a host that died has forgotten it already."""
        with contextlib.suppress(HostLost, UnknownKey):
            await self.host.drop(key)

    def _hosted(self, inst: Instance, key: Key, page_range: int) -> None:
        """Note that ``inst``'s machine is now in the host under ``key``."""
        inst.hosted = True
        inst.host = self.host
        inst.size = page_range
        inst.epoch = self.host.epoch(self.host.shard_of(key[0]))

    # ------------------------------------------------------------ parking and snapshots
    @asynccontextmanager
    async def hold(self, inst: Instance) -> AsyncIterator[Key]:
        """The instance's lock, with its machine in the host (its key given): a parked
        instance, or one whose host was lost, is rebuilt first (its snapshot and the
        journal after it), once even when several requests arrive together (the first
        reloads it under the lock, the others find it back)."""
        async with inst.lock:
            if not self._in_host(inst):
                await self._revive(inst)
            inst.last_used = self.clock()
            yield inst.key

    def _in_host(self, inst: Instance) -> bool:
        """Its machine is in the host, and the host has not restarted since."""
        return inst.hosted and inst.epoch == self.host.epoch(self.host.shard_of(inst.id))

    async def ask(self, inst: Instance, question: Callable[[Key], Awaitable[T]]) -> T:
        """Ask the host about the instance's machine (under its lock, from ``hold``).
        When the host process or actor died meanwhile (or restarted and no longer has
        it), the machine is rebuilt from the journal and snapshots — the acknowledged
        state: calls of the question that ran there were never answered, journalled or
        given seqs — and the question asked once more; a second loss answers
        ``unavailable`` (503, retry)."""
        try:
            return await question(inst.key)
        except (HostLost, UnknownKey) as e:
            self.hosts_lost += 1
            log.warning("instance host lost: rebuilding", instance=inst.id, reason=str(e))
            inst.hosted = False
        try:
            await self._revive(inst)
            return await question(inst.key)
        except (HostLost, UnknownKey) as e:
            inst.hosted = False
            raise LabError(
                "unavailable",
                f"the process holding instance {inst.id} stopped twice while answering "
                f"({e}); the instance comes back from its journal: try again in a moment",
                retry_after=2,
            ) from None

    async def use(self, inst: Instance) -> None:
        """Make sure the instance's machine is in memory (revive it if parked)."""
        async with self.hold(inst):
            pass

    async def _revive(self, inst: Instance) -> None:
        """Reload a parked machine, or one whose host was lost (under its lock): from
        its snapshot and the journal after it (everything handed to the journal is
        committed first, so the rebuilt machine has every acknowledged call)."""
        store = self.store
        if inst.parked is None:
            await self.sync(inst)
        rebuilt = await self._rebuild(inst)
        inst.seq = max(inst.seq, rebuilt.base_seq)
        inst.digest_cache = None
        if inst.parked is not None:
            assert store is not None
            inst.parked = None
            self.revivals += 1
            last_used = inst.last_used
            await anyio.to_thread.run_sync(lambda: set_parked(store, inst.id, False, last_used))
        log.info(
            "instance revived",
            instance=inst.id,
            snapshot_seq=rebuilt.base_seq,
            replayed=len(rebuilt.replayed),
        )

    async def export_snapshot(self, inst: Instance) -> bytes:
        """The instance as a snapshot file (``conflict`` when a thread sleeps in a call)."""
        async with self.hold(inst):
            cap = await self.ask(inst, self.host.capture)
        if isinstance(cap, str):
            raise LabError(
                "conflict",
                f"instance {inst.id} cannot be saved as a snapshot now: {cap}",
            )
        # its busy holders name calls of this instance's journal, not of an import's
        cap.header.get("extra", {}).pop("busy_holders", None)
        return await anyio.to_thread.run_sync(snapshot.pack, cap)

    async def import_snapshot(
        self, name: str, data: bytes, owner: str = "", quotas: Quotas | None = None
    ) -> Instance:
        """A new instance from a snapshot file: checked (format, configuration, caps and
        quotas before anything is loaded; then the digest and every invariant), then
        hosted like any other, with the snapshot as its starting point."""
        limit = self.settings.max_snapshot_bytes
        if len(data) > limit:
            raise LabError(
                "too-large", f"a snapshot file may have at most {limit} bytes, not {len(data)}"
            )
        try:
            header = await anyio.to_thread.run_sync(snapshot.read_header, data)
            config = snapshot.config_from_json(header.get("config"))
        except (snapshot.SnapshotError, ConfigError) as e:
            raise LabError("validation", f"the snapshot file is not usable: {e}") from None
        self.check_config(config)
        if quotas is not None:
            async with self._create_lock:
                self._check_quota(owner, config, quotas)

        def checked() -> None:
            m = snapshot.load(data)
            try:
                m.check_invariants()
            except AssertionError as e:
                raise snapshot.SnapshotError(f"its machine is inconsistent: {e}") from None

        try:
            await anyio.to_thread.run_sync(checked)
        except snapshot.SnapshotError as e:
            raise LabError("validation", f"the snapshot file is not usable: {e}") from None
        return await self.create(name, config, None, owner=owner, quotas=quotas, base=data)

    async def settle(self) -> None:
        """Wait for the snapshots being written (tests, shutdown)."""
        while self._snapshot_tasks:
            await asyncio.gather(*self._snapshot_tasks, return_exceptions=True)

    async def snapshot_due(self, inst: Instance) -> None:
        """After calls, under the instance's lock: when the seq passed a multiple of
        ``snapshot_every`` since the last snapshot and the machine is quiescent (else a
        later call tries again: the first quiescent point after), copy its state now and
        write it in the background."""
        every = self.settings.snapshot_every
        if (
            not every
            or self.store is None
            or inst.snapshotting
            or inst.seq // every <= inst.snapshot_seq // every
        ):
            return
        try:
            pending = await self._capture(inst)
        except Exception as e:  # an optimisation: the calls that ran stay answered
            # (the compiled core, for one, cannot be captured: docs/compiled-core.md);
            # not again before the next multiple
            inst.snapshot_seq = inst.seq
            log.warning("snapshot failed", instance=inst.id, seq=inst.seq, reason=str(e))
            return
        if pending is None:
            return
        inst.snapshotting = True
        task = asyncio.get_running_loop().create_task(self._write_in_background(inst, pending))
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    async def _write_in_background(self, inst: Instance, pending: PendingSnapshot) -> None:
        try:
            await self._write(inst, pending)
            # calls made meanwhile may have made the next one due (a big batch): take it
            # now rather than at the instance's next call, which may never come
            every = self.settings.snapshot_every
            while (
                inst.seq // every > inst.snapshot_seq // every
                and self.instances.get(inst.id) is inst
                and inst.hosted
                and await self.save_snapshot(inst)
            ):
                pass
        except Exception as e:  # a snapshot is an optimisation: the server keeps going
            log.warning("snapshot failed", instance=inst.id, seq=pending.seq, reason=str(e))
        finally:
            inst.snapshotting = False

    async def save_snapshot(self, inst: Instance) -> bool:
        """Snapshot the instance now.  False when it could not be taken (a thread sleeps
        in a call) or written (the instance changed meanwhile)."""
        if self.store is None:
            return False
        async with self.hold(inst):
            pending = await self._capture(inst)
        return pending is not None and await self._write(inst, pending)

    async def _capture(self, inst: Instance) -> PendingSnapshot | None:
        """Copy the machine's state out (the caller holds its lock, so the copy is the
        state after call ``inst.seq``); None if it is not quiescent."""
        cap = await self.ask(inst, self.host.capture)
        if isinstance(cap, str):  # a thread sleeps in a call
            return None
        self.flush(inst, wait=False)
        pending = PendingSnapshot(
            cap, inst.seq, inst.generation, inst.journal_seq, inst.snapshot_seq
        )
        inst.snapshot_seq = inst.seq
        return pending

    async def _write(self, inst: Instance, pending: PendingSnapshot) -> bool:
        """Compress and store a captured state, once the journal holds every call in it
        (never ahead of the durable journal)."""
        store = self.store
        assert store is not None
        if self.journal is not None:  # the writer commits in order: past this, seq is durable
            await self.durable(self.journal.submit([], wait=True))
        data = await anyio.to_thread.run_sync(snapshot.pack, pending.capture)
        row = StoredSnapshot(
            inst.id,
            pending.generation,
            pending.seq,
            snapshot.FORMAT_VERSION,
            pending.capture.digest,
            data,
        )
        saved = await anyio.to_thread.run_sync(
            lambda: save_snapshot(store, row, pending.journal_seq)
        )
        if not saved:
            if inst.generation == pending.generation and inst.snapshot_seq == pending.seq:
                inst.snapshot_seq = pending.previous
            return False
        self.snapshots_saved += 1
        log.debug("snapshot saved", instance=inst.id, seq=pending.seq, bytes=len(data))
        return True

    def parkable(self, inst: Instance, now: float) -> bool:
        """Idle long enough, live, and nobody watching it or running a workload on it."""
        idle = self.settings.cull_idle_s
        return (
            idle > 0
            and inst.hosted
            and now - inst.last_used >= idle
            and not any(r.state in RUNNING_STATES for r in inst.workloads.values())
            and not any(
                v.instance_id == inst.id and not v.closed for v in self.stream.viewers.values()
            )
            and not inst.waiters
        )

    async def park(self, inst: Instance) -> bool:
        """Park the instance: make sure a snapshot at its current seq is stored, drop its
        machine from memory and mark it parked in the store.  False (left as it is) when
        it is not quiescent, is in use, or the snapshot could not be written."""
        store = self.store
        if store is None or not inst.hosted:
            return False
        async with inst.lock:
            if not self._in_host(inst) or self.instances.get(inst.id) is not inst:
                return False
            if not self.parkable(inst, self.clock()):
                return False
            self.flush(inst, wait=False)
            if self.journal is not None:
                await self.durable(self.journal.submit([], wait=True))
            have = await anyio.to_thread.run_sync(
                lambda: load_snapshots(store, inst.id, inst.generation, limit=1)
            )
            if have and have[0].seq == inst.seq and not inst.snapshotting:
                header = snapshot.read_header(have[0].data)
                digest = have[0].digest
                extra = header.get("extra") or {}
                kept = extra.get("summary")
                summary: dict[str, Any] = (
                    kept
                    if isinstance(kept, dict)
                    else await self.ask(inst, lambda k: self.host.view(k, "summary", {}))
                )
            else:
                pending = await self._capture(inst)  # None: a thread sleeps in a call
                if pending is None or not await self._write(inst, pending):
                    return False
                digest = pending.capture.digest
                summary = pending.capture.header["extra"]["summary"]
            inst.parked = ParkedView(summary, digest, inst.size)
            inst.hosted = False
            await self._drop(inst.key)
            inst.digest_cache = (inst.generation, inst.calls, digest)
            last_used = inst.last_used
            await anyio.to_thread.run_sync(lambda: set_parked(store, inst.id, True, last_used))
        log.info("instance parked", instance=inst.id, seq=inst.seq)
        return True

    async def cull(self) -> list[int]:
        """Park every instance idle for longer than ``cull_idle_s`` (the culler's pass;
        tests call it directly).  Returns the ids parked."""
        now = self.clock()
        parked = []
        for inst in list(self.instances.values()):
            if self.parkable(inst, now) and await self.park(inst):
                parked.append(inst.id)
        return parked

    def start_culler(self) -> None:
        """Start the idle culler (with a store and ``cull_idle_s`` > 0)."""
        if (
            self.store is None
            or not self.settings.cull_idle_s
            or self._culler is not None
            or self.cluster is not None  # the machines are the cluster's, not this node's
        ):
            return
        self._culler = asyncio.get_running_loop().create_task(self._cull_loop())

    async def _cull_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cull_interval_s)
            try:
                await self.cull()
            except Exception as e:  # keep culling later; the instances are unharmed
                log.warning("idle culler pass failed", reason=str(e))

    def entries(self, inst: Instance, after: int = 0, limit: int | None = None) -> list[Entry]:
        """The instance's journal (this generation) from seq ``after + 1``."""
        if self.store is not None:
            return list(self.store.entries(inst.id, inst.generation, after, limit))
        if inst.history is None:
            raise LabError(
                "too-large",
                f"instance {inst.id}'s journal grew past {self.settings.history_max} calls, "
                "more than this server keeps without a database (PAGELAB_DATABASE_URL)",
            )
        out = inst.history.after(after)
        return out if limit is None else out[:limit]

    async def density(self, inst: Instance, bins: int) -> dict[str, Any]:
        """The journal at a glance: seqs 1 to the instance's seq cut into at most ``bins``
        bins of ``width`` seqs each (the last may be shorter), and for each bin how many of
        its calls were journalled (``calls``) and how many of those returned NULL
        (``nulls``: no page, or the call slept).  A seq without an entry is a refused call
        (its error is never journalled).  Counted where the journal is, never sent whole,
        and outside the instance's lock: calls go on while a million entries are counted."""
        async with inst.lock:
            await self.sync(inst)
            seq, generation, history = inst.seq, inst.generation, inst.history
        if self.store is None and history is None:
            raise LabError(
                "too-large",
                f"instance {inst.id}'s journal grew past {self.settings.history_max} calls, "
                "more than this server keeps without a database (PAGELAB_DATABASE_URL)",
            )
        width = max(1, -(-seq // bins))
        count = -(-seq // width)
        store = self.store

        def counted() -> list[tuple[int, int, int]]:
            if store is not None:
                return store.density(inst.id, generation, width, seq)
            tally: dict[int, list[int]] = {}
            for e in history or ():
                if e.seq > seq:  # appended since (the list only grows)
                    break
                t = tally.setdefault((e.seq - 1) // width, [0, 0])
                t[0] += 1
                t[1] += e.result is None
            return [(b, n, z) for b, (n, z) in tally.items()]

        calls, nulls = [0] * count, [0] * count
        for b, n, z in await anyio.to_thread.run_sync(counted):
            if 0 <= b < count:
                calls[b], nulls[b] = n, z
        return {
            "generation": generation,
            "seq": seq,
            "width": width,
            "calls": calls,
            "nulls": nulls,
        }

    # ------------------------------------------------------------ instances
    def check_config(self, config: MachineConfig) -> MachineConfig:
        """Validate a configuration against the core's rules and this server's caps,
        before anything is allocated."""
        if config.max_pages > self.settings.max_pages:
            config = dataclasses.replace(config, max_pages=self.settings.max_pages)
        config.validate()  # ConfigError: page_range above max_pages, bad topology, ...
        return config

    async def create(
        self,
        name: str,
        config: MachineConfig,
        preset: str | None = None,
        entries: list[Entry] | None = None,
        owner: str = "",
        quotas: Quotas | None = None,
        base: bytes | None = None,
        near: StoredSnapshot | None = None,
    ) -> Instance:
        """Boot a new instance (and replay ``entries`` on it: a fork or an import), save
        it, and host it.  Names are unique per ``owner`` ("" in the open lab); with
        ``quotas`` (token mode), the owner's instance and page quotas are checked first.
        With ``base`` (a snapshot, checked by the caller) the machine starts from it
        instead of a boot: an imported snapshot, or a fork of an instance that was one.
        In cluster mode one creation at a time in the whole cluster."""
        if self.cluster is None:
            return await self._create(name, config, preset, entries, owner, quotas, base, near)
        async with self.cluster.creating():
            inst = await self._create(name, config, preset, entries, owner, quotas, base, near)
            await self.cluster.created(inst)
        return inst

    async def _create(
        self,
        name: str,
        config: MachineConfig,
        preset: str | None,
        entries: list[Entry] | None,
        owner: str,
        quotas: Quotas | None,
        base: bytes | None,
        near: StoredSnapshot | None,
    ) -> Instance:
        config = self.check_config(config)
        async with self._create_lock:
            if len(self.instances) + len(self._booting_names) >= self.settings.max_instances:
                raise self.refuse(
                    "max_instances",
                    "quota",
                    f"this server hosts at most {self.settings.max_instances} instances; "
                    "delete one first",
                )
            booking = (owner, name)
            if booking in self._booting_names or any(
                inst.name == name and inst.owner == owner for inst in self.instances.values()
            ):
                raise LabError("conflict", f"an instance named {name!r} already exists")
            if quotas is not None:
                self._check_quota(owner, config, quotas)
            need = self.reserve_pages(page_structs(config), "this machine")
            self._booting_names.add(booking)
            iid = self._next_id
            self._next_id += 1
        inst = Instance(iid, name, config, preset)
        inst.host = self.host
        try:
            inst.record_bound = self.settings.record_max_moves
            inst.owner = owner
            inst.base = base
            try:
                page_range = await self._start(inst, inst.key, entries or [], near)
            except HostLost:  # its host died while it booted: once more, on the restarted one
                self.hosts_lost += 1
                try:
                    page_range = await self._start(inst, inst.key, entries or [], near)
                except HostLost as e:
                    raise LabError(
                        "unavailable",
                        f"the process booting this machine stopped twice ({e}); try again",
                        retry_after=2,
                    ) from None
            self._hosted(inst, inst.key, page_range)
            kept = [replace(e, instance_id=iid, generation=0) for e in entries or []]
            if kept:
                inst.seq = kept[-1].seq
                inst.calls = len(kept)
            if self.store is not None:
                store = self.store
                await anyio.to_thread.run_sync(
                    lambda: store.add_instance(iid, name, inst.owner, preset, config, kept)
                )
                if base is not None:  # kept for good: seq 0 of the instance
                    row = StoredSnapshot(
                        iid,
                        0,
                        0,
                        snapshot.FORMAT_VERSION,
                        snapshot.read_header(base)["digest"],
                        base,
                    )
                    await anyio.to_thread.run_sync(save_snapshot, store, row, 0)
                if near is not None and near.seq:  # the fork's restart starts there too
                    copy = replace(near, instance_id=iid, generation=0)
                    await anyio.to_thread.run_sync(save_snapshot, store, copy, 0)
                    inst.snapshot_seq = near.seq
            else:
                inst.history = History(kept)
        except BaseException:
            await self._drop(inst.key)
            raise
        finally:
            self._booting_names.discard(booking)
            self._booking_pages -= need
        self.instances[inst.id] = inst
        return inst

    # ------------------------------------------------------------ the page budget
    def pages_held(self) -> int:
        """Page structures of every hosted instance and of those booting now."""
        return sum(page_structs(i.config) for i in self.instances.values()) + self._booking_pages

    def reserve_pages(self, pages: int, what: str) -> int:
        """Book ``pages`` of the server's page budget for a boot (give them back with
        ``_booking_pages -= pages`` once the machine is hosted or failed), or refuse with
        ``server-full`` before anything is allocated.  Synchronous: the check and the
        booking happen with no other task in between."""
        budget = self.page_budget
        if budget:
            held = self.pages_held()
            if held + pages > budget:
                raise self.refuse(
                    "page_budget",
                    "server-full",
                    f"this server is full: its machines hold {held} of the {budget} page "
                    f"structures it has memory for (PAGELAB_PAGE_BUDGET) and {what} needs "
                    f"{pages} more: choose a smaller machine, delete an instance you no "
                    "longer need, or ask the server's admin for room",
                )
        self._booking_pages += pages
        return pages

    async def refresh_instances(self) -> None:
        """In cluster mode, read the instance rows again: other nodes' creations and
        deletions (before a listing)."""
        if self.cluster is not None:
            await self.cluster.refreshed()

    def usage(self, owner: str) -> dict[str, int]:
        """What ``owner`` holds now, in the units of their quotas (``GET /me``; in cluster
        mode the instance rows are read again first)."""
        if self.cluster is not None:
            self.cluster.refresh()
        mine = [i for i in self.instances.values() if i.owner == owner]
        return {
            "instances": len(mine),
            "pages_total": sum(config_pages(i.config) for i in mine),
            "streams": self.stream.streams_of(owner),
            "workloads": self.workloads.running_of(owner),
        }

    def _check_quota(self, owner: str, config: MachineConfig, quotas: Quotas) -> None:
        """Refuse an instance the owner's quotas do not allow (before anything boots)."""
        how = "ask an instructor or an admin to raise it"
        mine = [i for i in self.instances.values() if i.owner == owner]
        booked = sum(1 for o, _ in self._booting_names if o == owner)
        if len(mine) + booked >= quotas.instances:
            raise self.refuse(
                "instances",
                "forbidden",
                f"your quota 'instances' allows {quotas.instances} instances and you have "
                f"{len(mine) + booked}: delete one, or {how}",
            )
        pages = config_pages(config)
        if pages > quotas.pages_per_instance:
            raise self.refuse(
                "pages_per_instance",
                "too-large",
                f"this machine has {pages} pages; your quota 'pages_per_instance' is "
                f"{quotas.pages_per_instance}: choose less memory, or {how}",
            )
        held = sum(config_pages(i.config) for i in mine)
        if held + pages > quotas.pages_total:
            raise self.refuse(
                "pages_total",
                "forbidden",
                f"your instances hold {held} pages and this one would add {pages}; your quota "
                f"'pages_total' is {quotas.pages_total}: delete one, or {how}",
            )

    async def create_preset(
        self,
        name: str,
        preset: str,
        overrides: dict[str, Any] | None = None,
        owner: str = "",
        quotas: Quotas | None = None,
    ) -> Instance:
        p = PRESETS.get(preset)
        if p is None:
            raise LabError(
                "not-found", f"there is no preset {preset!r}; presets: {', '.join(PRESETS)}"
            )
        config = p.config
        if overrides:
            config = dataclasses.replace(config, **overrides)
        return await self.create(name, config, preset, owner=owner, quotas=quotas)

    def get(self, instance_id: int) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise LabError("unknown-instance", f"there is no instance {instance_id}")
        return inst

    async def delete(self, instance_id: int) -> None:
        inst = self.get(instance_id)
        for run in inst.workloads.values():
            run.cancel("the instance was deleted")
        async with inst.lock:
            if self.store is not None:
                # its calls (a workload's too) are committed before its rows go: one
                # committed after the delete would break the foreign key and fail the
                # whole group commit, other instances' calls with it
                await self.sync(inst)
            del self.instances[instance_id]
            self.retired_calls.update(inst.calls_by_fn)
            self.retired_refusals.update(inst.refused_by_fn)
            inst.hosted = False
            await self._drop(inst.key)
            for futures in inst.waiters.values():
                for f in futures:
                    if not f.done():
                        f.set_result({"error": "the instance was deleted"})
            if self.store is not None:
                store = self.store
                await anyio.to_thread.run_sync(lambda: store.delete_instance(instance_id))
        await self.stream.instance_deleted(instance_id)

    async def reset(self, instance_id: int) -> Instance:
        """Re-boot with the same configuration (same seed: the same machine again)."""
        return await self.restore(instance_id, 0)

    async def restore(self, instance_id: int, to: int) -> Instance:
        """Step back: re-boot and replay the journal up to call ``to`` (0: a reset).  The
        instance starts a new generation whose journal is those calls; viewers get a new
        hello; workloads stop."""
        inst = self.get(instance_id)
        if to < 0 or to > inst.seq:
            raise LabError(
                "validation",
                f"instance {instance_id} can be restored to a call from 0 to {inst.seq}, not {to}",
            )
        # the new machine boots while the old one is still hosted: room for both
        need = self.reserve_pages(
            page_structs(inst.config),
            "a reset or restore (the machine boots again next to the old one)",
        )
        try:
            return await self._restore(inst, to)
        finally:
            self._booking_pages -= need

    async def _restore(self, inst: Instance, to: int) -> Instance:
        for run in inst.workloads.values():
            run.cancel(
                "the instance was reset" if to == 0 else f"the instance was restored to {to}"
            )
        async with inst.lock:
            await self.sync(inst)
            keep = (
                []
                if to == 0
                else await anyio.to_thread.run_sync(
                    lambda: [e for e in self.entries(inst) if e.seq <= to]
                )
            )
            base: StoredSnapshot | None = None
            generation = inst.generation + 1
            new_key = (inst.id, generation)  # booted next to the old one
            try:
                if self.store is not None and (to > 0 or inst.base is not None):
                    # from the newest snapshot <= to
                    rebuilt = await self._rebuild(inst, to, new_key)
                    page_range, base = rebuilt.page_range, rebuilt.snapshot
                else:
                    page_range = await self._start(inst, new_key, keep)
            except (HostLost, UnknownKey) as e:
                self.hosts_lost += 1
                inst.hosted = False  # its host restarted: the old machine went with it
                raise LabError(
                    "unavailable",
                    f"the process holding instance {inst.id} stopped while it was being "
                    f"{'reset' if to == 0 else 'restored'} ({e}); nothing changed: try again",
                    retry_after=2,
                ) from None
            kept = [replace(e, generation=generation) for e in keep]
            if self.store is not None:
                store = self.store
                await anyio.to_thread.run_sync(
                    lambda: store.new_generation(inst.id, generation, kept)
                )
                copies = [] if base is None else [replace(base, generation=generation)]
                if inst.base is not None and (base is None or base.seq):
                    digest = snapshot.read_header(inst.base)["digest"]
                    copies.append(
                        StoredSnapshot(
                            inst.id, generation, 0, snapshot.FORMAT_VERSION, digest, inst.base
                        )
                    )
                for row in copies:  # the new generation starts with those snapshots too
                    await anyio.to_thread.run_sync(save_snapshot, store, row, 0)
                if inst.parked is not None:
                    inst.parked = None
                    last_used = inst.last_used
                    await anyio.to_thread.run_sync(
                        lambda: set_parked(store, inst.id, False, last_used)
                    )
            else:
                inst.history = History(kept)
            inst.snapshot_seq = 0 if base is None else base.seq
            inst.journal_seq = kept[-1].seq if kept else 0
            inst.last_used = self.clock()
            old_key = inst.key
            inst.generation = generation
            self._hosted(inst, new_key, page_range)
            await self._drop(old_key)
            inst.calls = len(kept)
            inst.seq = to
            inst.ring.clear()
            inst.pending = []
            inst.digest_cache = None
            for futures in inst.waiters.values():
                for f in futures:
                    if not f.done():
                        f.set_result({"error": "the instance was reset or restored"})
            inst.waiters.clear()
        return inst

    async def fork(
        self, instance_id: int, at: int, name: str, owner: str = "", quotas: Quotas | None = None
    ) -> Instance:
        """A new instance with the same configuration and the first calls up to ``at``."""
        inst = self.get(instance_id)
        if at < 0 or at > inst.seq:
            raise LabError(
                "validation",
                f"instance {instance_id} can be forked at a call from 0 to {inst.seq}, not {at}",
            )
        store = self.store
        near: StoredSnapshot | None = None
        async with inst.lock:
            await self.sync(inst)
            keep = await anyio.to_thread.run_sync(
                lambda: [e for e in self.entries(inst) if e.seq <= at]
            )
            if store is not None:  # the newest sound snapshot at or before ``at``
                near = await anyio.to_thread.run_sync(self._usable, inst, at)
        return await self.create(
            name,
            inst.config,
            inst.preset,
            keep,
            owner=owner,
            quotas=quotas,
            base=inst.base,
            near=near,
        )

    def _usable(self, inst: Instance, upto: int) -> StoredSnapshot | None:
        """The newest snapshot of the instance at or before ``upto`` that reads back
        with its recorded digest (in a worker thread)."""
        assert self.store is not None
        for snap in load_snapshots(self.store, inst.id, inst.generation, upto):
            try:
                header = snapshot.read_header(snap.data)
            except snapshot.SnapshotError as e:
                log.warning("snapshot unusable", instance=inst.id, seq=snap.seq, reason=str(e))
                continue
            if header.get("digest") == snap.digest:
                return snap
        return None

    # ------------------------------------------------------------ calls
    def resolve_waiters(self, inst: Instance, resolved: dict[int, dict[str, Any]]) -> None:
        """Answer the requests waiting for threads the host saw finish (``resolved``:
        the outcomes of the ``inst.waiters`` threads that are idle again)."""
        for tid, outcome in resolved.items():
            for f in inst.waiters.pop(tid, ()):
                if not f.done():
                    f.set_result(outcome)

    async def call(
        self,
        instance_id: int,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        *,
        wait: bool = False,
        timeout_s: float | None = None,
        record: bool = True,
        source: str = "api",
    ) -> tuple[CallResult, dict[str, Any] | None, int]:
        """Run one call.  Returns the call's result, its outcome when it blocked (at once
        if it was already resumed before the call returned, else — when ``wait`` was
        asked — once another call wakes it; None if it is still asleep when the wait
        ends), and its seq.  A call on a parked thread is refused as a ``conflict``.

        Every call goes to the instance's ring for the stream; its full record (page
        moves, counter deltas, kernel events) is made when the caller asks for it
        (``record``) or someone watches the instance's events."""
        inst = self.get(instance_id)
        if fn not in REGISTRY:
            raise LabError("unknown-function", unknown_function(fn))
        waiter: asyncio.Future[dict[str, Any] | None] | None = None
        host = self.host
        async with self.hold(inst):
            watched = self.stream.records_wanted(inst.id)
            full = record or watched
            waiting = tuple(inst.waiters)
            reply = await self.ask(
                inst, lambda k: host.call(k, fn, args, ctx, full, inst.seq, waiting)
            )
            result = reply.outcome
            if isinstance(result, Refusal):
                raise LabError(result.kind, result.message)
            if not isinstance(result, CallResult):
                inst.record(fn, args, ctx, source, None, problem_of(result), watched)
                inst.calls += 1
                raise result
            seq = inst.record(fn, args, ctx, source, result, None, watched)
            inst.calls += 1
            saved = self.flush(inst)
            self.resolve_waiters(inst, reply.resolved)
            await self.snapshot_due(inst)
            done = reply.done
            if result.blocked is not None and done is None and wait:
                waiter = asyncio.get_running_loop().create_future()
                inst.waiters.setdefault(result.blocked["thread"], []).append(waiter)
        await self.durable(saved)  # acknowledged only once its journal entry is on disk
        if waiter is None:
            return result, done, seq
        limit = min(
            timeout_s if timeout_s is not None else self.settings.max_wait_s,
            self.settings.max_wait_s,
        )
        try:
            outcome = await asyncio.wait_for(asyncio.shield(waiter), timeout=limit)
        except TimeoutError:
            return result, None, seq
        return result, outcome, seq

    def apply(
        self,
        inst: Instance,
        fn: str,
        args: dict[str, Any],
        ctx: Ctx,
        source: str,
        outcome: Exception | CallResult,
        watched: bool,
    ) -> tuple[int | None, CallResult | Exception]:
        """Give a call the host ran (in a batch or a workload) its seq, ring entry and
        journal entry (under the instance's lock).  Returns its seq (None when it was
        refused before it reached the machine: an unknown function, a parked thread) and
        its result or the error that refused it."""
        if isinstance(outcome, CallResult):
            return inst.record(fn, args, ctx, source, outcome, None, watched), outcome
        if isinstance(outcome, Refusal):
            return None, LabError(outcome.kind, outcome.message)
        return inst.record(fn, args, ctx, source, None, problem_of(outcome), watched), outcome

    async def batch(
        self,
        instance_id: int,
        calls: list[tuple[str, dict[str, Any], Ctx]],
        *,
        stop_on_error: bool = False,
        record: bool = False,
    ) -> list[dict[str, Any]]:
        """Run calls one after the other; each gets its own result or error and its seq.
        Blocked calls return at once.

        A big batch runs in slices: each holds the instance's lock for at most
        ``BATCH_SLICE_S`` of kernel work, then lets other requests on the instance and
        the stream's publisher in, so one user's 200 000 calls never hold up anyone's
        small call for long.  Calls of other requests may therefore fall between two
        slices of a batch (each call's seq says where).  The answer comes once every
        call of the batch is in the journal."""
        if len(calls) > self.settings.max_batch:
            raise LabError("too-large", f"a batch holds at most {self.settings.max_batch} calls")
        inst = self.get(instance_id)
        out: list[dict[str, Any]] = []

        def take(start: int, reply: SliceReply, watched: bool) -> None:
            results, blocked, errors, records = (
                reply.results,
                reply.blocked,
                reply.errors,
                reply.records,
            )
            note = inst.note
            for j in range(reply.ran):
                k = start + j
                fn, args, ctx = calls[k]
                error = errors.get(j) if errors else None
                if error is None:
                    b = blocked.get(j) if blocked else None
                    rec = records[j] if records is not None else None
                    seq = note(fn, args, ctx, "batch", results[j], b, rec, None, watched)
                    item: dict[str, Any] = {"fn": REGISTRY[fn].name, "seq": seq}
                    item["result"] = results[j]
                    if b is not None:
                        item["blocked"] = b
                    if record:
                        item["record"] = rec
                elif isinstance(error, Refusal):
                    item = {"fn": fn, "error": {"type": error.kind, "detail": error.message}}
                else:
                    problem = problem_of(error)
                    seq = note(fn, args, ctx, "batch", None, None, None, problem, watched)
                    item = {"fn": fn, "seq": seq, "error": problem}
                item["index"] = k
                out.append(item)

        await self._sliced(inst, calls, record, stop_on_error, take)
        return out

    async def batch_columns(
        self,
        instance_id: int,
        forms: list[tuple[str, tuple[str, ...], Ctx]],
        fn: list[int],
        args: list[list[Any]],
        *,
        stop_on_error: bool = False,
        record: bool = False,
    ) -> BatchColumns:
        """``batch`` for the compact format: call ``k`` runs form ``forms[fn[k]]`` (a
        function, the names of its arguments, a context) with the values ``args[k]``.
        The calls take the same path as ``batch``'s (same refusals, seqs, ring, journal,
        slices); the answer is kept in columns (``BatchColumns``) instead of one dict per
        call.  The caller has checked that every index names a form and every row has
        one value per name."""
        if len(fn) > self.settings.max_batch:
            raise LabError("too-large", f"a batch holds at most {self.settings.max_batch} calls")
        inst = self.get(instance_id)
        cols = BatchColumns()
        results, seqs, errors, blocked = cols.results, cols.seqs, cols.errors, cols.blocked
        records = cols.records if record else None
        calls = FormCalls(forms, fn, args)
        compacts = [ctx.compact() for _, _, ctx in forms]
        run_forms = [(name, names, compacts[f]) for f, (name, names, _) in enumerate(forms)]

        def take(start: int, reply: SliceReply, watched: bool) -> None:
            got, blocks, errs, recs = reply.results, reply.blocked, reply.errors, reply.records
            forms_, fn_, args_ = calls.forms, calls.fn, calls.args
            if not errs and not watched and recs is None:
                # every call of the slice ran and nobody sees their records: the slice
                # takes its seqs, counts and journal entries in one step (no per-call
                # work here; the entries are built when the journal is read or written)
                ran = reply.ran
                first = inst.seq + 1
                inst.seq += ran
                part = fn_[start : start + ran]
                by_fn = inst.calls_by_fn
                for f, count in Counter(part).items():
                    by_fn[forms_[f][0]] += count
                inst.pending.append(
                    EntryRun(
                        inst.id,
                        inst.generation,
                        first,
                        run_forms,
                        part,
                        args_[start : start + ran],
                        got,
                    )
                )
                seqs.extend(range(first, first + ran))
                cols.add_run(start, first, ran)
                results.extend(got)
                if blocks:
                    blocked.extend((start + j, b) for j, b in sorted(blocks.items()))
                return
            note = inst.note
            built = reply.args
            for j in range(reply.ran):
                k = start + j
                f = fn_[k]
                name, names, ctx = forms_[f]
                a = built[j] if built is not None else dict(zip(names, args_[k], strict=True))
                error = errs.get(j) if errs else None
                if error is None:
                    b = blocks.get(j) if blocks else None
                    rec = recs[j] if recs is not None else None
                    seq = note(name, a, ctx, "batch", got[j], b, rec, None, watched, compacts[f])
                    seqs.append(seq)
                    cols.add_run(k, seq, 1)
                    results.append(got[j])
                    if b is not None:
                        blocked.append((k, b))
                    if records is not None:
                        records.append(rec)
                    continue
                if isinstance(error, Refusal):
                    seqs.append(None)
                    errors.append((k, {"type": error.kind, "detail": error.message}))
                else:
                    problem = problem_of(error)
                    seq = note(name, a, ctx, "batch", None, None, None, problem, watched)
                    seqs.append(seq)
                    cols.add_run(k, seq, 1)
                    errors.append((k, problem))
                results.append(None)
                if records is not None:
                    records.append(None)

        await self._sliced(inst, calls, record, stop_on_error, take)
        return cols

    async def _sliced(
        self,
        inst: Instance,
        calls: Sequence[Call],
        record: bool,
        stop_on_error: bool,
        take: Callable[[int, SliceReply, bool], None],
    ) -> None:
        """Drive a batch through the host one slice (``BATCH_SLICE_S`` of kernel work)
        per hold of the instance's lock, ``take`` each slice's outcomes (seqs, ring,
        journal) and return once all are durable."""
        n = len(calls)
        done = 0
        stopped = False
        saved: asyncio.Future[None] | None = None
        generation = inst.generation
        host = self.host
        while done < n and not stopped:
            async with self.hold(inst):
                if inst.generation != generation or self.instances.get(inst.id) is not inst:
                    raise LabError(
                        "conflict",
                        f"instance {inst.id} was reset, restored or deleted while this batch "
                        f"ran; its first {done} calls ran before that",
                    )
                start = done
                watched = self.stream.records_wanted(inst.id)
                full = record or watched
                waiting = tuple(inst.waiters)

                def ask_slice(
                    k: Key,
                    start: int = start,
                    full: bool = full,
                    waiting: tuple[int, ...] = waiting,
                ) -> Awaitable[SliceReply]:
                    return host.slice(k, calls, start, full, stop_on_error, inst.seq, waiting)

                reply = await self.ask(inst, ask_slice)
                take(start, reply, watched)
                done = start + reply.ran
                stopped = reply.stopped
                inst.calls += done - start
                last = done >= n or stopped
                saved = self.flush(inst, wait=last)
                self.resolve_waiters(inst, reply.resolved)
                await self.snapshot_due(inst)
            if not last:
                await asyncio.sleep(0)  # the lock's other waiters go first
        if saved is None and self.journal is not None and done:
            await self.sync(inst)
        await self.durable(saved)

    async def full_record(self, inst: Instance, seq: int) -> dict[str, Any]:
        """The full record of journalled call ``seq``: boot the instance's configuration
        again, replay the journal before it and run it with its record on (the same calls
        give the same machine, so the same record).  Books the page budget for the
        second machine while it lives."""
        near: StoredSnapshot | None = None
        async with inst.lock:
            await self.sync(inst)
            generation = inst.generation
            entries = await anyio.to_thread.run_sync(
                lambda: [e for e in self.entries(inst, 0, seq) if e.seq <= seq]
            )
            if self.store is not None and seq > 1:  # start from a snapshot before the call
                near = await anyio.to_thread.run_sync(self._usable, inst, seq - 1)
        if not entries or entries[-1].seq != seq:
            raise LabError(
                "not-found",
                f"call {seq} of instance {inst.id} is not in its journal: it was refused "
                "(a refused call changed nothing and has no record), or it is not a call of "
                "the instance's current timeline (GET .../journal lists them)",
            )
        need = self.reserve_pages(
            page_structs(inst.config),
            "rebuilding a call's full record (the machine boots again next to this one)",
        )
        try:
            # the machine just before the call: from the newest snapshot before it (or the
            # imported snapshot the instance started from, or a boot) and the journal after
            record, replayed = await self.host.full_record(
                inst.config,
                inst.base,
                None if near is None else near.data,
                0 if near is None else near.seq,
                entries,
                self.host.shard_of(inst.id),
            )
            self.replayed += replayed
            name_queues(record.get("events", []))
        except HostLost as e:
            self.hosts_lost += 1
            raise LabError(
                "unavailable",
                f"the process rebuilding call {seq}'s record stopped ({e}); try again",
                retry_after=2,
            ) from None
        finally:
            self._booking_pages -= need
        if inst.generation != generation:
            raise LabError(
                "conflict",
                f"instance {inst.id} was reset or restored while call {seq}'s record was "
                "rebuilt; ask again",
            )
        return record

    async def digest(self, inst: Instance) -> str:
        """The instance's state digest, cached until its next call (hashing a 64 GiB
        machine takes about a second: the in-process host does it in a worker thread)."""
        cached = inst.digest_cache
        if (
            cached is not None
            and cached[0] == inst.generation
            and cached[1] == inst.calls
            and self.cluster is None  # other nodes' calls are seen under the lock
        ):
            return cached[2]
        async with self.hold(inst):
            cached = inst.digest_cache
            if cached is not None and cached[:2] == (inst.generation, inst.calls):
                return cached[2]
            key = (inst.generation, inst.calls)
            digest = await self.ask(inst, self.host.digest)
            inst.digest_cache = (key[0], key[1], digest)
        return digest

    async def summary(self, inst: Instance) -> dict[str, Any]:
        """The instance's vmstats summary (a parked one's from its snapshot)."""
        parked = inst.parked
        if parked is not None:
            return parked.summary
        summary: dict[str, Any] = await self.view(inst.id, "summary")
        return summary

    async def refresh_summaries(self) -> None:
        """Ask the host for the summary of every hosted machine that is not in this
        process (worker processes, Ray), all at once, so that a metrics scrape counts
        their pages too (``Instance.remote_summary``).  An instance that went away or
        whose host fails meanwhile keeps its previous summary."""

        async def one(inst: Instance) -> None:
            try:
                inst.remote_summary = await self.view(inst.id, "summary")
            except Exception:  # noqa: BLE001 - a scrape never fails for one instance
                return

        remote = [
            i for i in self.instances.values() if i.hosted and i.parked is None and i.live is None
        ]
        if remote:
            await asyncio.gather(*(one(i) for i in remote))

    async def view(self, instance_id: int, name: str, /, **kwargs: Any) -> Any:
        """A named view of the instance's machine (``app.lab.hosts.shard.VIEWS``), read
        under its lock."""
        inst = self.get(instance_id)
        host = self.host
        async with self.hold(inst):
            return await self.ask(inst, lambda k: host.view(k, name, kwargs))


def _item(fn: str, seq: int | None, r: CallResult | Exception) -> dict[str, Any]:
    """A batch item: ``result`` (and ``blocked``) or ``error``, with the call's seq."""
    if isinstance(r, CallResult):
        item: dict[str, Any] = {"fn": r.fn, "seq": seq, "result": r.result}
        if r.blocked is not None:
            item["blocked"] = r.blocked
        return item
    if seq is None:
        return {"fn": fn, "error": _problem_item(r)}
    return {"fn": fn, "seq": seq, "error": _problem_item(r)}


def _problem_item(e: Exception) -> dict[str, Any]:
    """A refused batch call's ``error``: a lab refusal (unknown function, parked thread)
    or the core's error."""
    if isinstance(e, LabError):
        return {"type": e.kind, "detail": e.message}
    return problem_of(e)


def problem_of(e: Exception) -> dict[str, Any]:
    """A compact problem description of a core error (for batch items)."""
    if isinstance(e, KernelPanic):
        return {"type": "kernel-panic", "function": e.function, "detail": e.message}
    if isinstance(e, SimulatorRefusal):
        return {"type": "simulator-refusal", "function": e.function, "detail": e.message}
    if isinstance(e, WouldSleep):
        return {
            "type": "would-sleep",
            "function": e.function,
            "channel": e.channel,
            "detail": e.message,
        }
    if isinstance(e, InvalidArgument):
        return {"type": e.kind, "detail": str(e)}
    return {"type": "validation", "detail": str(e)}

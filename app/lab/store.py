"""The lab's durable store: instances and the journal of every call they acknowledged.

SQLAlchemy 2 (Core) over SQLite by default — one embedded file in WAL mode — or any URL
SQLAlchemy knows (Postgres for a shared deployment).  The schema is created and upgraded by
Alembic migrations (``app/lab/migrations``), so a database written by an older version opens
in a newer one.

The journal is the one vocabulary again: each entry is a kernel call (function, arguments,
context) with its seq on its instance.  Booting an instance's configuration and replaying
its journal in seq order gives exactly its state (the machine is deterministic), which is
the recovery after a restart, the fork, the step back and the export.

Writes go through ``JournalWriter``: one thread that takes whatever entries are waiting,
writes them in one transaction (a group commit) and then tells each waiting call that its
entry is durable.  The store itself is synchronous and is only used from that thread and
from start-up.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    case,
    create_engine,
    delete,
    event,
    false,
    func,
    insert,
    select,
    text,
    update,
)

from app.core.config import MachineConfig, NumaRange, Topology

log = structlog.get_logger(__name__)

metadata = MetaData()

instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False),
    Column("owner", String(64), nullable=False, server_default=""),
    Column("preset", String(64), nullable=True),
    Column("config", JSON, nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("created", Float, nullable=False),
    # migration 0004: the idle culler's bookkeeping
    Column("last_used", Float, nullable=True),
    Column("parked", Boolean, nullable=False, server_default=false()),
)

journal = Table(
    "journal",
    metadata,
    # 64 bits (migration 0002); on SQLite INTEGER, the rowid, which is 64 bits already
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("instance_id", Integer, ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("fn", String(64), nullable=False),
    Column("args", Text, nullable=False),
    Column("ctx", Text, nullable=False),
    Column("source", String(64), nullable=False, server_default="api"),
    Column("result", Text, nullable=True),
    Index("journal_by_seq", "instance_id", "generation", "seq", unique=True),
)

#: a machine's full state after journal entry ``seq`` (migration 0004)
snapshots = Table(
    "snapshots",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("instance_id", Integer, ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("format", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", Float, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("snapshots_by_seq", "instance_id", "generation", "seq", unique=True),
)

#: an instance's head as the API nodes of a cluster share it (migration 0005,
#: ``app.lab.cluster``)
instance_heads = Table(
    "instance_heads",
    metadata,
    Column("instance_id", Integer, primary_key=True, autoincrement=False),
    Column("generation", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("calls", BigInteger, nullable=False),
    Column("updated", Float, nullable=False),
)

MIGRATIONS = Path(__file__).with_name("migrations")
JOURNAL_COLUMNS = ("instance_id", "generation", "seq", "fn", "args", "ctx", "source", "result")


# ---------------------------------------------------------------- configurations as JSON
def config_to_json(config: MachineConfig) -> dict[str, Any]:
    """A machine configuration as plain JSON (everything ``Machine.boot`` reads)."""
    topo = config.topology
    return {
        "phys_avail": [list(r) for r in config.phys_avail],
        "cpus": config.cpus,
        "topology": None
        if topo is None
        else {"sockets": topo.sockets, "cores": topo.cores, "threads": topo.threads},
        "numa": [{"base": r.base, "size": r.size, "socket": r.socket} for r in config.numa],
        "seed": config.seed,
        "boot_stage": config.boot_stage,
        "dma_reserved": config.dma_reserved,
        "hz": config.hz,
        "max_pages": config.max_pages,
        "pagedaemon": config.pagedaemon,
        "name": config.name,
        "policy": [list(pair) for pair in config.policy],
    }


def config_from_json(data: dict[str, Any]) -> MachineConfig:
    topo = data.get("topology")
    return MachineConfig(
        phys_avail=tuple((int(b), int(e)) for b, e in data["phys_avail"]),
        cpus=int(data["cpus"]),
        topology=None
        if topo is None
        else Topology(topo["sockets"], topo["cores"], topo["threads"]),
        numa=tuple(NumaRange(r["base"], r["size"], r["socket"]) for r in data.get("numa", [])),
        seed=int(data.get("seed", 0)),
        boot_stage=data.get("boot_stage", "finished"),
        dma_reserved=int(data.get("dma_reserved", 0)),
        hz=int(data.get("hz", 100)),
        max_pages=int(data["max_pages"]) if "max_pages" in data else MachineConfig.max_pages,
        pagedaemon=bool(data.get("pagedaemon", False)),
        name=str(data.get("name", "")),
        policy=tuple((str(s), str(c)) for s, c in data.get("policy", [])),
    )


def _json(value: Any) -> str:
    """``value`` as compact JSON; the journal's common small values (an int, a bool, an
    empty dict, a dict of ints and bools such as ``{"m": 4711, "activate": true}``)
    without a trip through ``json.dumps`` (the same text)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is dict:
        if not value:
            return "{}"
        parts = []
        for k, v in value.items():
            # an identifier needs no escaping; bool is not int here (type, not isinstance)
            if type(k) is not str or not k.isidentifier() or not k.isascii():
                break
            if type(v) is int:
                parts.append(f'"{k}":{v}')
            elif type(v) is bool:
                parts.append(f'"{k}":true' if v else f'"{k}":false')
            else:
                break
        else:
            return "{" + ",".join(parts) + "}"
    return json.dumps(value, separators=(",", ":"), default=str)


@dataclass(slots=True)
class Entry:
    """One journalled call."""

    instance_id: int
    generation: int
    seq: int
    fn: str
    args: dict[str, Any]
    ctx: dict[str, Any]
    source: str = "api"
    result: Any = None

    def row(self) -> dict[str, Any]:
        """The row as column: value (for SQLAlchemy inserts)."""
        return dict(zip(JOURNAL_COLUMNS, self.values(), strict=True))

    def values(self) -> tuple[Any, ...]:
        """The row in ``JOURNAL_COLUMNS`` order (the journal writer's hot path: the common
        small values are written without a trip through ``json.dumps``)."""
        return (
            self.instance_id,
            self.generation,
            self.seq,
            self.fn,
            _json(self.args),
            _json(self.ctx),
            self.source,
            _json(self.result),
        )

    def view(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "fn": self.fn,
            "args": self.args,
            "ctx": self.ctx,
            "source": self.source,
            "result": self.result,
        }


class EntryRun:
    """Consecutive journal entries of one slice of a compact batch, kept as the batch's
    own columns: entry ``j`` is call ``j`` of the slice, form ``forms[fn[j]]`` (function,
    argument names, compact context) with the values ``args[j]``, seq ``first_seq + j``
    and the result ``results[j]``.  A slice whose calls all ran is noted in one step
    (``Lab.batch_columns``): its entries are built only when someone reads them
    (``__iter__``, ``rows``), so the lab's process does no per-call work for a journal
    entry that is written and never read again."""

    __slots__ = (
        "args",
        "first_seq",
        "fn",
        "forms",
        "generation",
        "instance_id",
        "results",
        "source",
    )

    def __init__(
        self,
        instance_id: int,
        generation: int,
        first_seq: int,
        forms: Sequence[tuple[str, tuple[str, ...], dict[str, Any]]],
        fn: list[int],
        args: list[list[Any]],
        results: list[Any],
        source: str = "batch",
    ) -> None:
        self.instance_id = instance_id
        self.generation = generation
        self.first_seq = first_seq
        self.forms = forms
        self.fn = fn
        self.args = args
        self.results = results
        self.source = source

    def __len__(self) -> int:
        return len(self.fn)

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.fn) - 1

    def __iter__(self) -> Iterator[Entry]:
        iid, generation, seq, source, forms = (
            self.instance_id,
            self.generation,
            self.first_seq,
            self.source,
            self.forms,
        )
        for f, row, result in zip(self.fn, self.args, self.results, strict=True):
            name, names, ctx = forms[f]
            yield Entry(
                iid, generation, seq, name, dict(zip(names, row, strict=True)), ctx, source, result
            )
            seq += 1

    def rows(self) -> list[tuple[Any, ...]]:
        """The entries' rows in ``JOURNAL_COLUMNS`` order (each form's context written
        once)."""
        ctx_json = [_json(ctx) for _, _, ctx in self.forms]
        iid, generation, seq, source, forms = (
            self.instance_id,
            self.generation,
            self.first_seq,
            self.source,
            self.forms,
        )
        out = []
        for f, row, result in zip(self.fn, self.args, self.results, strict=True):
            name, names, _ = forms[f]
            args = _json(dict(zip(names, row, strict=True)))
            out.append((iid, generation, seq, name, args, ctx_json[f], source, _json(result)))
            seq += 1
        return out


#: What the journal is handed: single entries, and runs of a compact batch's entries.
JournalItem = Entry | EntryRun


def item_last_seq(item: JournalItem) -> int:
    """The seq of the last entry of ``item``."""
    return item.seq if isinstance(item, Entry) else item.last_seq


class History:
    """An instance's journal kept in memory when the lab has no database: entries and
    runs (``EntryRun``) in seq order, read as entries."""

    __slots__ = ("count", "items")

    def __init__(self, items: Iterable[JournalItem] = ()) -> None:
        self.items: list[JournalItem] = []
        self.count = 0
        self.extend(items)

    def extend(self, items: Iterable[JournalItem]) -> None:
        for item in items:
            self.items.append(item)
            self.count += 1 if isinstance(item, Entry) else len(item)

    def __len__(self) -> int:
        """Entries held."""
        return self.count

    def __iter__(self) -> Iterator[Entry]:
        for item in self.items:
            if isinstance(item, Entry):
                yield item
            else:
                yield from item

    def after(self, seq: int) -> list[Entry]:
        """The entries after seq ``seq`` (runs wholly before it are skipped unread)."""
        out: list[Entry] = []
        for item in self.items:
            if item_last_seq(item) <= seq:
                continue
            if isinstance(item, Entry):
                out.append(item)
            else:
                out.extend(e for e in item if e.seq > seq)
        return out


@dataclass(frozen=True, slots=True)
class StoredInstance:
    id: int
    name: str
    owner: str
    preset: str | None
    config: MachineConfig
    generation: int
    created: float
    parked: bool = False
    last_used: float | None = None


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """One row of ``snapshots``: the machine's state after call ``seq``."""

    instance_id: int
    generation: int
    seq: int
    format: int
    digest: str
    data: bytes


#: SQLite's ``synchronous`` levels the lab accepts (``PAGELAB_SQLITE_SYNCHRONOUS``), in WAL
#: mode: NORMAL syncs the WAL only when it is checkpointed, so an acknowledged call survives
#: the server being killed (the WAL is in the operating system's hands) but the last
#: commits may be lost to a power cut or an OS crash; FULL syncs the WAL at every commit,
#: so an acknowledged call survives a power cut too (each group commit waits for the disk).
SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")


def _sqlite_pragmas(synchronous: str) -> Any:
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        # WAL: readers never block the writer
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


class Store:
    """Instances and their journals in one database."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        #: a SQLite file: its path (``ping`` checks it is still the file opened here)
        self.sqlite_file: Path | None = None
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
            path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
            if path and path != ":memory:":
                self.sqlite_file = Path(path)
                self.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        marks = {"qmark": "?", "numeric": ":{}", "named": ":c{}", "format": "%s", "pyformat": "%s"}
        mark = marks[self.engine.dialect.paramstyle]
        holders = ", ".join(mark.format(k + 1) for k in range(len(JOURNAL_COLUMNS)))
        self._journal_connection: Any = None
        #: SQLite: a Checkpointer copies the WAL back, the journal's commits never do
        self.checkpointed_elsewhere = False
        self._insert_sql = f"INSERT INTO journal ({', '.join(JOURNAL_COLUMNS)}) VALUES ({holders})"
        self.upgrade()
        self._file_identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        """The SQLite file's (device, inode), or None without a file."""
        if self.sqlite_file is None:
            return None
        st = self.sqlite_file.stat()
        return st.st_dev, st.st_ino

    def ping(self) -> None:
        """Raise unless the database answers a trivial query (``GET /readyz``): it reads the
        schema's revision, so the tables are there too.  A SQLite file must also still be
        the one opened at start: once it is deleted (or its volume unmounted) the open
        handles keep answering, but nothing written survives a restart."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT version_num FROM alembic_version")).all()
        if self.sqlite_file is not None:
            try:
                same = self._identity() == self._file_identity
            except FileNotFoundError:
                raise OSError(f"the database file {self.sqlite_file} is gone") from None
            if not same:
                raise OSError(f"the database file {self.sqlite_file} was replaced")

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (Alembic)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        if self._journal_connection is not None:
            self._journal_connection.close()
            self._journal_connection = None
        self.engine.dispose()

    # ------------------------------------------------------------------ instances
    def add_instance(
        self,
        iid: int,
        name: str,
        owner: str,
        preset: str | None,
        config: MachineConfig,
        entries: Sequence[Entry] = (),
    ) -> None:
        """A new instance, and the calls it starts with (a fork's or an import's)."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(instances).values(
                    id=iid,
                    name=name,
                    owner=owner,
                    preset=preset,
                    config=config_to_json(config),
                    generation=0,
                    created=time.time(),
                )
            )
            if entries:
                conn.execute(insert(journal), [e.row() for e in entries])

    def delete_instance(self, iid: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(journal).where(journal.c.instance_id == iid))
            conn.execute(delete(instances).where(instances.c.id == iid))

    def new_generation(self, iid: int, generation: int, keep: Sequence[Entry] = ()) -> None:
        """The instance was re-booted (reset, restore): its journal starts again, with
        ``keep`` (the calls a restore replays) as its first entries."""
        with self.engine.begin() as conn:
            conn.execute(
                update(instances).where(instances.c.id == iid).values(generation=generation)
            )
            conn.execute(
                delete(journal).where(
                    journal.c.instance_id == iid, journal.c.generation < generation
                )
            )
            if keep:
                conn.execute(insert(journal), [e.row() for e in keep])

    def load_instances(self) -> list[StoredInstance]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(instances).order_by(instances.c.id)).all()
        return [
            StoredInstance(
                r.id,
                r.name,
                r.owner,
                r.preset,
                config_from_json(r.config),
                r.generation,
                r.created,
                bool(r.parked),
                r.last_used,
            )
            for r in rows
        ]

    def next_instance_id(self) -> int:
        with self.engine.connect() as conn:
            top = conn.execute(select(func.max(instances.c.id))).scalar()
        return int(top or 0) + 1

    # ------------------------------------------------------------------ journal
    def append(self, entries: Iterable[JournalItem]) -> int:
        """Write entries in one transaction.  The journal writer's hot path: one
        ``executemany`` in the driver's own parameter style, without building SQLAlchemy
        statements per commit."""
        rows: list[tuple[Any, ...]] = []
        for e in entries:
            if isinstance(e, Entry):
                rows.append(e.values())
            else:
                rows += e.rows()
        if not rows:
            return 0
        # one DBAPI connection kept for the journal: a pool check-out and SQLAlchemy's
        # transaction bookkeeping per commit cost as much as the commit itself
        raw = self._journal_connection
        if raw is None:
            raw = self._journal_connection = self.engine.raw_connection()
            if self.checkpointed_elsewhere:  # by the journal writer's Checkpointer
                cur = raw.cursor()
                cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.close()
        try:
            cur = raw.cursor()
            cur.executemany(self._insert_sql, rows)
            cur.close()
            raw.commit()
        except Exception:
            try:
                raw.rollback()
            finally:
                raw.close()  # a broken connection is not reused
                self._journal_connection = None
            raise
        return len(rows)

    def entries(
        self, iid: int, generation: int, after: int = 0, limit: int | None = None
    ) -> Iterator[Entry]:
        """The journal of one instance generation in seq order, from seq ``after + 1``."""
        q = (
            select(journal)
            .where(
                journal.c.instance_id == iid,
                journal.c.generation == generation,
                journal.c.seq > after,
            )
            .order_by(journal.c.seq)
        )
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                yield Entry(
                    r.instance_id,
                    r.generation,
                    r.seq,
                    r.fn,
                    json.loads(r.args),
                    json.loads(r.ctx),
                    r.source,
                    None if r.result is None else json.loads(r.result),
                )

    def density(
        self, iid: int, generation: int, width: int, upto: int
    ) -> list[tuple[int, int, int]]:
        """The journal of one instance generation up to seq ``upto`` in bins of ``width``
        seqs (bin ``i`` holds seqs ``i * width + 1`` to ``(i + 1) * width``): ``(bin,
        calls, null results)`` for each bin holding a call, counted by the database (one
        indexed scan, no rows sent)."""
        bin_of = ((journal.c.seq - 1) // width).label("bin")
        nulls = func.sum(
            case((journal.c.result.is_(None) | (journal.c.result == "null"), 1), else_=0)
        )
        q = (
            select(bin_of, func.count(), nulls)
            .where(
                journal.c.instance_id == iid,
                journal.c.generation == generation,
                journal.c.seq <= upto,
            )
            .group_by(bin_of)
            .order_by(bin_of)
        )
        with self.engine.connect() as conn:
            return [(int(b), int(n), int(z or 0)) for b, n, z in conn.execute(q)]


class _Group:
    """Entries handed to the writer together: every flush of one event-loop pass joins
    the group still waiting in the queue (one queue item and one wake-up of the writer per
    group commit, not one per call).  Each waiting call has a future of its own, so one
    caller going away (its request cancelled) cancels nobody else's."""

    __slots__ = ("entries", "futures")

    def __init__(self) -> None:
        self.entries: list[JournalItem] = []
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []


# ---------------------------------------------------------------- snapshots
def save_snapshot(store: Store, snap: StoredSnapshot, journal_seq: int, keep: int = 2) -> bool:
    """Store a snapshot, unless the journal has not reached ``journal_seq`` (the last
    journalled call the snapshot contains): a snapshot is never ahead of the durable
    journal.  Keeps the newest ``keep`` of the instance's generation (and its seq 0, the
    snapshot an imported instance started from) and drops those of older generations.  False (nothing written) when the journal lags or the instance is
    gone."""
    iid, generation = snap.instance_id, snap.generation
    with store.engine.begin() as conn:
        alive = conn.execute(select(instances.c.generation).where(instances.c.id == iid)).scalar()
        if alive != generation:
            return False  # deleted, or reset/restored meanwhile
        if journal_seq:
            top = conn.execute(
                select(func.max(journal.c.seq)).where(
                    journal.c.instance_id == iid, journal.c.generation == generation
                )
            ).scalar()
            if top is None or top < journal_seq:
                return False
        conn.execute(
            delete(snapshots).where(
                snapshots.c.instance_id == iid,
                snapshots.c.generation == generation,
                snapshots.c.seq == snap.seq,
            )
        )
        conn.execute(
            insert(snapshots).values(
                instance_id=iid,
                generation=generation,
                seq=snap.seq,
                format=snap.format,
                digest=snap.digest,
                size=len(snap.data),
                created=time.time(),
                data=snap.data,
            )
        )
        newest = (
            select(snapshots.c.id)
            .where(snapshots.c.instance_id == iid, snapshots.c.generation == generation)
            .order_by(snapshots.c.seq.desc())
            .limit(keep)
        )
        kept = [r[0] for r in conn.execute(newest)]
        base = select(snapshots.c.id).where(  # an imported instance's start: kept for good
            snapshots.c.instance_id == iid,
            snapshots.c.generation == generation,
            snapshots.c.seq == 0,
        )
        kept += [r[0] for r in conn.execute(base)]
        conn.execute(
            delete(snapshots).where(snapshots.c.instance_id == iid, snapshots.c.id.not_in(kept))
        )
    return True


def load_snapshots(
    store: Store, iid: int, generation: int, upto: int | None = None, limit: int = 2
) -> list[StoredSnapshot]:
    """The instance generation's snapshots, newest first (those at seq <= ``upto``)."""
    q = select(snapshots).where(
        snapshots.c.instance_id == iid, snapshots.c.generation == generation
    )
    if upto is not None:
        q = q.where(snapshots.c.seq <= upto)
    q = q.order_by(snapshots.c.seq.desc()).limit(limit)
    with store.engine.connect() as conn:
        return [
            StoredSnapshot(r.instance_id, r.generation, r.seq, r.format, r.digest, bytes(r.data))
            for r in conn.execute(q)
        ]


def journal_stats(store: Store, iid: int, generation: int) -> tuple[int, int]:
    """How many entries the instance generation's journal holds, and its last seq."""
    q = select(func.count(), func.max(journal.c.seq)).where(
        journal.c.instance_id == iid, journal.c.generation == generation
    )
    with store.engine.connect() as conn:
        count, top = conn.execute(q).one()
    return int(count), int(top or 0)


def set_parked(store: Store, iid: int, parked: bool, last_used: float | None) -> None:
    """The idle culler's bookkeeping for one instance."""
    with store.engine.begin() as conn:
        conn.execute(
            update(instances)
            .where(instances.c.id == iid)
            .values(parked=parked, last_used=last_used)
        )


class JournalWriter:
    """Group commit: one thread writes whatever entries are waiting in one transaction,
    then resolves the waiters' futures on their event loop (one wake-up per loop).

    Entries join the newest group still in the queue (under a lock, so none is added
    to a group the thread has already taken), which keeps each instance's entries in
    seq order across commits.  On SQLite the journal's connection does not checkpoint
    the WAL itself: a second thread does it (``Checkpointer``), so that a commit is only
    the append to the WAL and never waits for a checkpoint's copy and sync."""

    def __init__(self, store: Store, observe: Callable[[float], None] | None = None) -> None:
        self.store = store
        #: told each commit's duration in seconds, from the writer's thread (a histogram)
        self.observe = observe
        self._queue: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open: _Group | None = None  # the newest group not yet taken by the thread
        self.checkpointer = Checkpointer(store) if store.is_sqlite else None
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()
        self.commits = 0
        self.entries_written = 0
        self.commit_seconds = 0.0

    def submit(self, entries: list[JournalItem], wait: bool = True) -> asyncio.Future[None] | None:
        """Queue entries (in seq order); with ``wait``, a future done once they are
        durable.  Call from the event loop thread (or with ``wait=False`` from any)."""
        loop = asyncio.get_running_loop() if wait else None
        fut: asyncio.Future[None] | None = None
        with self._lock:
            group = self._open
            if group is None:
                group = self._open = _Group()
                self._queue.put(group)
            group.entries += entries
            if loop is not None:
                fut = loop.create_future()
                group.futures.append((loop, fut))
        return fut

    def _take(self, group: _Group) -> None:
        with self._lock:
            if self._open is group:
                self._open = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._take(item)
            batch = [item]
            while True:  # everything else waiting joins this commit
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._commit(batch)
                    return
                self._take(more)
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Group]) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            n = self.store.append(e for group in batch for e in group.entries)
            self.entries_written += n
            self.commits += 1
        except Exception as e:  # the waiters are told; the server keeps running
            log.error("journal commit failed", error=str(e))
            error = e
        took = time.perf_counter() - started
        self.commit_seconds += took
        if self.observe is not None and error is None:
            self.observe(took)
        if self.checkpointer is not None and error is None:
            self.checkpointer.committed()
        # one wake-up per event loop, not one per call
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for group in batch:
            for loop, fut in group.futures:
                by_loop.setdefault(loop, []).append(fut)
        for loop, futures in by_loop.items():
            loop.call_soon_threadsafe(_settle, futures, error)

    def close(self) -> None:
        """Write what is waiting, then stop the thread (and the checkpointer)."""
        self._queue.put(None)
        self._thread.join(60)
        if self.checkpointer is not None:
            self.checkpointer.close()


class Checkpointer:
    """Copies the SQLite WAL back into the database file from a thread of its own (a
    passive checkpoint: it never blocks the journal's commits), once every
    ``EVERY_COMMITS`` group commits.  Without it each commit that pushes the WAL past
    SQLite's threshold would do the copy and its syncs itself, while its callers wait."""

    EVERY_COMMITS = 64

    def __init__(self, store: Store) -> None:
        self.store = store
        store.checkpointed_elsewhere = True
        self._wanted = threading.Event()
        self._stop = False
        self._since = 0
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The writer made one more commit (called from the writer's thread)."""
        self._since += 1
        if self._since >= self.EVERY_COMMITS:
            self._since = 0
            self._wanted.set()

    def _run(self) -> None:
        raw = None
        stop = False
        while not stop:
            self._wanted.wait()
            self._wanted.clear()
            stop = self._stop  # a last checkpoint, then stop
            try:
                if raw is None:
                    raw = self.store.engine.raw_connection()
                cur = raw.cursor()
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cur.fetchall()
                cur.close()
                self.checkpoints += 1
            except Exception as e:  # the WAL only grows meanwhile; commits are unaffected
                log.warning("WAL checkpoint failed", error=str(e))
                if raw is not None:
                    raw.close()
                    raw = None
        if raw is not None:
            raw.close()

    def close(self) -> None:
        """One last checkpoint, then stop the thread."""
        self._stop = True
        self._wanted.set()
        self._thread.join(60)


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)

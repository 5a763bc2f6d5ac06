"""Migrations: a database an older PageLab wrote opens in this one, rows intact, on SQLite
and on Postgres (``database_url``, tests/lab/conftest.py).

The old database is made the way the old code made it: Alembic up to the old revision
only, then rows written with raw SQL in that revision's schema — never with this version's
``Store``, whose schema is the newest.  A later revision therefore changes nothing here:
``Store(url)`` has to carry these rows through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.engine import make_url

from app.lab.presets import PRESETS
from app.lab.store import MIGRATIONS, Entry, Store, journal

#: the oldest revision a database may be at and still open (the first one)
OLDEST = "0001"

# ---- a database as revision 0001's code wrote it (literal values, not today's encoders)
CONFIGS_0001 = {
    1: {
        "phys_avail": [[4096, 16777216]],
        "cpus": 1,
        "topology": None,
        "numa": [],
        "seed": 1,
        "boot_stage": "finished",
        "dma_reserved": 0,
        "hz": 100,
        "max_pages": 16777216,
        "pagedaemon": True,
        "name": "",
    },
    2: {
        "phys_avail": [[4096, 655360], [1048576, 33554432]],
        "cpus": 4,
        "topology": {"sockets": 2, "cores": 2, "threads": 1},
        "numa": [
            {"base": 0, "size": 16777216, "socket": 0},
            {"base": 16777216, "size": 16777216, "socket": 1},
        ],
        "seed": 7,
        "boot_stage": "finished",
        "dma_reserved": 0,
        "hz": 100,
        "max_pages": 16777216,
        "pagedaemon": False,
        "name": "two-sockets",
    },
}
INSTANCES_0001 = [
    # id, name, owner, preset, generation, created
    (1, "default", "", "tiny-16m", 1, 1764650000.25),
    (2, "numa-box", "ann", None, 0, 1764650001.5),
]
JOURNAL_0001 = [
    # instance 1 was restored once: its journal is generation 1's
    Entry(1, 1, 1, "vm_page_alloc", {}, {"cpu": 0}, "api", 3075),
    Entry(1, 1, 2, "vm_page_wakeup", {"m": 3075}, {"cpu": 0}, "api", None),
    Entry(1, 1, 3, "tick", {"n": 5}, {}, "workload:1", {"woken": [1, 2], "note": "é"}),
    Entry(2, 0, 1, "vm_page_alloc", {"flags": ["VM_ALLOC_NORMAL"]}, {"cpu": 3}, "batch", 17),
]


def alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def revision_of(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@pytest.fixture
def database_at_0001(database_url: str) -> Iterator[str]:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), OLDEST)
            conn.execute(
                text(
                    "INSERT INTO instances (id, name, owner, preset, config, generation, created)"
                    " VALUES (:id, :name, :owner, :preset, :config, :generation, :created)"
                ),
                [
                    {
                        "id": iid,
                        "name": name,
                        "owner": owner,
                        "preset": preset,
                        "config": json.dumps(CONFIGS_0001[iid]),
                        "generation": generation,
                        "created": created,
                    }
                    for iid, name, owner, preset, generation, created in INSTANCES_0001
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO journal"
                    " (instance_id, generation, seq, fn, args, ctx, source, result)"
                    " VALUES (:instance_id, :generation, :seq, :fn, :args, :ctx, :source, :result)"
                ),
                [e.row() for e in JOURNAL_0001],
            )
    finally:
        engine.dispose()
    assert revision_of(database_url) == OLDEST
    yield database_url


def test_a_database_at_the_oldest_revision_opens_with_its_rows_intact(
    database_at_0001: str,
) -> None:
    store = Store(database_at_0001)  # upgrades to the newest revision
    try:
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert revision_of(database_at_0001) == head
        loaded = store.load_instances()
        assert [(i.id, i.name, i.owner, i.preset, i.generation, i.created) for i in loaded] == (
            INSTANCES_0001
        )
        one, two = loaded[0].config, loaded[1].config
        assert one.phys_avail == ((4096, 16777216),) and one.cpus == 1 and one.pagedaemon
        assert one.topology is None and one.numa == () and one.seed == 1
        assert two.phys_avail == ((4096, 655360), (1048576, 33554432)) and two.cpus == 4
        topo = two.topology
        assert topo is not None and (topo.sockets, topo.cores, topo.threads) == (2, 2, 1)
        assert [(r.base, r.size, r.socket) for r in two.numa] == [
            (0, 16777216, 0),
            (16777216, 16777216, 1),
        ]
        assert (two.seed, two.name, two.pagedaemon) == (7, "two-sockets", False)
        assert list(store.entries(1, 1)) == JOURNAL_0001[:3]
        assert list(store.entries(2, 0)) == JOURNAL_0001[3:]
        assert not list(store.entries(1, 0))
        # and the store carries on from there
        more = Entry(1, 1, 4, "vm_page_free", {"m": 3075}, {"cpu": 0})
        assert store.append([more]) == 1
        assert list(store.entries(1, 1, after=2)) == [JOURNAL_0001[2], more]
        assert store.next_instance_id() == 3
    finally:
        store.close()
    # opening it again is a no-op
    again = Store(database_at_0001)
    try:
        assert len(list(again.entries(1, 1))) == 4
    finally:
        again.close()


def test_journal_ids_go_past_32_bits(database_url: str) -> None:
    """Journal row ids are never reused, so a busy server's pass 2^31 (Postgres: 0002)."""
    store = Store(database_url)
    try:
        store.add_instance(1, "a", "", "tiny-16m", PRESETS["tiny-16m"].config)
        last_32_bit = 2**31 - 1
        with store.engine.begin() as conn:  # as if 2^31 - 1 calls had been journalled
            if make_url(database_url).get_backend_name() == "postgresql":
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('journal', 'id'), {last_32_bit})"
                )
            else:  # SQLite: the next rowid is the largest one + 1
                old = Entry(1, 0, 0, "tick", {}, {}).row()
                conn.execute(journal.insert().values({"id": last_32_bit, **old}))
        calls = [Entry(1, 0, seq, "tick", {"n": 1}, {}) for seq in (1, 2)]
        assert store.append(calls) == 2
        assert list(store.entries(1, 0)) == calls
        with store.engine.connect() as conn:
            assert conn.execute(select(func.max(journal.c.id))).scalar() == last_32_bit + 2
    finally:
        store.close()

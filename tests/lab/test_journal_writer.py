"""The journal writer's group commit: entries of many calls in one commit (on SQLite and on
Postgres), a future per caller that a cancelled caller cannot take from the others, the WAL
checkpoints in a thread of their own, and SQLite's ``synchronous`` level as a setting."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.lab.service import Lab
from app.lab.settings import Settings
from app.lab.store import Checkpointer, Entry, JournalWriter, Store, _json

pytestmark = pytest.mark.anyio


def _entries(iid: int, first: int, n: int) -> list[Entry]:
    return [
        Entry(iid, 0, seq, "vm_page_free", {"m": 100 + seq}, {"cpu": seq % 2}, "api", None)
        for seq in range(first, first + n)
    ]


async def test_every_submitted_entry_is_durable_when_its_future_is_done(
    database_url: str,
) -> None:
    store = Store(database_url)
    store.add_instance(1, "a", "", None, _config())
    store.add_instance(2, "b", "", None, _config())
    writer = JournalWriter(store)
    try:
        # several calls in one pass of the event loop, on two instances, and one without a
        # waiter in between: all of them are on disk once the last future is done
        futures = [
            writer.submit(_entries(1, 1, 3)),
            writer.submit(_entries(2, 1, 2)),
            writer.submit(_entries(1, 4, 2), wait=False),
            writer.submit(_entries(2, 3, 1)),
        ]
        assert futures[2] is None
        for f in futures:
            if f is not None:
                await f
        got1 = [(e.seq, e.args, e.ctx, e.result) for e in store.entries(1, 0)]
        assert got1 == [(s, {"m": 100 + s}, {"cpu": s % 2}, None) for s in range(1, 6)]
        assert [e.seq for e in store.entries(2, 0)] == [1, 2, 3]
        assert writer.entries_written == 8
    finally:
        writer.close()
        store.close()


async def test_a_cancelled_caller_does_not_cancel_the_others_acknowledgement(
    tmp_path: Path,
) -> None:
    """Calls of one group commit each wait on a future of their own: one caller going
    away (its request cancelled) leaves the others' acknowledgement alone, and its entry
    is written all the same (the call ran)."""
    store = Store(f"sqlite:///{tmp_path / 'lab.db'}")
    store.add_instance(1, "a", "", None, _config())
    writer = JournalWriter(store)
    lab = Lab(Settings(database_url="", boot_default=False))
    try:
        mine, other = writer.submit(_entries(1, 1, 1)), writer.submit(_entries(1, 2, 1))
        assert mine is not None and other is not None and mine is not other
        gone = asyncio.create_task(lab.durable(mine))
        waiting = asyncio.create_task(lab.durable(other))
        await asyncio.sleep(0)  # both wait on the commit now
        gone.cancel()
        await waiting  # acknowledged
        assert gone.cancelled() or gone.done()
        assert [e.seq for e in store.entries(1, 0)] == [1, 2]
    finally:
        writer.close()
        store.close()


async def test_the_checkpointer_copies_the_wal_back(tmp_path: Path) -> None:
    """The journal's own connection never checkpoints; the checkpointer does, every
    ``EVERY_COMMITS`` commits and when it closes.  Without it these few hundred WAL
    frames would stay below SQLite's automatic threshold (1000 pages) and the database
    file itself would hold no journal entry."""
    db = tmp_path / "lab.db"
    store = Store(f"sqlite:///{db}")
    store.add_instance(1, "a", "", None, _config())
    writer = JournalWriter(store)
    assert isinstance(writer.checkpointer, Checkpointer)
    commits = Checkpointer.EVERY_COMMITS + 6
    try:
        for k in range(commits):
            fut = writer.submit(_entries(1, k + 1, 1))
            assert fut is not None
            await fut
        writer.close()
        assert writer.checkpointer.checkpoints >= 1
        # the database file alone (its WAL left behind) has every entry
        copy = tmp_path / "copy.db"
        shutil.copyfile(db, copy)
        with sqlite3.connect(copy) as raw:
            (n,) = raw.execute("SELECT count(*) FROM journal").fetchone()
        assert n == commits
    finally:
        store.close()


def test_sqlite_synchronous_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for level, code in (("NORMAL", 1), ("FULL", 2)):
        store = Store(f"sqlite:///{tmp_path / level}.db", sqlite_synchronous=level)
        try:
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == code
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            store.close()
    assert Settings().sqlite_synchronous == "NORMAL"
    monkeypatch.setenv("PAGELAB_SQLITE_SYNCHRONOUS", "FULL")
    assert Settings().sqlite_synchronous == "FULL"
    monkeypatch.setenv("PAGELAB_SQLITE_SYNCHRONOUS", "OFF")  # would not survive a kill -9
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(ValueError, match="synchronous"):
        Store(f"sqlite:///{tmp_path / 'off.db'}", sqlite_synchronous="OFF")


def test_small_values_are_encoded_as_json_would() -> None:
    import json

    for value in (
        None,
        7,
        {},
        {"m": 4711},
        {"m": 1, "count": -3},
        {"m": True},  # a bool is not an int here
        {"object": None, "page_req": "VM_ALLOC_NORMAL"},
        {'a"b': 1},  # a key that needs escaping
        {"é": True, "m": 1},  # a key json.dumps writes escaped
        {"m": 7, "activate": True, "also_m_busy": False},
        False,
        [1, 2],
        "text",
    ):
        text = _json(value)
        assert json.loads(text) == value, (value, text)
        # the very text json.dumps writes (the journal's rows do not depend on the path)
        assert text == json.dumps(value, separators=(",", ":")), (value, text)
    assert _json({"m": True}) == '{"m":true}'


def _config():  # type: ignore[no-untyped-def]
    from app.lab.presets import PRESETS

    return PRESETS["tiny-16m"].config

"""docs/deploy.md's online SQLite backup, done as the guide says while the server runs:
the copy opens in a new server with every acknowledged call (same state digest)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.api.conftest import call, digest, serve, tiny_settings

from .dockerfile import ROOT

#: The guide's command, run in the container as `python -c` on /data.
BACKUP = "sqlite3.connect('/data/pagelab.db').backup(sqlite3.connect('/data/backup.db'))"

pytestmark = pytest.mark.anyio


def test_the_guide_gives_this_command() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert f'python -c "import sqlite3; \\\n    {BACKUP}"' in guide


async def test_an_online_backup_restores_every_acknowledged_call(tmp_path: Path) -> None:
    data = tmp_path / "data"
    live = tiny_settings(database_url=f"sqlite:///{data}/pagelab.db")
    async with serve(live) as c:
        for _ in range(3):
            await call(c, "vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
        before = await digest(c)
        # as the guide runs it: in the server's container, the server still running
        exec(BACKUP.replace("/data/", f"{data}/"), {"sqlite3": sqlite3})
        await call(c, "vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
        assert await digest(c) != before  # a call after the backup: not in the copy

    restored = tiny_settings(database_url=f"sqlite:///{data}/backup.db")
    async with serve(restored) as c:
        assert await digest(c) == before
        r = await c.get("/api/v1/instances/1")
        assert r.json()["calls"] == 3, r.text

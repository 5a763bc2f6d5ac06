"""The async client's people methods (``AsyncPageLabClient(token=...)``) against the app
in-process in token mode (the sync ones: tests/test_cli_people.py, through the CLI)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.client import AsyncPageLabClient, PageLabError
from app.lab.settings import Settings
from app.main import create_app

ADMIN_TOKEN = "admin-token-for-client-tests-0123456789ab"


@pytest.mark.anyio
async def test_people_over_the_async_client(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        auth="token",
        admin_token=ADMIN_TOKEN,
        boot_default=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncPageLabClient("http://test", transport=transport) as anonymous:
            with pytest.raises(PageLabError) as refused:
                await anonymous.me()
            assert refused.value.status == 401 and refused.value.kind == "unauthorized"
        async with AsyncPageLabClient(
            "http://test", transport=transport, token=ADMIN_TOKEN
        ) as admin:
            assert (await admin.me())["role"] == "admin"
            made = await admin.create_user("ann", "student", expires_in_s=3600)
            assert made["name"] == "ann" and made["token"].startswith("pl_")
            issued = await admin.issue_token("ann", label="laptop")
            tokens = await admin.import_roster("bob,student\ncid,observer\n")
            assert [ln.split(",")[0] for ln in tokens.splitlines()] == ["name", "bob", "cid"]
            await admin.revoke_token(issued["id"])
        async with AsyncPageLabClient(
            "http://test", transport=transport, token=issued["token"]
        ) as revoked:
            with pytest.raises(PageLabError) as refused:
                await revoked.me()
            assert refused.value.status == 401
        async with AsyncPageLabClient(
            "http://test", transport=transport, token=made["token"]
        ) as ann:
            assert (await ann.me())["name"] == "ann"

"""Fixtures and helpers for the HTTP API tests: a real app (lifespan included) behind an
httpx client on the ASGI transport, and small helpers for calls and problem documents.

The default instance is the ``tiny-16m`` preset: phys_avail ((0x1000, 16 MiB),), 1 CPU.
Its boot numbers (spec §2.2, §2.4, §4.2), worked out once here for every test:

* total = 16 MiB - 4 KiB = 16 773 120 bytes; first_page = 1; page_range = 4096 - 1 = 4095.
* minidump bitmap: nbits = 4096 -> 512 bytes -> one page: end = 16 MiB - 4096 = 16 773 120.
* npages = (16 773 120 - 4095*128) // 4096 = 16 248 960 // 4096 = 3967;
  new_end = trunc_page(16 773 120 - 524 160) = trunc_page(16 248 960) = 3967*4096, so pages
  pfn 1 .. 3966 are added: v_page_count = 3966.
* vm_low_phys_reserved = min(256 MiB, total/4 = 4 193 280) -> pfn 1 .. 1023 (pfn*4096 <
  4 193 280) go to the DMA reserve; vm_dma_reserved = total/16 = 1 048 320 bytes -> keep
  1 048 320 // 4096 = 255 pages.
* startup_finish returns [512, 1024) (512 pages), then [256, 512) (256 pages): 255 stay,
  vm_low_phys_reserved = 256 << 12 = 1 MiB; v_free_count = 3966 - 1023 + 768 = 3711,
  v_wire_count = v_dma_pages = 255.
* thresholds with P = 3966, F = 3711: v_free_min = 64 + 3966//200 = 83; v_free_reserved =
  83*4//8 + 7 = 48; v_free_severe = 41; v_interrupt_free_min = 83//8 + 7 = 17;
  v_free_target = v_paging_wait = 166; v_paging_start = 249; v_paging_target1 = 332;
  v_paging_target2 = 415; v_inactive_target = 3711 // 16 = 231.
* colours: pc = (pfn ^ pfn>>10 ^ pfn>>20) & 1023.  Colour 0 holds pfn 1025 (1025^1), 2050
  (2050^2) and 3075 (3075^3); the head is the highest address, so the first
  vm_page_alloc(NULL, 0) on CPU 0 (colour 0 + 0 % 1024 = 0) returns pfn 3075.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from app.lab.settings import Settings
from app.main import create_app

API = "/api/v1"
DEFAULT = 1  # id of the default instance booted by the lifespan
FIRST_ALLOC_PFN = 3075  # see the module docstring


def tiny_settings(**overrides: Any) -> Settings:
    return Settings(default_preset="tiny-16m", **overrides)


@asynccontextmanager
async def serve(settings: Settings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client talking to it over ASGI."""
    app = create_app(settings or tiny_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.app = app  # type: ignore[attr-defined]  # for tests that need a second client
            yield c


def second_client(c: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another client on the same running app (a second user)."""
    app = c.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with serve() as c:
        yield c


@pytest.fixture
def served() -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with served(max_batch=10) as c``: an app with other settings."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return serve(tiny_settings(**overrides))

    return make


def problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem document of ``kind`` with ``status``; return it."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["type"] == f"/problems/{kind}", body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def call(
    c: httpx.AsyncClient,
    fn: str,
    args: dict[str, Any] | None = None,
    *,
    instance: int = DEFAULT,
    ok: bool = True,
    **body: Any,
) -> httpx.Response:
    """POST one call; with ``ok`` assert it succeeded."""
    r = await c.post(f"{API}/instances/{instance}/calls/{fn}", json={"args": args or {}, **body})
    if ok:
        assert r.status_code == 200, r.text
    return r


async def result(
    c: httpx.AsyncClient, fn: str, args: dict[str, Any] | None = None, **kw: Any
) -> Any:
    """The ``result`` of a successful call."""
    return (await call(c, fn, args, **kw)).json()["result"]


async def create(c: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await c.post(f"{API}/instances", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def page(c: httpx.AsyncClient, pfn: int, instance: int = DEFAULT) -> dict[str, Any]:
    r = await c.get(f"{API}/instances/{instance}/pages/{pfn}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def digest(c: httpx.AsyncClient, instance: int = DEFAULT) -> str:
    r = await c.get(f"{API}/instances/{instance}")
    assert r.status_code == 200, r.text
    d: str = r.json()["state_digest"]
    return d

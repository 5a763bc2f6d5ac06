"""Structured logs (app/logs.py, app/api/observe.py): one access line per request, a
request id on every line logged while the request is served (structlog's and the
standard library's, in worker threads too), echoed in ``X-Request-ID``; JSON or console
text as configured."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import structlog
from fastapi import FastAPI

from app.lab.settings import Settings
from app.logs import configure_logging, reset_logging, wants_json
from app.main import create_app

from .conftest import API, DEFAULT, serve, tiny_settings

ADMIN_TOKEN = "pl_" + "a" * 40


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """Every log line of the process, as JSON, into a string (then back to defaults)."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    try:
        yield stream
    finally:
        reset_logging()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The server's lines (not those of the test's own HTTP client, in the same process)."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in parsed if line["logger"] != "httpx"]


def with_logging_route(app: FastAPI) -> FastAPI:
    """A route that logs through structlog, the standard library, and from a worker
    thread, like the lab's own code does."""

    @app.get("/test-logs")
    async def logs() -> dict[str, str]:
        structlog.get_logger("test").info("from structlog", where="loop")
        logging.getLogger("test.stdlib").warning("from the standard library")
        await anyio.to_thread.run_sync(
            lambda: structlog.get_logger("test").info("from a worker thread")
        )
        return {}

    return app


@pytest.mark.anyio
async def test_the_request_id_is_on_every_line_and_in_the_answer(out: io.StringIO) -> None:
    app = with_logging_route(create_app(tiny_settings(access_log=True)))
    async with app.router.lifespan_context(app):
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            out.seek(0)
            out.truncate()
            r = await c.get("/test-logs", headers={"X-Request-ID": "lb-7f3a.2:9"})
            assert r.headers["x-request-id"] == "lb-7f3a.2:9"
            mine = lines(out)
            r2 = await c.post(f"{API}/instances/{DEFAULT}/calls/vm_page_alloc", json={"args": {}})
    events = {line["event"]: line for line in mine}
    assert set(events) == {
        "from structlog",
        "from the standard library",
        "from a worker thread",
        "request",
    }
    assert all(line["request_id"] == "lb-7f3a.2:9" for line in mine)
    assert events["from the standard library"]["logger"] == "test.stdlib"
    access = events["request"]
    assert access["logger"] == "pagelab.access" and access["level"] == "info"
    assert (access["method"], access["route"], access["status"]) == ("GET", "/test-logs", 200)
    assert access["duration_ms"] > 0 and "principal" not in access  # the open lab: nobody
    # a request without an id gets a new one, on its line and in its answer
    call_line = [line for line in lines(out) if line["event"] == "request"][-1]
    assert call_line["route"] == "/api/v1/instances/{instance_id}/calls/{fn}"
    assert call_line["request_id"] == r2.headers["x-request-id"]
    assert len(r2.headers["x-request-id"]) == 32 and r2.headers["x-request-id"] != "lb-7f3a.2:9"


@pytest.mark.anyio
@pytest.mark.parametrize("given", ["has space", "x" * 129, 'quote"d', ""])
async def test_an_insane_request_id_is_replaced(given: str, out: io.StringIO) -> None:
    async with serve(tiny_settings(access_log=True)) as c:
        r = await c.get(f"{API}/functions", headers={"X-Request-ID": given})
    made = r.headers["x-request-id"]
    assert made != given and len(made) == 32 and int(made, 16) >= 0
    assert [line["request_id"] for line in lines(out) if line["event"] == "request"] == [made]


@pytest.mark.anyio
async def test_the_access_line_names_the_principal(out: io.StringIO, tmp_path: Path) -> None:
    settings = tiny_settings(
        database_url=f"sqlite:///{tmp_path}/a.db",
        auth="token",
        admin_name="root",
        admin_token=ADMIN_TOKEN,
        boot_default=False,
        access_log=True,
    )
    async with serve(settings) as c:
        r = await c.get(f"{API}/instances", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200
        refused = await c.get(f"{API}/instances")
        assert refused.status_code == 401
    access = [line for line in lines(out) if line["event"] == "request"]
    assert access[0]["principal"] == "root" and access[0]["user"] == "root"
    assert access[1]["status"] == 401 and "principal" not in access[1]


def test_console_text_on_a_terminal_json_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_json("auto", io.StringIO()) and not wants_json("auto", Terminal())
    assert wants_json("json", Terminal()) and not wants_json("console", io.StringIO())
    stream = io.StringIO()
    configure_logging("console", "info", stream)
    try:
        with structlog.contextvars.bound_contextvars(request_id="abc"):
            structlog.get_logger("test").info("readable", pages=3)
        logging.getLogger("test.stdlib").debug("below the level")
    finally:
        reset_logging()
    text = stream.getvalue()
    assert "readable" in text and "pages=3" in text and "request_id=abc" in text
    assert "below the level" not in text
    with pytest.raises(ValueError):
        json.loads(text.splitlines()[0])


def test_settings_choose_the_format_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGELAB_LOG_FORMAT", "console")
    monkeypatch.setenv("PAGELAB_LOG_LEVEL", "WARNING")
    s = Settings()
    assert (s.log_format, s.log_level) == ("console", "warning")


@pytest.mark.anyio
async def test_no_access_line_when_it_is_off(out: io.StringIO) -> None:
    async with serve(tiny_settings(access_log=False)) as c:
        r = await c.get(f"{API}/functions", headers={"X-Request-ID": "kept"})
    assert r.headers["x-request-id"] == "kept"  # the id is still made and echoed
    assert not [line for line in lines(out) if line["event"] == "request"]

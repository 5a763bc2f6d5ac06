"""Browser tests: Debian's Chromium driven by Playwright against a real uvicorn.

The server is ``uvicorn app.main:app`` in a subprocess on 127.0.0.1 (a free port), serving
the built page (``web/dist``; ``make test`` builds it).  Chromium is ``/usr/bin/chromium``
(never a downloaded browser build).  Without it, or without the build, these tests fail in
CI (``CI=true``) and are skipped elsewhere.

Every page collects its console errors and page errors; a test fails if any appeared that
it did not announce with ``console.allow(pattern)`` (an HTTP error the test provokes on
purpose is logged by Chromium as "Failed to load resource").
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "build" / "screenshots"
# Without the background-networking flags Chromium keeps calling home, which floods a
# closed network with connection attempts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


def _missing(what: str) -> None:
    """Fail in CI, skip elsewhere: CI must run these tests, a laptop may lack Chromium."""
    missing(what)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """``uvicorn app.main:app`` in a subprocess; ``start`` again after ``kill`` reuses the port."""

    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:  # readiness poll, bounded by the deadline
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"the server did not answer within {timeout_s} s; see {self.log}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """Stop the process for good (SIGKILL after a grace period) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def crash(self) -> None:
        """Kill at once, as a crash would: no shutdown, connections just drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.url}/api/v1{path}", timeout=30.0, **kw)
        assert r.status_code < 400, r.text
        return r.json() if r.content else None


def _server(tmp_path_factory: pytest.TempPathFactory, name: str) -> Server:
    """A server of its own: its own port and log, and no database (as the other tests:
    nothing is shared between servers or left in the work tree; a restart boots afresh)."""
    folder = tmp_path_factory.mktemp(name)
    env = {
        **os.environ,
        "PAGELAB_DEFAULT_PRESET": "tiny-16m",
        "PAGELAB_WEB_DIST": str(DIST),
        "PAGELAB_DATABASE_URL": "",
        "PYTHONUNBUFFERED": "1",
    }
    return Server(free_port(), env, folder / "server.log")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    if not (DIST / "index.html").is_file():
        _missing(
            f"the page is not built ({DIST / 'index.html'} is missing): run make test, or cd web && npm ci && npm run build"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Server]:
    """One server shared by the tests that do not stop it."""
    s = _server(tmp_path_factory, "server")
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Server]:
    """A server of the test's own, which it may kill and start again."""
    s = _server(tmp_path_factory, "own-server")
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    """Chromium for one module: Playwright's sync API keeps an event loop running in this
    thread while it lives, which the async tests that run after this module must not meet."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Console:
    """Console errors and page errors of one page; ``allow`` announces expected ones."""

    messages: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)
    #: HTTP answers >= 400 the page got, to say which request a "Failed to load" was
    http_errors: list[str] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(p.search(m) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    context.set_default_timeout(15_000)
    pg = context.new_page()
    pg.on(
        "console",
        lambda m: (
            console.messages.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "assert")
            else None
        ),
    )
    pg.on("pageerror", lambda e: console.messages.append(f"pageerror: {e}\n{e.stack}"))
    pg.on(
        "response",
        lambda r: (
            console.http_errors.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400
            else None
        ),
    )
    try:
        yield pg
    finally:
        context.close()
    bad = console.unexpected()
    assert not bad, (
        "console or page errors:\n"
        + "\n".join(bad)
        + "\nHTTP errors:\n"
        + "\n".join(console.http_errors)
    )


def save_screenshot(pg: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    pg.screenshot(path=str(path), full_page=True)
    return path


def publish_screenshot(path: Path) -> None:
    """Copy a screenshot to docs/screenshots (the README's picture) when asked to:
    PAGELAB_PUBLISH_SCREENSHOTS=1, so that ordinary test runs leave the tree clean."""
    if os.environ.get("PAGELAB_PUBLISH_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

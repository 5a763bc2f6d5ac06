"""``python -m app.serve [--host H] [--port P]``: serve PageLab as it is meant to be served
(``make run``, ``pagelab serve`` and the container all start it this way).

What differs from a bare ``uvicorn app.main:app``:

* Every setting is read first (``load_settings``): a bad one stops the start with one
  line per bad setting and exit status 2, before anything listens.
* One log format for every line, ours and uvicorn's (``app.logs``: JSON when stdout is
  not a terminal), with our access line (``app.api.observe``) instead of uvicorn's.
* SIGTERM drains the lab before uvicorn closes the connections (``Server``): streams
  close with 1001, workloads pause; then the requests in flight are answered, the
  journal flushed, the snapshots written, and the process exits 0.

* The listening socket is made here with a bounded kernel send buffer
  (``PAGELAB_STREAM_SOCKET_BUFFER``, 256 KiB; connections inherit it).  Without the bound,
  Linux lets several MiB pile up for a viewer that reads too slowly, so the stream's own
  slow-viewer handling (gaps, then 1013) would only start minutes late; with it, a slow
  viewer backs up into the stream's bounded outbox within a couple of seconds.
* The interpreter's thread switch interval is ``PAGELAB_SWITCH_INTERVAL_MS`` (1 ms, not
  5 ms), so the event loop gets the GIL back quickly from worker threads.
* The cyclic garbage collector runs every ``PAGELAB_GC_THRESHOLD`` (100 000) allocations
  instead of 700.
* The event loop is uvloop and HTTP/1.1 is parsed by httptools (uvicorn's standard
  extras, as FastAPI recommends) when both are installed; ``PAGELAB_SERVER_STACK=stock``
  or a missing package falls back to asyncio and h11.  A small call costs less CPU on
  the fast stack, a POST with a body most of all (``python -m bench http --stacks``).
* WebSocket permessage-deflate is off: every frame is built once and the same bytes go to
  every viewer, which per-connection compression would undo (it cost about 0.3 ms per
  frame per viewer, the largest cost of a viewer).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import socket
import sys
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from fastapi import FastAPI

from app.lab.settings import Settings, SettingsError, load_settings
from app.logs import configure_logging

if TYPE_CHECKING:  # app.core reads PAGELAB_CORE when imported: after the settings' check
    from app.lab.service import Lab

log = structlog.get_logger("pagelab.serve")


def listening_socket(host: str, port: int, sndbuf: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` whose accepted connections get ``sndbuf``
    bytes of kernel send buffer (0: the system's default, auto-tuned)."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(addr)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is on this machine's loopback."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def server_stack(settings: Settings) -> tuple[str, str]:
    """The event loop and HTTP protocol uvicorn runs: ``("uvloop", "httptools")`` when
    both are importable and ``PAGELAB_SERVER_STACK`` is ``auto``, else ``("asyncio",
    "h11")`` (stock uvicorn without its extras)."""
    if settings.server_stack == "auto":
        try:
            import httptools  # noqa: F401
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            return "uvloop", "httptools"
    return "asyncio", "h11"


def open_bind_refusal(host: str, settings: Settings) -> str | None:
    """Why serving ``host`` must be refused: the open mode (no accounts) lets anyone drive
    or delete any machine, so it stays on loopback unless explicitly allowed."""
    if settings.auth == "open" and not settings.allow_open and not is_loopback(host):
        return (
            f"refusing to serve {host} without accounts: in the open mode anyone who can reach "
            "the server may drive or delete every machine.  Use accounts (PAGELAB_AUTH=token, "
            "see the README), serve on 127.0.0.1, or set PAGELAB_ALLOW_OPEN=1 if this network "
            "is yours alone."
        )
    return None


class Server(uvicorn.Server):
    """uvicorn, with PageLab's drain first on SIGTERM (or Ctrl-C): uvicorn's own shutdown
    stops listening, closes every WebSocket with 1012, waits for the requests in flight
    and then runs the lifespan's shutdown.  Before that, ``Lab.drain`` closes the streams
    itself with 1001 (going away: the server stops, it is not restarting in place) and
    pauses the workloads; the lifespan's shutdown then flushes the journal and writes
    the snapshots (``Lab.shutdown``).  The process then exits 0."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # no new connections while the lab drains
            server.close()
        lab: Lab | None = getattr(self.app.state, "lab", None)
        if lab is not None:
            try:
                await lab.drain()
            except Exception:  # the rest of the shutdown must still happen
                log.exception("draining the lab failed")
        await super().shutdown(sockets)
        # uvicorn raises the signal again once it has stopped, so the process dies of
        # it (exit 143); a shutdown that went through in order is a success: exit 0
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        for line in str(e).splitlines():  # one bad setting a line
            print(f"pagelab: cannot start: {line}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m app.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument(
        "--log-level", default=None, help="overrides PAGELAB_LOG_LEVEL (debug ... critical)"
    )
    parser.add_argument("--no-access-log", action="store_true", help="no access line per request")
    ns = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if ns.log_level is not None:
        overrides["log_level"] = ns.log_level
    if ns.no_access_log:
        overrides["access_log"] = False
    if overrides:
        try:
            settings = load_settings(**overrides)
        except SettingsError as e:
            print(f"pagelab: cannot start: --log-level: {e}", file=sys.stderr)
            return 2
    refusal = open_bind_refusal(ns.host, settings)
    if refusal is not None:
        print(f"pagelab: {refusal}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    # The event loop shares the interpreter with worker threads running batches, boots
    # and workload slices: a shorter switch interval hands it the GIL sooner, so small
    # requests are not held up behind another user's heavy work.
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    # A batch or a replay allocates hundreds of thousands of small objects; with the
    # default thresholds the cyclic collector runs every 700 of them and walks the whole
    # heap often (it made parsing a 100 000-call batch 3x slower).  Collect less often.
    gc.set_threshold(settings.gc_threshold, 50, 100)
    try:
        sock = listening_socket(ns.host, ns.port, settings.stream_socket_buffer)
    except OSError as e:
        print(f"pagelab: cannot listen on {ns.host}:{ns.port}: {e.strerror}", file=sys.stderr)
        return 2
    loop, http = server_stack(settings)
    from app.main import create_app  # after the settings were found good

    application = create_app(settings)
    config = uvicorn.Config(
        application,
        loop=loop,
        http=http,
        log_config=None,  # configure_logging did it: one renderer for every logger
        log_level=settings.log_level,
        access_log=False,  # app.api.observe writes one access line per request
        ws_per_message_deflate=False,
    )
    host, port = sock.getsockname()[:2]
    log.info(
        "PageLab serving",
        url=f"http://{ns.host}:{port}/",
        api="/api/v1",
        docs="/docs",
        metrics="/metrics" if settings.metrics != "off" else None,
        address=host,
    )
    Server(config, application).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())

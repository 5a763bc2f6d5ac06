"""Every request, observed once: its request id, its access log line and its HTTP metrics
(``docs/operations.md``).  A plain ASGI middleware, the outermost of the app's own.

* **Request id.**  An incoming ``X-Request-ID`` that is sane (1 to 128 characters of
  letters, digits and ``._:-``, as proxies and load balancers make them) is kept, else one
  is made; it is bound in structlog's context variables for the request, so every line
  logged while it is served carries it (worker threads too: ``anyio.to_thread`` copies
  the context), and it is echoed in the response's ``X-Request-ID``.
* **Access log.**  One line per request when it ends (``logger: pagelab.access``):
  method, route template, status, duration in ms, request id and the principal's name
  when the request had one.  A WebSocket gets its line when it closes (status 101 if it
  was accepted, else 403).  It replaces uvicorn's own access log; ``PAGELAB_ACCESS_LOG=0``
  (or ``python -m app.serve --no-access-log``) switches it off.
* **Metrics.**  ``pagelab_http_requests_total{method,route,status}`` and
  ``pagelab_http_request_duration_seconds{method,route}``, labelled by route *template*
  (``/api/v1/instances/{instance_id}/calls``), never the raw path, so that the series
  stay few whatever paths clients send; a path no route matches is ``unmatched``.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Final

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.lab.metrics import Metrics

REQUEST_ID_HEADER: Final = b"x-request-id"
#: what an incoming request id may be (else a new one is made): no spaces, quotes or
#: control characters that could forge or break a log line
SANE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
#: the route label of a request no route matched (a 404 on any path)
UNMATCHED: Final = "unmatched"
#: HTTP latency buckets, in seconds: a small call takes well under a millisecond, a big
#: batch or a boot seconds
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

access_log = structlog.get_logger("pagelab.access")


class HttpMetrics:
    """The HTTP request metrics, in the app's registry."""

    def __init__(self, metrics: Metrics) -> None:
        self.requests = Counter(
            "pagelab_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=metrics.registry,
        )
        self.duration = Histogram(
            "pagelab_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template",
            ["method", "route"],
            buckets=BUCKETS,
            registry=metrics.registry,
        )


def request_id_of(scope: Scope) -> str:
    """The request's sane ``X-Request-ID``, else a new one (32 hex digits)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if SANE_REQUEST_ID.fullmatch(value):
                return bytes(value).decode("ascii")
            break
    return uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The template of the route that served the request (after routing), else
    ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    return UNMATCHED


def principal_of(scope: Scope) -> str | None:
    """The name of the principal the request was authenticated as, if it was
    (``app.api.auth`` leaves it in the request's state)."""
    state = scope.get("state")
    name = state.get("principal") if isinstance(state, dict) else None
    return name if isinstance(name, str) and name else None


class Observe:
    """Request id, access log and HTTP metrics for every HTTP request and WebSocket."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, access: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        #: whether to write access lines (``PAGELAB_ACCESS_LOG``, ``--no-access-log``)
        self.access = access
        # made when the app serves its first request (after logging was configured):
        # the lazy module logger would be rebuilt at every line
        self.access_log = access_log.bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            what = message["type"]
            if what == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif what == "websocket.accept":
                status = 101
                message["headers"] = [*message.get("headers", ()), header]
            elif what == "websocket.close" and status == 500:
                status = 403  # closed before the handshake: refused
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            method = scope.get("method", "WEBSOCKET") if kind == "http" else "WEBSOCKET"
            if kind == "http":
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.duration.labels(method, route).observe(seconds)
            if self.access:
                fields: dict[str, Any] = {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                }
                principal = principal_of(scope)
                if principal is not None:
                    fields["principal"] = principal
                self.access_log.info("request", **fields)
            structlog.contextvars.reset_contextvars(**bound)

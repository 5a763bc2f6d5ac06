"""The ASGI application: ``uvicorn app.main:app`` (made when first asked for, from the
environment's settings), or ``create_app(settings)``.

Boots one default instance (``PAGELAB_DEFAULT_PRESET``, the 1 GiB teaching box) at
start-up, unless ``PAGELAB_BOOT_DEFAULT=0``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import structlog
from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import (
    courses,
    errors,
    metrics,
    probes,
    quotas,
    session,
    stream,
    timeline,
    users,
    workloads,
)
from app.api.auth import instance_guard
from app.api.cookies import SessionCodec
from app.api.guesses import GuessLimiter
from app.api.observe import HttpMetrics, Observe
from app.api.routes import meta_router, router
from app.api.web import mount_web
from app.lab.metrics import Metrics
from app.lab.service import Lab, LabError
from app.lab.settings import Settings

#: Largest request body accepted (a 200 000-call batch fits comfortably).
MAX_BODY_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """Refuse request bodies above ``MAX_BODY_BYTES`` with a 413 problem: at once when
    Content-Length says so, else as soon as a chunked body has delivered too much (before
    it is parsed).  A plain ASGI middleware, so it costs a request almost nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_BODY_BYTES
        detail = f"request bodies are limited to {limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await errors.problem("too-large", detail)(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while reading the body; the
                    # problem handler renders it as /problems/too-large
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = Metrics()  # this app's own (tests make many apps in one process)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lab = Lab(settings, registry)
        app.state.lab = lab
        if lab.accounts is not None:
            accounts = lab.accounts
            token = await anyio.to_thread.run_sync(
                accounts.bootstrap_admin, settings.admin_name, settings.admin_token
            )
            if token is not None:  # a new admin: its token is shown this once
                structlog.get_logger(__name__).warning(
                    "admin bootstrapped; keep its token, it is not shown again",
                    admin=settings.admin_name,
                    token=token,
                )
            secret = settings.session_secret
            app.state.sessions = SessionCodec(
                secret.get_secret_value()
                if secret is not None
                else await anyio.to_thread.run_sync(accounts.session_secret),
                settings.session_max_age_s,
            )
        await lab.restore_all()  # every instance the store has, as its journal left it
        lab.start_culler()  # parks idle instances (PAGELAB_CULL_IDLE_S)
        if settings.boot_default and not any(i.name == "default" for i in lab.instances.values()):
            try:
                await lab.create_preset("default", settings.default_preset)
            except LabError as e:  # no room in the page budget: serve without it
                structlog.get_logger(__name__).warning(
                    "default instance not booted", reason=e.message
                )
        yield
        # after the requests in flight were answered (SIGTERM: app.serve drained the
        # streams and workloads before uvicorn closed the connections)
        await lab.shutdown()

    app = FastAPI(
        title="PageLab",
        version="0.2.0",
        description="DragonFly BSD's physical page manager, simulated: call the kernel's own "
        "functions by name on simulated machines.  What the model covers of the kernel, "
        "function by function, with the kernel's quirks it keeps and what it simplifies: "
        "[/model](/model).\n\n"
        "Watch a machine live over `WS /api/v1/instances/{id}/stream`: the protocol "
        "(version 1) is described at [/protocol/stream](/protocol/stream).",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from the page's build by mount_web
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = registry
    errors.install(app)
    # failed authentications per client address (app/api/guesses.py): one count per app
    app.state.guesses = GuessLimiter(settings.auth_failures_per_minute)

    app.add_middleware(BodyLimit)
    # the outermost of ours: its request id is bound for everything below, its clock
    # covers the whole request
    app.add_middleware(Observe, metrics=HttpMetrics(registry), access=settings.access_log)
    # every router with {instance_id} paths enforces access in one place: instance_guard
    guarded = [Depends(instance_guard)]
    app.include_router(router, dependencies=guarded)
    app.include_router(stream.router)  # a WebSocket: checks the same policy itself
    app.include_router(workloads.router, dependencies=guarded)
    app.include_router(timeline.router, dependencies=guarded)
    app.include_router(users.router, dependencies=guarded)
    app.include_router(courses.router, dependencies=guarded)
    app.include_router(session.router)  # sign-in comes before any principal
    app.include_router(quotas.router)
    app.include_router(meta_router)
    app.include_router(probes.router)  # /healthz and /readyz: no token, for orchestrators
    if settings.metrics != "off":  # off: /metrics is a 404 like any unknown path
        app.include_router(metrics.router)
    mount_web(app, settings.web_dist)
    _document_raw_bodies(app)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that parse their body themselves (off the event loop) still document it:
    their request schemas join the OpenAPI components."""
    from pydantic import BaseModel

    from app.api import compact
    from app.api.courses import ScenarioCreate
    from app.api.schemas import BatchRequest

    models: list[type[BaseModel]] = [BatchRequest, ScenarioCreate]
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        components.update(compact.openapi_components())
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``app.main.app``: the app of the environment's settings, made on first use (so
    that importing this module neither reads the settings nor builds an app)."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app

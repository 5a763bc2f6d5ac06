"""The ASGI application: ``uvicorn app.main:app``.

Boots one default instance (``PAGELAB_DEFAULT_PRESET``, the 1 GiB teaching box) at
start-up, unless ``PAGELAB_BOOT_DEFAULT=0``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from app.api import errors
from app.api.routes import meta_router, router
from app.lab.service import Lab
from app.lab.settings import Settings

#: Largest request body accepted (a 200 000-call batch fits comfortably).
MAX_BODY_BYTES = 64 * 1024 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lab = Lab(settings)
        app.state.lab = lab
        if settings.boot_default:
            await lab.create_preset("default", settings.default_preset)
        yield

    app = FastAPI(
        title="PageLab",
        version="0.2.0",
        description="DragonFly BSD's physical page manager, simulated: call the kernel's own "
        "functions by name on simulated machines.",
        lifespan=lifespan,
    )
    errors.install(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return errors.problem(
                "too-large", f"request bodies are limited to {MAX_BODY_BYTES} bytes"
            )
        return await call_next(request)

    app.include_router(router)
    app.include_router(meta_router)
    return app


app = create_app()

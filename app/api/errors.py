"""RFC 9457 problem details: one handler renders every error the service can raise.

Each kind has a type URI (``/problems/<kind>``, served as a short text page), an HTTP
status and a title; ``detail`` says in plain words what went wrong.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import ConfigError, InvalidArgument, KernelPanic, WouldSleep
from app.lab.service import LabError

PROBLEM_TYPES: dict[str, tuple[int, str, str]] = {
    # kind: (status, title, explanation)
    "validation": (
        422,
        "Invalid request",
        "A value in the request is missing, of the wrong type or out of range.",
    ),
    "unknown-instance": (
        404,
        "Unknown instance",
        "No simulated machine has this id (it may have been deleted).",
    ),
    "unknown-function": (
        404,
        "Unknown kernel function",
        "The call registry has no function of this name; GET /api/v1/functions lists them.",
    ),
    "not-found": (404, "Not found", "The resource does not exist."),
    "kernel-panic": (
        409,
        "Kernel panic refused",
        "The call would trip a kernel assertion (KASSERT) or panic. It was refused before anything changed; the message is the kernel's.",
    ),
    "would-sleep": (
        409,
        "The thread would hang",
        "The call would block forever (nobody can wake it) or spin; the machine is consistent.",
    ),
    "conflict": (
        409,
        "Conflict",
        "The request conflicts with the current state (a parked thread, a name in use).",
    ),
    "quota": (
        429,
        "Quota exceeded",
        "A server limit was reached (instances, batch size, wait time).",
    ),
    "too-large": (413, "Request too large", "The request exceeds a size limit of this server."),
}


def problem(kind: str, detail: str, instance: str | None = None, **extra: Any) -> JSONResponse:
    status, title, _ = PROBLEM_TYPES[kind]
    body: dict[str, Any] = {
        "type": f"/problems/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        msg = err.get("msg", "invalid value")
        errors.append({"field": loc, "message": msg})
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "the request is not valid", errors


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return problem("validation", detail, str(request.url.path), errors=errors)

    @app.exception_handler(InvalidArgument)
    async def on_invalid(request: Request, exc: InvalidArgument) -> JSONResponse:
        return problem("validation", str(exc), str(request.url.path))

    @app.exception_handler(ConfigError)
    async def on_config(request: Request, exc: ConfigError) -> JSONResponse:
        return problem("validation", str(exc), str(request.url.path))

    @app.exception_handler(KernelPanic)
    async def on_panic(request: Request, exc: KernelPanic) -> JSONResponse:
        return problem(
            "kernel-panic",
            f"panic: {exc.message}",
            str(request.url.path),
            function=exc.function,
            panic=exc.message,
        )

    @app.exception_handler(WouldSleep)
    async def on_sleep(request: Request, exc: WouldSleep) -> JSONResponse:
        return problem(
            "would-sleep",
            str(exc),
            str(request.url.path),
            function=exc.function,
            channel=exc.channel,
        )

    @app.exception_handler(LabError)
    async def on_lab(request: Request, exc: LabError) -> JSONResponse:
        return problem(exc.kind, exc.message, str(request.url.path), **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "validation", 413: "too-large"}.get(
            exc.status_code, "validation"
        )
        status, title, _ = PROBLEM_TYPES[kind]
        body = {
            "type": f"/problems/{kind}",
            "title": title,
            "status": exc.status_code,
            "detail": str(exc.detail),
        }
        return JSONResponse(
            body, status_code=exc.status_code, media_type="application/problem+json"
        )

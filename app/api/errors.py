"""RFC 9457 problem details: one handler renders every error the service can raise.

Each kind has a type URI (``/problems/<kind>``, served as a short text page), an HTTP
status and a title; ``detail`` says in plain words what went wrong.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core.errors import (
    ConfigError,
    InvalidArgument,
    KernelPanic,
    SimulatorRefusal,
    WouldSleep,
)
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
        "No simulated machine you may see has this id or name (it may have been deleted).",
    ),
    "unknown-function": (
        404,
        "Unknown kernel function",
        "The call registry has no function of this name; GET /api/v1/functions lists them.",
    ),
    "unauthorized": (
        401,
        "Unauthorized",
        "This server needs a bearer token (Authorization: Bearer <token>); the request had "
        "none, or one that is unknown, revoked or expired. Ask your instructor for one.",
    ),
    "forbidden": (
        403,
        "Forbidden",
        "Your role may not do this (an admin or your course's instructor can).",
    ),
    "csrf": (
        403,
        "Cross-site request refused",
        "A change made with the page's sign-in cookie needs the X-CSRF-Token header of that "
        "session and must come from this server's own page (its Origin). Reload the page, "
        "or sign in again.",
    ),
    "not-found": (404, "Not found", "The resource does not exist."),
    "no-such-page": (
        404,
        "No such page",
        "The pfn names no page of this machine: it is outside its memory, or in a hole the "
        "VM does not manage (GET /api/v1/instances/{id} shows phys_avail and the first "
        "page). A page view and a call's argument answer it alike.",
    ),
    "kernel-panic": (
        409,
        "Kernel panic refused",
        "The call would trip a kernel assertion (KASSERT) or panic. It was refused before anything changed; the message is the kernel's.",
    ),
    "simulator-refusal": (
        409,
        "Refused by the simulator",
        "The kernel would not panic here, but the call would leave a state the simulator "
        "does not model (a busy count wrapping into its flag bits, a free page the allocator "
        "would later trip over, a locking rule the kernel states but does not assert). It "
        "was refused before anything changed; the detail says which guard and why.",
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
    "rate-limited": (
        429,
        "Too many requests",
        "Too many requests in a short time: more kernel calls than your calls_per_s quota "
        "allows, or too many failed sign-ins or bad tokens from your address. The "
        "Retry-After header (and retry_after in the body) says how many seconds to wait. "
        "An instructor or an admin can raise a quota (GET /api/v1/me shows yours).",
    ),
    "server-full": (
        507,
        "Server full",
        "The server has no memory left for another simulated machine (its page budget, "
        "PAGELAB_PAGE_BUDGET); nothing was allocated. Choose a smaller machine, delete an "
        "instance, or ask the server's admin.",
    ),
    "unavailable": (
        503,
        "Not saved",
        "The call ran but its journal entry could not be written, so it is not acknowledged; "
        "the server's database is unreachable or full.",
    ),
    "not-ready": (
        503,
        "Not ready",
        "This server cannot take requests yet, or no longer can: one of its readiness checks "
        "(GET /readyz: the database, the instances restored at start-up, the compute engine) "
        "fails. Other servers of the lab may answer; the detail names the failing check.",
    ),
    "too-large": (413, "Request too large", "The request exceeds a size limit of this server."),
    "bad-request": (
        400,
        "Malformed request",
        "The request body could not be read (not UTF-8 JSON, or truncated).",
    ),
    "method-not-allowed": (
        405,
        "Method not allowed",
        "This path does not answer this HTTP method; the Allow header lists those it does.",
    ),
}

#: The problem+json body as an OpenAPI schema (RFC 9457 members plus our extensions).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<kind>: what the kind means"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what went wrong, in plain words"},
        "instance": {"type": "string", "description": "the request path"},
    },
    "additionalProperties": True,
}

#: Every error status the API answers with, documented on every operation (``responses=``).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": HTTPStatus(status).phrase + " (problem+json)",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    }
    for status in sorted({status for status, _, _ in PROBLEM_TYPES.values()})
}
PROBLEM_RESPONSES[429]["headers"] = {
    "Retry-After": {
        "description": "rate-limited: whole seconds to wait before the request can pass",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
    }
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


#: Media types whose bodies are JSON (``application/json``, ``…+json``).
def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _body_problem(request: Request, errors: list[dict[str, Any]]) -> str | None:
    """A message naming the fix when the body as a whole is wrong: missing, sent with a
    content type that is not JSON, or not JSON at all (pydantic would say ``Field
    required`` or ``JSON decode error`` about a field with no name)."""
    whole = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
    if not whole:
        return None
    content_type = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    empty = length == "0" or (length is None and "transfer-encoding" not in request.headers)
    missing = any(e.get("type") == "missing" and tuple(e["loc"]) == ("body",) for e in whole)
    invalid = [e for e in whole if e.get("type") in ("json_invalid", "model_attributes_type")]
    if (missing or invalid) and empty:
        return (
            f"this request needs a JSON body and has none: send a JSON object with "
            f"Content-Type: application/json (see the example for {request.method} "
            f"{request.url.path} in /docs)"
        )
    if content_type and not _is_json(content_type) and (missing or invalid):
        return (
            f"the body must be JSON sent with Content-Type: application/json; this request "
            f"said Content-Type: {content_type.partition(';')[0].strip()}"
        )
    if not content_type and (missing or invalid):
        return "the body must be a JSON object sent with Content-Type: application/json"
    for e in invalid:
        if e.get("type") == "json_invalid":
            loc = tuple(e["loc"])
            where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            reason = str(e.get("ctx", {}).get("error", "")) or e.get("msg", "")
            return (
                f"the body is not valid JSON{where} ({reason}): check its quotes, commas and "
                "brackets (and that it was sent whole)"
            )
    if invalid:
        return "the body must be a JSON object ({...}), not a list, a string or a number"
    return None


def _validation_detail(
    exc: RequestValidationError, request: Request
) -> tuple[str, list[dict[str, Any]]]:
    raw = list(exc.errors())
    whole = _body_problem(request, raw)
    if whole is not None:
        return whole, [{"field": "body", "message": whole}]
    errors = []
    parts = []
    for err in raw:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        msg = err.get("msg", "invalid value")
        errors.append({"field": loc or "body", "message": msg})
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "the request is not valid", errors


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc, request)
        return problem("validation", detail, str(request.url.path), errors=errors)

    @app.exception_handler(InvalidArgument)
    async def on_invalid(request: Request, exc: InvalidArgument) -> JSONResponse:
        kind = exc.kind if exc.kind in PROBLEM_TYPES else "validation"
        return problem(kind, str(exc), str(request.url.path))

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

    @app.exception_handler(SimulatorRefusal)
    async def on_refusal(request: Request, exc: SimulatorRefusal) -> JSONResponse:
        return problem(
            "simulator-refusal",
            str(exc),
            str(request.url.path),
            function=exc.function,
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
        response = problem(exc.kind, exc.message, str(request.url.path), **exc.extra)
        if exc.kind == "unauthorized":
            response.headers["WWW-Authenticate"] = 'Bearer realm="pagelab"'
        retry_after = exc.extra.get("retry_after")
        if isinstance(retry_after, int):
            response.headers["Retry-After"] = str(max(1, retry_after))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {
            400: "bad-request",
            404: "not-found",
            405: "method-not-allowed",
            413: "too-large",
        }.get(exc.status_code, "validation")
        status, title, _ = PROBLEM_TYPES[kind]
        body = {
            "type": f"/problems/{kind}",
            "title": title,
            "status": exc.status_code,
            "detail": str(exc.detail),
        }
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110 §15.5.6: Allow lists every method of the resource; Starlette's own
            # header names only the first route that matched the path
            headers["Allow"] = _allowed_methods(request)
        return JSONResponse(
            body,
            status_code=exc.status_code,
            media_type="application/problem+json",
            headers=headers,
        )


def _allowed_methods(request: Request) -> str:
    """The methods some route answers on this path, asked of the routes themselves."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)

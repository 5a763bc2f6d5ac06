"""Who is asking, and may they touch this instance: the API's side of ``app.lab.access``.

* ``get_principal`` (a dependency): in the open lab (``PAGELAB_AUTH=open``, the default)
  everyone is ``ANONYMOUS``, an admin-like principal owning ``""``; in token mode the
  ``Authorization: Bearer <token>`` header is looked up (in a worker thread) and a missing,
  unknown, revoked or expired token answers 401 ``unauthorized``.
* ``instance_guard`` (a router-level dependency on every router with ``{instance_id}``
  paths): the one place instance access is enforced.  Reads (GET, HEAD, and POST
  ``…/fork``) need ``can_read``, everything else ``can_write``; a refusal answers exactly
  like a missing instance (404 ``unknown-instance``), so nothing leaks.
* ``websocket_principal`` and ``origin_allowed``: the same for the stream, whose token
  may also come as a ``token`` query parameter (browsers cannot set headers on a
  WebSocket) and whose ``Origin`` must be the server's own or an allowed one.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from app.lab.access import ANONYMOUS, Principal
from app.lab.accounts import Quotas
from app.lab.quota import RateLimited
from app.lab.service import Lab, LabError

#: POSTs that only read their instance (they make a new one of the caller's)
READ_POST_SUFFIXES = ("/fork",)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate(lab: Lab, token: str | None) -> Principal | None:
    """The principal of ``token`` (ANONYMOUS in the open lab), None if refused."""
    accounts = lab.accounts
    if accounts is None:
        return ANONYMOUS
    if not token:
        return None
    return await anyio.to_thread.run_sync(accounts.authenticate, token)


async def get_principal(request: Request) -> Principal:
    lab: Lab = request.app.state.lab
    token = bearer(request.headers.get("authorization"))
    principal = await authenticate(lab, token)
    if principal is None:
        raise LabError(
            "unauthorized",
            "this request needs a valid token: send Authorization: Bearer <token>"
            if token is None
            else "the token is unknown, revoked or expired",
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def quotas_of(lab: Lab, principal: Principal) -> Quotas | None:
    """The principal's quotas in token mode (None in the open lab: no quotas).  Cached
    for a moment (``app.lab.quota.QuotaCache``): most requests need no database."""
    cache = lab.quota_cache
    if cache is None:
        return None
    quotas = cache.cached(principal.name)
    if quotas is None:
        try:
            quotas = await anyio.to_thread.run_sync(cache.load, principal.name)
        except ValueError:  # deleted since its token was checked
            raise LabError("unauthorized", "the token's user no longer exists") from None
    return quotas


async def charge(lab: Lab, principal: Principal, calls: int) -> None:
    """Take ``calls`` kernel calls from the principal's call-rate bucket (token mode), or
    refuse the request before it runs: 429 ``rate-limited`` with ``Retry-After``, or 413
    ``too-large`` for a request the bucket could never hold."""
    quotas = await quotas_of(lab, principal)
    if quotas is None:
        return
    try:
        lab.call_rate.take(principal.name, calls, quotas)
    except RateLimited as e:
        if e.retry_after is None:
            raise LabError(e.kind, e.message) from None
        raise LabError(e.kind, e.message, retry_after=e.retry_after) from None


def is_read(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") or (
        method == "POST" and path.rstrip("/").endswith(READ_POST_SUFFIXES)
    )


def unknown(instance_id: int) -> LabError:
    """What a refusal answers: word for word what a missing instance answers."""
    return LabError("unknown-instance", f"there is no instance {instance_id}")


async def may_read(lab: Lab, principal: Principal, instance_id: int) -> bool:
    inst = lab.instances.get(instance_id)
    if inst is None:
        return False
    if principal.role == "admin" or lab.accounts is None:
        return True
    return await anyio.to_thread.run_sync(lab.access.can_read, principal, inst)


async def instance_guard(request: Request, principal: PrincipalDep) -> None:
    """Refuse (as unknown) an instance the principal may not read, or write."""
    raw = request.path_params.get("instance_id")
    if raw is None or principal.role == "admin":
        return  # not an instance path, or allowed everything (the open lab too)
    lab: Lab = request.app.state.lab
    try:
        instance_id = int(raw)
    except (TypeError, ValueError):
        return  # the route answers 422
    inst = lab.instances.get(instance_id)
    if inst is None:
        return  # the route answers 404 itself
    if is_read(request.method, request.url.path):
        allowed = await may_read(lab, principal, instance_id)
    else:
        allowed = lab.access.can_write(principal, inst)
    if not allowed:
        raise unknown(instance_id)


async def websocket_principal(ws: WebSocket) -> Principal | None:
    """The stream's principal: token from ``?token=`` or the Authorization header."""
    lab: Lab = ws.app.state.lab
    token = ws.query_params.get("token") or bearer(ws.headers.get("authorization"))
    return await authenticate(lab, token)


def origin_allowed(conn: HTTPConnection) -> bool:
    """In token mode a browser's ``Origin`` must be this server or an allowed origin
    (``PAGELAB_ALLOWED_ORIGINS``); clients that send none (not browsers) pass."""
    lab: Lab = conn.app.state.lab
    if lab.accounts is None:
        return True
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in {o.rstrip("/") for o in lab.settings.allowed_origins}:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == conn.headers.get("host")

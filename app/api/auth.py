"""Who is asking, and may they touch this instance: the API's side of ``app.lab.access``.

* ``get_principal`` (a dependency): in the open lab (``PAGELAB_AUTH=open``, the default)
  everyone is ``ANONYMOUS``, an admin-like principal owning ``""``; in token mode the
  ``Authorization: Bearer <token>`` header is looked up (in a worker thread) and a missing,
  unknown, revoked or expired token answers 401 ``unauthorized`` (and counts as a guess:
  ``app.api.guesses``).  Without the header, the page's session cookie is accepted, with
  its CSRF token on changes (``app.api.cookies``).
* ``instance_guard`` (a router-level dependency on every router with ``{instance_id}``
  paths, which hold instance references: ``app.api.refs``): the one place instance
  access is enforced.  Reads (GET, HEAD, and POST ``…/fork``) need ``can_read``,
  everything else ``can_write``; a refusal answers exactly like a missing instance (404
  ``unknown-instance``, echoing the reference as typed), so nothing leaks.
* ``websocket_principal`` and ``origin_allowed``: the same for the stream, whose token
  may also come as a ``token`` query parameter (browsers cannot set headers on a
  WebSocket) or as the session cookie, and whose ``Origin`` must be the server's own or an
  allowed one.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import anyio.to_thread
import structlog
from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from app.lab.access import ANONYMOUS, Principal
from app.lab.accounts import Quotas
from app.lab.quota import RateLimited
from app.lab.service import Lab, LabError

from .cookies import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, SessionCodec
from .guesses import GuessLimiter, client_address
from .refs import resolve, unknown

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
    """The Bearer token's principal, else the session cookie's (``app.api.cookies``),
    whose changes also need their CSRF token; 401 without either.  Its name goes into
    the request's log context and access line (``app.api.observe``)."""
    principal = await _principal(request)
    noted(request, principal)
    return principal


def noted(conn: HTTPConnection, principal: Principal | None) -> None:
    """Remember who the request is (its state, for the access line) and bind ``user`` in
    the log context of the lines logged while it is served (not in the open lab, where
    everyone is the same nobody)."""
    if principal is not None and principal.name:
        conn.state.principal = principal.name
        structlog.contextvars.bind_contextvars(user=principal.name)


async def _principal(request: Request) -> Principal:
    lab: Lab = request.app.state.lab
    if lab.accounts is None:
        return ANONYMOUS
    header = request.headers.get("authorization")
    token = bearer(header)
    cookie = request.cookies.get(SESSION_COOKIE)
    if token is None and header is None and cookie:
        principal = await session_principal(request, lab, cookie)
        if principal is None:
            raise LabError("unauthorized", SESSION_ENDED)
        if request.method not in SAFE_METHODS:
            check_csrf(request, cookie)
        return principal
    if token is None:
        raise LabError(
            "unauthorized",
            "this request needs a valid token: send Authorization: Bearer <token>, "
            "or sign in on the page",
        )
    principal = await token_principal(request, lab, token)
    if principal is None:
        raise LabError("unauthorized", "the token is unknown, revoked or expired")
    return principal


SESSION_ENDED = (
    "your sign-in has ended (signed out, timed out, or its token was revoked or expired): "
    "sign in again with your token"
)


async def token_principal(conn: HTTPConnection, lab: Lab, token: str) -> Principal | None:
    """The token's principal, None if refused; a refusal counts against the client's
    address, and an address with too many raises 429 ``rate-limited`` before the token
    is even looked at (``app.api.guesses``)."""
    guesses: GuessLimiter = conn.app.state.guesses
    address = client_address(conn)
    guesses.check(address)
    principal = await authenticate(lab, token)
    if principal is None:
        guesses.failed(address)
    return principal


async def session_principal(conn: HTTPConnection, lab: Lab, cookie: str) -> Principal | None:
    """The principal of a session cookie, None if it is not valid or its session ended."""
    accounts = lab.accounts
    codec: SessionCodec | None = getattr(conn.app.state, "sessions", None)
    if accounts is None or codec is None:
        return None
    session = codec.decode(cookie)
    if session is None:
        return None
    return await anyio.to_thread.run_sync(
        accounts.session_principal, session.token_id, session.issued, codec.max_age_s
    )


def check_csrf(request: Request, cookie: str) -> None:
    """Refuse (403 ``csrf``) a cookie-authenticated change that comes from a foreign
    Origin or lacks its session's ``X-CSRF-Token``."""
    if not origin_allowed(request):
        raise LabError(
            "csrf",
            f"changes from pages of {request.headers.get('origin')} are refused: use "
            "PageLab's own page, or send the token as Authorization: Bearer",
        )
    codec: SessionCodec = request.app.state.sessions
    header = request.headers.get(CSRF_HEADER)
    if not header:
        raise LabError(
            "csrf",
            "this change needs the X-CSRF-Token header (the pagelab_csrf cookie's value, "
            "also given by POST /api/v1/session): reload the page",
        )
    if not codec.csrf_ok(cookie, header):
        raise LabError(
            "csrf",
            "the X-CSRF-Token header does not belong to this sign-in: reload the page, or "
            "sign in again",
        )


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
    inst = resolve(request, principal, raw)  # a reference (42, box, ann:box); 422 if not one
    if inst is None:
        return  # the route answers 404 itself
    if is_read(request.method, request.url.path):
        allowed = await may_read(lab, principal, inst.id)
    else:
        allowed = lab.access.can_write(principal, inst)
    if not allowed:
        raise unknown(raw)  # what the caller typed, as for a missing one


async def websocket_principal(ws: WebSocket) -> Principal | None:
    """The stream's principal: token from ``?token=`` or the Authorization header, else
    the session cookie (a browser sends it with the handshake; the caller has checked
    the Origin).  Raises 429 ``rate-limited`` as ``token_principal`` does."""
    lab: Lab = ws.app.state.lab
    if lab.accounts is None:
        return ANONYMOUS
    token = ws.query_params.get("token") or bearer(ws.headers.get("authorization"))
    if token:
        return await token_principal(ws, lab, token)
    cookie = ws.cookies.get(SESSION_COOKIE)
    return await session_principal(ws, lab, cookie) if cookie else None


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

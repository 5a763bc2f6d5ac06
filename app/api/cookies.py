"""Browser sessions (issue 8 §1): a signed, HttpOnly cookie and a CSRF token bound to it.

``POST /api/v1/session`` (``app.api.session``) exchanges a token for two cookies:

* ``pagelab_session``: HttpOnly, SameSite=Strict, Path=/, Secure over https.  Its value
  is ``{"t": token id, "i": sign-in time}`` signed with HMAC-SHA256 (itsdangerous); it holds no
  secret and never the token.  Every request re-checks it against the token's row
  (``Accounts.session_principal``): revoking or expiring the token, signing out, or
  ``PAGELAB_SESSION_MAX_AGE_S`` ends the session.
* ``pagelab_csrf``: readable by the page's script (not HttpOnly), the CSRF token:
  an HMAC of the session cookie under a key of its own (the "signed double-submit"
  pattern), so it cannot be made without the server's key and is worthless with another
  session.  A cookie-authenticated POST, PUT, PATCH or DELETE must repeat it in the
  ``X-CSRF-Token`` header and, if it sends an ``Origin``, come from this server (or
  ``PAGELAB_ALLOWED_ORIGINS``); else 403 ``csrf``.  Bearer-authenticated requests are
  exempt: a browser never adds an Authorization header by itself.

SameSite=Strict rather than Lax: the page is one same-origin application whose HTML and
scripts need no sign-in, so no top-level navigation from another site ever needs the
cookie; Strict keeps it off every cross-site request, GETs and WebSocket handshakes
included.

The signing key is ``PAGELAB_SESSION_SECRET``, else one generated once and kept in the
database's ``settings`` table (``Accounts.session_secret``), so that every host sharing
the database accepts every host's cookies.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadData, URLSafeSerializer
from starlette.requests import HTTPConnection
from starlette.responses import Response

SESSION_COOKIE: Final = "pagelab_session"
CSRF_COOKIE: Final = "pagelab_csrf"
CSRF_HEADER: Final = "x-csrf-token"
#: methods that change nothing: no CSRF token needed
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    """What a valid session cookie says: signed in with token ``token_id`` at ``issued``."""

    token_id: int
    issued: float


class SessionCodec:
    """Signs and reads session cookies, and derives their CSRF tokens."""

    def __init__(self, secret: str, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._serializer = URLSafeSerializer(
            secret, salt="pagelab.session", signer_kwargs={"digest_method": hashlib.sha256}
        )
        # a key of its own, so that a CSRF token is never a valid signature of anything
        self._csrf_key = hmac.new(secret.encode(), b"pagelab.csrf", hashlib.sha256).digest()

    def encode(self, token_id: int, issued: float) -> str:
        return str(self._serializer.dumps({"t": token_id, "i": issued}))

    def decode(self, cookie: str) -> Session | None:
        """The session a cookie names, or None if it is not one this server signed."""
        if len(cookie) > 512:
            return None
        try:
            data = self._serializer.loads(cookie)
        except BadData:
            return None
        if not isinstance(data, dict):
            return None
        token_id, issued = data.get("t"), data.get("i")
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            return None
        if isinstance(issued, bool) or not isinstance(issued, int | float):
            return None
        return Session(token_id, float(issued))

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token of the session whose cookie is ``cookie``."""
        return hmac.new(self._csrf_key, cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str, header: str) -> bool:
        expected = self.csrf_token(cookie).encode()
        return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


def is_secure(conn: HTTPConnection) -> bool:
    """Did the request come over https (directly, or through a proxy saying so)?  Only
    decides the cookies' Secure flag: a client that lies about it only loses its cookie."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return conn.url.scheme in ("https", "wss") or forwarded == "https"


def set_session_cookies(
    response: Response, conn: HTTPConnection, cookie: str, csrf: str, max_age_s: int
) -> None:
    secure = is_secure(conn)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=max_age_s,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age_s, path="/", secure=secure, samesite="strict"
    )


def clear_session_cookies(response: Response, conn: HTTPConnection) -> None:
    secure = is_secure(conn)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="strict"
    )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")

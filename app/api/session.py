"""The page's sign-in (``PAGELAB_AUTH=token``): ``POST /api/v1/session`` exchanges a token
for a session cookie and its CSRF token, ``DELETE /api/v1/session`` signs out.  The
cookies and what they hold: ``app.api.cookies``.  In the open lab these answer 404
``not-found``, like every account route."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from app.lab.service import LabError

from .auth import check_csrf, origin_allowed
from .cookies import SESSION_COOKIE, SessionCodec, clear_session_cookies, set_session_cookies
from .deps import LabDep
from .errors import PROBLEM_RESPONSES
from .guesses import GuessLimiter, client_address
from .users import accounts_of

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["accounts"])


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"token": "pl_…"}]})
    token: str = Field(min_length=1, max_length=512, description="a token handed out (pl_…)")


class SignedIn(BaseModel):
    """What a sign-in answers (its cookies are in the Set-Cookie headers)."""

    name: str
    role: str
    course: str | None
    csrf_token: str = Field(description="send as X-CSRF-Token with every change")
    expires: float = Field(description="when the session ends at the latest (Unix time)")


@router.post("/session", operation_id="sign_in", responses={200: {"model": SignedIn}})
async def sign_in(body: SignIn, request: Request, lab: LabDep) -> JSONResponse:
    """Sign in with a token: sets the HttpOnly session cookie and the ``pagelab_csrf``
    cookie; answers who you are and the CSRF token to send as ``X-CSRF-Token`` with
    every change.  A bad token counts against your address like any other."""
    accounts = accounts_of(lab)
    if not origin_allowed(request):  # nobody signs a visitor in from another site
        raise LabError(
            "csrf",
            f"sign-in from pages of {request.headers.get('origin')} is refused: use "
            "PageLab's own page",
        )
    guesses: GuessLimiter = request.app.state.guesses
    codec: SessionCodec = request.app.state.sessions
    address = client_address(request)
    guesses.check(address)
    match = await anyio.to_thread.run_sync(accounts.identify, body.token)
    if match is None:
        guesses.failed(address)
        raise LabError(
            "unauthorized",
            "that token is unknown, revoked or expired: paste it exactly as it was handed "
            "out (it starts with pl_), or ask your instructor for a new one",
        )
    issued = accounts.clock()
    lifetime = codec.max_age_s
    if match.expires is not None:
        lifetime = min(lifetime, match.expires - issued)
    cookie = codec.encode(match.token_id, issued)
    csrf = codec.csrf_token(cookie)
    principal = match.principal
    out = SignedIn(
        name=principal.name,
        role=principal.role,
        course=principal.course,
        csrf_token=csrf,
        expires=issued + lifetime,
    )
    response = JSONResponse(out.model_dump())
    set_session_cookies(response, request, cookie, csrf, max(1, int(lifetime)))
    return response


@router.delete("/session", status_code=204, operation_id="sign_out")
async def sign_out(request: Request, lab: LabDep) -> Response:
    """Sign out: ends every session signed in with this session's token (on any browser)
    and clears the cookies.  Like any cookie change it needs ``X-CSRF-Token``; without a
    valid session there is nothing to end and the cookies are cleared all the same."""
    accounts = accounts_of(lab)
    codec: SessionCodec = request.app.state.sessions
    cookie = request.cookies.get(SESSION_COOKIE)
    session = codec.decode(cookie) if cookie else None
    if cookie and session is not None:
        check_csrf(request, cookie)
        await anyio.to_thread.run_sync(accounts.end_sessions, session.token_id)
    response = Response(status_code=204)
    clear_session_cookies(response, request)
    return response

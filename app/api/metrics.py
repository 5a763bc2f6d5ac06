"""``GET /metrics``: the app's Prometheus registry in the text exposition format
(``docs/operations.md`` lists every metric).

``PAGELAB_METRICS``: ``on`` (the default) serves it to anyone who can reach the server, as
scrapers expect on a private network, unless ``PAGELAB_METRICS_TOKEN`` is set, which it
then needs as ``Authorization: Bearer``; ``token`` always needs it; ``off`` leaves the
route out, so it answers 404 exactly like a path that does not exist.  A wrong token counts as a failed
authentication of the client's address (``app.api.guesses``), like a wrong user token.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.lab.metrics import Metrics
from app.lab.service import LabError
from app.lab.settings import Settings

from .auth import bearer
from .guesses import GuessLimiter, client_address

router = APIRouter()


def _check_token(request: Request, settings: Settings) -> None:
    secret = settings.metrics_token
    if secret is None:
        return
    guesses: GuessLimiter = request.app.state.guesses
    address = client_address(request)
    guesses.check(address)
    given = bearer(request.headers.get("authorization"))
    if given is None or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        guesses.failed(address)
        raise LabError(
            "unauthorized",
            "GET /metrics needs the metrics token (PAGELAB_METRICS_TOKEN) as "
            "Authorization: Bearer <token>; ask the server's admin for it",
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The server's metrics for Prometheus."""
    settings: Settings = request.app.state.settings
    _check_token(request, settings)
    registry: Metrics = request.app.state.metrics
    lab = getattr(request.app.state, "lab", None)
    if lab is not None:
        await lab.refresh_summaries()  # machines in worker processes or on Ray
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)

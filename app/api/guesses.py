"""Token guessing, rate-limited (issue 8 §5): failed authentications per client address.

Every request that presents a token (``Authorization: Bearer``, the stream's ``?token=``,
a sign-in's body) first asks ``check``: once an address has failed
``PAGELAB_AUTH_FAILURES_PER_MINUTE`` times within a moving minute, its token attempts are
refused with 429 ``rate-limited`` and ``Retry-After`` *before* the token is looked at, so
that a blocked guesser learns nothing, not even from a right guess.  A valid token from
another address still works, and so do signed-in browser sessions from the blocked
address: a session cookie is checked by its HMAC, which no guessing gets through, so
students behind one NAT keep working while one of them mistypes.

A success costs one look at the address's window (the ``limits`` library's in-memory
moving window); only failures are recorded.  The counts are per process: behind several
workers each allows the limit (an attacker still gets a few hundred guesses per minute at
most against 256-bit tokens).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from app.lab.service import LabError

NAMESPACE = "pagelab-auth-failures"


def client_address(conn: HTTPConnection) -> str:
    """The peer's address (behind a proxy, the one uvicorn's proxy headers give)."""
    return conn.client.host if conn.client is not None else "unknown"


class GuessLimiter:
    """At most ``per_minute`` failed authentications per client address."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute, namespace=NAMESPACE)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, address: str) -> None:
        """Refuse (429 ``rate-limited``) an address that has used up its failures."""
        if self._limiter.test(self._item, address):
            return
        reset = self._limiter.get_window_stats(self._item, address).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise LabError(
            "rate-limited",
            f"too many failed sign-ins or bad tokens from your address ({self.per_minute} a "
            f"minute): wait {retry_after} s, then try again with the token exactly as it was "
            "handed out (it starts with pl_)",
            retry_after=retry_after,
        )

    def failed(self, address: str) -> None:
        """Record one failed authentication of ``address``."""
        self._limiter.hit(self._item, address)

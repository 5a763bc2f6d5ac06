"""Quotas at run time: the call-rate buckets, a cache of users' effective quotas, and the
server-wide page budget.

**Calls per second.**  Each user has one bucket of kernel calls, shared by all their
instances, filled at ``calls_per_s`` and holding ``max(calls_per_s, batch_size)`` calls: a
user may send one batch as large as their ``batch_size`` at once, and on average no more
than ``calls_per_s`` calls a second.  The bucket is a ``limits`` sliding-window counter,
the strategy of that library closest to a token bucket: the previous window's count is
weighted by how much of it is still inside the sliding window, so after a burst of a full
window the spent capacity comes back *linearly* at ``amount / window`` calls a second,
which is a token bucket's refill.  (The fixed window lets twice the amount through across
a boundary; the moving window keeps one timestamp per call, ``cost`` of them for a batch,
and gives capacity back only as the old calls leave the window, in bursts.)  The counter
costs the same for a batch of any size: one increment by ``cost`` (about 10-20 us a
request, measured, all of it in ``limits``).

``limits`` counts whole calls in windows of whole seconds, so a rate is held as ``amount``
calls per ``window`` seconds with ``window = ceil(capacity / rate)`` and
``amount = floor(rate * window)`` (at least the capacity): a rate below one call a second
becomes one call per ``ceil(1 / rate)`` seconds.  A changed quota gives the user a fresh
bucket at the new rate (the bucket's key names its amount and window), so a raised quota
lets calls through at once.

**The page budget.**  What the simulated machines of one server may hold in all, in page
structures (a machine of ``phys_avail`` up to address A needs ``A / 4 KiB`` of them,
holes included).  Measured with ``tracemalloc`` on a 4 GiB machine: a booted machine holds
about 56 bytes per page structure (the page fields are vecs, all resident) and peaks at
about 80 while it boots; the default budget is half the host's physical memory at
``BYTES_PER_PAGE`` (96: the boot's peak and a fifth more) bytes each.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from app.core.config import MachineConfig
from app.core.constants import PAGE_SIZE

if TYPE_CHECKING:
    from .accounts import Accounts, Quotas

#: what one simulated page structure costs this process at its peak (the boot), in bytes
BYTES_PER_PAGE: Final = 96
#: the share of the host's physical memory the default page budget leaves to machines
PAGE_BUDGET_SHARE: Final = 0.5
#: how long a user's effective quotas are reused before the database is asked again (a
#: change made through this server applies at once; one made by another server sharing
#: the database, within this time)
QUOTA_CACHE_S: Final = 2.0
HOW_TO_GET_MORE: Final = "ask an instructor or an admin to raise it"


def page_structs(config: MachineConfig) -> int:
    """The page structures a machine of ``config`` allocates (holes included): what the
    page budget counts."""
    ranges = config.rounded_phys_avail()
    return max(0, ranges[-1][1] // PAGE_SIZE - ranges[0][0] // PAGE_SIZE)


def default_page_budget() -> int:
    """Half the host's physical memory, in simulated page structures (0 if unknown:
    then there is no budget)."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0
    return max(0, int(physical * PAGE_BUDGET_SHARE) // BYTES_PER_PAGE)


class RateLimited(Exception):
    """A request the caller's call-rate bucket refuses.  ``kind`` is the problem kind:
    ``rate-limited`` (try again in ``retry_after`` whole seconds, at least 1),
    ``too-large`` (more calls than the bucket ever holds) or ``forbidden`` (a rate of 0)."""

    def __init__(self, kind: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Bucket:
    """One quota's bucket as ``limits`` holds it."""

    item: RateLimitItem
    capacity: int
    rate: float


class CallRate:
    """Per-user call-rate buckets (``calls_per_s``), in this process's memory.
    ``refused(quota)`` is told of every refusal (``Metrics.refused``: by ``calls_per_s``,
    or ``batch_size`` for a request larger than the bucket ever holds)."""

    def __init__(self, refused: Callable[[str], None] = lambda quota: None) -> None:
        self.refused = refused
        self.storage = MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._buckets: dict[tuple[float, int], Bucket] = {}

    def bucket(self, quotas: Quotas) -> Bucket:
        """The bucket of these quotas (shared by everyone with the same figures)."""
        key = (quotas.calls_per_s, quotas.batch_size)
        found = self._buckets.get(key)
        if found is None:
            rate = quotas.calls_per_s
            capacity = max(1, math.ceil(rate), quotas.batch_size)
            window = max(1, math.ceil(capacity / rate)) if rate > 0 else 1
            amount = max(capacity, math.floor(rate * window))
            found = Bucket(RateLimitItemPerSecond(amount, window), amount, rate)
            if len(self._buckets) > 4096:  # quotas changed very often: forget old figures
                self._buckets.clear()
            self._buckets[key] = found
        return found

    def take(self, user: str, cost: int, quotas: Quotas) -> None:
        """Take ``cost`` calls from ``user``'s bucket, or raise ``RateLimited`` (and take
        nothing)."""
        rate = quotas.calls_per_s
        if rate <= 0:
            self.refused("calls_per_s")
            raise RateLimited(
                "forbidden",
                "your quota 'calls_per_s' is 0: you may not make kernel calls; " + HOW_TO_GET_MORE,
            )
        b = self.bucket(quotas)
        if cost > b.capacity:
            self.refused("batch_size")
            raise RateLimited(
                "too-large",
                f"a request of {cost} calls is more than your call bucket ever holds "
                f"({b.capacity}: the larger of your quotas 'calls_per_s' ({_figure(rate)}) "
                f"and 'batch_size' ({quotas.batch_size})): split it, or {HOW_TO_GET_MORE}",
            )
        if self.limiter.hit(b.item, user, cost=cost):
            return
        seconds = int(self._wait(b, user, cost)) + 1  # strictly after: then it passes
        self.refused("calls_per_s")
        raise RateLimited(
            "rate-limited",
            f"you may make {_figure(rate)} calls per second (quota 'calls_per_s') and "
            f"{b.capacity} at once; this request needs {cost}: wait {seconds} s, or "
            + HOW_TO_GET_MORE,
            retry_after=seconds,
        )

    def _wait(self, b: Bucket, user: str, cost: int) -> float:
        """Seconds until ``cost`` calls fit if nobody calls meanwhile (an upper bound),
        from the limiter's windows: the current window's count starts to drain when the
        window ends, linearly over the next; the previous window's count is gone by then.
        """
        window = b.item.get_expiry()
        previous, previous_ttl, current, current_ttl = self.storage.get_sliding_window(
            b.item.key_for(user), window
        )
        room = b.capacity - cost + 1  # the weighted count must fall below this
        if current > 0:
            window_end = current_ttl - window
            return window_end + window * max(0.0, 1 - room / current)
        if previous > 0:
            return max(0.0, previous_ttl - window * room / previous)
        return 0.0

    def remaining(self, user: str, quotas: Quotas) -> int:
        """Calls ``user`` may make at once now (``GET /me``)."""
        if quotas.calls_per_s <= 0:
            return 0
        b = self.bucket(quotas)
        return int(self.limiter.get_window_stats(b.item, user).remaining)


def _figure(rate: float) -> str:
    return str(int(rate)) if float(rate).is_integer() else f"{rate:g}"


class QuotaCache:
    """Users' effective quotas, read from the accounts at most every ``ttl_s`` seconds
    and again at once after any quota or role change made through ``accounts``
    (``Accounts.quota_generation``)."""

    def __init__(
        self,
        accounts: Accounts,
        ttl_s: float = QUOTA_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounts = accounts
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[int, float, Quotas]] = {}

    def cached(self, user: str) -> Quotas | None:
        """The cached quotas if still good (no I/O: callable on the event loop)."""
        hit = self._cache.get(user)
        if (
            hit is not None
            and hit[0] == self.accounts.quota_generation
            and self.clock() - hit[1] < self.ttl_s
        ):
            return hit[2]
        return None

    def load(self, user: str) -> Quotas:
        """Read ``user``'s quotas from the database (blocking: run off the event loop)."""
        generation = self.accounts.quota_generation
        quotas = self.accounts.effective_quotas(user)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[user] = (generation, self.clock(), quotas)
        return quotas

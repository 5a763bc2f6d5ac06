"""A clock the tests move by hand: call it (``clock()``, what the accounts and the lab
read) or ask it the time (``clock.time()``, what the ``limits`` library reads)."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

"""Callable kernel functions: Memory pressure and the pageout daemon (spec §13, §15)."""

from __future__ import annotations

from .callspec import KernelFunction

FUNCTIONS: tuple[KernelFunction, ...] = ()

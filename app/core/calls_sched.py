"""Callable kernel functions: Threads, sleeping and time (spec §9, §13, §19)."""

from __future__ import annotations

from .callspec import KernelFunction

FUNCTIONS: tuple[KernelFunction, ...] = ()

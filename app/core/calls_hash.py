"""Callable kernel functions: The page hash and lookups (spec §11)."""

from __future__ import annotations

from .callspec import KernelFunction

FUNCTIONS: tuple[KernelFunction, ...] = ()

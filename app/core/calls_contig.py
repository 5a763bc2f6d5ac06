"""Callable kernel functions: Contiguous memory (spec §7.4–7.7)."""

from __future__ import annotations

from .callspec import KernelFunction

FUNCTIONS: tuple[KernelFunction, ...] = ()

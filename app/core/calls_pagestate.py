"""Callable kernel functions: Page state: cache, dontneed, hold, valid/dirty, pmap (spec §8.7–8.10, §10.2, §12, §14)."""

from __future__ import annotations

from .callspec import KernelFunction

FUNCTIONS: tuple[KernelFunction, ...] = ()

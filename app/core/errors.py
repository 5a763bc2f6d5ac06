"""Errors the simulated kernel raises.

`KernelPanic` models a KASSERT or an explicit ``panic()`` in the kernel. Every public entry
point checks the conditions that would panic *before* it changes any state, so a caught
panic always leaves the machine exactly as it was.
"""

from __future__ import annotations


class KernelPanic(Exception):
    """A kernel assertion (KASSERT) or panic: the call is refused and nothing changed.

    ``message`` is the kernel's own panic string (or a close paraphrase where the kernel
    prints a formatted line); ``function`` names the kernel function that would panic.
    """

    def __init__(self, function: str, message: str) -> None:
        super().__init__(f"panic: {function}: {message}")
        self.function = function
        self.message = message


class InvalidArgument(ValueError):
    """A request the simulator cannot model (a pfn outside the machine, an unknown object,
    an argument of the wrong range). Raised before any state changes."""


class ConfigError(ValueError):
    """A machine configuration that cannot be booted (empty memory, absurd sizes, bad
    topology). Raised before anything is allocated."""


class WouldSleep(Exception):
    """The call would put the calling thread to sleep on ``channel`` with nobody left to
    wake it (Core engine I simulates a single thread per CPU).  Raised before any state
    changes, like a panic; the message says what the thread would wait for."""

    def __init__(self, function: str, channel: str, message: str) -> None:
        super().__init__(f"{function}: would sleep on {channel}: {message}")
        self.function = function
        self.channel = channel
        self.message = message

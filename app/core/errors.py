"""Errors the simulated kernel raises.

`KernelPanic` models a KASSERT or an explicit ``panic()`` in the kernel. Every public entry
point checks the conditions that would panic *before* it changes any state, so a caught
panic always leaves the machine exactly as it was.  `SimulatorRefusal` is the same kind of
up-front refusal where the kernel has no assertion: the simulator's own guard, labelled so.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mypy_extensions import mypyc_attr


class KernelPanic(Exception):
    """A kernel assertion (KASSERT) or panic: the call is refused and nothing changed.

    ``message`` is the kernel's own panic string (or a close paraphrase where the kernel
    prints a formatted line); ``function`` names the kernel function that would panic.
    """

    def __init__(self, function: str, message: str) -> None:
        super().__init__(f"panic: {function}: {message}")
        self.function = function
        self.message = message


class SimulatorRefusal(Exception):
    """A call the simulator refuses although the kernel would not panic on it: the
    kernel has no assertion here and would go on (an ``sbusy_drop`` below zero wraps the
    busy word into its flag bits; a soft-busy count past its 29 bits carries into
    PBUSY_SWAPINPROG; a wired free page is only caught later, by the allocator), so the
    simulator stops the call to keep its state one the kernel could reach.  Raised before
    any state changes, like a panic; ``message`` says why the simulator guards it.
    """

    def __init__(self, function: str, message: str) -> None:
        super().__init__(f"{function}: refused by the simulator (not a kernel panic): {message}")
        self.function = function
        self.message = message


class InvalidArgument(ValueError):
    """A request the simulator cannot model (a pfn outside the machine, an unknown object,
    an argument of the wrong range). Raised before any state changes.

    ``kind`` is the problem kind the API answers with: ``validation`` for a value of the
    wrong shape or range, ``no-such-page`` for a pfn the machine does not have (the same
    in a call's argument and in a view's path)."""

    def __init__(self, message: str, kind: str = "validation") -> None:
        super().__init__(message)
        self.kind = kind


def did_you_mean(word: str, known: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'vm_page_alloc'?"`` for the names of ``known`` closest to
    ``word`` (difflib's ratio, at least 0.6), or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(known), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


class ConfigError(ValueError):
    """A machine configuration that cannot be booted (empty memory, absurd sizes, bad
    topology). Raised before anything is allocated."""


class WouldSleep(Exception):
    """The calling thread would block forever: it would sleep on ``channel`` (or spin)
    with nobody left to wake it, because Core engine I simulates one thread per CPU.

    Unlike a panic this is not a refusal of an illegal call: whatever the kernel would
    have done before the thread blocked (a vmstats rollup, the ``vm_wait`` bookkeeping,
    deactivating pages another caller had busied) has been done, exactly as on a real
    machine whose thread then hangs.  The machine stays consistent.  When the message
    says so up front (for example a grab of a busy page), nothing changed."""

    def __init__(self, function: str, channel: str, message: str) -> None:
        super().__init__(f"{function}: would sleep on {channel}: {message}")
        self.function = function
        self.channel = channel
        self.message = message


@mypyc_attr(native_class=False)  # mypyc cannot compile a subclass of AssertionError
class InvariantError(AssertionError):
    """A broken invariant: the simulator itself has a bug."""

"""Named seams: the few policy decisions of this layer that a kernel developer may swap
for an alternative, by name, per machine — instead of overriding any function.

Each seam is one decision inside one kernel function.  Its choice ``kernel`` is
DragonFly's code and the default; the others are alternatives worth comparing against it
(what older BSDs did, or the simplest thing that could work).  A machine's choices are
part of its configuration (``MachineConfig.policy``), so they are journalled, snapshotted
and restored with it, and a replay takes the same decisions.  The state digest does not
include them: it hashes state, and two machines in the same state are equal whatever they
would decide next.

The seams (``SEAMS``; ``docs/model.md`` § "Named seams" tells the same):

* ``page_color`` — the colour ``vm_page_alloc`` starts its free-queue search at
  (``vm_get_pg_color``, spec §6.1):
  ``kernel`` splits the 1024 colours among sockets, cores and threads (or CPUs) and adds
  the object's colour plus pindex within the CPU's slice; ``object`` is the classic BSD
  colouring, ``(object's pg_color + pindex) mod 1024``, the same colour on every CPU;
  ``cpu`` keeps each CPU in its own slice but ignores the object (``pindex`` alone);
  ``none`` starts every search at colour 0, as a kernel without page colouring would.
* ``free_queue_end`` — which end of its PQ_FREE queue a freed page goes to
  (``_vm_page_add_queue_spinlocked``, called by ``vm_page_free_toq``):
  ``kernel`` at the head (the next allocation of that colour takes the page freed last,
  still warm in the cache); ``tail`` at the tail (first freed, first reused).
* ``dontneed`` — what ``vm_page_dontneed`` does with a page once it counted ``dnweight``
  (spec §8.10): ``kernel`` rolls its dice (left alone 16 times in 512, to the inactive
  tail 48 times, to the head 448 times; a dirty page always to the tail); ``tail`` always
  deactivates to the inactive tail, ``head`` always to the head (both still leave a page
  already on PQ_INACTIVE or PQ_CACHE alone, as the kernel does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .errors import ConfigError, did_you_mean

KERNEL: Final = "kernel"


@dataclass(frozen=True)
class Seam:
    """One swappable decision: where it is (``function``), what it decides, and its
    choices with one line each (``kernel`` first)."""

    name: str
    function: str
    decides: str
    choices: tuple[tuple[str, str], ...]

    def choice_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.choices)


SEAMS: dict[str, Seam] = {
    s.name: s
    for s in (
        Seam(
            "page_color",
            "vm_get_pg_color",
            "the colour vm_page_alloc starts its free-queue search at",
            (
                (
                    KERNEL,
                    "DragonFly: the CPU's (socket/core/thread) slice of the 1024 colours, "
                    "offset by the object's colour plus pindex",
                ),
                ("object", "classic BSD: (object's pg_color + pindex) mod 1024, on any CPU"),
                ("cpu", "the CPU's slice, offset by pindex alone (the object is ignored)"),
                ("none", "no page colouring: every search starts at colour 0"),
            ),
        ),
        Seam(
            "free_queue_end",
            "_vm_page_add_queue_spinlocked",
            "which end of its free queue a freed page goes to",
            (
                (KERNEL, "the head: the next allocation of that colour reuses it first"),
                ("tail", "the tail: first freed, first reused"),
            ),
        ),
        Seam(
            "dontneed",
            "vm_page_dontneed",
            "where a page that is not needed goes",
            (
                (
                    KERNEL,
                    "dnweight's dice: per 512 calls 16 left alone, 48 to the inactive tail, "
                    "448 to the head; a dirty page always to the tail",
                ),
                ("tail", "always to the inactive tail (the pageout scan reaches it last)"),
                ("head", "always to the inactive head (the pageout scan reaches it first)"),
            ),
        ),
    )
}


class Policy:
    """A machine's choice for each seam (``kernel`` unless its configuration says
    otherwise), read by the functions the seams sit in.  ``free_to_head`` is
    ``free_queue_end`` as the flag ``vm_page_free_toq`` passes on."""

    __slots__ = ("page_color", "free_to_head", "dontneed")

    def __init__(self, choices: Mapping[str, str] | None = None) -> None:
        chosen = dict(choices or {})
        self.page_color: str = chosen.get("page_color", KERNEL)
        self.free_to_head: bool = chosen.get("free_queue_end", KERNEL) == KERNEL
        self.dontneed: str = chosen.get("dontneed", KERNEL)


def check_policy(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``pairs`` (seam, choice) validated and in a canonical form: sorted by seam, one
    choice per seam, ``kernel`` choices left out (they are the default).  Unknown names
    are refused with the names that exist."""
    chosen: dict[str, str] = {}
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigError("policy must map seam names to choices, like page_color=object")
        seam, choice = pair
        if not isinstance(seam, str) or seam not in SEAMS:
            raise ConfigError(
                f"there is no seam named {seam!r}{did_you_mean(str(seam), SEAMS)}; "
                f"the seams: {', '.join(SEAMS)}"
            )
        names = SEAMS[seam].choice_names()
        if not isinstance(choice, str) or choice not in names:
            raise ConfigError(
                f"seam {seam} has no choice {choice!r}{did_you_mean(str(choice), names)}; "
                f"its choices: {', '.join(names)}"
            )
        if seam in chosen and chosen[seam] != choice:
            raise ConfigError(f"seam {seam} is given twice ({chosen[seam]} and {choice})")
        chosen[seam] = choice
    return tuple(sorted((s, c) for s, c in chosen.items() if c != KERNEL))


def seams_catalogue() -> list[dict[str, object]]:
    """Every seam with its kernel function, what it decides and its choices (for
    ``GET /api/v1/seams`` and the CLI)."""
    return [
        {
            "name": s.name,
            "function": s.function,
            "decides": s.decides,
            "default": KERNEL,
            "choices": [{"name": n, "means": m} for n, m in s.choices],
        }
        for s in SEAMS.values()
    ]

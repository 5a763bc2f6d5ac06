"""``python -m bench [NAME] [--json] [--quick]``: run the benchmarks.

With no name every benchmark runs, human-readably.  Benchmarks print figures; no test
asserts a timing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = "usage: python -m bench [engine|lifecycle|http|pagemap|stream|durability|students|ops|capacity|placements] [--json] [--quick]"


def _engine(argv: list[str]) -> int:
    from bench import engine

    return engine.main(argv)


def _lifecycle(argv: list[str]) -> int:
    from bench import lifecycle

    return lifecycle.main(argv)


def _http(argv: list[str]) -> int:
    from bench import http

    return http.main(argv)


def _pagemap(argv: list[str]) -> int:
    from bench import pagemap

    return pagemap.main(argv)


def _durability(argv: list[str]) -> int:
    from bench import durability

    return durability.main(argv)


def _stream(argv: list[str]) -> int:
    from bench import stream

    return stream.main(argv)


def _placements(argv: list[str]) -> int:
    from bench import placements

    return placements.main(argv)


def _students(argv: list[str]) -> int:
    from bench import students

    return students.main(argv)


def _capacity(argv: list[str]) -> int:
    from bench import capacity

    return capacity.main(argv)


def _ops(argv: list[str]) -> int:
    from bench import ops

    return ops.main(argv)


BENCHMARKS: dict[str, Callable[[list[str]], int]] = {
    "engine": _engine,
    "lifecycle": _lifecycle,
    "http": _http,
    "pagemap": _pagemap,
    "stream": _stream,
    "durability": _durability,
    "students": _students,
    "ops": _ops,
    "capacity": _capacity,
    "placements": _placements,
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        print("benchmarks: " + ", ".join(BENCHMARKS))
        return 0
    if argv and not argv[0].startswith("-"):
        name, rest = argv[0], argv[1:]
        bench = BENCHMARKS.get(name)
        if bench is None:
            print(f"no benchmark named {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        return bench(rest)
    if "--json" in argv:
        print(
            "--json needs one benchmark name, e.g. python -m bench engine --json", file=sys.stderr
        )
        return 2
    status = 0
    for name, bench in BENCHMARKS.items():
        print(f"== {name}")
        status = bench(argv) or status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Just enough of a Dockerfile reader for the deploy tests: instructions with their
continuation lines joined, comments dropped, grouped into stages."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, continuation lines joined


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"{keyword}: {len(found)} in stage {self.name}"
        return found[0]

    def env(self) -> dict[str, str]:
        """The stage's ENV values (``key=value`` forms), later ones winning."""
        values: dict[str, str] = {}
        for inst in self.all("ENV"):
            for word in shlex.split(inst.args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {inst.args!r}: use the key=value form"
                values[key] = value
        return values


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, in order."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # a comment (also inside an instruction's continuation lines)
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for inst in instructions(text):
        if inst.keyword == "FROM":
            words = inst.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name))
        else:
            assert found, f"{inst.keyword} before the first FROM"
            found[-1].instructions.append(inst)
    return found


def exec_form(args: str) -> list[str]:
    """A JSON (exec form) command: no shell between Docker and the process."""
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
    return argv


def flags_and_rest(args: str) -> tuple[dict[str, str], str]:
    """``--name=value`` flags leading an instruction's arguments, and what follows them."""
    flags: dict[str, str] = {}
    words = args.split(" ")
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, " ".join(words)


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """The stage's HEALTHCHECK: its options and its command (exec form)."""
    options, rest = flags_and_rest(stage.one("HEALTHCHECK").args)
    keyword, _, command = rest.partition(" ")
    assert keyword == "CMD", rest
    return options, exec_form(command)


def seconds(duration: str) -> float:
    """A Docker duration of one unit (``30s``, ``2m``, ``500ms``) in seconds."""
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if duration.endswith(unit) and duration[: -len(unit)].replace(".", "").isdigit():
            return float(duration[: -len(unit)]) * scale
    raise ValueError(f"not a duration: {duration!r}")

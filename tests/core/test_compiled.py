"""The compiled core (mypyc, ``PAGELAB_CORE=compiled``): the golden corpus replays on it
with exactly the frozen outcomes and digests, its modules really are extension modules,
and a missing, stale or foreign build is refused at import instead of run.

The replay runs in a child interpreter (the build is chosen when ``app.core`` is first
imported).  ``make test`` builds the core first when a C compiler is there; without a
build these tests fail under CI and are skipped elsewhere (``missing``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core import compiled
from tests.conftest import missing
from tests.golden.corpus import HERE, read

ROOT = Path(__file__).resolve().parent.parent.parent
FILES = sorted(HERE.glob("stream-*.jsonl"))

#: Run in the child: every module's file, then each stream's outcomes and digests.
REPLAY = """
import json, sys
from pathlib import Path
import app.core, app.core.compiled as c
from tests.golden.corpus import machine_for, outcome, read
files = {}
for name in c.compiled_modules() + list(c.EXCLUDED):
    dotted = name.replace("/", ".")
    mod = __import__(f"app.core.{dotted}" if name != "__init__" else "app.core", fromlist=["x"])
    files[name] = mod.__file__
streams = {}
for path in sys.argv[1:]:
    header, calls = read(Path(path))
    m = machine_for(header)
    got = []
    for call in calls:
        o = outcome(m, call)
        got.append([o, m.state_digest() if "digest" in call else None])
    m.check_invariants()
    streams[Path(path).stem] = got
print(json.dumps({"files": files, "streams": streams}))
"""


def _child(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def build() -> Path:
    root = compiled.build_dir()
    reason = compiled.stale_reason(root)
    if reason is not None:
        missing(reason)
    return root


def test_the_golden_corpus_replays_exactly_on_the_compiled_core(build: Path) -> None:
    out = _child(REPLAY, *map(str, FILES), PAGELAB_CORE="compiled", PAGELAB_CORE_BUILD=str(build))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # every compiled module is an extension module from the build, the rest the source
    core = compiled.core_dir(build)
    for name in compiled.compiled_modules():
        path = Path(report["files"][name])
        assert path.name.endswith(compiled.ext_suffix()), (name, path)
        assert path.is_relative_to(core), (name, path)
    for name in compiled.EXCLUDED:
        assert report["files"][name].endswith(".py"), name
    assert sorted(report["streams"]) == [p.stem for p in FILES]
    for path in FILES:
        _, calls = read(path)
        got = report["streams"][path.stem]
        assert len(got) == len(calls)
        for k, (call, (outcome, digest)) in enumerate(zip(calls, got, strict=True), start=1):
            assert outcome == call["outcome"], f"{path.stem} call {k} {call['fn']}"
            assert digest == call.get("digest"), f"{path.stem} digest after call {k}"


def test_the_compiled_build_holds_every_module_but_the_excluded(build: Path) -> None:
    core_src = ROOT / "app" / "core"
    sources = {
        p.relative_to(core_src).with_suffix("").as_posix()
        for p in core_src.rglob("*.py")
        if p.stem != "__init__"
    } | {"__init__"}
    assert set(compiled.EXCLUDED) <= sources
    assert set(compiled.compiled_modules()) == sources - set(compiled.EXCLUDED)
    built = {
        p.relative_to(compiled.core_dir(build)).as_posix().split(".")[0]
        for p in compiled.core_dir(build).rglob("*" + compiled.ext_suffix())
    }
    assert built == set(compiled.compiled_modules()) | {"native__mypyc"}
    # no compiled module lies next to the sources, where it would shadow them for everyone
    assert not list((ROOT / "app").rglob("*" + compiled.ext_suffix()))


# ---------------------------------------------------------------- refusals (no compiler)
def _fake_build(tmp_path: Path, **overrides: object) -> Path:
    stamp = {
        "sources": compiled.source_digest(),
        "modules": compiled.compiled_modules(),
        "ext_suffix": compiled.ext_suffix(),
    }
    stamp.update(overrides)
    core = compiled.core_dir(tmp_path)
    core.mkdir(parents=True)
    (core / compiled.STAMP).write_text(json.dumps(stamp))
    return tmp_path


def test_a_build_stamped_for_these_sources_is_accepted(tmp_path: Path) -> None:
    assert compiled.stale_reason(_fake_build(tmp_path)) is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"sources": "0" * 64}, "stale"),
        ({"ext_suffix": ".cpython-39-x86_64-linux-gnu.so"}, "rebuild it with this Python"),
        ({"modules": ["alloc"]}, "other modules"),
    ],
    ids=["stale-sources", "other-python", "other-modules"],
)
def test_a_stale_or_foreign_build_is_refused(
    tmp_path: Path, overrides: dict[str, object], words: str
) -> None:
    root = _fake_build(tmp_path, **overrides)
    reason = compiled.stale_reason(root)
    assert reason is not None and words in reason
    out = _child("import app.core.machine", PAGELAB_CORE="compiled", PAGELAB_CORE_BUILD=str(root))
    assert out.returncode != 0
    assert "ImportError: PAGELAB_CORE=compiled:" in out.stderr and words in out.stderr


def test_a_missing_build_is_refused_and_the_source_stays_the_default(tmp_path: Path) -> None:
    out = _child("import app.core", PAGELAB_CORE="compiled", PAGELAB_CORE_BUILD=str(tmp_path))
    assert out.returncode != 0 and "make core-compiled" in out.stderr
    out = _child("import app.core", PAGELAB_CORE="fast")
    assert out.returncode != 0 and "PAGELAB_CORE must be 'source' or 'compiled'" in out.stderr
    # unset (and 'source'): the Python source, whatever build exists
    code = (
        "import app.core.compiled as c, app.core.machine as m; print(c.is_compiled(), m.__file__)"
    )
    for value in (None, "source"):
        env = {k: v for k, v in os.environ.items() if k != "PAGELAB_CORE"}
        if value is not None:
            env["PAGELAB_CORE"] = value
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        flag, path = done.stdout.split()
        assert flag == "False" and path == str(ROOT / "app" / "core" / "machine.py")

"""docs/model.md, the project's account of the model, stays true to the code: every
callable function is listed as callable, every name it gives as callable is registered,
every test it cites exists, every quirk it lists cites a test, and every core module it
names is there."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from app.core.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "model.md"

_CODE = re.compile(r"`([^`\n]+)`")
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
_CORE_PATH = re.compile(r"`(app/core/[\w/]+\.py)`")


@cache
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(number: int) -> str:
    """The text of ``## <number>. …`` up to the next ``## `` heading."""
    m = re.search(rf"^## {number}\. .*?(?=^## |\Z)", doc(), re.M | re.S)
    assert m, f"docs/model.md has no section {number}"
    return m.group(0)


def called_as() -> list[str]:
    """The names in the "called as" column of section 4's tables (a cell starting with "—"
    is an internal step; what follows explains it)."""
    called: list[str] = []
    col = None
    for line in section(4).splitlines():
        if not line.startswith("|"):
            col = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "called as" in cells:
            col = cells.index("called as")
        elif col is not None and not set(cells[0]) <= {"-"} and not cells[col].startswith("—"):
            called += _CODE.findall(cells[col])
    return called


def test_every_registered_function_is_in_the_doc_as_callable() -> None:
    missing = sorted(set(REGISTRY) - set(called_as()))
    assert not missing, f"docs/model.md's section 4 does not list {missing} as callable"


def test_every_name_the_doc_gives_as_callable_is_registered() -> None:
    called = called_as()
    assert len(called) > 90  # the tables were found and read
    unknown = sorted({name for name in called if name not in REGISTRY})
    assert not unknown, f"docs/model.md gives {unknown} as callable; the registry has no such"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def test_every_test_the_doc_cites_exists() -> None:
    cited = _TEST_REF.findall(doc())
    assert len(cited) >= 50
    missing = []
    for rel, name in sorted(set(cited)):
        path = ROOT / rel
        if not path.is_file() or name not in _test_names(path):
            missing.append(f"{rel}::{name}")
    assert not missing, f"docs/model.md cites tests that do not exist: {missing}"


def test_every_quirk_cites_a_test() -> None:
    quirks = re.split(r"^\d+\. ", section(6), flags=re.M)[1:]
    assert len(quirks) >= 40
    untested = [q.split("**")[1] for q in quirks if not _TEST_REF.search(q)]
    assert not untested, f"quirks without a test: {untested}"


def test_every_core_module_the_doc_names_exists() -> None:
    paths = set(_CORE_PATH.findall(doc()))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"docs/model.md names modules that are not there: {missing}"

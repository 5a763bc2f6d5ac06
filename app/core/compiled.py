"""The compiled core: the same modules built with mypyc, selected with ``PAGELAB_CORE``.

The Python source is the reference build and the fallback.  ``make core-compiled``
(``tools/build_core.py``) compiles the modules of ``COMPILED`` into a separate directory
(``build/mypyc`` at the repository's root, or ``PAGELAB_CORE_BUILD``), never next to the
sources, so nobody runs compiled code by accident.  With ``PAGELAB_CORE=compiled`` the
package ``app.core`` puts that directory first on its ``__path__``; the modules left out
(``EXCLUDED``) still come from the source.

A build is only used if it was made from exactly these sources by this interpreter: its
stamp holds a hash of every compiled module's source and the interpreter's extension
suffix, both checked at import.  A stale or foreign build is refused (``ImportError``),
never run silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path

#: Modules kept as Python source in the compiled build, and why.
EXCLUDED: dict[str, str] = {
    "__init__": "the package itself: it selects the build",
    "compiled": "this loader: it must run before any compiled module is found",
    "config": "checks the types of a configuration's fields itself (ConfigError): native "
    "classes would refuse a wrongly typed field with a TypeError first; built once per boot",
    "snapshot": "restores a machine field by field (__new__, setattr, __slots__ of the "
    "classes), which native classes do not allow; it is not on any hot path",
}

#: Name of the mypyc group: its shared library is ``app.core.native__mypyc``, so every
#: file of the build lives in the package's directory of the build.
GROUP = "app.core.native"

STAMP = "stamp.json"
HERE = Path(__file__).resolve().parent


#: Packages inside ``app.core``: their ``__init__`` stays source and puts the build's
#: directory first on the package's ``__path__`` (as ``app.core``'s does).
PACKAGES: tuple[str, ...] = ("vm_page",)


def compiled_modules() -> list[str]:
    """The modules of ``app.core`` that the compiled build compiles (paths below
    ``app/core`` without ``.py``: ``machine``, ``vm_page/alloc``, ...)."""
    out = []
    for p in HERE.rglob("*.py"):
        rel = p.relative_to(HERE).with_suffix("").as_posix()
        if rel in EXCLUDED or p.stem == "__init__":
            continue
        out.append(rel)
    return sorted(out)


def source_digest() -> str:
    """SHA-256 over the name and bytes of every compiled module's source."""
    h = hashlib.sha256()
    for name in compiled_modules():
        data = (HERE / f"{name}.py").read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def ext_suffix() -> str:
    """The running interpreter's extension-module suffix (ABI), e.g.
    ``.cpython-311-x86_64-linux-gnu.so``."""
    return str(sysconfig.get_config_var("EXT_SUFFIX"))


def build_dir() -> Path:
    """Where the compiled build lives: ``PAGELAB_CORE_BUILD`` or ``build/mypyc`` at the
    repository's root."""
    configured = os.environ.get("PAGELAB_CORE_BUILD")
    return Path(configured) if configured else HERE.parent.parent / "build" / "mypyc"


def core_dir(root: Path) -> Path:
    """The directory of a build that holds the compiled ``app.core`` modules."""
    return root / "app" / "core"


def stale_reason(root: Path) -> str | None:
    """Why the build under ``root`` cannot be used with these sources, or None."""
    stamp = core_dir(root) / STAMP
    if not stamp.is_file():
        return f"there is no compiled core at {root} (build it with `make core-compiled`)"
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError) as e:
        return f"the compiled core's stamp {stamp} is unreadable ({e}); rebuild it"
    if not isinstance(info, dict):
        return f"the compiled core's stamp {stamp} is malformed; rebuild it"
    if info.get("ext_suffix") != ext_suffix():
        return (
            f"the compiled core at {root} was built for {info.get('ext_suffix')}, this "
            f"interpreter loads {ext_suffix()}; rebuild it with this Python"
        )
    if info.get("modules") != compiled_modules():
        return f"the compiled core at {root} compiled other modules; rebuild it"
    if info.get("sources") != source_digest():
        return (
            f"the compiled core at {root} is stale: app/core changed since it was built; "
            "rebuild it with `make core-compiled`"
        )
    return None


def activate(package_path: list[str], package: str = "") -> None:
    """Put the compiled build first on the ``__path__`` of ``app.core`` (or of its
    sub-package ``package``); refuse a missing, stale or foreign build with ImportError."""
    root = build_dir()
    reason = stale_reason(root)
    if reason is not None:
        raise ImportError(f"PAGELAB_CORE=compiled: {reason}")
    where = core_dir(root) / package if package else core_dir(root)
    package_path.insert(0, str(where))


def selected() -> str:
    """The build ``PAGELAB_CORE`` selects: ``source`` (the default) or ``compiled``."""
    value = os.environ.get("PAGELAB_CORE", "source").strip().lower() or "source"
    if value not in ("source", "compiled"):
        raise ImportError(f"PAGELAB_CORE must be 'source' or 'compiled', not {value!r}")
    return value


def is_compiled() -> bool:
    """True when the running ``app.core`` is the compiled build (its machine module is an
    extension module)."""
    from . import machine

    return not str(machine.__file__).endswith(".py")

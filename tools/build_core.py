"""Build the compiled core: mypyc over ``app.core`` (all but ``compiled.EXCLUDED``) into
``build/mypyc`` (or ``PAGELAB_CORE_BUILD``), never next to the sources, then write the
stamp that ``PAGELAB_CORE=compiled`` checks at import.

    python tools/build_core.py            # what `make core-compiled` runs

Needs a C compiler and the Python headers.  Prints how long the build took."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core import compiled  # noqa: E402


def main() -> int:
    from mypy.version import __version__ as mypy_version
    from mypyc.build import mypycify
    from setuptools import setup

    root = compiled.build_dir()
    modules = compiled.compiled_modules()
    digest = compiled.source_digest()  # of the sources the compiler is about to read
    paths = [f"app/core/{name}.py" for name in modules]
    t0 = time.perf_counter()
    os.chdir(ROOT)  # mypyc names the modules after their paths from here
    with tempfile.TemporaryDirectory(prefix="pagelab-mypyc-") as tmp:
        lib = Path(tmp) / "lib"
        setup(
            name="pagelab-core-compiled",
            packages=[],
            py_modules=[],
            ext_modules=mypycify(
                paths, opt_level="3", group_name=compiled.GROUP, target_dir=str(Path(tmp) / "c")
            ),
            script_args=[
                "--quiet",
                "build_ext",
                "--build-lib",
                str(lib),
                "--build-temp",
                str(Path(tmp) / "obj"),
                "--parallel",
                "2",
            ],
        )
        built = compiled.core_dir(lib)
        found = sorted(
            p.relative_to(built).as_posix().split(".")[0] for p in built.rglob("*") if p.is_file()
        )
        expected = sorted([*modules, compiled.GROUP.rsplit(".", 1)[1] + "__mypyc"])
        if found != expected:
            print(f"build_core: built {found}, expected {expected}", file=sys.stderr)
            return 1
        info = {
            "sources": digest,
            "modules": modules,
            "ext_suffix": compiled.ext_suffix(),
            "mypy": mypy_version,
            "build_s": round(time.perf_counter() - t0, 1),
        }
        (built / compiled.STAMP).write_text(json.dumps(info, indent=1) + "\n")
        # swap the whole build in at once: the stamp always describes the files next to it
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(lib), str(root))
    print(
        f"build_core: compiled {len(modules)} modules of app.core into {root} "
        f"in {info['build_s']} s (mypy {mypy_version})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

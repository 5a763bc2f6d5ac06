"""The three placements of the instance host, as a fixture: the API suite's core
scenarios run against each (``docs/placements.md``).

Ray starts once per session (``ray.init(num_cpus=2)``); each app makes its own two host
actors and kills them when it stops.  Without Ray installed the Ray cases skip — except
in CI (``CI=true``, which ``.ci/run`` sets), where they fail (``tests.conftest.missing``):
``make test`` installs the ``ray`` extra, so a missing Ray there is a broken environment.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from app.lab.settings import Settings
from tests.conftest import missing

PLACEMENTS = ("inprocess", "workers", "ray")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    if importlib.util.find_spec("ray") is None:
        missing("Ray is not installed: pip install -e '.[dev,ray]' (make test does)")
    import ray

    if not ray.is_initialized():
        # the actors import this checkout's ``app``, wherever pytest runs from
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            num_cpus=2,
            namespace="pagelab-tests",
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    yield ray
    ray.shutdown()


@pytest.fixture(params=PLACEMENTS)
def placement(request: pytest.FixtureRequest) -> str:
    """Each placement in turn (the Ray one starts Ray for the session first)."""
    name: str = request.param
    if name == "ray":
        request.getfixturevalue("ray_session")
    return name


def placed(placement: str, **overrides: Any) -> Settings:
    """Test settings (the ``tiny-16m`` default instance) on ``placement``, two workers or
    actors."""
    return Settings(default_preset="tiny-16m", placement=placement, workers=2, **overrides)

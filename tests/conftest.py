import os

import pytest

# the live-server fixtures (url, client, fresh) of the HTTP client and CLI tests
pytest_plugins = ["tests.live"]

# Tests run without a database unless they ask for one (tests/lab/test_durability.py):
# the default (sqlite:///var/pagelab.db) is for `make run`.
os.environ.setdefault("PAGELAB_DATABASE_URL", "")
# No access line per request either (the CLI tests read what a live server in the same
# process leaves on stdout); the tests of the access line turn it on.
os.environ.setdefault("PAGELAB_ACCESS_LOG", "0")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def in_ci() -> bool:
    """CI runs with CI=true (also accepted: 1, yes)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """A test whose prerequisite is not on this machine (Debian's chromium, Debian's
    postgresql, the ``ray`` extra, the compiled core that ``make test`` builds when a C
    compiler is there): it fails in CI, whose .ci/run installs every one of them, and is
    skipped only on a developer's machine that lacks it.  The project's one skip."""
    if in_ci():
        pytest.fail(
            f"{what} (CI must run this test: .ci/run installs what it needs)", pytrace=False
        )
    pytest.skip(what)

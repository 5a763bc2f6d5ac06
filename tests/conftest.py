import os

import pytest

# Tests run without a database unless they ask for one (tests/lab/test_durability.py):
# the default (sqlite:///var/pagelab.db) is for `make run`.
os.environ.setdefault("PAGELAB_DATABASE_URL", "")



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

"""The chaos suite's fixtures: the Lago sandbox (module-scoped, with fault injection).

The suite runs for minutes, so `make test` (plain `pytest`) skips it; `make chaos` runs it
(``POLARIS_CHAOS=1``), and CI runs both (.ci/run).
"""

import os

import pytest

from tests.billing.conftest import lago_sandbox  # noqa: F401  (re-exported for this folder)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("POLARIS_CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="the chaos suite runs with `make chaos` (POLARIS_CHAOS=1)")
    for item in items:
        if "tests/chaos/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(skip)

"""The chaos suite's fixtures: the Lago sandbox (module-scoped, with fault injection)."""

from tests.billing.conftest import lago_sandbox  # noqa: F401  (re-exported for this folder)

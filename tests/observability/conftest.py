"""The e2e platform's fixtures (real processes, Lago sandbox) for the observability tests."""

from tests.billing.conftest import (  # noqa: F401
    billing,
    lago_sandbox,
    lago_settings,
)
from tests.e2e.conftest import (  # noqa: F401
    charger_factory,
    lago_billing,
    platform,
    platform_env,
)

"""`polaris dev` hands each child only the secrets it needs (no processes started here)."""

from __future__ import annotations

import pytest

from cli.dev import polaris_child
from config.settings import Settings, dev_internal_token

SHELL = {
    "POLARIS_AUTH_SECRET": "a-custom-auth-secret-from-the-shell-0123456789",
    "POLARIS_AUTH_INTERNAL_TOKEN": "some-token-exported-in-the-shell",
    "POLARIS_AUTH_INTERNAL_TOKEN_API": "api-token-exported-in-the-shell-0123456789",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in SHELL.items():
        monkeypatch.setenv(name, value)
    return Settings(env="dev", auth_internal_token=None)


def test_the_gateway_gets_no_auth_secret_and_no_internal_token(settings: Settings) -> None:
    env = polaris_child(settings, "gateway", {"POLARIS_ENV": "dev"}, caller=None).full_env()
    assert not [name for name in env if name.startswith("POLARIS_AUTH_SECRET")]
    assert not [name for name in env if name.startswith("POLARIS_AUTH_INTERNAL_TOKEN")]
    for secret in SHELL.values():
        assert secret not in env.values()


def test_the_api_and_worker_get_their_own_token_only(settings: Settings) -> None:
    api = polaris_child(settings, "api", {}, caller="api").full_env()
    worker = polaris_child(settings, "worker", {}, caller="worker").full_env()
    assert "POLARIS_AUTH_SECRET" not in api and "POLARIS_AUTH_SECRET" not in worker
    assert api["POLARIS_AUTH_INTERNAL_TOKEN"] == SHELL["POLARIS_AUTH_INTERNAL_TOKEN_API"]
    assert worker["POLARIS_AUTH_INTERNAL_TOKEN"] == dev_internal_token(
        SHELL["POLARIS_AUTH_SECRET"], "worker"
    )
    assert "POLARIS_AUTH_INTERNAL_TOKEN_API" not in worker

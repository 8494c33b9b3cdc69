"""Attack: start a production process on the defaults, i.e. with the secrets this repository
publishes (the auth secret doubled as the internal admin token).

Each case runs the real ``python -m cli.main <command>`` in a clean environment (no ``POLARIS_``
variable from the test session) and a fresh working directory, and shows that it refuses to start
(exit 2, a message naming the variable) before it opens anything. The last cases show the
sanctioned way around it: a command beside a running ``polaris dev`` (its ``runtime.json``) starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import DEV_AUTH_SECRET, DEV_LAGO_WEBHOOK_SECRET

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    ["api"],
    ["gateway"],
    ["worker"],
    ["auth"],
    ["migrate"],
    ["seed", "demo"],
    ["sessions", "list"],
]
REAL = {
    "POLARIS_AUTH_SECRET": "a-real-auth-secret-0123456789abcdef0123456789",
    "POLARIS_AUTH_INTERNAL_TOKEN": "a-real-internal-token-0123456789abcdef",
    "POLARIS_LAGO_API_KEY": "a-real-lago-key",
    "POLARIS_LAGO_WEBHOOK_SECRET": "a-real-webhook-secret",
    "POLARIS_PAYLOAD_KEYS": "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
}


def polaris(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLARIS_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def refused(result: subprocess.CompletedProcess[str], *names: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    for name in names:
        assert name in result.stderr, result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_no_environment_is_refused(tmp_path: Path, command: list[str]) -> None:
    refused(polaris(tmp_path, *command), "POLARIS_ENV is not set")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_prod_with_development_secrets_is_refused(tmp_path: Path, command: list[str]) -> None:
    # The published auth secret given on purpose: refused whatever the command.
    result = polaris(tmp_path, *command, POLARIS_ENV="prod", POLARIS_AUTH_SECRET=DEV_AUTH_SECRET)
    refused(result, "POLARIS_AUTH_SECRET")
    assert DEV_AUTH_SECRET not in result.stderr + result.stdout  # named, never printed


# What each command is refused for when the Lago secrets and payload keys are left at their
# defaults: only what its process reads (config/settings.py SETTING_READERS). The gateway never
# holds the Lago key, and migrate is no Temporal client.
LEFT_AT_DEFAULT = {
    "api": ["POLARIS_LAGO_API_KEY", "POLARIS_LAGO_WEBHOOK_SECRET", "POLARIS_PAYLOAD_KEYS"],
    "worker": ["POLARIS_LAGO_API_KEY", "POLARIS_PAYLOAD_KEYS"],
    "gateway": ["POLARIS_PAYLOAD_KEYS"],
    "sessions": ["POLARIS_LAGO_API_KEY", "POLARIS_PAYLOAD_KEYS"],
}


@pytest.mark.parametrize("command", sorted(LEFT_AT_DEFAULT))
def test_prod_refuses_defaults_the_command_would_use(tmp_path: Path, command: str) -> None:
    env = {
        k: v
        for k, v in REAL.items()
        if k not in {"POLARIS_LAGO_API_KEY", "POLARIS_LAGO_WEBHOOK_SECRET", "POLARIS_PAYLOAD_KEYS"}
    }
    args = [command, "list"] if command == "sessions" else [command]
    result = polaris(tmp_path, *args, POLARIS_ENV="prod", **env)
    refused(result, *LEFT_AT_DEFAULT[command])
    for name in {"POLARIS_LAGO_API_KEY", "POLARIS_LAGO_WEBHOOK_SECRET"} - set(
        LEFT_AT_DEFAULT[command]
    ):
        assert name not in result.stderr, result.stderr


def test_migrate_needs_no_lago_secret_nor_payload_keys(tmp_path: Path, pg_url: str) -> None:
    result = polaris(tmp_path, "migrate", POLARIS_ENV="prod", POLARIS_DATABASE_URL=pg_url)
    assert result.returncode == 0, result.stderr


def test_prod_with_one_development_secret_left_is_refused(tmp_path: Path) -> None:
    env = {**REAL, "POLARIS_LAGO_WEBHOOK_SECRET": DEV_LAGO_WEBHOOK_SECRET}
    result = polaris(tmp_path, "api", POLARIS_ENV="prod", **env)
    refused(result, "POLARIS_LAGO_WEBHOOK_SECRET")
    assert "POLARIS_AUTH_SECRET has" not in result.stderr


@pytest.mark.parametrize("internal", [None, REAL["POLARIS_AUTH_SECRET"]], ids=["unset", "same"])
def test_prod_refuses_an_internal_token_equal_to_the_auth_secret(
    tmp_path: Path, internal: str | None
) -> None:
    env = {k: v for k, v in REAL.items() if k != "POLARIS_AUTH_INTERNAL_TOKEN"}
    if internal is not None:
        env["POLARIS_AUTH_INTERNAL_TOKEN"] = internal
    # The api calls the auth service's internal listener: it needs a token of its own.
    result = polaris(tmp_path, "api", POLARIS_ENV="prod", **env)
    refused(result, "POLARIS_AUTH_INTERNAL_TOKEN")
    assert REAL["POLARIS_AUTH_SECRET"] not in result.stderr


@pytest.mark.parametrize("env", ["dev", "test"])
def test_dev_or_test_outside_a_dev_stack_is_refused(tmp_path: Path, env: str) -> None:
    result = polaris(tmp_path, "api", POLARIS_ENV=env)
    refused(
        result,
        "POLARIS_ENV=dev is only for" if env == "dev" else "POLARIS_AUTH_INTERNAL_TOKEN is not set",
    )


def write_runtime(cwd: Path, pg_url: str, pid: int, env: str = "dev") -> None:
    data = cwd / ".polaris"
    data.mkdir()
    runtime = {"env": env, "pid": str(pid), "database_url": pg_url}
    (data / "runtime.json").write_text(json.dumps(runtime))


@pytest.mark.parametrize("stack_env", ["dev", "test"])
def test_a_command_beside_a_running_polaris_dev_starts(
    tmp_path: Path, pg_url: str, stack_env: str
) -> None:
    # What `make dev` leaves for a second terminal: runtime.json naming its environment and a
    # live process (here the test process itself stands for `polaris dev`). A stack started with
    # POLARIS_ENV=test hands its children POLARIS_ENV=test; a `make dev` one needs no variable.
    write_runtime(tmp_path, pg_url, os.getpid(), stack_env)
    env = {"POLARIS_ENV": "test"} if stack_env == "test" else {}
    result = polaris(tmp_path, "migrate", **env)
    assert result.returncode == 0, result.stderr
    assert "migrations applied" in result.stdout


def test_a_stale_runtime_file_makes_nothing_a_dev_stack(tmp_path: Path, pg_url: str) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    write_runtime(tmp_path, pg_url, int(gone.stdout))
    refused(polaris(tmp_path, "migrate"), "POLARIS_ENV is not set")
    refused(polaris(tmp_path, "migrate", POLARIS_ENV="dev"), "POLARIS_ENV=dev is only for")


def test_prod_with_real_secrets_passes_the_checks(tmp_path: Path, pg_url: str) -> None:
    result = polaris(tmp_path, "migrate", POLARIS_ENV="prod", POLARIS_DATABASE_URL=pg_url, **REAL)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", [".env", ".env.prod", "deploy/.env"])
def test_env_files_with_secrets_are_never_committed(name: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO_ROOT, check=False)
    assert ignored.returncode == 0, f"{name} is not in .gitignore"
    example = subprocess.run(
        ["git", "check-ignore", "-q", ".env.example"], cwd=REPO_ROOT, check=False
    )
    assert example.returncode == 1, ".env.example must stay committed"

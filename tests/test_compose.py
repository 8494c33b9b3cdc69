"""The production topology: docker-compose.yml, the Dockerfiles, .env.example, selfhosting docs.

Pure and fast: YAML and text only, no Docker and no network. What it holds the files to:
every long-running service has a healthcheck; everything that needs the database waits for it with
a condition; no secret is written down (only ``${...}`` references); ``POLARIS_ENV`` is ``prod``;
every ``polaris`` command in the file parses with the real CLI parser; every variable is documented.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser
from config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SELFHOSTING = ROOT / "docs" / "selfhosting.md"

# A whole value that is one interpolation, required or plain: ${NAME} or ${NAME:?message}.
REQUIRED_REF = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?\?[^}]*)?\}$")
ANY_REF = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)")  # $${X} is for the container shell
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PWD|API_KEY|TOKEN)$")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]+:(?P<password>[^@]*)@")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def _load() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must use the long form, with conditions"
    return {name: spec.get("condition", "") for name, spec in deps.items()}


def _one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait on to *complete*: they run once and exit."""
    return {
        name
        for svc in services.values()
        for name, cond in _depends(svc).items()
        if cond == "service_completed_successfully"
    }


def _is_polaris(service: dict[str, Any]) -> bool:
    build = service.get("build")
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else None
    return dockerfile == "Dockerfile" and "entrypoint" not in service


def _needs_db(service: dict[str, Any]) -> bool:
    return any("DATABASE_URL" in k or k in {"POSTGRES_SEEDS", "PGHOST"} for k in _env(service))


def test_compose_is_yaml_with_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "temporal", "temporal-ui", "migrate", "auth", "api", "worker"}
    assert expected | {"gateway"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:1.")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:2.")
    assert "pgdata" in (_load().get("volumes") or {})


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" in svc:
            continue
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: pin the image ({image!r})"


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    one_shot = _one_shot(services)
    assert "migrate" in one_shot
    for name, svc in services.items():
        if name in one_shot:
            assert svc.get("restart") == "no", f"{name} is one-shot: restart must be 'no'"
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
        assert svc.get("restart") in {"unless-stopped", "always", "on-failure"}, name


def test_healthchecks_probe_the_documented_endpoints(
    services: dict[str, dict[str, Any]],
) -> None:
    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "pg_isready" in probe("postgres")
    assert "/api/health" in probe("api")
    # The gateway's and the worker's health are on their metrics ports, never the OCPP port.
    assert ":9102/healthz" in probe("gateway")
    assert "/healthz" in probe("auth")
    assert ":9103/healthz" in probe("worker")
    assert "cluster health" in probe("temporal")


def test_dependencies_have_conditions_and_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, cond in _depends(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond in CONDITIONS, f"{name} -> {dep}: condition {cond!r}"


def test_database_users_wait_for_postgres_and_migrations(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        if name == "postgres" or not _needs_db(svc):
            continue
        deps = _depends(svc)
        assert deps.get("postgres") == "service_healthy", f"{name} must wait for postgres"
        if (_is_polaris(svc) and name != "migrate") or name == "auth":
            assert deps.get("migrate") == "service_completed_successfully", (
                f"{name} must wait for migrate to complete"
            )
    assert _depends(services["migrate"])["postgres"] == "service_healthy"
    for name in ("api", "worker", "gateway"):
        assert _depends(services[name]).get("temporal") == "service_healthy", name


def test_no_secret_is_written_down(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_REF.match(value), (
                    f"{name}.{key} must be a ${{...}} reference without a default, got {value!r}"
                )
            url = URL_PASSWORD.match(value)
            if url:
                assert REQUIRED_REF.match(url["password"]), (
                    f"{name}.{key}: the password in the URL must be a ${{...}} reference"
                )


def test_polaris_env_is_prod(services: dict[str, dict[str, Any]]) -> None:
    # Everything built from this repository runs Polaris code (Python or the auth service).
    polaris = [name for name, svc in services.items() if "build" in svc]
    assert {"migrate", "api", "worker", "gateway", "auth"} <= set(polaris)
    for name in polaris:
        assert _env(services[name]).get("POLARIS_ENV") == "prod", name


def test_commands_are_real_polaris_subcommands(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    polaris = {name: svc for name, svc in services.items() if _is_polaris(svc)}
    assert {"migrate", "api", "worker", "gateway"} <= set(polaris)
    for name, svc in polaris.items():
        command = svc.get("command")
        assert isinstance(command, list) and command, f"{name}: command must be an argv list"
        args = parser.parse_args([str(a) for a in command])  # SystemExit on an unknown command
        assert args.command == command[0]
    assert polaris["migrate"]["command"] == ["migrate"]


def test_gateway_instances_are_unique(services: dict[str, dict[str, Any]]) -> None:
    instances = [
        _env(svc).get("POLARIS_GATEWAY_INSTANCE")
        for svc in services.values()
        if _is_polaris(svc) and svc.get("command") == ["gateway"]
    ]
    assert instances and all(instances)
    assert len(set(instances)) == len(instances), instances


def test_dockerfiles_match_the_compose_file() -> None:
    app = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim|^ARG PYTHON_IMAGE=python:3\.11-slim", app, re.M)
    assert "pip install ." in app
    assert 'ENTRYPOINT ["polaris"]' in app
    # Every package pyproject.toml installs is copied into the build stage.
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"^include = \[(.*)\]", pyproject, re.M)
    assert include is not None
    for package in re.findall(r'"(\w+)\*"', include[1]):
        assert re.search(rf"^COPY {package} ", app, re.M), (
            f"the Dockerfile does not copy {package}/"
        )
    users = re.findall(r"^USER\s+(\S+)", app, re.M)
    assert users and not users[-1].startswith(("root", "0")), "the app image must not run as root"

    auth = (ROOT / "Dockerfile.auth").read_text()
    assert re.search(r"node:20", auth)
    assert "npm ci" in auth
    assert re.search(r"^CMD \[\"node\", \"server\.mjs\"\]", auth, re.M)
    assert (ROOT / "auth" / "server.mjs").is_file()
    users = re.findall(r"^USER\s+(\S+)", auth, re.M)
    assert users and users[-1] != "root"

    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".polaris", "auth/node_modules", ".env"):
        assert entry in ignored, entry


def _settings_env_names() -> set[str]:
    internal = {"embedded"}  # filled from runtime.json, never set by hand
    return {f"POLARIS_{name.upper()}" for name in Settings.model_fields if name not in internal}


def _auth_env_names() -> set[str]:
    text = (ROOT / "auth" / "config.mjs").read_text()
    return set(re.findall(r"env\.(POLARIS_[A-Z0-9_]+)", text))


def _compose_refs() -> set[str]:
    lines = COMPOSE.read_text().splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return set(ANY_REF.findall(code))


def test_env_example_lists_every_variable() -> None:
    text = ENV_EXAMPLE.read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    missing = (_compose_refs() | _settings_env_names() | _auth_env_names()) - listed
    assert not missing, f".env.example does not list {sorted(missing)}"
    # Secrets are listed empty: the example must never carry a usable value.
    for line in text.splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and SECRET_NAME.search(match[1]):
            assert match[2].strip() == "", f"{match[1]} has a value in .env.example"


def test_selfhosting_documents_every_variable_and_command() -> None:
    text = SELFHOSTING.read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    missing = (_settings_env_names() | _auth_env_names()) - documented
    assert not missing, f"docs/selfhosting.md does not document {sorted(missing)}"
    subcommands = {
        choice
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action.choices
    }
    # `polaris x`, bin/polaris x, or a code line starting with polaris x (not prose about roles).
    for word in re.findall(r"(?:^|`|/|\$ )polaris ([a-z][a-z-]*)", text, re.M):
        assert word in subcommands, f"docs mention `polaris {word}`, which does not exist"


def test_only_the_auth_service_gets_the_auth_secret(services: dict[str, dict[str, Any]]) -> None:
    """The gateway (and every other Python process) never receives the auth secret; each caller
    of the internal API gets its own token; the internal listener is not published."""
    for name, svc in services.items():
        if name != "auth":
            assert "POLARIS_AUTH_SECRET" not in _env(svc), name
    gateway = _env(services["gateway"])
    assert not [k for k in gateway if k.startswith("POLARIS_AUTH_INTERNAL_TOKEN")], gateway
    api, worker = _env(services["api"]), _env(services["worker"])
    assert "POLARIS_AUTH_INTERNAL_TOKEN_API" in api["POLARIS_AUTH_INTERNAL_TOKEN"]
    assert "POLARIS_AUTH_INTERNAL_TOKEN_WORKER" in worker["POLARIS_AUTH_INTERNAL_TOKEN"]
    auth = _env(services["auth"])
    assert auth["POLARIS_AUTH_INTERNAL_PORT"] == "3001"
    published = " ".join(str(p) for p in services["auth"].get("ports", []))
    assert "3001" not in published
    assert api["POLARIS_AUTH_INTERNAL_URL"] == "http://auth:3001"

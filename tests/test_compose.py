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
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PWD|API_KEY|TOKEN|_KEYS)$")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]+:(?P<password>[^@]*)@")
# Named like a secret, but a flag of the Temporal UI (send its sign-in token to the codec).
NOT_SECRET = {"TEMPORAL_CODEC_PASS_ACCESS_TOKEN"}
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
    assert services["temporal"]["image"].startswith("temporalio/server:1.")
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
            if SECRET_NAME.search(key) and key not in NOT_SECRET:
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
    # The console's npm assets: installed from the lock file in a node stage, copied next to the
    # installed package (api/console/assets.py looks there), checked at build time.
    assert re.search(r"^FROM \$\{NODE_IMAGE\} AS console-assets", app, re.M)
    assert "COPY api/console/package.json api/console/package-lock.json" in app
    assert re.search(r"npm ci --omit=dev", app)
    assert "COPY --from=console-assets /console/node_modules" in app
    assert "missing_vendor_files" in app

    auth = (ROOT / "Dockerfile.auth").read_text()
    assert re.search(r"node:20", auth)
    assert "npm ci" in auth
    assert re.search(r"^CMD \[\"node\", \"server\.mjs\"\]", auth, re.M)
    assert (ROOT / "auth" / "server.mjs").is_file()
    users = re.findall(r"^USER\s+(\S+)", auth, re.M)
    assert users and users[-1] != "root"

    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (
        ".git",
        ".venv",
        ".polaris",
        "auth/node_modules",
        "api/console/node_modules",
        ".env",
    ):
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
        if match and SECRET_NAME.search(match[1]) and match[1] not in NOT_SECRET:
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


# --- Every setting reaches the service that reads it, and nothing else (issue #13) -------------
#
# "Which settings a process reads" is config/settings.py's SETTING_READERS, held to the code here:
# a module of a process that reads ``settings.<name>`` (or a Settings property built on it) makes
# that process a reader. Modules are assigned to processes by where they live; shared layers
# (services/, db/, domain/, config/) are used by several processes, so a setting read only there
# needs at least one declared reader, and the declaration says which.

PROCESS_OF_DIR = {
    "api": "api",
    "gateway": "gateway",
    "activities": "worker",
    "workflows": "worker",
}
PROCESS_OF_FILE = {
    "worker.py": "worker",
    "cli/dev.py": "dev",
    "cli/embedded_postgres.py": "dev",
    "cli/embedded_temporal.py": "dev",
    "cli/supervisor.py": "dev",
    "cli/auth_service.py": "auth",
    # The entry point of every process, and clients that the api imports from the worker's side.
    "cli/main.py": "shared",
    "activities/auth_client.py": "shared",
    "activities/lago_client.py": "shared",
}
SHARED_DIRS = {"services", "db", "domain", "config", "observability"}
# Properties that fall back on another setting only when theirs is unset. Compose always sets
# the primary one, so the fallback is not a read of the process that uses the property.
FALLBACK_ONLY = {
    ("public_base", "api_host"),
    ("public_base", "api_port"),
    ("scan_qr_page_url", "api_host"),
    ("scan_qr_page_url", "api_port"),
    ("lago_base_url", "sandbox_port"),
    ("auth_base_url", "auth_port"),
    ("auth_internal_base_url", "auth_internal_port"),
    ("temporal_ui_base", "embedded_temporal_ui_port"),
    ("temporal_ui_base", "embedded"),
    ("files_root", "data_dir"),
    ("internal_token_for", "auth_internal_token_api"),
    ("internal_token_for", "auth_internal_token_worker"),
    ("internal_token_for", "auth_internal_token_gateway"),
    ("internal_token_for", "accepted_internal_token"),
}
# Read by name (getattr with an f-string), invisible to the parse below.
DYNAMIC_READS = {
    "accepted_internal_token": {
        "auth_internal_token_api",
        "auth_internal_token_worker",
        "auth_internal_token_gateway",
    },
}


def _accessors() -> dict[str, set[str]]:
    """Settings property/method → the fields it reads (transitively)."""
    import ast

    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    direct: dict[str, set[str]] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            direct[node.name] = DYNAMIC_READS.get(node.name, set()) | {
                a.attr
                for a in ast.walk(node)
                if isinstance(a, ast.Attribute)
                and isinstance(a.value, ast.Name)
                and a.value.id == "self"
            }
    fields = set(Settings.model_fields)

    def expand(name: str, seen: frozenset[str]) -> set[str]:
        out: set[str] = set()
        for ref in direct.get(name, set()):
            if (name, ref) in FALLBACK_ONLY:
                continue
            if ref in fields:
                out.add(ref)
            elif ref in direct and ref not in seen:
                out |= expand(ref, seen | {ref})
        return out

    return {name: expand(name, frozenset({name})) for name in direct}


def _process_of(path: Path) -> str | None:
    rel = path.relative_to(ROOT).as_posix()
    if rel in PROCESS_OF_FILE:
        return PROCESS_OF_FILE[rel]
    top = rel.split("/", 1)[0]
    if top == "cli":
        return "cli"
    if top in SHARED_DIRS:
        return "shared"
    return PROCESS_OF_DIR.get(top)


def _code_readers() -> dict[str, set[str]]:
    """Setting → the processes (or "shared") whose modules read it."""
    accessors = _accessors()
    fields = set(Settings.model_fields)
    found: dict[str, set[str]] = {}
    roots = [ROOT / d for d in (*PROCESS_OF_DIR, "cli", *SHARED_DIRS)] + [ROOT / "worker.py"]
    files = [p for r in roots for p in ([r] if r.is_file() else r.rglob("*.py"))]
    for path in files:
        if path == ROOT / "config" / "settings.py":
            continue
        process = _process_of(path)
        if process is None:
            continue
        for name in set(re.findall(r"settings\.([a-z_][a-z0-9_]*)\b", path.read_text())):
            read = {name} if name in fields else accessors.get(name, set())
            for field in read:
                found.setdefault(field, set()).add(process)
    return found


def test_setting_readers_match_the_code() -> None:
    from config.settings import INTERNAL_SETTINGS, SETTING_READERS

    fields = set(Settings.model_fields) - INTERNAL_SETTINGS
    assert set(SETTING_READERS) == fields, "declare every setting in SETTING_READERS"
    found = _code_readers()
    problems = []
    for field in sorted(fields):
        declared = set(SETTING_READERS[field])
        code = found.get(field, set())
        missing = code - declared - {"shared"}
        if missing:
            problems.append(f"{field}: read by {sorted(missing)} but not declared for them")
        if not code:
            problems.append(f"{field}: declared for {sorted(declared)} but read nowhere")
        elif "shared" not in code:
            unread = declared - code
            if unread:
                problems.append(
                    f"{field}: declared for {sorted(unread)}, whose code never reads it"
                )
    assert not problems, "\n".join(problems)


# --- Resolving the compose file with the example environment -----------------------------------
#
# What `docker compose config` does with .env, in pure Python: ${VAR}, ${VAR:-default},
# ${VAR-default}, ${VAR:?message}, ${VAR?message}, and $$ for a literal $.

INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
# Where .env.example lists what compose sets by itself (nothing there is delivered from .env).
COMPOSE_SET_MARKER = "Set by docker-compose.yml itself"
# Given to one run with -e, never kept in a container's environment.
PER_RUN = {"admin_password"}
# Processes in each Polaris service (by its command). The CLI runs in the api container.
PROCESSES = {"api": {"api", "cli"}, "worker": {"worker"}, "gateway": {"gateway"}}


class MissingVariable(Exception):
    pass


def _interpolate(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and (current is None if op == "-" else empty):
            return _interpolate(arg, env)
        if op in (":?", "?") and (current is None if op == "?" else empty):
            raise MissingVariable(name)
        return current or ""

    return INTERPOLATION.sub(one, value)


def _resolve_node(node: Any, env: dict[str, str], missing: set[str]) -> Any:
    if isinstance(node, str):
        try:
            return _interpolate(node, env)
        except MissingVariable as exc:
            missing.add(str(exc))
            return ""
    if isinstance(node, list):
        return [_resolve_node(item, env, missing) for item in node]
    if isinstance(node, dict):
        return {key: _resolve_node(value, env, missing) for key, value in node.items()}
    return node


def _resolve(env: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    missing: set[str] = set()
    data = _resolve_node(_load(), env, missing)
    return data, missing


def _example() -> tuple[dict[str, str], set[str]]:
    """The variables .env.example sets, and every variable it names outside the compose-set
    section (set or commented out: an operator may set any of them)."""
    values: dict[str, str] = {}
    named: set[str] = set()
    compose_set = False
    for line in ENV_EXAMPLE.read_text().splitlines():
        if COMPOSE_SET_MARKER in line:
            compose_set = True
        set_match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if set_match:
            values[set_match[1]] = set_match[2]
        any_match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if any_match and not compose_set:
            named.add(any_match[1])
    return values, named


def _filled_example() -> dict[str, str]:
    """The example with what the operator must fill in (every empty required variable)."""
    values, _ = _example()
    _, missing = _resolve(values)
    filled = dict(values)
    for name in missing:
        filled[name] = "https://x.example.com" if name.endswith("_URL") else f"v-{name.lower()}"
    filled["POLARIS_PAYLOAD_KEYS"] = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    return filled


def _resolved_services(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    data, missing = _resolve(env)
    assert not missing, missing
    result: dict[str, dict[str, Any]] = data["services"]
    return result


def _processes(service: dict[str, Any]) -> set[str]:
    if not _is_polaris(service):
        return set()
    return PROCESSES.get(str((service.get("command") or [""])[0]), {"migrate"})


def _settings_for(processes: set[str]) -> set[str]:
    from config.settings import SETTING_READERS

    return {
        f"POLARIS_{name.upper()}"
        for name, readers in SETTING_READERS.items()
        if readers & processes and name not in PER_RUN
    }


def test_the_example_needs_exactly_the_secrets_and_addresses_filled_in() -> None:
    values, _ = _example()
    _, missing = _resolve(values)
    assert missing == {
        "POSTGRES_PASSWORD",
        "POLARIS_DB_PASSWORD",
        "TEMPORAL_DB_PASSWORD",
        "POLARIS_AUTH_SECRET",
        "POLARIS_AUTH_INTERNAL_TOKEN_API",
        "POLARIS_AUTH_INTERNAL_TOKEN_WORKER",
        "POLARIS_LAGO_API_KEY",
        "POLARIS_LAGO_WEBHOOK_SECRET",
        "POLARIS_LAGO_API_URL",
        "POLARIS_PUBLIC_BASE_URL",
    }
    assert all(values[name] == "" for name in missing)


def test_each_service_gets_exactly_the_settings_its_processes_read() -> None:
    """Both directions: a setting a service reads and compose does not deliver, and a variable
    compose delivers that the service never reads."""
    problems = []
    for name, svc in _resolved_services(_filled_example()).items():
        processes = _processes(svc)
        if not processes:
            continue
        delivered = {k for k in _env(svc) if k.startswith("POLARIS_")}
        wanted = _settings_for(processes)
        for key in sorted(wanted - delivered):
            problems.append(f"{name} ({sorted(processes)}) reads {key}, compose does not set it")
        for key in sorted(delivered - wanted):
            problems.append(f"{name} ({sorted(processes)}) never reads {key}, compose sets it")
    auth = _resolved_services(_filled_example())["auth"]
    for key in sorted(set(_env(auth)) - _auth_env_names()):
        problems.append(f"auth never reads {key}, compose sets it")
    assert not problems, "\n".join(problems)


def test_every_example_variable_reaches_the_services_that_read_it() -> None:
    """Set each variable .env.example names to a marker: the marker shows up in every service
    whose processes read that setting (and somewhere, for compose's own variables)."""
    from config.settings import SETTING_READERS

    base = _filled_example()
    _, named = _example()
    auth_reads = _auth_env_names()
    problems = []
    for variable in sorted(named - {f"POLARIS_{name.upper()}" for name in PER_RUN}):
        marker = f"marker{abs(hash(variable)) % 10**8}"
        if variable == "POLARIS_PAYLOAD_KEYS":
            marker = "m1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        services = _resolved_services({**base, variable: marker})
        if marker not in repr(services):
            problems.append(f"{variable} reaches no service")
            continue
        field = variable.removeprefix("POLARIS_").lower()
        readers = SETTING_READERS.get(field, frozenset()) if variable.startswith("POLARIS_") else ()
        for name, svc in services.items():
            env = _env(svc)
            reads = bool(set(readers) & _processes(svc)) or (
                name == "auth" and variable in auth_reads
            )
            if reads and marker not in env.get(variable, ""):
                problems.append(f"{variable} does not reach {name}, which reads it")
    assert not problems, "\n".join(problems)


def test_the_resolved_environments_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Python service's environment, as compose would start it, passes the settings'
    validation (prod checks included)."""
    import os

    for name, svc in _resolved_services(_filled_example()).items():
        if not _processes(svc):
            continue
        for key in [k for k in os.environ if k.startswith("POLARIS_")]:
            monkeypatch.delenv(key)
        for key, value in _env(svc).items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.env == "prod", name
        if "api" in _processes(svc):
            assert settings.lago_plan_code == "ev_charging"
            assert settings.lago_webhook_public_key is None  # empty: unset, not ""
        if "worker" in _processes(svc):
            assert settings.lago_webhook_breaker_threshold == 5
            assert settings.lago_plan_code == "ev_charging"


def test_temporal_runs_on_the_server_image_set_up_by_admin_tools_jobs(
    services: dict[str, dict[str, Any]],
) -> None:
    temporal = services["temporal"]
    assert temporal["image"].startswith("temporalio/server:1.")
    assert all("auto-setup" not in str(svc.get("image", "")) for svc in services.values())
    assert _depends(temporal)["temporal-schema"] == "service_completed_successfully"
    assert "NUM_HISTORY_SHARDS" in _env(temporal)
    shards = _resolved_services(_filled_example())["temporal"]["environment"]
    assert shards["NUM_HISTORY_SHARDS"] == "512"
    for job in ("temporal-schema", "temporal-namespace"):
        assert services[job]["image"].startswith("temporalio/admin-tools:1.")
        assert services[job]["restart"] == "no"
    schema = " ".join(services["temporal-schema"]["command"])
    assert "setup-schema" in schema and "update-schema" in schema
    namespace = " ".join(services["temporal-namespace"]["command"])
    assert "namespace create" in namespace
    for name in ("api", "worker", "gateway", "temporal-ui"):
        assert _depends(services[name])["temporal-namespace"] == "service_completed_successfully"
    # Server and admin-tools are the same release.
    version = temporal["image"].rpartition(":")[2]
    assert services["temporal-schema"]["image"].rpartition(":")[2].startswith(version)

"""Whether a ``polaris`` command may start with the settings it was given (fail closed).

The repository publishes development secrets (the auth secret, which was also the internal admin
token; the sandbox's Lago key and webhook secret). A process that starts with one of them on a
reachable host can be driven by anyone who read the repository, so:

- ``polaris dev`` runs with development defaults (it sets ``POLARIS_ENV=dev`` itself);
- a command started beside a *running* ``polaris dev`` (its ``runtime.json`` in the data directory
  names the environment and a live process) inherits that environment and its defaults: this is
  how the dev stack's own children and ``polaris seed demo`` / ``polaris sessions …`` from a
  second terminal start;
- every other command needs an explicit ``POLARIS_ENV`` and refuses any development secret,
  whatever that environment is (``prod`` refuses them in the settings already).

The tests build ``Settings(env="test")`` in-process and never pass through here; the tests that
start real ``polaris`` processes give them real secrets.
"""

from __future__ import annotations

from config.settings import (
    SETTING_READERS,
    Process,
    Settings,
    dev_stack_env,
    development_secrets,
    payload_keys_problem,
    read_runtime,
)

# The one command that may start without POLARIS_ENV and with development defaults.
DEV_COMMAND = "dev"

# Commands that call the auth service's internal listener, each with its own token. Outside a
# dev stack an unset token would fall back to one derived from the published auth secret.
INTERNAL_CALLERS = frozenset({"api", "worker", "seed", "admin"})
# Commands that run the auth service itself, and so need its secret.
AUTH_SECRET_HOLDERS = frozenset({"auth"})
# The process a command runs (config/settings.py SETTING_READERS); any other command is the CLI.
COMMAND_PROCESS: dict[str, Process] = {
    "api": "api",
    "worker": "worker",
    "gateway": "gateway",
    "migrate": "migrate",
    "auth": "auth",
    "dev": "dev",
}


def command_reads(command: str) -> set[str]:
    """The settings the process of ``command`` reads."""
    process = COMMAND_PROCESS.get(command, "cli")
    return {name for name, readers in SETTING_READERS.items() if process in readers}


def startup_refusal(settings: Settings, command: str) -> str | None:
    """Why ``command`` must not start with ``settings``; ``None`` when it may."""
    if command == DEV_COMMAND:
        return None
    # Part of a running `polaris dev` (its children, or a second terminal): its defaults apply.
    # prod never gets here with a development secret *given*: the settings refuse those; one
    # left at its default is refused below for the commands that read it.
    beside_dev = (
        settings.env is not None and dev_stack_env(read_runtime(settings.data_dir)) == settings.env
    )
    if settings.env is None:
        return (
            "POLARIS_ENV is not set. A deployment sets POLARIS_ENV=prod (with real secrets); "
            "development defaults are only for `polaris dev` and commands run beside it"
        )
    if beside_dev:
        return None
    if settings.env == "dev":
        return (
            f"POLARIS_ENV=dev is only for `polaris dev` and commands run beside a running "
            f"`polaris dev` (none found in {settings.data_dir}); set POLARIS_ENV=prod with "
            "real secrets"
        )
    reads = command_reads(command)
    problems = development_secrets(settings, only=reads)
    if "payload_keys" in reads and (problem := payload_keys_problem(settings)) is not None:
        problems.append(problem)
    if command in INTERNAL_CALLERS and settings.auth_internal_token is None:
        problems.append(
            f"POLARIS_AUTH_INTERNAL_TOKEN is not set: `polaris {command}` needs its own token for "
            "the auth service's internal listener"
        )
    if command in AUTH_SECRET_HOLDERS and settings.auth_secret is None:
        problems.append("POLARIS_AUTH_SECRET is not set: the auth service needs its own secret")
    if problems:
        return f"POLARIS_ENV={settings.env}: " + "; ".join(problems)
    return None


__all__ = ["DEV_COMMAND", "startup_refusal"]

"""Start the auth service: BetterAuth under Node, from the repository's ``auth/`` folder.

``polaris auth`` and ``polaris dev`` use this; so do the tests. The service itself is plain ESM
JavaScript (no build step); its dependencies are pinned in ``auth/package-lock.json`` and
installed with ``npm ci`` the first time (and again whenever the lock file changes).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from config.settings import AUTH_CALLERS, Settings

AUTH_DIR: Path = Path(__file__).resolve().parent.parent / "auth"
SERVER_SCRIPT = "server.mjs"
MIN_NODE_MAJOR = 20


class AuthServiceError(RuntimeError):
    """The auth service cannot be installed or started on this machine."""


def _which(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise AuthServiceError(
            f"`{tool}` is not on PATH: the auth service (BetterAuth) needs Node.js "
            f">= {MIN_NODE_MAJOR} with npm. Install it from https://nodejs.org or your package "
            "manager, or point POLARIS_AUTH_URL at an auth service running elsewhere."
        )
    return found


def _check_node_version(node: str) -> None:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    if out.returncode != 0 or match is None:
        raise AuthServiceError(f"cannot tell the Node.js version from `{node} --version`")
    if int(match.group(1)) < MIN_NODE_MAJOR:
        raise AuthServiceError(
            f"Node.js {out.stdout.strip()} is too old for the auth service; "
            f"need >= {MIN_NODE_MAJOR}"
        )


def _installed_marker() -> Path:
    # npm writes node_modules/.package-lock.json on every install; its age tells whether the
    # install is older than the lock file.
    return AUTH_DIR / "node_modules" / ".package-lock.json"


def _needs_install() -> bool:
    marker = _installed_marker()
    if not marker.exists():
        return True
    return marker.stat().st_mtime < (AUTH_DIR / "package-lock.json").stat().st_mtime


def ensure_installed() -> None:
    """Run ``npm ci`` in ``auth/`` when ``node_modules`` is missing or older than the lock file.

    Safe to call from several processes at once: they serialise on a lock held on the lock file.
    """
    node = _which("node")
    npm = _which("npm")
    _check_node_version(node)
    lock_file = AUTH_DIR / "package-lock.json"
    if not lock_file.exists():
        raise AuthServiceError(f"{lock_file} is missing; the auth service cannot be installed")
    if not _needs_install():
        return
    with lock_file.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if not _needs_install():  # another process installed while we waited
                return
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=AUTH_DIR,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
                raise AuthServiceError(f"`npm ci` in {AUTH_DIR} failed:\n{tail}")
            # npm ci keeps the lock file's mtime; make sure the marker is newer than it.
            _installed_marker().touch()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def settings_environment(settings: Settings, *, database_url: str) -> dict[str, str]:
    """:func:`environment` for ``polaris auth`` and ``polaris dev``, from the settings object."""
    merged = environment(
        database_url=database_url,
        port=settings.auth_port,
        secret=settings.auth_secret_value(),
        env=settings.require_env(),
        internal_port=settings.auth_internal_port,
        internal_host=settings.auth_internal_host,
        caller_tokens={c: settings.accepted_internal_token(c) for c in AUTH_CALLERS},
    )
    # The web console (served by the API) is a trusted origin: its magic links land on it.
    origins = [o for o in merged.get("POLARIS_AUTH_TRUSTED_ORIGINS", "").split(",") if o.strip()]
    if settings.public_base not in origins:
        origins.append(settings.public_base)
    merged["POLARIS_AUTH_TRUSTED_ORIGINS"] = ",".join(origins)
    return merged


def command() -> list[str]:
    """The argv that runs the auth service (absolute paths, no shell)."""
    return [_which("node"), str(AUTH_DIR / SERVER_SCRIPT)]


def environment(
    *,
    database_url: str,
    port: int,
    secret: str,
    env: str,
    host: str = "127.0.0.1",
    base_url: str | None = None,
    internal_port: int | None = None,
    internal_host: str | None = None,
    caller_tokens: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The auth service's environment, merged over ``os.environ``.

    ``base_url`` (the service's public URL: JWT issuer and audience, magic-link host) defaults
    to ``POLARIS_AUTH_BASE_URL`` if the environment has one, else ``http://<host>:<port>``.
    ``internal_port``/``internal_host`` place the private internal listener; ``caller_tokens``
    (caller -> token) become ``POLARIS_AUTH_INTERNAL_TOKEN_<CALLER>``; a caller left out keeps
    what the environment says (dev and test derive unset ones from the secret).
    """
    merged = dict(os.environ)
    reachable_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    merged.update(
        {
            "POLARIS_DATABASE_URL": database_url,
            "POLARIS_AUTH_PORT": str(port),
            "POLARIS_AUTH_HOST": host,
            "POLARIS_AUTH_SECRET": secret,
            "POLARIS_ENV": env,
            "POLARIS_AUTH_BASE_URL": base_url
            or os.environ.get("POLARIS_AUTH_BASE_URL")
            or f"http://{reachable_host}:{port}",
        }
    )
    if internal_port is not None:
        merged["POLARIS_AUTH_INTERNAL_PORT"] = str(internal_port)
    if internal_host is not None:
        merged["POLARIS_AUTH_INTERNAL_HOST"] = internal_host
    for caller, token in (caller_tokens or {}).items():
        if token is not None:
            merged[f"POLARIS_AUTH_INTERNAL_TOKEN_{caller.upper()}"] = token
    # A calling process's own token means nothing to the auth service; never pass it on.
    merged.pop("POLARIS_AUTH_INTERNAL_TOKEN", None)
    # BetterAuth reads NODE_ENV (secure cookies, warnings); keep it in step with POLARIS_ENV.
    merged["NODE_ENV"] = {"prod": "production", "test": "test"}.get(env, "development")
    return merged

"""The one settings object (environment prefix ``POLARIS_``).

Entry points build it once with :func:`load_settings` and pass it down; nothing reads the
environment at import time.

When a dependency is not given by URL, ``polaris dev`` runs an embedded one and writes the
addresses it chose to ``<data_dir>/runtime.json``. :func:`load_settings` reads that file, so any
``polaris`` command started from the repository in a second terminal finds the embedded stack
without exporting anything. A URL given in the environment always wins over the file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RUNTIME_FILE = "runtime.json"

# Secrets that ship in the repository for the embedded default. Outside dev they are refused.
DEV_AUTH_SECRET = "polaris-dev-auth-secret-change-me-0123456789"
DEV_LAGO_API_KEY = "sandbox-key"
DEV_LAGO_WEBHOOK_SECRET = "sandbox-webhook-secret"

# Callers of the auth service's internal listener; each has its own token.
AuthCaller = Literal["api", "worker", "gateway"]
AUTH_CALLERS: tuple[AuthCaller, ...] = ("api", "worker", "gateway")


def dev_internal_token(auth_secret: str, caller: str) -> str:
    """The dev/test internal token of a caller, derived from the auth secret.

    The auth service derives the same value (auth/config.mjs, devInternalToken) when
    ``POLARIS_AUTH_INTERNAL_TOKEN_<CALLER>`` is unset outside prod.
    """
    message = f"polaris-internal-token:{caller}".encode()
    return hmac.new(auth_secret.encode(), message, hashlib.sha256).hexdigest()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLARIS_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = Path(".polaris")
    log_level: str = "INFO"

    # PostgreSQL: a URL replaces the embedded server.
    database_url: str | None = None
    embedded_pg_port: int = 55432

    # Temporal: an address replaces the embedded dev server.
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "polaris-sessions"
    embedded_temporal_port: int = 7233
    embedded_temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 9000
    gateway_instance: str = "gw-1"
    gateway_auto_register: bool = False
    # How long Authorize waits for the workflow's pre-authorization before answering locally.
    authorize_budget_s: float = 2.0
    # At most one meter-progress signal per transaction per this many seconds.
    meter_signal_interval_s: float = 30.0
    heartbeat_interval_s: int = 300

    auth_url: str | None = None
    auth_port: int = 3000
    # Only the auth service needs it (and `polaris auth` / `polaris dev`, which start it).
    # Unset: the development value in dev and test; required to start the auth service in prod.
    auth_secret: SecretStr | None = None

    # --- Auth service: internal listener and per-caller tokens (issue #8) --------------------
    # Where callers reach the private internal listener (default http://127.0.0.1:<port>).
    auth_internal_url: str | None = None
    # Where the auth service binds it, when polaris starts the auth service.
    auth_internal_host: str = "127.0.0.1"
    auth_internal_port: int = 3001
    # The token THIS process presents on the internal listener (its own caller's token).
    auth_internal_token: SecretStr | None = None
    # The auth service's side: the token it accepts from each caller. Needed only by the
    # process that starts the auth service; dev and test derive them from the auth secret.
    auth_internal_token_api: SecretStr | None = None
    auth_internal_token_worker: SecretStr | None = None
    auth_internal_token_gateway: SecretStr | None = None
    # --- end auth service internal listener ---------------------------------------------------

    lago_api_url: str | None = None
    lago_api_key: SecretStr = SecretStr(DEV_LAGO_API_KEY)
    lago_webhook_secret: SecretStr = SecretStr(DEV_LAGO_WEBHOOK_SECRET)
    lago_billable_metric_code: str = "ev_charging_kwh"
    lago_plan_code: str = "ev_charging"
    # Lago's RSA public key (PEM, or base64 of the PEM) for JWT-signed webhooks.
    lago_webhook_public_key: SecretStr | None = None
    # Consecutive webhook processing failures that open the circuit breaker.
    lago_webhook_breaker_threshold: int = 5
    sandbox_port: int = 3100

    # Mail relay (activities/mail.py): smtp://user:password@host:587?starttls=true, or
    # smtps://… for TLS from the start. Unset: mail is kept in the outbox and logged, not sent.
    smtp_url: SecretStr | None = None
    mail_from: str = "Polaris Express <no-reply@localhost>"

    admin_email: str = "admin@example.com"
    admin_password: SecretStr | None = None

    # Filled from runtime.json by load_settings(); not meant to be set by hand.
    embedded: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refuse_dev_secrets_outside_dev(self) -> Settings:
        if self.env == "prod":
            for name, value, dev in (
                ("POLARIS_AUTH_SECRET", self.auth_secret, DEV_AUTH_SECRET),
                ("POLARIS_LAGO_API_KEY", self.lago_api_key, DEV_LAGO_API_KEY),
                ("POLARIS_LAGO_WEBHOOK_SECRET", self.lago_webhook_secret, DEV_LAGO_WEBHOOK_SECRET),
            ):
                if value is not None and value.get_secret_value() == dev:
                    raise ValueError(f"{name} still has its development value; set a real secret")
        return self

    # -- derived addresses -------------------------------------------------------------------

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / RUNTIME_FILE

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "No database: set POLARIS_DATABASE_URL or start the embedded stack with "
                "`polaris dev`"
            )
        return self.database_url

    def require_temporal_address(self) -> str:
        if not self.temporal_address:
            raise RuntimeError(
                "No Temporal: set POLARIS_TEMPORAL_ADDRESS or start the embedded stack with "
                "`polaris dev`"
            )
        return self.temporal_address

    @property
    def auth_base_url(self) -> str:
        return self.auth_url or f"http://127.0.0.1:{self.auth_port}"

    def auth_secret_value(self) -> str:
        """The auth secret, for starting the auth service (dev and test fall back to the
        development value)."""
        if self.auth_secret is not None:
            return self.auth_secret.get_secret_value()
        if self.env in ("dev", "test"):
            return DEV_AUTH_SECRET
        raise RuntimeError("POLARIS_AUTH_SECRET is required to start the auth service")

    @property
    def auth_internal_base_url(self) -> str:
        return (self.auth_internal_url or f"http://127.0.0.1:{self.auth_internal_port}").rstrip("/")

    def internal_token_for(self, caller: AuthCaller) -> str:
        """The token this process presents as ``caller`` on the auth service's internal listener."""
        if self.auth_internal_token is not None:
            return self.auth_internal_token.get_secret_value()
        return self.accepted_internal_token(caller) or _missing_internal_token()

    def accepted_internal_token(self, caller: AuthCaller) -> str | None:
        """The token the auth service accepts from ``caller`` (None: that caller is refused)."""
        given: SecretStr | None = getattr(self, f"auth_internal_token_{caller}")
        if given is not None:
            return given.get_secret_value()
        if self.env in ("dev", "test"):
            return dev_internal_token(self.auth_secret_value(), caller)
        return None

    @property
    def lago_base_url(self) -> str:
        return self.lago_api_url or f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def gateway_task_queue(self) -> str:
        return f"gateway-{self.gateway_instance}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, then fill unset addresses from runtime.json."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    runtime = read_runtime(settings.data_dir)
    if not runtime:
        return settings
    fill: dict[str, object] = {}
    for key in (
        "database_url",
        "temporal_address",
        "auth_url",
        "auth_internal_url",
        "lago_api_url",
    ):
        if getattr(settings, key) is None and runtime.get(key):
            fill[key] = runtime[key]
    if fill:
        fill["embedded"] = sorted(fill)
        settings = settings.model_copy(update=fill)
    return settings


def _missing_internal_token() -> str:
    raise RuntimeError(
        "POLARIS_AUTH_INTERNAL_TOKEN is required outside dev: this process's token for the "
        "auth service's internal listener (docs/selfhosting.md)"
    )


def read_runtime(data_dir: Path) -> dict[str, str]:
    path = data_dir / RUNTIME_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items() if v is not None}


def write_runtime(data_dir: Path, values: dict[str, str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (RUNTIME_FILE + ".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True))
    tmp.replace(data_dir / RUNTIME_FILE)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` → the psycopg 3 dialect SQLAlchemy needs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("database URL must start with postgresql://")


def libpq_url(url: str) -> str:
    """The plain ``postgresql://`` form that libpq and node-postgres understand."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)

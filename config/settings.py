"""The one settings object (environment prefix ``POLARIS_``).

Entry points build it once with :func:`load_settings` and pass it down; nothing reads the
environment at import time.

When a dependency is not given by URL, ``polaris dev`` runs an embedded one and writes the
addresses it chose to ``<data_dir>/runtime.json``. :func:`load_settings` reads that file, so any
``polaris`` command started from the repository in a second terminal finds the embedded stack
without exporting anything. A URL given in the environment always wins over the file.

Fail closed (issue #8): there is no default environment. ``polaris dev`` sets ``dev`` itself, the
tests build ``Settings(env="test")``, and every other command must be told (``POLARIS_ENV``) or
run beside a live ``polaris dev`` (its ``runtime.json`` carries the marker; see
:func:`dev_stack_env`). The secrets published in this repository are listed in
:data:`DEV_SECRETS`; ``prod`` refuses every one of them, and the CLI refuses them outside a dev
stack (``config/startup.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.energy import MeterLimits
from domain.operations import CENTRAL_SYSTEM_ACTIONS

RUNTIME_FILE = "runtime.json"

# Operators may read and nudge chargers; what reboots, reflashes or reconfigures them is the
# admin's unless POLARIS_OPERATION_ALLOWLIST says otherwise (docs/operations.md).
DEFAULT_OPERATION_ALLOWLIST: dict[str, Literal["*"] | list[str]] = {
    "admin": "*",
    "operator": [
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "UnlockConnector",
        "ChangeAvailability",
        "GetConfiguration",
        "ClearCache",
        "TriggerMessage",
        "GetLocalListVersion",
        "ReserveNow",
        "CancelReservation",
        "GetCompositeSchedule",
        "GetDiagnostics",
    ],
}

# Secrets that ship in the repository for the embedded default. Outside dev they are refused.
DEV_AUTH_SECRET = "polaris-dev-auth-secret-change-me-0123456789"
DEV_LAGO_API_KEY = "sandbox-key"
DEV_LAGO_WEBHOOK_SECRET = "sandbox-webhook-secret"

# Every secret field with a development default, and that default. A new secret setting with a
# published default joins this list; the fail-closed checks go over it (and over every other
# secret field, which may not carry one of these values either).
DEV_SECRETS: dict[str, str] = {
    "auth_secret": DEV_AUTH_SECRET,
    "lago_api_key": DEV_LAGO_API_KEY,
    "lago_webhook_secret": DEV_LAGO_WEBHOOK_SECRET,
}

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
    # An empty variable is an unset one (its default applies): compose delivers every setting as
    # ${POLARIS_X:-}, so an operator who leaves one out of .env gets the default, not an error.
    model_config = SettingsConfigDict(env_prefix="POLARIS_", extra="ignore", env_ignore_empty=True)

    # No default: see the module docstring (fail closed).
    env: Literal["dev", "test", "prod"] | None = None
    data_dir: Path = Path(".polaris")
    log_level: str = "INFO"
    # -- Observability (docs/observability.md) ------------------------------------------------
    # Log lines: ``json`` (one object a line) or ``console`` (human-readable). Unset: console
    # under ``polaris dev`` (env dev), JSON everywhere else.
    log_format: Literal["json", "console"] | None = None
    # Prometheus /metrics and /healthz of each process, on a port of its own (never the public
    # OCPP or API port). Unset: no metrics listener (compose sets them). 0: any free port.
    metrics_host: str = "127.0.0.1"
    api_metrics_port: int | None = None
    gateway_metrics_port: int | None = None
    worker_metrics_port: int | None = None
    # The Temporal SDK's own Prometheus endpoint (its Rust core's metrics), one per process that
    # runs a Temporal worker. Unset: off.
    gateway_temporal_metrics_port: int | None = None
    worker_temporal_metrics_port: int | None = None
    # The worker's /healthz fails when its pollers were not seen by Temporal for this long.
    worker_poll_stale_s: float = 120.0
    # OpenTelemetry tracing: on when true, or when OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*
    # name an exporter; the exporter itself is configured by the standard OTEL_* variables.
    tracing: bool = False

    # PostgreSQL: a URL replaces the embedded server.
    database_url: str | None = None
    embedded_pg_port: int = 55432

    # Temporal: an address replaces the embedded dev server.
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "polaris-sessions"
    embedded_temporal_port: int = 7233
    embedded_temporal_ui_port: int = 8233
    # The Temporal UI as operators' browsers reach it (session timelines link to it). Unset: the
    # embedded dev server's UI when polaris dev runs it, else no link.
    temporal_ui_url: str | None = None
    # -- Temporal: a secured cluster or Temporal Cloud (config/temporal.py; docs/selfhosting.md) --
    # TLS to the frontend: on with any of the options below, or alone with the system's roots.
    temporal_tls: bool = False
    # PEM of the CA that signed the server's certificate (else the system's roots).
    temporal_tls_ca: Path | None = None
    # mTLS: this client's certificate chain and private key (PEM files), both or neither.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    # The name the server's certificate is checked against (default: the address's host).
    temporal_tls_server_name: str | None = None
    # Temporal Cloud API key (sent as a bearer token; implies TLS).
    temporal_api_key: SecretStr | None = None
    # -- Payload encryption (config/payload_codec.py) ------------------------------------------
    # Keys of the codec that encrypts workflow payloads (AES-256-GCM): comma-separated
    # ``id:base64key`` (32-byte keys). The FIRST key encrypts new payloads; every listed key
    # decrypts. Rotate by putting a new key first and keeping the old ones until histories that
    # used them are past Temporal's retention. Required with POLARIS_ENV=prod unless
    # POLARIS_PAYLOAD_ENCRYPTION=off.
    payload_keys: SecretStr | None = None
    # "off" writes personal data (idTags, e-mails, customer ids) in clear into Temporal's
    # histories; prod refuses to start without keys unless it is set, and warns on every start.
    payload_encryption: Literal["on", "off"] = "on"
    # Bearer token the Temporal UI's codec server calls (/api/codec/decode) may present instead of
    # an admin's JWT. Unset: only a live admin's JWT opens the codec endpoint.
    codec_token: SecretStr | None = None
    # -- Operator views (docs/operator-views.md) ------------------------------------------------
    # The IANA time zone "today" and "this month" are counted in for the KPIs.
    operator_timezone: str = "UTC"

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # -- Live streams and platform events (docs/live.md) ----------------------------------------
    # A comment line on every open stream this often, so proxies and clients see it is alive.
    stream_heartbeat_s: float = Field(default=15.0, gt=0)
    # Events buffered per connected client; a client that falls this far behind is disconnected
    # (it reconnects with Last-Event-ID and catches up from the database).
    stream_queue_size: int = Field(default=1000, ge=1)
    # Last-Event-ID replay: at most this many missed events, none older than the age; beyond
    # either, the client gets a ``reset`` event and refetches.
    stream_replay_max: int = Field(default=1000, ge=1)
    stream_replay_max_age_s: float = Field(default=3600.0, gt=0)
    # An id still missing while later ones are committed is waited for this long (a transaction
    # committing late) before the stream moves past it (a rolled-back one never fills it).
    stream_gap_grace_s: float = Field(default=2.0, ge=0)
    # At most one session.updated for meter progress alone per session per this many seconds.
    session_progress_event_interval_s: float = Field(default=10.0, ge=0)
    # How often the worker looks for chargers silent for heartbeat_interval_s x 3.
    charger_offline_check_s: float = Field(default=60.0, gt=0)

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 9000
    gateway_instance: str = "gw-1"
    gateway_auto_register: bool = False
    # How long Authorize waits for the workflow's pre-authorization before answering locally
    # (the pre-authorization goes on; a late refusal still stops the session).
    # 50 ms: a tap never waits on a slow or cold worker (issue 12's Authorize p99 < 100 ms).
    authorize_budget_s: float = 0.05
    # At most one meter-progress signal per transaction per this many seconds.
    meter_signal_interval_s: float = 30.0
    heartbeat_interval_s: int = 300

    # -- Gateway: charger authentication and handshake limits (docs/gateway.md) ----------------
    # Addresses or networks (comma-separated) of proxies in front of the gateway whose
    # X-Forwarded-For is believed. Empty: the socket peer is the client, whatever headers say.
    gateway_trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    # Wrong passwords allowed per client address and per chargeBoxId within the window (handshakes
    # still being checked count too); past it the gateway answers 429 without hashing.
    gateway_auth_failure_limit: int = Field(default=10, ge=1)
    gateway_auth_failure_window_s: float = Field(default=60.0, gt=0)
    # The first lockout lasts this long; each further lockout doubles it, up to the maximum.
    gateway_auth_backoff_s: float = Field(default=30.0, gt=0)
    gateway_auth_backoff_max_s: float = Field(default=300.0, gt=0)
    # Threads that run scrypt for handshakes (~50 ms of CPU and 16 MiB each per check).
    gateway_auth_hash_workers: int = Field(default=2, ge=1)
    # Handshakes being checked at once; past it a handshake waits for a slot (up to the queue's
    # length and wait), else the gateway answers 503.
    gateway_max_pending_handshakes: int = Field(default=64, ge=1)
    # Handshakes waiting for a slot, and for how long (keep it under the WebSocket open timeout,
    # 10 s): a reconnect storm waits its turn instead of retrying (each retry costs a handshake).
    gateway_handshake_queue: int = Field(default=4096, ge=0)
    gateway_handshake_queue_wait_s: float = Field(default=5.0, ge=0, lt=10)
    # Refused unknown chargers kept for `polaris chargers pending` (docs/fleet.md): at most this
    # many ids, and one update per id per interval, so a flood of made-up ids stays bounded.
    gateway_pending_chargers_max: int = Field(default=1000, ge=1)
    gateway_pending_charger_interval_s: float = Field(default=60.0, ge=0)
    # -- gateway frame limits (docs/gateway.md, "Frame limits and poison frames") ------------
    # Largest WebSocket message a charger may send; a bigger one closes the socket with 1009.
    gateway_max_frame_bytes: int = Field(default=65536, ge=1024)
    # permessage-deflate on charger sockets: off by default (its zlib state costs far more memory
    # per connection than the rest of the connection; OCPP frames are small).
    gateway_websocket_compression: bool = False
    # Token bucket per connection: sustained frames per second (0 disables) and burst size.
    gateway_max_frames_per_s: float = Field(default=20.0, ge=0)
    gateway_frame_burst: int = Field(default=50, ge=1)
    # A connection held back by the bucket for this long without a pause is closed with 1008.
    gateway_frame_flood_close_s: float = Field(default=30.0, gt=0)
    # Key for the idTag fingerprints in logs; unset: a random key per process (fingerprints
    # then match only within one process's lifetime).
    log_tag_key: SecretStr | None = None
    # -- end gateway frame limits ----------------------------------------------------------

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

    # -- SteVe (docs/steve.md) ---------------------------------------------------------------
    # SteVe's REST API with its context path (http://steve:8180/steve); unset: no SteVe.
    steve_api_url: str | None = None
    steve_api_user: str = "polaris"
    steve_api_password: SecretStr | None = None
    steve_api_timeout_s: float = Field(default=30.0, gt=0, le=300)
    # SteVe's OCPP endpoint (ws://steve:8180/steve/websocket/CentralSystemService): set, the
    # gateway relays every charger to it (relay mode).
    steve_ocpp_url: str | None = None
    # How long a relayed charger message waits for SteVe's answer before SteVe counts as down.
    steve_relay_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # The upstream socket reconnects with backoff doubling from 1 s up to this.
    steve_relay_backoff_max_s: float = Field(default=60.0, ge=1, le=3600)
    # Adaptive Cadence of the sync runs (docs/steve.md): the interval of each mode, the idle
    # evaluations in a row that demote Active to Idle, and the quiet time that makes it Dormant.
    steve_sync_active_s: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    steve_sync_idle_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    steve_sync_dormant_s: int = Field(default=7 * 24 * 3600, ge=60, le=90 * 24 * 3600)
    steve_sync_demote_after: int = Field(default=2, ge=1, le=100)
    steve_sync_dormant_after_s: int = Field(default=30 * 24 * 3600, ge=3600)

    # Mail relay (activities/mail.py): smtp://user:password@host:587?starttls=true, or
    # smtps://… for TLS from the start. Unset: mail is kept in the outbox and logged, not sent.
    smtp_url: SecretStr | None = None
    mail_from: str = "Polaris Express <no-reply@localhost>"

    # -- Scan-to-login (api/routes_scan.py, gateway/scan_intercept.py; docs/identity.md) --------
    # How long an armed charger waits for its tap (login and tap-to-add alike).
    scan_arm_ttl_s: int = Field(default=30, ge=5, le=120)
    # The client must claim the result within this many seconds of the tap, else it is refused.
    scan_claim_window_s: int = Field(default=10, ge=1, le=60)
    # Lifetime of the JWT (and of the auth-service session behind it) a scan sign-in returns.
    scan_jwt_ttl_s: int = Field(default=600, ge=60, le=900)
    # QR arming: at most this many per client address per minute, and at most
    # scan_arms_per_charger per charger within scan_arms_per_charger_window_s (all processes).
    scan_arms_per_client_per_minute: int = Field(default=5, ge=1)
    scan_arms_per_charger: int = Field(default=5, ge=1)
    scan_arms_per_charger_window_s: int = Field(default=300, ge=1)
    # The driver's QR sign-in page; a charger's QR code is <this>?c=<chargeBoxId>#k=<secret>.
    # Unset: http://<api_host>:<api_port>/console/scan (the console's scan sign-in page).
    scan_qr_base_url: str | None = None
    # -- end of scan-to-login ------------------------------------------------------------------
    # -- Poison input (issue #8): what the gateway accepts from a charger ----------------------
    # The largest energy register in Wh (never above PostgreSQL's BIGINT, whatever is set here).
    meter_max_register_wh: int = Field(default=10**12, ge=1)
    # How far a charger's timestamp may be from the gateway's clock. Chargers queue transaction
    # messages while offline, so the past is generous; the future is not.
    meter_max_past_s: int = Field(default=30 * 24 * 3600, ge=0)
    meter_max_future_s: int = Field(default=600, ge=0)
    # Energy allowed on top of the charger's max power × elapsed time before it is implausible.
    meter_energy_tolerance_wh: int = Field(default=1000, ge=0)
    # -- end poison input ----------------------------------------------------------------------
    # -- Firmware and diagnostics files (docs/firmware.md) --------------------------------------
    # Where firmware images and diagnostics uploads are kept. Unset: <data_dir>/files. Every API
    # replica must see the same directory (a shared volume): any of them may serve a download.
    files_dir: Path | None = None
    # The platform's address as chargers reach it (scheme://host[:port], no trailing slash): the
    # base of the firmware download and diagnostics upload URLs. Unset: http://<api_host>:<api_port>.
    public_base_url: str | None = None
    # Largest firmware image accepted on upload, and largest diagnostics file a charger may send.
    firmware_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    diagnostics_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # A firmware download URL works until the retrieve date plus this long.
    firmware_url_ttl_s: int = Field(default=24 * 3600, ge=60)
    # A diagnostics upload URL works once, until this long after the request.
    diagnostics_url_ttl_s: int = Field(default=3600, ge=60)
    # -- end firmware and diagnostics files ----------------------------------------------------
    # -- Sessions: timers every ChargingSessionWorkflow is started with (docs/sessions.md) -----
    # No signal from a running transaction for this long → the watchdog looks at the charger: a
    # silent charger's session is abandoned; a live charger whose connector is not charging has
    # its transaction closed (heartbeats alone never keep a transaction open).
    session_watchdog_silence_s: float = Field(default=3600.0, gt=0)
    # How long a session closed without a StopTransaction waits for a late one to reconcile.
    session_late_stop_window_s: float = Field(default=7 * 24 * 3600.0, gt=0)

    admin_email: str = "admin@example.com"
    admin_password: SecretStr | None = None

    # -- Retention (workflows/retention.py; docs/selfhosting.md, "Retention") ------------------
    # Days a row is kept before the daily retention run deletes it; 0 keeps it forever.
    # Delivered gateway outbox rows (undelivered ones are never deleted).
    retention_outbox_days: int = Field(default=7, ge=0)
    # Meter samples, only once their session is over and fully billed (or outside a transaction).
    retention_meter_samples_days: int = Field(default=400, ge=0)
    # The audit log (who did what): keep it as long as your compliance rules say.
    retention_audit_days: int = Field(default=0, ge=0)
    # Inbound Lago webhook events that were processed, skipped or failed (pending ones stay).
    retention_webhook_events_days: int = Field(default=90, ge=0)
    # The platform events catalogue (live streams, webhooks and inboxes read recent ones).
    retention_platform_events_days: int = Field(default=90, ge=0)
    # Rows deleted per statement (short transactions; the run goes on until nothing is left).
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # When the retention schedule runs (cron, UTC).
    retention_cron: str = "17 3 * * *"

    # -- API and configuration hardening (issue #8) -----------------------------------------
    # Peers whose X-Forwarded-For the API believes (comma-separated CIDRs or addresses, e.g.
    # "10.0.0.0/8,192.0.2.10"). Empty: the socket peer is the client (api/client_address.py).
    api_trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    # How long an admin route may reuse a live session check (seconds; 0: ask every time).
    api_admin_check_cache_s: float = Field(default=2.0, ge=0, le=10)
    # The one signature scheme accepted on POST /api/webhook/lago (Lago's endpoint setting).
    lago_webhook_algorithm: Literal["hmac", "jwt"] = "hmac"
    # Signed webhook timestamps (a JWT's iat) older or further ahead than this are refused.
    lago_webhook_tolerance_s: int = 300
    # Larger webhook bodies answer 413 before anything is parsed.
    lago_webhook_max_body_bytes: int = 1_048_576
    # PEM bundle of a private CA that signed the SMTP server's certificate (else the system's).
    smtp_ca_file: Path | None = None

    # -- Remote operations (services/operations.py; docs/operations.md) ------------------------
    # Which OCPP actions each role may send to chargers: JSON {"role": "*" | ["Action", ...]}.
    # A role not listed may send none. The API's operations routes admit admin and operator.
    operation_allowlist: Annotated[dict[str, Literal["*"] | list[str]], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_OPERATION_ALLOWLIST)
    )
    # Seconds an operation waits for the charger's gateway to pick it up; past it the gateway is
    # taken for down and the operation ends charger_offline.
    operation_pickup_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # The operators' inbox gets a "charger offline" notification once a charger has not been
    # heard from for this many minutes (once per offline episode; docs/notifications.md).
    notify_charger_offline_after_min: int = Field(default=15, ge=1, le=10080)

    # -- Reservations (services/reservations.py; docs/reservations.md) -------------------------
    # ReserveNow goes to the charger this long before a reservation starts.
    reservation_lead_s: float = Field(default=300.0, ge=0, le=3600)
    # A reservation nobody started charging on expires this long after its start (at most at
    # its end), freeing the connector.
    reservation_no_show_s: float = Field(default=900.0, gt=0)
    # How far ahead a driver may reserve, and the longest reservation.
    reservation_max_ahead_s: int = Field(default=7 * 24 * 3600, gt=0)
    reservation_max_duration_s: int = Field(default=4 * 3600, ge=600)
    # A charger offline when ReserveNow is due is tried again this often until the start.
    reservation_offline_retry_s: float = Field(default=30.0, gt=0)

    # -- Outgoing webhooks (services/webhooks.py; docs/webhooks.md) ------------------------------
    # Endpoints may point at loopback, private and link-local addresses (checked when the URL is
    # set and again, after DNS, before every attempt). Off in production: SSRF.
    webhooks_allow_private_targets: bool = False
    # Seconds one POST may take (connect + answer) before the attempt counts as failed.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Retries: exponential backoff from the first delay, doubling, capped, until the delays add
    # up to the give-up time (at least a day in production); then the delivery has failed.
    webhook_retry_first_delay_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_delay_s: float = Field(default=3600.0, gt=0)
    webhook_retry_give_up_after_s: float = Field(default=86400.0, gt=0)
    # An endpoint is disabled (and its owner notified) after this many failed deliveries in a
    # row, or after failing every attempt for this many hours.
    webhook_disable_after_failures: int = Field(default=10, ge=1)
    webhook_disable_after_hours: float = Field(default=72.0, gt=0)
    # Hours the old secret keeps signing (a second signature) after a rotation.
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)
    # The dispatcher listens for new events and also looks every this many seconds (at most 20:
    # its wait heartbeats as often, within a 30 s heartbeat timeout).
    webhook_dispatch_poll_s: float = Field(default=1.0, gt=0, le=20)

    # Filled from runtime.json by load_settings(); not meant to be set by hand.
    embedded: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refuse_auto_register_in_prod(self) -> Settings:
        # Auto-registration admits any chargeBoxId without credentials: a lab feature only.
        if self.env == "prod" and self.gateway_auto_register:
            raise ValueError("POLARIS_GATEWAY_AUTO_REGISTER=true is refused with POLARIS_ENV=prod")
        return self

    @field_validator("operation_allowlist", mode="before")
    @classmethod
    def _allowlist_json(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return dict(DEFAULT_OPERATION_ALLOWLIST)
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg})") from None
        return value

    @field_validator("operation_allowlist")
    @classmethod
    def _known_actions(
        cls, value: dict[str, Literal["*"] | list[str]]
    ) -> dict[str, Literal["*"] | list[str]]:
        for role, actions in value.items():
            unknown = sorted(set(actions) - set(CENTRAL_SYSTEM_ACTIONS)) if actions != "*" else []
            if unknown:
                raise ValueError(f"operation_allowlist[{role!r}] names unknown actions {unknown}")
        return value

    @field_validator("operator_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Europe/Berlin)") from exc
        return value

    @field_validator("api_trusted_proxies", "gateway_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _payload_keys_in_prod(self) -> Settings:
        from config.payload_codec import parse_keys

        parse_keys(self.payload_keys)  # ValueError on a malformed list, in any env
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("POLARIS_TEMPORAL_TLS_CERT and POLARIS_TEMPORAL_TLS_KEY go together")
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_prod(self) -> Settings:
        if self.env == "prod":
            # A published value given on purpose is refused whatever the process. One left at
            # its default matters only to a process that reads it: config/startup.py checks
            # those per command (the gateway is not refused for the Lago key it never uses).
            problems = development_secrets(self, given_only=True)
            if self.auth_secret is not None:
                secret = self.auth_secret.get_secret_value()
                for caller in ("", *(f"_{c.upper()}" for c in AUTH_CALLERS)):
                    token: SecretStr | None = getattr(self, f"auth_internal_token{caller.lower()}")
                    if token is not None and token.get_secret_value() == secret:
                        name = f"POLARIS_AUTH_INTERNAL_TOKEN{caller}"
                        problems.append(f"{name} must differ from POLARIS_AUTH_SECRET")
            if problems:
                raise ValueError("refused in prod: " + "; ".join(problems))
        return self

    # -- derived addresses -------------------------------------------------------------------

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / RUNTIME_FILE

    def require_env(self) -> Literal["dev", "test", "prod"]:
        if self.env is None:
            raise RuntimeError("POLARIS_ENV is not set (dev, test or prod)")
        return self.env

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
    def files_root(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    @property
    def public_base(self) -> str:
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

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
    def scan_qr_page_url(self) -> str:
        return (
            self.scan_qr_base_url or f"http://{self.api_host}:{self.api_port}/console/scan"
        ).rstrip("/")

    @property
    def meter_limits(self) -> MeterLimits:
        return MeterLimits(
            max_register_wh=self.meter_max_register_wh,
            max_past_s=self.meter_max_past_s,
            max_future_s=self.meter_max_future_s,
            tolerance_wh=self.meter_energy_tolerance_wh,
        )

    @property
    def gateway_requires_charger_credentials(self) -> bool:
        """Outside dev and auto-registration, a charger without a password needs the operator's
        explicit ``allow_unauthenticated`` to connect."""
        return self.env != "dev" and not self.gateway_auto_register

    @property
    def gateway_task_queue(self) -> str:
        return f"gateway-{self.gateway_instance}"

    def temporal_ui_base(self) -> str | None:
        """Where the Temporal UI is, for links (None: no UI known)."""
        if self.temporal_ui_url:
            return self.temporal_ui_url.rstrip("/")
        if "temporal_address" in self.embedded:
            return f"http://127.0.0.1:{self.embedded_temporal_ui_port}"
        return None

    def retention_days(self) -> dict[str, int]:
        """Table → days kept (0: forever), for the retention workflow's input."""
        return {
            "gateway_outbox": self.retention_outbox_days,
            "meter_samples": self.retention_meter_samples_days,
            "audit_log": self.retention_audit_days,
            "lago_webhook_events": self.retention_webhook_events_days,
            "platform_events": self.retention_platform_events_days,
        }

    def session_timers(self) -> dict[str, float]:
        """``SessionInput`` timer fields (workflows read no settings: starters pass these)."""
        return {
            "watchdog_silence_s": self.session_watchdog_silence_s,
            "late_stop_window_s": self.session_late_stop_window_s,
        }


def development_secrets(
    settings: Settings, *, given_only: bool = False, only: Iterable[str] | None = None
) -> list[str]:
    """One sentence per secret setting that holds a value published in this repository
    (``given_only``: set explicitly, not defaulted; ``only``: among these settings)."""
    published = set(DEV_SECRETS.values())
    names = set(only) if only is not None else set(type(settings).model_fields)
    found = []
    for name in type(settings).model_fields:
        if name not in names or (given_only and name not in settings.model_fields_set):
            continue
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value() in published:
            found.append(
                f"POLARIS_{name.upper()} has a development value published in the repository;"
                " set a real secret"
            )
    return found


def payload_keys_problem(settings: Settings) -> str | None:
    """Why a prod Temporal client may not start without payload keys (None: it may)."""
    if settings.env == "prod" and settings.payload_encryption == "on" and not settings.payload_keys:
        return (
            "POLARIS_PAYLOAD_KEYS is required (workflow histories carry personal data); "
            "generate one with `polaris codec new-key`, or set POLARIS_PAYLOAD_ENCRYPTION=off "
            "to store them in clear"
        )
    return None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, then fill unset addresses from runtime.json.

    Without ``POLARIS_ENV``, the environment of a live ``polaris dev`` stack in the data
    directory is taken (so a second terminal beside ``make dev`` needs no variables).
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    runtime = read_runtime(settings.data_dir)
    if not runtime:
        return settings
    fill: dict[str, object] = {}
    if settings.env is None and (env := dev_stack_env(runtime)) is not None:
        fill["env"] = env
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
        fill["embedded"] = sorted(k for k in fill if k != "env")
        # Validate again: the environment taken from the stack brings its own checks.
        settings = Settings.model_validate({**settings.model_dump(), **fill})
    return settings


def dev_stack_env(runtime: dict[str, str]) -> str | None:
    """The ``env`` recorded by the ``polaris dev`` that wrote ``runtime`` if it still runs.

    A file left by a crashed stack (its process gone) names no environment, so a stale file
    never turns a production shell into a development one.
    """
    env, pid = runtime.get("env"), runtime.get("pid", "")
    if env not in ("dev", "test", "prod") or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return env


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


# -- Which process reads which setting (issue #13) ---------------------------------------------
# The processes: the four long-running ones, ``migrate``, the operator's CLI commands (``cli``:
# seed, sessions, billing …, run in the api container with `docker compose run --rm api …`),
# ``polaris dev`` (``dev``: the embedded stack) and ``polaris auth`` (``auth``: the Python side
# that starts the BetterAuth service; in compose the Node service reads its own variables, see
# auth/config.mjs). tests/test_compose.py holds this map to the code (a process whose modules
# read a setting must be listed for it, and every listed process must be able to read it) and
# docker-compose.yml to the map (every setting a service's processes read is delivered to it,
# and nothing else is).
Process = Literal["api", "worker", "gateway", "migrate", "cli", "dev", "auth"]

_EVERY: frozenset[Process] = frozenset(
    {"api", "worker", "gateway", "migrate", "cli", "dev", "auth"}
)
_TEMPORAL_CLIENTS: frozenset[Process] = frozenset({"api", "worker", "gateway", "cli"})
_API_CLI: frozenset[Process] = frozenset({"api", "cli"})


def _p(*names: Process) -> frozenset[Process]:
    return frozenset(names)


SETTING_READERS: dict[str, frozenset[Process]] = {
    # Live streams (docs/live.md): the API serves them; the worker records session progress and
    # charger.offline events.
    "stream_heartbeat_s": _p("api"),
    "stream_queue_size": _p("api"),
    "stream_replay_max": _p("api"),
    "stream_replay_max_age_s": _p("api"),
    "stream_gap_grace_s": _p("api"),
    "session_progress_event_interval_s": _p("worker"),
    "charger_offline_check_s": _p("worker"),
    # Observability (docs/observability.md): every command configures its logs; the long-running
    # processes serve metrics and export traces.
    "log_format": _p("api", "worker", "gateway", "migrate", "cli", "dev"),
    "metrics_host": _p("api", "worker", "gateway"),
    "tracing": _p("api", "worker", "gateway"),
    "api_metrics_port": _p("api"),
    "gateway_metrics_port": _p("gateway"),
    "gateway_temporal_metrics_port": _p("gateway"),
    "worker_metrics_port": _p("worker"),
    "worker_temporal_metrics_port": _p("worker"),
    "worker_poll_stale_s": _p("worker"),
    # Reservations: the service checks windows and gives the workflow its timers.
    "reservation_lead_s": _API_CLI,
    "reservation_no_show_s": _API_CLI,
    "reservation_max_ahead_s": _API_CLI,
    "reservation_max_duration_s": _API_CLI,
    "reservation_offline_retry_s": _API_CLI,
    # Outgoing webhooks: the service checks URLs and rotates secrets; the worker delivers.
    "webhooks_allow_private_targets": _API_CLI | _p("worker"),
    "webhook_secret_overlap_hours": _API_CLI,
    "webhook_timeout_s": _p("worker"),
    "webhook_retry_first_delay_s": _p("worker"),
    "webhook_retry_max_delay_s": _p("worker"),
    "webhook_retry_give_up_after_s": _p("worker"),
    "webhook_disable_after_failures": _p("worker"),
    "webhook_disable_after_hours": _p("worker"),
    "webhook_dispatch_poll_s": _p("worker"),
    "notify_charger_offline_after_min": _p("worker"),
    "env": _EVERY,
    "data_dir": _EVERY,
    "log_level": _EVERY,
    "database_url": _EVERY,
    "embedded_pg_port": _p("dev"),
    "temporal_address": _TEMPORAL_CLIENTS | _p("dev"),
    "temporal_namespace": _TEMPORAL_CLIENTS,
    "temporal_task_queue": _TEMPORAL_CLIENTS,
    "embedded_temporal_port": _p("dev"),
    "embedded_temporal_ui_port": _p("dev"),
    "temporal_ui_url": _API_CLI,
    "temporal_tls": _TEMPORAL_CLIENTS,
    "temporal_tls_ca": _TEMPORAL_CLIENTS,
    "temporal_tls_cert": _TEMPORAL_CLIENTS,
    "temporal_tls_key": _TEMPORAL_CLIENTS,
    "temporal_tls_server_name": _TEMPORAL_CLIENTS,
    "temporal_api_key": _TEMPORAL_CLIENTS,
    "payload_keys": _TEMPORAL_CLIENTS,
    "payload_encryption": _TEMPORAL_CLIENTS,
    "codec_token": _p("api"),
    "operator_timezone": _API_CLI,
    "api_host": _p("api", "dev"),
    "api_port": _p("api", "dev"),
    "gateway_host": _p("gateway", "dev"),
    "gateway_port": _p("gateway", "dev"),
    "gateway_instance": _p("gateway"),
    "gateway_auto_register": _p("gateway"),
    "authorize_budget_s": _p("gateway"),
    "meter_signal_interval_s": _p("gateway"),
    "heartbeat_interval_s": _p("gateway", "api", "cli", "worker"),
    "gateway_trusted_proxies": _p("gateway"),
    "gateway_auth_failure_limit": _p("gateway"),
    "gateway_auth_failure_window_s": _p("gateway"),
    "gateway_auth_backoff_s": _p("gateway"),
    "gateway_auth_backoff_max_s": _p("gateway"),
    "gateway_auth_hash_workers": _p("gateway"),
    "gateway_max_pending_handshakes": _p("gateway"),
    "gateway_handshake_queue": _p("gateway"),
    "gateway_handshake_queue_wait_s": _p("gateway"),
    "gateway_pending_chargers_max": _p("gateway"),
    "gateway_pending_charger_interval_s": _p("gateway"),
    "gateway_max_frame_bytes": _p("gateway"),
    "gateway_websocket_compression": _p("gateway"),
    "gateway_max_frames_per_s": _p("gateway"),
    "gateway_frame_burst": _p("gateway"),
    "gateway_frame_flood_close_s": _p("gateway"),
    # Fingerprints of idTags in the gateway's logs and in operator views of payloads.
    "log_tag_key": _p("gateway", "api", "cli"),
    "auth_url": _p("api", "worker", "cli", "dev"),
    "auth_port": _p("auth"),
    "auth_secret": _p("auth", "dev"),
    "auth_internal_url": _p("api", "worker", "cli", "dev"),
    "auth_internal_host": _p("auth"),
    "auth_internal_port": _p("auth"),
    "auth_internal_token": _p("api", "worker", "cli"),
    "auth_internal_token_api": _p("auth", "dev"),
    "auth_internal_token_worker": _p("auth", "dev"),
    "auth_internal_token_gateway": _p("auth", "dev"),
    "lago_api_url": _p("api", "worker", "cli", "dev"),
    "lago_api_key": _p("api", "worker", "cli", "dev"),
    "lago_webhook_secret": _p("api", "dev"),
    "lago_billable_metric_code": _p("worker", "cli"),
    "lago_plan_code": _p("worker", "cli"),
    "lago_webhook_public_key": _p("api"),
    "lago_webhook_breaker_threshold": _p("worker"),
    "sandbox_port": _p("dev"),
    "smtp_url": _p("worker"),
    "mail_from": _p("worker"),
    "smtp_ca_file": _p("worker"),
    "scan_arm_ttl_s": _p("api"),
    "scan_claim_window_s": _p("api"),
    "scan_jwt_ttl_s": _p("api"),
    "scan_arms_per_client_per_minute": _p("api"),
    "scan_arms_per_charger": _p("api"),
    "scan_arms_per_charger_window_s": _p("api"),
    "scan_qr_base_url": _API_CLI,
    "meter_max_register_wh": _p(
        "gateway", "worker"
    ),  # worker: SteVe stops (activities/steve_sync.py)
    "meter_max_past_s": _p("gateway", "worker"),  # worker: SteVe stops (activities/steve_sync.py)
    "meter_max_future_s": _p("gateway", "worker"),  # worker: SteVe stops (activities/steve_sync.py)
    "meter_energy_tolerance_wh": _p(
        "gateway", "worker"
    ),  # worker: SteVe stops (activities/steve_sync.py)
    "files_dir": _p("api", "worker", "cli"),
    # The API: the console's magic-link callback; the auth service (polaris dev/auth): its
    # trusted origins (cli/auth_service.py).
    "public_base_url": _p("worker", "api", "auth"),
    "firmware_max_bytes": _API_CLI,
    "diagnostics_max_bytes": _API_CLI,
    "firmware_url_ttl_s": _p("worker"),
    "diagnostics_url_ttl_s": _p("worker"),
    "session_watchdog_silence_s": _p("gateway", "cli"),
    "session_late_stop_window_s": _p("gateway", "cli"),
    "admin_email": _p("cli"),
    "admin_password": _p("cli"),
    "api_trusted_proxies": _p("api"),
    "api_admin_check_cache_s": _p("api"),
    "lago_webhook_algorithm": _p("api"),
    "lago_webhook_tolerance_s": _p("api"),
    "lago_webhook_max_body_bytes": _p("api"),
    "retention_outbox_days": _p("worker"),
    "retention_meter_samples_days": _p("worker"),
    "retention_audit_days": _p("worker"),
    "retention_webhook_events_days": _p("worker"),
    "retention_platform_events_days": _p("worker"),
    "retention_batch_size": _p("worker"),
    "retention_cron": _p("worker"),
    # SteVe relay mode (docs/steve.md): the gateway relays, and sends commands over the REST API.
    # The worker runs the sync runs (REST adapter); the API's health reports a stuck run.
    "steve_api_url": _p("gateway", "worker", "api"),
    "steve_api_user": _p("gateway", "worker"),
    "steve_api_password": _p("gateway", "worker"),
    "steve_api_timeout_s": _p("gateway", "worker"),
    "steve_ocpp_url": _p("gateway"),
    "steve_relay_timeout_s": _p("gateway"),
    "steve_relay_backoff_max_s": _p("gateway"),
    # Adaptive Cadence: the worker starts the scheduler, the API (and CLI) on a manual trigger.
    "steve_sync_active_s": _p(
        "worker", "api", "gateway"
    ),  # gateway: starts the cadence (gateway/subscribers.py)
    "steve_sync_idle_s": _p(
        "worker", "api", "gateway"
    ),  # gateway: starts the cadence (gateway/subscribers.py)
    "steve_sync_dormant_s": _p(
        "worker", "api", "gateway"
    ),  # gateway: starts the cadence (gateway/subscribers.py)
    "steve_sync_demote_after": _p(
        "worker", "api", "gateway"
    ),  # gateway: starts the cadence (gateway/subscribers.py)
    "steve_sync_dormant_after_s": _p(
        "worker", "api", "gateway"
    ),  # gateway: starts the cadence (gateway/subscribers.py)
    "operation_allowlist": _API_CLI,
    "operation_pickup_timeout_s": _API_CLI,
}
# Not a variable: filled from runtime.json by load_settings().
INTERNAL_SETTINGS = frozenset({"embedded"})

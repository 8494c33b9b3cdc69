"""Configuration of the Lago sandbox."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

FaultMode = Literal["status", "delay", "drop"]
FaultPhase = Literal["before", "after"]


@dataclass
class FaultSpec:
    """One injected fault.

    ``phase="before"``: the request never reaches the API (nothing is stored).
    ``phase="after"``: the API processes the request (it *is* stored), then the answer is replaced
    by the fault (5xx, delay, or a dropped connection) — the hard case for exactly-once.
    ``count=None`` means "until removed".
    """

    mode: FaultMode = "status"
    path_prefix: str = "/api/v1"
    method: str | None = None
    status: int = 503
    seconds: float = 0.0
    count: int | None = 1
    phase: FaultPhase = "before"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        mode = str(data.get("mode", "status"))
        phase = str(data.get("phase", "before"))
        if mode not in ("status", "delay", "drop"):
            raise ValueError(f"unknown fault mode {mode!r} (status, delay, drop)")
        if phase not in ("before", "after"):
            raise ValueError(f"unknown fault phase {phase!r} (before, after)")
        count = data.get("count", 1)
        method = data.get("method")
        spec = cls(
            mode=mode,  # type: ignore[arg-type]
            path_prefix=str(data.get("path_prefix", "/api/v1")),
            method=str(method).upper() if method else None,
            status=int(data.get("status", 503)),
            seconds=float(data.get("seconds", 0.0)),
            count=None if count is None else int(count),
            phase=phase,  # type: ignore[arg-type]
        )
        if not 100 <= spec.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if spec.seconds < 0 or (spec.count is not None and spec.count < 1):
            raise ValueError("seconds must be >= 0 and count >= 1 (or null for unlimited)")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "status": self.status,
            "seconds": self.seconds,
            "count": self.count,
            "phase": self.phase,
        }


@dataclass
class SandboxConfig:
    """Everything the sandbox needs; ``from_env`` fills it from ``POLARIS_*`` variables."""

    api_key: str
    webhook_url: str | None = None
    webhook_secret: str = ""
    state_file: Path | None = None
    # /__sandbox/* (faults, state dump, reset) only exist when this is on.
    admin_enabled: bool = False
    faults: list[FaultSpec] = field(default_factory=list)
    # Contract checking: strict turns a response that does not match the OpenAPI document into a
    # 500 (tests); otherwise it is logged and passed through.
    strict_contract: bool = True
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 0.5
    webhook_timeout_seconds: float = 5.0
    # Seconds between an invoice being finalized and its PDF ("file_url") being available.
    pdf_delay_seconds: float = 0.2
    # Base URL used in file_url / portal_url; defaults to the URL the request came in on.
    public_url: str | None = None
    organization_id: str = "00000000-0000-4000-8000-00000000a90a"

    def __repr__(self) -> str:  # never print the key or the secret
        return (
            f"SandboxConfig(api_key='***', webhook_url={self.webhook_url!r}, "
            f"state_file={self.state_file!r}, admin_enabled={self.admin_enabled})"
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> SandboxConfig:
        env = os.environ
        values: dict[str, Any] = {
            "api_key": env.get("POLARIS_LAGO_API_KEY", ""),
            "webhook_url": env.get("POLARIS_LAGO_WEBHOOK_URL") or None,
            "webhook_secret": env.get("POLARIS_LAGO_WEBHOOK_SECRET", ""),
            "admin_enabled": env.get("POLARIS_SANDBOX_ADMIN", "") in ("1", "true", "yes"),
        }
        state = env.get("POLARIS_SANDBOX_STATE_FILE")
        if state:
            values["state_file"] = Path(state)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

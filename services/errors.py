"""Service errors: each carries a stable ``code`` that the API maps to a status and the CLI to
an exit code, and ``issues`` for input problems (the API's ``{error, message, issues}``)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        issues: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or []
        # More top-level fields of the error document (e.g. a 409's suggested_slots).
        self.extra = extra or {}


class InvalidInput(ServiceError):
    status = 422
    code = "VALIDATION_FAILED"


class NotFound(ServiceError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ServiceError):
    status = 409
    code = "CONFLICT"


class Forbidden(ServiceError):
    status = 403
    code = "FORBIDDEN"


class ChargerOffline(ServiceError):
    status = 409
    code = "CHARGER_OFFLINE"


class Unavailable(ServiceError):
    """A dependency (Temporal, the auth service) cannot answer now: try again later."""

    status = 503
    code = "UNAVAILABLE"

"""The one table mapping errors to HTTP: every error answers ``{error, message, issues?}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import ServiceError


class ApiError(Exception):
    """Raise from a route: ``status`` HTTP code, stable machine ``code``, human ``message``."""

    def __init__(
        self, status: int, code: str, message: str, issues: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issues = issues


class NotFound(ApiError):
    def __init__(self, what: str = "resource") -> None:
        super().__init__(404, "NOT_FOUND", f"{what} not found")


_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "VALIDATION_FAILED",
    429: "RATE_LIMITED",
}


def envelope(code: str, message: str, issues: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if issues is not None:
        body["issues"] = issues
    return body


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(envelope(exc.code, exc.message, exc.issues), status_code=exc.status)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        issues = exc.issues or None
        body = {**exc.extra, **envelope(exc.code, exc.message, issues)}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            {"path": [str(p) for p in err.get("loc", ())], "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        return JSONResponse(
            envelope("VALIDATION_FAILED", "The request is not valid", issues), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        return JSONResponse(
            envelope(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

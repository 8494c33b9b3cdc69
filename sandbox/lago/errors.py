"""Lago's error answers and small request helpers shared by the route modules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class LagoError(Exception):
    """Raise from a handler to answer the way Lago does."""

    def __init__(
        self,
        status: int,
        error: str,
        code: str | None = None,
        error_details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code or error}")
        self.status = status
        self.body: dict[str, Any] = {"status": status, "error": error}
        if code is not None:
            self.body["code"] = code
        if error_details is not None:
            self.body["error_details"] = error_details


def not_found(resource: str) -> LagoError:
    return LagoError(404, "Not Found", f"{resource}_not_found")


def invalid(**details: str | list[str]) -> LagoError:
    """422 validation_errors, e.g. ``invalid(transaction_id="value_already_exist")``."""
    norm = {k: [v] if isinstance(v, str) else list(v) for k, v in details.items()}
    return LagoError(422, "Unprocessable Entity", "validation_errors", norm)


def not_allowed(code: str) -> LagoError:
    return LagoError(405, "Method Not Allowed", code)


async def lago_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LagoError)
    return JSONResponse(exc.body, status_code=exc.status)


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as validated (and null-stripped) by the contract middleware."""
    body = getattr(request.state, "lago_body", None)
    if isinstance(body, dict):
        return body
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise LagoError(400, "BadRequest: the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise LagoError(400, "BadRequest: the body must be a JSON object")
    return data


def ok(body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=200)


def _int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise invalid(**{name: "invalid_value"}) from exc
    if value < 1:
        raise invalid(**{name: "invalid_value"})
    return min(value, maximum) if maximum else value


def paginate(request: Request, items: Sequence[Any], key: str) -> dict[str, Any]:
    """Lago's ``?page=&per_page=`` pagination with its ``meta`` block."""
    page = _int_param(request, "page", 1)
    per_page = _int_param(request, "per_page", 20, maximum=1000)
    total = len(items)
    total_pages = max(1, -(-total // per_page))
    start = (page - 1) * per_page
    return {
        key: list(items[start : start + per_page]),
        "meta": {
            "current_page": page,
            "next_page": page + 1 if page < total_pages else None,
            "prev_page": page - 1 if page > 1 else None,
            "total_pages": total_pages,
            "total_count": total,
        },
    }

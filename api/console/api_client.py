"""The console calls the API the way any client does: the same routes, authorization and
``{error, message, issues}`` answers, in-process (ASGI, no socket), with the signed-in user's JWT.

The browser's address is passed as the ASGI client, so the API's audit rows and rate limits see
the browser, not the console.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request

from api.client_address import request_client_address


@dataclass
class ApiFailure(Exception):
    """A non-2xx answer of the API: its status and envelope."""

    status: int
    code: str
    message: str
    issues: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def field_errors(self) -> dict[str, list[str]]:
        """Issues by the field they concern (the last element of their ``path``)."""
        errors: dict[str, list[str]] = {}
        for issue in self.issues:
            path = issue.get("path") or issue.get("loc") or []
            if isinstance(path, str):
                path = path.split(".")
            name = str(path[-1]) if path else ""
            message = str(issue.get("message") or issue.get("msg") or "")
            errors.setdefault(name, []).append(message)
        return errors


class Api:
    """``await api.get("/api/v1/chargers", limit=10)``: the JSON answer, or :class:`ApiFailure`."""

    def __init__(self, request: Request, jwt: str | None) -> None:
        address = request_client_address(request) or "127.0.0.1"
        self._transport = httpx.ASGITransport(app=request.app, client=(address, 0))
        self._headers = {"authorization": f"Bearer {jwt}"} if jwt else {}
        for name in ("user-agent", "x-request-id"):
            if name in request.headers:
                self._headers[name] = request.headers[name]

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        async with httpx.AsyncClient(
            transport=self._transport, base_url="http://console.internal", timeout=60.0
        ) as client:
            response = await client.request(
                method, path, params=clean, json=json, headers=self._headers
            )
        if response.status_code >= 400:
            raise failure_of(response)
        if response.status_code == 204 or not response.content:
            return None
        if not response.headers.get("content-type", "").startswith("application/json"):
            return response.text
        return response.json()

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return await self.call("POST", path, json=json, params=params)

    async def patch(self, path: str, json: Any = None) -> Any:
        return await self.call("PATCH", path, json=json)

    async def delete(self, path: str) -> Any:
        return await self.call("DELETE", path)


def failure_of(response: httpx.Response) -> ApiFailure:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    issues = body.get("issues")
    return ApiFailure(
        status=response.status_code,
        code=str(body.get("error") or body.get("code") or "ERROR"),
        message=str(body.get("message") or response.reason_phrase or "request failed"),
        issues=issues if isinstance(issues, list) else [],
        body=body,
    )

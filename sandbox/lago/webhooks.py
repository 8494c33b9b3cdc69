"""Outgoing webhooks, signed and retried the way Lago sends them.

Body: ``{"webhook_type", "object_type", "organization_id", <object_type>: {...}}``. Headers:
``X-Lago-Signature`` = base64(HMAC-SHA256(secret, raw body)), ``X-Lago-Signature-Algorithm: hmac``,
``X-Lago-Unique-Key`` (one per webhook, the same on every retry). Non-2xx answers and connection
errors are retried with exponential backoff up to ``max_attempts``. Each delivery runs in a task the
dispatcher owns; :meth:`WebhookDispatcher.stop` cancels what is left.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.lago.state import iso_ms, new_id, now

log = logging.getLogger("sandbox.lago.webhooks")


def sign(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Webhook:
    unique_key: str
    webhook_type: str
    object_type: str
    body: bytes
    created_at: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    status: str = "pending"  # pending | delivered | failed | skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "unique_key": self.unique_key,
            "webhook_type": self.webhook_type,
            "object_type": self.object_type,
            "status": self.status,
            "created_at": self.created_at,
            "attempts": list(self.attempts),
            "payload": json.loads(self.body),
        }


class WebhookDispatcher:
    def __init__(
        self,
        url: str | None,
        secret: str,
        *,
        organization_id: str,
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.secret = secret
        self.organization_id = organization_id
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.sent: list[Webhook] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_seconds)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def emit(self, webhook_type: str, object_type: str, obj: dict[str, Any]) -> Webhook:
        payload = {
            "webhook_type": webhook_type,
            "object_type": object_type,
            "organization_id": self.organization_id,
            object_type: obj,
        }
        hook = Webhook(
            unique_key=new_id(),
            webhook_type=webhook_type,
            object_type=object_type,
            body=json.dumps(payload, separators=(",", ":")).encode(),
            created_at=iso_ms(now()),
        )
        self.sent.append(hook)
        if not self.url or self._client is None:
            hook.status = "skipped"
            return hook
        task = asyncio.get_running_loop().create_task(self._deliver(hook, self.url, self._client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return hook

    async def idle(self) -> None:
        """Wait for every delivery under way (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, hook: Webhook, url: str, client: httpx.AsyncClient) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Lago-Signature": sign(self.secret, hook.body),
            "X-Lago-Signature-Algorithm": "hmac",
            "X-Lago-Unique-Key": hook.unique_key,
        }
        for attempt in range(1, self.max_attempts + 1):
            record: dict[str, Any] = {"attempt": attempt, "at": iso_ms(now())}
            try:
                response = await client.post(url, content=hook.body, headers=headers)
                record["status"] = response.status_code
                ok = 200 <= response.status_code < 300
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"[:300]
                ok = False
            hook.attempts.append(record)
            if ok:
                hook.status = "delivered"
                return
            if attempt < self.max_attempts:
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        hook.status = "failed"
        log.warning(
            "webhook %s (%s) failed after %d attempts",
            hook.unique_key,
            hook.webhook_type,
            self.max_attempts,
        )

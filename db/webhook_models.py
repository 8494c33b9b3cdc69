"""Tables of the outgoing webhooks (docs/webhooks.md): endpoints, one delivery per (endpoint,
platform event), every HTTP attempt of a delivery, and the dispatcher's cursor over
``platform_events``.

Kept apart from :mod:`db.models` (same ``Base``). Schema changes only through Alembic
(``db/migrations/versions/0022_webhooks.py``). Signing secrets are stored as given to the
endpoint's owner (HMAC needs the key itself); they are never logged, never returned after the
answer that created them, and never enter a Temporal history (the delivery activity reads them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base

# webhook_deliveries.status
DELIVERY_PENDING = "pending"  # attempts running (or about to)
DELIVERY_DELIVERED = "delivered"  # the endpoint answered 2xx
DELIVERY_FAILED = "failed"  # every attempt of the chain failed, or the endpoint went away
DELIVERY_STATUSES = (DELIVERY_PENDING, DELIVERY_DELIVERED, DELIVERY_FAILED)

DISPATCH_CURSOR = "webhooks"  # webhook_dispatch_cursors.name of the one dispatcher


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(500), server_default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    disabled_at: Mapped[datetime | None] = mapped_column()
    # The operator who created it (their inbox hears when it is disabled).
    owner_user_id: Mapped[str] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret signs too (a second signature) until it expires.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    # The newest platform event when it was made: it hears the events after this one.
    since_event_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class WebhookDelivery(Base):
    """One event to one endpoint. ``id`` is the ``webhook-id`` header, the same on every attempt
    and every redelivery; ``chain`` counts attempt chains (1, then +1 per manual redelivery)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default=DELIVERY_PENDING)
    chain: Mapped[int] = mapped_column(Integer, server_default="1")
    # The workflow of the current chain; null until the dispatcher has started it.
    workflow_id: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        Index("ix_webhook_deliveries_status", "status", "created_at"),
        Index(
            "ix_webhook_deliveries_unstarted",
            "created_at",
            postgresql_where=text("workflow_id IS NULL"),
        ),
    )


class WebhookAttempt(Base):
    """One HTTP request of a delivery: what was sent (headers and body, no secret) and what came
    back (status, headers, body truncated, duration) or why nothing did."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    chain: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean, server_default=false())
    duration_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    started_at: Mapped[datetime] = mapped_column()
    __table_args__ = (
        UniqueConstraint(
            "delivery_id", "chain", "attempt", name="uq_webhook_attempts_delivery_chain_attempt"
        ),
    )


class WebhookDispatchCursor(Base):
    """How far the dispatcher has read ``platform_events``: every id up to ``last_event_id``
    was seen, except ``gaps`` (ids not yet committed when it read past them: ``{"id": first
    seen, ISO}``), which it keeps looking for until they are too old to be anything but
    rolled back."""

    __tablename__ = "webhook_dispatch_cursors"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


__all__ = [
    "DELIVERY_DELIVERED",
    "DELIVERY_FAILED",
    "DELIVERY_PENDING",
    "DELIVERY_STATUSES",
    "DISPATCH_CURSOR",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDispatchCursor",
    "WebhookEndpoint",
]

"""Tables for Lago billing: per-session invoices, inbound webhook log, its breaker, notifications.

Kept apart from :mod:`db.models` (same ``Base``) so billing changes do not collide with the core
schema. Schema changes only through Alembic (``db/migrations/versions/0004_lago_billing.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from db.models import Base, UserMapping

# Statuses of an inbound webhook row.
WEBHOOK_PENDING = "pending"
WEBHOOK_PROCESSED = "processed"
WEBHOOK_FAILED = "failed"
WEBHOOK_SKIPPED = "skipped"

BREAKER_LAGO_WEBHOOKS = "lago_webhooks"

# Who a notification is for.
AUDIENCE_USER = "user"
AUDIENCE_OPERATORS = "operators"


class SessionInvoice(Base):
    """A charging session ↔ a Lago invoice.

    Two sources: ``one_off`` rows are written by ``create_session_invoice`` (per-session billing
    mode) *before* the invoice exists — ``idempotency_key`` claims the work, ``lago_invoice_id`` is
    filled once Lago answered, so a retry never creates a second invoice. ``webhook`` rows link a
    subscription invoice (``invoice.created``) to the sessions whose usage it bills.
    """

    __tablename__ = "session_invoices"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    lago_invoice_id: Mapped[str | None] = mapped_column(String(64))
    invoice_number: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # one_off | webhook
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    external_customer_id: Mapped[str | None] = mapped_column(String(64))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    linked_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        Index(
            "uq_session_invoices_workflow_invoice",
            "workflow_id",
            "lago_invoice_id",
            unique=True,
            postgresql_where="lago_invoice_id IS NOT NULL",
        ),
        Index("ix_session_invoices_lago_invoice_id", "lago_invoice_id"),
    )


class LagoWebhookEvent(Base):
    """One inbound Lago webhook (or an operator's replay of one; never mutated by a replay)."""

    __tablename__ = "lago_webhook_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # X-Lago-Unique-Key: unique among originals; a replay copies it and points at its original.
    unique_key: Mapped[str] = mapped_column(String(255))
    # SHA-256 (hex) of the signed body: unique among originals, since the key above is not signed.
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    webhook_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=WEBHOOK_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    replay_of: Mapped[int | None] = mapped_column(ForeignKey("lago_webhook_events.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index(
            "uq_lago_webhook_events_unique_key",
            "unique_key",
            unique=True,
            postgresql_where="replay_of IS NULL",
        ),
        Index(
            "uq_lago_webhook_events_body_sha256",
            "body_sha256",
            unique=True,
            postgresql_where="replay_of IS NULL",
        ),
        Index("ix_lago_webhook_events_created_at", "created_at"),
        CheckConstraint("status IN ('pending', 'processed', 'failed', 'skipped')", name="status"),
    )


class CircuitBreaker(Base):
    """Consecutive processing failures; open (``opened_at`` set) until an operator resets it."""

    __tablename__ = "circuit_breakers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column()
    last_failure_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    reset_at: Mapped[datetime | None] = mapped_column()
    reset_by: Mapped[str | None] = mapped_column(String(255))


class Notification(Base):
    """One row of an inbox (docs/notifications.md): a driver's (``audience='user'``, ``user_id``
    = the BetterAuth user id) or the operators' shared inbox (``audience='operators'``).

    ``dedupe_key`` makes it once: writers go through :func:`db.notifications.notify`, an insert
    that does nothing when the key exists, so an activity retried or replayed writes one row.
    A driver's read and archive marks are ``read_at``/``archived_at`` here; each operator's are
    rows of :class:`NotificationMark`. ``user_public_id`` is the column of the first version
    (the driver's public id, or ``operators``), kept for rows and writers from before.
    """

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    audience: Mapped[str] = mapped_column(String(16), server_default=AUDIENCE_USER)
    user_id: Mapped[str | None] = mapped_column(String(64))
    user_public_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    read_at: Mapped[datetime | None] = mapped_column()
    archived_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("audience IN ('user', 'operators')", name="audience"),
        CheckConstraint("audience = 'user' OR user_id IS NULL", name="operators_have_no_user"),
        Index("ix_notifications_user_id", "user_id", "id"),
        Index("ix_notifications_audience", "audience", "id"),
    )


class NotificationMark(Base):
    """One operator's read/archive mark on a notification of the shared operators' inbox."""

    __tablename__ = "notification_marks"
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    read_at: Mapped[datetime | None] = mapped_column()
    archived_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (Index("ix_notification_marks_user_id", "user_id", "notification_id"),)


def user_of_recipient_sql(recipient: str) -> Select[str]:
    """The BetterAuth user id behind a user id, a public id or a Lago customer id."""
    return (
        select(UserMapping.user_id)
        .where(
            or_(
                UserMapping.user_id == recipient,
                UserMapping.public_id == recipient,
                UserMapping.lago_customer_external_id == recipient,
            )
        )
        .order_by(UserMapping.is_active.desc(), UserMapping.id.desc())
        .limit(1)
    )


@event.listens_for(Notification, "before_insert")
def _normalise_first_version_rows(
    _mapper: Mapper[Notification], connection: Connection, row: Notification
) -> None:
    """ORM inserts of the first version's shape (``user_public_id`` only) land in an inbox."""
    if row.user_id is not None or row.audience is not None:
        return
    if row.user_public_id == AUDIENCE_OPERATORS:
        row.audience = AUDIENCE_OPERATORS
        return
    row.audience = AUDIENCE_USER
    if row.user_public_id:
        row.user_id = connection.execute(
            user_of_recipient_sql(row.user_public_id)
        ).scalar_one_or_none()


__all__ = [
    "AUDIENCE_OPERATORS",
    "AUDIENCE_USER",
    "BREAKER_LAGO_WEBHOOKS",
    "WEBHOOK_FAILED",
    "WEBHOOK_PENDING",
    "WEBHOOK_PROCESSED",
    "WEBHOOK_SKIPPED",
    "CircuitBreaker",
    "LagoWebhookEvent",
    "Notification",
    "NotificationMark",
    "SessionInvoice",
    "user_of_recipient_sql",
]

"""Tables for remote operations: the operations log, the secrets an operation carries while it
is in flight, and each charger's last GetConfiguration answer.

Same ``Base`` as :mod:`db.models`; schema changes only through Alembic
(``db/migrations/versions/0013_operations.py``). See docs/operations.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class ChargerOperation(Base):
    """One request to a charger and its outcome (``domain/operations.py`` has the state machine).

    ``id`` is also the OCPP message's unique id, so the charger's own log names the same id.
    ``request`` never holds a secret (``***`` in its place); ``requested_by`` is the audit actor
    (``user:<id>``, ``cli:<os user>``, ``workflow:<type>``); ``source`` is where the request came
    from (the client's address, ``cli@<host>``, or the calling workflow's id); ``workflow_id`` is
    the workflow that sends it.
    """

    __tablename__ = "charger_operations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(16), server_default="ocpp1.6")
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), server_default="requested")
    response: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested', 'sent', 'answered', 'rejected', 'failed', 'timed_out', "
            "'charger_offline')",
            name="status",
        ),
        Index("ix_charger_operations_charger_created", "charge_box_id", "created_at"),
        Index("ix_charger_operations_created", "created_at"),
        Index("ix_charger_operations_status_created", "status", "created_at"),
    )


class ChargerOperationSecret(Base):
    """The secret fields of an operation (ChangeConfiguration AuthorizationKey's value), kept
    only until the operation ends, so they never travel through Temporal's history or the log."""

    __tablename__ = "charger_operation_secrets"
    operation_id: Mapped[str] = mapped_column(
        ForeignKey("charger_operations.id", ondelete="CASCADE"), primary_key=True
    )
    fields: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ChargerConfiguration(Base):
    """A charger's last GetConfiguration answer and the one before it (secrets shown as ``***``).

    ``keys`` is ``{key: {value, readonly}}``; ``full``: the answer was to a request for every key
    (a partial read never counts a key as removed).
    """

    __tablename__ = "charger_configurations"
    charge_box_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    keys: Mapped[dict[str, Any]] = mapped_column()
    unknown_keys: Mapped[list[str]] = mapped_column(JSONB, default=list)
    full: Mapped[bool] = mapped_column(Boolean)
    operation_id: Mapped[str] = mapped_column(String(36))
    read_at: Mapped[datetime] = mapped_column()
    previous_keys: Mapped[dict[str, Any] | None] = mapped_column()
    previous_read_at: Mapped[datetime | None] = mapped_column()

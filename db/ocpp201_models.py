"""OCPP 2.0.1 journal tables (migration ``0026_ocpp201``).

A 2.0.1 transaction is the charger's: it may start at plug-in, before any idToken, so it lives
in ``ocpp201_transactions`` until it is bound to a session; binding writes the ordinary
``transactions`` row (our integer id, the session workflow's) and the ``transaction_started``
outbox row. Every TransactionEvent is journaled in ``ocpp201_transaction_events``, unique on
(charger, transactionId, seqNo): the 2.0.1 idempotency key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, UniqueConstraint, false, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class Ocpp201Transaction(Base):
    __tablename__ = "ocpp201_transactions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    ocpp_transaction_id: Mapped[str] = mapped_column(String(36))
    evse_id: Mapped[int | None] = mapped_column(Integer)
    connector_id: Mapped[int | None] = mapped_column(Integer)
    # transactions.id once bound to a session (NULL while it waits for an idToken).
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    remote_start_id: Mapped[int | None] = mapped_column(Integer)
    id_token: Mapped[str | None] = mapped_column(String(36))
    id_token_type: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    # The Transaction.Begin register (else the lowest good one seen), integer Wh.
    begin_wh: Mapped[int | None] = mapped_column(BigInteger)
    # The highest seqNo applied to the state (older ones are journaled, never move it back).
    last_seq_no: Mapped[int] = mapped_column(Integer, server_default="-1")
    charging_state: Mapped[str | None] = mapped_column(String(16))
    stopped_reason: Mapped[str | None] = mapped_column(String(32))
    offline: Mapped[bool] = mapped_column(Boolean, server_default=false())
    flags: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        UniqueConstraint(
            "charge_box_id", "ocpp_transaction_id", name="uq_ocpp201_transactions_charger_tx"
        ),
        Index("ix_ocpp201_transactions_transaction_id", "transaction_id"),
    )


class Ocpp201TransactionEvent(Base):
    __tablename__ = "ocpp201_transaction_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    ocpp_transaction_id: Mapped[str] = mapped_column(String(36))
    seq_no: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(16))
    trigger_reason: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column()
    offline: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The request as the charger sent it (numbers exact), idTokens included: like the
    # transactions journal, this table is operator-only.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # What the event did: applied | duplicate | after_end | out_of_order
    outcome: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        UniqueConstraint(
            "charge_box_id",
            "ocpp_transaction_id",
            "seq_no",
            name="uq_ocpp201_transaction_events_seq",
        ),
    )


class Ocpp201DeviceVariable(Base):
    """The charger's device model as its NotifyReport (after GetBaseReport) described it: one row
    per component / variable / attribute type, the newest report's value (migration
    ``0032_ocpp201b``). Absent instance / EVSE / connector are stored as '' / 0 so the identity
    is one plain unique key. Secret variables (BasicAuthPassword) are never stored in clear."""

    __tablename__ = "ocpp201_device_variables"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    component: Mapped[str] = mapped_column(String(50))
    component_instance: Mapped[str] = mapped_column(String(50), server_default="")
    evse_id: Mapped[int] = mapped_column(Integer, server_default="0")
    connector_id: Mapped[int] = mapped_column(Integer, server_default="0")
    variable: Mapped[str] = mapped_column(String(50))
    variable_instance: Mapped[str] = mapped_column(String(50), server_default="")
    attribute_type: Mapped[str] = mapped_column(String(16), server_default="Actual")
    value: Mapped[str | None] = mapped_column(String(2500))
    mutability: Mapped[str | None] = mapped_column(String(16))
    # The characteristics the report gave (unit, dataType, limits …), as sent.
    characteristics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[datetime] = mapped_column()
    __table_args__ = (
        UniqueConstraint(
            "charge_box_id",
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "attribute_type",
            name="uq_ocpp201_device_variables_identity",
        ),
    )

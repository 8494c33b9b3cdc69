"""``idle_fees``: the idle fee of a stopped session (one row per session), written by the
``IdleFee`` workflow's activities (``activities/idle_fee.py``), read by ``sessions show`` and the
session views. Migration ``0025_idle_fee``; see ``docs/extending.md``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class IdleFeeLine(Base):
    """One session's idle fee: the time its connector stayed occupied after the stop, the fee
    (``domain/idle_fee.py``), why the count ended (``end_reason``) and the Lago one-off invoice
    carrying it. ``line_id`` is the deterministic id (``<session workflow id>:idle-fee``)."""

    __tablename__ = "idle_fees"
    session_workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(300), unique=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    tariff_version_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_versions.id"))
    stopped_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime] = mapped_column()
    # available | new_session | unavailable | cap_reached | watch_expired | charger_offline |
    # unplugged_before_stop
    end_reason: Mapped[str] = mapped_column(String(32))
    idle_s: Mapped[int] = mapped_column(Integer)
    billed_s: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    capped: Mapped[bool] = mapped_column(Boolean)
    lago_customer_external_id: Mapped[str | None] = mapped_column(String(64))
    lago_invoice_id: Mapped[str | None] = mapped_column(String(64))
    invoice_number: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint("idle_s >= 0 AND billed_s >= 0 AND amount_minor >= 0", name="non_negative"),
        Index(
            "ix_idle_fees_unsent",
            "created_at",
            postgresql_where=text("sent_at IS NULL AND amount_minor > 0"),
        ),
    )


__all__ = ["IdleFeeLine"]

"""The reservations table: a driver's hold on one connector for a time window.

Same ``Base`` as :mod:`db.models`; schema changes only through Alembic
(``db/migrations/versions/0020_reservations.py``). See docs/reservations.md.

Two live reservations of one connector never overlap: an exclusion constraint on
``(charge_box_id, connector_id, tstzrange(starts_at, ends_at))`` for the live statuses makes the
database refuse the second of two concurrent inserts, whatever process made them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base

# OCPP's reservationId (an integer the charger echoes in StartTransaction).
reservation_ocpp_id_seq = Sequence("reservation_ocpp_id_seq", start=1, metadata=Base.metadata)

# Statuses (domain/reservations.py has the rules): pending → confirmed → used, or a final
# cancelled | failed | expired. Only the live ones hold the connector.
LIVE_STATUSES = ("pending", "confirmed")


class Reservation(Base):
    __tablename__ = "reservations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(ForeignKey("chargers.charge_box_id"))
    # The connector held; chosen by the platform when the driver asked for any connector.
    connector_id: Mapped[int | None] = mapped_column(Integer)
    any_connector: Mapped[bool] = mapped_column(Boolean, server_default=false())
    user_id: Mapped[str] = mapped_column(String(64))
    id_tag: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    # Why it failed, was cancelled or expired, in words the driver can read.
    reason: Mapped[str | None] = mapped_column(Text)
    ocpp_reservation_id: Mapped[int] = mapped_column(
        Integer, reservation_ocpp_id_seq, server_default=reservation_ocpp_id_seq.next_value()
    )
    workflow_id: Mapped[str] = mapped_column(String(255))
    session_workflow_id: Mapped[str | None] = mapped_column(String(255))
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    # The charger accepted ReserveNow (so a cancel or a no-show must tell it).
    sent_to_charger: Mapped[bool] = mapped_column(Boolean, server_default=false())
    cancelled_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window_positive"),
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'used', 'cancelled', 'failed', 'expired')",
            name="status_known",
        ),
        ExcludeConstraint(
            (text("charge_box_id"), "="),
            (text("connector_id"), "="),
            (text("tstzrange(starts_at, ends_at)"), "&&"),
            name="ex_reservations_no_overlap",
            using="gist",
            where=text("status IN ('pending', 'confirmed')"),
        ),
        Index("uq_reservations_ocpp_id", "ocpp_reservation_id", unique=True),
        Index("ix_reservations_user", "user_id", "starts_at"),
        Index("ix_reservations_charger", "charge_box_id", "starts_at"),
        Index("ix_reservations_id_tag", "id_tag"),
    )


__all__ = ["LIVE_STATUSES", "Reservation", "reservation_ocpp_id_seq"]

"""Site load management (see docs/load-management.md): a site's power limit, and what each
charger was told.

Same ``Base`` as :mod:`db.models`; schema changes only through Alembic
(``db/migrations/versions/0023_site_load.py``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class SiteLoadLimit(Base):
    """A site's limit, in its unit: ``W`` (``site_limit`` watts) or ``A`` (``site_limit``
    amperes per phase on ``phases`` phases of ``voltage_v``). ``min_per_session`` and
    ``safe_limit`` (the TxDefaultProfile a charger applies by itself) are in the same unit.
    ``rounds``/``last_planned_at``: how often, and when, the plan was last computed."""

    __tablename__ = "site_load_limits"
    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    unit: Mapped[str] = mapped_column(String(1))
    site_limit: Mapped[int] = mapped_column(Integer)
    phases: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    voltage_v: Mapped[int] = mapped_column(Integer, server_default=text("230"))
    min_per_session: Mapped[int] = mapped_column(Integer)
    safe_limit: Mapped[int] = mapped_column(Integer)
    rounds: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_planned_at: Mapped[datetime | None] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint("unit IN ('W', 'A')", name="unit_known"),
        CheckConstraint("site_limit > 0", name="limit_positive"),
        CheckConstraint("phases IN (1, 3)", name="phases_known"),
        CheckConstraint("voltage_v BETWEEN 100 AND 1000", name="voltage_range"),
        CheckConstraint("min_per_session >= 0 AND safe_limit >= 0", name="minimums_non_negative"),
    )


class ChargerLoadProfile(Base):
    """Per charger and connector (0 for the TxDefaultProfile), the profile the plan wants
    (``planned_*``) and the last one the charger accepted (``acknowledged_*``). A profile is
    sent only when the two differ, so a restarted worker re-sends nothing the charger has."""

    __tablename__ = "charger_load_profiles"
    charge_box_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.charge_box_id", ondelete="CASCADE"), primary_key=True
    )
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # TxProfile | TxDefaultProfile
    purpose: Mapped[str] = mapped_column(String(24), primary_key=True)
    site_id: Mapped[int | None] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(1))
    planned_limit: Mapped[int | None] = mapped_column(Integer)
    planned_transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_limit: Mapped[int | None] = mapped_column(Integer)
    acknowledged_transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    # A lower limit the charger reported offering (MeterValues Power.Offered/Current.Offered,
    # in the site's unit) for the acknowledged transaction: the plan caps the session there
    # until the next arrival or departure at the site.
    offered_limit: Mapped[int | None] = mapped_column(Integer)
    offered_at: Mapped[datetime | None] = mapped_column()
    # planned | accepted | rejected | offline | failed
    status: Mapped[str] = mapped_column(String(16), server_default=text("'planned'"))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (Index("ix_charger_load_profiles_site_id", "site_id"),)


__all__ = ["ChargerLoadProfile", "SiteLoadLimit"]

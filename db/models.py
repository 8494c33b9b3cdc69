"""The core tables. Schema changes only through Alembic migrations in ``db/migrations``.

Units are in the column names: energy in integer Wh, money in integer minor units.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Tz = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, datetime: Tz}


# OCPP transaction ids come from this sequence (in SteVe relay mode, SteVe's id is used instead).
transaction_id_seq = Sequence("transaction_id_seq", start=1, metadata=Base.metadata)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str | None] = mapped_column(Text)
    # WGS 84 degrees; both or neither.
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    # IANA time zone name (validated by services/sites.py).
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="coordinates_pair"),
        CheckConstraint(
            "latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180",
            name="coordinates_range",
        ),
    )


IDLE_TERMS_CHECK = (
    "idle_grace_minutes >= 0 AND idle_price_per_minute_minor >= 0 "
    "AND (idle_fee_cap_minor IS NULL OR idle_fee_cap_minor >= 0)"
)


class Tariff(Base):
    """A tariff: its code, currency and default flag. Its price columns are the terms its
    version 1 was created with; the terms in force are in ``tariff_versions`` (db/tariffs.py)."""

    __tablename__ = "tariffs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    price_per_kwh_minor: Mapped[int] = mapped_column(Integer, default=0)
    price_per_minute_minor: Mapped[int] = mapped_column(Integer, default=0)
    price_per_session_minor: Mapped[int] = mapped_column(Integer, default=0)
    # Below either minimum a session pays no per-session fee (0 and 0: every session pays it).
    session_fee_min_energy_wh: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    session_fee_min_duration_s: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # The idle fee (domain/idle_fee.py): free minutes after the stop, the price per minute after
    # them (0: no idle fee) and the most one session pays (NULL: no cap).
    idle_grace_minutes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    idle_price_per_minute_minor: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    idle_fee_cap_minor: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint(IDLE_TERMS_CHECK, name="idle_terms_non_negative"),
        CheckConstraint(
            "price_per_kwh_minor >= 0 AND price_per_minute_minor >= 0 "
            "AND price_per_session_minor >= 0",
            name="prices_non_negative",
        ),
        CheckConstraint(
            "session_fee_min_energy_wh >= 0 AND session_fee_min_duration_s >= 0",
            name="session_fee_minimums_non_negative",
        ),
    )


class TariffVersion(Base):
    """The terms of a tariff from ``valid_from`` on. Rows are never edited: a price change is a
    new version, and a session keeps the version it started under (``charging_sessions``).
    Version 1 carries the terms the ``tariffs`` row was created with."""

    __tablename__ = "tariff_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"))
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    price_per_kwh_minor: Mapped[int] = mapped_column(Integer)
    price_per_minute_minor: Mapped[int] = mapped_column(Integer)
    price_per_session_minor: Mapped[int] = mapped_column(Integer)
    session_fee_min_energy_wh: Mapped[int] = mapped_column(Integer)
    session_fee_min_duration_s: Mapped[int] = mapped_column(Integer)
    # The idle fee terms of this version (see Tariff).
    idle_grace_minutes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    idle_price_per_minute_minor: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    idle_fee_cap_minor: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        UniqueConstraint("tariff_id", "version", name="uq_tariff_versions_tariff_version"),
        CheckConstraint(IDLE_TERMS_CHECK, name="idle_terms_non_negative"),
        CheckConstraint(
            "price_per_kwh_minor >= 0 AND price_per_minute_minor >= 0 "
            "AND price_per_session_minor >= 0 AND session_fee_min_energy_wh >= 0 "
            "AND session_fee_min_duration_s >= 0",
            name="terms_non_negative",
        ),
    )


class Charger(Base):
    __tablename__ = "chargers"
    charge_box_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"))
    # Security profile 1 (HTTP Basic). NULL: no password; outside dev such a charger is refused
    # unless allow_unauthenticated is set (see docs/gateway.md, "Charger authentication").
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # The operator's explicit, visible exemption for a charger that cannot do security profile 1.
    allow_unauthenticated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    auto_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    vendor: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(50))
    serial_number: Mapped[str | None] = mapped_column(String(50))
    firmware_version: Mapped[str | None] = mapped_column(String(50))
    registration_status: Mapped[str] = mapped_column(String(16), default="Accepted")
    # The gateway process holding the socket (its Temporal task queue is gateway-<instance>).
    gateway_instance: Mapped[str | None] = mapped_column(String(64))
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column()
    last_boot_at: Mapped[datetime | None] = mapped_column()
    # The most power the charger delivers (W): energy beyond it × elapsed time is flagged, not
    # billed. The default is a 350 kW DC charger, above anything a single connector draws today.
    max_power_w: Mapped[int] = mapped_column(Integer, server_default=text("350000"))
    label: Mapped[str | None] = mapped_column(String(200))
    # A rotated password not yet used: the gateway accepts it or password_hash until the charger
    # first authenticates with it, then it replaces password_hash (docs/fleet.md).
    pending_password_hash: Mapped[str | None] = mapped_column(String(255))
    password_rotated_at: Mapped[datetime | None] = mapped_column()
    # Decommissioned: kept with its history, refused by the gateway, hidden from lists.
    decommissioned_at: Mapped[datetime | None] = mapped_column()
    # When charger.offline was last announced for it: a new episode starts once the charger is
    # seen after that (activities/live.py).
    offline_reported_at: Mapped[datetime | None] = mapped_column()
    # The OCPP version the charger's last connection negotiated ("1.6" | "2.0.1"), informational:
    # each connection chooses its own (migration 0026_ocpp201).
    ocpp_version: Mapped[str | None] = mapped_column(String(16))
    # OCPP 2.0.1 start button (idToken type NoAuthorization): accepted as a free vend when true.
    free_vend: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (CheckConstraint("max_power_w > 0", name="max_power_positive"),)


class PendingCharger(Base):
    """An unknown chargeBoxId the gateway refused: when, how often, from where (bounded by
    ``gateway_pending_chargers_max``)."""

    __tablename__ = "pending_chargers"
    charge_box_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    last_address: Mapped[str | None] = mapped_column(String(64))


class Connector(Base):
    __tablename__ = "connectors"
    charge_box_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.charge_box_id", ondelete="CASCADE"), primary_key=True
    )
    # 0 is the charge point itself, as in OCPP StatusNotification.
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(32), default="Unavailable")
    error_code: Mapped[str] = mapped_column(String(32), default="NoError")
    info: Mapped[str | None] = mapped_column(String(50))
    vendor_error_code: Mapped[str | None] = mapped_column(String(50))
    status_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # What drivers see (set by operators, docs/drivers.md): the plug (domain/availability.py
    # CONNECTOR_TYPES) and the most this connector delivers (NULL: the charger's max_power_w).
    connector_type: Mapped[str | None] = mapped_column(String(16))
    max_power_w: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        CheckConstraint(
            "max_power_w IS NULL OR max_power_w > 0", name="connector_max_power_positive"
        ),
    )


class EvCard(Base):
    __tablename__ = "ev_cards"
    id_tag: Mapped[str] = mapped_column(String(20), primary_key=True)
    parent_id_tag: Mapped[str | None] = mapped_column(ForeignKey("ev_cards.id_tag"))
    label: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column()
    max_concurrent_sessions: Mapped[int] = mapped_column(Integer, default=1)
    lost_at: Mapped[datetime | None] = mapped_column()
    # OCPP 2.0.1 idToken type (ISO14443, eMAID, Central …); NULL matches any type (1.6 cards).
    token_type: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (CheckConstraint("id_tag <> parent_id_tag", name="not_own_parent"),)


class UserMapping(Base):
    """A user ↔ an idTag ↔ a Lago customer (external id = the user's public id)."""

    __tablename__ = "user_mappings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # BetterAuth's user id (text) and the 8-character Crockford-base32 public id.
    user_id: Mapped[str] = mapped_column(String(64))
    public_id: Mapped[str] = mapped_column(String(8))
    email: Mapped[str | None] = mapped_column(String(320))
    id_tag: Mapped[str] = mapped_column(ForeignKey("ev_cards.id_tag"))
    lago_customer_external_id: Mapped[str | None] = mapped_column(String(64))
    lago_subscription_external_id: Mapped[str | None] = mapped_column(String(64))
    billing_mode: Mapped[str] = mapped_column(String(16), default="usage")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        # One active mapping per card; history stays as inactive rows.
        Index(
            "uq_user_mappings_active_id_tag",
            "id_tag",
            unique=True,
            postgresql_where="is_active",
        ),
        Index("ix_user_mappings_user_id", "user_id"),
    )


class Transaction(Base):
    """The OCPP transaction journal, written by the gateway."""

    __tablename__ = "transactions"
    id: Mapped[int] = mapped_column(
        BigInteger,
        transaction_id_seq,
        primary_key=True,
        server_default=transaction_id_seq.next_value(),
    )
    charge_box_id: Mapped[str] = mapped_column(ForeignKey("chargers.charge_box_id"))
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str] = mapped_column(String(20))
    workflow_id: Mapped[str] = mapped_column(String(255))
    auth_status: Mapped[str] = mapped_column(String(16), default="Accepted")
    meter_start_wh: Mapped[int] = mapped_column(BigInteger)
    meter_stop_wh: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column()
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    stop_id_tag: Mapped[str | None] = mapped_column(String(20))
    # The platform closed the transaction without a StopTransaction (the charger forgot it, or an
    # operator force-closed it). stopped_at stays NULL: a late stop is still journaled.
    closed_at: Mapped[datetime | None] = mapped_column()
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    # The card's owner when the transaction started (never follows a reassigned card).
    owner_user_id: Mapped[str | None] = mapped_column(String(64))
    reservation_id: Mapped[int | None] = mapped_column(Integer)
    # Set when the StopTransaction carried a value the gateway did not trust (a meterStop out of
    # range or implausible, a timestamp far from now): the flags, and the stop as it was sent.
    stop_flags: Mapped[list[str] | None] = mapped_column(JSONB)
    stop_payload: Mapped[dict[str, Any] | None] = mapped_column()
    # OCPP 2.0.1: the charger chooses its own transaction id (a string, unique per charger); our
    # integer id stays the session's. NULL version = 1.6 (migration 0026_ocpp201).
    ocpp_version: Mapped[str | None] = mapped_column(String(8))
    ocpp_transaction_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        Index(
            "uq_transactions_ocpp_transaction_id",
            "charge_box_id",
            "ocpp_transaction_id",
            unique=True,
            postgresql_where="ocpp_transaction_id IS NOT NULL",
        ),
        # A charger that resends StartTransaction (no answer seen) gets the same transaction id.
        UniqueConstraint(
            "charge_box_id",
            "connector_id",
            "started_at",
            "meter_start_wh",
            name="uq_transactions_start_identity",
        ),
        Index("ix_transactions_workflow_id", "workflow_id"),
        Index(
            "ix_transactions_open",
            "charge_box_id",
            "connector_id",
            postgresql_where="stopped_at IS NULL",
        ),
    )


class OrphanStop(Base):
    """StopTransaction for a transaction id we do not know: acknowledged, kept to reconcile."""

    __tablename__ = "orphan_stops"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MeterSample(Base):
    __tablename__ = "meter_samples"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    sampled_at: Mapped[datetime] = mapped_column()
    measurand: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str | None] = mapped_column(String(8))
    unit: Mapped[str | None] = mapped_column(String(16))
    context: Mapped[str | None] = mapped_column(String(32))
    # The value as the charger sent it, and (for energy registers) converted once to Wh.
    raw_value: Mapped[str] = mapped_column(String(64))
    energy_wh: Mapped[int | None] = mapped_column(BigInteger)
    # Why the sample is not billed (outside the transaction window, not monotonic, ...).
    flag: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (Index("ix_meter_samples_transaction", "transaction_id", "sampled_at"),)


class GatewayOutbox(Base):
    """What the gateway must tell Temporal, written in the same transaction as the journal."""

    __tablename__ = "gateway_outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index(
            "ix_gateway_outbox_pending",
            "workflow_id",
            "id",
            postgresql_where="delivered_at IS NULL",
        ),
    )


class ChargingSession(Base):
    """Read model of each ChargingSessionWorkflow, written by its activities, for API and CLI."""

    __tablename__ = "charging_sessions"
    workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    charge_box_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int | None] = mapped_column(Integer)
    id_tag: Mapped[str | None] = mapped_column(String(20))
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[str | None] = mapped_column(String(64))
    energy_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    started_at: Mapped[datetime | None] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column()
    end_reason: Mapped[str | None] = mapped_column(String(64))
    # The Lago invoice billing the session (per-session invoice, or linked by Lago's webhook).
    lago_invoice_id: Mapped[str | None] = mapped_column(String(255))
    # When the workflow first wrote its row (the session was requested); never updated.
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # What an operator must look at (implausible_energy, data_error, closed_*, start_refused:*).
    flags: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # The tariff version the session is billed under (resolved by its start time, then fixed).
    tariff_version_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        Index("ix_charging_sessions_id_tag", "id_tag"),
        # The operators' list order (services/session_list.py: newest first, by start or, never
        # started, by request; ties by id) and its cursor: a page is an index range.
        Index(
            "ix_charging_sessions_listed",
            text("COALESCE(started_at, created_at)"),
            "workflow_id",
        ),
    )


class BillingEvent(Base):
    """Usage the workflow billed, with a deterministic id (``<workflow id>:<sequence>``)."""

    __tablename__ = "billing_events"
    transaction_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    sequence: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # periodic | final | compensation
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column()
    lago_customer_external_id: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        UniqueConstraint("workflow_id", "sequence", name="uq_billing_events_workflow_sequence"),
    )


# "This card at this charger" → the workflow that should receive the StartTransaction that
# follows: a tap remembered by the gateway (origin ``tap``) or a remote start recorded by the
# workflow before it sends RemoteStartTransaction (origin ``remote``). Rows live until
# ``expires_at`` (the charger's ConnectionTimeOut) or until a StartTransaction consumes them.
session_intents = Table(
    "session_intents",
    Base.metadata,
    Column("id", BigInteger, primary_key=True),
    Column("workflow_id", String(255), nullable=False),
    Column("charge_box_id", String(255), nullable=False),
    Column("id_tag", String(20), nullable=False),
    Column("connector_id", Integer, nullable=True),
    Column("origin", String(16), nullable=False),
    # What pre-authorization concluded (the workflow's answer when it came in time).
    Column("auth_status", String(16), nullable=False, server_default="Accepted"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=True),
    Column("transaction_id", BigInteger, nullable=True),
    Index(
        "ix_session_intents_open",
        "charge_box_id",
        "id_tag",
        postgresql_where="consumed_at IS NULL",
    ),
)


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (Index("ix_audit_log_at", "at"),)


__all__ = [
    "AuditLog",
    "Base",
    "BillingEvent",
    "Charger",
    "ChargingSession",
    "Connector",
    "EvCard",
    "GatewayOutbox",
    "MeterSample",
    "OrphanStop",
    "PendingCharger",
    "Site",
    "Tariff",
    "TariffVersion",
    "Transaction",
    "UserMapping",
    "session_intents",
    "transaction_id_seq",
]


class PlatformEvent(Base):
    """What happened on the platform (``domain/events.py``), in commit order; written by
    ``db/events.py`` in the transaction of the change it describes. Read by the live streams,
    the webhook dispatcher and the inboxes, each from the last id it saw."""

    __tablename__ = "platform_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
    subject: Mapped[str | None] = mapped_column(String(255))
    charge_box_id: Mapped[str | None] = mapped_column(String(255))
    site_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    __table_args__ = (
        Index("ix_platform_events_user_id", "user_id", "id"),
        Index("ix_platform_events_charge_box_id", "charge_box_id", "id"),
        Index("ix_platform_events_site_id", "site_id", "id"),
    )

"""Activities of ChargingSessionWorkflow that read or write PostgreSQL.

Each is a method on :class:`SessionActivities` (which holds the session factory), has a pinned
``name=`` and takes one pydantic input. All are idempotent: reads, or upserts keyed by the
workflow id. Domain refusals become non-retryable ``ApplicationError``s with a ``type``:

* ``UnknownCharger`` — no ``chargers`` row for the charge box id;
* ``ChargerNotConnected`` — the charger has no gateway instance to route a command to;
* ``NoTariff`` — neither the charger's tariff nor a default tariff exists.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Row, and_, func, select, text, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db_errors import data_errors_are_final
from db.card_sessions import card_facts, lock_card
from db.engine import SessionFactory
from db.events import record_event
from db.models import (
    Charger,
    ChargingSession,
    Connector,
    PlatformEvent,
    Tariff,
    TariffVersion,
    Transaction,
    UserMapping,
    session_intents,
)
from db.notifications import notify_session_billed
from db.ocpp201_models import Ocpp201Transaction
from db.tariffs import version_at
from domain.authorization import AuthorizationFacts, AuthStatus, CardFacts, decide
from domain.pricing import TariffTerms
from domain.session import Phase
from domain.session_announcements import RowFacts, session_events
from workflows.messages import PreAuthorizeResult, SessionSummary

ACTIVITY_PRE_AUTHORIZE_CARD = "pre_authorize_card"
ACTIVITY_UPSERT_SESSION = "upsert_session_read_model"
ACTIVITY_CHECK_CHARGER_LIVENESS = "check_charger_liveness"
ACTIVITY_RESOLVE_CHARGER_ROUTE = "resolve_charger_route"
ACTIVITY_LOAD_TARIFF = "load_tariff"
ACTIVITY_RECORD_SESSION_INTENT = "record_session_intent"

# The session's final billing line is recorded: its energy and cost are what the driver pays.
BILLED_STATES = frozenset({Phase.BILLED.value, Phase.CLOSED.value})

# Connector statuses that show a transaction is still running (OCPP 1.6 ChargePointStatus).
CHARGING_STATUSES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})


class PreAuthorizeCardInput(BaseModel):
    workflow_id: str
    id_tag: str
    charge_box_id: str


class PreAuthorizeCardResult(PreAuthorizeResult):
    """The workflow's answer to the gateway, plus what the session keeps for billing."""

    user_id: str | None = None
    lago_customer_external_id: str | None = None


class ReadModelWritten(BaseModel):
    """``upsert_session_read_model``'s result: the session state it was asked to write, and why
    the session ended (a local activity's history records its result, never its input)."""

    state: str
    end_reason: str | None = None


class SessionReadModel(SessionSummary):
    """One ``charging_sessions`` row (a ``lago_invoice_id`` of None never clears a link; the
    first ``user_id`` written is the session's owner for good)."""

    user_id: str | None = None
    flags: list[str] = Field(default_factory=list)


class ChargerLivenessInput(BaseModel):
    charge_box_id: str
    silent_after_s: float
    connector_id: int | None = None
    # The session's transaction (our integer id): names the charger's 2.0.1 transactionId the
    # watchdog may ask about (GetTransactionStatus). None: not asked.
    transaction_id: int | None = None


class ChargerLiveness(BaseModel):
    alive: bool
    connected: bool
    last_seen_at: datetime | None = None
    # Is the session's connector still in a charging state (Charging, SuspendedEV/EVSE) reported
    # since the charger last booted? A status from before a reboot is no evidence: the charger
    # may have come back without the transaction. True when no connector was asked about.
    connector_charging: bool = True
    # The charger's own transactionId when the session's transaction is an OCPP 2.0.1 one the
    # station has not ended (and we have neither stopped nor closed): the watchdog asks the
    # station about it (GetTransactionStatus) before closing. None for 1.6 and for an ended one.
    ocpp_transaction_id: str | None = None


class ChargerRouteInput(BaseModel):
    charge_box_id: str


class ChargerRoute(BaseModel):
    mode: Literal["gateway"] = "gateway"
    task_queue: str


class LoadTariffInput(BaseModel):
    charge_box_id: str


class RecordSessionIntentInput(BaseModel):
    """A remote start's intent: the gateway joins the next StartTransaction to this workflow."""

    workflow_id: str
    charge_box_id: str
    id_tag: str
    connector_id: int | None = None  # None: any connector of the charger
    auth_status: AuthStatus = "Accepted"
    expires_in_s: float


class RecordSessionIntentResult(BaseModel):
    intent_id: int
    created: bool  # False: an earlier attempt of this activity recorded it already


class SessionActivities:
    def __init__(
        self, session_factory: SessionFactory, *, progress_event_interval_s: float = 10.0
    ) -> None:
        self._sessions = session_factory
        # At most one ``session.updated`` for meter progress alone per session per interval.
        self._progress_interval_s = progress_event_interval_s

    @activity.defn(name=ACTIVITY_PRE_AUTHORIZE_CARD)
    async def pre_authorize_card(self, input: PreAuthorizeCardInput) -> PreAuthorizeCardResult:
        """Card known, active, not blocked/lost/expired, parent ok, mapped, under its limit.

        Decided under the card's advisory lock; an accepted card's session is claimed (its read
        model row written as ``pre_authorized``) before the lock is released, so a tap of the same
        card on another charger, decided next, counts it.
        """
        async with self._sessions() as db, db.begin():
            await lock_card(db, input.id_tag)
            # The card, its parent, its mapping and its other open sessions: one round trip.
            facts = await card_facts(db, input.id_tag, exclude_workflow_id=input.workflow_id)
            card = facts.card if facts else None
            decision = decide(
                AuthorizationFacts(
                    card=CardFacts.model_validate(card) if card else None,
                    parent=CardFacts.model_validate(facts.parent)
                    if facts and facts.parent
                    else None,
                    has_active_mapping=facts is not None and facts.user_id is not None,
                    other_open_sessions=facts.open_sessions if facts else 0,
                ),
                datetime.now(UTC),
            )
            user_id = facts.user_id if facts else None
            if decision.status == "Accepted":
                await _claim(db, input, user_id)
        return PreAuthorizeCardResult(
            status=decision.status,
            reason=decision.reason,
            parent_id_tag=card.parent_id_tag if card else None,
            expiry_date=card.expires_at if card else None,
            user_id=user_id,
            lago_customer_external_id=facts.lago_customer_external_id if facts else None,
        )

    @activity.defn(name=ACTIVITY_UPSERT_SESSION)
    @data_errors_are_final
    async def upsert_session_read_model(self, input: SessionReadModel) -> ReadModelWritten:
        """Write the session's read model row (idempotent: keyed by workflow id). Returns the
        state written: a local activity's history records only its result, and the operator's
        timeline (``services/timeline.py``) reads the session's states from it."""
        values = input.model_dump()
        if values.get("user_id") is None and values.get("id_tag"):
            # A session the workflow never pre-authorized (the charger skipped Authorize) still
            # belongs to the card's owner, so it shows in their own session list.
            values["user_id"] = (
                select(UserMapping.user_id)
                .where(UserMapping.id_tag == values["id_tag"], UserMapping.is_active)
                .limit(1)
                .scalar_subquery()
            )
        statement = insert(ChargingSession).values(**values, updated_at=func.now())
        statement = statement.on_conflict_do_update(
            index_elements=[ChargingSession.workflow_id],
            set_={
                **{k: statement.excluded[k] for k in values if k != "workflow_id"},
                # The webhook's activity may have linked an invoice the workflow has not heard of.
                "lago_invoice_id": func.coalesce(
                    statement.excluded.lago_invoice_id, ChargingSession.lago_invoice_id
                ),
                # The owner is frozen by the first write: a card handed to someone else later
                # never takes its old sessions along.
                "user_id": func.coalesce(ChargingSession.user_id, statement.excluded.user_id),
                "updated_at": func.now(),
            },
            # A write of ``requested`` still in flight never undoes pre-authorization's claim.
            where=~and_(
                ChargingSession.state == Phase.PRE_AUTHORIZED.value,
                statement.excluded.state == Phase.REQUESTED.value,
            ),
        )
        async with self._sessions() as db, db.begin():
            # Serialise with a retried attempt of this write, so exactly one of them sees the
            # change (and announces it).
            await db.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"session-read-model:{input.workflow_id}"},
            )
            # The row as it was (a CTE sees the statement's snapshot, taken before the upsert)
            # and the session's last event, returned by the upsert itself: one round trip.
            before = (
                select(
                    ChargingSession.state,
                    ChargingSession.energy_wh,
                    ChargingSession.started_at,
                )
                .where(ChargingSession.workflow_id == input.workflow_id)
                .cte("before")
            )
            last_event_at = (
                select(PlatformEvent.occurred_at)
                .where(
                    PlatformEvent.charge_box_id == input.charge_box_id,
                    PlatformEvent.subject == input.workflow_id,
                )
                .order_by(PlatformEvent.id.desc())
                .limit(1)
                .scalar_subquery()
            )
            after = (
                await db.execute(
                    statement.add_cte(before).returning(
                        *[getattr(ChargingSession, k) for k in _EVENT_COLUMNS],
                        select(before.c.state).scalar_subquery().label("before_state"),
                        select(before.c.energy_wh).scalar_subquery().label("before_energy_wh"),
                        select(before.c.started_at).scalar_subquery().label("before_started_at"),
                        last_event_at.label("last_event_at"),
                    )
                )
            ).first()
            if after is not None:
                await _announce(db, after, self._progress_interval_s)
                owner = after.user_id
                if owner is not None and input.state in BILLED_STATES and input.transaction_id:
                    await notify_session_billed(db, owner, input)
        # The workflow's state, as a scheduled activity's input showed it (also when the row
        # kept a newer claim): the timeline's states are the session's own.
        return ReadModelWritten(state=input.state, end_reason=input.end_reason)

    @activity.defn(name=ACTIVITY_CHECK_CHARGER_LIVENESS)
    async def check_charger_liveness(self, input: ChargerLivenessInput) -> ChargerLiveness:
        """Has the charger been heard from (connected, seen recently) within the silence limit?"""
        async with self._sessions() as db:
            charger = await db.get(Charger, input.charge_box_id)
            connector = (
                await db.get(Connector, (input.charge_box_id, input.connector_id))
                if charger is not None and input.connector_id is not None
                else None
            )
        if charger is None:
            return ChargerLiveness(alive=False, connected=False)
        cutoff = datetime.now(UTC) - timedelta(seconds=input.silent_after_s)
        seen_recently = charger.last_seen_at is not None and charger.last_seen_at >= cutoff
        charging = True
        if input.connector_id is not None:
            charging = (
                connector is not None
                and connector.status in CHARGING_STATUSES
                and (charger.last_boot_at is None or connector.updated_at >= charger.last_boot_at)
            ) or await self._open_201_transaction(input.charge_box_id, input.connector_id)
        return ChargerLiveness(
            alive=bool(charger.connected and seen_recently),
            connected=charger.connected,
            last_seen_at=charger.last_seen_at,
            connector_charging=charging,
            ocpp_transaction_id=(
                await self._open_201_transaction_id(input.charge_box_id, input.transaction_id)
                if input.transaction_id is not None
                else None
            ),
        )

    async def _open_201_transaction(self, charge_box_id: str, evse_id: int) -> bool:
        """OCPP 2.0.1 connector statuses carry no charging state (Available / Occupied …): a
        transaction the station has not ended on this EVSE is still charging as far as we know
        (its state is in TransactionEvent, journaled in ocpp201_transactions)."""
        async with self._sessions() as db:
            found = await db.scalar(
                select(Ocpp201Transaction.id)
                .join(Transaction, Transaction.id == Ocpp201Transaction.transaction_id)
                .where(
                    Ocpp201Transaction.charge_box_id == charge_box_id,
                    Ocpp201Transaction.evse_id == evse_id,
                    Ocpp201Transaction.ended_at.is_(None),
                    Transaction.stopped_at.is_(None),
                    Transaction.closed_at.is_(None),
                )
                .limit(1)
            )
        return found is not None

    async def _open_201_transaction_id(self, charge_box_id: str, transaction_id: int) -> str | None:
        """The charger's 2.0.1 transactionId of our transaction, while nobody has ended it."""
        async with self._sessions() as db:
            found = await db.scalar(
                select(Ocpp201Transaction.ocpp_transaction_id)
                .join(Transaction, Transaction.id == Ocpp201Transaction.transaction_id)
                .where(
                    Ocpp201Transaction.charge_box_id == charge_box_id,
                    Ocpp201Transaction.transaction_id == transaction_id,
                    Ocpp201Transaction.ended_at.is_(None),
                    Transaction.stopped_at.is_(None),
                    Transaction.closed_at.is_(None),
                )
                .limit(1)
            )
        return found

    @activity.defn(name=ACTIVITY_RESOLVE_CHARGER_ROUTE)
    async def resolve_charger_route(self, input: ChargerRouteInput) -> ChargerRoute:
        """The task queue of the gateway process holding the charger's socket."""
        async with self._sessions() as db:
            charger = await db.get(Charger, input.charge_box_id)
        if charger is None:
            raise ApplicationError(
                f"unknown charger {input.charge_box_id!r}",
                type="UnknownCharger",
                non_retryable=True,
            )
        if not charger.gateway_instance:
            raise ApplicationError(
                f"charger {input.charge_box_id!r} is not attached to a gateway",
                type="ChargerNotConnected",
                non_retryable=True,
            )
        return ChargerRoute(task_queue=f"gateway-{charger.gateway_instance}")

    @activity.defn(name=ACTIVITY_RECORD_SESSION_INTENT)
    async def record_session_intent(
        self, input: RecordSessionIntentInput
    ) -> RecordSessionIntentResult:
        """Insert the workflow's ``session_intents`` row (origin ``remote``), once.

        ``session_intents`` has no unique key on the workflow id (a tap may be remembered more
        than once), so a transaction-scoped advisory lock on the workflow id serialises a retried
        attempt with one that is still running; the second finds the first's row.
        """
        t = session_intents
        async with self._sessions() as db, db.begin():
            await db.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"session-intent:{input.workflow_id}"},
            )
            existing = await db.scalar(
                select(t.c.id)
                .where(t.c.workflow_id == input.workflow_id, t.c.origin == "remote")
                .order_by(t.c.id)
                .limit(1)
            )
            if existing is not None:
                return RecordSessionIntentResult(intent_id=existing, created=False)
            now = datetime.now(UTC)
            intent_id = await db.scalar(
                sa_insert(t)
                .values(
                    workflow_id=input.workflow_id,
                    charge_box_id=input.charge_box_id,
                    id_tag=input.id_tag,
                    connector_id=input.connector_id,
                    origin="remote",
                    auth_status=input.auth_status,
                    created_at=now,
                    expires_at=now + timedelta(seconds=input.expires_in_s),
                )
                .returning(t.c.id)
            )
        assert intent_id is not None
        return RecordSessionIntentResult(intent_id=intent_id, created=True)

    @activity.defn(name=ACTIVITY_LOAD_TARIFF)
    @data_errors_are_final
    async def load_tariff(self, input: LoadTariffInput) -> TariffTerms:
        """The terms the session is billed under: the charger's tariff (else the default
        tariff), in the version valid when the session started. The version is recorded on the
        session's read model the first time and answered from there ever after, so a price
        change never reaches a session that started before it (docs/fleet.md, "Tariffs")."""
        workflow_id = activity.info().workflow_id or ""
        async with self._sessions() as db, db.begin():
            version = await _recorded_version(db, workflow_id)
            if version is None:
                tariff_id = await db.scalar(
                    select(Charger.tariff_id).where(Charger.charge_box_id == input.charge_box_id)
                )
                if tariff_id is None or await db.get(Tariff, tariff_id) is None:
                    tariff_id = await db.scalar(
                        select(Tariff.id)
                        .where(Tariff.is_default.is_(True))
                        .order_by(Tariff.id)
                        .limit(1)
                    )
                if tariff_id is None:
                    raise ApplicationError(
                        "no tariff for the charger and no default tariff",
                        type="NoTariff",
                        non_retryable=True,
                    )
                started_at = await _session_started_at(db, workflow_id)
                version = await version_at(db, tariff_id, started_at)
                assert version is not None  # the tariff exists: it has a version 1 at least
                await db.execute(
                    update(ChargingSession)
                    .where(
                        ChargingSession.workflow_id == workflow_id,
                        ChargingSession.tariff_version_id.is_(None),
                    )
                    .values(tariff_version_id=version.id)
                )
            code = await db.scalar(select(Tariff.code).where(Tariff.id == version.tariff_id))
        return TariffTerms(
            code=code or "unknown",
            currency=version.currency,
            price_per_kwh_minor=version.price_per_kwh_minor,
            price_per_minute_minor=version.price_per_minute_minor,
            price_per_session_minor=version.price_per_session_minor,
            session_fee_min_energy_wh=version.session_fee_min_energy_wh,
            session_fee_min_duration_s=version.session_fee_min_duration_s,
        )


_EVENT_COLUMNS = (
    "workflow_id",
    "state",
    "charge_box_id",
    "connector_id",
    "transaction_id",
    "user_id",
    "energy_wh",
    "cost_minor",
    "currency",
    "started_at",
    "stopped_at",
    "end_reason",
    "lago_invoice_id",
)


async def _announce(db: AsyncSession, after: Row[Any], progress_interval_s: float) -> None:
    """Record the platform events the read model write made true (domain/session_events.py).
    ``after``: the row written, with the row as it was (``before_*``, NULL when it is new) and
    the session's last event time."""
    old = (
        RowFacts(after.before_state, after.before_energy_wh, after.before_started_at)
        if after.before_state is not None
        else None
    )
    new = RowFacts(after.state, after.energy_wh, after.started_at)
    progress_due = True
    if old is not None and old.state == new.state and old.energy_wh != new.energy_wh:
        # Meter progress alone: throttled by the last event of this session.
        last = after.last_event_at
        progress_due = (
            last is None or (datetime.now(UTC) - last).total_seconds() >= progress_interval_s
        )
    types = session_events(old, new, progress_due=progress_due)
    if not types:
        return
    payload = session_payload(after, previous_state=old.state if old else None)
    site = select(Charger.site_id).where(Charger.charge_box_id == after.charge_box_id)
    for type in types:
        await record_event(
            db,
            type,
            payload,
            subject=after.workflow_id,
            charge_box_id=after.charge_box_id,
            site_id=site.scalar_subquery(),
            user_id=after.user_id,
        )


def session_payload(row: Row[Any], *, previous_state: str | None) -> dict[str, Any]:
    """The flat payload of every ``session.*`` event (never the card's id tag)."""
    return {
        "session_id": row.workflow_id,
        "user_id": row.user_id,
        "state": row.state,
        "previous_state": previous_state,
        "charge_box_id": row.charge_box_id,
        "connector_id": row.connector_id,
        "transaction_id": row.transaction_id,
        "energy_wh": row.energy_wh,
        "amount_minor": row.cost_minor,
        "currency": row.currency,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
        "stop_reason": row.end_reason,
        "lago_invoice_id": row.lago_invoice_id,
    }


async def _recorded_version(db: AsyncSession, workflow_id: str) -> TariffVersion | None:
    version_id = await db.scalar(
        select(ChargingSession.tariff_version_id).where(ChargingSession.workflow_id == workflow_id)
    )
    return await db.get(TariffVersion, version_id) if version_id is not None else None


async def _session_started_at(db: AsyncSession, workflow_id: str) -> datetime:
    """When the session started: its read model, else its first transaction, else now."""
    started = await db.scalar(
        select(ChargingSession.started_at).where(ChargingSession.workflow_id == workflow_id)
    )
    if started is None:
        started = await db.scalar(
            select(func.min(Transaction.started_at)).where(Transaction.workflow_id == workflow_id)
        )
    return started or datetime.now(UTC)


async def _claim(db: AsyncSession, input: PreAuthorizeCardInput, user_id: str | None) -> None:
    """Write the session's read-model row as ``pre_authorized`` (inside the card's lock)."""
    statement = insert(ChargingSession).values(
        workflow_id=input.workflow_id,
        state=Phase.PRE_AUTHORIZED.value,
        charge_box_id=input.charge_box_id,
        id_tag=input.id_tag,
        user_id=user_id,
        updated_at=func.now(),
    )
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=[ChargingSession.workflow_id],
            set_={
                "state": Phase.PRE_AUTHORIZED.value,
                "user_id": func.coalesce(ChargingSession.user_id, statement.excluded.user_id),
                "updated_at": func.now(),
            },
            where=ChargingSession.state == Phase.REQUESTED.value,
        )
    )


__all__ = [
    "ChargerLiveness",
    "ChargerLivenessInput",
    "ChargerRoute",
    "ChargerRouteInput",
    "LoadTariffInput",
    "PreAuthorizeCardInput",
    "PreAuthorizeCardResult",
    "ReadModelWritten",
    "RecordSessionIntentInput",
    "RecordSessionIntentResult",
    "SessionActivities",
    "SessionReadModel",
]

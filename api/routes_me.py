"""The signed-in driver: who am I, my EV cards, report a card lost (also an operator's, through
:func:`report_card_lost`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from temporalio.service import RPCError

from api.authz import CurrentUser, LiveUser, Principal, not_found_unless
from api.deps import AppState, State
from api.identity_views import CardOut, owned_card, owned_cards
from api.services import Services
from db.audit import add_audit, write_audit
from db.billing_models import AUDIENCE_OPERATORS
from db.events import record_event
from db.models import ChargingSession, EvCard, UserMapping
from db.notifications import CARD_LOST as CARD_LOST_NOTICE
from db.notifications import notify
from domain.events import CARD_LOST
from domain.ids import tag_fingerprint
from domain.session import TRANSACTION_PHASES
from services import local_lists
from services.context import ServiceContext
from workflows.messages import UPDATE_REMOTE_STOP, RemoteStopInput, RemoteStopResult

log = logging.getLogger("polaris.api.me")

router = APIRouter(prefix="/api/v1/me", tags=["me"])

OPERATORS = AUDIENCE_OPERATORS  # the operators' inbox (docs/notifications.md)


class MeOut(BaseModel):
    user_id: str
    email: str | None
    role: str
    impersonated_by: str | None
    cards: list[CardOut]


class StopOutcome(BaseModel):
    workflow_id: str
    accepted: bool
    message: str | None = None


class ReportLostOut(BaseModel):
    card: CardOut
    already_lost: bool
    stopped_sessions: list[StopOutcome] = Field(default_factory=list)


@router.get("", response_model=MeOut)
async def me(user: CurrentUser, state: State) -> MeOut:
    async with state.sessions() as db:
        rows = (await db.execute(owned_cards(user.user_id))).all()
    return MeOut(
        user_id=user.user_id,
        email=user.email,
        role=user.role,
        impersonated_by=user.impersonated_by,
        cards=[CardOut.of(card, mapping) for card, mapping in rows],
    )


@router.get("/cards", response_model=list[CardOut])
async def my_cards(user: CurrentUser, state: State) -> list[CardOut]:
    async with state.sessions() as db:
        rows = (await db.execute(owned_cards(user.user_id))).all()
    return [CardOut.of(card, mapping) for card, mapping in rows]


@router.get("/cards/{id_tag}", response_model=CardOut)
async def my_card(id_tag: str, user: CurrentUser, state: State) -> CardOut:
    async with state.sessions() as db:
        found = await owned_card(db, user.user_id, id_tag)
    not_found_unless(found, "card")
    assert found is not None
    return CardOut.of(*found)


@router.post("/cards/{id_tag}/report-lost", response_model=ReportLostOut)
async def report_lost(id_tag: str, user: LiveUser, state: State, ctx: Services) -> ReportLostOut:
    """Deactivate at once (irreversible by the driver), stop a running session, tell operators."""
    return await report_card_lost(state, ctx, user, id_tag, owner=user.user_id)


async def report_card_lost(
    state: AppState, ctx: ServiceContext, who: Principal, id_tag: str, *, owner: str | None
) -> ReportLostOut:
    """The card's holder (``owner``: only their own card, else 404) or an operator (``owner``
    None: any card, linked or not) reports it lost."""
    now = datetime.now(UTC)
    mapping: UserMapping | None
    async with state.sessions() as db, db.begin():
        if owner is not None:
            found = await owned_card(db, owner, id_tag, for_update=True)
            not_found_unless(found, "card")
            assert found is not None
            card, mapping = found
        else:
            any_card = await db.get(EvCard, id_tag, with_for_update=True)
            not_found_unless(any_card, "card")
            assert any_card is not None
            card = any_card
            mapping = await db.scalar(
                select(UserMapping).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
            )
        holder = mapping.user_id if mapping is not None else None
        already = card.lost_at is not None
        if not already:
            card.lost_at = now
            card.is_active = False
            add_audit(
                db,
                who.actor,
                "card.lost",
                subject=id_tag,
                source=who.source,
                details={"user_id": holder},
            )
            await notify(
                db,
                audience="operators",
                kind=CARD_LOST_NOTICE,
                dedupe_key=f"card-lost:{id_tag}:{int(now.timestamp())}",
                title=f"EV card {id_tag} was reported lost",
                data={
                    "id_tag": id_tag,
                    "user_id": holder,
                    "public_id": mapping.public_id if mapping is not None else None,
                    "email": mapping.email if mapping is not None else None,
                },
            )
            if mapping is not None:
                lost: dict[str, Any] = {
                    "card_public_id": mapping.public_id,
                    "user_id": mapping.user_id,
                    "lost_at": now.isoformat().replace("+00:00", "Z"),
                }
                key = state.settings.log_tag_key
                if key is not None:
                    lost["card"] = tag_fingerprint(id_tag, key.get_secret_value().encode())
                await record_event(
                    db,
                    CARD_LOST,
                    lost,
                    subject=f"card:{mapping.public_id}",
                    user_id=mapping.user_id,
                )
        running = (
            await db.scalars(
                select(ChargingSession.workflow_id).where(
                    ChargingSession.id_tag == id_tag,
                    ChargingSession.state.in_([p.value for p in TRANSACTION_PHASES]),
                )
            )
        ).all()
        out = CardOut.of(card, mapping)
    if not already:
        # The card, now Blocked, to every charger's local list, and every cache cleared.
        await local_lists.card_lost(ctx, id_tag)
    stopped = [await _stop(state, workflow_id, who.actor) for workflow_id in running]
    if stopped:
        await write_audit(
            state.sessions,
            who.actor,
            "session.remote_stop",
            subject=id_tag,
            source=who.source,
            details={"reason": "card_lost", "sessions": [s.model_dump() for s in stopped]},
        )
    return ReportLostOut(card=out, already_lost=already, stopped_sessions=stopped)


async def _stop(state: AppState, workflow_id: str, actor: str) -> StopOutcome:
    try:
        client = await state.temporal()
        result = await client.get_workflow_handle(workflow_id).execute_update(
            UPDATE_REMOTE_STOP,
            RemoteStopInput(requested_by=actor, reason="card_lost"),
            result_type=RemoteStopResult,
        )
    except (RPCError, OSError, RuntimeError) as exc:
        log.warning("remote stop of %s after a lost card failed: %s", workflow_id, exc)
        return StopOutcome(workflow_id=workflow_id, accepted=False, message=str(exc)[:200])
    except Exception as exc:  # an update rejected by its validator (no transaction running)
        return StopOutcome(workflow_id=workflow_id, accepted=False, message=str(exc)[:200])
    return StopOutcome(workflow_id=workflow_id, accepted=result.accepted, message=result.message)

"""Operators: EV cards (create, read, update), link to a driver + Lago, unlink, reassign."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.identity import REASSIGN_REQUIRED, BillingMode, normalize_email
from api.authz import AdminUser, LiveAdmin
from api.deps import State
from api.errors import ApiError, NotFound
from api.identity_views import ID_TAG_PATTERN, CardOut, MappingOut
from api.services import Services
from db.audit import add_audit
from db.models import EvCard, UserMapping
from services import local_lists, reservations
from workflows.card_link import CardLinkInput, CardLinkResult, card_link_workflow_id

router = APIRouter(prefix="/api/v1/cards", tags=["cards"])

LINK_WAIT_S = 90.0


class CardIn(BaseModel):
    id_tag: str = Field(pattern=ID_TAG_PATTERN)
    parent_id_tag: str | None = Field(default=None, pattern=ID_TAG_PATTERN)
    label: str | None = Field(default=None, max_length=200)
    is_active: bool = True
    blocked: bool = False
    expires_at: datetime | None = None
    max_concurrent_sessions: int = Field(default=1, ge=1, le=10)


class CardPatch(BaseModel):
    parent_id_tag: str | None = Field(default=None, pattern=ID_TAG_PATTERN)
    label: str | None = Field(default=None, max_length=200)
    is_active: bool | None = None
    blocked: bool | None = None
    expires_at: datetime | None = None
    max_concurrent_sessions: int | None = Field(default=None, ge=1, le=10)


class CardDetail(CardOut):
    mappings: list[MappingOut] = Field(default_factory=list)
    children: list[str] = Field(default_factory=list)


class LinkIn(BaseModel):
    email: str = Field(pattern=r"^[^\s@]+@[^\s@]+\.[^\s@]+$", max_length=320)
    name: str | None = Field(default=None, max_length=200)
    billing_mode: BillingMode = "usage"
    plan_code: str | None = Field(default=None, max_length=100)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    # Reassigning a card linked to someone else needs this, else 409 REASSIGN_REQUIRED.
    confirm_reassign: bool = False
    invite: bool = True


class UnlinkOut(BaseModel):
    id_tag: str
    unlinked_mappings: list[int]
    cascaded_to: list[str]


def _check_parent(card_id: str, parent: str | None) -> None:
    if parent is not None and parent == card_id:
        raise ApiError(422, "VALIDATION_FAILED", "a card cannot be its own parent")


@router.get("", response_model=list[CardOut])
async def list_cards(
    _: AdminUser,
    state: State,
    q: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CardOut]:
    query = (
        select(EvCard, UserMapping)
        .outerjoin(UserMapping, (UserMapping.id_tag == EvCard.id_tag) & UserMapping.is_active)
        .order_by(EvCard.id_tag)
        .limit(limit)
        .offset(offset)
    )
    if q:
        query = query.where(EvCard.id_tag.ilike(f"%{q}%"))
    async with state.sessions() as db:
        rows = (await db.execute(query)).all()
    return [CardOut.of(card, mapping) for card, mapping in rows]


@router.post("", response_model=CardOut, status_code=201)
async def create_card(body: CardIn, admin: LiveAdmin, state: State, ctx: Services) -> CardOut:
    _check_parent(body.id_tag, body.parent_id_tag)
    out = await _create_card(body, admin, state)
    await local_lists.cards_changed(ctx, [body.id_tag])
    return out


async def _create_card(body: CardIn, admin: AdminUser, state: State) -> CardOut:
    async with state.sessions() as db, db.begin():
        if await db.get(EvCard, body.id_tag) is not None:
            raise ApiError(409, "CARD_EXISTS", f"an EV card {body.id_tag!r} exists already")
        if body.parent_id_tag and await db.get(EvCard, body.parent_id_tag) is None:
            raise ApiError(422, "VALIDATION_FAILED", "the parent card does not exist")
        card = EvCard(**body.model_dump())
        db.add(card)
        add_audit(
            db,
            admin.actor,
            "card.created",
            subject=body.id_tag,
            source=admin.source,
            details=body.model_dump(mode="json"),
        )
        await db.flush()
        await db.refresh(card)
        return CardOut.of(card)


@router.get("/{id_tag}", response_model=CardDetail)
async def get_card(id_tag: str, _: AdminUser, state: State) -> CardDetail:
    async with state.sessions() as db:
        card = await db.get(EvCard, id_tag)
        if card is None:
            raise NotFound("card")
        mappings = (
            await db.scalars(
                select(UserMapping).where(UserMapping.id_tag == id_tag).order_by(UserMapping.id)
            )
        ).all()
        children = (
            await db.scalars(select(EvCard.id_tag).where(EvCard.parent_id_tag == id_tag))
        ).all()
    active = next((m for m in mappings if m.is_active), None)
    return CardDetail(
        **CardOut.of(card, active).model_dump(),
        mappings=[MappingOut.of(m) for m in mappings],
        children=list(children),
    )


@router.patch("/{id_tag}", response_model=CardOut)
async def update_card(
    id_tag: str, body: CardPatch, admin: LiveAdmin, state: State, ctx: Services
) -> CardOut:
    changes = body.model_dump(exclude_unset=True)
    _check_parent(id_tag, changes.get("parent_id_tag"))
    out = await _update_card(id_tag, changes, body, admin, state)
    await local_lists.cards_changed(ctx, [id_tag])
    return out


async def _update_card(
    id_tag: str, changes: dict[str, object], body: CardPatch, admin: AdminUser, state: State
) -> CardOut:
    async with state.sessions() as db, db.begin():
        card = await db.get(EvCard, id_tag, with_for_update=True)
        if card is None:
            raise NotFound("card")
        parent = changes.get("parent_id_tag")
        if parent and await db.get(EvCard, parent) is None:
            raise ApiError(422, "VALIDATION_FAILED", "the parent card does not exist")
        for key, value in changes.items():
            setattr(card, key, value)
        add_audit(
            db,
            admin.actor,
            "card.updated",
            subject=id_tag,
            source=admin.source,
            details=body.model_dump(mode="json", exclude_unset=True),
        )
        mapping = await db.scalar(
            select(UserMapping).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
        return CardOut.of(card, mapping)


@router.post("/{id_tag}/link", response_model=CardLinkResult)
async def link_card(
    id_tag: str, body: LinkIn, admin: LiveAdmin, state: State, ctx: Services
) -> CardLinkResult:
    """Run the card-link saga and answer its outcome (compensated failures answer 502)."""
    async with state.sessions() as db:
        card = await db.get(EvCard, id_tag)
        if card is None:
            raise NotFound("card")
        if card.lost_at is not None:
            raise ApiError(409, "CARD_LOST", "a card reported lost cannot be linked")
        current = await db.scalar(
            select(UserMapping).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
    if (
        current is not None
        and normalize_email(current.email or "") != normalize_email(body.email)
        and not body.confirm_reassign
    ):
        raise _reassign_required(current.user_id)
    result = await _run_link(state, id_tag, body, admin.actor)
    if result.status == "refused":
        if result.error_type == REASSIGN_REQUIRED:
            raise _reassign_required(None)
        raise ApiError(409, "CARD_NOT_LINKABLE", result.error or "the card cannot be linked")
    if result.status == "compensated":
        raise ApiError(
            502,
            "CARD_LINK_FAILED",
            f"step {result.failed_step} failed; completed steps were undone",
            issues=[result.model_dump(mode="json")],
        )
    # The card has a driver now: Accepted on the chargers' lists.
    await local_lists.cards_changed(ctx, [id_tag])
    return result


def _reassign_required(user_id: str | None) -> ApiError:
    return ApiError(
        409,
        "REASSIGN_REQUIRED",
        "the card is linked to another driver; repeat with confirm_reassign=true to reassign it",
        issues=[{"path": ["confirm_reassign"], "message": "required", "user_id": user_id}],
    )


async def _run_link(state: State, id_tag: str, body: LinkIn, actor: str) -> CardLinkResult:
    try:
        client = await state.temporal()
        handle = await client.start_workflow(
            "CardLink",
            CardLinkInput(
                id_tag=id_tag,
                email=normalize_email(body.email),
                name=body.name,
                currency=body.currency,
                plan_code=body.plan_code,
                billing_mode=body.billing_mode,
                replace_existing=body.confirm_reassign,
                invite=body.invite,
                requested_by=actor,
            ),
            id=card_link_workflow_id(id_tag),
            task_queue=state.settings.temporal_task_queue,
            result_type=CardLinkResult,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except RPCError as exc:
        if "already" in str(exc).lower():
            raise ApiError(409, "LINK_IN_PROGRESS", "this card is being linked already") from exc
        raise ApiError(503, "UNAVAILABLE", "Temporal is not reachable") from exc
    except (OSError, RuntimeError) as exc:
        raise ApiError(503, "UNAVAILABLE", "Temporal is not reachable") from exc
    try:
        return await asyncio.wait_for(handle.result(), LINK_WAIT_S)
    except TimeoutError as exc:
        raise ApiError(504, "LINK_PENDING", f"still running as {handle.id}") from exc
    except WorkflowFailureError as exc:
        raise ApiError(502, "CARD_LINK_FAILED", str(exc.cause or exc)) from exc


@router.post("/{id_tag}/unlink", response_model=UnlinkOut)
async def unlink_card(id_tag: str, admin: LiveAdmin, state: State, ctx: Services) -> UnlinkOut:
    """Soft unlink (``is_active=false``), cascading to the card's child cards."""
    async with state.sessions() as db, db.begin():
        card = await db.get(EvCard, id_tag)
        if card is None:
            raise NotFound("card")
        children = list(
            (await db.scalars(select(EvCard.id_tag).where(EvCard.parent_id_tag == id_tag))).all()
        )
        unlinked = list(
            (
                await db.scalars(
                    update(UserMapping)
                    .where(UserMapping.id_tag.in_([id_tag, *children]), UserMapping.is_active)
                    .values(is_active=False)
                    .returning(UserMapping.id)
                )
            ).all()
        )
        if not unlinked:
            raise ApiError(409, "NOT_LINKED", "the card has no active link")
        add_audit(
            db,
            admin.actor,
            "card.unlinked",
            subject=id_tag,
            source=admin.source,
            details={"mappings": unlinked, "cascaded_to": children},
        )
    # A card nobody owns is Invalid on the chargers' lists.
    await local_lists.cards_changed(ctx, [id_tag, *children])
    await reservations.cancel_for_card(ctx, id_tag, "the card was unlinked from the account")
    return UnlinkOut(id_tag=id_tag, unlinked_mappings=unlinked, cascaded_to=children)

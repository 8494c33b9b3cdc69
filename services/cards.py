"""EV cards: create, read, change, link to a driver (the card-link saga), unlink.

The rules live here once; ``api/routes_cards.py`` and ``polaris cards`` are thin callers. After
each committed change the chargers' local lists are told
(:func:`services.local_lists.cards_changed`, which never raises): a new, changed or unlinked card
moves on every charger's list.

Errors (each a :class:`services.errors.ServiceError` with its stable code)::

    Conflict 409 ── CardExists (CARD_EXISTS), CardLost (CARD_LOST), ReassignRequired
                    (REASSIGN_REQUIRED), CardNotLinkable (CARD_NOT_LINKABLE), LinkInProgress
                    (LINK_IN_PROGRESS), NotLinked (NOT_LINKED)
    LinkFailed 502 (CARD_LINK_FAILED) — a saga step failed (compensated: issues hold its result)
    LinkPending 504 (LINK_PENDING)    — no answer in time; the saga goes on
    Unavailable 503                   — Temporal is not reachable
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.identity import REASSIGN_REQUIRED, BillingMode, normalize_email
from db.audit import add_audit
from db.models import EvCard, UserMapping
from services import local_lists, reservations
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, NotFound, ServiceError, Unavailable
from services.validation import invalid
from workflows.card_link import (
    CARD_LINK_WORKFLOW,
    CardLinkInput,
    CardLinkResult,
    card_link_workflow_id,
)

ID_TAG_PATTERN = r"^[\x21-\x7e]{1,20}$"  # printable ASCII, OCPP 1.6 CiString20

# How long a caller waits for the card-link saga's answer; past it the saga goes on.
LINK_WAIT_S = 90.0


class CardExists(Conflict):
    code = "CARD_EXISTS"


class CardLost(Conflict):
    code = "CARD_LOST"


class ReassignRequired(Conflict):
    code = "REASSIGN_REQUIRED"


class CardNotLinkable(Conflict):
    code = "CARD_NOT_LINKABLE"


class LinkInProgress(Conflict):
    code = "LINK_IN_PROGRESS"


class NotLinked(Conflict):
    code = "NOT_LINKED"


class LinkFailed(ServiceError):
    status = 502
    code = "CARD_LINK_FAILED"


class LinkPending(ServiceError):
    status = 504
    code = "LINK_PENDING"


# -- views --------------------------------------------------------------------------------------


class CardOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id_tag: str
    parent_id_tag: str | None
    label: str | None
    is_active: bool
    blocked: bool
    expires_at: datetime | None
    lost_at: datetime | None
    max_concurrent_sessions: int
    created_at: datetime | None
    user_id: str | None = None
    email: str | None = None
    public_id: str | None = None

    @classmethod
    def of(cls, card: EvCard, mapping: UserMapping | None = None) -> CardOut:
        out = cls.model_validate(card)
        if mapping is None:
            return out
        return out.model_copy(
            update={
                "user_id": mapping.user_id,
                "email": mapping.email,
                "public_id": mapping.public_id,
            }
        )


class MappingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: str
    public_id: str
    email: str | None
    id_tag: str
    lago_customer_external_id: str | None
    lago_subscription_external_id: str | None
    billing_mode: str
    is_active: bool
    created_at: datetime | None

    @classmethod
    def of(cls, m: UserMapping) -> MappingOut:
        return cls.model_validate(m)


class CardDetail(CardOut):
    mappings: list[MappingOut] = Field(default_factory=list)
    children: list[str] = Field(default_factory=list)


class UnlinkOut(BaseModel):
    id_tag: str
    unlinked_mappings: list[int]
    cascaded_to: list[str]


# -- inputs -------------------------------------------------------------------------------------


class CardIn(BaseModel):
    id_tag: str = Field(pattern=ID_TAG_PATTERN)
    parent_id_tag: str | None = Field(default=None, pattern=ID_TAG_PATTERN)
    label: str | None = Field(default=None, max_length=200)
    is_active: bool = True
    blocked: bool = False
    expires_at: datetime | None = None
    max_concurrent_sessions: int = Field(default=1, ge=1, le=10)


class CardPatch(BaseModel):
    """Fields left out are kept."""

    parent_id_tag: str | None = Field(default=None, pattern=ID_TAG_PATTERN)
    label: str | None = Field(default=None, max_length=200)
    is_active: bool | None = None
    blocked: bool | None = None
    expires_at: datetime | None = None
    max_concurrent_sessions: int | None = Field(default=None, ge=1, le=10)


class LinkIn(BaseModel):
    email: str = Field(pattern=r"^[^\s@]+@[^\s@]+\.[^\s@]+$", max_length=320)
    name: str | None = Field(default=None, max_length=200)
    billing_mode: BillingMode = "usage"
    plan_code: str | None = Field(default=None, max_length=100)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    # Reassigning a card linked to someone else needs this, else 409 REASSIGN_REQUIRED.
    confirm_reassign: bool = False
    invite: bool = True


def _check_parent(card_id: str, parent: str | None) -> None:
    if parent is not None and parent == card_id:
        raise invalid("parent_id_tag", "a card cannot be its own parent")


def _missing_parent() -> ServiceError:
    return invalid("parent_id_tag", "the parent card does not exist")


# -- reads --------------------------------------------------------------------------------------


async def list_cards(
    ctx: ServiceContext, *, q: str | None = None, limit: int = 100, offset: int = 0
) -> list[CardOut]:
    """Cards by idTag (``q``: a part of it), each with its active driver if any."""
    query = (
        select(EvCard, UserMapping)
        .outerjoin(UserMapping, (UserMapping.id_tag == EvCard.id_tag) & UserMapping.is_active)
        .order_by(EvCard.id_tag)
        .limit(limit)
        .offset(offset)
    )
    if q:
        query = query.where(EvCard.id_tag.ilike(f"%{q}%"))
    async with ctx.sessions() as db:
        rows = (await db.execute(query)).all()
    return [CardOut.of(card, mapping) for card, mapping in rows]


async def show_card(ctx: ServiceContext, id_tag: str) -> CardDetail:
    """One card with every mapping it ever had (the active one first in ``user_id``/``email``)
    and its child cards."""
    async with ctx.sessions() as db:
        card = await db.get(EvCard, id_tag)
        if card is None:
            raise NotFound("card not found")
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


# -- changes ------------------------------------------------------------------------------------


async def add_card(ctx: ServiceContext, actor: Actor, new: CardIn) -> CardOut:
    _check_parent(new.id_tag, new.parent_id_tag)
    async with ctx.sessions() as db, db.begin():
        if await db.get(EvCard, new.id_tag) is not None:
            raise CardExists(f"an EV card {new.id_tag!r} exists already")
        if new.parent_id_tag and await db.get(EvCard, new.parent_id_tag) is None:
            raise _missing_parent()
        card = EvCard(**new.model_dump())
        db.add(card)
        add_audit(
            db,
            actor.id,
            "card.created",
            subject=new.id_tag,
            source=actor.source,
            details=new.model_dump(mode="json"),
        )
        await db.flush()
        await db.refresh(card)
        out = CardOut.of(card)
    await local_lists.cards_changed(ctx, [new.id_tag])
    return out


async def set_card(ctx: ServiceContext, actor: Actor, id_tag: str, patch: CardPatch) -> CardOut:
    changes = patch.model_dump(exclude_unset=True)
    _check_parent(id_tag, changes.get("parent_id_tag"))
    async with ctx.sessions() as db, db.begin():
        card = await db.get(EvCard, id_tag, with_for_update=True)
        if card is None:
            raise NotFound("card not found")
        parent = changes.get("parent_id_tag")
        if parent and await db.get(EvCard, parent) is None:
            raise _missing_parent()
        for key, value in changes.items():
            setattr(card, key, value)
        add_audit(
            db,
            actor.id,
            "card.updated",
            subject=id_tag,
            source=actor.source,
            details=patch.model_dump(mode="json", exclude_unset=True),
        )
        mapping = await db.scalar(
            select(UserMapping).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
        out = CardOut.of(card, mapping)
    await local_lists.cards_changed(ctx, [id_tag])
    return out


async def link_card(ctx: ServiceContext, actor: Actor, id_tag: str, link: LinkIn) -> CardLinkResult:
    """Run the card-link saga and answer its outcome (a compensated failure raises
    :class:`LinkFailed` with the saga's result as its one issue)."""
    async with ctx.sessions() as db:
        card = await db.get(EvCard, id_tag)
        if card is None:
            raise NotFound("card not found")
        if card.lost_at is not None:
            raise CardLost("a card reported lost cannot be linked")
        current = await db.scalar(
            select(UserMapping).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
    if (
        current is not None
        and normalize_email(current.email or "") != normalize_email(link.email)
        and not link.confirm_reassign
    ):
        raise _reassign_required(current.user_id)
    result = await _run_link(ctx, id_tag, link, actor.id)
    if result.status == "refused":
        if result.error_type == REASSIGN_REQUIRED:
            raise _reassign_required(None)
        raise CardNotLinkable(result.error or "the card cannot be linked")
    if result.status == "compensated":
        raise LinkFailed(
            f"step {result.failed_step} failed; completed steps were undone",
            issues=[result.model_dump(mode="json")],
        )
    # The card has a driver now: Accepted on the chargers' lists.
    await local_lists.cards_changed(ctx, [id_tag])
    return result


def _reassign_required(user_id: str | None) -> ReassignRequired:
    return ReassignRequired(
        "the card is linked to another driver; repeat with confirm_reassign=true to reassign it",
        issues=[{"path": ["confirm_reassign"], "message": "required", "user_id": user_id}],
    )


async def _run_link(
    ctx: ServiceContext, id_tag: str, link: LinkIn, requested_by: str
) -> CardLinkResult:
    try:
        client = await ctx.temporal()
        handle = await client.start_workflow(
            CARD_LINK_WORKFLOW,
            CardLinkInput(
                id_tag=id_tag,
                email=normalize_email(link.email),
                name=link.name,
                currency=link.currency,
                plan_code=link.plan_code,
                billing_mode=link.billing_mode,
                replace_existing=link.confirm_reassign,
                invite=link.invite,
                requested_by=requested_by,
            ),
            id=card_link_workflow_id(id_tag),
            task_queue=ctx.settings.temporal_task_queue,
            result_type=CardLinkResult,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except RPCError as exc:
        if "already" in str(exc).lower():
            raise LinkInProgress("this card is being linked already") from exc
        raise Unavailable("Temporal is not reachable") from exc
    except (OSError, RuntimeError) as exc:
        raise Unavailable("Temporal is not reachable") from exc
    try:
        return await asyncio.wait_for(handle.result(), LINK_WAIT_S)
    except TimeoutError as exc:
        raise LinkPending(f"still running as {handle.id}") from exc
    except WorkflowFailureError as exc:
        raise LinkFailed(str(exc.cause or exc)) from exc


class LinkProgress(BaseModel):
    """The newest card-link saga of a card: whether it still runs, and its steps so far."""

    running: bool
    workflow_status: str
    progress: CardLinkResult


# A query needs a worker: without one, the answer is "unavailable" after this long.
PROGRESS_WAIT_S = 5.0


async def link_progress(ctx: ServiceContext, id_tag: str) -> LinkProgress:
    """The card-link saga's ``progress`` query: the steps completed (and compensated) so far."""
    async with ctx.sessions() as db:
        if await db.get(EvCard, id_tag) is None:
            raise NotFound("card not found")
    try:
        client = await ctx.temporal()
        handle = client.get_workflow_handle(card_link_workflow_id(id_tag))
        described = await asyncio.wait_for(handle.describe(), PROGRESS_WAIT_S)
        progress = await asyncio.wait_for(
            handle.query("progress", result_type=CardLinkResult), PROGRESS_WAIT_S
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound("no link of this card has run") from exc
        raise Unavailable("Temporal is not reachable") from exc
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise Unavailable("Temporal is not reachable") from exc
    status = described.status
    return LinkProgress(
        running=status == WorkflowExecutionStatus.RUNNING,
        workflow_status=status.name.lower() if status is not None else "unknown",
        progress=progress,
    )


async def unlink_card(ctx: ServiceContext, actor: Actor, id_tag: str) -> UnlinkOut:
    """Soft unlink (``is_active=false``), cascading to the card's child cards."""
    async with ctx.sessions() as db, db.begin():
        card = await db.get(EvCard, id_tag)
        if card is None:
            raise NotFound("card not found")
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
            raise NotLinked("the card has no active link")
        add_audit(
            db,
            actor.id,
            "card.unlinked",
            subject=id_tag,
            source=actor.source,
            details={"mappings": unlinked, "cascaded_to": children},
        )
    # A card nobody owns is Invalid on the chargers' lists.
    await local_lists.cards_changed(ctx, [id_tag, *children])
    await reservations.cancel_for_card(ctx, id_tag, "the card was unlinked from the account")
    # Future reservations are cancelled by the reservation work (not part of this change).
    return UnlinkOut(id_tag=id_tag, unlinked_mappings=unlinked, cascaded_to=children)


__all__ = [
    "ID_TAG_PATTERN",
    "LINK_WAIT_S",
    "CardDetail",
    "CardExists",
    "CardIn",
    "CardLost",
    "CardNotLinkable",
    "CardOut",
    "CardPatch",
    "LinkFailed",
    "LinkIn",
    "LinkInProgress",
    "LinkPending",
    "LinkProgress",
    "MappingOut",
    "NotLinked",
    "ReassignRequired",
    "UnlinkOut",
    "add_card",
    "link_card",
    "list_cards",
    "set_card",
    "show_card",
    "unlink_card",
]

"""Operators: EV cards (create, read, update), link to a driver + Lago (and watch the link saga),
unlink, reassign, report lost.

Admin only (changes live-checked and audited); thin over :mod:`services.cards`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.authz import AdminUser, LiveAdmin
from api.deps import State
from api.routes_me import ReportLostOut, report_card_lost
from api.services import Services, actor_of
from services import cards
from services.cards import (
    CardDetail,
    CardIn,
    CardOut,
    CardPatch,
    LinkIn,
    LinkProgress,
    UnlinkOut,
)
from workflows.card_link import CardLinkResult

router = APIRouter(prefix="/api/v1/cards", tags=["cards"])


@router.get("", response_model=list[CardOut])
async def list_cards(
    _: AdminUser,
    ctx: Services,
    q: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CardOut]:
    return await cards.list_cards(ctx, q=q, limit=limit, offset=offset)


@router.post("", response_model=CardOut, status_code=201)
async def create_card(body: CardIn, admin: LiveAdmin, ctx: Services) -> CardOut:
    return await cards.add_card(ctx, actor_of(admin), body)


@router.get("/{id_tag}", response_model=CardDetail)
async def get_card(id_tag: str, _: AdminUser, ctx: Services) -> CardDetail:
    return await cards.show_card(ctx, id_tag)


@router.patch("/{id_tag}", response_model=CardOut)
async def update_card(id_tag: str, body: CardPatch, admin: LiveAdmin, ctx: Services) -> CardOut:
    return await cards.set_card(ctx, actor_of(admin), id_tag, body)


@router.post("/{id_tag}/link", response_model=CardLinkResult)
async def link_card(id_tag: str, body: LinkIn, admin: LiveAdmin, ctx: Services) -> CardLinkResult:
    """Run the card-link saga and answer its outcome (compensated failures answer 502)."""
    return await cards.link_card(ctx, actor_of(admin), id_tag, body)


@router.post("/{id_tag}/unlink", response_model=UnlinkOut)
async def unlink_card(id_tag: str, admin: LiveAdmin, ctx: Services) -> UnlinkOut:
    """Soft unlink (``is_active=false``), cascading to the card's child cards."""
    return await cards.unlink_card(ctx, actor_of(admin), id_tag)


@router.get("/{id_tag}/link", response_model=LinkProgress)
async def link_progress(id_tag: str, _: AdminUser, ctx: Services) -> LinkProgress:
    """The newest link saga of the card: its steps so far (404 when none has run)."""
    return await cards.link_progress(ctx, id_tag)


@router.post("/{id_tag}/report-lost", response_model=ReportLostOut)
async def report_lost(id_tag: str, admin: LiveAdmin, state: State, ctx: Services) -> ReportLostOut:
    """As a driver's report: deactivated at once, Blocked on the chargers, a running session
    stopped, the operators told."""
    return await report_card_lost(state, ctx, admin, id_tag, owner=None)

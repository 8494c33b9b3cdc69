"""Response models and ownership-scoped queries shared by the identity routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditLog, ChargingSession, EvCard, UserMapping

# The card views are the card service's own; re-exported for the identity routes.
from services.cards import ID_TAG_PATTERN, CardOut, MappingOut


class Page(BaseModel):
    limit: int
    offset: int


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    workflow_id: str
    state: str
    charge_box_id: str
    connector_id: int | None
    id_tag: str | None
    transaction_id: int | None
    user_id: str | None = None
    energy_wh: int
    cost_minor: int
    currency: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    end_reason: str | None
    # Why the session needs an operator's eye: closed by the platform, refused at start, ...
    flags: list[str] = Field(default_factory=list)
    # The tariff version the session is billed under (code, version, valid_from, prices): only
    # in the operators' session detail; None until the session is first priced.
    tariff: dict[str, Any] | None = None
    # The idle fee line (services/idle_fees.py): only in the operators' session detail; None
    # while there is none.
    idle_fee: dict[str, Any] | None = None

    @classmethod
    def of(cls, s: ChargingSession, *, with_user: bool = False) -> SessionOut:
        out = cls.model_validate(s)
        return out if with_user else out.model_copy(update={"user_id": None})


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    source: str | None
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, row: AuditLog) -> AuditOut:
        return cls.model_validate(row)


# -- ownership ----------------------------------------------------------------------------------


def owned_cards(user_id: str) -> Select[EvCard, UserMapping]:
    """The caller's cards: those with an active mapping to them."""
    return (
        select(EvCard, UserMapping)
        .join(UserMapping, UserMapping.id_tag == EvCard.id_tag)
        .where(UserMapping.user_id == user_id, UserMapping.is_active)
        .order_by(EvCard.created_at, EvCard.id_tag)
    )


async def owned_card(
    db: AsyncSession, user_id: str, id_tag: str, *, for_update: bool = False
) -> tuple[EvCard, UserMapping] | None:
    query = owned_cards(user_id).where(EvCard.id_tag == id_tag)
    if for_update:
        query = query.with_for_update(of=EvCard)
    row = (await db.execute(query)).first()
    return (row[0], row[1]) if row else None


def owned_sessions(user_id: str) -> Select[ChargingSession]:
    """The caller's sessions: those whose owner, frozen when the session started, is them.

    Never "sessions on a card they hold now": a card handed to someone else would take its
    previous holder's sessions along.
    """
    return select(ChargingSession).where(ChargingSession.user_id == user_id)


__all__ = [
    "ID_TAG_PATTERN",
    "AuditOut",
    "CardOut",
    "MappingOut",
    "SessionOut",
    "owned_card",
    "owned_cards",
    "owned_sessions",
]

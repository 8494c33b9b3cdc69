"""The local authorization decision, from PostgreSQL only, in a few milliseconds.

It answers what the gateway can know without Temporal: is the card known, active, not blocked,
not expired, not reported lost, is its parent (meta-card) fine, is it mapped to an active
account, is it below its concurrent-session limit. The workflow's ``pre_authorize`` may only
tighten this decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import EvCard, Transaction, UserMapping
from workflows.messages import AuthorizationStatus


@dataclass(frozen=True, slots=True)
class LocalDecision:
    status: AuthorizationStatus
    reason: str
    known: bool
    parent_id_tag: str | None = None
    expiry_date: datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"


def _card_problem(card: EvCard, now: datetime) -> tuple[AuthorizationStatus, str] | None:
    if card.lost_at is not None:
        return "Blocked", "card_lost"
    if not card.is_active:
        return "Blocked", "card_inactive"
    if card.blocked:
        return "Blocked", "card_blocked"
    if card.expires_at is not None and card.expires_at <= now:
        return "Expired", "card_expired"
    return None


async def decide(
    session: AsyncSession, id_tag: str, now: datetime, *, check_concurrency: bool = True
) -> LocalDecision:
    card = await session.get(EvCard, id_tag)
    if card is None:
        return LocalDecision("Invalid", "unknown_card", known=False)
    problem = _card_problem(card, now)
    if problem is not None:
        return LocalDecision(problem[0], problem[1], known=True, parent_id_tag=card.parent_id_tag)
    if card.parent_id_tag is not None:
        parent = await session.get(EvCard, card.parent_id_tag)
        if parent is None:
            return LocalDecision("Invalid", "parent_unknown", known=True)
        parent_problem = _card_problem(parent, now)
        if parent_problem is not None:
            return LocalDecision(
                parent_problem[0], "parent_" + parent_problem[1], known=True,
                parent_id_tag=card.parent_id_tag,
            )
    mapping = await session.scalar(
        select(UserMapping.id).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
    )
    if mapping is None:
        return LocalDecision("Invalid", "no_active_mapping", known=True,
                             parent_id_tag=card.parent_id_tag)
    if check_concurrency:
        open_count = await session.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(Transaction.id_tag == id_tag, Transaction.stopped_at.is_(None))
        )
        if (open_count or 0) >= card.max_concurrent_sessions:
            return LocalDecision("ConcurrentTx", "concurrent_limit", known=True,
                                 parent_id_tag=card.parent_id_tag)
    return LocalDecision(
        "Accepted", "ok", known=True, parent_id_tag=card.parent_id_tag, expiry_date=card.expires_at
    )

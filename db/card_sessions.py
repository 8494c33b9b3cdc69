"""A card's open sessions, counted the same way everywhere, under one per-card lock.

The concurrent-session limit (``ev_cards.max_concurrent_sessions``) is checked in three places:
the gateway's local decision (Authorize), the workflow's pre-authorization and StartTransaction.
Each takes :func:`lock_card` (a transaction-scoped PostgreSQL advisory lock keyed on the idTag)
before it counts, and keeps it until its own claim is committed (pre-authorization writes the
session's read-model row as ``pre_authorized``; StartTransaction writes the journal row). So two
taps or starts of one card on two chargers are decided one after the other: the second sees the
first.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    and_,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import ChargingSession, EvCard, Transaction, UserMapping
from domain.session import OPEN_PHASES

OPEN_STATES = sorted(phase.value for phase in OPEN_PHASES)


def card_lock_key(id_tag: str) -> str:
    """The advisory lock key of a card (``pg_advisory_xact_lock(hashtext(key))``)."""
    return f"card:{id_tag}"


async def lock_card(db: AsyncSession, id_tag: str) -> None:
    """Serialise every limit decision for this card until the caller's transaction ends."""
    await db.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": card_lock_key(id_tag)}
    )


def _transaction_over() -> ColumnElement[bool]:
    return or_(Transaction.stopped_at.is_not(None), Transaction.closed_at.is_not(None))


def open_sessions_count(id_tag: str, exclude_workflow_id: str | None = None) -> ScalarSelect[int]:
    """How many open sessions the card has, not counting ``exclude_workflow_id`` (the one being
    decided), as a scalar subquery (asked in the same statement as the other facts about the
    card, :func:`card_facts`: one round trip).

    A session counts when its read model is open (pre-authorized or running) and none of its
    transactions is over in the journal (stopped, or closed by the platform: the workflow may not
    have caught up yet), or when the journal has a transaction of the card that is neither
    stopped nor closed and whose session is not known to be finished.
    """
    exclude = exclude_workflow_id or ""
    journal_over = exists().where(
        and_(Transaction.workflow_id == ChargingSession.workflow_id, _transaction_over())
    )
    from_read_model = select(ChargingSession.workflow_id.label("wid")).where(
        ChargingSession.id_tag == id_tag,
        ChargingSession.state.in_(OPEN_STATES),
        ChargingSession.workflow_id != exclude,
        not_(journal_over),
    )
    session_finished = exists().where(
        and_(
            ChargingSession.workflow_id == Transaction.workflow_id,
            not_(ChargingSession.state.in_(OPEN_STATES)),
        )
    )
    from_journal = select(Transaction.workflow_id.label("wid")).where(
        Transaction.id_tag == id_tag,
        Transaction.stopped_at.is_(None),
        Transaction.closed_at.is_(None),
        Transaction.workflow_id != exclude,
        not_(session_finished),
    )
    both = union(from_read_model, from_journal).subquery()
    return select(func.count(func.distinct(both.c.wid))).select_from(both).scalar_subquery()


class CardFactsRow(NamedTuple):
    card: EvCard
    parent: EvCard | None
    # The active mapping's account and Lago customer, if the card is mapped.
    user_id: str | None
    lago_customer_external_id: str | None
    # Other open sessions of the card (0 when not counted).
    open_sessions: int


async def card_facts(
    db: AsyncSession,
    id_tag: str,
    *,
    count_sessions: bool = True,
    exclude_workflow_id: str | None = None,
) -> CardFactsRow | None:
    """Everything a limit decision reads about a card, in one round trip: the card, its parent,
    its active mapping and (``count_sessions``) its other open sessions. None: unknown card.
    Take :func:`lock_card` first, in its own statement: a statement's snapshot is taken when it
    starts, so a count in the locking statement would not see what the previous holder
    committed."""
    parent_card = aliased(EvCard)
    mapping = (
        select(UserMapping.user_id, UserMapping.lago_customer_external_id)
        .where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        .limit(1)
        .subquery()
    )
    row = (
        await db.execute(
            select(
                EvCard,
                parent_card,
                mapping.c.user_id,
                mapping.c.lago_customer_external_id,
                open_sessions_count(id_tag, exclude_workflow_id) if count_sessions else literal(0),
            )
            # ev_cards.parent_id_tag is a foreign key: a parent that is referenced exists.
            .outerjoin(parent_card, parent_card.id_tag == EvCard.parent_id_tag)
            .outerjoin(mapping, true())
            .where(EvCard.id_tag == id_tag)
        )
    ).first()
    if row is None:
        return None
    card, parent, user_id, lago_id, open_count = row
    return CardFactsRow(card, parent, user_id, lago_id, int(open_count))


__all__ = [
    "OPEN_STATES",
    "CardFactsRow",
    "card_facts",
    "lock_card",
    "open_sessions_count",
]

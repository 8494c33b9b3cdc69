"""The local authorization decision, from PostgreSQL only, in a few milliseconds.

It answers what the gateway can know without Temporal: is the card known, active, not blocked,
not expired, not reported lost, is its parent (meta-card) fine, is it mapped to an active
account, is it below its concurrent-session limit (counted by :mod:`db.card_sessions` under the
card's advisory lock, shared with pre-authorization and StartTransaction). The rules are
:func:`domain.authorization.decide` — the same the workflow's ``pre_authorize`` applies, so the
workflow can only tighten this answer with what it knows beyond PostgreSQL's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from db.card_sessions import card_facts, lock_card
from domain.authorization import AuthorizationFacts, CardFacts
from domain.authorization import decide as decide_card
from workflows.messages import AuthorizationStatus


@dataclass(frozen=True, slots=True)
class LocalDecision:
    status: AuthorizationStatus
    reason: str
    known: bool
    parent_id_tag: str | None = None
    expiry_date: datetime | None = None
    # The account the card is mapped to (active mapping), if any: a transaction's owner.
    user_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"


async def decide(
    session: AsyncSession,
    id_tag: str,
    now: datetime,
    *,
    check_concurrency: bool = True,
    exclude_workflow_id: str | None = None,
    locked: bool = False,
) -> LocalDecision:
    """``check_concurrency`` takes the card's lock (held until the caller's transaction ends) and
    counts its other open sessions, not counting ``exclude_workflow_id``. ``locked``: the caller
    took the card's lock already, in an earlier statement of this transaction."""
    if check_concurrency and not locked:
        # Its own statement, before the count: a statement's snapshot is taken when it starts,
        # so a count in the locking statement would not see what the previous holder committed.
        await lock_card(session, id_tag)
    # Everything else in one round trip (this runs for every tap, start and stop).
    facts = await card_facts(
        session,
        id_tag,
        count_sessions=check_concurrency,
        exclude_workflow_id=exclude_workflow_id,
    )
    if facts is None:
        return LocalDecision("Invalid", "unknown_card", known=False)
    card, parent, user_id = facts.card, facts.parent, facts.user_id
    decision = decide_card(
        AuthorizationFacts(
            card=CardFacts.model_validate(card),
            parent=CardFacts.model_validate(parent) if parent is not None else None,
            has_active_mapping=user_id is not None,
            other_open_sessions=facts.open_sessions,
        ),
        now,
    )
    accepted = decision.status == "Accepted"
    return LocalDecision(
        decision.status,
        decision.reason or "ok",
        known=True,
        parent_id_tag=card.parent_id_tag,
        expiry_date=card.expires_at if accepted else None,
        user_id=user_id,
    )

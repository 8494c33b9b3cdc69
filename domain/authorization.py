"""Pre-authorization of a card: the pure decision, fed with facts read from PostgreSQL.

Order matters and is OCPP's: an unknown card is ``Invalid``; a lost, deactivated or blocked card
(or parent) is ``Blocked``; an expired card (or parent) is ``Expired``; a card with no active user
mapping is ``Invalid``; a card at its concurrent-session limit is ``ConcurrentTx``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

AuthStatus = Literal["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"]


class CardFacts(BaseModel):
    # Built straight from a row object (``CardFacts.model_validate(ev_card)``) by the gateway and
    # the pre-authorization activity alike.
    model_config = ConfigDict(from_attributes=True)

    id_tag: str
    is_active: bool = True
    blocked: bool = False
    expires_at: datetime | None = None
    lost_at: datetime | None = None
    max_concurrent_sessions: int = 1


class AuthorizationFacts(BaseModel):
    card: CardFacts | None
    parent: CardFacts | None = None
    has_active_mapping: bool = False
    # Open sessions of this card, *not counting* the session being authorized.
    other_open_sessions: int = 0


class AuthorizationDecision(BaseModel):
    status: AuthStatus
    reason: str | None = None


def _card_problem(card: CardFacts, now: datetime, prefix: str) -> AuthorizationDecision | None:
    if card.lost_at is not None:
        return AuthorizationDecision(status="Blocked", reason=f"{prefix}lost")
    if not card.is_active:
        return AuthorizationDecision(status="Blocked", reason=f"{prefix}inactive")
    if card.blocked:
        return AuthorizationDecision(status="Blocked", reason=f"{prefix}blocked")
    if card.expires_at is not None and card.expires_at <= now:
        return AuthorizationDecision(status="Expired", reason=f"{prefix}expired")
    return None


def decide(facts: AuthorizationFacts, now: datetime) -> AuthorizationDecision:
    """Decide whether the card may start a session at ``now`` (timezone-aware)."""
    if facts.card is None:
        return AuthorizationDecision(status="Invalid", reason="unknown_card")
    problem = _card_problem(facts.card, now, "card_")
    if problem is not None:
        return problem
    if facts.parent is not None:
        problem = _card_problem(facts.parent, now, "parent_")
        if problem is not None:
            return problem
    if not facts.has_active_mapping:
        return AuthorizationDecision(status="Invalid", reason="no_active_mapping")
    if facts.other_open_sessions >= facts.card.max_concurrent_sessions:
        return AuthorizationDecision(status="ConcurrentTx", reason="concurrent_session_limit")
    return AuthorizationDecision(status="Accepted")

"""Why a driver's remote start cannot go ahead, as the stable error codes the API answers.

Pure: a card's facts, a connector's availability or a rejected session's ``end_reason`` in, one
``(HTTP status, code, message)`` out. The codes are the API's contract (docs/drivers.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.authorization import AuthorizationFacts, CardFacts, decide
from domain.availability import Availability


@dataclass(frozen=True, slots=True)
class StartProblem:
    status: int
    code: str
    message: str


NO_CARD = StartProblem(409, "NO_CARD", "you have no EV card linked: link one first")
ACCOUNT_BANNED = StartProblem(403, "ACCOUNT_BANNED", "your account is banned")
CHARGER_OFFLINE = StartProblem(409, "CHARGER_OFFLINE", "the charger is offline")


def card_problem(card: CardFacts, parent: CardFacts | None, now: datetime) -> StartProblem | None:
    """The card's own state (lost, blocked or inactive, expired; its parent's too)."""
    decision = decide(AuthorizationFacts(card=card, parent=parent, has_active_mapping=True), now)
    if decision.status == "Accepted":
        return None
    return refusal_of(decision.reason or decision.status)


def refusal_of(reason: str) -> StartProblem:
    """A pre-authorization refusal (``domain/authorization.py`` reasons) as a start problem."""
    if reason.endswith("lost"):
        return StartProblem(403, "CARD_LOST", "your EV card was reported lost")
    if reason.endswith("expired"):
        return StartProblem(403, "CARD_EXPIRED", "your EV card has expired")
    if reason in ("card_blocked", "card_inactive", "parent_blocked", "parent_inactive"):
        return StartProblem(403, "CARD_BLOCKED", "your EV card is blocked")
    if reason == "concurrent_session_limit":
        return StartProblem(
            409, "CARD_IN_USE", "your EV card is already charging (its session limit is reached)"
        )
    return StartProblem(403, "CARD_REFUSED", f"your EV card was refused ({reason})")


def connector_problem(availability: Availability) -> StartProblem | None:
    if availability == "available":
        return None
    if availability == "offline":
        return CHARGER_OFFLINE
    if availability == "faulted":
        return StartProblem(409, "CONNECTOR_FAULTED", "the connector reports a fault")
    if availability == "reserved":
        return StartProblem(409, "CONNECTOR_RESERVED", "the connector is reserved")
    return StartProblem(409, "CONNECTOR_BUSY", "the connector is in use")


def rejection_problem(end_reason: str | None) -> StartProblem:
    """A session the workflow rejected: the card (pre-authorization) or the charger said no."""
    reason = end_reason or "rejected"
    prefix = "remote_start_failed: "
    if reason.startswith(prefix):
        answer = reason[len(prefix) :]
        if answer == "ChargerOffline":
            return CHARGER_OFFLINE
        if answer == "ChargerTimeout":
            return StartProblem(504, "CHARGER_TIMEOUT", "the charger did not answer in time")
        return StartProblem(409, "CHARGER_REFUSED", f"the charger refused to start ({answer})")
    return refusal_of(reason)


__all__ = [
    "ACCOUNT_BANNED",
    "CHARGER_OFFLINE",
    "NO_CARD",
    "StartProblem",
    "card_problem",
    "connector_problem",
    "refusal_of",
    "rejection_problem",
]

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.authorization import AuthorizationFacts, CardFacts, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GOOD = CardFacts(id_tag="T1")


@pytest.mark.parametrize(
    ("facts", "status", "reason"),
    [
        (AuthorizationFacts(card=None), "Invalid", "unknown_card"),
        (AuthorizationFacts(card=GOOD, has_active_mapping=True), "Accepted", None),
        (
            AuthorizationFacts(
                card=GOOD.model_copy(update={"blocked": True}), has_active_mapping=True
            ),
            "Blocked",
            "card_blocked",
        ),
        (
            AuthorizationFacts(
                card=GOOD.model_copy(update={"is_active": False}), has_active_mapping=True
            ),
            "Blocked",
            "card_inactive",
        ),
        (
            AuthorizationFacts(
                card=GOOD.model_copy(update={"lost_at": NOW}), has_active_mapping=True
            ),
            "Blocked",
            "card_lost",
        ),
        (
            AuthorizationFacts(
                card=GOOD.model_copy(update={"expires_at": NOW}), has_active_mapping=True
            ),
            "Expired",
            "card_expired",
        ),
        (
            AuthorizationFacts(
                card=GOOD.model_copy(update={"expires_at": NOW + timedelta(days=1)}),
                has_active_mapping=True,
            ),
            "Accepted",
            None,
        ),
        (
            AuthorizationFacts(
                card=GOOD, parent=CardFacts(id_tag="P", blocked=True), has_active_mapping=True
            ),
            "Blocked",
            "parent_blocked",
        ),
        (
            AuthorizationFacts(
                card=GOOD, parent=CardFacts(id_tag="P", expires_at=NOW), has_active_mapping=True
            ),
            "Expired",
            "parent_expired",
        ),
        (AuthorizationFacts(card=GOOD), "Invalid", "no_active_mapping"),
        (
            AuthorizationFacts(card=GOOD, has_active_mapping=True, other_open_sessions=1),
            "ConcurrentTx",
            "concurrent_session_limit",
        ),
        (
            AuthorizationFacts(
                card=GOOD.model_copy(update={"max_concurrent_sessions": 2}),
                has_active_mapping=True,
                other_open_sessions=1,
            ),
            "Accepted",
            None,
        ),
    ],
)
def test_decide(facts: AuthorizationFacts, status: str, reason: str | None) -> None:
    decision = decide(facts, NOW)
    assert (decision.status, decision.reason) == (status, reason)

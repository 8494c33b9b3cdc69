"""OCPP 2.0.1 idTokens onto our cards.

- An idToken is case insensitive (2.0.1 schema): the card is found by ``lower(id_tag)``.
- A card without a stored ``token_type`` matches any type (every 1.6 card); a typed card must
  match the idToken's type, else the token is unknown (``Invalid``).
- ``NoAuthorization`` (the start button, empty idToken) is ``Accepted`` only on a charger with
  ``free_vend`` on: a free vend, recorded and flagged, never billed to a customer.
- The answer is ``idTokenInfo``: the local decision's status (our five statuses are all 2.0.1
  statuses), ``groupIdToken`` from the card's parent, ``cacheExpiryDateTime`` from its expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, EvCard
from gateway.local_auth import LocalDecision, decide

NO_AUTHORIZATION = "NoAuthorization"
# What an app-only id (no physical card type stored) is called in a 2.0.1 answer.
DEFAULT_TOKEN_TYPE = "Central"
FLAG_FREE_VEND = "free_vend"


@dataclass(frozen=True, slots=True)
class TokenDecision:
    # The card's id_tag as stored (None: no card matches).
    id_tag: str | None
    decision: LocalDecision
    group: dict[str, str] | None = None
    free_vend: bool = False

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self.decision.status}
        if self.decision.expiry_date is not None:
            info["cacheExpiryDateTime"] = ocpp_time(self.decision.expiry_date)
        if self.group is not None:
            info["groupIdToken"] = self.group
        return info


def ocpp_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def find_card(s: AsyncSession, token: str, token_type: str) -> str | None:
    rows = (
        await s.execute(
            select(EvCard.id_tag, EvCard.token_type).where(
                func.lower(EvCard.id_tag) == token.lower()
            )
        )
    ).all()
    for row in sorted(rows, key=lambda r: r.id_tag != token):  # an exact match first
        if row.token_type is None or row.token_type == token_type:
            return str(row.id_tag)
    return None


async def decide_token(
    s: AsyncSession,
    charge_box_id: str,
    id_token: dict[str, Any],
    now: datetime,
    *,
    check_concurrency: bool = True,
    exclude_workflow_id: str | None = None,
) -> TokenDecision:
    token = str(id_token.get("idToken", ""))
    token_type = str(id_token.get("type", ""))
    if token_type == NO_AUTHORIZATION:
        free = await s.scalar(
            select(Charger.free_vend).where(Charger.charge_box_id == charge_box_id)
        )
        if free:
            return TokenDecision(
                None, LocalDecision("Accepted", FLAG_FREE_VEND, True), free_vend=True
            )
        return TokenDecision(None, LocalDecision("Invalid", "start_button_disabled", False))
    id_tag = await find_card(s, token, token_type)
    if id_tag is None:
        return TokenDecision(None, LocalDecision("Invalid", "unknown_card", known=False))
    decision = await decide(
        s,
        id_tag,
        now,
        check_concurrency=check_concurrency,
        exclude_workflow_id=exclude_workflow_id,
    )
    group = None
    if decision.parent_id_tag:
        parent_type = await s.scalar(
            select(EvCard.token_type).where(EvCard.id_tag == decision.parent_id_tag)
        )
        group = {"idToken": decision.parent_id_tag, "type": parent_type or DEFAULT_TOKEN_TYPE}
    return TokenDecision(id_tag, decision, group)

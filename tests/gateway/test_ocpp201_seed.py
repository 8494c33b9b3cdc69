"""``polaris seed demo`` adds what an OCPP 2.0.1 charger presents, and a real v201 station's
Authorize gets the answer each card stands for: ISO 14443 hex UIDs with their token type, a
second card, two cards of one group (``groupIdToken``), a blocked and an expired card. Seeding
twice changes nothing (real PostgreSQL, real gateway)."""

from __future__ import annotations

import pytest
from ocpp.v201 import call
from sqlalchemy import func, select

from cli.seed import DEMO_201_CARDS, DEMO_CARD, DEMO_GROUP, AuthUser, _seed_rows
from db.engine import SessionFactory
from db.models import EvCard, UserMapping
from gateway.main import Gateway
from tests.gateway.conftest import seed_charger
from tests.gateway.station201 import station

pytestmark = pytest.mark.timeout(120)

DRIVER = AuthUser(id="user-seed-201", email="driver@example.com", role="customer", created=True)


async def test_seed_demo_adds_the_cards_a_2_0_1_charger_presents(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    ids = [DEMO_CARD, DEMO_GROUP, *(c.id_tag for c in DEMO_201_CARDS)]
    for _ in range(2):  # idempotent
        async with session_factory.begin() as s:
            await _seed_rows(s, DRIVER)
    async with session_factory() as s:
        cards = {c.id_tag: c for c in await s.scalars(select(EvCard).where(EvCard.id_tag.in_(ids)))}
        mapped = await s.scalar(
            select(func.count()).select_from(UserMapping).where(UserMapping.id_tag.in_(ids))
        )
    assert set(cards) == set(ids)
    assert mapped == 1 + len(DEMO_201_CARDS)  # every card but the group is the driver's
    iso = cards["04E1A2B3C4D5E6"]
    assert iso.token_type == "ISO14443" and int(iso.id_tag, 16)  # a hex UID
    assert {c.id_tag for c in cards.values() if c.parent_id_tag == DEMO_GROUP} == {
        "04F1000000000A",
        "04F1000000000B",
    }

    cb = await seed_charger(session_factory)

    async def authorize(id_token: str, kind: str = "ISO14443") -> dict[str, object]:
        answer = await cp.call(call.Authorize(id_token={"idToken": id_token, "type": kind}))
        info: dict[str, object] = answer.id_token_info
        return info

    async with station(gateway, cb) as cp:
        await cp.call(
            call.BootNotification(
                charging_station={"model": "M", "vendorName": "V"}, reason="PowerUp"
            )
        )
        assert (await authorize("04E1A2B3C4D5E6"))["status"] == "Accepted"
        # A typed card presented as another type is not that card.
        assert (await authorize("04E1A2B3C4D5E6", "ISO15693"))["status"] == "Invalid"
        # Hex UIDs are case insensitive.
        assert (await authorize("a1b2c3d4"))["status"] == "Accepted"
        fleet = await authorize("04F1000000000A")
        assert fleet["status"] == "Accepted"
        assert fleet["group_id_token"] == {"id_token": DEMO_GROUP, "type": "Central"}
        assert (await authorize("04B10C0ED00001"))["status"] == "Blocked"
        assert (await authorize("04E0000000DEAD"))["status"] == "Expired"

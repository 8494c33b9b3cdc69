"""The card service over the real PostgreSQL and, for linking, a real worker running the
card-link saga against the real auth service and a Lago sandbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from temporalio.worker import Worker

from db.engine import SessionFactory
from db.local_list_models import ChargerLocalList
from db.models import AuditLog, Charger, EvCard
from services import cards
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput, NotFound
from tests.identity.conftest import unique_email
from tests.sandbox.conftest import RunningSandbox

pytestmark = pytest.mark.timeout(180)


def new_tag() -> str:
    return f"K{uuid.uuid4().hex[:12].upper()}"


async def sync_requested(factory: SessionFactory, charge_box_id: str) -> int:
    async with factory() as db:
        row = await db.get(ChargerLocalList, charge_box_id)
        return 0 if row is None else row.sync_requested


async def audit_actions(factory: SessionFactory, subject: str) -> list[tuple[str, str, str]]:
    async with factory() as db:
        rows = await db.scalars(
            select(AuditLog).where(AuditLog.subject == subject).order_by(AuditLog.id)
        )
        return [(r.action, r.actor, r.source or "") for r in rows]


async def test_card_rules_audit_and_local_list_requests(
    ctx: ServiceContext, operator: Actor, session_factory: SessionFactory
) -> None:
    charge_box_id = f"CARDS-{uuid.uuid4().hex[:8]}"
    async with session_factory() as db, db.begin():
        db.add(Charger(charge_box_id=charge_box_id))
    before = await sync_requested(session_factory, charge_box_id)

    parent, child = new_tag(), new_tag()
    made = await cards.add_card(ctx, operator, cards.CardIn(id_tag=parent, label="Fleet"))
    assert made.label == "Fleet" and made.is_active and not made.blocked
    # Every committed change asks every charger's list to follow.
    assert await sync_requested(session_factory, charge_box_id) == before + 1

    with pytest.raises(cards.CardExists) as exists:
        await cards.add_card(ctx, operator, cards.CardIn(id_tag=parent))
    assert exists.value.status == 409 and exists.value.code == "CARD_EXISTS"
    with pytest.raises(InvalidInput) as own:
        await cards.add_card(ctx, operator, cards.CardIn(id_tag=child, parent_id_tag=child))
    assert own.value.issues[0]["path"] == ["parent_id_tag"]
    with pytest.raises(InvalidInput):
        await cards.add_card(ctx, operator, cards.CardIn(id_tag=child, parent_id_tag="NOPE-1"))
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    made = await cards.add_card(
        ctx,
        operator,
        cards.CardIn(id_tag=child, parent_id_tag=parent, expires_at=expires),
    )
    assert made.parent_id_tag == parent and made.expires_at == expires

    changed = await cards.set_card(
        ctx, operator, child, cards.CardPatch(blocked=True, label="Van 3")
    )
    assert changed.blocked and changed.label == "Van 3" and changed.expires_at == expires
    assert await sync_requested(session_factory, charge_box_id) == before + 3
    with pytest.raises(NotFound):
        await cards.set_card(ctx, operator, "NOPE-2", cards.CardPatch(blocked=True))

    shown = await cards.show_card(ctx, parent)
    assert shown.children == [child] and shown.mappings == []
    listed = await cards.list_cards(ctx, q=parent[3:])
    assert [c.id_tag for c in listed] == [parent]
    with pytest.raises(NotFound):
        await cards.show_card(ctx, "NOPE-3")
    with pytest.raises(cards.NotLinked):
        await cards.unlink_card(ctx, operator, parent)

    assert await audit_actions(session_factory, child) == [
        ("card.created", operator.id, operator.source),
        ("card.updated", operator.id, operator.source),
    ]


async def test_link_reassign_and_unlink(
    ctx: ServiceContext,
    operator: Actor,
    worker: Worker,
    session_factory: SessionFactory,
    lago_sandbox: RunningSandbox,
) -> None:
    parent, child = new_tag(), new_tag()
    await cards.add_card(ctx, operator, cards.CardIn(id_tag=parent))
    await cards.add_card(ctx, operator, cards.CardIn(id_tag=child, parent_id_tag=parent))
    email = unique_email("svc-link")

    linked = await cards.link_card(
        ctx, operator, parent, cards.LinkIn(email=email, name="Ada", invite=False)
    )
    assert linked.status == "linked" and linked.user_created and not linked.invited
    assert lago_sandbox.api("GET", f"/customers/{linked.public_id}").status_code == 200
    shown = await cards.show_card(ctx, parent)
    assert shown.email == email and shown.user_id == linked.user_id
    assert [m.email for m in shown.mappings] == [email]
    again = await cards.link_card(ctx, operator, child, cards.LinkIn(email=email, invite=False))
    assert again.public_id == linked.public_id

    with pytest.raises(cards.ReassignRequired) as reassign:
        await cards.link_card(ctx, operator, parent, cards.LinkIn(email=unique_email("other")))
    assert reassign.value.issues[0]["user_id"] == linked.user_id

    unlinked = await cards.unlink_card(ctx, operator, parent)
    assert unlinked.cascaded_to == [child] and len(unlinked.unlinked_mappings) == 2
    assert (await cards.show_card(ctx, child)).user_id is None
    assert [a for a, _, _ in await audit_actions(session_factory, parent)][-1] == "card.unlinked"

    async with session_factory() as db, db.begin():
        await db.execute(
            update(EvCard).where(EvCard.id_tag == parent).values(lost_at=datetime.now(UTC))
        )
    with pytest.raises(cards.CardLost):
        await cards.link_card(ctx, operator, parent, cards.LinkIn(email=email))

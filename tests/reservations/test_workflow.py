"""Reservations end to end: the service → ReservationWorkflow → the real gateway → a real
``ocpp`` 1.6 charge point, and back (StartTransaction → outbox → the workflow)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.billing_models import Notification
from db.engine import SessionFactory
from db.models import PlatformEvent, Transaction
from db.operation_models import ChargerOperation
from db.reservation_models import Reservation
from domain.reservations import OFFLINE_REASON
from gateway.main import Gateway
from services import reservations
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput, NotFound
from services.reservations import ReservationIn, SlotTaken
from tests.gateway.conftest import seed_card, seed_charger
from tests.helpers import eventually
from tests.reservations.conftest import add_connectors, charge_point, make_ctx
from workflows.reservation_messages import reservation_workflow_id as made_workflow_id

pytestmark = pytest.mark.timeout(180)

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "reservation_v1.json"

DRIVER = Actor(id="user:test", role="customer", source="test")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def owner(id_tag: str) -> str:
    return f"user-{id_tag}"  # tests.gateway.conftest.seed_card's mapping


async def row(sf: SessionFactory, reservation_id: str) -> Reservation:
    async with sf() as db:
        found = await db.get(Reservation, reservation_id)
    assert found is not None
    return found


async def status_is(sf: SessionFactory, reservation_id: str, status: str) -> Reservation:
    async def check() -> Reservation:
        found = await row(sf, reservation_id)
        assert found.status == status, (found.status, found.reason)
        return found

    return await eventually(check, timeout=60, message=f"reservation {status}")


async def event_types(sf: SessionFactory, reservation_id: str) -> list[str]:
    async with sf() as db:
        return list(
            (
                await db.scalars(
                    select(PlatformEvent.type)
                    .where(PlatformEvent.subject == reservation_id)
                    .order_by(PlatformEvent.id)
                )
            ).all()
        )


async def reserve(
    ctx: ServiceContext, tag: str, cb: str, *, in_s: float = 0, connector: int | None = 1, **kw: Any
) -> reservations.ReservationOut:
    return await reservations.create(
        ctx,
        DRIVER,
        owner(tag),
        ReservationIn(
            charge_box_id=cb,
            connector_id=connector,
            starts_at=datetime.now(UTC) + timedelta(seconds=in_s),
            duration_min=kw.pop("duration_min", 30),
            **kw,
        ),
    )


async def test_reserve_now_goes_out_lead_time_before_the_start_and_confirms(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RS")
    async with charge_point(stack, cb) as cp:
        made = await reserve(ctx, tag, cb, in_s=6)
        assert made.status == "pending" and made.connector_id == 1
        confirmed = await status_is(session_factory, made.id, "confirmed")
        assert confirmed.sent_to_charger
        assert len(cp.reserve_now) == 1
        received_at, payload = cp.reserve_now[0]
        # The durable timer: never before start − lead (lead_s = 2 in these tests).
        assert received_at >= made.starts_at - timedelta(seconds=2)
        assert payload["connector_id"] == 1
        assert payload["id_tag"] == tag
        assert payload["reservation_id"] == made.ocpp_reservation_id
        expiry = datetime.fromisoformat(payload["expiry_date"].replace("Z", "+00:00"))
        assert expiry == (made.starts_at + timedelta(seconds=600)).replace(microsecond=0)
    assert await event_types(session_factory, made.id) == [
        "reservation.created",
        "reservation.confirmed",
    ]
    # The operations log has the frame (the gateway activity writes it).
    async with session_factory() as db:
        ops = (
            await db.scalars(
                select(ChargerOperation).where(
                    ChargerOperation.charge_box_id == cb, ChargerOperation.action == "ReserveNow"
                )
            )
        ).all()
    assert [o.status for o in ops] == ["answered"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Occupied", "the connector is in use"),
        ("Faulted", "the charger reports a fault"),
        ("Rejected", "the charger refused the reservation"),
        ("Unavailable", "the connector is out of service"),
    ],
)
async def test_a_refusing_charger_fails_the_reservation_with_a_reason_for_the_driver(
    stack: Gateway,
    ctx: ServiceContext,
    session_factory: SessionFactory,
    answer: str,
    reason: str,
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RF")
    async with charge_point(stack, cb) as cp:
        cp.answers = [answer]
        made = await reserve(ctx, tag, cb)
        failed = await status_is(session_factory, made.id, "failed")
    assert failed.reason == reason
    mine = await reservations.get_mine(ctx, owner(tag), made.id)
    assert mine.status == "failed" and mine.reason == reason
    async with session_factory() as db:
        note = await db.scalar(
            select(Notification).where(Notification.dedupe_key == f"reservation:{made.id}:failed")
        )
    assert note is not None and note.kind == "reservation.failed"
    assert note.data["reason"] == reason
    assert await event_types(session_factory, made.id) == [
        "reservation.created",
        "reservation.failed",
    ]
    # The same window is free again (a failed reservation holds nothing).
    again = await reserve(ctx, tag, cb)
    assert again.status == "pending" and again.connector_id == 1
    await reservations.cancel(ctx, DRIVER, again.id)


async def test_cancel_tells_the_charger_and_frees_the_slot(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RC")
    async with charge_point(stack, cb) as cp:
        made = await reserve(ctx, tag, cb)
        await status_is(session_factory, made.id, "confirmed")
        cancelled = await reservations.cancel_mine(ctx, DRIVER, owner(tag), made.id)
        assert cancelled.status == "cancelled" and cancelled.reason == "cancelled by the driver"
        await eventually(lambda: cp.cancels, timeout=60, message="CancelReservation")
        assert cp.cancels == [{"reservation_id": made.ocpp_reservation_id}]
        with pytest.raises(reservations.AlreadyEnded):
            await reservations.cancel_mine(ctx, DRIVER, owner(tag), made.id)
        # The same window can be reserved again at once.
        again = await reserve(ctx, tag, cb)
        assert again.connector_id == 1
    assert "reservation.cancelled" in await event_types(session_factory, made.id)


async def test_a_no_show_expires_and_the_charger_is_told(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    short = make_ctx(
        ctx.settings.model_copy(update={"reservation_no_show_s": 3.0}),
        session_factory,
        await ctx.temporal(),
    )
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RX")
    async with charge_point(stack, cb) as cp:
        made = await reserve(short, tag, cb)
        expired = await status_is(session_factory, made.id, "expired")
        assert expired.reason == "nobody started charging in time"
        await eventually(lambda: cp.cancels, timeout=60, message="CancelReservation")
    async with session_factory() as db:
        note = await db.scalar(
            select(Notification).where(Notification.dedupe_key == f"reservation:{made.id}:expired")
        )
    assert note is not None and note.kind == "reservation.expired"
    assert await event_types(session_factory, made.id) == [
        "reservation.created",
        "reservation.confirmed",
        "reservation.expired",
    ]


async def test_a_start_transaction_with_the_reservation_id_joins_the_session(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RJ")
    async with charge_point(stack, cb) as cp:
        made = await reserve(ctx, tag, cb)
        await status_is(session_factory, made.id, "confirmed")
        started = await cp.start_transaction(1, tag, reservation_id=made.ocpp_reservation_id)
        used = await status_is(session_factory, made.id, "used")
    async with session_factory() as db:
        tx = await db.get(Transaction, started.transaction_id)
    assert tx is not None and tx.reservation_id == made.ocpp_reservation_id
    assert used.transaction_id == tx.id
    assert used.session_workflow_id == tx.workflow_id
    assert cp.cancels == []  # the charger consumed the reservation itself
    assert (await event_types(session_factory, made.id))[-1] == "reservation.used"
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        client = await ctx.temporal()
        handle = client.get_workflow_handle(made_workflow_id(made.id))
        await handle.result()
        HISTORY.write_text((await handle.fetch_history()).to_json())


async def test_the_reserving_card_on_the_connector_joins_without_the_id(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RK")
    async with charge_point(stack, cb) as cp:
        made = await reserve(ctx, tag, cb)
        await status_is(session_factory, made.id, "confirmed")
        started = await cp.start_transaction(1, tag)
        used = await status_is(session_factory, made.id, "used")
    assert used.transaction_id == started.transaction_id


async def test_an_offline_charger_is_retried_until_the_start_then_fails(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)  # never connects
    tag = await seed_card(session_factory, prefix="RO")
    made = await reserve(ctx, tag, cb, in_s=4)
    failed = await status_is(session_factory, made.id, "failed")
    assert failed.reason == OFFLINE_REASON


async def test_an_overlap_answers_409_with_free_slots_nearby(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RV")
    other = await seed_card(session_factory, prefix="RW")
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    first = await reservations.create(
        ctx,
        DRIVER,
        owner(tag),
        ReservationIn(charge_box_id=cb, connector_id=1, starts_at=start, duration_min=60),
    )
    with pytest.raises(SlotTaken) as taken:
        await reservations.create(
            ctx,
            DRIVER,
            owner(other),
            ReservationIn(
                charge_box_id=cb,
                connector_id=1,
                starts_at=start + timedelta(minutes=30),
                duration_min=60,
            ),
        )
    slots = taken.value.extra["suggested_slots"]
    # Nearest first: right after the taken hour (30 min later), then right before it.
    hour = timedelta(minutes=60)
    assert [(_at(s["starts_at"]), _at(s["ends_at"])) for s in slots] == [
        (start + hour, start + 2 * hour),
        (start - hour, start),
    ]
    assert all(s["connector_id"] == 1 for s in slots)
    # A suggested slot is really free.
    taken_slot = await reservations.create(
        ctx,
        DRIVER,
        owner(other),
        ReservationIn(
            charge_box_id=cb,
            connector_id=1,
            starts_at=_at(slots[0]["starts_at"]),
            duration_min=60,
        ),
    )
    assert taken_slot.status == "pending"
    await reservations.cancel(ctx, DRIVER, first.id)
    await reservations.cancel(ctx, DRIVER, taken_slot.id)


async def test_two_drivers_racing_for_one_slot_one_wins(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    await add_connectors(session_factory, cb, 1, 2)
    tags = [await seed_card(session_factory, prefix="RR") for _ in range(5)]
    start = datetime.now(UTC) + timedelta(hours=5)

    async def attempt(tag: str, connector: int | None) -> str:
        try:
            made = await reservations.create(
                ctx,
                DRIVER,
                owner(tag),
                ReservationIn(
                    charge_box_id=cb, connector_id=connector, starts_at=start, duration_min=45
                ),
            )
        except SlotTaken:
            return "taken"
        return f"connector {made.connector_id}"

    # Two drivers, one connector, one instant: one wins.
    one = await asyncio.gather(attempt(tags[0], 1), attempt(tags[1], 1))
    assert sorted(one) == ["connector 1", "taken"]
    # Any connector: the other connector goes to the next, then none is left.
    rest = await asyncio.gather(*(attempt(t, None) for t in tags[2:]))
    assert sorted(rest) == ["connector 2", "taken", "taken"]
    async with session_factory() as db:
        live = (
            await db.scalars(
                select(Reservation).where(
                    Reservation.charge_box_id == cb, Reservation.status == "pending"
                )
            )
        ).all()
    assert sorted(r.connector_id or 0 for r in live) == [1, 2]
    for r in live:
        await reservations.cancel(ctx, DRIVER, r.id)


async def test_unlinking_a_card_cancels_its_reservations(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RU")
    made = await reserve(ctx, tag, cb, in_s=7200)
    upcoming = await reservations.next_reservation(ctx, owner(tag))
    assert upcoming is not None and upcoming.id == made.id
    ids = await reservations.cancel_for_card(ctx, tag, "the card was unlinked from the account")
    assert ids == [made.id]
    gone = await row(session_factory, made.id)
    assert gone.status == "cancelled" and gone.reason == "the card was unlinked from the account"
    assert await reservations.cancel_for_card(ctx, tag, "again") == []
    assert await reservations.next_reservation(ctx, owner(tag)) is None


async def test_window_and_card_errors(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RE")
    blocked = await seed_card(session_factory, prefix="RB", blocked=True)
    with pytest.raises(InvalidInput) as past:
        await reserve(ctx, tag, cb, in_s=-3600)
    assert past.value.issues[0]["path"] == ["starts_at"]
    with pytest.raises(InvalidInput):
        await reserve(ctx, tag, cb, in_s=60, duration_min=5)
    with pytest.raises(NotFound):
        await reserve(ctx, tag, "CB-NOPE", in_s=60)
    with pytest.raises(reservations.CardBlocked):
        await reserve(ctx, blocked, cb, in_s=60)
    with pytest.raises(reservations.NoCard):
        await reservations.create(
            ctx,
            DRIVER,
            "user-with-no-card",
            ReservationIn(charge_box_id=cb, starts_at=datetime.now(UTC), duration_min=30),
        )
    await add_connectors(session_factory, cb, 1)
    with pytest.raises(InvalidInput) as connector:
        await reserve(ctx, tag, cb, in_s=60, connector=3)
    assert connector.value.issues[0]["path"] == ["connector_id"]


async def test_a_start_after_expiry_carrying_the_id_still_joins(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    """The charger's clock honoured the reservation after ours expired it: the relay's
    signal-with-start runs a new execution of the finished workflow, which records the join."""
    short = make_ctx(
        ctx.settings.model_copy(update={"reservation_no_show_s": 2.0}),
        session_factory,
        await ctx.temporal(),
    )
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RT")
    async with charge_point(stack, cb) as cp:
        made = await reserve(short, tag, cb)
        await status_is(session_factory, made.id, "expired")
        client = await ctx.temporal()
        await client.get_workflow_handle(made_workflow_id(made.id)).result()
        started = await cp.start_transaction(1, tag, reservation_id=made.ocpp_reservation_id)
        used = await status_is(session_factory, made.id, "used")
    assert used.transaction_id == started.transaction_id
    assert (await event_types(session_factory, made.id))[-2:] == [
        "reservation.expired",
        "reservation.used",
    ]

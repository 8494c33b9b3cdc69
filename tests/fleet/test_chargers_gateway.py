"""Chargers end to end: registered through the service, connecting to a real gateway as a real
``ocpp`` 1.6 charge point with the password it was given; rotation with a reconnecting charger;
decommissioning; unknown chargers listed as pending."""

from __future__ import annotations

import asyncio

import pytest
from ocpp.v16 import call
from sqlalchemy import select, update
from websockets.exceptions import ConnectionClosed

from db.engine import SessionFactory
from db.models import AuditLog, Charger, PendingCharger, Transaction
from gateway.main import Gateway
from services import chargers
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound
from tests.gateway.conftest import charger_session, seed_card, uid
from tests.gateway.test_charger_auth import basic, handshake_status
from tests.helpers import eventually, ocpp_ts

pytestmark = pytest.mark.timeout(120)


async def audit_of(sf: SessionFactory, charge_box_id: str) -> list[AuditLog]:
    async with sf() as s:
        rows = await s.scalars(
            select(AuditLog).where(AuditLog.subject == charge_box_id).order_by(AuditLog.id)
        )
        return list(rows.all())


def new(charge_box_id: str, **fields: object) -> chargers.NewCharger:
    return chargers.NewCharger.model_validate(
        {"charge_box_id": charge_box_id, "connectors": 2, **fields}
    )


async def test_a_registered_charger_connects_with_its_password_only(
    gateway: Gateway,
    ctx: ServiceContext,
    operator: Actor,
    session_factory: SessionFactory,
) -> None:
    cb = uid("FL-")
    added = await chargers.add_charger(ctx, operator, new(cb, label="Bay 1"))
    password = added["password"]
    assert len(password) == 40
    view = added["charger"]
    assert [c["connector_id"] for c in view["connectors"]] == [0, 1, 2]
    assert view["authentication"]["mode"] == "password"
    assert view["connected"] is False

    assert await handshake_status(gateway, cb) == 401
    assert await handshake_status(gateway, cb, authorization=basic(cb, "not-it")) == 401
    async with charger_session(gateway, cb, password=password) as cp:
        await cp.call(
            call.BootNotification(
                charge_point_vendor="Acme",
                charge_point_model="AC-22",
                charge_point_serial_number="SN-1",
                firmware_version="1.2.3",
            )
        )
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        shown = await chargers.show_charger(ctx, cb)
        assert shown["connected"] is True
        assert shown["gateway_instance"] == gateway.settings.gateway_instance
        assert (shown["vendor"], shown["model"], shown["serial_number"]) == (
            "Acme",
            "AC-22",
            "SN-1",
        )
        assert shown["firmware_version"] == "1.2.3"
        assert shown["last_seen_at"] is not None
        one = next(c for c in shown["connectors"] if c["connector_id"] == 1)
        assert (one["status"], one["error_code"], one["session"]) == ("Available", "NoError", None)
        assert one["since"] is not None

        # A transaction on connector 1: the charger shows the session running on it.
        id_tag = await seed_card(session_factory)
        assert (await cp.call(call.Authorize(id_tag=id_tag))).id_tag_info["status"] == "Accepted"
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=1000, timestamp=ocpp_ts()
            )
        )
        await cp.call(
            call.StatusNotification(
                connector_id=1, error_code="OtherError", status="Faulted", info="RCD tripped"
            )
        )
        shown = await chargers.show_charger(ctx, cb)
        one = next(c for c in shown["connectors"] if c["connector_id"] == 1)
        assert (one["status"], one["error_code"], one["info"]) == (
            "Faulted",
            "OtherError",
            "RCD tripped",
        )
        assert one["session"]["transaction_id"] == start.transaction_id
        async with session_factory() as s:
            tx = await s.get(Transaction, start.transaction_id)
        assert tx is not None and one["session"]["workflow_id"] == tx.workflow_id
        assert next(c for c in shown["connectors"] if c["connector_id"] == 2)["session"] is None

    with pytest.raises(Conflict):
        await chargers.add_charger(ctx, operator, new(cb))
    # The plaintext is nowhere but in the answer.
    assert all(password not in str(row.details) for row in await audit_of(session_factory, cb))
    async with session_factory() as s:
        row = await s.get(Charger, cb)
        assert row is not None and row.password_hash and password not in row.password_hash


async def test_rotation_accepts_the_old_password_until_the_new_one_is_used(
    gateway: Gateway,
    ctx: ServiceContext,
    operator: Actor,
    session_factory: SessionFactory,
) -> None:
    cb = uid("FL-")
    old = (await chargers.add_charger(ctx, operator, new(cb)))["password"]
    async with charger_session(gateway, cb, password=old) as cp:
        assert (await cp.call(call.Heartbeat())).current_time
        rotated = await chargers.rotate_password(ctx, operator, cb)
        # Connected: the push is sent (this test charger does not implement ChangeConfiguration:
        # the operation fails and the operator is told to set the password on the charger).
        assert rotated["pending"] is True and rotated["push"]["status"] == "failed"
    fresh = rotated["password"]
    assert fresh != old
    shown = await chargers.show_charger(ctx, cb)
    assert shown["authentication"]["password_rotation_pending"] is True

    # The charger reconnects with the old password (it has not been reconfigured yet): accepted.
    async with charger_session(gateway, cb, password=old) as cp:
        assert (await cp.call(call.Heartbeat())).current_time
    # Then with the new one: accepted, and from now on the only one.
    async with charger_session(gateway, cb, password=fresh) as cp:
        assert (await cp.call(call.Heartbeat())).current_time
    assert await handshake_status(gateway, cb, authorization=basic(cb, old)) == 401
    assert await handshake_status(gateway, cb, authorization=basic(cb, fresh)) == 101
    shown = await chargers.show_charger(ctx, cb)
    assert shown["authentication"]["password_rotation_pending"] is False

    actions = [row.action for row in await audit_of(session_factory, cb)]
    assert "charger.password_rotated" in actions and "charger.password_promoted" in actions
    assert all(
        old not in str(row.details) and fresh not in str(row.details)
        for row in await audit_of(session_factory, cb)
    )


async def test_a_passwordless_charger_gets_a_password_by_rotation(
    gateway: Gateway,
    ctx: ServiceContext,
    operator: Actor,
    session_factory: SessionFactory,
) -> None:
    """A charger admitted without credentials (the operator's exemption) keeps connecting as
    before until it first uses the password it was given; then it needs it."""
    cb = uid("FL-")
    await chargers.add_charger(ctx, operator, new(cb))
    async with session_factory.begin() as s:
        await s.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(password_hash=None, allow_unauthenticated=True)
        )
    fresh = (await chargers.rotate_password(ctx, operator, cb))["password"]
    assert await handshake_status(gateway, cb) == 101
    assert await handshake_status(gateway, cb, authorization=basic(cb, fresh)) == 101
    shown = await chargers.show_charger(ctx, cb)
    assert shown["authentication"]["mode"] == "password"
    assert await handshake_status(gateway, cb) == 401


async def test_a_decommissioned_charger_is_refused_and_its_live_socket_closed(
    gateway: Gateway,
    ctx: ServiceContext,
    operator: Actor,
    session_factory: SessionFactory,
) -> None:
    cb = uid("FL-")
    password = (await chargers.add_charger(ctx, operator, new(cb)))["password"]
    async with charger_session(gateway, cb, password=password) as cp:
        assert (await cp.call(call.Heartbeat())).current_time
        gone = await chargers.decommission_charger(ctx, operator, cb)
        assert gone["decommissioned_at"] is not None

        async def closed() -> bool:
            # The gateway checks at the charger's next message (at most one check per 5 s).
            try:
                await asyncio.wait_for(cp.call(call.Heartbeat()), 5)
            except (ConnectionClosed, TimeoutError):
                return True
            await asyncio.sleep(1)
            return False

        await eventually(closed, timeout=40)
    assert await handshake_status(gateway, cb, authorization=basic(cb, password)) == 403

    listed = [c["charge_box_id"] for c in await chargers.list_chargers(ctx)]
    assert cb not in listed
    everything = await chargers.list_chargers(ctx, include_decommissioned=True)
    assert cb in [c["charge_box_id"] for c in everything]
    with pytest.raises(Conflict):
        await chargers.decommission_charger(ctx, operator, cb)
    with pytest.raises(Conflict):
        await chargers.rotate_password(ctx, operator, cb)
    async with session_factory() as s:
        assert await s.get(Charger, cb) is not None  # the row and its history stay


async def test_refused_unknown_chargers_are_listed_until_added(
    gateway: Gateway,
    ctx: ServiceContext,
    operator: Actor,
    session_factory: SessionFactory,
) -> None:
    cb = uid("NEW-")
    assert await handshake_status(gateway, cb, source="127.0.0.7") == 404
    assert await handshake_status(gateway, cb, source="127.0.0.7") == 404
    pending = {p["charge_box_id"]: p for p in await chargers.list_pending(ctx)}
    assert cb in pending
    assert pending[cb]["last_address"] == "127.0.0.7"
    assert pending[cb]["attempts"] >= 1
    assert pending[cb]["first_seen_at"] <= pending[cb]["last_seen_at"]
    async with session_factory() as s:
        assert await s.get(Charger, cb) is None  # nothing auto-registers outside dev

    await chargers.add_charger(ctx, operator, new(cb))
    assert cb not in [p["charge_box_id"] for p in await chargers.list_pending(ctx)]
    added = [r for r in await audit_of(session_factory, cb) if r.action == "charger.added"]
    assert added and added[0].details["was_pending"] is True


async def test_ids_no_charger_could_have_are_refused_without_a_trace(
    gateway: Gateway, ctx: ServiceContext
) -> None:
    """Control characters in a made-up id would reach an operator's terminal: not recorded."""
    marker = uid("ESC")
    assert await handshake_status(gateway, f"%1b%5b31m{marker}") == 404
    assert await handshake_status(gateway, f"{marker}%C3%A9") == 404
    assert not [p for p in await chargers.list_pending(ctx) if marker in p["charge_box_id"]]


async def test_the_pending_list_is_bounded(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    recorder = gateway.ocpp.pending
    async with session_factory() as s:
        rows = len((await s.scalars(select(PendingCharger.charge_box_id))).all())
    recorder._max_rows = rows + 2
    ids = [uid("FLOOD-") for _ in range(5)]
    for cb in ids:
        assert await handshake_status(gateway, cb) == 404
    # Repeats of one id within the interval are counted in memory, not written.
    for _ in range(3):
        assert await handshake_status(gateway, ids[0]) == 404
    async with session_factory() as s:
        kept = (
            await s.scalars(
                select(PendingCharger.charge_box_id).where(PendingCharger.charge_box_id.in_(ids))
            )
        ).all()
    assert len(kept) == 2


async def test_bad_input_and_unknown_references(ctx: ServiceContext, operator: Actor) -> None:
    with pytest.raises(InvalidInput) as bad:
        await chargers.add_charger(ctx, operator, new(uid("FL-"), site="no-such-site"))
    assert bad.value.issues[0]["path"] == ["site"]
    with pytest.raises(InvalidInput):
        await chargers.add_charger(ctx, operator, new(uid("FL-"), tariff="no-such-tariff"))
    with pytest.raises(NotFound):
        await chargers.show_charger(ctx, uid("NOPE-"))
    with pytest.raises(NotFound):
        await chargers.rotate_password(ctx, operator, uid("NOPE-"))

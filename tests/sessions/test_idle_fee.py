"""The idle fee end to end: a real ``ocpp`` 1.6 charge point, the gateway, the real worker and
the Lago sandbox. The session stops, the car stays plugged in (Finishing, SuspendedEV) past the
grace period, then the connector is Available: one idle-fee line in ``idle_fees`` and one fee on
the ``idle_fee`` add-on in Lago, never two. Within the grace nothing is billed; the cap is billed
as soon as it is reached. Everything reaches the workflow through the gateway's event registry
(``gateway/subscribers.py``).

The charger's timestamps put the session in the past (the idle time is measured by them), so no
test waits for real minutes to pass.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from activities.idle_fee import IdleFeeActivities, idle_fee_marker
from activities.lago import LagoBilling
from cli.sessions import print_story, session_story
from config.settings import Settings
from db.engine import SessionFactory
from db.idle_fee_models import IdleFeeLine
from db.models import Charger, Connector, GatewayOutbox, Tariff
from gateway.main import Gateway
from services import driver_views
from services.context import ServiceContext
from tests.billing.conftest import seed_driver
from tests.gateway.conftest import FAST_FORWARD_W
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox
from tests.sessions.conftest import Station, session_row, station, transaction
from workflows.idle_fee_messages import SendIdleFeeInput, idle_fee_workflow_id

pytestmark = pytest.mark.timeout(240)


async def idle_priced_charger(
    sf: SessionFactory, *, grace_min: int, price: int, cap: int | None = None
) -> str:
    charge_box_id = f"CB-{uuid.uuid4().hex[:10]}"
    async with sf.begin() as db:
        tariff_id = await db.scalar(
            insert(Tariff)
            .values(
                code=f"t-{charge_box_id}",
                currency="EUR",
                price_per_kwh_minor=30,
                idle_grace_minutes=grace_min,
                idle_price_per_minute_minor=price,
                idle_fee_cap_minor=cap,
            )
            .returning(Tariff.id)
        )
        db.add(
            Charger(
                charge_box_id=charge_box_id,
                tariff_id=tariff_id,
                allow_unauthenticated=True,
                max_power_w=FAST_FORWARD_W,
            )
        )
        await db.flush()
        db.add(Connector(charge_box_id=charge_box_id, connector_id=1))
    return charge_box_id


def ts(at: datetime) -> str:
    return at.isoformat()


async def a_session_then_idle(
    st: Station, id_tag: str, base: datetime, after_stop: list[tuple[str, int]]
) -> int:
    """Start at ``base``, charge, stop 30 minutes later; then each (status, minutes after the
    stop), all stamped by the charger's clock. The transaction id."""
    await st.boot()
    assert await st.tap(id_tag) == "Accepted"
    answer = await st.call(
        call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=0, timestamp=ts(base))
    )
    tx = int(answer.transaction_id)
    await st.call(
        call.StatusNotification(
            connector_id=1,
            error_code="NoError",
            status="Charging",
            timestamp=ts(base + timedelta(minutes=1)),
        )
    )
    stopped = base + timedelta(minutes=30)
    await st.call(
        call.StopTransaction(
            meter_stop=6000, timestamp=ts(stopped), transaction_id=tx, reason="Local"
        )
    )
    for status, minutes in after_stop:
        await st.call(
            call.StatusNotification(
                connector_id=1,
                error_code="NoError",
                status=status,
                timestamp=ts(stopped + timedelta(minutes=minutes)),
            )
        )
    return tx


async def line_when(
    sf: SessionFactory, workflow_id: str, *, sent: bool, timeout: float = 90
) -> IdleFeeLine:
    async def check() -> IdleFeeLine:
        async with sf() as db:
            line = await db.get(IdleFeeLine, workflow_id)
        assert line is not None, "no idle-fee line yet"
        if sent:
            assert line.lago_invoice_id is not None, "not in Lago yet"
        return line

    return await eventually(check, timeout=timeout)


def idle_fees_in_lago(lago: RunningSandbox, customer: str) -> list[dict[str, Any]]:
    """Every fee on the ``idle_fee`` add-on of the customer's one-off invoices."""
    listing = lago.api(
        "GET", "/invoices", params={"external_customer_id": customer, "invoice_type": "one_off"}
    )
    assert listing.status_code == 200, listing.text
    fees = []
    for invoice in listing.json()["invoices"]:
        detail = lago.api("GET", f"/invoices/{invoice['lago_id']}").json()["invoice"]
        for fee in detail.get("fees") or []:
            if fee["item"]["code"] == "idle_fee":
                fees.append({**fee, "invoice": detail["lago_id"]})
    return fees


async def no_temporal() -> Any:
    raise AssertionError("the session views read PostgreSQL only")


def lago_billing(settings: Settings, sf: SessionFactory) -> LagoBilling:
    return LagoBilling(settings, sf)


async def test_idle_past_the_grace_is_one_line_in_lago(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    stack_settings: Settings,
    lago: RunningSandbox,
) -> None:
    sf = session_factory
    driver = await seed_driver(sf, lago_billing(stack_settings, sf), mode="per_session")
    st = station(stack, stations, await idle_priced_charger(sf, grace_min=10, price=12))
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    # Plugged in for 40 minutes after the stop, then unplugged.
    tx = await a_session_then_idle(
        st, driver.id_tag, base, [("Finishing", 0), ("SuspendedEV", 1), ("Available", 40)]
    )
    workflow_id = (await transaction(sf, tx)).workflow_id

    line = await line_when(sf, workflow_id, sent=True)
    # 40 minutes idle, 10 free: 30 minutes at 12.
    assert (line.end_reason, line.idle_s, line.billed_s) == ("available", 2400, 1800)
    assert (line.amount_minor, line.currency, line.capped) == (360, "EUR", False)
    assert line.line_id == f"{workflow_id}:idle-fee"
    assert line.lago_customer_external_id == driver.public_id

    [fee] = idle_fees_in_lago(lago, driver.public_id)
    assert fee["amount_cents"] == 360 and fee["invoice"] == line.lago_invoice_id
    assert idle_fee_marker(workflow_id) in fee["description"]

    # The session views show it: `polaris sessions show` and the driver's session detail.
    async with sf() as db:
        story = await session_story(db, workflow_id)
    assert story is not None and story["idle_fee"]["amount_minor"] == 360
    assert story["idle_fee"]["lago_invoice_id"] == line.lago_invoice_id
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_story({**story, "workflow": {"status": "COMPLETED"}})
    [idle_line] = [x for x in printed.getvalue().splitlines() if x.startswith("idle fee")]
    assert "40 min 0 s plugged in after the stop (available)" in idle_line
    assert f"sent={line.invoice_number}" in idle_line
    ctx = ServiceContext(settings=stack_settings, sessions=sf, temporal=no_temporal)
    session = await session_row(sf, workflow_id)
    assert session is not None and session.user_id is not None
    detail = await driver_views.session_detail(ctx, session.user_id, workflow_id)
    assert detail["idle_fee"]["amount_minor"] == 360 and detail["idle_fee"]["billed"]
    assert "lago_customer_external_id" not in detail["idle_fee"]

    # Exactly once: a retried send, and a send whose earlier answer was lost, find the invoice.
    activities = IdleFeeActivities(stack_settings, sf)
    again = await activities.send(SendIdleFeeInput(session_workflow_id=workflow_id))
    assert (again.status, again.lago_invoice_id) == ("existing", line.lago_invoice_id)
    async with sf.begin() as db:
        await db.execute(
            update(IdleFeeLine)
            .where(IdleFeeLine.session_workflow_id == workflow_id)
            .values(lago_invoice_id=None, sent_at=None)
        )
    lost = await activities.send(SendIdleFeeInput(session_workflow_id=workflow_id))
    assert (lost.status, lost.lago_invoice_id) == ("existing", line.lago_invoice_id)

    # The next driver plugs in: the status reaches the finished workflow's id and is dropped
    # (the route may not restart it), nothing is billed again.
    await st.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))

    async def delivered() -> bool:
        async with sf() as db:
            pending = await db.scalar(
                select(GatewayOutbox.id).where(
                    GatewayOutbox.workflow_id == idle_fee_workflow_id(workflow_id),
                    GatewayOutbox.delivered_at.is_(None),
                )
            )
        return pending is None

    await eventually(delivered, timeout=30)
    assert len(idle_fees_in_lago(lago, driver.public_id)) == 1
    async with sf() as db:
        lines = (
            await db.scalars(
                select(IdleFeeLine).where(IdleFeeLine.session_workflow_id == workflow_id)
            )
        ).all()
    assert len(lines) == 1 and lines[0].amount_minor == 360


async def test_freed_within_the_grace_bills_nothing(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    stack_settings: Settings,
    lago: RunningSandbox,
) -> None:
    sf = session_factory
    driver = await seed_driver(sf, lago_billing(stack_settings, sf), mode="per_session")
    st = station(stack, stations, await idle_priced_charger(sf, grace_min=15, price=50))
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    tx = await a_session_then_idle(st, driver.id_tag, base, [("Finishing", 0), ("Available", 9)])
    workflow_id = (await transaction(sf, tx)).workflow_id

    line = await line_when(sf, workflow_id, sent=False)
    assert (line.end_reason, line.idle_s, line.amount_minor) == ("available", 540, 0)
    assert line.lago_invoice_id is None
    assert idle_fees_in_lago(lago, driver.public_id) == []


async def test_the_cap_is_billed_once_it_is_reached(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    stack_settings: Settings,
    lago: RunningSandbox,
) -> None:
    sf = session_factory
    driver = await seed_driver(sf, lago_billing(stack_settings, sf), mode="per_session")
    st = station(stack, stations, await idle_priced_charger(sf, grace_min=0, price=10, cap=150))
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    # Still plugged in two hours after the stop: 1200 uncapped, 150 with the cap.
    tx = await a_session_then_idle(st, driver.id_tag, base, [("SuspendedEV", 0)])
    workflow_id = (await transaction(sf, tx)).workflow_id

    line = await line_when(sf, workflow_id, sent=True)
    assert (line.end_reason, line.amount_minor, line.capped) == ("cap_reached", 150, False)
    [fee] = idle_fees_in_lago(lago, driver.public_id)
    assert fee["amount_cents"] == 150

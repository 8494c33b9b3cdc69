"""Unsent billing lines: a line Lago refuses for good is alerted on (ERROR log, one operator
notification), listed, and sent again once the cause is fixed — exactly once in Lago.

Real session workflow, real worker, the Lago sandbox (its refusal: the customer has no
subscription). The CLI and the API route are thin over the same service functions.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.idle_fee import IdleFeeActivities
from activities.lago import EnsureSubscriptionInput, LagoBilling, UpsertCustomerInput
from cli.main import build_parser
from config.settings import Settings
from db.billing_models import Notification
from db.engine import SessionFactory
from db.idle_fee_models import IdleFeeLine
from db.models import AuditLog, Charger, ChargingSession, EvCard, Transaction, UserMapping
from domain.idle_fee import IdleFee
from services import billing_unsent
from services.actor import Actor
from services.context import ServiceContext
from tests.billing.test_session_lago import (  # noqa: F401  (fixtures)
    fake_gateway,
    lago_transaction_ids,
    lago_worker,
    seed,
)
from tests.sandbox.conftest import RunningSandbox
from tests.sessions.test_idle_fee import idle_fees_in_lago
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import started, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.idle_fee_messages import RecordIdleFeeInput, SendIdleFeeInput
from workflows.messages import TransactionStopped

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)


async def test_refused_lines_are_alerted_listed_and_resent_once(
    temporal_client: Client,
    lago_worker: Worker,  # noqa: F811
    task_queue: str,
    seed: Seed,  # noqa: F811
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_settings: Settings,
    lago_sandbox: RunningSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A driver whose Lago customer has no subscription yet: Lago cannot take usage for them.
    public_id = uuid.uuid4().hex[:8].upper()
    id_tag = f"U{public_id}"
    async with session_factory() as db, db.begin():
        db.add(EvCard(id_tag=id_tag))
        await db.flush()
        db.add(UserMapping(user_id=f"user-{public_id}", public_id=public_id, id_tag=id_tag))
    await billing.upsert_customer(UpsertCustomerInput(public_id=public_id, currency="EUR"))

    cb = await seed.charger()
    caplog.set_level(logging.ERROR, logger="activities.lago")
    _, handle = await tap(temporal_client, task_queue, cb, id_tag)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, id_tag, 0))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=4200, stopped_at=at(5)),
    )
    final = await handle.result()
    assert "lago_unsent" in final.flags

    # Alerted: an ERROR log and one operator notification (deduplicated per session).
    assert any(handle.id in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    async with session_factory() as db:
        notes = (
            await db.scalars(select(Notification).where(Notification.kind == "billing.unsent"))
        ).all()
    mine = [n for n in notes if n.data.get("session") == handle.id]
    assert len(mine) == 1 and mine[0].audience == "operators"

    ctx = ServiceContext(settings=lago_settings, sessions=session_factory, temporal=None)  # type: ignore[arg-type]
    actor = Actor(id="cli:test", role="admin", source="test")
    listed = await billing_unsent.list_unsent(ctx, actor, session=handle.id)
    assert [(r["session"], r["kind"], r["energy_wh"]) for r in listed] == [
        (handle.id, "final", 4200)
    ]
    assert handle.id in {r["session"] for r in await billing_unsent.list_unsent(ctx, actor)}

    # Still refused: nothing changes, the answer says so.
    again = await billing_unsent.resend_unsent(ctx, actor, session=handle.id)
    assert again["sessions"][0]["ok"] is False

    # The cause fixed in Lago, the resend goes through; a second resend sends nothing more.
    sub = await billing.ensure_subscription(EnsureSubscriptionInput(public_id=public_id))
    done = await billing_unsent.resend_unsent(ctx, actor, session=handle.id)
    assert done["sessions"] == [
        {"session": handle.id, "ok": True, "sent": 1, "duplicates": 0, "left": 0}
    ]
    assert listed[0]["last_error"] is not None  # the alert's reason
    assert await billing_unsent.list_unsent(ctx, actor, session=handle.id) == []
    assert (await billing_unsent.resend_unsent(ctx, actor, session=handle.id))["sessions"] == []
    assert lago_transaction_ids(lago_sandbox, sub.external_id) == {f"{handle.id}:1"}
    async with session_factory() as db:
        session_row = await db.get(ChargingSession, handle.id)
        audits = (
            await db.scalars(
                select(AuditLog).where(
                    AuditLog.action == "billing.unsent_resent", AuditLog.subject == handle.id
                )
            )
        ).all()
    assert session_row is not None and "lago_unsent" not in session_row.flags
    assert len(audits) == 3


async def test_refused_idle_fee_is_alerted_listed_and_resent_once(
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_settings: Settings,
    lago_sandbox: RunningSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An idle fee left unsent (no Lago customer, then Lago refusing it) is alerted once per
    session, listed with the usage lines (``kind`` = ``idle_fee``) with its last error, and
    billed exactly once when resent after the cause is fixed. The real ``idle_fee_record`` and
    ``idle_fee_send`` activity code, real PostgreSQL, the Lago sandbox."""
    sf = session_factory
    public_id = uuid.uuid4().hex[:8].upper()
    id_tag, charge_box_id = f"I{public_id}", f"CB-{public_id}"
    workflow_id = f"session-idle-{public_id}"
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with sf() as db, db.begin():
        db.add(EvCard(id_tag=id_tag))
        db.add(Charger(charge_box_id=charge_box_id))
        await db.flush()
        db.add(
            Transaction(
                charge_box_id=charge_box_id,
                connector_id=1,
                id_tag=id_tag,
                workflow_id=workflow_id,
                meter_start_wh=0,
                meter_stop_wh=5000,
                started_at=stopped - timedelta(minutes=30),
                stopped_at=stopped,
            )
        )
    activities = IdleFeeActivities(lago_settings, sf)
    await activities.record(
        RecordIdleFeeInput(
            session_workflow_id=workflow_id,
            charge_box_id=charge_box_id,
            connector_id=1,
            tariff_version_id=None,
            stopped_at=stopped,
            ended_at=stopped + timedelta(minutes=40),
            end_reason="available",
            fee=IdleFee(currency="EUR", idle_s=2400, billed_s=1800, amount_minor=360, capped=False),
        )
    )
    ctx = ServiceContext(settings=lago_settings, sessions=sf, temporal=None)  # type: ignore[arg-type]
    actor = Actor(id="cli:test", role="admin", source="test")
    # In flight (the workflow has not given up on it): not listed.
    assert await billing_unsent.list_unsent(ctx, actor, session=workflow_id) == []

    # The card has no Lago customer: the send leaves it unsent, alerted and listed.
    caplog.set_level(logging.ERROR, logger="polaris.idle_fee")
    first = await activities.send(SendIdleFeeInput(session_workflow_id=workflow_id))
    assert first.status == "no_customer"
    assert any(workflow_id in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    [row] = await billing_unsent.list_unsent(ctx, actor, session=workflow_id)
    assert (row["kind"], row["amount_minor"], row["currency"], row["customer"]) == (
        "idle_fee",
        360,
        "EUR",
        None,
    )
    assert row["transaction_id"] == f"{workflow_id}:idle-fee"
    assert row["last_error"].startswith("no Lago customer")
    assert workflow_id in {r["session"] for r in await billing_unsent.list_unsent(ctx, actor)}

    # The card gets its mapping and its Lago customer; Lago refuses the resend (one 422).
    async with sf() as db, db.begin():
        db.add(
            UserMapping(
                user_id=f"user-{public_id}",
                public_id=public_id,
                id_tag=id_tag,
                lago_customer_external_id=public_id,
                billing_mode="per_session",
            )
        )
    await billing.upsert_customer(UpsertCustomerInput(public_id=public_id, currency="EUR"))
    fault = lago_sandbox.admin(
        "POST",
        "/faults",
        json={"path_prefix": "/api/v1/invoices", "method": "POST", "status": 422, "count": 1},
    )
    assert fault.status_code == 201, fault.text
    try:
        refused = await billing_unsent.resend_unsent(ctx, actor, session=workflow_id)
    finally:
        lago_sandbox.admin("DELETE", "/faults")
    [result] = refused["sessions"]
    assert (result["kind"], result["ok"]) == ("idle_fee", False)
    assert "LagoRejected" in result["error"]
    [row] = await billing_unsent.list_unsent(ctx, actor, session=workflow_id)
    assert row["last_error"].startswith("LagoRejected")
    assert idle_fees_in_lago(lago_sandbox, public_id) == []

    # Still one operators' notification for the session, however often it was refused.
    async with sf() as db:
        notes = (
            await db.scalars(select(Notification).where(Notification.kind == "billing.unsent"))
        ).all()
    mine = [n for n in notes if n.data.get("session") == workflow_id]
    assert len(mine) == 1 and mine[0].audience == "operators"

    # The cause gone: the resend bills it once; a second resend does nothing.
    done = await billing_unsent.resend_unsent(ctx, actor, session=workflow_id)
    [result] = done["sessions"]
    assert (result["kind"], result["ok"], result["status"]) == ("idle_fee", True, "created")
    assert await billing_unsent.list_unsent(ctx, actor, session=workflow_id) == []
    assert (await billing_unsent.resend_unsent(ctx, actor, session=workflow_id))["sessions"] == []
    [fee] = idle_fees_in_lago(lago_sandbox, public_id)
    assert fee["amount_cents"] == 360 and fee["invoice"] == result["lago_invoice_id"]
    async with sf() as db:
        line = await db.get(IdleFeeLine, workflow_id)
    assert line is not None and line.sent_at is not None
    assert line.lago_invoice_id == result["lago_invoice_id"]


def test_cli_commands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["billing", "unsent", "list", "--session", "s-1", "--json"])
    assert (args.unsent_command, args.session, args.json) == ("list", "s-1", True)
    args = parser.parse_args(["billing", "unsent", "resend"])
    assert (args.unsent_command, args.session) == ("resend", None)

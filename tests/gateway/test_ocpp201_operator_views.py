"""What an operator sees and sets for an OCPP 2.0.1 charger: NotifyEvent and
SecurityEventNotification stored (audit log) and shown by ``chargers show`` / the API detail (a
secret variable's value never stored); ``free_vend`` and ``registration_status`` set by an admin
through ``polaris chargers set`` (audited), the next boot answered accordingly (real gateway,
real v201 station, the real ``polaris`` command)."""

from __future__ import annotations

import json

import pytest
from ocpp.v201 import call
from pydantic import ValidationError
from sqlalchemy import select
from temporalio.client import Client

from db.engine import SessionFactory
from db.models import AuditLog, Charger
from gateway.main import Gateway
from services import chargers
from services.actor import Actor
from services.context import ServiceContext
from tests.gateway.conftest import seed_charger
from tests.gateway.station201 import station
from tests.helpers import ocpp_ts
from tests.operations.test_api_and_cli import polaris

ADMIN = Actor(id="user:test-admin", role="admin", source="203.0.113.9")
BOOT = call.BootNotification(charging_station={"model": "M", "vendorName": "V"}, reason="PowerUp")


@pytest.fixture
def ctx(gateway: Gateway, session_factory: SessionFactory) -> ServiceContext:
    async def no_temporal() -> Client:
        raise AssertionError("not needed")

    return ServiceContext(settings=gateway.settings, sessions=session_factory, temporal=no_temporal)


def _event(event_id: int, variable: str, value: str, **extra: object) -> dict[str, object]:
    return {
        "eventId": event_id,
        "timestamp": ocpp_ts(),
        "trigger": "Delta",
        "actualValue": value,
        "eventNotificationType": "HardWiredNotification",
        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": variable},
        **extra,
    }


async def test_notify_events_and_security_events_are_stored_and_shown(
    gateway: Gateway, session_factory: SessionFactory, ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    async with station(gateway, cb) as cp:
        await cp.call(BOOT)
        await cp.call(
            call.NotifyEvent(
                generated_at=ocpp_ts(),
                seq_no=0,
                event_data=[
                    _event(1, "AvailabilityState", "Faulted", techCode="E42", cleared=False),
                    _event(2, "BasicAuthPassword", "leaked-secret-value"),
                ],
            )
        )
        await cp.call(
            call.SecurityEventNotification(
                type="TamperDetectionActivated", timestamp=ocpp_ts(), tech_info="lid open"
            )
        )
    view = await chargers.show_charger(ctx, cb)
    [security] = view["security_events"]
    assert (security["type"], security["tech_info"]) == ("TamperDetectionActivated", "lid open")
    events = sorted(view["events"], key=lambda e: e["event_id"])
    assert [(e["variable"], e["actual_value"]) for e in events] == [
        ("AvailabilityState", "Faulted"),
        ("BasicAuthPassword", "***"),
    ]
    assert events[0]["tech_code"] == "E42" and events[0]["evse"] == {"id": 1, "connectorId": 1}
    async with session_factory() as s:
        stored = (await s.scalars(select(AuditLog).where(AuditLog.subject == cb))).all()
    assert all("leaked-secret-value" not in str(a.details) for a in stored)

    shown = await polaris(gateway.settings, "chargers", "show", cb)
    assert shown.returncode == 0, shown.stderr
    assert "TamperDetectionActivated lid open" in shown.stdout
    assert "Connector.AvailabilityState = Faulted" in shown.stdout


async def test_an_admin_sets_free_vend_and_the_registration_status(
    gateway: Gateway, session_factory: SessionFactory, ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    done = await polaris(
        gateway.settings, "chargers", "set", cb,
        "--registration-status", "Pending", "--free-vend", "true", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    charger = json.loads(done.stdout)["charger"]
    assert (charger["registration_status"], charger["free_vend"]) == ("Pending", True)
    async with station(gateway, cb) as cp:
        assert (await cp.call(BOOT)).status == "Pending"
    await chargers.set_charger(
        ctx, ADMIN, cb, chargers.ChargerPatch(registration_status="Accepted")
    )
    async with station(gateway, cb) as cp:
        assert (await cp.call(BOOT)).status == "Accepted"
    async with session_factory() as s:
        row = await s.get(Charger, cb)
        audit = (
            await s.scalars(
                select(AuditLog)
                .where(AuditLog.subject == cb, AuditLog.action == "charger.updated")
                .order_by(AuditLog.id)
            )
        ).all()
    assert row is not None and row.free_vend and row.registration_status == "Accepted"
    assert [(a.details["before"], a.details["after"]) for a in audit] == [
        (
            {"free_vend": False, "registration_status": "Accepted"},
            {"free_vend": True, "registration_status": "Pending"},
        ),
        ({"registration_status": "Pending"}, {"registration_status": "Accepted"}),
    ]
    assert audit[0].actor.startswith("cli:") and audit[1].actor == ADMIN.id
    with pytest.raises(ValidationError):
        chargers.ChargerPatch.model_validate({"registration_status": "Maybe"})
    done = await polaris(gateway.settings, "chargers", "set", cb, "--registration-status", "Maybe")
    assert done.returncode == 2 and "Maybe" in done.stderr

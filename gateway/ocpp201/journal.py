"""What 2.0.1 provisioning messages write (each in one short database transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import SessionFactory
from db.events import record_event
from db.models import AuditLog, Charger, Connector
from db.ocpp201_models import Ocpp201DeviceVariable
from domain.events import CHARGER_STATUS_CHANGED


async def registration_status(sf: SessionFactory, charge_box_id: str) -> str:
    async with sf() as s:
        status = await s.scalar(
            select(Charger.registration_status).where(Charger.charge_box_id == charge_box_id)
        )
    return status or "Accepted"


async def record_status(
    sf: SessionFactory,
    charge_box_id: str,
    *,
    evse_id: int,
    connector_id: int,
    status: str,
    status_at: datetime,
) -> None:
    """A 2.0.1 connector status (Available / Occupied / Reserved / Unavailable / Faulted).

    ``connectors`` is keyed by the EVSE id (the session's connector in 2.0.1); charging states
    reach the session from TransactionEvent, never from here.
    """
    async with sf.begin() as s:
        values = dict(status=status, error_code="NoError", status_at=status_at, info=None)
        applied = await s.scalar(
            pg_insert(Connector)
            .values(charge_box_id=charge_box_id, connector_id=evse_id, **values)
            .on_conflict_do_update(
                index_elements=[Connector.charge_box_id, Connector.connector_id],
                set_={**values, "updated_at": func.now()},
                where=(Connector.status_at.is_(None)) | (Connector.status_at <= status_at),
            )
            .returning(Connector.connector_id)
        )
        if applied is not None:
            await record_event(
                s,
                CHARGER_STATUS_CHANGED,
                {
                    "charge_box_id": charge_box_id,
                    "connector_id": evse_id,
                    "evse_connector_id": connector_id,
                    "status": status,
                    "error_code": "NoError",
                    "at": status_at.isoformat(),
                },
                subject=charge_box_id,
                charge_box_id=charge_box_id,
            )


async def audit(
    sf: SessionFactory, charge_box_id: str, action: str, details: dict[str, Any]
) -> None:
    async with sf.begin() as s:
        await s.execute(
            insert(AuditLog).values(
                actor="gateway", action=action[:64], subject=charge_box_id, details=details
            )
        )


SECRET_VARIABLES = frozenset({"basicauthpassword"})
# audit_log.action of one NotifyEvent eventData entry (shown by `polaris chargers show`).
AUDIT_CHARGER_EVENT = "charger.event"


def event_details(request: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """One NotifyEvent ``eventData`` entry as an audit row's details (a secret variable's value
    is never stored)."""
    component = item.get("component") or {}
    variable = item.get("variable") or {}
    value = item.get("actualValue")
    if str(variable.get("name", "")).lower() in SECRET_VARIABLES:
        value = "***"
    details: dict[str, Any] = {
        "event_id": item.get("eventId"),
        "timestamp": item.get("timestamp"),
        "trigger": item.get("trigger"),
        "component": component.get("name"),
        "variable": variable.get("name"),
        "actual_value": value,
        "notification_type": item.get("eventNotificationType"),
        "generated_at": request.get("generatedAt"),
        "seq_no": request.get("seqNo"),
    }
    for key, name in (
        ("techCode", "tech_code"),
        ("techInfo", "tech_info"),
        ("cleared", "cleared"),
        ("cause", "cause"),
        ("transactionId", "transaction_id"),
        ("variableMonitoringId", "variable_monitoring_id"),
    ):
        if key in item:
            details[name] = item[key]
    if "evse" in component:
        details["evse"] = component["evse"]
    if "instance" in component:
        details["component_instance"] = component["instance"]
    return details


async def record_events(sf: SessionFactory, charge_box_id: str, request: dict[str, Any]) -> int:
    """A NotifyEvent's entries into the audit log, one row each, in one transaction."""
    rows = [
        {
            "actor": "gateway",
            "action": AUDIT_CHARGER_EVENT,
            "subject": charge_box_id,
            "details": event_details(request, item),
        }
        for item in request.get("eventData", [])
    ]
    if rows:
        async with sf.begin() as s:
            await s.execute(insert(AuditLog), rows)
    return len(rows)


async def record_report(
    sf: SessionFactory,
    charge_box_id: str,
    *,
    request_id: int,
    report_data: list[dict[str, Any]],
    reported_at: datetime,
) -> int:
    """One NotifyReport part into the charger's device model (newest value wins). Returns how
    many attributes it wrote."""
    rows: list[dict[str, Any]] = []
    for item in report_data:
        component = item.get("component") or {}
        variable = item.get("variable") or {}
        evse = component.get("evse") or {}
        secret = str(variable.get("name", "")).lower() in SECRET_VARIABLES
        for attribute in item.get("variableAttribute") or []:
            value = attribute.get("value")
            rows.append(
                {
                    "charge_box_id": charge_box_id,
                    "component": component.get("name"),
                    "component_instance": component.get("instance") or "",
                    "evse_id": evse.get("id") or 0,
                    "connector_id": evse.get("connectorId") or 0,
                    "variable": variable.get("name"),
                    "variable_instance": variable.get("instance") or "",
                    "attribute_type": attribute.get("type") or "Actual",
                    "value": "***" if secret and value is not None else value,
                    "mutability": attribute.get("mutability"),
                    "characteristics": item.get("variableCharacteristics"),
                    "request_id": request_id,
                    "reported_at": reported_at,
                }
            )
    if not rows:
        return 0
    # One row per identity within a statement (ON CONFLICT cannot touch a row twice).
    unique = {tuple(r[k] for k in IDENTITY): r for r in rows}
    statement = pg_insert(Ocpp201DeviceVariable).values(list(unique.values()))
    async with sf.begin() as s:
        await s.execute(
            statement.on_conflict_do_update(
                constraint="uq_ocpp201_device_variables_identity",
                set_={
                    k: statement.excluded[k]
                    for k in ("value", "mutability", "characteristics", "request_id", "reported_at")
                },
            )
        )
    return len(unique)


IDENTITY = (
    "component",
    "component_instance",
    "evse_id",
    "connector_id",
    "variable",
    "variable_instance",
    "attribute_type",
)

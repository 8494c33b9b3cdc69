"""``polaris sessions list|show|start|stop|close``: the operator's view of charging sessions.

``list`` reads the ``charging_sessions`` read model; ``show`` adds the transaction journal (with
transactions the platform closed), the billing events and what Temporal says of the workflow.
``close`` force-closes a running session without the charger's consent (see docs/sessions.md).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.session_actions import SessionActionError, force_close
from config.settings import Settings
from config.temporal import connect
from db.engine import make_engine, make_session_factory
from db.models import BillingEvent, Charger, ChargingSession, MeterSample, Transaction
from services.chargers import CHARGER_AUTH_WARNINGS, charger_authentication
from services.tariffs import session_tariff
from workflows.messages import (
    QUERY_STATUS,
    SESSION_WORKFLOW,
    UPDATE_REMOTE_STOP,
    RemoteStopInput,
    RemoteStopResult,
    SessionInput,
    SessionStatus,
    remote_workflow_id,
)

LIST_COLUMNS = (
    "workflow_id",
    "state",
    "charge_box_id",
    "connector_id",
    "id_tag",
    "transaction_id",
    "energy_wh",
    "cost",
    "started_at",
    "end",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _session_dict(row: ChargingSession) -> dict[str, Any]:
    return {
        "workflow_id": row.workflow_id,
        "state": row.state,
        "charge_box_id": row.charge_box_id,
        "connector_id": row.connector_id,
        "id_tag": row.id_tag,
        "transaction_id": row.transaction_id,
        "energy_wh": row.energy_wh,
        "cost_minor": row.cost_minor,
        "currency": row.currency,
        "started_at": _iso(row.started_at),
        "stopped_at": _iso(row.stopped_at),
        "end_reason": row.end_reason,
        "flags": list(row.flags or []),
    }


def format_money(amount_minor: int, currency: str | None) -> str:
    if currency is None:
        return "-"
    return f"{amount_minor / 100:.2f} {currency}"


async def list_sessions(db: AsyncSession, limit: int) -> list[dict[str, Any]]:
    rows = (
        (
            await db.execute(
                select(ChargingSession)
                .order_by(
                    func.coalesce(ChargingSession.started_at, ChargingSession.updated_at).desc()
                )
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return [_session_dict(r) for r in rows]


async def session_story(db: AsyncSession, workflow_id: str) -> dict[str, Any] | None:
    row = await db.get(ChargingSession, workflow_id)
    if row is None:
        return None
    story = _session_dict(row)
    story["charger_authentication"] = charger_authentication(
        await db.get(Charger, row.charge_box_id)
    )
    # The tariff version the session is billed under (fixed when it was first priced).
    story["tariff"] = await session_tariff(db, row.tariff_version_id)
    transactions = (
        (
            await db.execute(
                select(Transaction)
                .where(Transaction.workflow_id == workflow_id)
                .order_by(Transaction.id)
            )
        )
        .scalars()
        .all()
    )
    story["transactions"] = [
        {
            "transaction_id": t.id,
            "meter_start_wh": t.meter_start_wh,
            "meter_stop_wh": t.meter_stop_wh,
            "started_at": _iso(t.started_at),
            "stopped_at": _iso(t.stopped_at),
            "stop_reason": t.stop_reason,
            "stop_flags": list(t.stop_flags or []),
            "closed_at": _iso(t.closed_at),
            "closed_reason": t.closed_reason,
        }
        for t in transactions
    ]
    tx_ids = [t.id for t in transactions]
    story["meter_samples"] = 0
    if tx_ids:
        story["meter_samples"] = (
            await db.execute(
                select(func.count())
                .select_from(MeterSample)
                .where(MeterSample.transaction_id.in_(tx_ids))
            )
        ).scalar_one()
    events = (
        (
            await db.execute(
                select(BillingEvent)
                .where(BillingEvent.workflow_id == workflow_id)
                .order_by(BillingEvent.sequence)
            )
        )
        .scalars()
        .all()
    )
    story["billing_events"] = [
        {
            "transaction_id": e.transaction_id,
            "kind": e.kind,
            "energy_wh": e.energy_wh,
            "amount_minor": e.amount_minor,
            "currency": e.currency,
            "occurred_at": _iso(e.occurred_at),
            "sent_at": _iso(e.sent_at),
        }
        for e in events
    ]
    return story


async def workflow_facts(settings: Settings, workflow_id: str) -> dict[str, Any]:
    try:
        client = await connect(settings)
        desc = await client.get_workflow_handle(workflow_id).describe()
    except Exception as exc:
        return {"status": "unknown", "error": f"{type(exc).__name__}: {exc}"[:200]}
    facts: dict[str, Any] = {
        "status": desc.status.name if desc.status else "unknown",
        "run_id": desc.run_id,
        "history_length": desc.history_length,
        "started": _iso(desc.start_time),
        "closed": _iso(desc.close_time),
    }
    if "temporal_address" in settings.embedded:
        facts["ui"] = (
            f"http://127.0.0.1:{settings.embedded_temporal_ui_port}/namespaces/"
            f"{settings.temporal_namespace}/workflows/{workflow_id}"
        )
    return facts


def _print_table(rows: list[dict[str, Any]]) -> None:
    cells = [
        [
            str(r["workflow_id"]),
            r["state"],
            r["charge_box_id"],
            str(r["connector_id"] or "-"),
            r["id_tag"] or "-",
            str(r["transaction_id"] or "-"),
            str(r["energy_wh"]),
            format_money(r["cost_minor"], r["currency"]),
            r["started_at"] or "-",
            _ending(r),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(LIST_COLUMNS)]
    print("  ".join(h.ljust(w) for h, w in zip(LIST_COLUMNS, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def _ending(row: dict[str, Any]) -> str:
    """How the session ended, and its flags: what an operator should look at."""
    flags = [f for f in row.get("flags", []) if f != row["end_reason"]]
    return " ".join([row["end_reason"] or "-", *(f"[{f}]" for f in flags)])


def print_story(story: dict[str, Any]) -> None:
    print(f"session      {story['workflow_id']}")
    print(
        f"state        {story['state']}"
        + (f" ({story['end_reason']})" if story["end_reason"] else "")
    )
    print(f"charger      {story['charge_box_id']} connector {story['connector_id'] or '-'}")
    warning = CHARGER_AUTH_WARNINGS.get(story["charger_authentication"])
    if warning:
        print(f"WARNING      charger {story['charge_box_id']} {warning}")
    print(f"idTag        {story['id_tag'] or '-'}")
    print(f"transaction  {story['transaction_id'] or '-'}")
    print(f"energy       {story['energy_wh']} Wh")
    print(f"cost         {format_money(story['cost_minor'], story['currency'])}")
    tariff = story.get("tariff")
    if tariff:
        print(
            f"tariff       {tariff['code']} version {tariff['version']} "
            f"(valid from {tariff['valid_from']})"
        )
    else:
        print("tariff       - (not priced yet)")
    print(f"started      {story['started_at'] or '-'}")
    print(f"stopped      {story['stopped_at'] or '-'}")
    if story["flags"]:
        # What an operator must look at before trusting the bill (docs/sessions.md, "Flags").
        print(f"flags        {', '.join(story['flags'])}")
    for t in story["transactions"]:
        if t["stopped_at"] is not None:
            status = "stopped" + (f": {t['stop_reason']}" if t["stop_reason"] else "")
            if t["stop_flags"]:
                status += f"; not trusted: {', '.join(t['stop_flags'])}"
            if t["closed_at"] is not None:
                status += f", after the platform closed it ({t['closed_reason']})"
        elif t["closed_at"] is not None:
            status = f"closed by the platform: {t['closed_reason']} at {t['closed_at']}"
        else:
            status = "open"
        print(
            f"journal      tx {t['transaction_id']}: {t['meter_start_wh']} → "
            f"{t['meter_stop_wh'] if t['meter_stop_wh'] is not None else '…'} Wh ({status})"
        )
    print(f"samples      {story['meter_samples']}")
    for e in story["billing_events"]:
        print(
            f"billing      {e['transaction_id']} {e['kind']} {e['energy_wh']} Wh "
            f"{format_money(e['amount_minor'], e['currency'])}"
            f" sent={e['sent_at'] or 'no'}"
        )
    wf = story["workflow"]
    print(
        f"workflow     {wf.get('status')} run {wf.get('run_id', '-')}, "
        f"{wf.get('history_length', '?')} events"
    )
    if "ui" in wf:
        print(f"history      {wf['ui']}")


async def start_remote(settings: Settings, args: argparse.Namespace) -> int:
    """Start a session remotely: the workflow pre-authorizes the card, then sends
    RemoteStartTransaction to the charger through the gateway that holds its socket."""
    request_id = args.request_id or uuid.uuid4().hex[:12]
    workflow_id = remote_workflow_id(args.charger, request_id)
    client = await connect(settings)
    try:
        await client.start_workflow(
            SESSION_WORKFLOW,
            SessionInput(
                charge_box_id=args.charger,
                id_tag=args.id_tag,
                connector_id=args.connector,
                origin="remote",
                **settings.session_timers(),
            ),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
        )
    except WorkflowAlreadyStartedError:
        print(f"session {workflow_id} was already requested")
        return 0
    status = await _first_answer(client, workflow_id, args.wait_s)
    if status is not None and status.state == "rejected":
        print(f"polaris: start refused: {status.end_reason or 'rejected'} ({workflow_id})")
        return 1
    print(workflow_id)
    return 0


async def _first_answer(client: Any, workflow_id: str, wait_s: float) -> SessionStatus | None:
    """Wait (up to ``wait_s``) until pre-authorization and the charger answered the start:
    the session is rejected, charging, or the charger accepted RemoteStartTransaction."""
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + wait_s
    status: SessionStatus | None = None
    while time.monotonic() < deadline:
        try:
            status = await handle.query(QUERY_STATUS, result_type=SessionStatus)
        except RPCError:
            status = None  # the worker has not picked the workflow up yet
        if status is not None and (
            status.state not in ("requested", "pre_authorized") or status.remote_start is not None
        ):
            return status
        await asyncio.sleep(0.5)
    return status


async def close_session(settings: Settings, args: argparse.Namespace) -> int:
    """Force-close a running session (the charger is offline, refuses, or forgot it)."""
    client = await connect(settings)
    try:
        result = await force_close(
            client,
            args.workflow_id,
            requested_by=f"cli:{getpass.getuser()}",
            reason=args.reason,
            energy_wh=args.energy_wh,
        )
    except SessionActionError as exc:
        print(f"polaris: cannot close {args.workflow_id}: {exc.message}")
        return 1
    if not result.accepted:
        print(f"close refused: {result.message}")
        return 1
    print(f"closed: {result.billed_energy_wh} Wh billed")
    return 0


async def stop_remote(settings: Settings, args: argparse.Namespace) -> int:
    """Ask a running session to stop (RemoteStopTransaction through its workflow)."""
    client = await connect(settings)
    try:
        result = await client.get_workflow_handle(args.workflow_id).execute_update(
            UPDATE_REMOTE_STOP,
            RemoteStopInput(requested_by=f"cli:{getpass.getuser()}", reason=args.reason),
            result_type=RemoteStopResult,
        )
    except (RPCError, WorkflowUpdateFailedError) as exc:
        print(f"polaris: cannot stop {args.workflow_id}: {exc}")
        return 1
    print("stop accepted" if result.accepted else f"stop refused: {result.message}")
    return 0 if result.accepted else 1


async def run_sessions_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.sessions_command == "start":
        return await start_remote(settings, args)
    if args.sessions_command == "stop":
        return await stop_remote(settings, args)
    if args.sessions_command == "close":
        return await close_session(settings, args)
    engine = make_engine(settings.require_database_url(), pool_size=1)
    try:
        async with make_session_factory(engine)() as db:
            if args.sessions_command == "list":
                rows = await list_sessions(db, args.limit)
                if args.json:
                    print(json.dumps(rows, indent=2))
                else:
                    _print_table(rows)
                return 0
            story = await session_story(db, args.workflow_id)
    finally:
        await engine.dispose()
    if story is None:
        print(f"polaris: no session {args.workflow_id!r}")
        return 1
    story["workflow"] = await workflow_facts(settings, args.workflow_id)
    if args.json:
        print(json.dumps(story, indent=2))
    else:
        print_story(story)
    return 0

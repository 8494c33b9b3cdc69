"""``polaris sessions list|show|timeline|start|stop|close``: operators and charging sessions.

``list`` reads the ``charging_sessions`` read model (filters as in ``GET /api/v1/sessions``);
``show`` (a workflow id or a transaction id) adds the transaction journal (with transactions the
platform closed), the meter samples, the billing events and what Temporal says of the workflow;
``timeline`` prints the workflow's history as a timeline (``services/timeline.py``).
``close`` force-closes a running session without the charger's consent (see docs/sessions.md).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.session_actions import SessionActionError, force_close
from cli.output import emit_json, fail
from cli.service_context import open_service_context
from cli.session_views import (
    add_protocols,
    format_money,
    iso,
    list_command,
    print_timeline,
    session_dict,
)
from config.settings import Settings
from config.temporal import connect
from db.models import Charger
from services import operator_views
from services.actor import Actor
from services.chargers import CHARGER_AUTH_WARNINGS, charger_authentication
from services.errors import NotFound, ServiceError
from services.idle_fees import session_idle_fee
from services.operator_views import (
    MAX_SAMPLES,
    billing_event_dict,
    billing_events_of,
    find_session,
    sample_dict,
    samples_of,
    session_transactions,
)
from services.session_list import SessionQuery, find_sessions
from services.tariffs import session_tariff
from services.timeline import ui_link
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


async def list_sessions(db: AsyncSession, limit: int) -> list[dict[str, Any]]:
    page = await find_sessions(db, SessionQuery(limit=limit))
    return await add_protocols(db, [session_dict(r) for r in page.rows])


async def session_story(db: AsyncSession, session_id: str) -> dict[str, Any] | None:
    """Everything about one session (by workflow or transaction id) the database knows."""
    row = await find_session(db, session_id)
    if row is None:
        return None
    [story] = await add_protocols(db, [session_dict(row)])
    story["charger_authentication"] = charger_authentication(
        await db.get(Charger, row.charge_box_id)
    )
    # The tariff version the session is billed under (fixed when it was first priced).
    story["tariff"] = await session_tariff(db, row.tariff_version_id)
    # The idle fee (a car left plugged in after the stop), once IdleFeeWorkflow recorded it.
    story["idle_fee"] = await session_idle_fee(db, row.workflow_id)
    story["transactions"] = [
        {
            "transaction_id": t.id,
            "meter_start_wh": t.meter_start_wh,
            "meter_stop_wh": t.meter_stop_wh,
            "started_at": iso(t.started_at),
            "stopped_at": iso(t.stopped_at),
            "stop_reason": t.stop_reason,
            "stop_flags": list(t.stop_flags or []),
            "closed_at": iso(t.closed_at),
            "closed_reason": t.closed_reason,
            # OCPP 2.0.1: the charger's own transaction id (NULL version = 1.6).
            "ocpp_version": t.ocpp_version or "1.6",
            "ocpp_transaction_id": t.ocpp_transaction_id,
        }
        for t in await session_transactions(db, row.workflow_id)
    ]
    samples = await samples_of(db, row.workflow_id, MAX_SAMPLES)
    story["meter_samples"] = len(samples)
    story["samples"] = [sample_dict(s) for s in samples]
    story["billing_events"] = [
        billing_event_dict(e) for e in await billing_events_of(db, row.workflow_id)
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
        "started": iso(desc.start_time),
        "closed": iso(desc.close_time),
    }
    link = ui_link(
        settings.temporal_ui_base(), settings.temporal_namespace, workflow_id, desc.run_id
    )
    if link:
        facts["ui"] = link
    return facts


SAMPLES_SHOWN = 20


def _sample_line(s: dict[str, Any]) -> str:
    where = f" {s['phase']}" if s["phase"] else ""
    flag = f" [not billed: {s['flag']}]" if s["flag"] else ""
    unit = f" {s['unit']}" if s["unit"] else ""
    return f"{s['sampled_at']}  {s['measurand']}{where} {s['value']}{unit}{flag}"


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
    for t in story.get("transactions", []):
        if t.get("ocpp_transaction_id"):
            print(f"             OCPP {t['ocpp_version']} transactionId {t['ocpp_transaction_id']}")
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
    for sample in story.get("samples", [])[:SAMPLES_SHOWN]:
        print("  " + _sample_line(sample))
    if story["meter_samples"] > SAMPLES_SHOWN:
        print(f"  … {story['meter_samples'] - SAMPLES_SHOWN} more (--json, or the API)")
    for e in story["billing_events"]:
        print(
            f"billing      {e['transaction_id']} {e['kind']} {e['energy_wh']} Wh "
            f"{format_money(e['amount_minor'], e['currency'])}"
            f" sent={e['sent_at'] or 'no'}"
        )
    idle = story.get("idle_fee")
    if idle:
        sent = idle["invoice_number"] or idle["lago_invoice_id"] if idle["billed"] else "no"
        print(
            f"idle fee     {format_money(idle['amount_minor'], idle['currency'])} for "
            f"{idle['idle_s'] // 60} min {idle['idle_s'] % 60} s plugged in after the stop "
            f"({idle['end_reason']}{', capped' if idle['capped'] else ''}) "
            f"line {idle['line_id']} sent={sent}"
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
    try:
        async with open_service_context(settings) as ctx:
            if args.sessions_command == "list":
                return await list_command(ctx, args)
            if args.sessions_command == "timeline":
                timeline = await operator_views.session_timeline(
                    ctx, Actor.cli(), args.session_id, kinds=args.kind
                )
                if args.json:
                    emit_json(timeline)
                else:
                    print_timeline(timeline)
                return 0
            async with ctx.sessions() as db:
                story = await session_story(db, args.session_id)
    except ServiceError as exc:
        return fail(exc, as_json=getattr(args, "json", False))
    if story is None:
        return fail(NotFound(f"no session {args.session_id!r}"), as_json=args.json)
    story["workflow"] = await workflow_facts(settings, story["workflow_id"])
    if args.json:
        print(json.dumps(story, indent=2))
    else:
        print_story(story)
    return 0

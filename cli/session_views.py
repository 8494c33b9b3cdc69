"""How sessions print (list rows, the table) and the read-side commands over
``services/operator_views.py``: ``polaris sessions list`` with filters and ``polaris sessions
timeline``'s text form (``cli/sessions.py`` dispatches)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ChargingSession, Transaction
from services import session_list
from services.actor import Actor
from services.context import ServiceContext

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


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def session_dict(row: ChargingSession) -> dict[str, Any]:
    return {
        "workflow_id": row.workflow_id,
        "state": row.state,
        "charge_box_id": row.charge_box_id,
        "connector_id": row.connector_id,
        "id_tag": row.id_tag,
        "user_id": row.user_id,
        "transaction_id": row.transaction_id,
        "energy_wh": row.energy_wh,
        "cost_minor": row.cost_minor,
        "currency": row.currency,
        "started_at": iso(row.started_at),
        "stopped_at": iso(row.stopped_at),
        "end_reason": row.end_reason,
        "flags": list(row.flags or []),
    }


async def add_protocols(db: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each session's OCPP version and, for 2.0.1, the charger's own transactionId (from the
    journal row of its transaction; None without a transaction)."""
    ids = [r["transaction_id"] for r in rows if r.get("transaction_id") is not None]
    found = {}
    if ids:
        query = select(Transaction.id, Transaction.ocpp_version, Transaction.ocpp_transaction_id)
        found = {
            t.id: (t.ocpp_version or "1.6", t.ocpp_transaction_id)
            for t in (await db.execute(query.where(Transaction.id.in_(ids)))).all()
        }
    for r in rows:
        version, ocpp_tx = found.get(r.get("transaction_id"), (None, None))
        r["ocpp_version"] = version
        r["ocpp_transaction_id"] = ocpp_tx
    return rows


def format_money(amount_minor: int, currency: str | None) -> str:
    if currency is None:
        return "-"
    return f"{amount_minor / 100:.2f} {currency}"


def print_session_table(rows: list[dict[str, Any]]) -> None:
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


async def list_command(ctx: ServiceContext, args: argparse.Namespace) -> int:
    query = session_list.parse_session_query(
        ctx.settings,
        charger=args.charger,
        card=args.card,
        user=args.user,
        state=args.state,
        started_from=args.started_from,
        started_to=args.started_to,
        limit=args.limit,
        offset=args.offset,
        cursor=args.cursor,
    )
    page = await session_list.list_sessions(ctx, Actor.cli(), query)
    rows = [session_dict(r) for r in page.rows]
    async with ctx.sessions() as db:
        await add_protocols(db, rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_session_table(rows)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def print_timeline(timeline: dict[str, Any]) -> None:
    print(f"session   {timeline['workflow_id']} ({timeline['state']})")
    for run in timeline["runs"]:
        print(f"run       {run['run_id']}" + (f"  {run['ui']}" if run["ui"] else ""))
    for e in timeline["entries"]:
        parts = [e["at"], f"{e['kind']:<8}", e["name"], e["status"]]
        if e["attempt"] and e["attempt"] > 1:
            parts.append(f"attempt {e['attempt']}")
        if e["duration_s"] is not None:
            parts.append(f"{e['duration_s']}s")
        if e["kind"] == "state":
            parts.append(f"(from {e['summary']['from'] or '-'})")
        if e["kind"] in ("signal", "update") and isinstance(e["summary"], dict):
            parts.append(_brief(e["summary"]))
        if e["message"]:
            parts.append(f"— {e['message']}")
        print("  ".join(parts))


def _brief(summary: dict[str, Any], most: int = 4) -> str:
    """A payload's first few plain fields, for one line (``--json`` has them all)."""
    fields = [
        f"{k}={v}"
        for k, v in summary.items()
        if k != "event_id" and v is not None and not isinstance(v, dict | list)
    ]
    return " ".join(fields[:most])

"""A session's idle fee as the session views show it (``polaris sessions show``, the operators'
session detail, the driver's session detail): the line ``IdleFeeWorkflow`` recorded in
``idle_fees``, or None while there is none (no idle price, or the connector not free yet)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.idle_fee_models import IdleFeeLine


def idle_fee_dict(line: IdleFeeLine, *, for_operator: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "line_id": line.line_id,
        "stopped_at": line.stopped_at.isoformat(),
        "ended_at": line.ended_at.isoformat(),
        "end_reason": line.end_reason,
        "idle_s": line.idle_s,
        "billed_s": line.billed_s,
        "amount_minor": line.amount_minor,
        "currency": line.currency,
        "capped": line.capped,
        "invoice_number": line.invoice_number,
        "billed": line.lago_invoice_id is not None,
    }
    if for_operator:
        out["lago_invoice_id"] = line.lago_invoice_id
        out["lago_customer_external_id"] = line.lago_customer_external_id
        out["sent_at"] = line.sent_at.isoformat() if line.sent_at else None
    return out


async def session_idle_fee(
    db: AsyncSession, workflow_id: str, *, for_operator: bool = True
) -> dict[str, Any] | None:
    line = await db.get(IdleFeeLine, workflow_id)
    return idle_fee_dict(line, for_operator=for_operator) if line is not None else None


__all__ = ["idle_fee_dict", "session_idle_fee"]

"""Transactions the platform closes without a StopTransaction: the reasons, and what the session
and the audit log say about them (pure).

A charger that crashes or loses power may come back without its transaction and never send a
StopTransaction. The platform then closes it (bills the last good register, flags why) when the
same connector starts another transaction, when the rebooted charger reports the connector free,
when a live charger's connector has not been charging for the watchdog's window, or when an
operator force-closes it. See ``docs/sessions.md``.
"""

from __future__ import annotations

CLOSED_NEW_TRANSACTION = "new_transaction"  # the same connector started another transaction
CLOSED_CHARGER_REBOOTED = "charger_rebooted"  # rebooted, then reported the connector free
CLOSED_NOT_CHARGING = "not_charging"  # a live charger whose connector stopped charging
CLOSED_BY_OPERATOR = "operator"  # polaris sessions close / the admin API
CLOSED_CHARGER_SILENT = "charger_silent"  # the watchdog: the charger itself went silent
# OCPP 2.0.1: asked (GetTransactionStatus), the station says the transaction is not ongoing and
# it holds no queued messages for it.
CLOSED_NOT_ONGOING = "not_ongoing"

FLAG_FORCE_CLOSED = "force_closed"
FLAG_OPERATOR_ENERGY = "operator_energy"
FLAG_START_REFUSED = "start_refused"

AUDIT_SESSION_CLOSED = "session.closed"


def closure_end_reason(reason: str) -> str:
    """The session's ``end_reason`` (and flag) for a transaction the platform closed."""
    return FLAG_FORCE_CLOSED if reason == CLOSED_BY_OPERATOR else f"closed_{reason}"


def closure_details(
    *,
    transaction_id: int,
    charge_box_id: str,
    reason: str,
    register_wh: int | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """The ``session.closed`` audit row's details (the gateway and the worker write it)."""
    details: dict[str, object] = {
        "transaction_id": transaction_id,
        "charge_box_id": charge_box_id,
        "reason": reason,
    }
    if register_wh is not None:
        details["billed_register_wh"] = register_wh
    if note:
        details["note"] = note
    return details

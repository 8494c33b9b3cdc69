"""Operator actions on one session, shared by the admin API and ``polaris sessions``: a thin
layer over the session workflow's updates (commands to chargers always go through a workflow).

:func:`force_close` closes the running transaction without the charger's consent (offline, it
refuses RemoteStop, or it no longer knows the transaction): the workflow bills the last good
register, or ``energy_wh`` if the operator enters one, flags the session and audits the closure.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.messages import UPDATE_FORCE_CLOSE, ForceCloseInput, ForceCloseResult


class SessionActionError(Exception):
    """``code``: ``not_found`` (no such workflow) | ``not_running`` (nothing to close)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def force_close(
    client: Client,
    workflow_id: str,
    *,
    requested_by: str,
    reason: str,
    energy_wh: int | None = None,
) -> ForceCloseResult:
    try:
        result: ForceCloseResult = await client.get_workflow_handle(workflow_id).execute_update(
            UPDATE_FORCE_CLOSE,
            ForceCloseInput(requested_by=requested_by, reason=reason, energy_wh=energy_wh),
            result_type=ForceCloseResult,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise SessionActionError("not_running", message) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SessionActionError("not_found", f"no running session {workflow_id}") from exc
        raise
    return result


__all__ = ["SessionActionError", "force_close"]

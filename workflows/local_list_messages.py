"""The contract of the local-list workflows (names pinned; one pydantic model per payload).

``LocalListSync`` runs once per charger (id ``local-list:<chargeBoxId>``) and is reached by
signal-with-start, so a burst of card changes coalesces into one round. ``LocalListReconcile``
runs once per task queue (id ``local-list-reconcile:<task queue>``): woken by the service layer
(and every ``interval_s``), it finds the chargers whose list is out of step and signals theirs.
"""

from __future__ import annotations

from pydantic import BaseModel

LOCAL_LIST_SYNC_WORKFLOW = "LocalListSync"
LOCAL_LIST_RECONCILE_WORKFLOW = "LocalListReconcile"

# Signal to LocalListSync; also the gateway outbox ``kind`` of the connect trigger.
SIGNAL_LOCAL_LIST_SYNC = "local_list_sync"
# Signal to LocalListReconcile.
SIGNAL_LOCAL_LIST_WAKE = "local_list_wake"
QUERY_LOCAL_LIST_STATUS = "local_list_status"


def local_list_workflow_id(charge_box_id: str) -> str:
    return f"local-list:{charge_box_id}"


def reconcile_workflow_id(task_queue: str) -> str:
    """One reconciler per task queue: a deployment has one; each test's queue has its own."""
    return f"local-list-reconcile:{task_queue}"


class LocalListSyncInput(BaseModel):
    charge_box_id: str
    # With nothing to do for this long the workflow ends (the next signal-with-start starts a
    # fresh one); after this many rounds it continues as new.
    idle_s: float = 3600.0
    continue_as_new_after_rounds: int = 100
    # Carried over continue-as-new: a signal arrived that no round has served yet.
    pending: bool = True


class LocalListSyncSignal(BaseModel):
    # Who asked: ``cards_changed``, ``connected`` (gateway outbox), ``reconcile``, ``forced``.
    reason: str = "changed"
    # The gateway outbox row id when the relay delivered it.
    event_id: int | None = None


class LocalListSyncStatus(BaseModel):
    charge_box_id: str
    rounds: int
    last_outcome: str | None = None


class LocalListReconcileInput(BaseModel):
    interval_s: float = 300.0
    continue_as_new_after: int = 200
    # Carried over continue-as-new.
    pending: bool = False


class LocalListWake(BaseModel):
    reason: str = "changed"

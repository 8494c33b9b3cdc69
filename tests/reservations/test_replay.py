"""Replay the committed history of a ReservationWorkflow run: a change to the workflow that
breaks determinism for running reservations fails here (use ``workflow.patched()``).

``reservation_v1.json``: created, ReserveNow accepted (confirmed), waiting for the no-show
deadline, then joined by a StartTransaction carrying the reservation id (used). Regenerate with
``POLARIS_RECORD_HISTORIES=1 pytest tests/reservations/test_workflow.py -k reservation_id_joins``.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from workflows.reservation import ReservationWorkflow

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "reservation_v1.json"


async def test_replay_reservation_v1() -> None:
    text = HISTORY.read_text()
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED" in text and "send_charger_command" in text
    history = WorkflowHistory.from_json("reservation-v1", text)
    replayer = Replayer(workflows=[ReservationWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

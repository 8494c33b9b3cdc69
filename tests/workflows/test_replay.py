"""Replay the committed history of a v1 session: a workflow change that breaks determinism for
running sessions fails here before it reaches them (use ``workflow.patched()``).

Regenerate the file (only on purpose, when a new version is recorded) with
``POLARIS_RECORD_HISTORIES=1 pytest tests/workflows/test_charging_session.py -k billed_once``.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from workflows.charging_session import ChargingSessionWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def test_replay_charging_session_v1() -> None:
    text = (HISTORIES / "charging_session_v1.json").read_text()
    history = WorkflowHistory.from_json("charging-session-v1", text)
    replayer = Replayer(workflows=[ChargingSessionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

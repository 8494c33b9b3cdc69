"""Replay the committed history of a LocalListSync run: a change to the workflow that breaks
determinism for running executions fails here (use ``workflow.patched()``).

``local_list_sync_v1.json``: a differential update refused with VersionMismatch, the Full update
that followed, and a charger whose version disagreed. Regenerate with
``POLARIS_RECORD_HISTORIES=1 pytest tests/local_lists/test_sync.py -k mismatch``.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from workflows.local_list_sync import LocalListSyncWorkflow

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "local_list_sync_v1.json"


async def test_replay_local_list_sync_v1() -> None:
    text = HISTORY.read_text()
    assert "local_list_record_accepted" in text and "send_charger_command" in text
    history = WorkflowHistory.from_json("local-list-sync-v1", text)
    replayer = Replayer(workflows=[LocalListSyncWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

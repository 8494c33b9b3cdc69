"""Replay committed campaign histories: a change to FirmwareCampaignWorkflow that breaks
determinism for running campaigns fails here (use ``workflow.patched()``).

Recorded by ``POLARIS_RECORD_HISTORIES=1 pytest tests/firmware/test_campaign.py -k
"threshold or operator"``; never re-record a history to make a change pass: they stand for
campaigns already running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from workflows.firmware import FirmwareCampaignWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        # Wave 2 fails (DownloadFailed + a silent charger past the deadline): halted. Polls
        # between timers.
        ("firmware_campaign_threshold_v1.json", "EVENT_TYPE_TIMER_FIRED"),
        # The operator's halt signal during a pause.
        ("firmware_campaign_halt_v1.json", "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"),
    ],
)
async def test_replay_firmware_campaign(name: str, marker: str) -> None:
    text = (HISTORIES / name).read_text()
    assert marker in text
    history = WorkflowHistory.from_json(name, text)
    replayer = Replayer(workflows=[FirmwareCampaignWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

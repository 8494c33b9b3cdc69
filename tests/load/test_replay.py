"""Replay the committed history of a SiteLoad run: a change to the workflow that breaks
determinism for running executions fails here (use ``workflow.patched()``).

``site_load_v1.json``: a site limited in A; arrivals, an offered limit, a charger going offline
and coming back after a reboot. Regenerate with
``POLARIS_RECORD_HISTORIES=1 pytest tests/load/test_site_load.py -k amps``.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from workflows.site_load import SiteLoadWorkflow

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "site_load_v1.json"


async def test_replay_site_load_v1() -> None:
    text = HISTORY.read_text()
    assert "site_load_plan" in text and "send_charger_command" in text
    history = WorkflowHistory.from_json("site-load-v1", text)
    replayer = Replayer(workflows=[SiteLoadWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

"""Replay the committed histories of sessions: a workflow change that breaks determinism for
running sessions fails here before it reaches them (use ``workflow.patched()``).

``charging_session_v1.json`` was recorded before the ``lago-send-usage-v1`` patch and is frozen
(never re-record it: it stands for executions already running). ``charging_session_v2.json`` is
recorded with the patch by ``tests/billing/test_session_lago.py`` (see there), and
``charging_session_v3.json`` with ``session-flags-data-error-v1`` by
``tests/workflows/test_data_error.py``, and ``charging_session_v4.json`` with
``session-closure-v1`` by ``tests/workflows/test_session_closure.py``.
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


async def test_replay_charging_session_v2() -> None:
    """Recorded with the ``lago-send-usage-v1`` patch: periodic lines and Lago sends.

    Regenerate with ``POLARIS_RECORD_HISTORIES=1 pytest tests/billing/test_session_lago.py -k
    periodic``.
    """
    text = (HISTORIES / "charging_session_v2.json").read_text()
    history = WorkflowHistory.from_json("charging-session-v2", text)
    assert "lago_send_usage_events" in text
    replayer = Replayer(workflows=[ChargingSessionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_replay_charging_session_v3() -> None:
    """Recorded with the ``session-flags-data-error-v1`` patch: a billing line PostgreSQL refused
    (``DataError``, not retried), the session flagged ``data_error`` and closed.

    Regenerate with ``POLARIS_RECORD_HISTORIES=1 pytest tests/workflows/test_data_error.py``.
    """
    text = (HISTORIES / "charging_session_v3.json").read_text()
    history = WorkflowHistory.from_json("charging-session-v3", text)
    assert "DataError" in text
    replayer = Replayer(workflows=[ChargingSessionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_replay_charging_session_v4() -> None:
    """Recorded with the ``session-closure-v1`` patch: a forgotten transaction closed by the
    gateway, its closure recorded, then a late stop's compensation.

    Regenerate with ``POLARIS_RECORD_HISTORIES=1 pytest tests/workflows/test_session_closure.py``.
    """
    text = (HISTORIES / "charging_session_v4.json").read_text()
    history = WorkflowHistory.from_json("charging-session-v4", text)
    assert "record_session_closure" in text
    replayer = Replayer(workflows=[ChargingSessionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

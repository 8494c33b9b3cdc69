"""The timeline of a real execution on the real dev server: a chain of two runs (continue-as-new)
fetched from Temporal, with a child workflow, a retried activity, a failed one and a timer."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from domain.ids import tag_fingerprint
from services.payload_summary import Redactor
from services.timeline import build_timeline, fetch_runs
from tests.operator_views.workflows_for_tests import ChainInput, ChainWorkflow, ChildWorkflow, Flaky

pytestmark = pytest.mark.timeout(60)

KEY = b"views-runs"


async def test_a_chain_of_runs_reads_as_one_timeline(
    temporal_client: Client, task_queue: str
) -> None:
    flaky = Flaky()
    tag = f"CARD{uuid.uuid4().hex[:8].upper()}"
    workflow_id = f"views-chain-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ChainWorkflow, ChildWorkflow],
        activities=[flaky.flaky, flaky.refuse],
    ):
        result = await temporal_client.execute_workflow(
            ChainWorkflow.run, ChainInput(id_tag=tag), id=workflow_id, task_queue=task_queue
        )
    assert result == "refused"

    runs = await fetch_runs(temporal_client, workflow_id)
    assert len(runs) == 2
    entries = build_timeline(runs, Redactor(KEY, workflow_id=workflow_id))
    first, second = (run_id for run_id, _ in runs)

    starts = [e for e in entries if e.kind == "workflow" and e.status in ("started", "continued")]
    assert [(e.run_id, e.status) for e in starts] == [(first, "started"), (second, "continued")]
    continued = next(e for e in entries if e.status == "continued_as_new")
    assert continued.run_id == first and continued.summary == {"new_run_id": second}

    retried = [e for e in entries if e.name == "views_test_flaky"]
    assert [(e.run_id, e.status, e.attempt) for e in retried] == [
        (first, "completed", 2),
        (second, "completed", 2),
    ]
    assert all(str(e.message).startswith("earlier attempt: Transient: first try") for e in retried)

    refused = next(e for e in entries if e.name == "views_test_refuse")
    assert (refused.run_id, refused.status, refused.attempt) == (second, "failed", 1)
    assert str(refused.message).startswith("Refused: card ")

    children = [e for e in entries if e.kind == "child"]
    assert [(e.name, e.status, e.run_id) for e in children] == [
        ("ViewsTestChild", "completed", first),
        ("ViewsTestChild", "completed", second),
    ]
    assert children[0].summary["workflow_id"] == f"{workflow_id}-child-1"
    timers = [e for e in entries if e.kind == "timer"]
    assert [(t.status, t.duration_s) for t in timers] == [("fired", 0.01), ("fired", 0.01)]
    assert all(e.duration_s is not None and e.ended_at is not None for e in retried + children)

    text = json.dumps([e.as_dict() for e in entries])
    assert tag not in text  # not in the input, not in the failure message
    assert tag_fingerprint(tag, KEY) in text
    assert (entries[-1].kind, entries[-1].status, entries[-1].run_id) == (
        "workflow",
        "completed",
        second,
    )

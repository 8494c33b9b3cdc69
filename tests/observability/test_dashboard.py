"""deploy/grafana/polaris.json: valid JSON, and every metric it plots exists.

``polaris_*`` names are checked against the process registry (observability/metrics.py);
``temporal_*`` names against what the Temporal SDK's runtime really exposes after a worker ran a
workflow with an activity on the dev server.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from observability.metrics import metric_names
from tests.helpers import eventually, free_port
from tests.observability.probe_workflow import ProbeWorkflow, probe

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "polaris.json"
METRIC = re.compile(r"\b((?:polaris|temporal)_[a-z0-9_]+)")


def referenced() -> set[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert exprs
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_every_polaris_metric_on_the_dashboard_is_defined() -> None:
    ours = {name for name in referenced() if name.startswith("polaris_")}
    assert ours, "the dashboard plots none of our metrics"
    missing = ours - metric_names()
    assert not missing, f"not in the registry: {sorted(missing)}"


async def test_every_temporal_sdk_metric_on_the_dashboard_is_exported(
    temporal_address: str,
) -> None:
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    client = await Client.connect(temporal_address, runtime=runtime)
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    sdk = {name for name in referenced() if name.startswith("temporal_")}
    assert sdk

    async def exported() -> set[str]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
        missing = sdk - names
        assert not missing, f"the SDK does not export {sorted(missing)}"
        return names

    async with Worker(client, task_queue=queue, workflows=[ProbeWorkflow], activities=[probe]):
        await client.execute_workflow(ProbeWorkflow.run, "x", id=queue, task_queue=queue)
        await eventually(exported, timeout=30, interval=0.5)

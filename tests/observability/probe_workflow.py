"""A workflow with one activity, to make a Temporal runtime export its metrics (nothing else
at import: the workflow sandbox re-imports this module)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="observability_probe")
async def probe(value: str) -> str:
    return value


@workflow.defn(name="ObservabilityProbe")
class ProbeWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(
            probe, value, start_to_close_timeout=timedelta(seconds=30)
        )

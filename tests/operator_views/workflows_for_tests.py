"""A small workflow with what the session workflow does not have (a child workflow, a retried
activity, a failed one) and a continue-as-new, to read back as a timeline."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError


class ChainInput(BaseModel):
    id_tag: str
    round: int = 1


class Flaky:
    """Fails its first attempt per key (then succeeds); ``refuse`` always fails, for good."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    @activity.defn(name="views_test_flaky")
    async def flaky(self, key: str) -> str:
        if key not in self.seen:
            self.seen.add(key)
            raise ApplicationError(f"first try for {key} fails", type="Transient")
        return "ok"

    @activity.defn(name="views_test_refuse")
    async def refuse(self, id_tag: str) -> None:
        raise ApplicationError(f"card {id_tag} refused", type="Refused", non_retryable=True)


@workflow.defn(name="ViewsTestChild")
class ChildWorkflow:
    @workflow.run
    async def run(self, input: ChainInput) -> str:
        return f"child {input.round}"


@workflow.defn(name="ViewsTestChain")
class ChainWorkflow:
    @workflow.run
    async def run(self, input: ChainInput) -> str:
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3)
        await workflow.execute_activity(
            "views_test_flaky",
            f"{workflow.info().run_id}",
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=retry,
        )
        await workflow.sleep(timedelta(milliseconds=10))
        await workflow.execute_child_workflow(
            ChildWorkflow.run, input, id=f"{workflow.info().workflow_id}-child-{input.round}"
        )
        if input.round == 1:
            workflow.continue_as_new(ChainInput(id_tag=input.id_tag, round=2))
        try:
            await workflow.execute_activity(
                "views_test_refuse",
                input.id_tag,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=retry,
            )
        except ActivityError:
            return "refused"
        return "accepted"

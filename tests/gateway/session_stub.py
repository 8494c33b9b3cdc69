"""Stand-ins registered under the real names, so the gateway is tested against real Temporal
while the real ChargingSessionWorkflow is written elsewhere."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.messages import (
        ACTIVITY_SEND_CHARGER_COMMAND,
        ChargerCommandInput,
        ChargerCommandResult,
        ConnectorStatus,
        MeterProgress,
        PreAuthorizeInput,
        PreAuthorizeResult,
        SessionInput,
        TransactionStarted,
        TransactionStopped,
    )


@workflow.defn(name="ChargingSession")
class RecordingSession:
    """Records every signal (kind, event_id, detail) and answers pre_authorize.

    Tags starting with DENY are tightened to Blocked; tags starting with SLOW answer after the
    gateway's budget has passed.
    """

    def __init__(self) -> None:
        self.events: list[list[object]] = []
        self.origin: str | None = None
        self.finished = False

    @workflow.run
    async def run(self, input: SessionInput) -> None:
        self.origin = input.origin
        await workflow.wait_condition(lambda: self.finished)

    @workflow.signal(name="transaction_started")
    def transaction_started(self, e: TransactionStarted) -> None:
        self.events.append(["transaction_started", e.event_id, e.transaction_id])

    @workflow.signal(name="meter_progress")
    def meter_progress(self, e: MeterProgress) -> None:
        self.events.append(["meter_progress", e.event_id, e.energy_register_wh])

    @workflow.signal(name="transaction_stopped")
    def transaction_stopped(self, e: TransactionStopped) -> None:
        self.events.append(["transaction_stopped", e.event_id, e.meter_stop_wh])

    @workflow.signal(name="connector_status")
    def connector_status(self, e: ConnectorStatus) -> None:
        self.events.append(["connector_status", e.event_id, e.status])

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.finished = True

    @workflow.update(name="pre_authorize")
    async def pre_authorize(self, i: PreAuthorizeInput) -> PreAuthorizeResult:
        if i.id_tag.startswith("SLOW"):
            await workflow.sleep(timedelta(seconds=5))
        status = "Blocked" if i.id_tag.startswith("DENY") else i.local_status
        return PreAuthorizeResult(status=status, reason="stub")

    @workflow.query(name="events")
    def get_events(self) -> list[list[object]]:
        return self.events

    @workflow.query(name="origin")
    def get_origin(self) -> str | None:
        return self.origin


class CommandProbeInput(SessionInput):
    gateway_task_queue: str = ""
    command: ChargerCommandInput | None = None


@workflow.defn(name="CommandProbe")
class CommandProbe:
    """Sends one charger command the way a session workflow would (one attempt)."""

    @workflow.run
    async def run(self, input: CommandProbeInput) -> ChargerCommandResult:
        assert input.command is not None
        return await workflow.execute_activity(
            ACTIVITY_SEND_CHARGER_COMMAND,
            input.command,
            task_queue=input.gateway_task_queue,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(maximum_attempts=1),
            result_type=ChargerCommandResult,
        )

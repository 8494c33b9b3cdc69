"""Firmware updates, firmware campaigns and diagnostics requests (docs/firmware.md).

Every frame goes through the gateway's ``send_charger_command`` on the queue of the gateway that
holds the charger's socket (``resolve_charger_route``), like ChargingSessionWorkflow's commands.

The campaign learns what chargers report by polling ``firmware_updates`` (written by the gateway
on each FirmwareStatusNotification) through an activity between durable timers: no new outbox
kind, and a campaign waiting hours for a slow wave costs one short activity per poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sessions import ChargerRoute, ChargerRouteInput
    from db.firmware_models import FIRMWARE_FINAL_FAILED, FIRMWARE_FINAL_OK
    from workflows import messages as msg
    from workflows import session_support as sup
    from workflows.firmware_messages import (
        ACTIVITY_FIRMWARE_UPDATE_STATES,
        ACTIVITY_PREPARE_DIAGNOSTICS,
        ACTIVITY_PREPARE_FIRMWARE_UPDATE,
        ACTIVITY_RECORD_CAMPAIGN_PROGRESS,
        ACTIVITY_RECORD_DIAGNOSTICS_SENT,
        ACTIVITY_RECORD_FIRMWARE_SENT,
        CampaignInput,
        CampaignProgress,
        DiagnosticsInput,
        DiagnosticsResult,
        FirmwareUpdateInput,
        FirmwareUpdateResult,
        HaltInput,
        PreparedDownload,
        PrepareDiagnosticsInput,
        PrepareFirmwareUpdateInput,
        RecordSentInput,
        UpdateStates,
        UpdateStatesInput,
    )


async def _wait_unless(condition: Callable[[], bool], seconds: float) -> None:
    """A durable timer that a signal (``condition`` turning true) cuts short."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await workflow.wait_condition(condition, timeout=timedelta(seconds=seconds))


async def _db(name: str, arg: object, result_type: type | None = None) -> object:
    return await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=sup.DB_TIMEOUT,
        retry_policy=sup.DB_RETRY,
    )


async def _command(
    charge_box_id: str, action: msg.ChargerAction, payload: dict[str, object]
) -> msg.ChargerCommandResult:
    route = await workflow.execute_activity(
        "resolve_charger_route",
        ChargerRouteInput(charge_box_id=charge_box_id),
        result_type=ChargerRoute,
        start_to_close_timeout=sup.DB_TIMEOUT,
        retry_policy=sup.DB_RETRY,
    )
    answer: msg.ChargerCommandResult = await workflow.execute_activity(
        msg.ACTIVITY_SEND_CHARGER_COMMAND,
        msg.ChargerCommandInput(charge_box_id=charge_box_id, action=action, payload=payload),
        task_queue=route.task_queue,
        result_type=msg.ChargerCommandResult,
        schedule_to_start_timeout=sup.COMMAND_START_TIMEOUT,
        start_to_close_timeout=sup.COMMAND_CLOSE_TIMEOUT,
        retry_policy=sup.COMMAND_RETRY,
    )
    return answer


def _reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}"
    return str(cause or err)


def _ocpp_time(value: object) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.replace("+00:00", "Z")


async def send_update(input: FirmwareUpdateInput, update_id: str) -> FirmwareUpdateResult:
    """Record the update, mint its download URL and send ``UpdateFirmware``."""
    retrieve_at = input.retrieve_at or workflow.now()
    try:
        prepared = await _db(
            ACTIVITY_PREPARE_FIRMWARE_UPDATE,
            PrepareFirmwareUpdateInput(
                update_id=update_id,
                charge_box_id=input.charge_box_id,
                firmware_id=input.firmware_id,
                retrieve_at=retrieve_at,
                requested_by=input.requested_by,
                campaign_id=input.campaign_id,
            ),
            PreparedDownload,
        )
    except ActivityError as err:  # an unknown charger or firmware: nothing recorded, nothing sent
        return FirmwareUpdateResult(
            update_id=update_id,
            charge_box_id=input.charge_box_id,
            status="failed",
            error=_reason(err),
        )
    assert isinstance(prepared, PreparedDownload)
    payload: dict[str, object] = {
        "location": prepared.location,
        "retrieveDate": _ocpp_time(retrieve_at),
    }
    if input.retries is not None:
        payload["retries"] = input.retries
    if input.retry_interval_s is not None:
        payload["retryInterval"] = input.retry_interval_s
    error: str | None = None
    try:
        await _command(input.charge_box_id, "UpdateFirmware", payload)
    except ActivityError as err:
        error = _reason(err)
    status = "sent" if error is None else "failed"
    await _db(
        ACTIVITY_RECORD_FIRMWARE_SENT, RecordSentInput(id=update_id, status=status, error=error)
    )
    return FirmwareUpdateResult(
        update_id=update_id, charge_box_id=input.charge_box_id, status=status, error=error
    )


@workflow.defn(name="FirmwareUpdateWorkflow")
class FirmwareUpdateWorkflow:
    """``UpdateFirmware`` to one charger; ends once the charger acknowledged it. What happens
    next is in ``firmware_updates`` (the gateway writes each FirmwareStatusNotification)."""

    @workflow.run
    async def run(self, input: FirmwareUpdateInput) -> FirmwareUpdateResult:
        return await send_update(input, str(workflow.uuid4()))


@workflow.defn(name="FirmwareCampaignWorkflow")
class FirmwareCampaignWorkflow:
    """Updates chargers in waves; a wave ends when each charger has reported Installed or a
    failure, or at the wave's deadline (no answer is a failure). More than ``max_failures``
    failures, or the ``halt`` signal, halts it before the next wave."""

    def __init__(self) -> None:
        self._input: CampaignInput | None = None
        self._halt: str | None = None
        self._wave: list[str] = []
        self._state = "running"

    @workflow.signal(name="halt")
    def halt(self, input: HaltInput) -> None:
        if self._halt is None:
            self._halt = input.reason

    @workflow.query(name="progress")
    def progress(self) -> CampaignProgress:
        assert self._input is not None
        i = self._input
        return CampaignProgress(
            campaign_id=i.campaign_id,
            state=self._state,
            total=len(i.chargers),
            waves_done=i.waves_done,
            current_wave=list(self._wave),
            succeeded=list(i.succeeded),
            failed=dict(i.failed),
            halted_reason=i.halt_reason,
        )

    async def _save(self) -> None:
        await _db(ACTIVITY_RECORD_CAMPAIGN_PROGRESS, self.progress())

    @workflow.run
    async def run(self, input: CampaignInput) -> CampaignProgress:
        self._input = input
        if input.halt_reason is not None:
            self._halt = input.halt_reason
        await self._save()
        while input.next_index < len(input.chargers):
            if self._halt is not None:
                break
            wave = input.chargers[input.next_index : input.next_index + input.wave_size]
            await self._run_wave(input, wave)
            input.next_index += len(wave)
            input.waves_done += 1
            if len(input.failed) > input.max_failures and self._halt is None:
                self._halt = f"{len(input.failed)} failures, more than {input.max_failures}"
            self._wave = []
            await self._save()
            if self._halt is not None or input.next_index >= len(input.chargers):
                break
            # The pause, cut short by a halt.
            await _wait_unless(lambda: self._halt is not None, input.pause_s)
            if (
                workflow.info().is_continue_as_new_suggested()
                or workflow.info().get_current_history_length() > input.history_limit
            ):
                input.halt_reason = self._halt
                workflow.continue_as_new(input)
        if self._halt is not None:
            input.halt_reason = self._halt
            self._state = "halted"
        else:
            self._state = "completed"
        await self._save()
        return self.progress()

    async def _run_wave(self, input: CampaignInput, wave: list[str]) -> None:
        self._wave = list(wave)
        await self._save()
        results = await asyncio.gather(
            *(
                send_update(
                    FirmwareUpdateInput(
                        charge_box_id=charger,
                        firmware_id=input.firmware_id,
                        retries=input.retries,
                        retry_interval_s=input.retry_interval_s,
                        requested_by=input.requested_by,
                        campaign_id=input.campaign_id,
                    ),
                    str(workflow.uuid4()),
                )
                for charger in wave
            )
        )
        pending: dict[str, str] = {}
        for result in results:
            if result.status == "sent":
                pending[result.update_id] = result.charge_box_id
            else:
                input.failed[result.charge_box_id] = result.error or "not sent"
        deadline = workflow.now() + timedelta(seconds=input.wave_deadline_s)
        while pending:
            answer = await _db(
                ACTIVITY_FIRMWARE_UPDATE_STATES,
                UpdateStatesInput(update_ids=sorted(pending)),
                UpdateStates,
            )
            assert isinstance(answer, UpdateStates)
            for update_id, status in answer.states.items():
                charger = pending.get(update_id)
                if charger is None:
                    continue
                if status == FIRMWARE_FINAL_OK:
                    input.succeeded.append(charger)
                    del pending[update_id]
                elif status in FIRMWARE_FINAL_FAILED:
                    input.failed[charger] = status
                    del pending[update_id]
            remaining = (deadline - workflow.now()).total_seconds()
            if not pending or remaining <= 0 or self._halt is not None:
                break
            await _wait_unless(
                lambda: self._halt is not None, min(input.poll_interval_s, remaining)
            )
        for charger in pending.values():
            input.failed[charger] = (
                "halted while waiting" if self._halt is not None else "no answer by the deadline"
            )


@workflow.defn(name="DiagnosticsRequestWorkflow")
class DiagnosticsRequestWorkflow:
    """``GetDiagnostics`` with a single-use upload URL on the platform."""

    @workflow.run
    async def run(self, input: DiagnosticsInput) -> DiagnosticsResult:
        upload_id = str(workflow.uuid4())
        prepared = await _db(
            ACTIVITY_PREPARE_DIAGNOSTICS,
            PrepareDiagnosticsInput(
                upload_id=upload_id,
                charge_box_id=input.charge_box_id,
                requested_by=input.requested_by,
            ),
            PreparedDownload,
        )
        assert isinstance(prepared, PreparedDownload)
        payload: dict[str, object] = {"location": prepared.location}
        if input.retries is not None:
            payload["retries"] = input.retries
        if input.retry_interval_s is not None:
            payload["retryInterval"] = input.retry_interval_s
        if input.start_time is not None:
            payload["startTime"] = _ocpp_time(input.start_time)
        if input.stop_time is not None:
            payload["stopTime"] = _ocpp_time(input.stop_time)
        try:
            answer = await _command(input.charge_box_id, "GetDiagnostics", payload)
        except ActivityError as err:
            reason = _reason(err)
            await _db(
                ACTIVITY_RECORD_DIAGNOSTICS_SENT,
                RecordSentInput(id=upload_id, status="failed", error=reason),
            )
            return DiagnosticsResult(upload_id=upload_id, status="failed", error=reason)
        file_name = answer.payload.get("fileName")
        name = str(file_name) if file_name else None
        # No fileName: the charger has no diagnostics to send (OCPP 1.6).
        status = "sent" if name else "failed"
        error = None if name else "the charger has no diagnostics to send"
        await _db(
            ACTIVITY_RECORD_DIAGNOSTICS_SENT,
            RecordSentInput(id=upload_id, status=status, error=error, file_name=name),
        )
        return DiagnosticsResult(upload_id=upload_id, status=status, file_name=name, error=error)


__all__ = [
    "DiagnosticsRequestWorkflow",
    "FirmwareCampaignWorkflow",
    "FirmwareUpdateWorkflow",
    "send_update",
]

"""PostgreSQL activities of the firmware and diagnostics workflows (docs/firmware.md).

Each is idempotent by the business id the workflow chose (``update_id`` / ``upload_id`` from
``workflow.uuid4()``): a retried ``prepare_*`` replaces the row's token (the earlier one was never
sent: the workflow sends only the location of the attempt that completed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.settings import Settings
from db.engine import SessionFactory
from db.events import record_event
from db.firmware_models import DiagnosticsUpload, FirmwareCampaign, FirmwareFile, FirmwareUpdate
from db.models import Charger
from domain.events import CAMPAIGN_PROGRESS
from services.files import new_token, token_digest
from workflows.firmware_messages import (
    ACTIVITY_FIRMWARE_UPDATE_STATES,
    ACTIVITY_PREPARE_DIAGNOSTICS,
    ACTIVITY_PREPARE_FIRMWARE_UPDATE,
    ACTIVITY_RECORD_CAMPAIGN_PROGRESS,
    ACTIVITY_RECORD_DIAGNOSTICS_SENT,
    ACTIVITY_RECORD_FIRMWARE_SENT,
    CampaignProgress,
    PreparedDownload,
    PrepareDiagnosticsInput,
    PrepareFirmwareUpdateInput,
    RecordSentInput,
    UpdateStates,
    UpdateStatesInput,
)


class FirmwareActivities:
    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self._settings = settings
        self._sessions = sessions

    @activity.defn(name=ACTIVITY_PREPARE_FIRMWARE_UPDATE)
    async def prepare_firmware_update(self, input: PrepareFirmwareUpdateInput) -> PreparedDownload:
        """The ``firmware_updates`` row and a fresh download token; answers the URL."""
        token = new_token()
        expires = input.retrieve_at + timedelta(seconds=self._settings.firmware_url_ttl_s)
        async with self._sessions.begin() as db:
            firmware = await db.get(FirmwareFile, input.firmware_id)
            charger = await db.get(Charger, input.charge_box_id)
            if firmware is None or charger is None:
                raise ApplicationError(
                    "unknown firmware or charger", type="UnknownTarget", non_retryable=True
                )
            values = {
                "token_sha256": token_digest(token),
                "token_expires_at": expires,
            }
            await db.execute(
                insert(FirmwareUpdate)
                .values(
                    id=input.update_id,
                    charge_box_id=input.charge_box_id,
                    firmware_id=input.firmware_id,
                    campaign_id=input.campaign_id,
                    retrieve_at=input.retrieve_at,
                    status="requested",
                    version_before=charger.firmware_version,
                    requested_by=input.requested_by,
                    **values,
                )
                .on_conflict_do_update(index_elements=[FirmwareUpdate.id], set_=values)
            )
        base = self._settings.public_base
        return PreparedDownload(location=f"{base}/files/firmware/{token}/{quote(firmware.name)}")

    @activity.defn(name=ACTIVITY_RECORD_FIRMWARE_SENT)
    async def record_firmware_sent(self, input: RecordSentInput) -> None:
        async with self._sessions.begin() as db:
            await db.execute(
                update(FirmwareUpdate)
                .where(FirmwareUpdate.id == input.id)
                .values(
                    status=input.status,
                    error=input.error,
                    sent_at=func.now() if input.status == "sent" else None,
                )
            )

    @activity.defn(name=ACTIVITY_FIRMWARE_UPDATE_STATES)
    async def firmware_update_states(self, input: UpdateStatesInput) -> UpdateStates:
        async with self._sessions() as db:
            rows = (
                await db.execute(
                    select(FirmwareUpdate.id, FirmwareUpdate.firmware_status).where(
                        FirmwareUpdate.id.in_(input.update_ids)
                    )
                )
            ).all()
        return UpdateStates(states={row.id: row.firmware_status for row in rows})

    @activity.defn(name=ACTIVITY_RECORD_CAMPAIGN_PROGRESS)
    async def record_campaign_progress(self, input: CampaignProgress) -> None:
        """Store the campaign's progress and announce it (``firmware_campaign.progress``) when it
        changed: a retried attempt finds the row as it left it and announces nothing."""
        values = {
            "state": input.state,
            "waves_done": input.waves_done,
            "succeeded": input.succeeded,
            "failed": input.failed,
            "halted_reason": input.halted_reason,
        }
        c = FirmwareCampaign
        changed = or_(
            c.state.is_distinct_from(input.state),
            c.waves_done.is_distinct_from(input.waves_done),
            c.succeeded.is_distinct_from(cast(input.succeeded, JSONB)),
            c.failed.is_distinct_from(cast(input.failed, JSONB)),
            c.halted_reason.is_distinct_from(input.halted_reason),
        )
        async with self._sessions.begin() as db:
            updated = await db.scalar(
                update(c)
                .where(c.id == input.campaign_id, changed)
                .values(**values, updated_at=func.now())
                .returning(c.id)
            )
            if updated is None:
                return
            await record_event(
                db,
                CAMPAIGN_PROGRESS,
                {
                    "campaign_id": input.campaign_id,
                    "status": input.state,
                    "total": input.total,
                    "installed": len(input.succeeded),
                    "failed": len(input.failed),
                    "waves_done": input.waves_done,
                    "current_wave": input.current_wave,
                    "halted_reason": input.halted_reason,
                },
                subject=input.campaign_id,
            )

    @activity.defn(name=ACTIVITY_PREPARE_DIAGNOSTICS)
    async def prepare_diagnostics(self, input: PrepareDiagnosticsInput) -> PreparedDownload:
        """The ``diagnostics_uploads`` row and a fresh single-use upload token."""
        token = new_token()
        expires = datetime.now(UTC) + timedelta(seconds=self._settings.diagnostics_url_ttl_s)
        values = {"token_sha256": token_digest(token), "token_expires_at": expires}
        async with self._sessions.begin() as db:
            await db.execute(
                insert(DiagnosticsUpload)
                .values(
                    id=input.upload_id,
                    charge_box_id=input.charge_box_id,
                    status="requested",
                    requested_by=input.requested_by,
                    **values,
                )
                .on_conflict_do_update(index_elements=[DiagnosticsUpload.id], set_=values)
            )
        return PreparedDownload(location=f"{self._settings.public_base}/files/diagnostics/{token}")

    @activity.defn(name=ACTIVITY_RECORD_DIAGNOSTICS_SENT)
    async def record_diagnostics_sent(self, input: RecordSentInput) -> None:
        values: dict[str, object] = {"status": input.status, "error": input.error}
        if input.status == "sent":
            values["file_name"] = input.file_name
        else:
            values["token_sha256"] = None  # nothing will come: the URL stops working now
        async with self._sessions.begin() as db:
            # A fast charger may have uploaded already: such a row is never stepped back.
            await db.execute(
                update(DiagnosticsUpload)
                .where(DiagnosticsUpload.id == input.id, DiagnosticsUpload.status == "requested")
                .values(**values)
            )


__all__ = ["FirmwareActivities"]

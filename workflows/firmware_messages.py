"""Inputs and results of the firmware and diagnostics workflows and their activities
(docs/firmware.md). Shared by ``workflows/firmware.py`` and ``activities/firmware.py``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

ACTIVITY_PREPARE_FIRMWARE_UPDATE = "prepare_firmware_update"
ACTIVITY_RECORD_FIRMWARE_SENT = "record_firmware_sent"
ACTIVITY_FIRMWARE_UPDATE_STATES = "firmware_update_states"
ACTIVITY_RECORD_CAMPAIGN_PROGRESS = "record_campaign_progress"
ACTIVITY_PREPARE_DIAGNOSTICS = "prepare_diagnostics"
ACTIVITY_RECORD_DIAGNOSTICS_SENT = "record_diagnostics_sent"


# -- one update --------------------------------------------------------------------------------


class FirmwareUpdateInput(BaseModel):
    charge_box_id: str
    firmware_id: str
    # None: the workflow's start time.
    retrieve_at: datetime | None = None
    # OCPP UpdateFirmware.retries / retryInterval (None: the charger decides).
    retries: int | None = None
    retry_interval_s: int | None = None
    requested_by: str = "system"
    campaign_id: str | None = None


class FirmwareUpdateResult(BaseModel):
    update_id: str
    charge_box_id: str
    # sent | failed
    status: str
    error: str | None = None


class PrepareFirmwareUpdateInput(BaseModel):
    update_id: str
    charge_box_id: str
    firmware_id: str
    retrieve_at: datetime
    requested_by: str
    campaign_id: str | None = None


class PreparedDownload(BaseModel):
    # The download URL with its token (the token is stored hashed only).
    location: str


class RecordSentInput(BaseModel):
    id: str
    # sent | failed | rejected
    status: str
    error: str | None = None
    file_name: str | None = None


class UpdateStatesInput(BaseModel):
    update_ids: list[str]


class UpdateStates(BaseModel):
    # update id → the charger's last FirmwareStatusNotification status (None: nothing yet)
    states: dict[str, str | None] = Field(default_factory=dict)


# -- campaigns ---------------------------------------------------------------------------------


class CampaignInput(BaseModel):
    campaign_id: str
    firmware_id: str
    chargers: list[str]
    wave_size: int = 5
    pause_s: float = 300.0
    # The campaign halts once more than this many chargers failed.
    max_failures: int = 0
    # A charger of a wave that has not reported Installed by then counts as failed.
    wave_deadline_s: float = 3600.0
    poll_interval_s: float = 15.0
    retries: int | None = None
    retry_interval_s: int | None = None
    requested_by: str = "system"
    # Past this many history events the campaign continues as new at the next wave boundary.
    history_limit: int = 5000
    # Carried over continue-as-new:
    next_index: int = 0
    waves_done: int = 0
    succeeded: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    halt_reason: str | None = None


class CampaignProgress(BaseModel):
    campaign_id: str
    # running | completed | halted
    state: str
    total: int
    waves_done: int
    current_wave: list[str] = Field(default_factory=list)
    succeeded: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    halted_reason: str | None = None


class HaltInput(BaseModel):
    reason: str = "halted by an operator"


# -- diagnostics -------------------------------------------------------------------------------


class DiagnosticsInput(BaseModel):
    charge_box_id: str
    requested_by: str = "system"
    retries: int | None = None
    retry_interval_s: int | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None


class PrepareDiagnosticsInput(BaseModel):
    upload_id: str
    charge_box_id: str
    requested_by: str


class DiagnosticsResult(BaseModel):
    upload_id: str
    # sent | failed
    status: str
    # The file name the charger said it will upload (GetDiagnostics.conf); None: nothing to send.
    file_name: str | None = None
    error: str | None = None

"""The contract of the site load workflow (names pinned; one pydantic model per payload).

``SiteLoad`` runs once per site (id ``site-load:<site id>``) and is reached by signal-with-start:
from the gateway outbox (a transaction started or stopped at a limited site, a charger of the
site connected) and from the service layer (the operator changed the limit).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SITE_LOAD_WORKFLOW = "SiteLoad"
# Signal to SiteLoad; also the gateway outbox ``kind`` of the load trigger.
SIGNAL_SITE_LOAD = "site_load_changed"
QUERY_SITE_LOAD_STATUS = "site_load_status"

ACTIVITY_LOAD_PLAN = "site_load_plan"
ACTIVITY_LOAD_RECORD = "site_load_record"

# OCPP chargingProfileId of the profiles we send: one TxDefaultProfile per charger, one
# TxProfile per connector (a new profile with the same id replaces the old one on the charger).
DEFAULT_PROFILE_ID = 9100
TX_PROFILE_ID_BASE = 9200

ProfilePurpose = Literal["TxProfile", "TxDefaultProfile"]


def site_load_workflow_id(site_id: int) -> str:
    return f"site-load:{site_id}"


class SiteLoadInput(BaseModel):
    site_id: int
    # With nothing to do for this long the workflow ends (the next signal starts a fresh one);
    # after this many rounds it continues as new.
    idle_s: float = 3600.0
    continue_as_new_after_rounds: int = 200
    # Carried over continue-as-new: a signal no round has served yet.
    pending: bool = True


class SiteLoadSignal(BaseModel):
    # started | stopped | connected | booted (gateway outbox), limit_changed (service), forced
    reason: str = "changed"
    charge_box_id: str | None = None
    # The gateway outbox row id when the relay delivered it.
    event_id: int | None = None


class SiteLoadStatus(BaseModel):
    site_id: int
    rounds: int
    sent: int
    last_outcome: str | None = None


class PlanInput(BaseModel):
    site_id: int
    reason: str = "changed"


class ProfileCommand(BaseModel):
    """One SetChargingProfile (``limit`` set) or ClearChargingProfile (``limit`` None) to send."""

    charge_box_id: str
    connector_id: int
    purpose: ProfilePurpose
    task_queue: str
    unit: Literal["W", "A"]
    limit: int | None
    transaction_id: int | None = None
    phases: int | None = None

    def action(self) -> Literal["SetChargingProfile", "ClearChargingProfile"]:
        return "SetChargingProfile" if self.limit is not None else "ClearChargingProfile"

    def payload(self) -> dict[str, object]:
        profile_id = (
            DEFAULT_PROFILE_ID
            if self.purpose == "TxDefaultProfile"
            else TX_PROFILE_ID_BASE + self.connector_id
        )
        if self.limit is None:
            return {"id": profile_id}
        schedule: dict[str, object] = {
            "chargingRateUnit": self.unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": self.limit}],
        }
        if self.unit == "A" and self.phases:
            schedule["chargingSchedulePeriod"] = [
                {"startPeriod": 0, "limit": self.limit, "numberPhases": self.phases}
            ]
        profile: dict[str, object] = {
            "chargingProfileId": profile_id,
            "stackLevel": 0,
            "chargingProfilePurpose": self.purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": schedule,
        }
        if self.transaction_id is not None:
            profile["transactionId"] = self.transaction_id
        return {"connectorId": self.connector_id, "csChargingProfiles": profile}


class LoadPlan(BaseModel):
    known: bool
    commands: list[ProfileCommand] = Field(default_factory=list)


class ProfileOutcome(BaseModel):
    site_id: int
    command: ProfileCommand
    # accepted | rejected | offline | failed
    status: str
    error: str | None = None

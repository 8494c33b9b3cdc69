"""FirmwareStatusNotification and DiagnosticsStatusNotification, journaled (docs/firmware.md).

The charger's last status goes to ``charger_firmware_states``; a firmware status other than Idle
also moves the charger's open update (the newest ``firmware_updates`` row not yet final), which a
waiting campaign reads. An UploadFailed closes the newest diagnostics request still waiting.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from db.engine import SessionFactory
from db.firmware_models import (
    FIRMWARE_FINAL_FAILED,
    FIRMWARE_FINAL_OK,
    ChargerFirmwareState,
    DiagnosticsUpload,
    FirmwareUpdate,
)

FIRMWARE_FINAL = FIRMWARE_FINAL_FAILED | {FIRMWARE_FINAL_OK}


async def record_firmware_status(
    sf: SessionFactory, charge_box_id: str, status: str, now: datetime
) -> None:
    async with sf.begin() as s:
        await s.execute(
            insert(ChargerFirmwareState)
            .values(charge_box_id=charge_box_id, firmware_status=status, firmware_status_at=now)
            .on_conflict_do_update(
                index_elements=[ChargerFirmwareState.charge_box_id],
                set_={"firmware_status": status, "firmware_status_at": now},
            )
        )
        if status == "Idle":
            return
        open_update = (
            select(FirmwareUpdate.id)
            .where(
                FirmwareUpdate.charge_box_id == charge_box_id,
                FirmwareUpdate.status.in_(("requested", "sent")),
                (FirmwareUpdate.firmware_status.is_(None))
                | FirmwareUpdate.firmware_status.not_in(FIRMWARE_FINAL),
            )
            .order_by(FirmwareUpdate.created_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        await s.execute(
            update(FirmwareUpdate)
            .where(FirmwareUpdate.id == open_update)
            .values(firmware_status=status, firmware_status_at=now)
        )


async def record_diagnostics_status(
    sf: SessionFactory, charge_box_id: str, status: str, now: datetime
) -> None:
    async with sf.begin() as s:
        await s.execute(
            insert(ChargerFirmwareState)
            .values(
                charge_box_id=charge_box_id, diagnostics_status=status, diagnostics_status_at=now
            )
            .on_conflict_do_update(
                index_elements=[ChargerFirmwareState.charge_box_id],
                set_={"diagnostics_status": status, "diagnostics_status_at": now},
            )
        )
        if status != "UploadFailed":
            return
        waiting = (
            select(DiagnosticsUpload.id)
            .where(
                DiagnosticsUpload.charge_box_id == charge_box_id,
                DiagnosticsUpload.status.in_(("requested", "sent")),
            )
            .order_by(DiagnosticsUpload.created_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        await s.execute(
            update(DiagnosticsUpload)
            .where(DiagnosticsUpload.id == waiting)
            .values(status="failed", error="the charger reported UploadFailed", token_sha256=None)
        )

"""One charger's firmware update and diagnostics, end to end over the real stack; the file URLs
refuse unknown, expired, reused and mismatched tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from db.firmware_models import ChargerFirmwareState, DiagnosticsUpload, FirmwareUpdate
from services import diagnostics, firmware
from services.errors import ChargerOffline, NotFound
from services.files import TooLarge
from tests.firmware.conftest import (
    ADMIN,
    IMAGE,
    Stack,
    charger_row,
    image_chunks,
    seed_chargers,
    sha256,
    updates_of,
)
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(120)


async def test_single_update_end_to_end(stack: Stack) -> None:
    image = await firmware.upload_firmware(
        stack.ctx, ADMIN, name="fw-2.0.0.bin", version="2.0.0", body=image_chunks()
    )
    assert image["sha256"] == sha256(IMAGE)
    assert image["size_bytes"] == len(IMAGE)
    [cb] = await seed_chargers(stack.sf, 1)
    sim = stack.charger(cb)
    await sim.connect()
    assert (await charger_row(stack.sf, cb)).firmware_version == "1.0.0"

    view = await firmware.update_firmware(stack.ctx, ADMIN, cb, firmware_id=image["id"])
    assert view["status"] == "sent"
    assert view["version_before"] == "1.0.0"
    [request] = sim.update_requests
    # The charger was given the platform's URL with an unguessable token, not an id.
    assert request["location"].startswith(f"{stack.api_url}/files/firmware/")
    assert image["id"] not in request["location"]

    async def installed_and_rebooted() -> bool:
        row = await charger_row(stack.sf, cb)
        return row.firmware_version == "2.0.0" and sim.boots == 2

    await eventually(installed_and_rebooted, message="the charger on 2.0.0")
    assert sim.downloaded == IMAGE
    assert sim.statuses == ["Downloading", "Downloaded", "Installing", "Installed"]
    [row] = await updates_of(stack.sf, cb)
    assert row.firmware_status == "Installed" and row.downloads == 1
    shown = await firmware.charger_firmware(stack.ctx, ADMIN, cb)
    assert shown["firmware_status"] == "Installed"
    assert shown["firmware_version"] == "2.0.0"
    assert shown["updates"][0]["charger_firmware_version"] == "2.0.0"


async def test_update_of_an_offline_charger_is_refused_at_once(stack: Stack) -> None:
    image = await firmware.upload_firmware(
        stack.ctx, ADMIN, name="fw.bin", version="3", body=image_chunks()
    )
    [cb] = await seed_chargers(stack.sf, 1)
    with pytest.raises(ChargerOffline):
        await firmware.update_firmware(stack.ctx, ADMIN, cb, firmware_id=image["id"])
    assert await updates_of(stack.sf, cb) == []


async def test_oversized_upload_is_refused_and_leaves_nothing(stack: Stack) -> None:
    ctx = stack.ctx
    small = ctx.settings.model_copy(update={"firmware_max_bytes": 1000})
    with pytest.raises(TooLarge):
        await firmware.upload_firmware(
            type(ctx)(settings=small, sessions=ctx.sessions, temporal=ctx.temporal),
            ADMIN,
            name="big.bin",
            version="9",
            body=image_chunks(),
        )
    leftovers = [p for p in stack.settings.files_root.rglob("*") if p.is_file()]
    assert leftovers == []


async def test_firmware_url_refuses_bad_expired_and_mismatched_tokens(stack: Stack) -> None:
    image = await firmware.upload_firmware(
        stack.ctx, ADMIN, name="fw-t.bin", version="4", body=image_chunks()
    )
    [cb] = await seed_chargers(stack.sf, 1)
    sim = stack.charger(cb, behaviour="silent")
    await sim.connect()
    view = await firmware.update_firmware(stack.ctx, ADMIN, cb, firmware_id=image["id"])
    location = sim.update_requests[0]["location"]
    token = location.split("/files/firmware/")[1].split("/")[0]
    async with httpx.AsyncClient() as http:
        assert (await http.get(location)).content == IMAGE
        # Guessing: the firmware's id, a random token, the right token with another file name.
        for url in (
            f"{stack.api_url}/files/firmware/{image['id']}/fw-t.bin",
            f"{stack.api_url}/files/firmware/{'A' * 43}/fw-t.bin",
            f"{stack.api_url}/files/firmware/{token}/other.bin",
            f"{stack.api_url}/files/firmware/{token}/..%2F..%2Fetc%2Fpasswd",
        ):
            assert (await http.get(url)).status_code == 404, url
        async with stack.sf.begin() as db:
            await db.execute(
                update(FirmwareUpdate)
                .where(FirmwareUpdate.id == view["id"])
                .values(token_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        expired = await http.get(location)
        assert expired.status_code == 404
        assert expired.json()["error"] == "NOT_FOUND"


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_diagnostics_upload_and_listing(stack: Stack, method: str) -> None:
    [cb] = await seed_chargers(stack.sf, 1)
    sim = stack.charger(cb, upload_method=method)
    await sim.connect()
    view = await diagnostics.request_diagnostics(stack.ctx, ADMIN, cb)
    assert view["status"] in ("sent", "uploaded", "receiving")
    [location] = sim.diagnostics_requests
    assert location.startswith(f"{stack.api_url}/files/diagnostics/")

    async def uploaded() -> list[dict[str, object]]:
        rows = await diagnostics.list_diagnostics(stack.ctx, ADMIN, cb)
        assert rows and rows[0]["status"] == "uploaded"
        return rows

    [row] = await eventually(uploaded, message="the diagnostics file")
    content = f"diagnostics of {cb}\n".encode() * 100
    assert row["file_name"] == f"diag-{cb}.log"
    assert row["size_bytes"] == len(content) and row["sha256"] == sha256(content)
    path, name = await diagnostics.diagnostics_file(stack.ctx, ADMIN, cb, str(row["id"]))
    assert path.read_bytes() == content and name == f"diag-{cb}.log"

    async def status_tracked() -> bool:
        async with stack.sf() as db:
            state = await db.get(ChargerFirmwareState, cb)
        return state is not None and state.diagnostics_status == "Uploaded"

    await eventually(status_tracked, message="DiagnosticsStatusNotification Uploaded")
    # The token worked once.
    async with httpx.AsyncClient() as http:
        again = await http.put(f"{location}/again.log", content=b"more")
        assert again.status_code == 404
        assert (await http.post(f"{stack.api_url}/files/diagnostics/{'B' * 43}")).status_code == 404
    with pytest.raises(NotFound):
        await diagnostics.diagnostics_file(stack.ctx, ADMIN, "someone-else", str(row["id"]))


async def test_expired_diagnostics_token_is_refused(stack: Stack) -> None:
    [cb] = await seed_chargers(stack.sf, 1)
    sim = stack.charger(cb)
    await sim.connect()
    # The charger is slow: by the time it uploads, the URL has expired.
    original = sim.run_upload

    async def late_upload(location: str, name: str) -> None:
        async with stack.sf.begin() as db:
            await db.execute(
                update(DiagnosticsUpload)
                .where(DiagnosticsUpload.charge_box_id == cb)
                .values(token_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        await original(location, name)

    sim.run_upload = late_upload  # type: ignore[method-assign]
    await diagnostics.request_diagnostics(stack.ctx, ADMIN, cb)
    await eventually(lambda: sim.upload_answer is not None, message="the upload's answer")
    assert sim.upload_answer == 404

    async def failed() -> bool:
        rows = await diagnostics.list_diagnostics(stack.ctx, ADMIN, cb)
        return rows[0]["status"] == "failed" and rows[0]["size_bytes"] is None

    await eventually(failed, message="UploadFailed recorded")

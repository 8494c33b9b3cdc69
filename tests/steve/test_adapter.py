"""The REST adapter against the stand-in (contract-checked both ways): tags, transactions, the
nine operations, and every error shape mapped to its typed error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call

from activities.steve import (
    StationCallError,
    StationOffline,
    StationTimeout,
    SteveAuthError,
    SteveBadRequest,
    SteveClient,
    SteveNotFound,
    SteveUnavailable,
    TagNotEligible,
)
from sandbox.steve.server import RunningSteve
from tests.helpers import free_port
from tests.steve.conftest import USER, box_id, field_charger


async def test_tags_crud_and_expire(steve_client: SteveClient) -> None:
    parent = await steve_client.create_tag("PARENT-1", note="fleet")
    tag = await steve_client.create_tag(
        "CARD-A",
        parent_id_tag="PARENT-1",
        expiry_date=datetime(2030, 1, 1, tzinfo=UTC),
        max_active_transactions=2,
    )
    assert (tag.parent_id_tag, tag.max_active_transactions, tag.blocked) == ("PARENT-1", 2, False)
    assert tag.expiry_date == datetime(2030, 1, 1, tzinfo=UTC)
    assert await steve_client.find_tag("CARD-A") == tag
    assert await steve_client.get_tag(tag.pk) == tag
    blocked = await steve_client.update_tag(tag.pk, "CARD-A", max_active_transactions=0)
    assert blocked.blocked and blocked.parent_id_tag is None
    assert [t.id_tag for t in await steve_client.list_tags(blocked="TRUE")] == ["CARD-A"]
    expired = await steve_client.expire_tag(tag.pk)
    assert expired.expired(datetime.now(UTC) + timedelta(seconds=1))
    assert (await steve_client.delete_tag(tag.pk)).id_tag == "CARD-A"
    assert await steve_client.find_tag("CARD-A") is None
    with pytest.raises(SteveNotFound):
        await steve_client.get_tag(tag.pk)
    with pytest.raises(SteveBadRequest, match="already exists"):
        await steve_client.create_tag("PARENT-1")
    with pytest.raises(SteveBadRequest, match="parent"):
        await steve_client.create_tag("CARD-B", parent_id_tag="NO-SUCH")
    assert parent.note == "fleet"


async def test_transactions_list_detail_and_stop(
    steve: RunningSteve, steve_client: SteveClient
) -> None:
    await steve_client.create_tag("CARD-T")
    cb = box_id()
    async with field_charger(steve, cb) as cp:
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="CARD-T", meter_start=100, timestamp="2025-02-01T08:00:00Z"
            )
        )
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=start.transaction_id,
                meter_value=[
                    {
                        "timestamp": "2025-02-01T08:10:00Z",
                        "sampledValue": [
                            {"value": "2.5", "unit": "kWh"},
                            {"value": "11", "measurand": "Power.Active.Import", "unit": "kW"},
                        ],
                    }
                ],
            )
        )
    active = await steve_client.list_transactions(kind="ACTIVE", charge_box_ids=[cb])
    assert [t.id for t in active] == [start.transaction_id]
    assert active[0].start_wh == 100 and active[0].active
    details = await steve_client.transaction_details(start.transaction_id)
    assert [(v.value, v.unit) for v in details.values] == [("2.5", "kWh")]
    every = await steve_client.transaction_details(start.transaction_id, energy_values_only=False)
    assert len(every.values) == 2
    await steve_client.stop_transaction(start.transaction_id)
    (stopped,) = await steve_client.list_transactions(ids=[start.transaction_id])
    assert (stopped.stop_wh, stopped.stop_actor, stopped.active) == (2500, "manual", False)
    assert await steve_client.list_transactions(kind="ACTIVE", charge_box_ids=[cb]) == []
    window = await steve_client.list_transactions(
        started_from=datetime(2025, 2, 1, tzinfo=UTC), started_to=datetime(2025, 2, 2, tzinfo=UTC)
    )
    assert [t.id for t in window] == [start.transaction_id]
    with pytest.raises(SteveBadRequest, match="already stopped"):
        await steve_client.stop_transaction(start.transaction_id)
    with pytest.raises(SteveNotFound):
        await steve_client.transaction_details(999_999)


async def test_every_operation_reaches_the_charger(
    steve: RunningSteve, steve_client: SteveClient
) -> None:
    await steve_client.create_tag("CARD-OP")
    profile_pk = steve.standin.state.add_charging_profile(
        {
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
            },
        }
    )
    cb = box_id()
    async with field_charger(steve, cb) as cp:
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="CARD-OP", meter_start=0, timestamp="2025-03-01T08:00:00Z"
            )
        )
        expiry = datetime.now(UTC) + timedelta(hours=1)
        outcomes = [
            await steve_client.remote_start(cb, "CARD-OP", connector_id=2),
            await steve_client.remote_stop(cb, start.transaction_id),
            await steve_client.unlock_connector(cb, 1),
            await steve_client.reset(cb, "Soft"),
            await steve_client.change_availability(cb, "Inoperative", 2),
            await steve_client.trigger_message(cb, "StatusNotification", 1),
            await steve_client.reserve_now(cb, 1, "CARD-OP", expiry),
            await steve_client.cancel_reservation(cb, 1),
            await steve_client.set_charging_profile(cb, profile_pk, 1),
        ]
    assert [o.response for o in outcomes] == [
        "Accepted",
        "Accepted",
        "Unlocked",
        "Accepted",
        "Accepted",
        "Accepted",
        "Accepted",
        "Accepted",
        "Accepted",
    ]
    assert [a for a, _ in cp.received] == [
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "UnlockConnector",
        "Reset",
        "ChangeAvailability",
        "TriggerMessage",
        "ReserveNow",
        "CancelReservation",
        "SetChargingProfile",
    ]
    fields = dict(cp.received)
    assert fields["RemoteStartTransaction"] == {"id_tag": "CARD-OP", "connector_id": 2}
    assert fields["SetChargingProfile"]["cs_charging_profiles"]["charging_profile_id"] == profile_pk


async def test_a_refusing_station_is_a_result_not_an_error(
    steve: RunningSteve, steve_client: SteveClient
) -> None:
    cb = box_id()
    async with field_charger(steve, cb) as cp:
        cp.answers["Reset"] = "Rejected"
        outcome = await steve_client.reset(cb, "Hard")
    assert (outcome.kind, outcome.response) == ("success", "Rejected")


async def test_error_shapes(steve: RunningSteve, steve_client: SteveClient) -> None:
    await steve_client.create_tag("CARD-OK")
    blocked = await steve_client.create_tag("CARD-BLOCKED", max_active_transactions=0)
    cb = box_id()
    # Station offline: an `exceptions` entry.
    with pytest.raises(StationOffline) as offline:
        await steve_client.reset(box_id(), "Soft")
    assert offline.value.retryable
    async with field_charger(steve, cb) as cp:
        # Tag not eligible: unknown, blocked, expired.
        for tag in ("CARD-NONE", "CARD-BLOCKED"):
            with pytest.raises(TagNotEligible):
                await steve_client.remote_start(cb, tag)
        await steve_client.expire_tag((await steve_client.find_tag("CARD-OK")).pk)  # type: ignore[union-attr]
        with pytest.raises(TagNotEligible, match="Expired"):
            await steve_client.reserve_now(cb, 1, "CARD-OK", datetime.now(UTC))
        # The station answers with a CallError: `errorResponses`.
        with pytest.raises(StationCallError) as call_error:
            await steve_client.operate_one("ClearCache", cb)
        assert call_error.value.error_code == "NotImplemented"
        # The station never answers: the task is unfinished.
        cp.hang.add("UnlockConnector")
        with pytest.raises(StationTimeout):
            await steve_client.unlock_connector(cb, 1)
        # Something SteVe refuses that is not about a tag.
        with pytest.raises(SteveBadRequest, match="not active"):
            await steve_client.remote_stop(cb, 424242)
        with pytest.raises(SteveBadRequest):
            await steve_client.set_charging_profile(cb, 9999, 1)
    assert blocked.blocked
    # Wrong credentials, and no SteVe at all.
    async with SteveClient(steve.url, USER, "wrong") as bad:
        with pytest.raises(SteveAuthError) as auth:
            await bad.list_tags()
        assert "wrong" not in str(auth.value)
    async with SteveClient(f"http://127.0.0.1:{free_port()}/steve", USER, "x") as gone:
        with pytest.raises(SteveUnavailable) as unavailable:
            await gone.list_transactions()
        assert unavailable.value.retryable

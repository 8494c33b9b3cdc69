"""Events recorded at their sources exactly once: the session read model's writer (retried
activities), the operations log, and the pure rules behind the streams' filters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import jsonschema
import pytest
from sqlalchemy import select

from activities.firmware import FirmwareActivities
from activities.sessions import SessionActivities, SessionReadModel
from api.errors import ApiError
from api.live_hub import StreamEvent, Subscriber
from api.routes_stream import StreamFilter, parse_types
from config.settings import Settings
from db.engine import SessionFactory
from db.firmware_models import FirmwareCampaign, FirmwareFile
from db.models import Charger, PlatformEvent
from db.operations import finish_operation, insert_operation
from domain.events import (
    CAMPAIGN_PROGRESS,
    CHARGER_STATUS_CHANGED,
    OPERATION_COMPLETED,
    SESSION_BILLED,
    SESSION_STARTED,
    SESSION_STOPPED,
    SESSION_UPDATED,
)
from domain.session_announcements import RowFacts, session_events
from domain.webhook_schemas import DATA_SCHEMAS
from workflows.firmware_messages import CampaignProgress


async def events_of(factory: SessionFactory, subject: str) -> list[PlatformEvent]:
    async with factory() as db:
        return list(
            (
                await db.scalars(
                    select(PlatformEvent)
                    .where(PlatformEvent.subject == subject)
                    .order_by(PlatformEvent.id)
                )
            ).all()
        )


async def test_session_writes_announce_each_change_once_even_when_retried(
    session_factory: SessionFactory,
) -> None:
    charge_box_id = f"REC-{uuid.uuid4().hex[:8]}"
    async with session_factory.begin() as db:
        db.add(Charger(charge_box_id=charge_box_id))
    workflow_id = f"wf-{charge_box_id}"
    # Meter progress alone is announced at most once per interval since the session's last
    # event: ``throttled`` never lets it through, ``eager`` always does.
    throttled = SessionActivities(session_factory, progress_event_interval_s=3600)
    eager = SessionActivities(session_factory, progress_event_interval_s=0)
    started = datetime.now(UTC)

    def row(state: str, energy_wh: int = 0, **extra: object) -> SessionReadModel:
        return SessionReadModel.model_validate(
            {
                "workflow_id": workflow_id,
                "state": state,
                "charge_box_id": charge_box_id,
                "connector_id": 1,
                "id_tag": "SECRETTAG1",
                "user_id": "driver-rec",
                "energy_wh": energy_wh,
                "started_at": started if state != "pre_authorized" else None,
                **extra,
            }
        )

    steps = [
        (throttled, row("pre_authorized")),
        (throttled, row("charging")),
        (throttled, row("charging", 100)),  # within the interval: not announced
        (eager, row("charging", 200)),  # past it: announced
        (throttled, row("stopped", 300, stopped_at=datetime.now(UTC))),
        (throttled, row("billed", 300, stopped_at=datetime.now(UTC))),
        (throttled, row("closed", 300, stopped_at=datetime.now(UTC))),
    ]
    for writer, step in steps:
        # Each write twice, as a retried activity would (and twice concurrently).
        await asyncio.gather(
            writer.upsert_session_read_model(step), writer.upsert_session_read_model(step)
        )
        await writer.upsert_session_read_model(step)
    events = await events_of(session_factory, workflow_id)
    assert [e.type for e in events] == [
        SESSION_UPDATED,  # (no row) -> pre_authorized
        SESSION_STARTED,
        SESSION_UPDATED,  # 200 Wh
        SESSION_STOPPED,
        SESSION_BILLED,
        SESSION_UPDATED,  # billed -> closed
    ]
    assert all(e.user_id == "driver-rec" and e.charge_box_id == charge_box_id for e in events)
    assert events[2].payload["energy_wh"] == 200
    assert events[3].payload["state"] == "stopped" and events[3].payload["energy_wh"] == 300
    assert all("SECRETTAG1" not in str(e.payload) for e in events)
    for event in events:  # the webhooks' catalogue (docs/webhooks.md) describes them
        jsonschema.validate(event.payload, DATA_SCHEMAS[event.type])


async def test_an_operation_is_announced_once_when_it_becomes_final(
    session_factory: SessionFactory,
) -> None:
    operation_id = str(uuid.uuid4())
    async with session_factory.begin() as db:
        await insert_operation(
            db,
            operation_id=operation_id,
            charge_box_id="OPS-REC",
            action="ChangeConfiguration",
            fields={"key": "AuthorizationKey", "value": "s3cret-password"},
            requested_by="user:admin",
            source="test",
            workflow_id=None,
        )
    assert await events_of(session_factory, operation_id) == []
    for _ in range(2):  # a retried finish
        await finish_operation(session_factory, operation_id, "failed", error="no route")
    # An operation refused before it was ever sent is final at once.
    offline_id = str(uuid.uuid4())
    async with session_factory.begin() as db:
        await insert_operation(
            db,
            operation_id=offline_id,
            charge_box_id="OPS-REC",
            action="Reset",
            fields={"type": "Soft"},
            requested_by="user:admin",
            source="test",
            workflow_id=None,
            status="charger_offline",
        )
    (event,) = await events_of(session_factory, operation_id)
    assert event.type == OPERATION_COMPLETED
    assert event.payload["status"] == "failed" and event.payload["action"] == "ChangeConfiguration"
    assert "s3cret" not in str(event.payload)
    (refused,) = await events_of(session_factory, offline_id)
    assert refused.payload["status"] == "charger_offline"
    jsonschema.validate(event.payload, DATA_SCHEMAS[OPERATION_COMPLETED])


def test_session_event_rules() -> None:
    now = datetime.now(UTC)
    assert session_events(None, RowFacts("requested", 0, None), progress_due=True) == [
        SESSION_UPDATED
    ]
    # A whole session between two writes: started, stopped and billed, in that order.
    assert session_events(
        RowFacts("pre_authorized", 0, None), RowFacts("closed", 5, now), progress_due=False
    ) == [SESSION_STARTED, SESSION_STOPPED, SESSION_BILLED]
    # Abandoned, then closed without billing.
    assert session_events(
        RowFacts("charging", 5, now), RowFacts("abandoned", 5, now), progress_due=False
    ) == [SESSION_STOPPED]
    assert session_events(
        RowFacts("abandoned", 5, now), RowFacts("closed", 5, now), progress_due=False
    ) == [SESSION_UPDATED]
    # A start that never happened ends without session.stopped.
    assert session_events(
        RowFacts("requested", 0, None), RowFacts("expired", 0, None), progress_due=True
    ) == [SESSION_UPDATED]
    same = RowFacts("charging", 5, now)
    assert session_events(same, same, progress_due=True) == []
    assert session_events(same, RowFacts("charging", 9, now), progress_due=False) == []


def _event(n: int, type: str = SESSION_UPDATED, **kw: object) -> StreamEvent:
    return StreamEvent(
        id=n,
        type=type,
        occurred_at=datetime.now(UTC),
        subject=None,
        charge_box_id=kw.get("charge_box_id"),  # type: ignore[arg-type]
        site_id=None,
        user_id=kw.get("user_id"),  # type: ignore[arg-type]
        payload={},
    )


def test_filters_and_a_slow_subscriber() -> None:
    driver = StreamFilter(user_id="me", charge_box_ids={"CB-MINE"})
    assert driver.accepts(_event(1, user_id="me"))
    assert not driver.accepts(_event(2, user_id="someone-else", charge_box_id="CB-MINE"))
    assert driver.accepts(_event(3, CHARGER_STATUS_CHANGED, charge_box_id="CB-MINE"))
    assert not driver.accepts(_event(4, CHARGER_STATUS_CHANGED, charge_box_id="CB-OTHER"))
    assert not driver.accepts(_event(5, OPERATION_COMPLETED, charge_box_id="CB-MINE"))
    assert parse_types("session.*, charger.offline") == frozenset(
        {SESSION_STARTED, SESSION_UPDATED, SESSION_STOPPED, SESSION_BILLED, "charger.offline"}
    )
    assert parse_types(None) is None
    with pytest.raises(ApiError):
        parse_types("session.exploded")
    # A subscriber that does not keep up is closed, never grown past its limit.
    slow = Subscriber(lambda e: True, limit=3)
    for n in range(1, 10):
        slow.offer(_event(n))
    assert slow.closed and slow.overflowed


async def test_campaign_progress_is_announced_when_it_changed(
    base_settings: Settings, session_factory: SessionFactory
) -> None:
    firmware_id, campaign_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with session_factory.begin() as db:
        db.add(
            FirmwareFile(
                id=firmware_id,
                name="fw.bin",
                version="1.2.3",
                size_bytes=3,
                sha256="0" * 64,
                storage_path="fw.bin",
                uploaded_by="user:admin",
            )
        )
        await db.flush()
        db.add(
            FirmwareCampaign(
                id=campaign_id,
                firmware_id=firmware_id,
                workflow_id=f"campaign-{campaign_id}",
                chargers=["CB-1", "CB-2"],
                wave_size=1,
                pause_s=0,
                max_failures=1,
                wave_deadline_s=60,
                created_by="user:admin",
            )
        )
    activities = FirmwareActivities(base_settings, session_factory)

    def progress(waves_done: int, succeeded: list[str], state: str = "running") -> CampaignProgress:
        return CampaignProgress(
            campaign_id=campaign_id,
            state=state,
            total=2,
            waves_done=waves_done,
            succeeded=succeeded,
        )

    for step in (
        progress(0, []),
        progress(1, ["CB-1"]),
        progress(2, ["CB-1", "CB-2"], "completed"),
    ):
        for _ in range(2):  # a retried activity
            await activities.record_campaign_progress(step)
    events = await events_of(session_factory, campaign_id)
    assert [(e.type, e.payload["waves_done"], e.payload["installed"]) for e in events] == [
        (CAMPAIGN_PROGRESS, 1, 1),
        (CAMPAIGN_PROGRESS, 2, 2),
    ]
    assert events[-1].payload["status"] == "completed" and events[-1].payload["total"] == 2
    for event in events:
        jsonschema.validate(event.payload, DATA_SCHEMAS[event.type])

"""The operator views through the real API app, the real auth service, a real worker and real
Temporal: a session that continued as new is read back as one timeline (every run, Temporal UI
links), with its samples and billing events; drivers get 403 on every operator route and 404 on
sessions that are not theirs; bad filters answer 422 with issues."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from db.engine import SessionFactory
from db.models import ChargingSession, MeterSample, Transaction
from tests.fixtures.auth import AuthService
from tests.helpers import eventually, free_port
from tests.identity.conftest import person
from tests.identity.real_api import real_api
from tests.sandbox.conftest import RunningSandbox
from tests.workflows.conftest import LAGO_API_KEY, Seed, at, seed, session_lago
from tests.workflows.test_charging_session import started, tap, tx_id
from worker import build_worker
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import MeterProgress, SessionStatus, TransactionStopped

__all__ = ["seed", "session_lago"]  # fixtures shared with the workflow tests

pytestmark = pytest.mark.timeout(180)

UI = "http://temporal-ui.test:8080"
OPERATOR_ROUTES = (
    "/api/v1/kpis",
    "/api/v1/sessions",
    "/api/v1/sessions/{id}",
    "/api/v1/sessions/{id}/timeline",
    "/api/v1/sessions/{id}/meter-samples",
    "/api/v1/sessions/{id}/billing-events",
)


@pytest.fixture
def views_settings(
    base_settings: Settings,
    auth_service: AuthService,
    session_lago: RunningSandbox,
    task_queue: str,
) -> Settings:
    return base_settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            "auth_internal_token": None,
            "auth_internal_token_api": SecretStr(auth_service.internal_tokens["api"]),
            "auth_internal_token_worker": SecretStr(auth_service.internal_tokens["worker"]),
            "lago_api_url": session_lago.url,
            "lago_api_key": SecretStr(LAGO_API_KEY),
            "temporal_task_queue": task_queue,
            "temporal_ui_url": UI,
            "log_tag_key": SecretStr("views-api-test"),
        }
    )


@pytest.fixture
async def worker(
    temporal_client: Client,
    views_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    w = build_worker(temporal_client, views_settings, session_factory, task_queue=task_queue)
    async with w:
        yield w


async def run_long_session(
    client: Client, task_queue: str, seed: Seed, factory: SessionFactory
) -> tuple[str, int, str]:
    """A session that continues as new while charging; journaled as the gateway would."""
    cb = await seed.charger()
    tag = await seed.card("views")
    _, handle = await tap(client, task_queue, cb, tag, continue_as_new_after_events=30)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 1000))

    # The read model coalesces changes that arrive together: let "charging" be written before
    # the meter values and the stop arrive, so the timeline has it as a state of its own.
    async def charging() -> bool:
        async with factory() as db:
            row = await db.get(ChargingSession, handle.id)
        return row is not None and row.state == "charging"

    await eventually(charging, message="the session charging in the read model")
    for i in range(2, 32):
        await handle.signal(
            ChargingSessionWorkflow.meter_progress,
            MeterProgress(
                event_id=i, transaction_id=tx, energy_register_wh=1000 + i * 10, sampled_at=at(i)
            ),
        )
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=99, transaction_id=tx, meter_stop_wh=1400, stopped_at=at(40)),
    )
    final = await client.get_workflow_handle(handle.id, result_type=SessionStatus).result()
    assert final.state == "closed"
    async with factory() as db, db.begin():
        db.add(
            Transaction(
                id=tx,
                charge_box_id=cb,
                connector_id=1,
                id_tag=tag,
                workflow_id=handle.id,
                meter_start_wh=1000,
                meter_stop_wh=1400,
                started_at=at(0),
                stopped_at=at(40),
            )
        )
        await db.flush()
        for minutes, wh, flag in ((10, 1100, None), (20, 1050, "not_monotonic"), (30, 1300, None)):
            db.add(
                MeterSample(
                    transaction_id=tx,
                    charge_box_id=cb,
                    connector_id=1,
                    sampled_at=at(0) + timedelta(minutes=minutes),
                    measurand="Energy.Active.Import.Register",
                    unit="Wh",
                    raw_value=str(wh),
                    energy_wh=wh,
                    flag=flag,
                )
            )
    return handle.id, tx, tag


async def test_operators_read_a_session_and_drivers_cannot(
    views_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    auth_service: AuthService,
    worker: Worker,
    task_queue: str,
    seed: Seed,
) -> None:
    workflow_id, tx, tag = await run_long_session(
        temporal_client, task_queue, seed, session_factory
    )
    admin = await person(auth_service, "views-admin", role="admin")
    driver = await person(auth_service, "views-driver")
    async with real_api(views_settings, engine, session_factory, temporal_client) as api:
        get = api.client.get

        timeline = await get(f"/api/v1/sessions/{tx}/timeline", headers=admin.headers)
        assert timeline.status_code == 200, timeline.text
        assert tag not in timeline.text
        body = timeline.json()
        assert body["workflow_id"] == workflow_id
        runs = body["runs"]
        assert len(runs) >= 2, "the session continued as new"
        assert all(
            r["ui"] == f"{UI}/namespaces/default/workflows/{_quoted(workflow_id)}/"
            f"{r['run_id']}/history"
            for r in runs
        )
        entries = body["entries"]
        assert {e["run_id"] for e in entries} == {r["run_id"] for r in runs}
        continued = [e for e in entries if e["status"] == "continued_as_new"]
        assert [c["summary"]["new_run_id"] for c in continued] == [r["run_id"] for r in runs[1:]]
        states = [e["name"] for e in entries if e["kind"] == "state"]
        # Each entry is a change: the same state twice in a row (even across runs) is not one.
        assert states[:3] == ["requested", "pre_authorized", "charging"]
        assert states[-1] == "closed"
        assert all(a != b for a, b in pairwise(states))
        assert len([e for e in entries if e["name"] == "meter_progress"]) == 30

        only = await get(
            f"/api/v1/sessions/{tx}/timeline", params={"kind": "state"}, headers=admin.headers
        )
        assert [e["name"] for e in only.json()["entries"]] == states
        odd = await get(
            f"/api/v1/sessions/{tx}/timeline",
            params={"kind": "state,gossip"},
            headers=admin.headers,
        )
        assert odd.status_code == 422 and odd.json()["issues"][0]["path"] == ["kind"]

        one = await get(f"/api/v1/sessions/{tx}", headers=admin.headers)
        assert one.status_code == 200 and one.json()["workflow_id"] == workflow_id
        samples = (await get(f"/api/v1/sessions/{tx}/meter-samples", headers=admin.headers)).json()
        assert [(s["energy_wh"], s["flag"]) for s in samples] == [
            (1100, None),
            (1050, "not_monotonic"),
            (1300, None),
        ]
        events = await get(f"/api/v1/sessions/{workflow_id}/billing-events", headers=admin.headers)
        assert [e["energy_wh"] for e in events.json()] == [400]
        assert events.json()[0]["transaction_id"] == f"{workflow_id}:1"

        listed = await get(
            "/api/v1/sessions",
            params={"charger": seed.charge_box_id, "state": "closed", "from": "2000-01-01"},
            headers=admin.headers,
        )
        assert [r["workflow_id"] for r in listed.json()] == [workflow_id]
        bad = await get(
            "/api/v1/sessions", params={"from": "soon", "state": "flying"}, headers=admin.headers
        )
        assert bad.status_code == 422
        assert [i["path"] for i in bad.json()["issues"]] == [["from"], ["state"]]

        kpis = await get("/api/v1/kpis", params={"tz": "Europe/Berlin"}, headers=admin.headers)
        assert kpis.status_code == 200 and kpis.json()["timezone"] == "Europe/Berlin"
        wrong = await get("/api/v1/kpis", params={"tz": "Mars/Olympus"}, headers=admin.headers)
        assert wrong.status_code == 422 and wrong.json()["issues"][0]["path"] == ["tz"]
        missing = await get("/api/v1/sessions/session:nope/timeline", headers=admin.headers)
        assert missing.status_code == 404

        for route in OPERATOR_ROUTES:
            for session_id in (workflow_id, str(tx)):
                answer = await get(route.format(id=session_id), headers=driver.headers)
                assert answer.status_code == 403, (route, answer.text)
        # The driver's own route: someone else's session is not found, not forbidden.
        theirs = await get(f"/api/v1/me/sessions/{workflow_id}", headers=driver.headers)
        assert theirs.status_code == 404
        assert workflow_id not in json.dumps(
            (await get("/api/v1/me/sessions", headers=driver.headers)).json()
        )

    # Temporal down: the timeline says so (503), everything read from PostgreSQL still answers.
    down = views_settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with real_api(down, engine, session_factory, None) as api:
        gone = await api.client.get(f"/api/v1/sessions/{tx}/timeline", headers=admin.headers)
        assert gone.status_code == 503 and gone.json()["error"] == "UNAVAILABLE"
        assert tag not in gone.text
        still = await api.client.get(f"/api/v1/sessions/{tx}/billing-events", headers=admin.headers)
        assert still.status_code == 200


def _quoted(workflow_id: str) -> str:
    return quote(workflow_id, safe="")

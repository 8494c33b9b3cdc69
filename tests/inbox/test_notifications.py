"""Inboxes end to end: rows written by notify() (and by the activities that call it) read through
the real API by drivers, other drivers, operators and impersonating operators."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from activities.notifications import NotificationActivities
from activities.sessions import SessionActivities, SessionReadModel
from config.settings import Settings
from db.billing_models import Notification
from db.engine import SessionFactory
from db.models import Charger, EvCard, UserMapping
from db.notifications import notify
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import Person, person
from tests.inbox.conftest import impersonating
from workflows.charger_offline import (
    ChargerOfflineWatchInput,
    ChargerOfflineWatchWorkflow,
    NotifyOfflineChargersInput,
)

pytestmark = pytest.mark.timeout(120)


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def note_for(
    factory: SessionFactory, user: Person | None, *, kind: str = "session.billed"
) -> int:
    async with factory.begin() as db:
        if user is None:
            new_id = await notify(
                db, audience="operators", kind=kind, dedupe_key=key(), title="t", data={"n": 1}
            )
        else:
            new_id = await notify(
                db, user_id=user.user_id, kind=kind, dedupe_key=key(), title="t", data={"n": 1}
            )
    assert new_id is not None
    return new_id


async def test_notify_is_idempotent_by_dedupe_key(session_factory: SessionFactory) -> None:
    dedupe = key()
    ids = []
    for _ in range(3):
        async with session_factory.begin() as db:
            ids.append(
                await notify(
                    db, audience="operators", kind="card.lost", dedupe_key=dedupe, title="x"
                )
            )
    assert ids[0] is not None and ids[1:] == [None, None]
    with pytest.raises(ValueError, match="either user_id"):
        async with session_factory.begin() as db:
            await notify(db, kind="card.lost", dedupe_key=key(), title="x")
    with pytest.raises(ValueError, match="unknown notification kind"):
        async with session_factory.begin() as db:
            await notify(db, audience="operators", kind="nope", dedupe_key=key(), title="x")


async def test_a_driver_reads_marks_and_archives_only_their_own(
    api: httpx.AsyncClient,
    session_factory: SessionFactory,
    driver: Person,
    other_driver: Person,
) -> None:
    first = await note_for(session_factory, driver)
    second = await note_for(session_factory, driver)
    theirs = await note_for(session_factory, other_driver)
    operators = await note_for(session_factory, None, kind="card.lost")

    listed = await api.get("/api/v1/me/notifications", headers=driver.headers)
    assert listed.status_code == 200, listed.text
    assert [n["id"] for n in listed.json()["notifications"]] == [second, first]
    count = await api.get("/api/v1/me/notifications/unread-count", headers=driver.headers)
    assert count.json() == {"unread": 2}

    read = await api.post(f"/api/v1/me/notifications/{first}/read", headers=driver.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = await api.get(
        "/api/v1/me/notifications", params={"unread": "true"}, headers=driver.headers
    )
    assert [n["id"] for n in unread.json()["notifications"]] == [second]
    archived = await api.post(f"/api/v1/me/notifications/{second}/archive", headers=driver.headers)
    assert archived.status_code == 200
    assert archived.json()["archived_at"] is not None and archived.json()["read_at"] is not None
    inbox = await api.get("/api/v1/me/notifications", headers=driver.headers)
    assert [n["id"] for n in inbox.json()["notifications"]] == [first]
    archive = await api.get(
        "/api/v1/me/notifications", params={"archived": "true"}, headers=driver.headers
    )
    assert [n["id"] for n in archive.json()["notifications"]] == [second]
    assert (
        await api.get("/api/v1/me/notifications/unread-count", headers=driver.headers)
    ).json() == {"unread": 0}

    # Someone else's notification, or an operators' one, is a 404 like a missing one.
    for other in (theirs, operators, 999_999_999):
        for action in ("read", "archive"):
            answer = await api.post(
                f"/api/v1/me/notifications/{other}/{action}", headers=driver.headers
            )
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"] == "NOT_FOUND"
    async with session_factory() as db:
        untouched = await db.get(Notification, theirs)
    assert untouched is not None and untouched.read_at is None and untouched.archived_at is None

    # read-all touches only the caller's inbox.
    await note_for(session_factory, driver)
    done = await api.post("/api/v1/me/notifications/read-all", headers=driver.headers)
    assert done.json() == {"marked_read": 1}
    assert (
        await api.get("/api/v1/me/notifications/unread-count", headers=other_driver.headers)
    ).json() == {"unread": 1}


async def test_bad_input_answers_the_error_envelope(api: httpx.AsyncClient, driver: Person) -> None:
    for url, params in (
        ("/api/v1/me/notifications/abc/read", {}),
        ("/api/v1/me/notifications/0/read", {}),
    ):
        answer = await api.post(url, params=params, headers=driver.headers)
        assert answer.status_code == 422 and answer.json()["error"] == "VALIDATION_FAILED"
    answer = await api.get(
        "/api/v1/me/notifications", params={"limit": "0"}, headers=driver.headers
    )
    assert answer.status_code == 422 and answer.json()["issues"]
    assert (await api.get("/api/v1/me/notifications")).status_code == 401


async def test_pages_go_back_with_next_before_id(
    api: httpx.AsyncClient, session_factory: SessionFactory, driver: Person
) -> None:
    ids = [await note_for(session_factory, driver) for _ in range(5)]
    seen: list[int] = []
    before: int | None = None
    while True:
        params: dict[str, int] = {"limit": 2}
        if before is not None:
            params["before_id"] = before
        page = (
            await api.get("/api/v1/me/notifications", params=params, headers=driver.headers)
        ).json()
        seen += [n["id"] for n in page["notifications"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert seen == sorted(ids, reverse=True)


async def test_operators_share_an_inbox_with_their_own_read_marks(
    api: httpx.AsyncClient,
    session_factory: SessionFactory,
    admin: Person,
    driver: Person,
    auth_service: AuthService,
) -> None:
    colleague = await person(auth_service, "inbox-operator", role="operator")
    alert = await note_for(session_factory, None, kind="charger.offline")
    mine = await note_for(session_factory, driver)

    for who in (admin, colleague):
        page = await api.get("/api/v1/notifications", headers=who.headers)
        assert page.status_code == 200, page.text
        ids = [n["id"] for n in page.json()["notifications"]]
        assert alert in ids and mine not in ids
    before = (await api.get("/api/v1/notifications/unread-count", headers=colleague.headers)).json()

    read = await api.post(f"/api/v1/notifications/{alert}/read", headers=admin.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    # The admin read it; for the colleague it is still unread.
    after = (await api.get("/api/v1/notifications/unread-count", headers=colleague.headers)).json()
    assert after == before
    theirs = await api.get(
        "/api/v1/notifications", params={"unread": "true", "limit": 200}, headers=colleague.headers
    )
    assert alert in [n["id"] for n in theirs.json()["notifications"]]
    archived = await api.post(f"/api/v1/notifications/{alert}/archive", headers=colleague.headers)
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    admins = await api.get("/api/v1/notifications", params={"limit": 200}, headers=admin.headers)
    assert alert in [n["id"] for n in admins.json()["notifications"]]  # archived only for them

    # A driver's notification is not in the operators' inbox (404), and drivers get 403 here.
    assert (
        await api.post(f"/api/v1/notifications/{mine}/read", headers=admin.headers)
    ).status_code == 404
    refused = await api.get("/api/v1/notifications", headers=driver.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "FORBIDDEN"
    all_read = await api.post("/api/v1/notifications/read-all", headers=colleague.headers)
    assert all_read.status_code == 200
    assert (
        await api.get("/api/v1/notifications/unread-count", headers=colleague.headers)
    ).json() == {"unread": 0}


async def test_impersonation_reads_but_never_marks(
    api: httpx.AsyncClient, session_factory: SessionFactory, admin: Person, driver: Person
) -> None:
    note = await note_for(session_factory, driver)
    as_driver = await impersonating(api, admin, driver)
    listed = await api.get("/api/v1/me/notifications", headers=as_driver)
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()["notifications"]] == [note]
    for url in (
        f"/api/v1/me/notifications/{note}/read",
        f"/api/v1/me/notifications/{note}/archive",
        "/api/v1/me/notifications/read-all",
    ):
        answer = await api.post(url, headers=as_driver)
        assert answer.status_code == 403 and answer.json()["error"] == "IMPERSONATION_READ_ONLY"
    async with session_factory() as db:
        row = await db.get(Notification, note)
    assert row is not None and row.read_at is None


async def test_report_lost_lands_in_the_operators_inbox(
    api: httpx.AsyncClient, session_factory: SessionFactory, admin: Person, driver: Person
) -> None:
    id_tag = f"IB{uuid.uuid4().hex[:10].upper()}"
    async with session_factory.begin() as db:
        db.add(EvCard(id_tag=id_tag))
        await db.flush()
        db.add(
            UserMapping(
                user_id=driver.user_id,
                public_id=uuid.uuid4().hex[:8].upper(),
                email=driver.email,
                id_tag=id_tag,
            )
        )
    lost = await api.post(f"/api/v1/me/cards/{id_tag}/report-lost", headers=driver.headers)
    assert lost.status_code == 200, lost.text
    page = await api.get(
        "/api/v1/notifications", params={"unread": "true", "limit": 200}, headers=admin.headers
    )
    [alert] = [n for n in page.json()["notifications"] if n["data"].get("id_tag") == id_tag]
    assert alert["kind"] == "card.lost"


async def test_first_version_rows_are_normalised_into_an_inbox(
    session_factory: SessionFactory, driver: Person
) -> None:
    """The first version's insert (ORM, ``user_public_id`` only) still reaches the inbox."""
    public_id = uuid.uuid4().hex[:8].upper()
    id_tag = f"NV{uuid.uuid4().hex[:10].upper()}"
    async with session_factory.begin() as db:
        db.add(EvCard(id_tag=id_tag))
        await db.flush()
        db.add(UserMapping(user_id=driver.user_id, public_id=public_id, id_tag=id_tag))
        await db.flush()
        ops = Notification(
            user_public_id="operators", kind="card.lost", dedupe_key=key(), title="o"
        )
        drv = Notification(
            user_public_id=public_id, kind="session.billed", dedupe_key=key(), title="d"
        )
        db.add_all([ops, drv])
    assert (ops.audience, ops.user_id) == ("operators", None)
    assert (drv.audience, drv.user_id) == ("user", driver.user_id)


# -- the writers ----------------------------------------------------------------------------------


def read_model(workflow_id: str, charge_box_id: str, user_id: str, state: str) -> SessionReadModel:
    return SessionReadModel(
        workflow_id=workflow_id,
        state=state,
        charge_box_id=charge_box_id,
        connector_id=1,
        transaction_id=4242,
        energy_wh=12_345,
        cost_minor=370,
        currency="EUR",
        started_at=datetime.now(UTC) - timedelta(hours=1),
        stopped_at=datetime.now(UTC),
        user_id=user_id,
    )


async def charger(factory: SessionFactory, *, seen_ago: timedelta | None, connected: bool) -> str:
    cb = f"CB-INBOX-{uuid.uuid4().hex[:8]}"
    async with factory.begin() as db:
        db.add(
            Charger(
                charge_box_id=cb,
                connected=connected,
                last_seen_at=None if seen_ago is None else datetime.now(UTC) - seen_ago,
            )
        )
    return cb


async def notes_with(factory: SessionFactory, dedupe_prefix: str) -> list[Notification]:
    async with factory() as db:
        rows = await db.scalars(
            select(Notification).where(Notification.dedupe_key.startswith(dedupe_prefix))
        )
        return list(rows.all())


async def test_a_billed_session_tells_its_driver_once(
    api: httpx.AsyncClient, session_factory: SessionFactory, driver: Person
) -> None:
    activities = SessionActivities(session_factory)
    cb = await charger(session_factory, seen_ago=timedelta(0), connected=True)
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await activities.upsert_session_read_model(
        read_model(workflow_id, cb, driver.user_id, "charging")
    )
    assert await notes_with(session_factory, f"session.billed:{workflow_id}") == []
    # billed, then closed, then a retry of the same write: one notification.
    for state in ("billed", "closed", "closed"):
        await activities.upsert_session_read_model(
            read_model(workflow_id, cb, driver.user_id, state)
        )
    [note] = await notes_with(session_factory, f"session.billed:{workflow_id}")
    assert note.user_id == driver.user_id and note.kind == "session.billed"
    assert note.data["cost_minor"] == 370 and note.data["energy_wh"] == 12_345
    page = await api.get("/api/v1/me/notifications", headers=driver.headers)
    assert [n["id"] for n in page.json()["notifications"]] == [note.id]
    assert "3.70 EUR" in page.json()["notifications"][0]["title"]


async def test_offline_chargers_notify_operators_once_per_episode(
    inbox_settings: Settings, session_factory: SessionFactory
) -> None:
    settings = inbox_settings.model_copy(update={"notify_charger_offline_after_min": 10})
    activities = NotificationActivities(settings, session_factory)
    gone = await charger(session_factory, seen_ago=timedelta(minutes=11), connected=False)
    recent = await charger(session_factory, seen_ago=timedelta(minutes=2), connected=False)
    # Connected and heard 11 min ago: within 3 heartbeats (15 min), not offline yet.
    quiet = await charger(session_factory, seen_ago=timedelta(minutes=11), connected=True)
    never = await charger(session_factory, seen_ago=None, connected=False)

    first = await activities.notify_offline_chargers(NotifyOfflineChargersInput())
    assert gone in first.notified and gone in first.offline
    assert not {recent, quiet, never} & set(first.offline)
    again = await activities.notify_offline_chargers(NotifyOfflineChargersInput())
    assert gone in again.offline and gone not in again.notified
    assert len(await notes_with(session_factory, f"charger.offline:{gone}:")) == 1

    # It came back, then went away again: a new episode, a second notification.
    async with session_factory.begin() as db:
        await db.execute(
            update(Charger)
            .where(Charger.charge_box_id == gone)
            .values(last_seen_at=datetime.now(UTC) - timedelta(minutes=20))
        )
    later = await activities.notify_offline_chargers(NotifyOfflineChargersInput())
    assert gone in later.notified
    notes = await notes_with(session_factory, f"charger.offline:{gone}:")
    assert len(notes) == 2 and {n.audience for n in notes} == {"operators"}


async def test_the_offline_watch_workflow_runs_the_check(
    temporal_client: Client,
    inbox_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    settings = inbox_settings.model_copy(update={"notify_charger_offline_after_min": 5})
    gone = await charger(session_factory, seen_ago=timedelta(minutes=6), connected=False)
    activities = NotificationActivities(settings, session_factory)
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ChargerOfflineWatchWorkflow],
        activities=[activities.notify_offline_chargers],
    ):
        handle = await temporal_client.start_workflow(
            ChargerOfflineWatchWorkflow.run,
            ChargerOfflineWatchInput(interval_s=0.2, iterations_per_run=3),
            id=f"charger-offline-watch-{task_queue}",
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        try:

            async def notified() -> list[Notification]:
                found = await notes_with(session_factory, f"charger.offline:{gone}:")
                assert found, "no notification yet"
                return found

            found = await eventually(notified, timeout=30)
        finally:
            await handle.terminate()
    assert len(found) == 1 and found[0].data["charge_box_id"] == gone

"""Live streams over two real API processes: fan-out from PostgreSQL NOTIFY to clients on either
process, Last-Event-ID resumption, authorization, heartbeats."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import psycopg
from sqlalchemy import update

from config.settings import libpq_url
from db.engine import SessionFactory
from db.events import EVENTS_CHANNEL, record_event
from db.models import Charger, ChargingSession, PlatformEvent, Site
from domain.events import (
    CHARGER_STATUS_CHANGED,
    OPERATION_COMPLETED,
    SESSION_STARTED,
    SESSION_UPDATED,
)
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import Person, person
from tests.live.conftest import ApiProcess, Sse, SseClient

OpenStream = Callable[..., SseClient]


async def seed_site_with_chargers(factory: SessionFactory, driver: Person) -> tuple[str, str, str]:
    """A site with two chargers; the driver has charged at the first (so the site is theirs);
    a third charger elsewhere. Returns (used, same site, elsewhere)."""
    tag = uuid.uuid4().hex[:8]
    used, neighbour, elsewhere = f"LV-{tag}-1", f"LV-{tag}-2", f"LV-{tag}-X"
    async with factory.begin() as db:
        site = Site(name=f"Live site {tag}")
        db.add(site)
        await db.flush()
        db.add_all(
            [
                Charger(charge_box_id=used, site_id=site.id),
                Charger(charge_box_id=neighbour, site_id=site.id),
                Charger(charge_box_id=elsewhere),
            ]
        )
        await db.flush()
        db.add(
            ChargingSession(
                workflow_id=f"wf-{tag}",
                state="closed",
                charge_box_id=used,
                user_id=driver.user_id,
            )
        )
    return used, neighbour, elsewhere


async def emit(
    factory: SessionFactory,
    type: str,
    run: str,
    n: int,
    *,
    user_id: str | None = None,
    charge_box_id: str | None = None,
) -> int:
    """Record one event as any process would (its own transaction, NOTIFY on commit)."""
    async with factory.begin() as db:
        return await record_event(
            db, type, {"run": run, "n": n}, charge_box_id=charge_box_id, user_id=user_id
        )


def mine(run: str) -> Callable[[Sse], bool]:
    return lambda e: e.event != "reset" and e.data["payload"].get("run") == run


def numbers(client: SseClient, run: str) -> list[int]:
    return [e.data["payload"]["n"] for e in client.of(mine(run))]


async def connected(*clients: SseClient) -> None:
    """Each stream answered 200 and is live (a heartbeat came through)."""

    async def ready() -> bool:
        for c in clients:
            assert c.status == 200, c.status
            assert c.comments >= 1
        return True

    await eventually(ready, timeout=60)


async def test_events_reach_clients_on_both_api_processes_and_drivers_see_only_theirs(
    two_apis: tuple[ApiProcess, ApiProcess],
    auth_service: AuthService,
    session_factory: SessionFactory,
    sse: OpenStream,
    pg_url: str,
) -> None:
    a, b = two_apis
    admin = await person(auth_service, "live-admin", role="admin")
    alice = await person(auth_service, "live-alice")
    bob = await person(auth_service, "live-bob")
    used, neighbour, elsewhere = await seed_site_with_chargers(session_factory, alice)
    run = uuid.uuid4().hex

    ops_a = sse(f"{a.url}/api/v1/stream", admin.jwt)
    ops_b = sse(f"{b.url}/api/v1/stream", admin.jwt)
    only_status = sse(f"{b.url}/api/v1/stream?types=charger.*", admin.jwt)
    alice_a = sse(f"{a.url}/api/v1/me/stream", alice.jwt)
    bob_b = sse(f"{b.url}/api/v1/me/stream", bob.jwt)
    await connected(ops_a, ops_b, only_status, alice_a, bob_b)

    await emit(session_factory, SESSION_STARTED, run, 1, user_id=alice.user_id)
    await emit(session_factory, SESSION_UPDATED, run, 2, user_id=bob.user_id)
    await emit(session_factory, CHARGER_STATUS_CHANGED, run, 3, charge_box_id=neighbour)
    await emit(session_factory, CHARGER_STATUS_CHANGED, run, 4, charge_box_id=elsewhere)
    await emit(session_factory, OPERATION_COMPLETED, run, 5, charge_box_id=used)
    await emit(session_factory, SESSION_UPDATED, run, 6, user_id=alice.user_id)

    async def delivered() -> bool:
        assert numbers(ops_a, run) == [1, 2, 3, 4, 5, 6]
        assert numbers(ops_b, run) == [1, 2, 3, 4, 5, 6]
        assert numbers(only_status, run) == [3, 4]
        # Alice: her sessions and her site's chargers; never Bob's, never other sites.
        assert numbers(alice_a, run) == [1, 3, 6]
        assert numbers(bob_b, run) == [2]
        return True

    await eventually(delivered, timeout=60)
    first = ops_a.of(mine(run))[0]
    assert first.event == SESSION_STARTED and first.id == str(first.data["id"])
    assert [e.id for e in ops_a.of(mine(run))] == [e.id for e in ops_b.of(mine(run))]
    # Nothing but Alice's own data reached her stream (other tests' events included).
    for event in alice_a.events:
        assert event.data["payload"].get("run") in (None, run)
        if event.data["type"].startswith("session."):
            assert event.data["id"] and event.event.startswith("session.")
    assert all(e.data["type"] != OPERATION_COMPLETED for e in alice_a.events)

    # Each process's one listening connection is cut: it reconnects and catches up, and the
    # clients (still connected) miss nothing.
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url), autocommit=True) as pg:
        cut = await (
            await pg.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query = %s",
                (f"LISTEN {EVENTS_CHANNEL}",),
            )
        ).fetchone()
    assert cut is not None and cut[0] >= 2
    await emit(session_factory, SESSION_UPDATED, run, 7, user_id=alice.user_id)
    await eventually(lambda: numbers(ops_a, run)[-1:] == [7], timeout=60)
    await eventually(lambda: numbers(ops_b, run)[-1:] == [7], timeout=60)
    await eventually(lambda: numbers(alice_a, run) == [1, 3, 6, 7], timeout=60)


async def test_reconnecting_with_last_event_id_gets_exactly_the_missed_events(
    two_apis: tuple[ApiProcess, ApiProcess],
    auth_service: AuthService,
    session_factory: SessionFactory,
    sse: OpenStream,
) -> None:
    a, b = two_apis
    admin = await person(auth_service, "live-admin", role="admin")
    alice = await person(auth_service, "live-alice")
    bob = await person(auth_service, "live-bob")
    run = uuid.uuid4().hex

    ops = sse(f"{a.url}/api/v1/stream", admin.jwt)
    alice_stream = sse(f"{a.url}/api/v1/me/stream", alice.jwt)
    await connected(ops, alice_stream)
    await emit(session_factory, SESSION_UPDATED, run, 1, user_id=alice.user_id)
    await eventually(lambda: numbers(ops, run) == [1] and numbers(alice_stream, run) == [1])
    ops_seen = ops.of(mine(run))[-1].id
    alice_seen = alice_stream.of(mine(run))[-1].id
    await ops.close()
    await alice_stream.close()

    # Missed while disconnected: Alice's, Bob's and an operations event.
    for n, user in ((2, alice), (3, bob), (4, None), (5, alice)):
        await emit(
            session_factory,
            SESSION_UPDATED if user else OPERATION_COMPLETED,
            run,
            n,
            user_id=user.user_id if user else None,
        )

    # Reconnect to the OTHER process with Last-Event-ID.
    ops_again = sse(f"{b.url}/api/v1/stream", admin.jwt, last_event_id=ops_seen)
    alice_again = sse(f"{b.url}/api/v1/me/stream", alice.jwt, last_event_id=alice_seen)
    await eventually(lambda: numbers(ops_again, run) == [2, 3, 4, 5], timeout=60)
    await eventually(lambda: numbers(alice_again, run) == [2, 5], timeout=60)
    await connected(ops_again, alice_again)
    # Then live events continue after the replay, in order, with no duplicates.
    await emit(session_factory, SESSION_UPDATED, run, 6, user_id=alice.user_id)
    await eventually(lambda: numbers(ops_again, run) == [2, 3, 4, 5, 6], timeout=60)
    await eventually(lambda: numbers(alice_again, run) == [2, 5, 6], timeout=60)
    ids = [int(e.id or 0) for e in ops_again.events if e.event != "reset"]
    assert ids == sorted(set(ids))

    # A resume point older than the replay window (events were missed since): one reset event
    # telling the client to refetch, then live events.
    old = await emit(session_factory, SESSION_UPDATED, run, 7, user_id=alice.user_id)
    await emit(session_factory, SESSION_UPDATED, run, 8, user_id=alice.user_id)
    async with session_factory.begin() as db:
        await db.execute(
            update(PlatformEvent)
            .where(PlatformEvent.id == old)
            .values(occurred_at=PlatformEvent.occurred_at - timedelta(hours=3))
        )
    await eventually(lambda: numbers(alice_again, run) == [2, 5, 6, 7, 8], timeout=60)
    stale = sse(f"{a.url}/api/v1/me/stream", alice.jwt, last_event_id=old)
    await eventually(lambda: [e.event for e in stale.events][:1] == ["reset"], timeout=60)
    assert stale.events[0].data["reason"] == "too_old"
    assert int(stale.events[0].id or 0) >= old
    await emit(session_factory, SESSION_UPDATED, run, 9, user_id=alice.user_id)
    await eventually(lambda: numbers(stale, run) == [9], timeout=60)


async def test_stream_authorization_bad_input_and_a_clean_shutdown(
    two_apis: tuple[ApiProcess, ApiProcess], auth_service: AuthService, sse: OpenStream
) -> None:
    a, b = two_apis
    admin = await person(auth_service, "live-admin", role="admin")
    alice = await person(auth_service, "live-alice")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        anonymous = await client.get("/api/v1/me/stream")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "UNAUTHENTICATED"
        driver_on_ops = await client.get("/api/v1/stream", headers=alice.headers)
        assert driver_on_ops.status_code == 403
        assert driver_on_ops.json()["error"] == "FORBIDDEN"
        bad_types = await client.get("/api/v1/stream?types=session.exploded", headers=admin.headers)
        assert bad_types.status_code == 422
        assert bad_types.json()["issues"][0]["path"] == ["query", "types"]
        bad_id = await client.get(
            "/api/v1/me/stream", headers={**alice.headers, "Last-Event-ID": "yesterday"}
        )
        assert bad_id.status_code == 422
        spec = (await client.get("/api/openapi.json")).json()
        for path in ("/api/v1/me/stream", "/api/v1/stream"):
            operation = spec["paths"][path]["get"]
            assert operation["summary"]
            assert "text/event-stream" in operation["responses"]["200"]["content"]

    # SIGTERM with streams open: the streams end and the process exits cleanly.
    open_streams = [
        sse(f"{b.url}/api/v1/stream", admin.jwt),
        sse(f"{b.url}/api/v1/me/stream", alice.jwt),
    ]
    await connected(*open_streams)
    # (uvicorn re-raises the SIGTERM it handled once it has shut down: -15 after a clean stop)
    assert b.process.kill(signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM)
    log = b.process.output()
    assert "Application shutdown complete" in log, log[-3000:]
    await eventually(lambda: all(s.ended for s in open_streams), timeout=60)

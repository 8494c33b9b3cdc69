"""The reservation routes through the real API (real auth service, real worker): drivers,
another driver, an operator, an impersonating admin; error envelopes; the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from db.engine import SessionFactory
from db.reservation_models import Reservation
from tests.fixtures.auth import AuthService
from tests.gateway.conftest import seed_charger
from tests.identity.conftest import (  # noqa: F401  (fixtures used by this module)
    api,
    identity_settings,
    lago_sandbox,
    person,
    seed_card,
    worker,
)

pytestmark = pytest.mark.timeout(180)


def later(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


async def test_drivers_operators_and_impersonation(
    api: httpx.AsyncClient,  # noqa: F811
    worker: object,  # noqa: F811
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    alice = await person(auth_service, "res-alice")
    bob = await person(auth_service, "res-bob")
    operator = await person(auth_service, "res-operator", role="operator")
    admin = await person(auth_service, "res-admin", role="admin")
    await seed_card(session_factory, owner=alice)
    await seed_card(session_factory, owner=bob)
    cb = await seed_charger(session_factory)
    start = later(2)

    made = await api.post(
        "/api/v1/me/reservations",
        json={"charge_box_id": cb, "connector_id": 1, "starts_at": start, "duration_min": 60},
        headers=alice.headers,
    )
    assert made.status_code == 201, made.text
    mine = made.json()
    assert mine["status"] == "pending" and mine["connector_id"] == 1
    rid = mine["id"]

    # The same hour for Bob: 409 with two free slots nearby.
    clash = await api.post(
        "/api/v1/me/reservations",
        json={"charge_box_id": cb, "connector_id": 1, "starts_at": start, "duration_min": 60},
        headers=bob.headers,
    )
    assert clash.status_code == 409, clash.text
    body = clash.json()
    assert body["error"] == "SLOT_TAKEN" and len(body["suggested_slots"]) == 2
    assert {s["connector_id"] for s in body["suggested_slots"]} == {1}

    # Bad input: the error envelope with issues.
    short = await api.post(
        "/api/v1/me/reservations",
        json={"charge_box_id": cb, "starts_at": later(1), "duration_min": 5},
        headers=bob.headers,
    )
    assert short.status_code == 422 and short.json()["error"] == "VALIDATION_FAILED"
    assert short.json()["issues"][0]["path"] == ["duration_min"]
    missing = await api.post(
        "/api/v1/me/reservations", json={"charge_box_id": cb}, headers=bob.headers
    )
    assert missing.status_code == 422 and missing.json()["issues"]

    # Alice sees hers; Bob sees none and gets 404 for hers (read and cancel).
    listed = await api.get("/api/v1/me/reservations", headers=alice.headers)
    assert [r["id"] for r in listed.json()] == [rid]
    assert (await api.get("/api/v1/me/reservations", headers=bob.headers)).json() == []
    for method in ("GET", "DELETE"):
        other = await api.request(method, f"/api/v1/me/reservations/{rid}", headers=bob.headers)
        assert other.status_code == 404, other.text
        assert other.json()["error"] == "NOT_FOUND"

    # Nobody signed in: 401; the operator's own "me" has none of Alice's.
    anonymous = await api.get("/api/v1/me/reservations")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "UNAUTHENTICATED"
    assert (
        await api.get(f"/api/v1/me/reservations/{rid}", headers=operator.headers)
    ).status_code == 404

    # Drivers cannot use the operators' routes.
    assert (await api.get("/api/v1/reservations", headers=alice.headers)).status_code == 403
    refused = await api.post(f"/api/v1/reservations/{rid}/cancel", headers=alice.headers)
    assert refused.status_code == 403

    # An impersonating admin reads but changes nothing.
    started = await api.post(
        "/api/v1/impersonation", json={"user_id": alice.user_id}, headers=admin.headers
    )
    assert started.status_code == 201, started.text
    as_alice = {"Authorization": f"Bearer {started.json()['jwt']}"}
    seen = await api.get(f"/api/v1/me/reservations/{rid}", headers=as_alice)
    assert seen.status_code == 200 and seen.json()["id"] == rid
    for method, path in (
        ("DELETE", f"/api/v1/me/reservations/{rid}"),
        ("POST", "/api/v1/me/reservations"),
    ):
        denied = await api.request(
            method,
            path,
            headers=as_alice,
            json={"charge_box_id": cb, "starts_at": later(5), "duration_min": 30},
        )
        assert denied.status_code == 403 and denied.json()["error"] == "IMPERSONATION_READ_ONLY"
    assert (await api.get("/api/v1/reservations", headers=as_alice)).status_code == 403
    assert (
        await api.post(f"/api/v1/reservations/{rid}/cancel", headers=as_alice)
    ).status_code == 403
    listed_as_alice = await api.get("/api/v1/me/reservations", headers=as_alice)
    assert [r["id"] for r in listed_as_alice.json()] == [rid]
    await api.post("/api/v1/impersonation/stop", headers=as_alice)

    # The operator lists (with filters) and cancels; Alice reads the reason.
    ops = await api.get(
        "/api/v1/reservations",
        params={"charge_box_id": cb, "status": "pending"},
        headers=operator.headers,
    )
    assert ops.status_code == 200, ops.text
    assert [(r["id"], r["user_id"]) for r in ops.json()] == [(rid, alice.user_id)]
    assert (
        await api.get("/api/v1/reservations", params={"status": "bogus"}, headers=operator.headers)
    ).status_code == 422
    cancelled = await api.post(
        f"/api/v1/reservations/{rid}/cancel",
        json={"reason": "the site is closed for maintenance"},
        headers=operator.headers,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = await api.post(f"/api/v1/reservations/{rid}/cancel", headers=operator.headers)
    assert again.status_code == 409 and again.json()["error"] == "RESERVATION_ENDED"
    unknown = await api.post("/api/v1/reservations/nope/cancel", headers=operator.headers)
    assert unknown.status_code == 404
    read = (await api.get(f"/api/v1/me/reservations/{rid}", headers=alice.headers)).json()
    assert read["reason"] == "the site is closed for maintenance"

    # Bob now takes the freed hour and cancels it himself.
    taken = await api.post(
        "/api/v1/me/reservations",
        json={"charge_box_id": cb, "starts_at": start, "duration_min": 60},
        headers=bob.headers,
    )
    assert taken.status_code == 201, taken.text
    assert taken.json()["any_connector"] is True
    dropped = await api.delete(f"/api/v1/me/reservations/{taken.json()['id']}", headers=bob.headers)
    assert dropped.status_code == 200 and dropped.json()["reason"] == "cancelled by the driver"


async def test_unlinking_a_card_cancels_its_reservations(
    api: httpx.AsyncClient,  # noqa: F811
    worker: object,  # noqa: F811
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    driver = await person(auth_service, "res-unlink")
    admin = await person(auth_service, "res-unlink-admin", role="admin")
    tag = await seed_card(session_factory, owner=driver)
    cb = await seed_charger(session_factory)
    made = await api.post(
        "/api/v1/me/reservations",
        json={"charge_box_id": cb, "starts_at": later(3), "duration_min": 30},
        headers=driver.headers,
    )
    assert made.status_code == 201, made.text
    unlinked = await api.post(f"/api/v1/cards/{tag}/unlink", headers=admin.headers)
    assert unlinked.status_code == 200, unlinked.text
    async with session_factory() as db:
        row = await db.get(Reservation, made.json()["id"])
    assert row is not None and row.status == "cancelled"
    assert row.reason == "the card was unlinked from the account"
    # No card left: a new reservation says so.
    none = await api.post(
        "/api/v1/me/reservations",
        json={"charge_box_id": cb, "starts_at": later(4), "duration_min": 30},
        headers=driver.headers,
    )
    assert none.status_code == 409 and none.json()["error"] == "NO_CARD"


async def test_the_routes_are_in_the_openapi_document(api: httpx.AsyncClient) -> None:  # noqa: F811
    doc = (await api.get("/api/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/api/v1/me/reservations"]) == {"get", "post"}
    assert set(paths["/api/v1/me/reservations/{reservation_id}"]) == {"get", "delete"}
    assert "get" in paths["/api/v1/reservations"]
    assert "post" in paths["/api/v1/reservations/{reservation_id}/cancel"]
    post = paths["/api/v1/me/reservations"]["post"]
    assert post["summary"] == "Reserve a connector"
    assert {"201", "404", "409", "422"} <= set(post["responses"])

"""The authorization matrix: every API route × driver, another driver, operator (admin) and an
operator impersonating the driver (docs/security.md, "Authorization matrix").

:data:`ROUTES` classifies every ``(method, path)`` the app serves under ``/api/``; a route the
table does not classify fails :func:`test_every_route_is_classified`, so a new route cannot ship
without a decision. Adding one is one line: ``("GET", "/api/v1/things/{id}"): OPERATOR,``.

What each class promises, checked against the real app, auth service and database:

- ``OPERATOR``: a driver gets 403; an impersonation gets 403 (``IMPERSONATION_READ_ONLY`` for a
  write); an admin gets past authorization (anything but 401/403).
- ``DRIVER`` (the caller's own data): a driver and an admin get past authorization; an
  impersonation may read, and every write answers 403 ``IMPERSONATION_READ_ONLY``.
- ``owned("kind")``: a ``DRIVER`` route naming one driver's resource: another driver gets 404,
  as for something that does not exist (and the owner gets 200 on a read).
- ``PUBLIC``: no bearer token by design (QR sign-in); not checked here (docs/identity.md).
- ``STOP_IMPERSONATION``: the one write an impersonation may make (``AnyCurrentUser``).

Requests carry an empty JSON body and ids that exist nowhere (unless owned), so an admin's
write is refused by validation or a 404 after authorization, and nothing changes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from db.engine import SessionFactory
from db.models import Charger, ChargingSession, EvCard, UserMapping
from db.notifications import notify
from db.reservation_models import Reservation
from tests.asgi_stream import request_then_disconnect
from tests.fixtures.auth import AuthService
from tests.identity.conftest import Person, person
from tests.identity.real_api import RealApi
from tests.inbox.conftest import impersonating

pytestmark = pytest.mark.timeout(300)

Who = Literal["public", "driver", "operator", "stop_impersonation"]


@dataclass(frozen=True)
class Rule:
    who: Who
    # DRIVER routes naming one driver's resource: the kind of that resource (see OWNED_PARAMS).
    owns: str | None = None


PUBLIC = Rule("public")
DRIVER = Rule("driver")
OPERATOR = Rule("operator")
STOP_IMPERSONATION = Rule("stop_impersonation")


def owned(kind: str) -> Rule:
    return Rule("driver", owns=kind)


# Lago invoices and wallets live in Lago: their "another driver gets 404" is checked against the
# Lago sandbox in tests/identity/test_billing_routes.py; here only the classes are.
LAGO = DRIVER

# fmt: off
ROUTES: dict[tuple[str, str], Rule] = {
    # -- admin webhooks (inbound Lago events replayed by an operator)
    ("POST", "/api/admin/webhooks/lago/{event_id}/replay"): OPERATOR,
    ("GET", "/api/admin/webhooks/lago"): OPERATOR,
    ("GET", "/api/admin/webhooks/lago/breaker"): OPERATOR,
    ("POST", "/api/admin/webhooks/lago/breaker/reset"): OPERATOR,
    # -- me
    ("GET", "/api/v1/me"): DRIVER,
    ("GET", "/api/v1/me/cards"): DRIVER,
    ("GET", "/api/v1/me/cards/{id_tag}"): owned("card"),
    ("POST", "/api/v1/me/cards/{id_tag}/report-lost"): owned("card"),
    ("GET", "/api/v1/me/sessions"): DRIVER,
    ("GET", "/api/v1/me/sessions/{workflow_id}"): owned("session"),
    ("GET", "/api/v1/me/sessions/{workflow_id}/meter"): owned("session"),
    ("POST", "/api/v1/me/sessions"): DRIVER,
    ("POST", "/api/v1/me/sessions/{workflow_id}/stop"): owned("session"),
    ("GET", "/api/v1/me/dashboard"): DRIVER,
    ("GET", "/api/v1/chargers/nearby"): DRIVER,
    ("GET", "/api/v1/sites/{site_id}/chargers"): DRIVER,
    ("GET", "/api/v1/me/reservations"): DRIVER,
    ("POST", "/api/v1/me/reservations"): DRIVER,
    ("GET", "/api/v1/me/reservations/{reservation_id}"): owned("reservation"),
    ("DELETE", "/api/v1/me/reservations/{reservation_id}"): owned("reservation"),
    ("GET", "/api/v1/reservations"): OPERATOR,
    ("GET", "/api/v1/billing/unsent"): OPERATOR,
    ("POST", "/api/v1/billing/unsent/resend"): OPERATOR,
    # The Temporal UI's codec server: a live admin's JWT (or the separate codec token).
    ("POST", "/api/codec/decode"): OPERATOR,
    ("POST", "/api/codec/encode"): OPERATOR,
    ("GET", "/api/v1/me/stream"): DRIVER,
    ("GET", "/api/v1/stream"): OPERATOR,
    ("GET", "/api/v1/sites/{site}/load"): OPERATOR,
    ("PATCH", "/api/v1/sites/{site}/load-limit"): OPERATOR,
    ("DELETE", "/api/v1/sites/{site}/load-limit"): OPERATOR,
    ("GET", "/api/v1/webhooks/endpoints"): OPERATOR,
    ("POST", "/api/v1/webhooks/endpoints"): OPERATOR,
    ("GET", "/api/v1/webhooks/endpoints/{endpoint_id}"): OPERATOR,
    ("PATCH", "/api/v1/webhooks/endpoints/{endpoint_id}"): OPERATOR,
    ("DELETE", "/api/v1/webhooks/endpoints/{endpoint_id}"): OPERATOR,
    ("POST", "/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"): OPERATOR,
    ("GET", "/api/v1/webhooks/deliveries"): OPERATOR,
    ("GET", "/api/v1/webhooks/deliveries/{delivery_id}"): OPERATOR,
    ("POST", "/api/v1/webhooks/deliveries/{delivery_id}/redeliver"): OPERATOR,
    ("POST", "/api/v1/reservations/{reservation_id}/cancel"): OPERATOR,
    ("GET", "/api/v1/me/billing/invoices"): DRIVER,
    ("GET", "/api/v1/me/billing/invoices/{lago_id}"): LAGO,
    ("GET", "/api/v1/me/billing/invoices/{lago_id}/pdf"): LAGO,
    ("GET", "/api/v1/me/billing/usage"): DRIVER,
    ("GET", "/api/v1/me/billing/wallets"): DRIVER,
    ("GET", "/api/v1/me/billing/wallets/{wallet_id}/transactions"): LAGO,
    ("GET", "/api/v1/me/billing/portal"): DRIVER,
    # -- notifications (issue #10)
    ("GET", "/api/v1/me/notifications"): DRIVER,
    ("GET", "/api/v1/me/notifications/unread-count"): DRIVER,
    ("POST", "/api/v1/me/notifications/read-all"): DRIVER,
    ("POST", "/api/v1/me/notifications/{notification_id}/read"): owned("notification"),
    ("POST", "/api/v1/me/notifications/{notification_id}/archive"): owned("notification"),
    ("GET", "/api/v1/notifications"): OPERATOR,
    ("GET", "/api/v1/notifications/unread-count"): OPERATOR,
    ("POST", "/api/v1/notifications/read-all"): OPERATOR,
    ("POST", "/api/v1/notifications/{notification_id}/read"): OPERATOR,
    ("POST", "/api/v1/notifications/{notification_id}/archive"): OPERATOR,
    # -- users and impersonation
    ("GET", "/api/v1/users"): OPERATOR,
    ("GET", "/api/v1/users/{user_id}"): OPERATOR,
    ("POST", "/api/v1/users/{user_id}/role"): OPERATOR,
    ("POST", "/api/v1/users/{user_id}/ban"): OPERATOR,
    ("POST", "/api/v1/users/{user_id}/unban"): OPERATOR,
    ("POST", "/api/v1/impersonation"): OPERATOR,
    ("POST", "/api/v1/impersonation/stop"): STOP_IMPERSONATION,
    # -- cards
    ("GET", "/api/v1/cards"): OPERATOR,
    ("POST", "/api/v1/cards"): OPERATOR,
    ("GET", "/api/v1/cards/{id_tag}"): OPERATOR,
    ("PATCH", "/api/v1/cards/{id_tag}"): OPERATOR,
    ("POST", "/api/v1/cards/{id_tag}/link"): OPERATOR,
    ("POST", "/api/v1/cards/{id_tag}/unlink"): OPERATOR,
    ("GET", "/api/v1/cards/{id_tag}/link"): OPERATOR,
    ("POST", "/api/v1/cards/{id_tag}/report-lost"): OPERATOR,
    # -- sessions
    ("GET", "/api/v1/sessions"): OPERATOR,
    ("GET", "/api/v1/sessions/{session_id}"): OPERATOR,
    ("GET", "/api/v1/sessions/{session_id}/timeline"): OPERATOR,
    ("GET", "/api/v1/sessions/{session_id}/meter-samples"): OPERATOR,
    ("GET", "/api/v1/sessions/{session_id}/billing-events"): OPERATOR,
    ("POST", "/api/v1/sessions/{workflow_id}/close"): OPERATOR,
    ("GET", "/api/v1/audit"): OPERATOR,
    ("GET", "/api/v1/kpis"): OPERATOR,
    # -- SteVe sync runs and cadence
    ("POST", "/api/v1/steve/sync"): OPERATOR,
    ("GET", "/api/v1/steve/runs"): OPERATOR,
    ("GET", "/api/v1/steve/runs/{run_id}"): OPERATOR,
    ("POST", "/api/v1/steve/runs/{run_id}/retry"): OPERATOR,
    ("GET", "/api/v1/steve/cadence"): OPERATOR,
    # -- scan sign-in and tap-to-add
    ("POST", "/api/v1/chargers/{charge_box_id}/scan"): OPERATOR,
    ("POST", "/api/v1/chargers/{charge_box_id}/scan-secret"): OPERATOR,
    ("POST", "/api/v1/scan/login"): PUBLIC,
    ("POST", "/api/v1/scan/{scan_id}/exchange"): PUBLIC,
    # -- invoices (operator list and actions)
    ("GET", "/api/v1/invoices"): OPERATOR,
    ("POST", "/api/v1/invoices/{lago_id}/finalize"): OPERATOR,
    ("POST", "/api/v1/invoices/{lago_id}/void"): OPERATOR,
    ("POST", "/api/v1/invoices/{lago_id}/retry-payment"): OPERATOR,
    # -- fleet (issue #9)
    ("POST", "/api/v1/chargers"): OPERATOR,
    ("GET", "/api/v1/chargers"): OPERATOR,
    ("GET", "/api/v1/chargers/pending"): OPERATOR,
    ("GET", "/api/v1/chargers/{charge_box_id}"): OPERATOR,
    ("PATCH", "/api/v1/chargers/{charge_box_id}"): OPERATOR,
    ("POST", "/api/v1/chargers/{charge_box_id}/password"): OPERATOR,
    ("DELETE", "/api/v1/chargers/{charge_box_id}"): OPERATOR,
    ("POST", "/api/v1/sites"): OPERATOR,
    ("GET", "/api/v1/sites"): OPERATOR,
    ("GET", "/api/v1/sites/{site}"): OPERATOR,
    ("PATCH", "/api/v1/sites/{site}"): OPERATOR,
    ("POST", "/api/v1/tariffs"): OPERATOR,
    ("GET", "/api/v1/tariffs"): OPERATOR,
    ("GET", "/api/v1/tariffs/{code}"): OPERATOR,
    ("POST", "/api/v1/tariffs/{code}/versions"): OPERATOR,
    ("POST", "/api/v1/chargers/{charge_box_id}/operations/{action}"): OPERATOR,
    ("GET", "/api/v1/operations"): OPERATOR,
    ("GET", "/api/v1/operations/{operation_id}"): OPERATOR,
    ("GET", "/api/v1/chargers/{charge_box_id}/configuration"): OPERATOR,
    ("GET", "/api/v1/chargers/{charge_box_id}/local-list"): OPERATOR,
    ("POST", "/api/v1/chargers/{charge_box_id}/local-list/sync"): OPERATOR,
    ("POST", "/api/v1/local-lists/sync"): OPERATOR,
    ("POST", "/api/v1/firmware"): OPERATOR,
    ("GET", "/api/v1/firmware"): OPERATOR,
    ("POST", "/api/v1/chargers/{charge_box_id}/firmware"): OPERATOR,
    ("GET", "/api/v1/chargers/{charge_box_id}/firmware"): OPERATOR,
    ("POST", "/api/v1/firmware-campaigns"): OPERATOR,
    ("GET", "/api/v1/firmware-campaigns"): OPERATOR,
    ("GET", "/api/v1/firmware-campaigns/{campaign_id}"): OPERATOR,
    ("POST", "/api/v1/firmware-campaigns/{campaign_id}/halt"): OPERATOR,
    ("POST", "/api/v1/chargers/{charge_box_id}/diagnostics"): OPERATOR,
    ("GET", "/api/v1/chargers/{charge_box_id}/diagnostics"): OPERATOR,
    ("GET", "/api/v1/chargers/{charge_box_id}/diagnostics/{upload_id}/file"): OPERATOR,
}
# fmt: on

# Served outside the matrix: documentation, health, inbound webhooks (signed by their sender),
# files fetched by chargers with expiring tokens in the path.
# The codec's CORS preflight answers browsers before any credential (docs/selfhosting.md).
OUT_OF_SCOPE = re.compile(
    r"^/api/(openapi\.json|docs|health)$|^/api/webhook/|^/files/|^/docs|^/redoc"
    r"|^/api/codec/\{action\}$"
)

# Path parameters that exist nowhere (an owned route's own parameter is filled per driver).
NOWHERE: dict[str, str] = {
    "charge_box_id": "MATRIX-NO-SUCH-CB",
    "action": "Reset",
    "id_tag": "MATRIXNOSUCH",
    "notification_id": "999999999",
    "user_id": "matrix-no-such-user",
    "workflow_id": "session:matrix:none",
    "session_id": "session:matrix:none",
    "scan_id": "00000000-0000-4000-8000-000000000000",
    "lago_id": "00000000-0000-4000-8000-000000000001",
    "wallet_id": "00000000-0000-4000-8000-000000000002",
    "site": "999999",
    "code": "matrix-no-such-tariff",
    "campaign_id": "999999",
    "operation_id": "00000000-0000-4000-8000-000000000003",
    "upload_id": "999999",
    "event_id": "999999999",
    "reservation_id": "00000000-0000-4000-8000-000000000004",
    "site_id": "999999",
    "endpoint_id": "ep_matrixnosuch",
    "delivery_id": "msg_matrixnosuch",
    "run_id": "999999999",
}
# The path parameter each kind of owned resource fills.
OWNED_PARAMS = {
    "card": "id_tag",
    "notification": "notification_id",
    "session": "workflow_id",
    "reservation": "reservation_id",
}
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def served_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every (method, path) the app serves, however the routers were included."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.165: lazy inclusion
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
        contexts: list[Any] = [r for r in app.routes if isinstance(r, APIRoute)]
    else:
        contexts = list(iter_route_contexts(app.routes))
    for context in contexts:
        route = getattr(context, "original_route", context)
        if not isinstance(route, APIRoute) or context.path is None:
            continue
        for method in sorted(route.methods or ()):
            yield method, str(context.path)


def in_scope(path: str) -> bool:
    return path.startswith("/api/") and not OUT_OF_SCOPE.search(path)


def url_of(path: str, values: dict[str, str] | None = None) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {**NOWHERE, **(values or {})}[m[1]], path)


# Live streams (docs/live.md) never end on their own: asked as a client that goes away at once.
STREAMS = frozenset({"/api/v1/me/stream", "/api/v1/stream"})


async def call(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
) -> httpx.Response:
    body = None if method in SAFE or method == "DELETE" else {}
    if url.split("?")[0] in STREAMS:
        app = getattr(client._transport, "app")  # noqa: B009  (the in-process ASGI app)
        return await request_then_disconnect(app, method, url, headers, body)
    return await client.request(method, url, json=body, headers=headers)


def checked(who: Who) -> list[tuple[str, str]]:
    return sorted(key for key, rule in ROUTES.items() if rule.who == who)


# -- the table is complete -------------------------------------------------------------------------


def test_every_route_is_classified(inbox_api: RealApi) -> None:
    served = {key for key in served_routes(inbox_api.app) if in_scope(key[1])}
    unclassified = sorted(served - ROUTES.keys())
    assert not unclassified, (
        f"classify these routes in ROUTES (tests/inbox/test_authz_matrix.py): {unclassified}"
    )
    gone = sorted(ROUTES.keys() - served)
    assert not gone, f"ROUTES names routes the app no longer serves: {gone}"
    for _, path in ROUTES:
        for name in re.findall(r"\{(\w+)\}", path):
            assert name in NOWHERE, f"add a value for {{{name}}} to NOWHERE"


# -- the personas ----------------------------------------------------------------------------------


@dataclass
class Cast:
    driver: Person
    other: Person
    admin: Person
    owned: dict[str, str]  # kind -> the driver's resource id


@pytest.fixture(scope="module")
async def cast(auth_service: AuthService, session_factory: SessionFactory) -> Cast:
    driver = await person(auth_service, "matrix-driver")
    other = await person(auth_service, "matrix-other")
    admin = await person(auth_service, "matrix-admin", role="admin")
    id_tag = f"MX{uuid.uuid4().hex[:10].upper()}"
    workflow_id = f"session:matrix:{uuid.uuid4().hex[:10]}"
    charger = f"MX-CB-{uuid.uuid4().hex[:8]}"
    reservation_id = str(uuid.uuid4())
    async with session_factory.begin() as db:
        db.add(EvCard(id_tag=id_tag))
        db.add(Charger(charge_box_id=charger))
        await db.flush()
        # Ended already: the matrix checks who may ask, never moves a live reservation.
        db.add(
            Reservation(
                id=reservation_id,
                charge_box_id=charger,
                connector_id=1,
                user_id=driver.user_id,
                id_tag=id_tag,
                starts_at=datetime.now(UTC) - timedelta(hours=2),
                ends_at=datetime.now(UTC) - timedelta(hours=1),
                status="cancelled",
                workflow_id=f"reservation:{reservation_id}",
            )
        )
        db.add(
            UserMapping(
                user_id=driver.user_id,
                public_id=uuid.uuid4().hex[:8].upper(),
                email=driver.email,
                id_tag=id_tag,
            )
        )
        db.add(
            ChargingSession(
                workflow_id=workflow_id,
                state="closed",
                charge_box_id="MATRIX-CB",
                id_tag=id_tag,
                user_id=driver.user_id,
                started_at=datetime.now(UTC),
            )
        )
        note = await notify(
            db,
            user_id=driver.user_id,
            kind="session.billed",
            dedupe_key=f"matrix:{uuid.uuid4().hex}",
            title="matrix",
        )
    assert note is not None
    return Cast(
        driver,
        other,
        admin,
        {
            "card": id_tag,
            "session": workflow_id,
            "notification": str(note),
            "reservation": reservation_id,
        },
    )


def error_of(answer: httpx.Response) -> str | None:
    """The envelope's ``error`` code (None for a success body)."""
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def denied(answer: httpx.Response) -> bool:
    return answer.status_code in (401, 403)


# -- the matrix ------------------------------------------------------------------------------------


async def test_drivers_get_403_on_operator_routes(api: httpx.AsyncClient, cast: Cast) -> None:
    wrong = []
    for method, path in checked("operator"):
        answer = await call(api, method, url_of(path), cast.driver.headers)
        if answer.status_code != 403 or error_of(answer) != "FORBIDDEN":
            wrong.append((method, path, answer.status_code, answer.text[:120]))
    assert not wrong, wrong


async def test_drivers_and_operators_pass_authorization_on_driver_routes(
    api: httpx.AsyncClient, cast: Cast
) -> None:
    wrong = []
    for method, path in checked("driver"):
        for who in (cast.driver, cast.admin):
            answer = await call(api, method, url_of(path), who.headers)
            if denied(answer):
                wrong.append((who.email, method, path, answer.status_code, answer.text[:120]))
    assert not wrong, wrong


async def test_another_driver_gets_404_for_a_drivers_resources(
    api: httpx.AsyncClient, cast: Cast
) -> None:
    wrong = []
    for (method, path), rule in sorted(ROUTES.items()):
        if rule.owns is None:
            continue
        url = url_of(path, {OWNED_PARAMS[rule.owns]: cast.owned[rule.owns]})
        answer = await call(api, method, url, cast.other.headers)
        if answer.status_code != 404 or error_of(answer) != "NOT_FOUND":
            wrong.append(("other", method, path, answer.status_code, answer.text[:120]))
        if method in SAFE:  # the owner does see it: the 404 is about whose it is
            mine = await call(api, method, url, cast.driver.headers)
            if mine.status_code != 200:
                wrong.append(("owner", method, path, mine.status_code, mine.text[:120]))
    assert not wrong, wrong


async def test_operators_pass_authorization_on_operator_routes(
    api: httpx.AsyncClient, cast: Cast
) -> None:
    wrong = []
    for method, path in checked("operator"):
        answer = await call(api, method, url_of(path), cast.admin.headers)
        if denied(answer):
            wrong.append((method, path, answer.status_code, answer.text[:120]))
    assert not wrong, wrong


async def test_impersonation_reads_driver_routes_and_writes_nothing(
    api: httpx.AsyncClient, cast: Cast
) -> None:
    as_driver = await impersonating(api, cast.admin, cast.driver)
    wrong = []
    for (method, path), rule in sorted(ROUTES.items()):
        if rule.who in ("public", "stop_impersonation"):
            continue
        values = {OWNED_PARAMS[rule.owns]: cast.owned[rule.owns]} if rule.owns else {}
        answer = await call(api, method, url_of(path, values), as_driver)
        error = error_of(answer)
        if method not in SAFE:
            ok = answer.status_code == 403 and error == "IMPERSONATION_READ_ONLY"
        elif rule.who == "operator":
            ok = answer.status_code == 403  # impersonating is not being an operator
        else:
            ok = not denied(answer)
        if not ok:
            wrong.append((method, path, answer.status_code, answer.text[:120]))
    assert not wrong, wrong
    # The one write an impersonation may make: ending itself.
    [(method, path)] = checked("stop_impersonation")
    stopped = await call(api, method, url_of(path), as_driver)
    assert stopped.status_code == 204, stopped.text

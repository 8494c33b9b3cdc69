"""Charger authentication attacks against a real gateway: passwordless chargers, hijacking a live
charger's socket, malformed credentials. Real sockets, real ocpp clients, real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from ocpp.v16 import call
from sqlalchemy import select, update
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cli.sessions import print_story, session_story
from db.engine import SessionFactory
from db.models import AuditLog, Charger, ChargingSession
from gateway.main import Gateway
from gateway.server import basic_credentials
from tests.gateway.conftest import charger_session, seed_charger, uid
from tests.helpers import eventually


async def handshake_status(
    gateway: Gateway,
    charge_box_id: str,
    *,
    authorization: str | None = None,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> int:
    """The HTTP status the gateway answers a WebSocket handshake with (101: it opened)."""
    headers = dict(headers or {})
    if authorization:
        headers["Authorization"] = authorization
    try:
        async with connect(
            f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}",
            subprotocols=[Subprotocol("ocpp1.6")],
            additional_headers=headers,
            local_addr=(source, 0),
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def audit_rows(sf: SessionFactory, charge_box_id: str) -> list[AuditLog]:
    async with sf() as s:
        rows = await s.execute(
            select(AuditLog).where(AuditLog.subject == charge_box_id).order_by(AuditLog.id)
        )
        return list(rows.scalars())


async def test_passwordless_charger_is_refused_outside_dev(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    assert gateway.settings.env == "test" and not gateway.settings.gateway_auto_register
    bare = await seed_charger(session_factory, allow_unauthenticated=False)
    assert await handshake_status(gateway, bare) == 401
    # Offering credentials does not help a charger that has none.
    assert await handshake_status(gateway, bare, authorization=basic(bare, "anything")) == 401
    # An unknown chargeBoxId is not registered on the way.
    unknown = uid("NEW-")
    assert await handshake_status(gateway, unknown) == 404
    async with session_factory() as s:
        assert await s.get(Charger, unknown) is None


async def test_charger_marked_unauthenticated_connects_with_a_warning(
    gateway: Gateway, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cb = await seed_charger(session_factory, allow_unauthenticated=True)
    with caplog.at_level(logging.WARNING, logger="gateway.server"):
        async with charger_session(gateway, cb) as cp:
            assert (await cp.call(call.Heartbeat())).current_time
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and cb in r.getMessage()
    ]
    assert any("WITHOUT authentication" in w and "allow_unauthenticated" in w for w in warnings)


async def test_dev_admits_passwordless_chargers(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    gateway.ctx.settings = gateway.settings.model_copy(update={"env": "dev"})
    bare = await seed_charger(session_factory, allow_unauthenticated=False)
    async with charger_session(gateway, bare) as cp:
        assert (await cp.call(call.Heartbeat())).current_time


async def test_hijack_of_an_authenticated_charger_is_refused(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, password="right-pw")
    async with charger_session(gateway, cb, password="right-pw") as cp:
        live = gateway.registry.get(cb)
        assert live is not None
        for authorization in (
            None,
            basic(cb, "wrong-pw"),
            basic("someone-else", "right-pw"),
            "Basic %%%not-base64",
        ):
            assert (
                await handshake_status(gateway, cb, authorization=authorization, source="127.0.0.9")
                == 401
            )
        # The charger's own socket was never touched.
        assert gateway.registry.get(cb) is live
        assert (await cp.call(call.Heartbeat())).current_time
    assert [r.action for r in await audit_rows(session_factory, cb)] == []


async def test_unauthenticated_connection_never_displaces_an_authenticated_one(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, password="right-pw")
    async with charger_session(gateway, cb, password="right-pw") as cp:
        # The operator removes the password (and exempts the charger) while it is connected:
        # a passwordless connection is now admissible, but not over the authenticated one.
        async with session_factory.begin() as s:
            await s.execute(
                update(Charger)
                .where(Charger.charge_box_id == cb)
                .values(password_hash=None, allow_unauthenticated=True)
            )
        assert await handshake_status(gateway, cb, source="127.0.0.9") == 409
        assert (await cp.call(call.Heartbeat())).current_time
    rows = await audit_rows(session_factory, cb)
    assert [r.action for r in rows] == ["charger.connection_refused"]
    assert rows[0].source == "127.0.0.9"
    assert rows[0].details["old_authenticated"] is True
    assert rows[0].details["new_authenticated"] is False


async def test_replacement_with_the_right_password_is_audited(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, password="right-pw")
    async with charger_session(gateway, cb, password="right-pw", source="127.0.0.7") as first:
        first_socket = gateway.registry.get(cb)
        async with charger_session(gateway, cb, password="right-pw", source="127.0.0.8") as cp:
            assert (await cp.call(call.Heartbeat())).current_time
            assert gateway.registry.get(cb) is not first_socket

            def first_closed() -> bool:
                return bool(first._connection.state.name == "CLOSED")

            await eventually(first_closed, timeout=10)
    rows = await audit_rows(session_factory, cb)
    assert [r.action for r in rows] == ["charger.connection_replaced"]
    row = rows[0]
    assert row.actor == "gateway" and row.source == "127.0.0.8"
    assert row.details == {
        "charge_box_id": cb,
        "gateway_instance": gateway.settings.gateway_instance,
        "old_peer": "127.0.0.7",
        "old_authenticated": True,
        "new_peer": "127.0.0.8",
        "new_authenticated": True,
        "new_exemption": None,
    }


async def test_unauthenticated_replacement_is_audited_as_such(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, allow_unauthenticated=True)
    async with (
        charger_session(gateway, cb, source="127.0.0.7"),
        charger_session(gateway, cb, source="127.0.0.8") as cp,
    ):
        assert (await cp.call(call.Heartbeat())).current_time
    rows = await audit_rows(session_factory, cb)
    assert [r.action for r in rows] == ["charger.connection_replaced"]
    assert rows[0].details["old_authenticated"] is False
    assert rows[0].details["new_authenticated"] is False
    assert rows[0].details["new_exemption"] == "allow_unauthenticated"


async def _raw_handshake(gateway: Gateway, path: str, authorization: bytes) -> bytes:
    """A handshake written byte by byte: clients refuse to send non-ASCII headers, attackers
    don't."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: ocpp1.6\r\n"
            b"Authorization: " + authorization + b"\r\n\r\n"
        )
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_non_ascii_basic_credentials_are_a_clean_401(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, password="pässwörd")
    for authorization in (
        "Basic Y2I6cMOkc3M=é".encode(),  # non-ASCII inside the base64
        "Basic ünïcödé".encode(),
        b"Basic " + base64.b64encode(f"{cb}:p\xe4ss".encode("latin-1")),  # not UTF-8
        b"Basic \xff\xfe",
    ):
        status_line = await _raw_handshake(gateway, f"/ocpp/{cb}", authorization)
        assert status_line.startswith(b"HTTP/1.1 401"), (authorization, status_line)
    # A non-ASCII password, sent properly (UTF-8 inside base64), is a password like any other.
    async with charger_session(gateway, cb, password="pässwörd") as cp:
        assert (await cp.call(call.Heartbeat())).current_time


@pytest.mark.parametrize(
    "header",
    [
        "Basic Y2I6cMOkc3M=\udcc3\udca9",  # how websockets hands over non-ASCII header bytes
        "Basic \udcff",
        "Basic " + base64.b64encode(b"cb:\xff").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer abc",
    ],
)
def test_malformed_basic_credentials_parse_as_none(header: str) -> None:
    assert basic_credentials(header) is None


@pytest.mark.parametrize(
    ("password", "allow_unauthenticated", "shown", "warning"),
    [
        ("pw", False, "password", None),
        (None, True, "unauthenticated", "WITHOUT authentication"),
        (None, False, "none", "refused by the gateway outside dev"),
    ],
)
async def test_sessions_show_warns_about_charger_authentication(
    session_factory: SessionFactory,
    capsys: pytest.CaptureFixture[str],
    password: str | None,
    allow_unauthenticated: bool,
    shown: str,
    warning: str | None,
) -> None:
    cb = await seed_charger(
        session_factory, password=password, allow_unauthenticated=allow_unauthenticated
    )
    workflow_id = uid("wf-")
    async with session_factory.begin() as s:
        s.add(ChargingSession(workflow_id=workflow_id, state="charging", charge_box_id=cb))
    async with session_factory() as s:
        story = await session_story(s, workflow_id)
    assert story is not None and story["charger_authentication"] == shown
    print_story({**story, "workflow": {}})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
    if warning is None:
        assert lines == []
    else:
        assert len(lines) == 1 and cb in lines[0] and warning in lines[0]

"""Handshake rules, health, boot, heartbeat, status: real sockets, real ocpp clients."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from ocpp.v16 import call
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from db.engine import SessionFactory
from db.models import AuditLog, Charger, Connector
from gateway import journal
from gateway.main import Gateway
from gateway.passwords import hash_password, verify_password
from tests.gateway.conftest import charger_session, seed_charger, uid
from tests.helpers import eventually, ocpp_ts


def test_password_hashes_are_salted_and_verified() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("wrong", first)
    assert not verify_password("s3cret", "garbage")


async def test_healthz_answers_json_on_the_metrics_port_only(gateway: Gateway) -> None:
    def fetch(port: int) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    status, raw = await asyncio.to_thread(fetch, gateway.metrics_port)
    body = json.loads(raw)
    assert status == 200
    assert body["status"] == "ok" and body["temporal"] == "connected"
    assert body["database"] == "ok" and body["worker"] == "running"
    # The public OCPP port serves no health (nor metrics): only charger endpoints.
    status, _ = await asyncio.to_thread(fetch, gateway.port)
    assert status == 404


async def _refused(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    return info.value.response.status_code


async def test_handshake_refusals(gateway: Gateway, session_factory: SessionFactory) -> None:
    known = await seed_charger(session_factory)
    locked = await seed_charger(session_factory, password="pw-1")
    base = f"ws://127.0.0.1:{gateway.port}"
    assert await _refused(f"{base}/ocpp/{known}") == 400  # no subprotocol
    assert await _refused(f"{base}/ocpp/{uid()}", subprotocols=["ocpp1.6"]) == 404
    assert await _refused(f"{base}/elsewhere/{known}", subprotocols=["ocpp1.6"]) == 404
    assert await _refused(f"{base}/ocpp/{locked}", subprotocols=["ocpp1.6"]) == 401
    with pytest.raises(InvalidStatus) as info:
        async with charger_session(gateway, locked, password="wrong"):
            pass
    assert info.value.response.status_code == 401
    async with charger_session(gateway, locked, password="pw-1") as cp:
        answer = await cp.call(call.Heartbeat())
        assert answer.current_time


async def test_auto_register_creates_the_charger(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    gateway.settings = gateway.settings.model_copy(update={"gateway_auto_register": True})
    gateway.ctx.settings = gateway.settings
    new_id = uid("AUTO-")
    async with charger_session(gateway, new_id, path="/steve/websocket/CentralSystemService/"):
        pass
    async with session_factory() as s:
        charger = await s.get(Charger, new_id)
        assert charger is not None and charger.auto_registered
        audit = (await s.execute(select(AuditLog).where(AuditLog.subject == new_id))).scalar_one()
        assert audit.action == "charger.auto_registered"


async def test_boot_heartbeat_status(gateway: Gateway, session_factory: SessionFactory) -> None:
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        boot = await cp.call(
            call.BootNotification(
                charge_point_model="Wallbox-X",
                charge_point_vendor="Acme",
                firmware_version="1.2.3",
                charge_point_serial_number="SN-9",
            )
        )
        assert boot.status == "Accepted"
        assert boot.interval == gateway.settings.heartbeat_interval_s
        beat = await cp.call(call.Heartbeat())
        assert beat.current_time.endswith("Z")
        await cp.call(
            call.StatusNotification(
                connector_id=1,
                error_code="NoError",
                status="Preparing",
                timestamp=ocpp_ts(-60),
            )
        )
        # An older, queued status never overwrites a newer one.
        await cp.call(
            call.StatusNotification(
                connector_id=1,
                error_code="GroundFailure",
                status="Faulted",
                info="old",
                timestamp=ocpp_ts(-3600),
            )
        )
        async with session_factory() as s:
            charger = await s.get(Charger, cb)
            assert charger is not None
            assert (
                charger.vendor,
                charger.model,
                charger.firmware_version,
                charger.serial_number,
            ) == ("Acme", "Wallbox-X", "1.2.3", "SN-9")
            assert charger.connected
            assert charger.gateway_instance == gateway.settings.gateway_instance
            assert charger.last_boot_at is not None and charger.last_seen_at is not None
            connector = await s.get(Connector, (cb, 1))
            assert connector is not None and connector.status == "Preparing"

    async def disconnected() -> bool:
        async with session_factory() as s:
            charger = await s.get(Charger, cb)
            return charger is not None and not charger.connected

    await eventually(disconnected, timeout=10)


async def test_a_quick_reconnect_stays_connected_when_the_old_socket_closes_late(
    gateway: Gateway, session_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A charger that drops and reconnects at once (a firmware crash): the old socket's
    "disconnected" write must never land after the new connection's "connected" — else the
    charger heartbeats on a row that says it is gone and the watchdog closes its session as
    silent. The old handler's write is slowed here as a loaded machine slows it."""
    charge_box_id = await seed_charger(session_factory)
    real = journal.write_connection_states
    writes: list[str] = []

    async def slow_disconnections(*args: Any, **kwargs: Any) -> bool:
        if not kwargs["disconnected"]:
            return await real(*args, **kwargs)
        writes.append("started")
        await asyncio.sleep(1.5)
        queued = await real(*args, **kwargs)
        writes.append("done")
        return queued

    monkeypatch.setattr(journal, "write_connection_states", slow_disconnections)
    async with charger_session(gateway, charge_box_id) as cp:
        await cp.call(call.Heartbeat())
    # The old socket is closed; reconnect while its handler is still writing.
    await eventually(lambda: writes, timeout=10)
    async with charger_session(gateway, charge_box_id) as cp:
        await cp.call(call.Heartbeat())
        await eventually(lambda: "done" in writes, timeout=10)

        async def row_connected() -> bool:
            async with session_factory() as s:
                charger = await s.get(Charger, charge_box_id)
                return charger is not None and charger.connected

        await eventually(row_connected, timeout=10)
        await asyncio.sleep(0.5)
        assert await row_connected(), "the old socket's late write marked a live charger gone"

"""PostgreSQL down: transaction messages, boots and status notifications get InternalError (the
charger retries), heartbeats are still answered. The outage is real: the gateway reaches
PostgreSQL through a TCP relay that the test cuts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call
from temporalio.worker import Worker

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.helpers import ocpp_ts


class TcpRelay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[TcpRelay]:
    parts = urlsplit(pg_url)
    r = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await r.up()
    yield r
    with contextlib.suppress(Exception):
        await r.down()


async def test_postgres_down_internal_error_but_heartbeats(
    gw_settings: Settings,
    pg_url: str,
    relay: TcpRelay,
    session_factory: SessionFactory,
    session_worker: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = urlsplit(pg_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{relay.port}"
    via_relay = urlunsplit(
        parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
    )
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    async with Gateway(gw_settings.model_copy(update={"database_url": via_relay})) as gw:
        gw.ctx.db_timeout_s = 3.0
        async with charger_session(gw, cb) as cp:
            await cp.call(call.Heartbeat())
            await relay.down()
            assert (await cp.call(call.Heartbeat())).current_time
            # Nothing can be stored, so nothing is confirmed: the charger sends them again.
            with pytest.raises(InternalError):
                await cp.call(
                    call.BootNotification(charge_point_vendor="Acme", charge_point_model="X"),
                    suppress=False,
                )
            with pytest.raises(InternalError):
                await cp.call(
                    call.StatusNotification(
                        connector_id=1, error_code="NoError", status="Available"
                    ),
                    suppress=False,
                )
            start = call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=0, timestamp=ocpp_ts(-5)
            )
            with pytest.raises(InternalError):
                await cp.call(start, suppress=False)
            await relay.up()
            answer = await cp.call(start, suppress=False)
            assert answer.transaction_id > 0
            booted = await cp.call(
                call.BootNotification(charge_point_vendor="Acme", charge_point_model="X"),
                suppress=False,
            )
            assert booted.status == "Accepted"
    # The failures were logged (the library logs the whole request) without the card's idTag.
    assert "InternalError" in caplog.text
    assert id_tag not in caplog.text

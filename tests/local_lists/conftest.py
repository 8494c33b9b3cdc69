"""The real stack for local lists: a worker (every workflow), a gateway (relay, command
worker), and ``ocpp`` 1.6 charge points that keep a local list the way the spec says."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ocpp.exceptions import NotSupportedError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from temporalio.client import Client
from websockets.asyncio.client import connect

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from services.context import ServiceContext
from worker import build_worker


class ListCharger(ChargePoint):  # type: ignore[misc]
    """Keeps a local list as OCPP 1.6 says; records every request it received.

    ``answers``: statuses to give the next SendLocalList requests (then Accepted)."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0
        self.entries: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.answers: list[str] = []
        self.clear_caches = 0
        self.list_version_asks = 0
        self.config: dict[str, str] = {
            "LocalAuthListEnabled": "true",
            "LocalAuthListMaxLength": "10000",
            "SendLocalListMaxLength": "2000",
            "SupportedFeatureProfiles": "Core,LocalAuthListManagement,RemoteTrigger",
        }

    @on(Action.get_configuration)
    async def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known = [
            {"key": k, "readonly": True, "value": v}
            for k, v in self.config.items()
            if key is None or k in key
        ]
        return call_result.GetConfiguration(
            configuration_key=known, unknown_key=[k for k in key or [] if k not in self.config]
        )

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **_: Any) -> Any:
        self.list_version_asks += 1
        return call_result.GetLocalListVersion(list_version=self.version)

    @on(Action.send_local_list)
    async def on_send_local_list(
        self, list_version: int, update_type: str, local_authorization_list: Any = None, **_: Any
    ) -> Any:
        entries = local_authorization_list or []
        self.received.append(
            {"listVersion": list_version, "updateType": update_type, "entries": entries}
        )
        if self.answers:
            return call_result.SendLocalList(status=self.answers.pop(0))
        if update_type == "Differential" and list_version <= self.version:
            return call_result.SendLocalList(status="VersionMismatch")
        if update_type == "Full":
            self.entries = {}
        for entry in entries:
            info = entry.get("id_tag_info")
            if info is None:
                self.entries.pop(entry["id_tag"], None)
            else:
                self.entries[entry["id_tag"]] = info
        self.version = list_version
        return call_result.SendLocalList(status="Accepted")

    @on(Action.clear_cache)
    async def on_clear_cache(self, **_: Any) -> Any:
        self.clear_caches += 1
        return call_result.ClearCache(status="Accepted")


class NotSupportedCharger(ListCharger):
    """GetLocalListVersion answers a NotSupported CallError."""

    __test__ = False

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **_: Any) -> Any:
        self.list_version_asks += 1
        raise NotSupportedError(description="no local list here")


class CoreOnlyCharger(ChargePoint):  # type: ignore[misc]
    """Knows none of the local-list messages (the library answers NotImplemented)."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clear_caches = 0

    @on(Action.clear_cache)
    async def on_clear_cache(self, **_: Any) -> Any:
        self.clear_caches += 1
        return call_result.ClearCache(status="Accepted")


@pytest.fixture
def ll_settings(base_settings: Settings, task_queue: str) -> Settings:
    return base_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": f"gw-{uuid.uuid4().hex[:10]}",
            "temporal_task_queue": task_queue,
        }
    )


@pytest.fixture
def ctx(ll_settings: Settings, session_factory: SessionFactory, temporal_client: Client) -> Any:
    async def temporal() -> Client:
        return temporal_client

    return ServiceContext(settings=ll_settings, sessions=session_factory, temporal=temporal)


@pytest.fixture
async def stack(
    ll_settings: Settings, temporal_client: Client, session_factory: SessionFactory
) -> AsyncIterator[Gateway]:
    async with build_worker(temporal_client, ll_settings, session_factory):
        gw = Gateway(ll_settings, relay_poll_interval_s=0.5)
        await gw.start()
        try:
            await asyncio.wait_for(gw.link.wait(), 30)
            yield gw
        finally:
            await gw.stop()


@asynccontextmanager
async def charge_point(
    gateway: Gateway, charge_box_id: str, cls: type[ChargePoint] = ListCharger, **state: Any
) -> AsyncIterator[Any]:
    """A connected charge point (booted); ``cp.session_factory`` is the gateway's database;
    ``state``: attributes set before it connects (a list it kept, say)."""
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}", subprotocols=["ocpp1.6"]
    ) as ws:  # type: ignore[list-item]
        cp = cls(charge_box_id, ws)
        cp.session_factory = gateway.ctx.sf
        for name, value in state.items():
            setattr(cp, name, value)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

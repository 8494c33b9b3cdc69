"""The gateway process: OCPP server, outbox relay and the command worker, wired from settings.

:class:`Gateway` is the unit tests start on port 0 (``gateway.port`` is the bound port);
:func:`run_gateway` runs one until cancelled (the caller turns SIGTERM into cancellation).
Shutdown order: stop accepting and close charger sockets with 1001, drain the relay, stop the
worker, close Temporal and PostgreSQL.

``/metrics`` and ``/healthz`` are on ``POLARIS_GATEWAY_METRICS_PORT`` (never the public OCPP
port): health is 503 while PostgreSQL does not answer or the command worker has stopped, and
``degraded`` (still 200) while Temporal is unreachable — chargers are still answered then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker
from websockets.asyncio.server import Server, serve
from websockets.typing import Subprotocol

from activities.by_class import activities_of
from config.settings import Settings
from db.engine import make_engine, make_session_factory
from gateway import subscribers as _subscribers
from gateway.authorize import DEFAULT_TAP_TTL, Authorizer
from gateway.charge_point import GatewayContext
from gateway.commands import ChargerCommands
from gateway.group_commit import MeterValuesBatcher
from gateway.last_seen import LastSeenWriter
from gateway.log_redaction import TagRedactor, guard_library_logger
from gateway.metering import ProgressThrottle
from gateway.negotiation import SUPPORTED, select_subprotocol
from gateway.outbox_relay import OutboxRelay
from gateway.registry import ChargerRegistry
from gateway.server import OcppServer
from gateway.steve_commands import SteveCommandRoute
from gateway.temporal_link import TemporalLink
from observability import metrics
from observability.http import ObservabilityServer
from observability.temporal import install_sdk_metrics

log = logging.getLogger(__name__)

HEALTH_DB_TIMEOUT_S = 3.0
_OUTBOX_LAG = text(
    "SELECT count(*) AS n, EXTRACT(EPOCH FROM now() - min(created_at)) AS age "
    "FROM gateway_outbox WHERE delivered_at IS NULL"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        clock: Callable[[], datetime] = utc_now,
        tap_ttl: timedelta = DEFAULT_TAP_TTL,
        relay_poll_interval_s: float = 2.0,
        drain_timeout_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self._own_engine = engine is None
        # No pre-ping: a message on a connection PostgreSQL dropped gets InternalError (the
        # charger resends it) instead of every message paying a round trip (db/engine.py).
        self.engine = engine or make_engine(settings.require_database_url(), pre_ping=False)
        self.sf = make_session_factory(self.engine)
        self.link = TemporalLink(settings)
        self.relay = OutboxRelay(
            self.sf, self.link, settings, poll_interval_s=relay_poll_interval_s
        )
        self.registry = ChargerRegistry()
        self.steve_commands = SteveCommandRoute.from_settings(settings, self.sf)
        self.commands = ChargerCommands(self.registry, self.sf, self.steve_commands)
        throttle = ProgressThrottle(settings.meter_signal_interval_s, time.monotonic)
        tags = TagRedactor.from_settings(settings)
        guard_library_logger(tags)
        limits = settings.meter_limits
        self.ctx = GatewayContext(
            sf=self.sf,
            settings=settings,
            authorizer=Authorizer(
                self.sf,
                self.link,
                settings,
                clock,
                tap_ttl=tap_ttl,
                on_late_refusal=self.relay.wake,
            ),
            throttle=throttle,
            meter_values=MeterValuesBatcher(self.sf, throttle, limits=limits),
            last_seen=LastSeenWriter(self.sf),
            wake_relay=self.relay.wake,
            clock=clock,
            tags=tags,
            limits=limits,
        )
        self.ocpp = OcppServer(self.ctx, self.registry)
        self.observability: ObservabilityServer | None = None
        if settings.gateway_metrics_port is not None:
            self.observability = ObservabilityServer(
                settings.metrics_host,
                settings.gateway_metrics_port,
                health=self.health,
                refresh=[self.refresh_outbox_lag],
            )
        self._drain_timeout = drain_timeout_s
        self._server: Server | None = None
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        assert self._server is not None, "gateway not started"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def metrics_port(self) -> int:
        assert self.observability is not None, "no POLARIS_GATEWAY_METRICS_PORT"
        return self.observability.port

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy: PostgreSQL answers and the command worker runs (or still waits for
        Temporal). Temporal down only degrades: the gateway journals and queues meanwhile."""
        temporal = self.link.client is not None
        try:
            async with asyncio.timeout(HEALTH_DB_TIMEOUT_S), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            database = True
        except Exception as exc:
            log.warning("health: database is down: %r", exc)
            database = False
        worker = self._worker_task is not None and not self._worker_task.done()
        ok = database and worker
        status = "unhealthy" if not ok else "ok" if temporal else "degraded"
        return ok, {
            "status": status,
            "instance": self.settings.gateway_instance,
            "chargers_connected": len(self.registry),
            "database": "ok" if database else "down",
            "temporal": "connected" if temporal else "unavailable",
            "worker": "running" if worker else "stopped",
        }

    async def refresh_outbox_lag(self) -> None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_OUTBOX_LAG)).one()
        metrics.OUTBOX_UNDELIVERED.set(row.n)
        metrics.OUTBOX_OLDEST_AGE.set(float(row.age or 0))

    async def start(self) -> None:
        if self.observability is not None:
            await self.observability.start()
        self._subscriptions = _subscribers.subscribe_per_settings(self.settings)
        self.link.start()
        self.relay.start()
        self.ctx.last_seen.start()
        self._worker_task = asyncio.create_task(self._run_worker(), name="gateway-worker")
        self._server = await serve(
            self.ocpp.handle,
            self.settings.gateway_host,
            self.settings.gateway_port,
            process_request=self.ocpp.process_request,
            subprotocols=[Subprotocol(p) for p in SUPPORTED],
            # The charger's order of preference decides, not this list's (negotiation.py).
            select_subprotocol=select_subprotocol,
            # A bigger message closes the connection with 1009 before it is buffered whole.
            max_size=self.settings.gateway_max_frame_bytes,
            compression="deflate" if self.settings.gateway_websocket_compression else None,
        )
        log.info(
            "gateway %s listening on %s:%s",
            self.settings.gateway_instance,
            self.settings.gateway_host,
            self.port,
        )

    async def _run_worker(self) -> None:
        client = await self.link.wait()
        self._worker = Worker(
            client,
            task_queue=self.settings.gateway_task_queue,
            activities=activities_of(self.commands),
        )
        await self._worker.run()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        _subscribers.unsubscribe_all(getattr(self, "_subscriptions", []))
        if self._server is not None:
            self._server.close(close_connections=True)  # 1001 Going Away
            await self._server.wait_closed()
        await self.ocpp.close()
        await self.ctx.meter_values.close()
        await self.ctx.last_seen.stop()
        await self.ctx.authorizer.close()
        await self.relay.stop(self._drain_timeout)
        if self._worker is not None:
            with contextlib.suppress(Exception):
                await self._worker.shutdown()
        if self._worker_task is not None:
            self._worker_task.cancel()
            await asyncio.gather(self._worker_task, return_exceptions=True)
        await self.link.close()
        if self.steve_commands is not None:
            await self.steve_commands.aclose()
        if self.observability is not None:
            await self.observability.stop()
        if self._own_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def run_gateway(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled; cancellation is the graceful shutdown."""
    install_sdk_metrics(settings.metrics_host, settings.gateway_temporal_metrics_port)
    gateway = Gateway(settings)
    try:
        await gateway.start()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await gateway.stop()


def main() -> None:
    """``python -m gateway.main``: ``polaris gateway``, with the same start-up checks."""
    import sys

    from cli.main import main as polaris

    sys.exit(polaris(["gateway"]))


if __name__ == "__main__":
    main()

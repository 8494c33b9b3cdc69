"""``/metrics`` of each real process (``polaris gateway``, ``polaris worker``, ``polaris api``)
scraped during a real charging session: the counters move, the health endpoints answer, and
neither is served on a public port.

The session runs end to end over the e2e platform: a simulated charger on the real ``ocpp``
library, the gateway and worker as separate processes on a real Temporal dev server and
PostgreSQL, billing into the Lago sandbox.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from ocpp.v16 import call
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from activities.lago import LagoBilling
from db.engine import SessionFactory
from tests.e2e.conftest import (
    SUBPROTOCOL,
    Platform,
    SimulatedCharger,
    billed,
    lago_events,
    now_iso,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.e2e.processes import polaris_process
from tests.helpers import eventually, free_port

pytestmark = pytest.mark.timeout(300)


async def scrape(base_url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{base_url}/metrics")
    assert response.status_code == 200, response.text
    return response.text


async def scrape_when_up(base_url: str) -> str:
    async def attempt() -> str:
        try:
            return await scrape(base_url)
        except httpx.TransportError as exc:
            raise AssertionError(f"{base_url} not listening yet: {exc!r}") from exc

    return await eventually(attempt, timeout=60, interval=0.3)


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def json_lines(output: str) -> list[dict[str, Any]]:
    """The structured lines of a process's output (the harness writes a few plain ones)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def has(text: str, name: str) -> bool:
    return any(
        sample.name == name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


async def test_each_process_exposes_moving_metrics_during_a_real_session(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
    tmp_path: Path,
) -> None:
    charge_box_id = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    assert driver.subscription is not None

    # Before: the processes answer, nothing of this session has happened yet.
    gateway_before = await scrape_when_up(platform.gateway_metrics_url)
    worker_before = await scrape_when_up(platform.worker_metrics_url)

    # A handshake for a charger nobody registered is refused (and counted by reason).
    with pytest.raises(InvalidStatus):
        async with websockets.connect(
            f"{platform.gateway_url}/UNKNOWN-{uuid.uuid4().hex[:6]}", subprotocols=[SUBPROTOCOL]
        ):
            pass

    charger = SimulatedCharger(platform.gateway_url, charge_box_id)
    charger_factory.append(charger)
    await charger.connect()
    started = await charger.call(
        call.StartTransaction(
            connector_id=1, id_tag=driver.id_tag, meter_start=1_000, timestamp=now_iso()
        )
    )
    tx = int(started.transaction_id)
    await charger.meter(tx, 1_400)
    await charger.call(
        call.StopTransaction(
            meter_stop=2_000, timestamp=now_iso(), transaction_id=tx, id_tag=driver.id_tag
        )
    )
    workflow_id = await workflow_of(session_factory, tx)

    async def is_billed() -> bool:
        result = await billed(session_factory, workflow_id)
        return (
            result is not None
            and result.state in ("billed", "closed")
            and bool(lago_events(platform.sandbox, driver.subscription or ""))
        )

    await eventually(is_billed, timeout=120, message=f"session billed\n{platform.logs()}")

    # The gateway: frames by action and result, journal latency, connections, outbox, refusals.
    gateway = await scrape(platform.gateway_metrics_url)
    frames = "polaris_gateway_frames_total"
    for action in ("BootNotification", "StartTransaction", "MeterValues", "StopTransaction"):
        assert value(gateway, frames, action=action, result="ok") > value(
            gateway_before, frames, action=action, result="ok"
        ), action
    journal = "polaris_gateway_journal_write_seconds_count"
    assert value(gateway, journal, action="StartTransaction") > value(
        gateway_before, journal, action="StartTransaction"
    )
    assert value(gateway, "polaris_gateway_chargers_connected") >= 1
    deliveries = "polaris_gateway_outbox_deliveries_total"
    assert value(gateway, deliveries, result="delivered") > value(
        gateway_before, deliveries, result="delivered"
    )
    refusals = "polaris_gateway_handshake_failures_total"
    assert value(gateway, refusals, reason="unknown_charger") > value(
        gateway_before, refusals, reason="unknown_charger"
    )
    assert has(gateway, "polaris_gateway_outbox_undelivered_rows")
    assert has(gateway, "polaris_gateway_outbox_oldest_undelivered_age_seconds")
    # Bounded labels: no chargeBoxId anywhere in the exposition.
    assert charge_box_id not in gateway

    # The worker: Lago calls, the billing and breaker gauges, and a health that says "polling".
    worker = await scrape(platform.worker_metrics_url)
    lago = "polaris_lago_requests_total"
    assert value(worker, lago, outcome="ok") > value(worker_before, lago, outcome="ok")
    assert has(worker, "polaris_billing_unsent_rows")
    assert value(worker, "polaris_lago_webhook_breaker_open") == 0
    async with httpx.AsyncClient(timeout=10) as http:
        health = await http.get(f"{platform.worker_metrics_url}/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["worker"] == "running"
        gateway_health = await http.get(f"{platform.gateway_metrics_url}/healthz")
        assert gateway_health.status_code == 200
        assert gateway_health.json()["database"] == "ok"

    # The API: a request counted by its route template, on the API's own metrics port.
    api_port, api_metrics = free_port(), free_port()
    api = polaris_process(
        "api",
        "api",
        tmp_path,
        {
            **platform.env,
            "POLARIS_API_PORT": str(api_port),
            "POLARIS_API_METRICS_PORT": str(api_metrics),
        },
        port=api_port,
    )
    api.start()
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            api_url, api_metrics_url = (
                f"http://127.0.0.1:{api_port}",
                f"http://127.0.0.1:{api_metrics}",
            )
            before = await scrape_when_up(api_metrics_url)
            health = await http.get(
                f"{api_url}/api/health", headers={"X-Request-ID": "req-observe-1"}
            )
            assert health.headers["x-request-id"] == "req-observe-1"
            # /metrics is not a route of the public API.
            assert (await http.get(f"{api_url}/metrics")).status_code == 404
            after = await scrape(api_metrics_url)
            requests = "polaris_api_requests_total"
            assert value(after, requests, route="/api/health") > value(
                before, requests, route="/api/health"
            )
            assert (await http.get(f"{api_metrics_url}/healthz")).status_code == 200
    finally:
        api.stop()
    # Logs are JSON lines with their context: the request id on what the request logged
    # (auth is unreachable here, so the health check logs a warning inside the request) …
    api_lines = json_lines(api.output())
    assert any(
        line.get("request_id") == "req-observe-1" and line["level"] == "warning"
        for line in api_lines
    ), api.output()[-3000:]
    # … the charger on what its connection logged …
    gateway_lines = json_lines(platform.gateway.output())
    assert any(
        line.get("charge_box_id") == charge_box_id and "connected" in line["event"]
        for line in gateway_lines
    ), platform.gateway.output()[-3000:]
    # … and the workflow and activity on what an activity logged.
    worker_lines = json_lines(platform.worker.output())
    assert any(line.get("workflow_id") and line.get("activity") for line in worker_lines), (
        platform.worker.output()[-3000:]
    )

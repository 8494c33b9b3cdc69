"""One trace from an OCPP frame to the Lago call: gateway → outbox → workflow → activity → httpx.

In-process but all real: the gateway (``Gateway``) on a real socket, a charger on the real
``ocpp`` library, the session workflow on a real Temporal dev server with the real worker
(``build_worker``), billing into the Lago sandbox. Spans go to an in-memory exporter.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from ocpp.v16 import call
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from activities.lago import LagoBilling
from config.settings import Settings
from config.temporal import connect
from db.engine import SessionFactory
from gateway.main import Gateway
from observability import tracing
from tests.e2e.conftest import (
    SimulatedCharger,
    billed,
    lago_events,
    now_iso,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox
from worker import build_worker

pytestmark = pytest.mark.timeout(180)

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test only, into memory (the global provider can be set only once)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    tracing.enable()
    try:
        yield EXPORTER
    finally:
        tracing.disable()


@pytest.fixture
async def traced_platform(
    spans: InMemorySpanExporter,
    lago_settings: Settings,
    session_factory: SessionFactory,
) -> AsyncIterator[Gateway]:
    settings = lago_settings.model_copy(
        update={"gateway_port": 0, "gateway_instance": f"gw-{uuid.uuid4().hex[:8]}"}
    )
    # The same client as production (config/temporal.py): with tracing on, the interceptor.
    client = await connect(settings)
    worker = build_worker(client, settings, session_factory)
    async with worker, Gateway(settings, relay_poll_interval_s=0.5) as gateway:
        yield gateway


def _trace_of(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    first = next(s for s in spans if s.name == name)
    assert first.context is not None
    return [
        s for s in spans if s.context is not None and s.context.trace_id == first.context.trace_id
    ]


async def test_a_trace_spans_the_frame_the_workflow_and_the_lago_call(
    traced_platform: Gateway,
    spans: InMemorySpanExporter,
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_sandbox: RunningSandbox,
) -> None:
    charge_box_id = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, billing)
    assert driver.subscription is not None
    charger = SimulatedCharger(f"ws://127.0.0.1:{traced_platform.port}/ocpp", charge_box_id)
    await charger.connect()
    try:
        started = await charger.call(
            call.StartTransaction(
                connector_id=1, id_tag=driver.id_tag, meter_start=1_000, timestamp=now_iso()
            )
        )
        tx = int(started.transaction_id)
        await charger.meter(tx, 1_500)
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
                and bool(lago_events(lago_sandbox, driver.subscription or ""))
            )

        await eventually(is_billed, timeout=120, message="session billed")
    finally:
        await charger.disconnect()

    def whole_trace() -> list[ReadableSpan]:
        # Spans are exported when they end: a parent (the activity) ends after its child (the
        # HTTP call), so wait for the whole chain rather than for one of its links.
        found = _trace_of(list(spans.get_finished_spans()), "ocpp StartTransaction")
        names = {s.name for s in found}
        shown = "; ".join(sorted(names))
        # The frame, the outbox relay continuing its trace, the workflow, the billing activity
        # and its HTTP call to Lago.
        assert "outbox transaction_started" in names, shown
        assert any(n.startswith(("StartWorkflow:", "SignalWithStartWorkflow:")) for n in names), (
            shown
        )
        assert any(n.startswith("RunWorkflow:") for n in names), shown
        assert "RunActivity:lago_send_usage_events" in names, shown
        assert any(_is_lago_http(s, lago_sandbox.url) for s in found), shown
        return found

    trace_spans = await eventually(whole_trace, timeout=30)
    # Parentage, not only a shared trace id: the outbox span is the frame span's child.
    frame = next(s for s in trace_spans if s.name == "ocpp StartTransaction")
    outbox = next(s for s in trace_spans if s.name == "outbox transaction_started")
    assert outbox.parent is not None and frame.context is not None
    assert outbox.parent.span_id == frame.context.span_id
    # No chargeBoxId-free assumption here: spans may carry it (traces are not metrics).
    assert frame.attributes is not None
    assert frame.attributes.get("ocpp.charge_box_id") == charge_box_id


def _is_lago_http(span: ReadableSpan, base_url: str) -> bool:
    attributes: Any = span.attributes or {}
    url = str(attributes.get("url.full") or attributes.get("http.url") or "")
    return span.kind == trace.SpanKind.CLIENT and url.startswith(base_url)

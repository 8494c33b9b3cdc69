"""OpenTelemetry tracing, off unless asked for.

On when ``POLARIS_TRACING=true`` or when the standard variables name an exporter
(``OTEL_TRACES_EXPORTER`` other than ``none``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). The exporter is OTLP over HTTP, configured entirely by the
standard ``OTEL_*`` variables (endpoint, headers, ``OTEL_SERVICE_NAME``, sampler…); ``console``
prints spans instead. Off, no tracer provider is installed and the gateway starts no span.

The trace of a charging session: the gateway's span per OCPP frame (``ocpp <Action>``) → the
outbox row, which carries the W3C ``traceparent`` of that span (:func:`current_traceparent`) →
the relay's span (``outbox <kind>``), inside which it signals-with-start the workflow → the
Temporal SDK's ``TracingInterceptor`` carries it in the workflow's headers into the workflow and
its activities → the Lago client's httpx call (instrumented).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from config.settings import Settings

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
_state = {"enabled": False, "httpx": False}
tracer = trace.get_tracer("polaris")


def wanted(settings: Settings, environ: Mapping[str, str] = os.environ) -> bool:
    if settings.tracing:
        return True
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(environ.get(name) for name in endpoints)


def enabled() -> bool:
    return _state["enabled"]


def configure(settings: Settings, service_name: str) -> bool:
    """Install the tracer provider with the exporter the environment names (once per process)."""
    # Compose passes unset OTEL_* variables as empty strings; the SDK would take "" literally.
    for name in [k for k, v in os.environ.items() if k.startswith("OTEL_") and not v.strip()]:
        del os.environ[name]
    if not wanted(settings):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    enable()
    log.info("tracing on: OTLP exporter from the OTEL_* environment (%s)", service_name)
    return True


def enable() -> None:
    """Start spans from now on (the provider is set by :func:`configure`, or by a test)."""
    _state["enabled"] = True
    if not _state["httpx"]:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument()
        _state["httpx"] = True


def disable() -> None:
    """Stop starting spans (tests that turned tracing on for themselves)."""
    _state["enabled"] = False
    if _state["httpx"]:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
        _state["httpx"] = False


def temporal_interceptors() -> list[Any]:
    """The Temporal SDK's tracing interceptor when tracing is on (client and worker both)."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def current_traceparent() -> dict[str, str] | None:
    """The W3C trace context of the current span, to store beside work handed on (outbox)."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span (child of ``parent``, a stored trace context, when given); nothing when off."""
    if not enabled():
        yield None
        return
    ctx = _PROPAGATOR.extract(dict(parent)) if parent else None
    token = otel_context.attach(ctx) if ctx is not None else None
    try:
        with tracer.start_as_current_span(name, attributes=dict(attributes or {})) as current:
            yield current
    finally:
        if token is not None:
            otel_context.detach(token)

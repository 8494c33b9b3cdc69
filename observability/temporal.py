"""The Temporal side of observability: the SDK's own metrics, interceptors for every worker.

- :func:`install_sdk_metrics` gives the process a Temporal runtime whose telemetry exports the
  SDK's metrics (``temporal_*``: polls, task latencies, schedule-to-start, sticky cache…) in the
  Prometheus format on a port of its own. It must run before the process's first connection.
- :func:`interceptors` are the client interceptors every connection uses (and hence its
  workers): the log-context interceptor always, the OpenTelemetry one when tracing is on.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio import activity
from temporalio import client as temporal_client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from observability import tracing
from observability.logs import bound

log = logging.getLogger(__name__)


def install_sdk_metrics(host: str, port: int | None) -> bool:
    """Export the SDK's metrics on ``host:port`` (None: off). Once per process."""
    if port is None:
        return False
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}"))
    )
    Runtime.set_default(runtime, error_if_already_set=False)
    log.info("Temporal SDK metrics on http://%s:%s/metrics", host, port)
    return True


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with bound(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity=info.activity_type,
        ):
            return await super().execute_activity(input)


class LogContextInterceptor(temporal_client.Interceptor, Interceptor):
    """Binds workflow id, run id and activity type to every log line of an activity (a client
    interceptor too, so every worker built on a client from :func:`config.temporal.connect`
    uses it)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)


def interceptors() -> list[Any]:
    return [LogContextInterceptor(), *tracing.temporal_interceptors()]

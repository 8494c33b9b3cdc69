"""One way to reach Temporal: the client every process uses, with the pydantic converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config.settings import Settings
from observability.temporal import interceptors

DATA_CONVERTER = pydantic_data_converter


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.require_temporal_address(),
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        # Log context on every activity; the OpenTelemetry interceptor when tracing is on.
        interceptors=interceptors(),
    )

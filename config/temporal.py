"""One way to reach Temporal: the client every process uses (worker, gateway, API, CLI).

- The data converter: pydantic, plus the payload codec (``config/payload_codec.py``) when
  ``POLARIS_PAYLOAD_KEYS`` is set, so every payload a process writes is encrypted and every
  payload it reads is opened (unencrypted ones pass through). :data:`DATA_CONVERTER` is the plain
  pydantic converter (tests' replayers and in-process clients without keys).
- The connection: TLS with the system's roots or a given CA, mTLS with a client certificate and
  key, a server name to check, and a Temporal Cloud API key (docs/selfhosting.md, "Temporal").
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from config.payload_codec import EncryptionCodec, parse_keys
from config.settings import Settings
from observability.temporal import interceptors

log = logging.getLogger(__name__)

DATA_CONVERTER = pydantic_data_converter


def data_converter(settings: Settings) -> DataConverter:
    """The converter of a process with ``settings``: encrypting when keys are configured."""
    keys = parse_keys(settings.payload_keys) if settings.payload_encryption == "on" else []
    if not keys:
        return DATA_CONVERTER
    return dataclasses.replace(DATA_CONVERTER, payload_codec=EncryptionCodec(keys))


def tls_config(settings: Settings) -> TLSConfig | bool:
    """``TLSConfig`` for a secured frontend, ``True`` for TLS with the system's roots only,
    ``False`` for plain gRPC (the compose network, the embedded dev server)."""
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if not any(files) and not settings.temporal_tls_server_name:
        return settings.temporal_tls or settings.temporal_api_key is not None
    ca, cert, key = (path.read_bytes() if path else None for path in files)
    return TLSConfig(
        server_root_ca_cert=ca,
        client_cert=cert,
        client_private_key=key,
        domain=settings.temporal_tls_server_name,
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``Client.connect`` for ``settings`` (address aside)."""
    api_key = settings.temporal_api_key
    return {
        "namespace": settings.temporal_namespace,
        "data_converter": data_converter(settings),
        "tls": tls_config(settings),
        "api_key": api_key.get_secret_value() if api_key else None,
        # Log context on every activity; the OpenTelemetry interceptor when tracing is on.
        "interceptors": interceptors(),
    }


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    if settings.env == "prod" and settings.payload_encryption == "off":
        log.warning(
            "POLARIS_PAYLOAD_ENCRYPTION=off: workflow histories hold personal data in clear"
        )
    return await Client.connect(
        settings.require_temporal_address(), lazy=lazy, **client_options(settings)
    )

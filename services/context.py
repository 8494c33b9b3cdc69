"""What a service function needs: settings, the database and (lazily) Temporal.

The API builds one from its application state (:func:`api.services.service_context`), the CLI
from its settings (:func:`cli.service_context.open_service_context`); tests build one directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory


@dataclass(frozen=True)
class ServiceContext:
    settings: Settings
    sessions: SessionFactory
    # Connects on first use: reads work while Temporal is down.
    temporal: Callable[[], Awaitable[Client]]

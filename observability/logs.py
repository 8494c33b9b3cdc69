"""Structured logs: structlog renders every line, the stdlib's included.

Production lines are JSON objects (one a line) with ``timestamp``, ``level``, ``logger``,
``event`` and whatever context is bound: ``charge_box_id`` (per WebSocket connection),
``request_id`` (per API request), ``workflow_id`` / ``run_id`` / ``activity`` (per activity),
``transaction_id`` (where a handler knows it). ``polaris dev`` (env dev) keeps human-readable
lines, which its supervisor prefixes with the process name.

Context is bound with :func:`bind` into ``contextvars``, so it follows the task that bound it and
every task it creates, and never leaks into another charger's connection.

Existing ``logging.getLogger(...).info("...%s", x)`` calls go through structlog's
``ProcessorFormatter``: they are rendered like structlog's own lines. Redaction stays where it
was: the gateway's idTag redaction is a ``logging.Filter`` on the library's loggers
(gateway/log_redaction.py) that rewrites the record before any formatter sees it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, Literal, TextIO

import structlog
from structlog.contextvars import bind_contextvars, merge_contextvars, reset_contextvars
from structlog.typing import EventDict, Processor

from config.settings import Settings

Format = Literal["json", "console"]


def log_format(settings: Settings) -> Format:
    if settings.log_format is not None:
        return settings.log_format
    return "console" if settings.env == "dev" else "json"


def configure(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route the stdlib's logging through structlog, at ``settings.log_level``."""
    configure_logging(log_format(settings), settings.log_level, stream=stream)


def _keep_redacted_traceback(_: Any, __: str, event: EventDict) -> EventDict:
    """A logging filter that rewrote a record's traceback (``exc_text``: the idTag redaction of
    gateway/log_redaction.py) has the last word: that text is logged, never the raw one."""
    record = event.get("_record")
    text = getattr(record, "exc_text", None)
    if text and "exc_info" in event:
        del event["exc_info"]
        event["exception"] = text
    return event


def _temporal_context(_: Any, __: str, event: EventDict) -> EventDict:
    """Lines from the Temporal SDK's workflow and activity loggers carry their context as record
    attributes (``temporal_workflow`` / ``temporal_activity``): lift the ids to top-level keys."""
    record = event.get("_record")
    for attribute in ("temporal_workflow", "temporal_activity"):
        info = getattr(record, attribute, None)
        if isinstance(info, dict):
            for source, key in (
                ("workflow_id", "workflow_id"),
                ("run_id", "run_id"),
                ("workflow_run_id", "run_id"),
                ("activity_type", "activity"),
            ):
                if info.get(source) is not None:
                    event.setdefault(key, info[source])
    return event


def configure_logging(fmt: Format, level: str = "INFO", *, stream: TextIO | None = None) -> None:
    shared: list[Processor] = [
        _keep_redacted_traceback,
        merge_contextvars,
        _temporal_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind(**values: Any) -> None:
    """Bind context to every line logged from this task (and the tasks it starts) on."""
    bind_contextvars(**{k: v for k, v in values.items() if v is not None})


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind context for the ``with`` block only."""
    tokens = bind_contextvars(**{k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        reset_contextvars(**tokens)

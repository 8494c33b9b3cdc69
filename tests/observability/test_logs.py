"""Structured logs in-process: JSON lines with the bound context, stdlib calls included, idTags
still redacted (the gateway's filter on the ``ocpp`` logger), and a readable format for dev.

The real processes' JSON lines (charge_box_id, workflow_id, request_id) are checked during a
real session in ``test_metrics_scrape.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from config.settings import Settings
from gateway.log_redaction import LIBRARY_LOGGER, TagRedactor, guard_library_logger
from observability.logs import bind, bound, configure, configure_logging, log_format


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Route logging into a buffer as the processes do; put pytest's handlers back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library = logging.getLogger(LIBRARY_LOGGER)
    library_filters, library_level = list(library.filters), library.level
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        library.filters = library_filters
        library.setLevel(library_level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_stdlib_lines_are_json_with_the_context_of_their_task(captured: io.StringIO) -> None:
    log = logging.getLogger("polaris.test")

    async def connection(charge_box_id: str) -> None:
        bind(charge_box_id=charge_box_id)  # as the gateway does per WebSocket connection
        await asyncio.sleep(0)
        with bound(transaction_id=42, workflow_id="wf-1"):
            log.info("charger %s sent %d frames", charge_box_id, 3)
        log.warning("after the block")

    await asyncio.gather(connection("CB-A"), connection("CB-B"))
    log.info("no context here")
    got = lines(captured)
    sent = [line for line in got if str(line["event"]).endswith("sent 3 frames")]
    assert {line["charge_box_id"] for line in sent} == {"CB-A", "CB-B"}
    for line in sent:
        assert line["event"] == f"charger {line['charge_box_id']} sent 3 frames"
        assert line["transaction_id"] == 42 and line["workflow_id"] == "wf-1"
        assert line["level"] == "info" and line["logger"] == "polaris.test"
        assert "timestamp" in line
    after = [line for line in got if line["event"] == "after the block"]
    assert {line["charge_box_id"] for line in after} == {"CB-A", "CB-B"}
    assert all("transaction_id" not in line for line in after)
    plain = next(line for line in got if line["event"] == "no context here")
    assert "charge_box_id" not in plain  # one connection's context never leaks into another


def test_id_tags_are_still_redacted_in_json_lines(captured: io.StringIO) -> None:
    redactor = TagRedactor(b"k" * 32)
    library = logging.getLogger(LIBRARY_LOGGER)
    # As a gateway installs it: this redactor replaces one an earlier gateway of the test run
    # left on the library's logger (the fixture puts the logger back afterwards).
    guard_library_logger(redactor)
    library.setLevel(logging.INFO)
    secret = "SECRETTAG123"
    library.info('receive message [2,"1","Authorize",{"idTag":"%s"}]', secret)
    try:
        raise ValueError(f"handler failed for {{'id_tag': '{secret}'}}")
    except ValueError:
        library.exception("Error while handling request {'id_tag': '%s'}", secret)
    text = captured.getvalue()
    assert secret not in text
    assert redactor.fingerprint(secret) in text
    # Only this logger's lines: other tests' processes and threads may still be logging.
    assert len([line for line in lines(captured) if line.get("logger") == LIBRARY_LOGGER]) == 2


def test_ocpp201_id_tokens_are_redacted_and_their_type_kept() -> None:
    redactor = TagRedactor(b"k" * 32)
    card, group = "04E1A2B3C4D5E6", "GROUP-77"
    frame = (
        (
            '[2,"1","TransactionEvent",{"idToken":{"idToken":"CARD","type":"ISO14443"}}]'
            ' [3,"1",{"idTokenInfo":{"status":"Accepted","groupIdToken":'
            '{"idToken":"GROUP","type":"Central"}}}]'
        )
        .replace("CARD", card)
        .replace("GROUP", group)
    )
    kwargs = "{'id_token': {'id_token': 'CARD', 'type': 'ISO14443'}}".replace("CARD", card)
    redacted = redactor.redact(frame + " " + kwargs)
    assert card not in redacted and group not in redacted
    assert redactor.fingerprint(card) in redacted and redactor.fingerprint(group) in redacted
    assert '"type":"ISO14443"' in redacted and "'type': 'ISO14443'" in redacted


def test_dev_stays_readable_and_production_is_json() -> None:
    assert log_format(Settings(env="dev")) == "console"
    assert log_format(Settings(env="test")) == "json"
    assert log_format(Settings(env="test", log_format="console")) == "console"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure(Settings(env="dev"), stream=stream)
        with bound(charge_box_id="CB-DEV"):
            logging.getLogger("polaris.dev").info("hello %s", "there")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert "hello there" in line and "charge_box_id=CB-DEV" in line


def test_temporal_logger_context_becomes_top_level_keys(captured: io.StringIO) -> None:
    # What temporalio's workflow and activity loggers attach to their records.
    logging.getLogger("temporalio.workflow").warning(
        "slow step", extra={"temporal_workflow": {"workflow_id": "wf-9", "run_id": "run-9"}}
    )
    logging.getLogger("temporalio.activity").warning(
        "retrying",
        extra={"temporal_activity": {"workflow_id": "wf-9", "activity_type": "lago_send"}},
    )
    first, second = lines(captured)
    assert (first["workflow_id"], first["run_id"]) == ("wf-9", "run-9")
    assert (second["workflow_id"], second["activity"]) == ("wf-9", "lago_send")

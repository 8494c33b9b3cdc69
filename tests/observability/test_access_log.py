"""uvicorn's access log never prints a file URL's bearer token nor a query string's values:
a real uvicorn server, a real request, the record as uvicorn formats it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import uvicorn

from api.access_log import ACCESS_LOGGER, install_access_log_redactor, redact_path
from tests.helpers import eventually, free_port


def test_redact_path() -> None:
    assert redact_path("/files/firmware/tok123/fw.bin") == "/files/firmware/***/fw.bin"
    assert redact_path("/files/diagnostics/tok456") == "/files/diagnostics/***"
    assert redact_path("/api/v1/x?a=1&b=secret") == "/api/v1/x?a=…&b=…"
    assert redact_path("/api/v1/chargers") == "/api/v1/chargers"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"no"})


async def test_the_access_log_of_a_real_server_holds_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_access_log_redactor()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_app, host="127.0.0.1", port=port, log_config=None, access_log=True)
    )
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=30)
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            async with httpx.AsyncClient() as http:
                answer = await http.get(
                    f"http://127.0.0.1:{port}/files/firmware/SECRET-TOKEN-1/fw.bin"
                    "?token=QUERY-SECRET&dry_run=true"
                )
            assert answer.status_code == 404
            lines = await eventually(
                lambda: [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
            )
    finally:
        server.should_exit = True
        await serving
    assert any("/files/firmware/***/fw.bin?token=…&dry_run=…" in line for line in lines), lines
    assert not any("SECRET" in line for line in lines), lines

"""Webhooks to a real HTTP receiver, fault injection, persistence across restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import AddOn, Customer, Event, OneOffInvoice
from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList

from sandbox.lago.config import FaultSpec, SandboxConfig
from tests.sandbox.conftest import API_KEY, RunningSandbox, start_sandbox, wait_until
from tests.sandbox.test_billing import setup_subscription

SECRET = "whsec-test"


class Receiver:
    """A small real HTTP server that answers 500 to the first ``fail_first`` deliveries."""

    def __init__(self, fail_first: int = 1) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                failing = len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lago"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()


def test_webhook_signed_and_retried(receiver: Receiver) -> None:
    sb = start_sandbox(
        SandboxConfig(
            api_key=API_KEY,
            admin_enabled=True,
            webhook_url=receiver.url,
            webhook_secret=SECRET,
            webhook_backoff_seconds=0.05,
            pdf_delay_seconds=0.05,
        )
    )
    try:
        lago = sb.client()
        lago.add_ons.create(AddOn(name="Fee", code="fee", amount_cents=250, amount_currency="EUR"))
        lago.customers.create(Customer(external_id="wh-cus", currency="EUR"))
        invoice = lago.invoices.create(
            OneOffInvoice(
                external_customer_id="wh-cus",
                fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="fee")]),
            )
        )
        assert invoice is not None

        def by_type(kind: str) -> list[dict[str, Any]]:
            return [r for r in receiver.received if json.loads(r["body"])["webhook_type"] == kind]

        created = wait_until(
            lambda: len(by_type("invoice.created")) >= 2 and by_type("invoice.created")
        )
        first, retry = created[0], created[1]
        assert first["headers"]["X-Lago-Unique-Key"] == retry["headers"]["X-Lago-Unique-Key"]
        assert first["body"] == retry["body"]
        for delivery in (first, retry):
            expected = base64.b64encode(
                hmac.new(SECRET.encode(), delivery["body"], hashlib.sha256).digest()
            ).decode()
            assert delivery["headers"]["X-Lago-Signature"] == expected
            assert delivery["headers"]["X-Lago-Signature-Algorithm"] == "hmac"
        payload = json.loads(first["body"])
        assert payload["object_type"] == "invoice"
        assert payload["invoice"]["lago_id"] == invoice.lago_id
        generated = wait_until(lambda: by_type("invoice.generated"))
        assert ".pdf?signature=" in json.loads(generated[0]["body"])["invoice"]["file_url"]

        log = sb.admin("GET", "/webhooks").json()["webhooks"]
        hook = next(w for w in log if w["webhook_type"] == "invoice.created")
        assert hook["status"] == "delivered"
        assert [a.get("status") for a in hook["attempts"]] == [500, 200]
    finally:
        sb.stop()


def test_fault_before_is_not_stored_then_client_succeeds(sandbox: RunningSandbox) -> None:
    lago = sandbox.client()
    code, _, sub = setup_subscription(lago)
    added = sandbox.admin(
        "POST",
        "/faults",
        json={
            "path_prefix": "/api/v1/events",
            "mode": "status",
            "status": 503,
            "count": 3,
            "method": "POST",
        },
    )
    assert added.status_code == 201
    event = Event(
        transaction_id=f"{sub}:f", external_subscription_id=sub, code=code, properties={"kwh": 1}
    )
    for _ in range(3):
        with pytest.raises(LagoApiError) as exc:
            lago.events.create(event)
        assert exc.value.status_code == 503
        assert sandbox.api("GET", f"/events/{sub}:f").status_code == 404  # nothing stored
    assert lago.events.create(event) is not None
    assert sandbox.admin("GET", "/faults").json()["faults"] == []


def test_fault_after_stores_then_retry_is_duplicate(sandbox: RunningSandbox) -> None:
    lago = sandbox.client()
    code, customer, sub = setup_subscription(lago)
    event = Event(
        transaction_id=f"{sub}:a", external_subscription_id=sub, code=code, properties={"kwh": 7}
    )
    sandbox.admin(
        "POST",
        "/faults",
        json={"path_prefix": "/api/v1/events", "mode": "status", "status": 502, "phase": "after"},
    )
    with pytest.raises(LagoApiError) as lost:
        lago.events.create(event)
    assert lost.value.status_code == 502
    sandbox.admin(
        "POST",
        "/faults",
        json={"path_prefix": "/api/v1/events", "mode": "drop", "phase": "after", "method": "POST"},
    )
    other = Event(
        transaction_id=f"{sub}:d", external_subscription_id=sub, code=code, properties={"kwh": 3}
    )
    with pytest.raises(httpx.TransportError):
        lago.events.create(other)
    for retry in (event, other):  # the client retries; the sandbox already has both
        with pytest.raises(LagoApiError) as dup:
            lago.events.create(retry)
        assert dup.value.response["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert lago.customers.current_usage(customer, sub).charges_usage[0].units == "10.0"


def test_fault_drop_before_and_delay(sandbox: RunningSandbox) -> None:
    lago = sandbox.client()
    sandbox.admin("POST", "/faults", json={"path_prefix": "/api/v1/customers", "mode": "drop"})
    with pytest.raises(httpx.TransportError):
        lago.customers.find_all()
    sandbox.admin(
        "POST",
        "/faults",
        json={"path_prefix": "/api/v1/customers", "mode": "delay", "seconds": 0.4},
    )
    started = time.monotonic()
    lago.customers.find_all()
    assert time.monotonic() - started >= 0.4
    sandbox.admin("POST", "/faults", json={"mode": "status", "status": 500, "count": None})
    assert sandbox.admin("DELETE", "/faults").status_code == 204
    lago.customers.find_all()
    assert sandbox.admin("POST", "/faults", json={"mode": "bogus"}).status_code == 400


def test_admin_endpoints_need_config(tmp_path: Path) -> None:
    sb = start_sandbox(SandboxConfig(api_key=API_KEY, faults=[FaultSpec(status=504, count=1)]))
    try:
        assert sb.admin("POST", "/faults", json={"mode": "drop"}).status_code == 404
        assert sb.admin("GET", "/state").status_code == 404
        assert sb.api("GET", "/customers").status_code == 504  # fault from the config
        assert sb.api("GET", "/customers").status_code == 200
    finally:
        sb.stop()


def test_state_survives_restart_and_reset(tmp_path: Path) -> None:
    state_file = tmp_path / "lago" / "state.json"
    config = SandboxConfig(api_key=API_KEY, admin_enabled=True, state_file=state_file)
    sb = start_sandbox(config)
    try:
        code, customer, sub = setup_subscription(sb.client())
        sb.client().events.create(
            Event(
                transaction_id=f"{sub}:p",
                external_subscription_id=sub,
                code=code,
                properties={"kwh": 2},
            )
        )
    finally:
        sb.stop()
    assert json.loads(state_file.read_text())["customers"][customer]["external_id"] == customer
    sb = start_sandbox(config)
    try:
        lago = sb.client()
        assert lago.customers.find(customer).external_id == customer
        with pytest.raises(LagoApiError):  # the index of transaction ids survived too
            lago.events.create(
                Event(
                    transaction_id=f"{sub}:p",
                    external_subscription_id=sub,
                    code=code,
                    properties={"kwh": 2},
                )
            )
        assert lago.customers.current_usage(customer, sub).amount_cents == 60
        dump = sb.admin("GET", "/state").json()["state"]
        assert len(dump["events"]) == 1
        assert sb.admin("POST", "/reset").status_code == 204
        assert lago.customers.find_all()["customers"] == []
    finally:
        sb.stop()
    assert json.loads(state_file.read_text())["customers"] == {}

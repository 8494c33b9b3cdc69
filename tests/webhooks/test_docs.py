"""docs/webhooks.md against the code: every event type's schema printed as the code has it, the
example request's signature right, and the Node verifier in the document run for real."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from domain.events import EVENT_TYPES
from domain.webhook_schemas import DATA_SCHEMAS

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECTION = re.compile(r"^### (.+?)\n\nAlways present: .*?\n\n```json\n(.*?)\n```", re.M | re.S)


def _text() -> str:
    return DOC.read_text()


def test_the_catalogue_prints_every_type_with_the_codes_schema() -> None:
    seen: dict[str, dict[str, object]] = {}
    for heading, block in SECTION.findall(_text()):
        for event_type in re.findall(r"`([a-z_]+\.[a-z_]+)`", heading):
            seen[event_type] = json.loads(block)
    assert set(seen) == set(EVENT_TYPES)
    for event_type, schema in seen.items():
        assert schema == DATA_SCHEMAS[event_type], event_type


def test_the_example_request_is_signed_with_the_example_secret() -> None:
    text = _text()
    request = text[text.index("```http\n") + len("```http\n") :]
    request = request[: request.index("\n```")]
    head, body = request.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    secret = re.search(r'Webhook\("(whsec_[^"]+)"\)', text)
    assert secret is not None
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret[1]).sign(headers["webhook-id"], at, body)
    assert headers["webhook-signature"] == expected


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_verifier_accepts_ours_and_refuses_a_tampered_body(tmp_path: Path) -> None:
    text = _text()
    start = text.index("```js\n") + len("```js\n")
    (tmp_path / "verify.js").write_text(text[start : text.index("\n```", start)])
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = json.dumps({"type": "card.lost", "id": "evt_1", "data": {}}, separators=(",", ":"))
    now = datetime.now(UTC)
    old = "whsec_" + "c2Vjb25kLXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u"
    signature = " ".join(Webhook(s).sign("msg_1", now, body) for s in (old, secret))
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    script = (
        "const { verifyPolaris } = require('./verify.js');"
        "const [secret, headers, body] = JSON.parse(process.argv[1]);"
        "try { console.log(JSON.stringify(verifyPolaris(secret, headers, body))); }"
        "catch (e) { console.log('REFUSED ' + e.message); }"
    )

    def run(body_sent: str) -> str:
        args = json.dumps([secret, headers, body_sent])
        done = subprocess.run(
            ["node", "-e", script, args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    assert json.loads(run(body))["id"] == "evt_1"
    assert run(body.replace("evt_1", "evt_2")) == "REFUSED no valid signature"

"""Payload summaries for operators: decoded Temporal payloads with personal data taken out.

idTags become their fingerprints (``tag#…``, the keyed digest the logs carry, so an operator can
follow one card from a timeline into the gateway's log lines), every idTag seen in a payload is
also replaced inside free text (failure messages, a customer id made from a tag), e-mail
addresses become ``<email>``, long texts are cut and long lists shortened.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure

from config.settings import Settings
from domain.ids import tag_fingerprint
from gateway.log_redaction import TagRedactor

TAG_KEYS = frozenset({"id_tag", "idTag", "parent_id_tag", "parentIdTag", "stop_id_tag"})
EMAIL = re.compile(r"[^\s@\"']+@[^\s@\"']+\.[A-Za-z]{2,}")
MAX_TEXT = 160
MAX_ITEMS = 5
MAX_DEPTH = 4
# Without POLARIS_LOG_TAG_KEY: drawn once per process (fingerprints still hide the tag).
_PROCESS_KEY = os.urandom(32)


@dataclass
class Redactor:
    """Fingerprints idTags with the logs' key; remembers every tag it saw so free text that
    repeats one (a failure message, a customer id made from it) is cleaned too."""

    key: bytes
    # Left out of summaries: every payload of a session repeats its own workflow id.
    workflow_id: str | None = None
    seen: set[str] = field(default_factory=set)

    def tag(self, value: object) -> str:
        text = str(value)
        if text:
            self.seen.add(text)
        return tag_fingerprint(text, self.key)

    def text(self, value: str) -> str:
        # ``idTag: "…"`` / ``id_tag='…'`` in text, as the logs' redactor rewrites them.
        value = TagRedactor(self.key).redact(value)
        # Longest first, so a tag that contains another is replaced whole.
        for tag in sorted(self.seen, key=len, reverse=True):
            if len(tag) >= 3:
                value = value.replace(tag, tag_fingerprint(tag, self.key))
        value = EMAIL.sub("<email>", value)
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return "{…}"
            return {
                str(k): (
                    self.tag(v) if k in TAG_KEYS and v is not None else self.value(v, depth + 1)
                )
                for k, v in value.items()
                if not (k == "workflow_id" and v == self.workflow_id)
            }
        if isinstance(value, list):
            items = [self.value(v, depth + 1) for v in value[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                items.append(f"… {len(value) - MAX_ITEMS} more")
            return items
        if isinstance(value, str):
            return self.text(value)
        return value

    def collect(self, value: Any) -> None:
        """Learn the tags in a payload before anything is printed."""
        if isinstance(value, dict):
            for k, v in value.items():
                if k in TAG_KEYS and v is not None:
                    self.tag(v)
                else:
                    self.collect(v)
        elif isinstance(value, list):
            for v in value:
                self.collect(v)


def decode_payload(payload: Payload) -> Any:
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace")
    if encoding == "json/plain":
        try:
            return json.loads(payload.data)
        except ValueError:
            return "<undecodable json>"
    if encoding == "binary/null":
        return None
    return f"<{encoding or 'unknown'} payload, {len(payload.data)} bytes>"


def decode_payloads(payloads: Payloads) -> Any:
    values = [decode_payload(p) for p in payloads.payloads]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def failure_text(failure: Failure) -> str:
    """``Type: message`` of the failure and its causes (no stack traces)."""
    parts: list[str] = []
    current: Failure | None = failure
    while current is not None and len(parts) < 4:
        kind = (
            current.application_failure_info.type
            if current.HasField("application_failure_info")
            else ""
        )
        if current.HasField("timeout_failure_info"):
            kind = "Timeout"
        parts.append(f"{kind}: {current.message}" if kind else current.message)
        current = current.cause if current.HasField("cause") else None
    return " ← ".join(p for p in parts if p)


def redactor_for(settings: Settings, workflow_id: str | None = None) -> Redactor:
    """A redactor with the logs' fingerprint key (``POLARIS_LOG_TAG_KEY``)."""
    key = settings.log_tag_key
    secret = key.get_secret_value().encode() if key is not None else _PROCESS_KEY
    return Redactor(secret, workflow_id=workflow_id)

"""The sandbox's state: plain JSON-ready records, persisted atomically after each mutation."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("sandbox.lago.state")

Record = dict[str, Any]

COLLECTIONS = (
    "billable_metrics",  # by code
    "plans",  # by code
    "add_ons",  # by code
    "customers",  # by external_id
    "subscriptions",  # by external_id
    "invoices",  # by lago_id
    "wallets",  # by lago_id
    "wallet_transactions",  # by lago_id
)


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Lago's timestamp format: UTC, ``Z`` suffix, second precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class State:
    """All records. Events are a list (insertion order) indexed by (subscription, transaction)."""

    billable_metrics: dict[str, Record] = field(default_factory=dict)
    plans: dict[str, Record] = field(default_factory=dict)
    add_ons: dict[str, Record] = field(default_factory=dict)
    customers: dict[str, Record] = field(default_factory=dict)
    subscriptions: dict[str, Record] = field(default_factory=dict)
    invoices: dict[str, Record] = field(default_factory=dict)
    wallets: dict[str, Record] = field(default_factory=dict)
    wallet_transactions: dict[str, Record] = field(default_factory=dict)
    events: list[Record] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    _event_index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def next_number(self, name: str) -> int:
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]

    def find_event(self, external_subscription_id: str, transaction_id: str) -> Record | None:
        idx = self._event_index.get((external_subscription_id, transaction_id))
        return None if idx is None else self.events[idx]

    def add_event(self, event: Record) -> None:
        key = (event["external_subscription_id"], event["transaction_id"])
        self._event_index[key] = len(self.events)
        self.events.append(event)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in COLLECTIONS}
        data["events"] = self.events
        data["counters"] = self.counters
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        state = cls()
        for name in COLLECTIONS:
            getattr(state, name).update(data.get(name, {}))
        state.counters = dict(data.get("counters", {}))
        for event in data.get("events", []):
            state.add_event(event)
        return state


class Store:
    """Owns the :class:`State` and its file. Call :meth:`commit` after every mutation."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.state = State()
        if path is not None and path.exists():
            with path.open(encoding="utf-8") as fh:
                self.state = State.from_dict(json.load(fh))
            log.info("loaded sandbox state from %s", path)

    def commit(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lago-state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.state.to_dict(), fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def reset(self) -> None:
        self.state = State()
        self.commit()

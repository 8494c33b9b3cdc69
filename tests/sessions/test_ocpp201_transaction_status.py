"""The watchdog asks an OCPP 2.0.1 station about a silent transaction (GetTransactionStatus)
before closing it: ongoing, or messages still queued → the session is kept; not ongoing and
nothing queued → closed (``not_ongoing``) and billed to the last register. Real worker and
session workflow, real gateway, real ``ocpp`` v201 charge points.

With ``POLARIS_RECORD_HISTORIES=1`` the closing test also records
``tests/histories/charging_session_v5.json`` (the ``ocpp201-transaction-status-v1`` marker).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action
from sqlalchemy import select
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from db.models import Transaction
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.gateway.station201 import Station201, at_minutes, energy, station, tx_event
from tests.helpers import eventually
from tests.operations.test_api_and_cli import polaris
from tests.sessions.conftest import session_row
from tests.sessions.test_forgotten_transactions import ended, price, priced_charger

pytestmark = pytest.mark.timeout(180)

# The watchdog's window. The question needs only a connected station (not a recent message), so
# this can be short without depending on the gateway's last_seen_at write interval.
WATCHDOG_S = 6.0

V5_HISTORY = Path(__file__).resolve().parent.parent / "histories" / "charging_session_v5.json"


@pytest.fixture
def stack_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"session_watchdog_silence_s": WATCHDOG_S})


class AskedStation(Station201):
    """Answers GetTransactionStatus from ``answers`` in turn (the last one repeats)."""

    __test__ = False
    answers: list[tuple[bool, bool]] = [(True, False)]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending = list(self.answers)

    @on(Action.get_transaction_status)
    async def on_transaction_status(self, **kwargs: Any) -> Any:
        self.received.append(("GetTransactionStatus", kwargs))
        ongoing, queued = self.pending[0] if len(self.pending) == 1 else self.pending.pop(0)
        return call_result.GetTransactionStatus(messages_in_queue=queued, ongoing_indicator=ongoing)


class KeptStation(AskedStation):
    __test__ = False
    answers = [(True, False), (False, True)]


class ForgotStation(AskedStation):
    __test__ = False
    answers = [(False, False)]


def _asked(cp: Station201) -> list[dict[str, Any]]:
    return [kw for name, kw in cp.received if name == "GetTransactionStatus"]


async def _start(cp: Station201, card: str, tx_id: str, base: datetime) -> None:
    await cp.call(
        call.BootNotification(charging_station={"model": "M", "vendorName": "V"}, reason="PowerUp")
    )
    await cp.call(
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            tx_id,
            trigger="Authorized",
            state="Charging",
            id_token={"idToken": card, "type": "ISO14443"},
            evse=True,
            meter=[energy(1_000, at_minutes(base, 0), context="Transaction.Begin")],
        )
    )
    await cp.call(
        tx_event(
            "Updated", 1, at_minutes(base, 1), tx_id, meter=[energy(1_400, at_minutes(base, 1))]
        )
    )


async def _workflow_id(sf: SessionFactory, cb: str, tx_id: str) -> str:
    async def bound() -> str:
        async with sf() as s:
            row = await s.scalar(
                select(Transaction).where(
                    Transaction.charge_box_id == cb, Transaction.ocpp_transaction_id == tx_id
                )
            )
        assert row is not None
        return row.workflow_id

    return await eventually(bound, timeout=30)


async def test_an_ongoing_or_queued_2_0_1_transaction_is_kept_by_the_watchdog(
    stack: Gateway, session_factory: SessionFactory
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    card = await seed_card(sf)
    base = datetime.now(UTC) - timedelta(minutes=5)
    async with station(stack, cb, cls=KeptStation) as cp:
        await _start(cp, card, "TX-KEPT", base)
        workflow_id = await _workflow_id(sf, cb, "TX-KEPT")

        # Two silent windows: "ongoing", then "not ongoing but its messages are still queued".
        async def asked_twice() -> bool:
            return len(_asked(cp)) >= 2

        await eventually(asked_twice, timeout=90)
        assert _asked(cp)[:2] == [{"transaction_id": "TX-KEPT"}] * 2
        row = await session_row(sf, workflow_id)
        assert row is not None and row.state == "charging"
        # The queued Ended arrives: billed from Begin to End, once.
        await cp.call(
            tx_event(
                "Ended",
                2,
                at_minutes(base, 3),
                "TX-KEPT",
                trigger="EVCommunicationLost",
                stopped_reason="EVDisconnected",
                meter=[energy(1_900, at_minutes(base, 3), context="Transaction.End")],
            )
        )
        assert await ended(sf, workflow_id, "closed") == (900, price(900))
    async with sf() as s:
        tx = await s.scalar(select(Transaction).where(Transaction.workflow_id == workflow_id))
    assert tx is not None and tx.closed_at is None and tx.stopped_at is not None

    # The operator's view: the charger's transactionId and the version, and lookup by it.
    listed = await polaris(stack.settings, "sessions", "list", "--charger", cb, "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["workflow_id"], row["transaction_id"]) == (workflow_id, tx.id)
    assert (row["ocpp_version"], row["ocpp_transaction_id"]) == ("2.0.1", "TX-KEPT")
    for key in ("TX-KEPT", f"{cb}:TX-KEPT", str(tx.id)):
        shown = await polaris(stack.settings, "sessions", "show", key, "--json")
        assert shown.returncode == 0, shown.stderr
        story = json.loads(shown.stdout)
        assert story["workflow_id"] == workflow_id and story["ocpp_transaction_id"] == "TX-KEPT"
    missing = await polaris(stack.settings, "sessions", "show", f"{cb}:TX-NONE")
    assert missing.returncode != 0 and "no session" in missing.stderr


async def test_a_2_0_1_transaction_the_station_no_longer_has_is_closed(
    stack: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    card = await seed_card(sf)
    base = datetime.now(UTC) - timedelta(minutes=5)
    async with station(stack, cb, cls=ForgotStation) as cp:
        await _start(cp, card, "TX-GONE", base)
        workflow_id = await _workflow_id(sf, cb, "TX-GONE")
        # Not ongoing, nothing queued: closed and billed to the last good register.
        assert await ended(sf, workflow_id, "abandoned") == (400, price(400))
        assert _asked(cp)[0] == {"transaction_id": "TX-GONE"}
    async with sf() as s:
        tx = await s.scalar(select(Transaction).where(Transaction.workflow_id == workflow_id))
    assert tx is not None and tx.closed_reason == "not_ongoing"
    row = await session_row(sf, workflow_id)
    assert row is not None and row.end_reason == "closed_not_ongoing"
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        handle = temporal_client.get_workflow_handle(workflow_id)
        V5_HISTORY.write_text((await handle.fetch_history()).to_json())

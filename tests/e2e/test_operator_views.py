"""Operator views over a real session: a real ``ocpp`` charge point charges through the real
gateway and worker; the operator then reads it with ``polaris sessions show|timeline|list`` (by
transaction id) and ``polaris kpis``, run as subprocesses."""

from __future__ import annotations

import json

import pytest
from ocpp.v16 import call

from activities.lago import LagoBilling
from db.engine import SessionFactory
from domain.ids import tag_fingerprint
from tests.e2e.conftest import (
    Platform,
    SimulatedCharger,
    billed,
    now_iso,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.e2e.test_cli_sessions import polaris
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(300)

UI = "http://temporal-ui.test:8080"
TAG_KEY = "operator-views-e2e-tag-key"


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"POLARIS_TEMPORAL_UI_URL": UI, "POLARIS_LOG_TAG_KEY": TAG_KEY}


async def test_an_operator_reads_a_real_session_by_its_transaction_id(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charge_box_id = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    charger = SimulatedCharger(platform.gateway_url, charge_box_id)
    charger_factory.append(charger)
    await charger.connect()
    await charger.call(call.Authorize(id_tag=driver.id_tag))
    started = await charger.call(
        call.StartTransaction(
            connector_id=1, id_tag=driver.id_tag, meter_start=10_000, timestamp=now_iso()
        )
    )
    tx = int(started.transaction_id)
    await charger.meter(tx, 10_400)
    await charger.meter(tx, 11_000)
    await charger.call(
        call.StopTransaction(
            meter_stop=11_500, timestamp=now_iso(), transaction_id=tx, id_tag=driver.id_tag
        )
    )
    workflow_id = await workflow_of(session_factory, tx)

    async def closed() -> bool:
        result = await billed(session_factory, workflow_id)
        return result is not None and result.state == "closed"

    await eventually(closed, timeout=120, message="session closed")

    shown = await polaris(platform, "sessions", "show", str(tx), "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    story = json.loads(shown.stdout)
    assert (story["workflow_id"], story["transaction_id"]) == (workflow_id, tx)
    registers = [s["energy_wh"] for s in story["samples"] if s["energy_wh"] is not None]
    assert registers == [10_400, 11_000]
    assert sum(e["energy_wh"] for e in story["billing_events"]) == 1_500
    assert all(e["sent_at"] for e in story["billing_events"])  # Lago took every line
    assert story["workflow"]["ui"].startswith(f"{UI}/namespaces/default/workflows/")

    timeline = await polaris(platform, "sessions", "timeline", str(tx), "--json")
    assert timeline.returncode == 0, timeline.stdout + timeline.stderr
    assert driver.id_tag not in timeline.stdout
    assert tag_fingerprint(driver.id_tag, TAG_KEY.encode()) in timeline.stdout
    body = json.loads(timeline.stdout)
    assert body["workflow_id"] == workflow_id
    assert body["ui"] == body["runs"][-1]["ui"]
    assert body["ui"].endswith(f"/{body['runs'][-1]['run_id']}/history")
    entries = body["entries"]
    signals = [e["name"] for e in entries if e["kind"] == "signal"]
    assert signals[0] == "transaction_started" and "transaction_stopped" in signals
    states = [e["name"] for e in entries if e["kind"] == "state"]
    # The tap is answered within the Authorize budget (50 ms), so the charger may start, meter and
    # stop before the worker has run the workflow's first task: the states it passed through on
    # the way are then never written to the read model, and only the last two are certain.
    assert states[-2:] == ["billed", "closed"], states
    done = {(e["name"], e["status"]) for e in entries if e["kind"] == "activity"}
    assert {("record_billing_events", "completed"), ("lago_send_usage_events", "completed")} <= done
    assert (entries[-1]["kind"], entries[-1]["status"]) == ("workflow", "completed")

    text = await polaris(platform, "sessions", "timeline", workflow_id)
    assert text.returncode == 0, text.stderr
    assert "state" in text.stdout and "transaction_stopped" in text.stdout
    assert driver.id_tag not in text.stdout

    changes = await polaris(platform, "sessions", "timeline", str(tx), "--kind", "state")
    assert changes.returncode == 0, changes.stderr
    lines = [line for line in changes.stdout.splitlines() if "  state " in line]
    assert len(lines) == len(states) and "closed  changed  (from " in lines[-1]

    listed = await polaris(
        platform, "sessions", "list", "--charger", charge_box_id, "--state", "closed", "--json"
    )
    assert [r["workflow_id"] for r in json.loads(listed.stdout)] == [workflow_id]
    refused = await polaris(platform, "sessions", "list", "--from", "last tuesday")
    assert refused.returncode == 2 and "from:" in refused.stderr

    kpis = await polaris(platform, "kpis", "--json")
    assert kpis.returncode == 0, kpis.stderr
    figures = json.loads(kpis.stdout)
    printed = await polaris(platform, "kpis", "--tz", "Europe/Berlin")
    assert printed.returncode == 0, printed.stderr
    assert "(Europe/Berlin)" in printed.stdout and "energy today" in printed.stdout
    assert figures["energy_today_wh"] >= 1_500
    assert figures["chargers_online"] >= 1
    assert isinstance(figures["active_sessions"], int)

"""The stand-in itself: contract checks both ways, HTTP Basic, and its OCPP central system
recording like SteVe (its own transaction ids, a resent start keeps its id)."""

from __future__ import annotations

import json

import httpx
from ocpp.v16 import call

from sandbox.steve.contract import SteveContract
from sandbox.steve.server import RunningSteve
from tests.steve.conftest import PASSWORD, USER, box_id, field_charger

AUTH = (USER, PASSWORD)


def test_contract_loads_with_the_security_scheme_patched() -> None:
    contract = SteveContract.load()
    assert contract.errata == ["#/components/securitySchemes/basicAuth/name"]
    scheme = contract.document["components"]["securitySchemes"]["basicAuth"]
    assert scheme == {"scheme": "basic", "type": "http"}


def test_response_validator_rejects_drift() -> None:
    contract = SteveContract.load()
    op = contract.find("GET", "/steve/api/v1/ocppTags/7")
    assert op is not None and op.template == "/api/v1/ocppTags/{ocppTagPk}"
    wrong = json.dumps({"ocppTagPk": "seven", "blocked": "no"}).encode()
    problems = contract.response_problems(op, 200, wrong)
    assert any("ocppTagPk" in p for p in problems) and any("blocked" in p for p in problems)
    assert contract.response_problems(op, 201, b"{}") == [
        "status 201 is not declared for GET /api/v1/ocppTags/{ocppTagPk}"
    ]
    stop = contract.find("PATCH", "/api/v1/transactions/3/stop")
    assert stop is not None
    assert contract.response_problems(stop, 200, b"") == []
    assert contract.response_problems(stop, 200, b"{}") != []


async def test_basic_auth_and_request_validation(steve: RunningSteve) -> None:
    async with httpx.AsyncClient(base_url=steve.url) as http:
        r = await http.get("/api/v1/ocppTags")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        r = await http.get("/api/v1/ocppTags", auth=(USER, "wrong"))
        assert r.status_code == 401
        r = await http.post("/api/v1/ocppTags", auth=AUTH, json={"idTag": ""})
        assert r.status_code == 400 and "idTag" in r.json()["message"]
        r = await http.get("/api/v1/transactions", auth=AUTH, params={"type": "OPEN"})
        assert r.status_code == 400 and "type" in r.json()["message"]
        r = await http.post(
            "/api/v1/operations/Reset", auth=AUTH, json={"chargeBoxIdList": [], "resetType": "Soft"}
        )
        assert r.status_code == 400 and "chargeBoxIdList" in r.json()["message"]
    checked = steve.standin.contract_log.operations_checked()
    assert "POST /api/v1/ocppTags" in checked and "POST /api/v1/operations/Reset" in checked


async def test_central_system_records_like_steve(steve: RunningSteve) -> None:
    state = steve.standin.state
    state.add_tag("CARD-1")
    cb = box_id()
    async with field_charger(steve, cb) as cp:
        boot = await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        assert boot.status == "Accepted"
        auth = await cp.call(call.Authorize(id_tag="CARD-1"))
        assert auth.id_tag_info["status"] == "Accepted"
        unknown = await cp.call(call.Authorize(id_tag="NOPE"))
        assert unknown.id_tag_info["status"] == "Invalid"
        start = call.StartTransaction(
            connector_id=1, id_tag="CARD-1", meter_start=1000, timestamp="2025-01-01T10:00:00Z"
        )
        first = await cp.call(start)
        again = await cp.call(start)  # the charger never saw the answer: same id
        assert first.transaction_id == again.transaction_id
        # A second start for the same card counts against maxActiveTransactionCount (1).
        other = await cp.call(
            call.StartTransaction(
                connector_id=2, id_tag="CARD-1", meter_start=5, timestamp="2025-01-01T10:01:00Z"
            )
        )
        assert other.id_tag_info["status"] == "ConcurrentTx"
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=first.transaction_id,
                meter_value=[
                    {
                        "timestamp": "2025-01-01T10:30:00Z",
                        "sampledValue": [{"value": "4500", "unit": "Wh"}],
                    }
                ],
            )
        )
        await cp.call(
            call.StopTransaction(
                meter_stop=9000,
                timestamp="2025-01-01T11:00:00Z",
                transaction_id=first.transaction_id,
                reason="Local",
            )
        )
    tx = state.transactions[first.transaction_id]
    assert (tx.start_value, tx.stop_value, tx.stop_reason) == (1000, 9000, "Local")
    assert tx.values == [{"valueTimestamp": "2025-01-01T10:30:00Z", "value": "4500", "unit": "Wh"}]
    assert state.box(cb).vendor == "V"


async def test_first_transaction_id_is_configurable() -> None:
    from sandbox.steve.state import SteveState, now

    state = SteveState(first_transaction_id=700_000)
    tx, created = state.start_transaction("CB", 1, "T", 0, now())
    assert (tx.id, created) == (700_000, True)

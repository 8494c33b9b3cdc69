"""The operations domain without any infrastructure: the status machine over every pair, answer
outcomes, secret redaction, configuration changes and schema-typed CLI fields."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from domain.operations import (
    FINAL_STATUSES,
    OPERATION_STATUSES,
    REDACTED,
    TRANSITIONS,
    FieldParseError,
    OperationTransitionError,
    advance,
    can_advance,
    configuration_changes,
    has_redacted_secret,
    merge_secrets,
    outcome_of_answer,
    parse_fields,
    redact_answer,
    split_secrets,
)
from gateway.ocpp16_operations import build_frame, request_schema, validate_request

ALLOWED = {
    ("requested", "sent"),
    ("requested", "charger_offline"),
    ("requested", "failed"),
    ("sent", "answered"),
    ("sent", "rejected"),
    ("sent", "failed"),
    ("sent", "timed_out"),
    ("sent", "charger_offline"),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(OPERATION_STATUSES, repeat=2)))
def test_the_status_machine(current: str, new: str) -> None:
    assert can_advance(current, new) is ((current, new) in ALLOWED)
    if (current, new) in ALLOWED:
        assert advance(current, new) == new
    else:
        with pytest.raises(OperationTransitionError):
            advance(current, new)


def test_final_statuses_go_nowhere() -> None:
    assert not any(TRANSITIONS.get(s) for s in FINAL_STATUSES)
    assert set(FINAL_STATUSES) | {"requested", "sent"} == set(OPERATION_STATUSES)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"status": "Accepted"}, "answered"),
        ({"status": "Unlocked"}, "answered"),
        ({"status": "Scheduled"}, "answered"),
        ({"status": "RebootRequired"}, "answered"),
        ({"status": "Rejected"}, "rejected"),
        ({"status": "NotSupported"}, "rejected"),
        ({"status": "NotImplemented"}, "rejected"),
        ({"status": "VersionMismatch"}, "rejected"),
        ({"status": "Unknown"}, "rejected"),
        ({"listVersion": 4}, "answered"),
        ({}, "answered"),
    ],
)
def test_answer_outcomes(answer: dict[str, Any], outcome: str) -> None:
    assert outcome_of_answer(answer) == outcome


def test_the_authorization_key_is_redacted_and_restored() -> None:
    fields = {"key": "AuthorizationKey", "value": "hunter2"}
    redacted, secrets = split_secrets("ChangeConfiguration", fields)
    assert redacted == {"key": "AuthorizationKey", "value": REDACTED}
    assert secrets == {"value": "hunter2"}
    assert has_redacted_secret("ChangeConfiguration", redacted)
    assert merge_secrets(redacted, secrets) == fields
    # Case does not matter; other keys and actions carry no secret.
    assert split_secrets("ChangeConfiguration", {"key": "authorizationkey", "value": "x"})[1]
    plain = {"key": "HeartbeatInterval", "value": "60"}
    assert split_secrets("ChangeConfiguration", plain) == (plain, {})
    assert split_secrets("DataTransfer", {"vendorId": "v", "data": "x"})[1] == {}


def test_a_reported_authorization_key_is_hidden() -> None:
    answer = {
        "configurationKey": [
            {"key": "AuthorizationKey", "readonly": False, "value": "leak"},
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
        ]
    }
    hidden = redact_answer("GetConfiguration", answer)
    assert [e["value"] for e in hidden["configurationKey"]] == [REDACTED, "60"]


def test_configuration_changes() -> None:
    before = {"A": {"value": "1"}, "B": {"value": "2"}, "C": {"value": "3"}}
    after = {"A": {"value": "1"}, "B": {"value": "20"}, "D": {"value": "4"}}
    assert configuration_changes(before, after, current_is_full=True) == [
        {"key": "B", "change": "changed", "before": "2", "after": "20"},
        {"key": "C", "change": "removed", "before": "3"},
        {"key": "D", "change": "added", "after": "4"},
    ]
    # A partial read says nothing of the keys it did not ask for.
    assert {c["key"] for c in configuration_changes(before, after, current_is_full=False)} == {
        "B",
        "D",
    }
    assert configuration_changes(None, after, current_is_full=True) == []


@pytest.mark.parametrize(
    ("action", "items", "expected"),
    [
        ("Reset", ["type=Soft"], {"type": "Soft"}),
        (
            "ChangeConfiguration",
            ["key=HeartbeatInterval", "value=60"],
            {"key": "HeartbeatInterval", "value": "60"},
        ),
        ("UnlockConnector", ["connectorId=1"], {"connectorId": 1}),
        ("GetConfiguration", ["key=A,B", "key=C"], {"key": ["A", "B", "C"]}),
        ("GetConfiguration", ['key=["A"]'], {"key": ["A"]}),
        (
            "GetCompositeSchedule",
            ["connectorId=0", "duration=60", "chargingRateUnit=W"],
            {"connectorId": 0, "duration": 60, "chargingRateUnit": "W"},
        ),
        (
            "RemoteStartTransaction",
            ["idTag=T", "chargingProfile.chargingProfileId=2"],
            {"idTag": "T", "chargingProfile": {"chargingProfileId": 2}},
        ),
        (
            "SendLocalList",
            ["listVersion=3", "updateType=Differential", 'localAuthorizationList=[{"idTag": "T"}]'],
            {
                "listVersion": 3,
                "updateType": "Differential",
                "localAuthorizationList": [{"idTag": "T"}],
            },
        ),
        (
            "DataTransfer",
            ["vendorId=acme", 'data={"raw": 1}'],
            {"vendorId": "acme", "data": '{"raw": 1}'},
        ),
    ],
)
def test_fields_are_typed_by_the_schema(
    action: str, items: list[str], expected: dict[str, Any]
) -> None:
    assert parse_fields(items, request_schema(action)) == expected


def test_fields_from_a_file() -> None:
    profile = {"chargingProfileId": 1, "stackLevel": 0}
    files = {"p.json": json.dumps(profile)}
    fields = parse_fields(
        ["connectorId=1", "csChargingProfiles=@p.json"],
        request_schema("SetChargingProfile"),
        read_file=files.__getitem__,
    )
    assert fields == {"connectorId": 1, "csChargingProfiles": profile}


@pytest.mark.parametrize(
    ("action", "items", "message"),
    [
        ("UnlockConnector", ["connectorId=one"], "not an integer"),
        ("Reset", ["kind=Soft"], "unknown field"),
        ("Reset", ["type"], "expected field=value"),
        ("Reset", ["type=Soft", "type=Hard"], "given twice"),
        ("SetChargingProfile", ["csChargingProfiles={oops"], "not valid JSON"),
        ("SetChargingProfile", ["csChargingProfiles=plain"], "expected a JSON object"),
        ("SetChargingProfile", ["csChargingProfiles=@p.json"], "not available"),
    ],
)
def test_unreadable_fields_name_the_field(action: str, items: list[str], message: str) -> None:
    with pytest.raises(FieldParseError) as error:
        parse_fields(items, request_schema(action))
    assert message in str(error.value)
    assert error.value.issues[0]["path"]


def test_the_frame() -> None:
    assert build_frame("Reset", {"type": "Soft"}, "id-1") == [2, "id-1", "Reset", {"type": "Soft"}]


def test_charging_profile_decimals_validate_as_the_library_does() -> None:
    period = {"startPeriod": 0, "limit": 21.4}
    fields = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]},
        },
    }
    assert validate_request("SetChargingProfile", fields) == []

"""The timeline's pure core over real recorded histories (``tests/histories``): what an operator
reads, and what never shows (idTags, e-mail addresses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from domain.ids import tag_fingerprint
from services.payload_summary import Redactor
from services.timeline import build_timeline, run_id_of, ui_link

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
KEY = b"timeline-test-key"


def load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / name).read_text())


def input_of(history: WorkflowHistory) -> dict[str, object]:
    started = history.events[0].workflow_execution_started_event_attributes
    value: dict[str, object] = json.loads(started.input.payloads[0].data)
    return value


def timeline(name: str) -> tuple[list[dict[str, object]], WorkflowHistory]:
    history = load(name)
    entries = build_timeline([(run_id_of(history.events), history.events)], Redactor(KEY))
    return [e.as_dict() for e in entries], history


def test_a_closed_session_reads_as_its_states_signals_activities_and_outcome() -> None:
    entries, history = timeline("charging_session_v4.json")
    states = [e["name"] for e in entries if e["kind"] == "state"]
    assert states == ["requested", "pre_authorized", "charging", "billed", "closed"]
    assert [e["summary"] for e in entries if e["kind"] == "state"][3] == {
        "from": "charging",
        "to": "billed",
        "end_reason": "abandoned_reconciled",
    }
    signals = [e["name"] for e in entries if e["kind"] == "signal"]
    assert signals == [
        "transaction_started",
        "meter_progress",
        "transaction_closed",
        "transaction_stopped",
    ]
    update = next(e for e in entries if e["kind"] == "update")
    assert (update["name"], update["status"]) == ("pre_authorize", "completed")
    assert update["summary"]["status"] == "Accepted"  # type: ignore[index]
    assert update["duration_s"] is not None
    activities = [e for e in entries if e["kind"] == "activity"]
    assert {e["status"] for e in activities} == {"completed", "failed"}
    failed = [e for e in activities if e["status"] == "failed"]
    assert {e["name"] for e in failed} == {"lago_send_usage_events"}
    assert all(str(e["message"]).startswith("NoLagoSubscription: ") for e in failed)
    assert all(e["attempt"] == 1 and e["duration_s"] is not None for e in activities)
    timer = next(e for e in entries if e["kind"] == "timer")
    assert timer["status"] == "canceled" and timer["duration_s"] == pytest.approx(180, abs=1)
    markers = {e["name"] for e in entries if e["kind"] == "marker"}
    assert {"lago-send-usage-v1", "session-closure-v1"} <= markers
    assert (entries[0]["kind"], entries[0]["status"]) == ("workflow", "started")
    assert (entries[-1]["kind"], entries[-1]["status"]) == ("workflow", "completed")
    assert all(e["run_id"] == run_id_of(history.events) for e in entries)
    times = [e["at"] for e in entries]
    assert times == sorted(times)


@pytest.mark.parametrize(
    "name",
    [
        "charging_session_v1.json",
        "charging_session_v2.json",
        "charging_session_v3.json",
        "charging_session_v4.json",
        "charging_session_v9.json",
    ],
)
def test_no_idtag_shows_only_its_fingerprint(name: str) -> None:
    entries, history = timeline(name)
    tag = str(input_of(history)["id_tag"])
    text = json.dumps(entries)
    assert tag not in text
    assert tag_fingerprint(tag, KEY) in text


def test_local_activities_read_as_activities_and_the_read_model_writes_as_states() -> None:
    """A session recorded with local activities (charging_session_v9): their markers are the
    activities an operator reads, and the read model's results are the session's states."""
    entries, _ = timeline("charging_session_v9.json")
    states = [e["name"] for e in entries if e["kind"] == "state"]
    assert states == [
        "requested",
        "pre_authorized",
        "charging",
        "suspended",
        "charging",
        "billed",
        "closed",
    ]
    done = {(e["name"], e["status"]) for e in entries if e["kind"] == "activity"}
    assert {
        ("pre_authorize_card", "completed"),
        ("load_tariff", "completed"),
        ("record_billing_events", "completed"),
        ("upsert_session_read_model", "completed"),
    } <= done
    assert ("lago_send_usage_events", "failed") in done  # an activity: no Lago customer here


def test_free_text_and_emails_are_cleaned() -> None:
    redactor = Redactor(KEY)
    redactor.collect({"id_tag": "CARD-1234", "nested": [{"parentIdTag": "PARENT-9"}]})
    text = redactor.text("customer cust-CARD-1234 (x@example.com) parent PARENT-9 idTag=ABC777")
    assert "CARD-1234" not in text and "PARENT-9" not in text and "ABC777" not in text
    assert "x@example.com" not in text and "<email>" in text
    assert tag_fingerprint("CARD-1234", KEY) in text
    summary = redactor.value({"email": "a@b.example", "items": list(range(20)), "s": "y" * 500})
    assert summary["email"] == "<email>"
    assert summary["items"][-1] == "… 15 more"
    assert len(summary["s"]) <= 160


def test_state_changes_carry_over_a_chain_of_runs() -> None:
    """Two runs (continue-as-new): the second run's first state change starts from the first
    run's last state, not from nothing."""
    history = load("charging_session_v4.json")
    events = history.events
    entries = build_timeline([("run-a", events), ("run-b", events)], Redactor(KEY))
    second = [e for e in entries if e.run_id == "run-b" and e.kind == "state"]
    # The same history twice: the second run starts where the first ended (closed), and only
    # a different state is a change.
    assert [e.name for e in second] == [
        "requested",
        "pre_authorized",
        "charging",
        "billed",
        "closed",
    ]
    assert second[0].summary == {"from": "closed", "to": "requested"}


def test_ui_links_name_the_run() -> None:
    assert ui_link(None, "default", "session:CB-1:tap:1:ab", "r1") is None
    assert (
        ui_link("http://ui:8080/", "default", "session:CB-1:tap:1:ab", "r-1")
        == "http://ui:8080/namespaces/default/workflows/session%3ACB-1%3Atap%3A1%3Aab/r-1/history"
    )

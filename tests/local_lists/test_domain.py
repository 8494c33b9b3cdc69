"""The local list's pure core: entries from cards, and the diff/plan/apply properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.local_list import (
    CardRow,
    SendLocalListRequest,
    apply_update,
    desired_list,
    diff,
    plan_updates,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_statuses_follow_pre_authorization() -> None:
    cards = [
        CardRow(id_tag="OK", expires_at=NOW + timedelta(days=3)),
        CardRow(id_tag="LOST", lost_at=NOW, is_active=False),
        CardRow(id_tag="OFF", is_active=False),
        CardRow(id_tag="BLK", blocked=True),
        CardRow(id_tag="OLD", expires_at=NOW - timedelta(seconds=1)),
        CardRow(id_tag="NOBODY", mapped=False),
        CardRow(id_tag="KID", parent_id_tag="BLK"),
        CardRow(id_tag="KID2", parent_id_tag="PAR", expires_at=NOW + timedelta(days=9)),
        CardRow(id_tag="PAR", expires_at=NOW + timedelta(days=2)),
    ]
    got = desired_list(cards, NOW)
    assert got["OK"] == {"status": "Accepted", "expiryDate": "2026-06-04T12:00:00.000Z"}
    assert got["LOST"] == {"status": "Blocked"}
    assert got["OFF"] == {"status": "Blocked"}
    assert got["BLK"] == {"status": "Blocked"}
    assert got["OLD"] == {"status": "Expired"}
    assert got["NOBODY"] == {"status": "Invalid"}
    assert got["KID"] == {"status": "Blocked", "parentIdTag": "BLK"}
    # A child never outlives its parent offline.
    assert got["KID2"] == {
        "status": "Accepted",
        "expiryDate": "2026-06-03T12:00:00.000Z",
        "parentIdTag": "PAR",
    }


def test_a_capped_list_keeps_accepted_entries_first() -> None:
    cards = [CardRow(id_tag=f"B{i}", blocked=True) for i in range(5)] + [
        CardRow(id_tag=f"A{i}") for i in range(3)
    ]
    got = desired_list(cards, NOW, max_length=4)
    assert list(got) == ["A0", "A1", "A2", "B0"]


def test_removals_are_sent_without_id_tag_info() -> None:
    current = {"A": {"status": "Accepted"}, "B": {"status": "Accepted"}}
    desired = {"A": {"status": "Blocked"}, "C": {"status": "Accepted"}}
    assert diff(current, desired) == [
        {"idTag": "A", "idTagInfo": {"status": "Blocked"}},
        {"idTag": "B"},
        {"idTag": "C", "idTagInfo": {"status": "Accepted"}},
    ]


def test_a_full_update_of_nothing_clears_the_list() -> None:
    [req] = plan_updates(4, {"A": {"status": "Accepted"}}, {}, full=True)
    assert req == SendLocalListRequest(list_version=5, update_type="Full", entries=[])
    assert apply_update({"A": {"status": "Accepted"}}, req) == {}


# -- properties ----------------------------------------------------------------------------

tags = st.text(alphabet="ABCDEFGH0123", min_size=1, max_size=4)
infos = st.sampled_from(
    [
        {"status": "Accepted"},
        {"status": "Accepted", "expiryDate": "2026-07-01T00:00:00.000Z"},
        {"status": "Blocked"},
        {"status": "Expired"},
        {"status": "Invalid", "parentIdTag": "P"},
    ]
)
lists = st.dictionaries(tags, infos, max_size=30)
chunk_sizes = st.one_of(st.none(), st.integers(min_value=1, max_value=12))


def run(current: dict[str, dict[str, str]], requests: list[SendLocalListRequest]) -> object:
    held = dict(current)
    for request in requests:
        held = apply_update(held, request)
    return held


@given(lists, lists, st.integers(min_value=0, max_value=10**6), chunk_sizes, st.booleans())
def test_the_plan_reaches_the_desired_list(
    current: dict[str, dict[str, str]],
    desired: dict[str, dict[str, str]],
    version: int,
    size: int | None,
    full: bool,
) -> None:
    requests = plan_updates(version, current, desired, full=full, send_max_length=size)
    assert run(current, requests) == desired
    # One version step per request, starting right after the acknowledged one.
    assert [r.list_version for r in requests] == list(
        range(version + 1, version + 1 + len(requests))
    )
    for n, request in enumerate(requests):
        assert len(request.entries) <= (size or 100)
        assert request.update_type == ("Full" if full and n == 0 else "Differential")


@given(lists, lists, chunk_sizes)
def test_a_differential_plan_sends_only_what_changed(
    current: dict[str, dict[str, str]],
    desired: dict[str, dict[str, str]],
    size: int | None,
) -> None:
    requests = plan_updates(7, current, desired, send_max_length=size)
    sent = [e for r in requests for e in r.entries]
    sent_tags = [str(e["idTag"]) for e in sent]
    assert len(sent_tags) == len(set(sent_tags))
    changed = {t for t in set(current) | set(desired) if current.get(t) != desired.get(t)}
    assert set(sent_tags) == changed
    for entry in sent:
        tag = str(entry["idTag"])
        if tag in desired:
            assert entry["idTagInfo"] == desired[tag]
        else:
            assert "idTagInfo" not in entry
    if current == desired:
        assert requests == []


@given(lists, lists)
def test_applying_the_diff_twice_changes_nothing_more(
    current: dict[str, dict[str, str]], desired: dict[str, dict[str, str]]
) -> None:
    [*requests] = plan_updates(0, current, desired, send_max_length=1000)
    once = run(current, requests)
    assert run(once, requests) == once

"""The pure reservation rules: overlaps, free slots nearby (Hypothesis against a brute force over
a minute grid), timers and the driver's words for a charger's refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.reservations import (
    Window,
    free_slots_on,
    no_show_at,
    overlaps,
    refusal_reason,
    reserve_now_at,
    suggest_slots,
    window_issues,
)

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def win(start: int, length: int) -> Window:
    return Window(at(start), at(start + length))


windows = st.lists(
    st.tuples(st.integers(0, 240), st.integers(1, 90)).map(lambda t: win(*t)), max_size=6
)


@given(windows, st.integers(0, 240), st.integers(1, 120), st.integers(0, 120))
@settings(max_examples=300, deadline=None)
def test_suggested_slots_are_free_and_nearest(
    busy: list[Window], start: int, length: int, earliest: int
) -> None:
    wanted = win(start, length)
    latest = at(400)
    found = free_slots_on(busy, wanted, earliest=at(earliest), latest=latest)
    for s in found:
        assert at(earliest) <= s <= latest
        assert not any(overlaps(Window(s, s + wanted.duration), b) for b in busy)
    # Brute force on the minute grid (every edge is on it): nothing free is nearer.
    grid = [
        at(m)
        for m in range(earliest, 401)
        if not any(overlaps(Window(at(m), at(m) + wanted.duration), b) for b in busy)
    ]
    if grid:
        best = min(abs((g - wanted.starts_at).total_seconds()) for g in grid)
        assert found, "a free slot exists but none was suggested"
        assert abs((found[0] - wanted.starts_at).total_seconds()) == best
    else:
        assert found == []
    distances = [abs((s - wanted.starts_at).total_seconds()) for s in found]
    assert distances == sorted(distances)


@given(st.dictionaries(st.integers(1, 3), windows, min_size=1), st.integers(0, 240))
@settings(max_examples=200, deadline=None)
def test_suggestions_are_at_most_two_distinct_free_starts(
    busy: dict[int, list[Window]], start: int
) -> None:
    wanted = win(start, 30)
    slots = suggest_slots(busy, wanted, earliest=T0, latest=at(500))
    assert len(slots) <= 2
    assert len({s.starts_at for s in slots}) == len(slots)
    for slot in slots:
        assert slot.ends_at - slot.starts_at == wanted.duration
        taken = busy[slot.connector_id]
        assert not any(overlaps(Window(slot.starts_at, slot.ends_at), b) for b in taken)


def test_suggestions_on_either_side_of_a_taken_slot() -> None:
    busy = {1: [win(60, 60)]}
    slots = suggest_slots(busy, win(60, 60), earliest=T0, latest=at(600))
    assert [(s.starts_at, s.ends_at) for s in slots] == [(at(0), at(60)), (at(120), at(180))]


def test_overlap_is_half_open() -> None:
    assert overlaps(win(0, 30), win(29, 5))
    assert not overlaps(win(0, 30), win(30, 5))
    assert not overlaps(win(30, 5), win(0, 30))


def test_timers() -> None:
    w = win(60, 120)
    assert reserve_now_at(w.starts_at, timedelta(minutes=5)) == at(55)
    assert no_show_at(w, timedelta(minutes=15)) == at(75)
    assert no_show_at(win(60, 10), timedelta(minutes=15)) == at(70)


def test_refusal_reasons_speak_to_the_driver() -> None:
    assert refusal_reason("Occupied") == "the connector is in use"
    assert refusal_reason("Faulted") == "the charger reports a fault"
    assert refusal_reason("Rejected") == "the charger refused the reservation"
    assert refusal_reason("Unavailable") == "the connector is out of service"
    assert "Weird" in refusal_reason("Weird")


def test_window_issues() -> None:
    limits = {
        "max_ahead": timedelta(days=7),
        "min_duration": timedelta(minutes=10),
        "max_duration": timedelta(hours=4),
    }
    assert window_issues(at(10), timedelta(minutes=30), now=T0, **limits) == []
    past = window_issues(at(-10), timedelta(minutes=30), now=T0, **limits)
    assert past[0]["path"] == ["starts_at"]
    far = window_issues(T0 + timedelta(days=8), timedelta(minutes=30), now=T0, **limits)
    assert "7 days" in str(far[0]["message"])
    short = window_issues(at(10), timedelta(minutes=5), now=T0, **limits)
    assert short[0]["path"] == ["duration_min"]
    naive = window_issues(datetime(2026, 6, 1), timedelta(minutes=30), now=T0, **limits)
    assert naive[0]["path"] == ["starts_at"]

"""Adaptive Cadence's transition rule (domain/steve_cadence.py), with Hypothesis for the
hysteresis: one quiet run never demotes, only activity promotes, dormant only after the
configured time without activity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.steve_cadence import CadenceRules, CadenceState, evaluate, on_activity, start

T0 = datetime(2026, 1, 5, tzinfo=UTC)
RULES = CadenceRules()


def test_two_idle_evaluations_demote_active_to_idle() -> None:
    s = start(T0)
    s = evaluate(s, busy=False, at=T0 + timedelta(minutes=15), rules=RULES)
    assert s.mode == "active"
    s = evaluate(s, busy=False, at=T0 + timedelta(minutes=30), rules=RULES)
    assert s.mode == "idle"
    assert RULES.interval(s.mode) == timedelta(hours=1)


def test_thirty_days_without_activity_make_it_dormant_and_activity_wakes_it() -> None:
    s = CadenceState("idle", 5, T0)
    s = evaluate(s, busy=False, at=T0 + timedelta(days=29, hours=23), rules=RULES)
    assert s.mode == "idle"
    s = evaluate(s, busy=False, at=T0 + timedelta(days=30), rules=RULES)
    assert s.mode == "dormant"
    assert RULES.interval(s.mode) == timedelta(days=7)
    s = evaluate(s, busy=False, at=T0 + timedelta(days=37), rules=RULES)
    assert s.mode == "dormant"
    woken = on_activity(s, T0 + timedelta(days=38))
    assert (woken.mode, woken.idle_streak) == ("active", 0)


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="demote_after"):
        CadenceRules(demote_after=0)
    with pytest.raises(ValueError, match="positive"):
        CadenceRules(active=timedelta(0))


# An event: ("eval", busy, minutes later) or ("activity", _, minutes later).
events = st.lists(
    st.tuples(
        st.sampled_from(["eval", "activity"]),
        st.booleans(),
        st.integers(min_value=1, max_value=60 * 24 * 12),
    ),
    max_size=80,
)
rules_strategy = st.builds(
    CadenceRules,
    demote_after=st.integers(min_value=1, max_value=5),
    dormant_after=st.integers(min_value=60, max_value=60 * 24 * 40).map(
        lambda m: timedelta(minutes=m)
    ),
)


@given(events, rules_strategy)
def test_hysteresis(steps: list[tuple[str, bool, int]], rules: CadenceRules) -> None:
    at = T0
    s = start(at)
    quiet_in_a_row = 0
    for kind, busy, minutes in steps:
        at += timedelta(minutes=minutes)
        before = s
        if kind == "activity":
            s = on_activity(s, at)
            assert (s.mode, s.idle_streak) == ("active", 0)
            quiet_in_a_row = 0
            continue
        s = evaluate(s, busy=busy, at=at, rules=rules)
        if busy:
            assert (s.mode, s.idle_streak) == ("active", 0)
            quiet_in_a_row = 0
            continue
        quiet_in_a_row += 1
        assert s.idle_streak == quiet_in_a_row
        # Only activity promotes: a quiet evaluation never moves up.
        order = {"active": 0, "idle": 1, "dormant": 2}
        assert order[s.mode] >= order[before.mode]
        # Active is left only after `demote_after` quiet evaluations in a row …
        if before.mode == "active" and s.mode != "active":
            assert quiet_in_a_row >= rules.demote_after or s.mode == "dormant"
        # … and dormant means nothing happened for `dormant_after`.
        if s.mode == "dormant":
            assert at - s.last_activity_at >= rules.dormant_after
        elif at - s.last_activity_at >= rules.dormant_after:
            pytest.fail("quiet for longer than dormant_after but not dormant")

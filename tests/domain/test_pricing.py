"""Pricing: exact examples, and properties over many tariffs (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.billing import billing_event_id, next_billing_line
from domain.pricing import TariffTerms, price_delta, price_session, round_half_up
from domain.session import Phase, SessionState

prices = st.integers(min_value=0, max_value=100_000)
energies = st.integers(min_value=0, max_value=10_000_000)  # up to 10 MWh
durations = st.integers(min_value=0, max_value=14 * 24 * 3600)


@st.composite
def tariffs(draw: st.DrawFn) -> TariffTerms:
    return TariffTerms(
        currency="EUR",
        price_per_kwh_minor=draw(prices),
        price_per_minute_minor=draw(prices),
        price_per_session_minor=draw(prices),
        session_fee_min_energy_wh=draw(st.integers(min_value=0, max_value=5_000)),
        session_fee_min_duration_s=draw(st.integers(min_value=0, max_value=600)),
    )


def test_no_session_fee_below_the_tariff_minimums() -> None:
    tariff = TariffTerms(
        currency="EUR",
        price_per_kwh_minor=30,
        price_per_session_minor=50,
        session_fee_min_energy_wh=1,
        session_fee_min_duration_s=120,
    )
    assert price_session(tariff, energy_wh=0, duration_s=3600).total_minor == 0
    assert price_session(tariff, energy_wh=1000, duration_s=119).total_minor == 30
    assert price_session(tariff, energy_wh=1000, duration_s=120).session_minor == 50
    # Minimums of 0: the fee applies to every session, as before.
    always = tariff.model_copy(
        update={"session_fee_min_energy_wh": 0, "session_fee_min_duration_s": 0}
    )
    assert price_session(always, energy_wh=0, duration_s=0).total_minor == 50


def test_round_half_up() -> None:
    assert round_half_up(Fraction(1, 2)) == 1
    assert round_half_up(Fraction(3, 2)) == 2
    assert round_half_up(Fraction(149, 100)) == 1
    assert round_half_up(Fraction(0)) == 0
    with pytest.raises(ValueError):
        round_half_up(Fraction(-1, 2))


def test_exact_example() -> None:
    tariff = TariffTerms(
        currency="EUR", price_per_kwh_minor=35, price_per_minute_minor=2, price_per_session_minor=50
    )
    # 12_345 Wh x 0.35 = 432.075; 1_830 s x 2/60 = 61 -> 493.075 -> 493 (+ 50 fee)
    price = price_session(tariff, energy_wh=12_345, duration_s=1_830)
    assert price.total_minor == 543
    assert price.energy_minor == 432
    assert price.time_minor == 61
    assert price.session_minor == 50


def test_half_rounds_up_on_the_total() -> None:
    tariff = TariffTerms(currency="EUR", price_per_kwh_minor=1)
    assert price_session(tariff, energy_wh=500, duration_s=0).total_minor == 1
    assert price_session(tariff, energy_wh=499, duration_s=0).total_minor == 0


def test_negative_inputs_are_refused() -> None:
    tariff = TariffTerms(currency="EUR")
    with pytest.raises(ValueError):
        price_session(tariff, energy_wh=-1, duration_s=0)


@given(tariffs(), energies, durations)
def test_never_negative_and_parts_sum_to_total(tariff: TariffTerms, wh: int, s: int) -> None:
    price = price_session(tariff, energy_wh=wh, duration_s=s)
    assert min(price.energy_minor, price.time_minor, price.session_minor, price.total_minor) >= 0
    assert price.energy_minor + price.time_minor + price.session_minor == price.total_minor


@given(tariffs(), energies, energies, durations)
def test_monotonic_in_energy(tariff: TariffTerms, a: int, b: int, s: int) -> None:
    low, high = sorted((a, b))
    assert (
        price_session(tariff, energy_wh=low, duration_s=s).total_minor
        <= price_session(tariff, energy_wh=high, duration_s=s).total_minor
    )


@given(tariffs(), energies, durations, durations)
def test_monotonic_in_duration(tariff: TariffTerms, wh: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert (
        price_session(tariff, energy_wh=wh, duration_s=low).total_minor
        <= price_session(tariff, energy_wh=wh, duration_s=high).total_minor
    )


@given(tariffs(), energies, durations, st.integers(min_value=0, max_value=10**9))
def test_delta_never_negative(tariff: TariffTerms, wh: int, s: int, billed: int) -> None:
    assert price_delta(tariff, energy_wh=wh, duration_s=s, already_billed_minor=billed) >= 0


T0 = datetime(2026, 1, 1, tzinfo=UTC)


@given(
    tariffs(),
    st.integers(min_value=0, max_value=100_000),
    st.integers(min_value=0, max_value=100_000),
    st.integers(min_value=0, max_value=100_000),
    st.integers(min_value=0, max_value=7200),
    st.integers(min_value=0, max_value=7200),
)
def test_final_plus_compensation_bills_the_true_usage_once(
    tariff: TariffTerms, start: int, seen: int, extra: int, seen_s: int, extra_s: int
) -> None:
    state = SessionState(
        charge_box_id="CB", phase=Phase.ABANDONED, meter_start_wh=start, started_at=T0
    )
    first = next_billing_line(
        state,
        kind="final",
        register_wh=start + seen,
        at=T0 + timedelta(seconds=seen_s),
        tariff=tariff,
    )
    assert first is not None
    state = state.model_copy(
        update={
            "billing_sequence": first.sequence,
            "billed_energy_wh": first.cumulative_energy_wh,
            "billed_amount_minor": first.cumulative_amount_minor,
        }
    )
    end_at = T0 + timedelta(seconds=seen_s + extra_s)
    second = next_billing_line(
        state, kind="compensation", register_wh=start + seen + extra, at=end_at, tariff=tariff
    )
    truth = price_session(tariff, energy_wh=seen + extra, duration_s=seen_s + extra_s)
    billed_wh = first.energy_wh + (second.energy_wh if second else 0)
    billed_minor = first.amount_minor + (second.amount_minor if second else 0)
    assert billed_wh == seen + extra
    assert billed_minor == truth.total_minor
    if second is not None:
        assert second.sequence == 2


def test_billing_event_id() -> None:
    assert billing_event_id("session:CB:1", 3) == "session:CB:1:3"


@given(
    tariffs(),
    st.integers(min_value=0, max_value=100_000),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=50_000), st.integers(0, 3600)), max_size=8
    ),
    st.integers(min_value=0, max_value=50_000),
    st.integers(min_value=0, max_value=3600),
)
def test_periodic_lines_plus_final_sum_to_stop_minus_start(
    tariff: TariffTerms,
    start: int,
    steps: list[tuple[int, int]],
    last_wh: int,
    last_s: int,
) -> None:
    state = SessionState(
        charge_box_id="CB", phase=Phase.CHARGING, meter_start_wh=start, started_at=T0
    )
    register, elapsed = start, 0
    lines = []
    for wh, seconds in steps:
        register, elapsed = register + wh, elapsed + seconds
        line = next_billing_line(
            state,
            kind="periodic",
            register_wh=register,
            at=T0 + timedelta(seconds=elapsed),
            tariff=tariff,
        )
        if line is None:
            assert wh == 0
            continue
        assert line.sequence == state.billing_sequence + 1
        lines.append(line)
        state = state.model_copy(
            update={
                "billing_sequence": line.sequence,
                "billed_energy_wh": line.cumulative_energy_wh,
                "billed_amount_minor": line.cumulative_amount_minor,
            }
        )
    stop, end_s = register + last_wh, elapsed + last_s
    final = next_billing_line(
        state, kind="final", register_wh=stop, at=T0 + timedelta(seconds=end_s), tariff=tariff
    )
    assert final is not None
    lines.append(final)
    assert sum(line.energy_wh for line in lines) == stop - start
    truth = price_session(tariff, energy_wh=stop - start, duration_s=end_s)
    assert sum(line.amount_minor for line in lines) == truth.total_minor
    assert all(line.amount_minor >= 0 and line.energy_wh >= 0 for line in lines)

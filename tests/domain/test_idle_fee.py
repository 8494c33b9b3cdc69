"""The idle-fee rule: grace, price per minute pro rata to the second, cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.idle_fee import IdleFeeTerms, idle_fee, idle_fee_line_id, seconds_to_cap

TERMS = IdleFeeTerms(currency="EUR", grace_s=600, price_per_minute_minor=10, cap_minor=500)


@pytest.mark.parametrize(
    ("idle_s", "amount", "capped"),
    [
        (-30, 0, False),  # clocks disagree: nothing
        (0, 0, False),
        (600, 0, False),  # the grace period is free
        (601, 0, False),  # 1/6 of a minor unit rounds to 0
        (603, 1, False),  # 0.5 rounds half up
        (660, 10, False),  # one minute after the grace
        (600 + 49 * 60 + 59, 500, False),  # 499.83 rounds to the cap exactly
        (600 + 50 * 60 + 3, 500, True),  # above the cap
        (24 * 3600, 500, True),
    ],
)
def test_idle_fee_examples(idle_s: int, amount: int, capped: bool) -> None:
    fee = idle_fee(TERMS, idle_s=idle_s)
    assert (fee.amount_minor, fee.capped, fee.currency) == (amount, capped, "EUR")


def test_no_price_or_a_zero_cap_means_no_fee() -> None:
    free = IdleFeeTerms(currency="EUR", grace_s=0, price_per_minute_minor=0)
    assert idle_fee(free, idle_s=3600).amount_minor == 0
    zero_cap = TERMS.model_copy(update={"cap_minor": 0})
    assert idle_fee(zero_cap, idle_s=3600).amount_minor == 0
    no_cap = TERMS.model_copy(update={"cap_minor": None})
    assert idle_fee(no_cap, idle_s=600 + 100 * 60).amount_minor == 1000


@given(
    grace=st.integers(0, 7200),
    price=st.integers(0, 1000),
    cap=st.one_of(st.none(), st.integers(0, 100_000)),
    a=st.integers(-100, 10 * 86400),
    b=st.integers(0, 86400),
)
def test_the_fee_grows_with_idle_time_and_stays_under_the_cap(
    grace: int, price: int, cap: int | None, a: int, b: int
) -> None:
    terms = IdleFeeTerms(currency="EUR", grace_s=grace, price_per_minute_minor=price, cap_minor=cap)
    shorter, longer = idle_fee(terms, idle_s=a), idle_fee(terms, idle_s=a + b)
    assert 0 <= shorter.amount_minor <= longer.amount_minor
    if cap is not None:
        assert longer.amount_minor <= cap
    if a <= grace:
        assert shorter.amount_minor == 0


def test_the_line_id_is_deterministic() -> None:
    assert idle_fee_line_id("session:CB-1:tap:abc") == "session:CB-1:tap:abc:idle-fee"


def test_seconds_to_cap_example() -> None:
    assert seconds_to_cap(TERMS) == 600 + 49 * 60 + 57  # 499.5 rounds up to the cap
    assert seconds_to_cap(TERMS.model_copy(update={"cap_minor": None})) is None
    assert seconds_to_cap(TERMS.model_copy(update={"price_per_minute_minor": 0})) is None


@given(
    grace=st.integers(0, 7200),
    price=st.integers(1, 1000),
    cap=st.integers(1, 100_000),
)
def test_seconds_to_cap_is_the_first_second_the_fee_is_the_cap(
    grace: int, price: int, cap: int
) -> None:
    terms = IdleFeeTerms(currency="EUR", grace_s=grace, price_per_minute_minor=price, cap_minor=cap)
    at = seconds_to_cap(terms)
    assert at is not None and at > grace
    assert idle_fee(terms, idle_s=at).amount_minor == cap
    assert idle_fee(terms, idle_s=at - 1).amount_minor < cap

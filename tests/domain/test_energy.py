from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.energy import (
    ENERGY_REGISTER,
    UnparseableSample,
    check_sample,
    energy_between,
    parse_sampled_value,
    to_wh,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_energy_between() -> None:
    assert energy_between(1000, 3500).energy_wh == 2500
    assert energy_between(1000, 3500).flag is None
    backwards = energy_between(3500, 1000)
    assert backwards.energy_wh == 0
    assert backwards.flag == "register_backwards"


@pytest.mark.parametrize(
    ("value", "unit", "wh"),
    [
        ("1234", None, 1234),
        ("1234.5", "Wh", 1235),
        ("1234.4", "Wh", 1234),
        ("12.3456", "kWh", 12346),
        (" 7 ", "kwh", 7000),
        ("0", None, 0),
    ],
)
def test_to_wh(value: str, unit: str | None, wh: int) -> None:
    assert to_wh(value, unit) == wh


@pytest.mark.parametrize(("value", "unit"), [("abc", "Wh"), ("1", "A"), ("NaN", "Wh"), ("", None)])
def test_to_wh_refuses(value: str, unit: str | None) -> None:
    with pytest.raises(UnparseableSample):
        to_wh(value, unit)


def test_parse_sampled_value_defaults_to_energy_register() -> None:
    sample = parse_sampled_value("1.5", unit="kWh")
    assert sample.measurand == ENERGY_REGISTER
    assert sample.energy_wh == 1500
    other = parse_sampled_value("16.2", unit="A", measurand="Current.Import")
    assert other.energy_wh is None
    assert other.raw_value == "16.2"


def test_check_sample() -> None:
    stop = T0 + timedelta(hours=1)
    ok = check_sample(
        sampled_at=T0 + timedelta(minutes=1),
        energy_wh=10,
        started_at=T0,
        stopped_at=stop,
        previous_wh=5,
    )
    assert ok is None
    assert check_sample(sampled_at=T0 - timedelta(seconds=1), energy_wh=10, started_at=T0) == (
        "before_transaction"
    )
    assert (
        check_sample(
            sampled_at=stop + timedelta(seconds=1), energy_wh=10, started_at=T0, stopped_at=stop
        )
        == "after_transaction"
    )
    assert check_sample(sampled_at=T0, energy_wh=4, started_at=T0, previous_wh=5) == "not_monotonic"

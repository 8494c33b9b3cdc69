from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.energy import (
    ENERGY_REGISTER,
    FLAG_IMPLAUSIBLE_ENERGY,
    MeterLimits,
    OutOfRange,
    UnparseableSample,
    check_register,
    check_sample,
    check_timestamp,
    energy_between,
    implausible_energy,
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


# -- Poison values: refused at the edge, never a crash --------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit"),
    [("1e28", None), ("1E+28", "kWh"), ("9" * 40, "Wh"), ("1e400", "kWh"), ("-1e30", None)],
)
def test_to_wh_refuses_huge_numbers_instead_of_raising_invalid_operation(
    value: str, unit: str | None
) -> None:
    with pytest.raises(OutOfRange):
        to_wh(value, unit)


def test_check_register_bounds() -> None:
    limits = MeterLimits(max_register_wh=10**12)
    assert check_register(0, limits) == 0
    assert check_register(10**12, limits) == 10**12
    for bad in (-1, 10**12 + 1, 2**63):
        with pytest.raises(OutOfRange):
            check_register(bad, limits)
    # Whatever the setting says, never past PostgreSQL's BIGINT.
    with pytest.raises(OutOfRange):
        check_register(2**63, MeterLimits(max_register_wh=2**70))


def test_check_timestamp_window() -> None:
    limits = MeterLimits(max_past_s=3600, max_future_s=60)
    assert check_timestamp(T0 - timedelta(seconds=3600), T0, limits)
    assert check_timestamp(T0 + timedelta(seconds=60), T0, limits)
    year_10000 = datetime.fromisoformat("9999-12-31T23:59:59-05:00")
    for bad in (T0 - timedelta(seconds=3601), T0 + timedelta(seconds=61), year_10000):
        with pytest.raises(OutOfRange):
            check_timestamp(bad, T0, limits)


def test_implausible_energy_is_max_power_times_elapsed_time_plus_tolerance() -> None:
    def check(register_wh: int, at: datetime) -> str | None:
        return implausible_energy(
            meter_start_wh=500,
            register_wh=register_wh,
            started_at=T0,
            at=at,
            max_power_w=22_000,
            limits=MeterLimits(tolerance_wh=1000),
        )

    hour = T0 + timedelta(hours=1)
    assert check(500 + 23_000, hour) is None
    assert check(500 + 23_001, hour) == FLAG_IMPLAUSIBLE_ENERGY
    # No time elapsed (or a sample before the start): only the tolerance.
    assert check(1_500, T0) is None
    assert check(1_501, T0 - timedelta(hours=1)) == FLAG_IMPLAUSIBLE_ENERGY

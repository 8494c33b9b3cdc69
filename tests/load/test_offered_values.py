"""Reading offered limits from MeterValues samples (pure): units, phases, other measurands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.load_trigger import offered_values
from gateway.meter import Sample

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def sample(
    measurand: str, value: str, unit: str | None, phase: str | None = None, s: int = 0
) -> Sample:
    return Sample(
        sampled_at=T0 + timedelta(seconds=s),
        measurand=measurand,
        raw_value=value,
        energy_wh=None,
        unit=unit,
        phase=phase,
        context="Sample.Periodic",
        location=None,
    )


def test_power_in_kw_and_w() -> None:
    assert offered_values([sample("Power.Offered", "7.4", "kW")]) == (7400, None, T0)
    assert offered_values([sample("Power.Offered", "7400", "W")]) == (7400, None, T0)
    assert offered_values([sample("Power.Offered", "7400", None)]) == (7400, None, T0)


def test_per_phase_values() -> None:
    phases = [
        sample("Current.Offered", "16", "A", "L1"),
        sample("Current.Offered", "10", "A", "L2", s=1),
        sample("Current.Offered", "16", "A", "L3"),
        sample("Power.Offered", "2300", "W", "L1"),
        sample("Power.Offered", "2300", "W", "L2"),
    ]
    assert offered_values(phases) == (4600, 10, T0 + timedelta(seconds=1))
    # A value for the whole connector wins over the phases.
    assert offered_values([*phases, sample("Current.Offered", "12", "A")])[1] == 12


def test_nothing_offered() -> None:
    assert offered_values([]) == (None, None, None)
    assert offered_values([sample("Energy.Active.Import.Register", "100", "Wh")]) == (
        None,
        None,
        None,
    )
    assert offered_values([sample("Current.Offered", "lots", "A")]) == (None, None, None)

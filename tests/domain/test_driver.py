"""The pure parts of the driver features: the availability rule, the refusal codes, the tariff in
words, the meter timeline and the usage periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.authorization import CardFacts
from domain.availability import ConnectorFacts, charger_offline, connector_state
from domain.driver_start import card_problem, connector_problem, rejection_problem
from domain.meter_timeline import (
    Sample,
    TimelinePoint,
    average_power_w,
    meter_timeline,
    peak_power_w,
    power_w,
)
from domain.pricing import TariffTerms
from domain.tariff_words import money, tariff_words
from services.driver_views import period_range

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
BEAT = 300.0


def facts(**kw: object) -> ConnectorFacts:
    base: dict[str, object] = {"connected": True, "last_seen_at": NOW, "status": "Available"}
    return ConnectorFacts(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, "available"),
        ({"status": None}, "available"),
        ({"connected": False}, "offline"),
        ({"last_seen_at": None}, "offline"),
        ({"last_seen_at": NOW - timedelta(seconds=3 * BEAT + 1)}, "offline"),
        ({"last_seen_at": NOW - timedelta(seconds=3 * BEAT)}, "available"),
        ({"status": "Unavailable"}, "offline"),
        ({"charger_status": "Unavailable"}, "offline"),
        ({"status": "Faulted"}, "faulted"),
        ({"charger_status": "Faulted"}, "faulted"),
        ({"status": "Faulted", "open_transaction": True}, "faulted"),
        ({"status": "Charging"}, "in_use"),
        ({"status": "Preparing"}, "in_use"),
        ({"status": "SuspendedEV"}, "in_use"),
        ({"status": "Finishing"}, "in_use"),
        ({"open_transaction": True}, "in_use"),
        ({"status": "Reserved"}, "reserved"),
        ({"reserved_now": True}, "reserved"),
        ({"reserved_now": True, "status": "Charging"}, "in_use"),
        ({"reserved_now": True, "connected": False}, "offline"),
    ],
)
def test_the_availability_rule(kw: dict[str, object], expected: str) -> None:
    assert connector_state(facts(**kw), NOW, BEAT) == expected


def test_offline_is_three_heartbeat_intervals_of_silence() -> None:
    assert not charger_offline(True, NOW - timedelta(seconds=899), NOW, 300)
    assert charger_offline(True, NOW - timedelta(seconds=901), NOW, 300)
    assert not charger_offline(True, NOW - timedelta(seconds=901), NOW, 301)


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ({"lost_at": NOW}, "CARD_LOST"),
        ({"is_active": False}, "CARD_BLOCKED"),
        ({"blocked": True}, "CARD_BLOCKED"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "CARD_EXPIRED"),
    ],
)
def test_card_problems(card: dict[str, object], code: str) -> None:
    problem = card_problem(CardFacts(id_tag="T", **card), None, NOW)  # type: ignore[arg-type]
    assert problem is not None and problem.code == code
    assert card_problem(CardFacts(id_tag="T"), None, NOW) is None
    parent = CardFacts(id_tag="P", blocked=True)
    blocked_parent = card_problem(CardFacts(id_tag="T"), parent, NOW)
    assert blocked_parent is not None and blocked_parent.code == "CARD_BLOCKED"


def test_connector_and_rejection_problems() -> None:
    assert connector_problem("available") is None
    codes = {a: connector_problem(a) for a in ("in_use", "reserved", "offline", "faulted")}
    assert {a: p.code for a, p in codes.items() if p} == {
        "in_use": "CONNECTOR_BUSY",
        "reserved": "CONNECTOR_RESERVED",
        "offline": "CHARGER_OFFLINE",
        "faulted": "CONNECTOR_FAULTED",
    }
    assert rejection_problem("remote_start_failed: Rejected").code == "CHARGER_REFUSED"
    assert rejection_problem("remote_start_failed: ChargerOffline").code == "CHARGER_OFFLINE"
    assert rejection_problem("remote_start_failed: ChargerTimeout").code == "CHARGER_TIMEOUT"
    assert rejection_problem("card_lost").code == "CARD_LOST"
    assert rejection_problem("concurrent_session_limit").code == "CARD_IN_USE"
    assert rejection_problem("no_active_mapping").code == "CARD_REFUSED"


def test_tariff_words() -> None:
    terms = TariffTerms(currency="EUR", price_per_kwh_minor=30, price_per_session_minor=50)
    assert tariff_words(terms) == "€0.30 per kWh + €0.50 per session"
    per_minute = TariffTerms(currency="GBP", price_per_minute_minor=5)
    assert tariff_words(per_minute) == "£0.05 per minute"
    assert tariff_words(TariffTerms(currency="EUR")) == "free"
    assert money(1234, "JPY") == "1234 JPY"
    assert money(1234, "XYZ") == "12.34 XYZ"


def s(minutes: float, measurand: str, value: str, unit: str | None = None, **kw: object) -> Sample:
    energy = None
    if measurand.startswith("Energy"):
        energy = int(float(value) * (1000 if unit == "kWh" else 1))
    return Sample(
        sampled_at=NOW + timedelta(minutes=minutes),
        measurand=measurand,
        phase=kw.get("phase"),  # type: ignore[arg-type]
        unit=unit,
        raw_value=value,
        energy_wh=energy,
        flag=kw.get("flag"),  # type: ignore[arg-type]
    )


E = "Energy.Active.Import.Register"
P = "Power.Active.Import"


def test_the_meter_timeline() -> None:
    samples = [
        s(5, E, "2.0", "kWh"),
        s(5, P, "11", "kW"),
        s(10, E, "3500"),
        s(12, E, "3000", flag="not_monotonic"),
        s(15, P, "3000", phase="L1"),
        s(15, P, "3100", phase="L2"),
        s(15, P, "2900", phase="L3"),
        s(20, E, "4500"),
    ]
    points = meter_timeline(samples, started_at=NOW, meter_start_wh=1000)
    assert [(p.energy_wh, p.power_w) for p in points] == [
        (0, None),
        (1000, 11000),
        (2500, 18000),
        (2500, 9000),  # power only: the phases summed
        (3500, 6000),  # 1000 Wh over the 10 minutes since the last register
    ]
    assert peak_power_w(points) == 18000
    assert average_power_w(3500, 20 * 60) == 10500
    assert average_power_w(100, 0) is None
    assert peak_power_w([TimelinePoint(at=NOW, energy_wh=0, power_w=None)]) is None
    assert power_w("abc", "W") is None and power_w("-1", "W") is None
    assert power_w("7.4", "kW") == 7400


@given(st.lists(st.tuples(st.integers(1, 10_000), st.integers(0, 50_000)), min_size=1, max_size=30))
def test_timeline_energy_never_goes_down(steps: list[tuple[int, int]]) -> None:
    minute, register, samples = 0, 1000, []
    for gap, delta in steps:
        minute += gap
        register += delta
        samples.append(s(minute, E, str(register)))
    points = meter_timeline(samples, started_at=NOW, meter_start_wh=1000)
    energies = [p.energy_wh for p in points]
    assert energies == sorted(energies) and energies[-1] == register - 1000
    assert all(p.power_w is None or p.power_w >= 0 for p in points)


def test_usage_periods() -> None:
    today = date(2026, 3, 15)
    assert period_range("current", today) == (date(2026, 3, 1), today)
    assert period_range("previous", today) == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_range("year", today) == (date(2026, 1, 1), today)
    assert period_range("previous", date(2026, 1, 5)) == (date(2025, 12, 1), date(2025, 12, 31))

"""The idle fee's tariff terms: set through the tariff service and `polaris tariffs`, kept per
version (a session keeps the version it started under), validated with clear errors, and shown
in the tariff's words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from config.settings import Settings
from domain.idle_fee import IdleFeeTerms
from domain.pricing import TariffTerms
from domain.tariff_words import tariff_words
from services import tariffs
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput
from services.validation import parse
from tests.fleet.test_cli import ok_json, polaris

pytestmark = pytest.mark.timeout(180)


def code() -> str:
    return f"IDLE-{uuid.uuid4().hex[:8]}"


async def test_idle_terms_live_in_versions(ctx: ServiceContext, operator: Actor) -> None:
    name = code()
    made = await tariffs.add_tariff(
        ctx,
        operator,
        parse(
            tariffs.NewTariff,
            {
                "code": name,
                "currency": "EUR",
                "price_per_kwh_minor": 30,
                "idle_grace_minutes": 15,
                "idle_price_per_minute_minor": 40,
                "idle_fee_cap_minor": 1200,
            },
        ),
    )
    v1 = made["current"]
    assert (v1["idle_grace_minutes"], v1["idle_price_per_minute_minor"]) == (15, 40)
    assert v1["idle_fee_cap_minor"] == 1200
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    shown = await tariffs.add_version(
        ctx,
        operator,
        name,
        tariffs.NewTariffVersion(
            valid_from=tomorrow, idle_price_per_minute_minor=50, remove_idle_fee_cap=True
        ),
    )
    v2 = shown["versions"][1]
    # What version 2 did not set it copied; the cap it dropped.
    assert (v2["idle_grace_minutes"], v2["idle_price_per_minute_minor"]) == (15, 50)
    assert v2["idle_fee_cap_minor"] is None
    assert shown["versions"][0]["idle_fee_cap_minor"] == 1200  # never rewritten


@pytest.mark.parametrize(
    ("terms", "path", "words"),
    [
        ({"idle_fee_cap_minor": 500}, "idle_fee_cap_minor", "needs an idle price per minute"),
        ({"idle_grace_minutes": 10}, "idle_grace_minutes", "needs an idle price per minute"),
    ],
)
async def test_idle_terms_that_make_no_sense_are_refused(
    ctx: ServiceContext, operator: Actor, terms: dict[str, int], path: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await tariffs.add_tariff(
            ctx,
            operator,
            parse(tariffs.NewTariff, {"code": code(), "currency": "EUR", **terms}),
        )
    [issue] = refused.value.issues
    assert issue["path"] == [path] and words in issue["message"]


def test_out_of_range_idle_terms_are_refused_by_the_model() -> None:
    for bad in (
        {"idle_fee_cap_minor": 0},  # a zero cap would mean "no idle fee": say price 0 instead
        {"idle_price_per_minute_minor": -1},
        {"idle_grace_minutes": 24 * 60 + 1},
    ):
        with pytest.raises(InvalidInput) as refused:
            parse(tariffs.NewTariff, {"code": code(), "currency": "EUR", **bad})
        assert refused.value.issues[0]["path"] == [next(iter(bad))]


async def test_both_a_cap_and_its_removal_is_refused(ctx: ServiceContext, operator: Actor) -> None:
    name = code()
    await tariffs.add_tariff(
        ctx,
        operator,
        parse(
            tariffs.NewTariff, {"code": name, "currency": "EUR", "idle_price_per_minute_minor": 5}
        ),
    )
    with pytest.raises(InvalidInput) as refused:
        await tariffs.add_version(
            ctx,
            operator,
            name,
            tariffs.NewTariffVersion(idle_fee_cap_minor=100, remove_idle_fee_cap=True),
        )
    assert refused.value.issues[0]["path"] == ["remove_idle_fee_cap"]


def test_the_idle_fee_in_words() -> None:
    terms = TariffTerms(currency="EUR", price_per_kwh_minor=30)
    idle = IdleFeeTerms(currency="EUR", grace_s=900, price_per_minute_minor=40, cap_minor=1200)
    assert tariff_words(terms, idle) == (
        "€0.30 per kWh; idle fee €0.40 per minute after 15 minutes, at most €12.00"
    )
    no_grace = idle.model_copy(update={"grace_s": 0, "cap_minor": None})
    assert tariff_words(terms, no_grace) == "€0.30 per kWh; idle fee €0.40 per minute from the stop"
    assert tariff_words(terms, idle.model_copy(update={"price_per_minute_minor": 0})) == (
        "€0.30 per kWh"
    )


async def test_polaris_tariffs_sets_the_idle_terms(gw_settings: Settings) -> None:
    name = code()
    made = await ok_json(
        gw_settings,
        "tariffs",
        "add",
        name,
        "--currency",
        "EUR",
        "--idle-minute-minor",
        "25",
        "--idle-grace-min",
        "10",
        "--idle-cap-minor",
        "900",
    )
    assert made["current"]["idle_price_per_minute_minor"] == 25
    assert made["current"]["idle_grace_minutes"] == 10
    assert made["current"]["idle_fee_cap_minor"] == 900
    changed = await ok_json(gw_settings, "tariffs", "version", name, "--no-idle-cap")
    assert changed["current"]["idle_fee_cap_minor"] is None
    refused = await polaris(
        gw_settings, "tariffs", "add", code(), "--currency", "EUR", "--idle-cap-minor", "100"
    )
    assert refused.returncode != 0
    assert "an idle fee cap needs an idle price per minute" in refused.stdout + refused.stderr

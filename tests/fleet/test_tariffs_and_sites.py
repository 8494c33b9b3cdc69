"""Tariff versions (a session is billed under the version it started with, whatever changes
later) and sites, through the service layer over real PostgreSQL, a real worker and real
Temporal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from cli.sessions import session_story
from db.engine import SessionFactory
from domain.pricing import TariffTerms, price_session
from services import chargers, sites, tariffs
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound
from services.validation import parse
from tests.helpers import eventually
from tests.workflows.conftest import (  # noqa: F401  (fixtures for this module)
    Seed,
    seed,
    session_lago,
    session_settings,
    session_worker,
)
from tests.workflows.test_charging_session import read_model, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import TransactionStarted, TransactionStopped

pytestmark = pytest.mark.timeout(180)


async def charge(
    client: Client,
    task_queue: str,
    rows: Seed,
    cb: str,
    name: str,
    *,
    started_at: datetime,
    energy_wh: int,
) -> str:
    """One session from tap to stop; answers its workflow id once it is closed."""
    tag = await rows.card(name)
    result, handle = await tap(client, task_queue, cb, tag)
    assert result.status == "Accepted"
    tx = tx_id()
    await handle.signal(
        ChargingSessionWorkflow.transaction_started,
        TransactionStarted(
            event_id=1,
            transaction_id=tx,
            charge_box_id=cb,
            connector_id=1,
            id_tag=tag,
            meter_start_wh=0,
            started_at=started_at,
        ),
    )
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(
            event_id=2,
            transaction_id=tx,
            meter_stop_wh=energy_wh,
            stopped_at=started_at + timedelta(minutes=10),
            reason="Local",
        ),
    )
    final = await handle.result()
    assert final.state == "closed"
    return handle.id


async def test_a_session_is_billed_under_the_version_it_started_with(
    temporal_client: Client,
    session_worker: Worker,  # noqa: F811
    task_queue: str,
    seed: Seed,  # noqa: F811
    session_factory: SessionFactory,
    ctx: ServiceContext,
    operator: Actor,
) -> None:
    code = f"T-{seed.suffix}"
    v1 = TariffTerms(
        code=code,
        currency="EUR",
        price_per_kwh_minor=30,
        price_per_minute_minor=2,
        price_per_session_minor=50,
        session_fee_min_energy_wh=1,
    )
    await tariffs.add_tariff(
        ctx,
        operator,
        parse(
            tariffs.NewTariff,
            {**v1.model_dump(exclude={"code"}), "code": code},
        ),
    )
    cb = await seed.charger(tariff=None)
    await chargers.set_charger(ctx, operator, cb, parse(chargers.ChargerPatch, {"tariff": code}))

    # Session A starts under version 1...
    first_start = datetime.now(UTC)
    # ... then the price changes (version 2 from now), before A is priced at its stop.
    changed = await tariffs.add_version(
        ctx,
        operator,
        code,
        parse(tariffs.NewTariffVersion, {"price_per_kwh_minor": 60}),
    )
    assert [v["version"] for v in changed["versions"]] == [1, 2]
    v2 = v1.model_copy(update={"price_per_kwh_minor": 60})
    a = await charge(
        temporal_client, task_queue, seed, cb, "a", started_at=first_start, energy_wh=10_000
    )
    b = await charge(
        temporal_client,
        task_queue,
        seed,
        cb,
        "b",
        started_at=datetime.now(UTC) + timedelta(seconds=1),
        energy_wh=10_000,
    )

    for workflow_id, terms, version in ((a, v1, 1), (b, v2, 2)):
        row = await eventually(lambda wid=workflow_id: read_model(session_factory, wid))
        expected = price_session(terms, energy_wh=10_000, duration_s=600).total_minor
        assert row.cost_minor == expected
        async with session_factory() as db:
            story = await session_story(db, workflow_id)
        assert story is not None
        assert story["tariff"]["code"] == code and story["tariff"]["version"] == version
    assert v1.price_per_kwh_minor != v2.price_per_kwh_minor


async def test_tariff_versions_are_never_rewritten(ctx: ServiceContext, operator: Actor) -> None:
    code = f"TV-{datetime.now(UTC).strftime('%H%M%S%f')}"
    made = await tariffs.add_tariff(
        ctx,
        operator,
        parse(tariffs.NewTariff, {"code": code, "currency": "EUR", "price_per_kwh_minor": 25}),
    )
    assert made["current"]["version"] == 1
    with pytest.raises(Conflict):
        await tariffs.add_tariff(
            ctx, operator, parse(tariffs.NewTariff, {"code": code, "currency": "EUR"})
        )
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(InvalidInput) as refused:
        await tariffs.add_version(
            ctx, operator, code, tariffs.NewTariffVersion(valid_from=past, price_per_kwh_minor=1)
        )
    assert refused.value.issues[0]["path"] == ["valid_from"]
    later = datetime.now(UTC) + timedelta(days=1)
    shown = await tariffs.add_version(
        ctx, operator, code, tariffs.NewTariffVersion(valid_from=later, price_per_session_minor=99)
    )
    # Version 2 starts tomorrow: version 1 is still in force, and 2 copied what it did not set.
    assert shown["current"]["version"] == 1
    assert shown["versions"][1]["price_per_kwh_minor"] == 25
    assert shown["versions"][1]["price_per_session_minor"] == 99
    with pytest.raises(InvalidInput):
        await tariffs.add_version(
            ctx, operator, code, tariffs.NewTariffVersion(valid_from=later - timedelta(hours=1))
        )
    with pytest.raises(NotFound):
        await tariffs.add_version(ctx, operator, "NO-SUCH", tariffs.NewTariffVersion())
    with pytest.raises(InvalidInput):
        parse(tariffs.NewTariff, {"code": "x y", "currency": "euro", "price_per_kwh_minor": -1})
    listed = {t["code"]: t for t in await tariffs.list_tariffs(ctx)}
    assert listed[code]["version"] == 1 and listed[code]["versions"] == 2


async def test_sites_validate_coordinates_and_time_zones(
    ctx: ServiceContext, operator: Actor
) -> None:
    name = f"Depot {datetime.now(UTC).strftime('%H%M%S%f')}"
    site = await sites.add_site(
        ctx,
        operator,
        parse(
            sites.NewSite,
            {
                "name": name,
                "address": "Main Street 1, Utrecht",
                "latitude": 52.09,
                "longitude": 5.12,
                "timezone": "Europe/Amsterdam",
            },
        ),
    )
    assert site["timezone"] == "Europe/Amsterdam"
    with pytest.raises(Conflict):
        await sites.add_site(ctx, operator, sites.NewSite(name=name))
    for bad in (
        {"name": "x", "timezone": "Mars/Olympus_Mons"},
        {"name": "x", "latitude": 91, "longitude": 0},
        {"name": "x", "latitude": 0, "longitude": 181},
        {"name": "x", "timezone": "../../etc/passwd"},
    ):
        with pytest.raises(InvalidInput):
            parse(sites.NewSite, bad)
    with pytest.raises(InvalidInput):
        await sites.add_site(ctx, operator, sites.NewSite(name=f"{name} b", latitude=1.0))
    changed = await sites.set_site(
        ctx, operator, name, parse(sites.SitePatch, {"timezone": "UTC", "address": None})
    )
    assert changed["timezone"] == "UTC" and changed["address"] is None
    assert changed["latitude"] == 52.09
    with pytest.raises(NotFound):
        await sites.show_site(ctx, "no such site")
    assert name in [s["name"] for s in await sites.list_sites(ctx)]

"""A throw-away platform for the end-to-end benchmarks, as real processes.

Embedded PostgreSQL (migrated) in a temp dir, the Temporal dev server on its own SQLite file
(so it can be stopped and restarted on that file), the Lago billing sandbox as its own process,
the platform's worker(s) and gateway(s) — the process helpers of the two-gateway test and the
chaos suite (``tests/e2e/cluster.py``), with the platform's production defaults for what the
benchmarks measure (meter-progress throttle, log level). ``seed`` creates, per simulated
charger, a charger (with a tariff), a card and a driver with a Lago customer and subscription, so
each session is billed in the sandbox exactly as a real one is.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from lago_python_client import models as _lago_models
from lago_python_client.client import Client as LagoClient

from activities.lago import DEFAULT_PLAN_CODE, subscription_external_id
from cli.embedded_postgres import EmbeddedPostgres
from config.settings import Settings
from db.engine import make_engine, make_session_factory
from db.migrate import upgrade
from db.models import Charger, Connector, EvCard, Tariff, UserMapping
from tests.e2e.cluster import Cluster, cluster
from tests.helpers import free_port, wait_port, wait_temporal

# The client's pydantic-v1 models do not type-check under mypy strict (as in activities/lago.py).
lago_models: Any = _lago_models

API_KEY = "bench-key"
METRIC_CODE = "ev_charging_kwh"
# A power no real charger has: simulated chargers deliver kWh in seconds, and the gateway's
# plausibility check (max power x elapsed time) must not flag their samples.
FAST_FORWARD_W = 10**9
METER_SIGNAL_INTERVAL_S = Settings.model_fields["meter_signal_interval_s"].default


def charger_id(i: int) -> str:
    return f"BS-{i:05d}"


def id_tag(i: int) -> str:
    return f"BS{i:05d}"


def public_id(i: int) -> str:
    return f"BSU{i:05d}"


def subscription_id(i: int) -> str:
    return f"sub-{public_id(i)}"


@dataclass
class Platform:
    tmp: Path
    pg: EmbeddedPostgres
    lago_url: str
    lago: subprocess.Popen[bytes]
    cluster: Cluster
    extra: list[Any] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.pg.url()

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def stop(self) -> None:
        self.cluster.stop()
        self.lago.terminate()
        try:
            self.lago.wait(15)
        except subprocess.TimeoutExpired:
            self.lago.kill()
        self.pg.destroy()

    def lago_events(self) -> list[dict[str, Any]]:
        """Every usage event the sandbox stored (paged through GET /api/v1/events)."""
        events: list[dict[str, Any]] = []
        page = 1
        with httpx.Client(
            base_url=f"{self.lago_url}/api/v1",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
        ) as http:
            while True:
                response = http.get("/events", params={"page": page, "per_page": 100})
                response.raise_for_status()
                body = response.json()
                events.extend(body["events"])
                if not body.get("meta", {}).get("next_page"):
                    return events
                page += 1


async def _seed_rows(database_url: str, chargers: int) -> None:
    """Per simulated charger: the charger (one connector, the bench tariff), its card and the
    driver's mapping (usage billing), through the ORM so every column default applies."""
    engine = make_engine(database_url, pool_size=2)
    try:
        async with make_session_factory(engine)() as db, db.begin():
            tariff = Tariff(
                code="bench",
                currency="EUR",
                price_per_kwh_minor=30,
                price_per_minute_minor=0,
                price_per_session_minor=50,
            )
            db.add(tariff)
            await db.flush()
            for i in range(chargers):
                db.add(
                    Charger(
                        charge_box_id=charger_id(i),
                        tariff_id=tariff.id,
                        max_power_w=FAST_FORWARD_W,
                        allow_unauthenticated=True,
                    )
                )
                db.add(EvCard(id_tag=id_tag(i), max_concurrent_sessions=5))
            await db.flush()
            for i in range(chargers):
                db.add(Connector(charge_box_id=charger_id(i), connector_id=1))
                db.add(
                    UserMapping(
                        user_id=f"bench-user-{i}",
                        public_id=public_id(i),
                        id_tag=id_tag(i),
                        billing_mode="usage",
                    )
                )
    finally:
        await engine.dispose()


def _seed_lago_catalog(url: str) -> None:
    lago: Any = LagoClient(api_key=API_KEY, api_url=url)
    metric = lago.billable_metrics.create(
        lago_models.BillableMetric(
            name="Energy", code=METRIC_CODE, aggregation_type="sum_agg", field_name="kwh"
        )
    )
    assert metric is not None
    lago.plans.create(
        lago_models.Plan(
            name="EV charging",
            code=DEFAULT_PLAN_CODE,
            interval="monthly",
            amount_cents=0,
            amount_currency="EUR",
            pay_in_advance=False,
            charges=lago_models.Charges(
                __root__=[
                    lago_models.Charge(
                        billable_metric_id=metric.lago_id,
                        charge_model="standard",
                        properties={"amount": "0.30"},
                    )
                ]
            ),
        )
    )


def _seed_lago_drivers(url: str, database_url: str, chargers: int) -> None:
    """A Lago customer and subscription per driver, as ``lago_upsert_customer`` and
    ``lago_ensure_subscription`` make them (external ids = the public id and ``sub-<public
    id>``, the ``ev_charging`` plan), and their ids on the mappings. Over one HTTP client: the
    official client builds a new connection (and TLS context) per call, which takes minutes for
    a thousand drivers on a loaded machine."""
    with httpx.Client(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as http:
        for i in range(chargers):
            customer = {"external_id": public_id(i), "name": public_id(i), "currency": "EUR"}
            http.post("/customers", json={"customer": customer}).raise_for_status()
            subscription = {
                "external_customer_id": public_id(i),
                "plan_code": DEFAULT_PLAN_CODE,
                "external_id": subscription_external_id(public_id(i)),
            }
            http.post("/subscriptions", json={"subscription": subscription}).raise_for_status()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE user_mappings SET lago_customer_external_id = public_id,"
            " lago_subscription_external_id = 'sub-' || public_id WHERE public_id LIKE 'BSU%'"
        )


def start_platform(
    tmp: Path,
    chargers: int,
    *,
    workers: int = 1,
    gateways: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Platform:
    """Everything up and seeded for ``chargers`` simulated chargers (ids ``BS-00000``…)."""
    tmp.chmod(0o755)
    pg = EmbeddedPostgres(tmp / "pg", port=free_port())
    pg.start()
    lago: subprocess.Popen[bytes] | None = None
    try:
        upgrade(pg.url())
        lago_port = free_port()
        lago_url = f"http://127.0.0.1:{lago_port}"
        with (tmp / "lago.log").open("ab") as log:
            lago = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sandbox.lago",
                    "--port",
                    str(lago_port),
                    "--api-key",
                    API_KEY,
                    "--admin",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_port(lago_port, timeout=60)
        _seed_lago_catalog(lago_url)
        print(f"-- seeding {chargers} drivers in the billing sandbox", flush=True)
        asyncio.run(_seed_rows(pg.url(), chargers))
        _seed_lago_drivers(lago_url, pg.url(), chargers)
        env = {
            # The platform's production defaults for what the benchmarks measure (the e2e
            # cluster signals every MeterValues and logs at INFO).
            "POLARIS_METER_SIGNAL_INTERVAL_S": str(METER_SIGNAL_INTERVAL_S),
            "POLARIS_LOG_LEVEL": "WARNING",
            # Simulated chargers send faster than any in the field: the per-connection frame
            # budget would measure itself, not the platform.
            "POLARIS_GATEWAY_MAX_FRAMES_PER_S": "0",
            **(extra_env or {}),
        }
        c = cluster(tmp, pg.url(), lago_url, gateways=gateways, workers=workers, extra_env=env)
        for name in ("POLARIS_LAGO_API_KEY",):
            c.env[name] = API_KEY
            for proc in (*c.workers, *c.gateways):
                proc.env[name] = API_KEY
        c.temporal.start()
        wait_temporal(c.temporal_address, timeout=90)
        for proc in (*c.workers, *c.gateways):
            proc.start()
        return Platform(tmp, pg, lago_url, lago, c)
    except BaseException:
        if lago is not None:
            lago.kill()
        pg.destroy()
        raise


def kwh_to_wh(kwh: Any) -> int:
    return int(Decimal(str(kwh)) * 1000)

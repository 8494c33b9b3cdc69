"""Chaos: many sessions under a random fault schedule, then every durable guarantee checked.

The platform runs as real processes — two gateways, two workers, the Temporal dev server on its
SQLite file, and an embedded PostgreSQL of its own (so restarting it touches nothing else) —
with the Lago sandbox. ``CHARGERS`` simulated chargers (real ``ocpp`` clients) each run
``SESSIONS`` sessions (StartTransaction → MeterValues → StopTransaction), connecting to a random
gateway as a load balancer would, and behaving as OCPP asks a real charger to: a transaction
message that got no answer (socket lost, timeout, CallError) is sent again, unchanged, after
reconnecting.

Meanwhile a fault schedule drawn from a seeded random generator strikes: SIGKILL of a worker,
of a gateway, of the Temporal dev server (restarted on its file), a PostgreSQL restart (fast or
crash-like), Lago answering 503 (before or after storing the event) or answering slowly. Each kind
strikes at least once. The seed is printed; ``POLARIS_CHAOS_SEED=<seed>`` replays the schedule
(``POLARIS_CHAOS_CHARGERS`` / ``POLARIS_CHAOS_SESSIONS`` change the load).

Then, once everything is back: every session reaches a final state; for each, the energy billed
is meter stop − meter start, with exactly one final billing event, in ``billing_events`` and in
what Lago stored (each event once); every MeterValues sample a charger was answered for is in
``meter_samples``; no outbox row is left undelivered; no workflow is stuck retrying an activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.exceptions import OCPPError
from ocpp.v16 import ChargePoint, call
from ocpp.v16.enums import AuthorizationStatus
from pydantic import SecretStr
from sqlalchemy import func, select
from temporalio.client import Client

from activities.lago import LagoBilling
from cli.embedded_postgres import EmbeddedPostgres
from config.settings import Settings
from config.temporal import DATA_CONVERTER
from db.engine import make_engine, make_session_factory
from db.migrate import upgrade
from db.models import BillingEvent, ChargingSession, GatewayOutbox, MeterSample, Transaction
from tests.billing.conftest import API_KEY, seed_driver
from tests.e2e.cluster import Cluster, cluster
from tests.e2e.conftest import SUBPROTOCOL, seed_charger
from tests.fixtures.auth import running_auth_service
from tests.helpers import eventually, free_port
from tests.sandbox.conftest import RunningSandbox

pytestmark = pytest.mark.timeout(1800)

CHARGERS = int(os.environ.get("POLARIS_CHAOS_CHARGERS", "20"))
SESSIONS = int(os.environ.get("POLARIS_CHAOS_SESSIONS", "5"))
METER_VALUES = 3
FINAL_STATES = ("billed", "closed")
# A charger gives up on one message after this long (a real one would keep trying for longer).
MESSAGE_DEADLINE_S = 600.0
FAULT_KINDS = (
    "kill_worker",
    "kill_gateway",
    "kill_temporal",
    "restart_postgres",
    "lago_failing",
    "lago_slow",
)


def chaos_seed() -> int:
    given = os.environ.get("POLARIS_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


@dataclass
class Session:
    charge_box_id: str
    subscription: str
    meter_start: int
    meter_stop: int = 0
    transaction_id: int = 0
    # Registers (Wh) of the MeterValues the charger was answered for.
    accepted_samples: list[int] = field(default_factory=list)


class ChaosCharger:
    """A charger that keeps its transaction messages until they are answered."""

    def __init__(self, urls: list[str], charge_box_id: str, rng: random.Random) -> None:
        self.urls = urls
        self.charge_box_id = charge_box_id
        self.rng = rng
        self._ws: Any = None
        self._cp: ChargePoint | None = None
        self._listener: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.retries = 0

    async def _connect(self) -> None:
        url = f"{self.rng.choice(self.urls)}/{self.charge_box_id}"
        self._ws = await websockets.connect(url, subprotocols=[SUBPROTOCOL], open_timeout=10)
        self._cp = ChargePoint(self.charge_box_id, self._ws, response_timeout=20)
        self._listener = asyncio.create_task(self._cp.start())
        await self._cp.call(
            call.BootNotification(charge_point_vendor="Polaris", charge_point_model="Chaos"),
            suppress=False,
        )

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws = self._cp = self._listener = None

    async def send(self, payload: Any) -> Any:
        """Send until answered with a CallResult (reconnecting as needed)."""
        deadline = asyncio.get_running_loop().time() + MESSAGE_DEADLINE_S
        while True:
            try:
                if self._cp is None:
                    self.reconnects += 1
                    await self._connect()
                assert self._cp is not None
                return await self._cp.call(payload, suppress=False)
            except (OSError, TimeoutError, OCPPError, websockets.WebSocketException) as exc:
                self.retries += 1
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(
                        f"{self.charge_box_id}: {type(payload).__name__} never answered: {exc!r}"
                    ) from exc
                await self.disconnect()
                await asyncio.sleep(0.5 + self.rng.random())

    async def think(self) -> None:
        await asyncio.sleep(0.2 + self.rng.random() * 1.5)


def _now(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def _meter(tx: int, register_wh: int) -> call.MeterValues:
    return call.MeterValues(
        connector_id=1,
        transaction_id=tx,
        meter_value=[
            {
                "timestamp": _now(),
                "sampledValue": [
                    {
                        "value": str(register_wh),
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                        "context": "Sample.Periodic",
                    }
                ],
            }
        ],
    )


async def run_charger(
    charger: ChaosCharger, id_tag: str, subscription: str, sessions: list[Session]
) -> None:
    register = charger.rng.randrange(0, 100_000)
    try:
        for _ in range(SESSIONS):
            session = Session(charger.charge_box_id, subscription, meter_start=register)
            started = await charger.send(
                call.StartTransaction(
                    connector_id=1, id_tag=id_tag, meter_start=register, timestamp=_now()
                )
            )
            assert started.id_tag_info["status"] == AuthorizationStatus.accepted
            session.transaction_id = int(started.transaction_id)
            sessions.append(session)
            for _ in range(METER_VALUES):
                await charger.think()
                register += charger.rng.randrange(100, 3_000)
                await charger.send(_meter(session.transaction_id, register))
                session.accepted_samples.append(register)
            await charger.think()
            register += charger.rng.randrange(0, 500)
            session.meter_stop = register
            await charger.send(
                call.StopTransaction(
                    meter_stop=register,
                    timestamp=_now(),
                    transaction_id=session.transaction_id,
                    id_tag=id_tag,
                    reason="Local",
                )
            )
            await charger.think()
    finally:
        await charger.disconnect()


@dataclass
class Fault:
    at_s: float
    kind: str
    target: int
    down_s: float
    detail: str = ""

    def describe(self) -> str:
        return f"t+{self.at_s:.1f}s {self.kind}[{self.target}] for {self.down_s:.1f}s {self.detail}"


def fault_schedule(rng: random.Random, extra: int = 4) -> list[Fault]:
    """Every kind once, plus ``extra`` random ones, spread over the first ~90 s."""
    kinds = list(FAULT_KINDS) + [rng.choice(FAULT_KINDS) for _ in range(extra)]
    rng.shuffle(kinds)
    faults: list[Fault] = []
    at = 3.0
    for kind in kinds:
        at += rng.uniform(2.0, 9.0)
        detail = ""
        if kind == "restart_postgres":
            detail = rng.choice(["fast", "immediate"])
        elif kind == "lago_failing":
            detail = rng.choice(["before", "after"])
        faults.append(Fault(at, kind, rng.randrange(2), rng.uniform(1.0, 8.0), detail))
    return faults


class FaultInjector:
    def __init__(self, c: Cluster, pg: EmbeddedPostgres, sandbox: RunningSandbox) -> None:
        self.c = c
        self.pg = pg
        self.sandbox = sandbox
        self.done: list[str] = []

    async def apply(self, fault: Fault) -> None:
        self.done.append(fault.describe())
        if fault.kind in ("kill_worker", "kill_gateway", "kill_temporal"):
            proc = {
                "kill_worker": self.c.workers[fault.target],
                "kill_gateway": self.c.gateways[fault.target],
                "kill_temporal": self.c.temporal,
            }[fault.kind]
            await asyncio.to_thread(proc.kill, signal.SIGKILL)
            await asyncio.sleep(fault.down_s)
            await asyncio.to_thread(proc.start)
        elif fault.kind == "restart_postgres":
            await asyncio.to_thread(self.pg.stop, fault.detail)
            await asyncio.sleep(fault.down_s)
            await asyncio.to_thread(self.pg.start)
        elif fault.kind == "lago_failing":
            spec = {"status": 503, "count": 1 + fault.target * 4, "phase": fault.detail}
            await asyncio.to_thread(self.sandbox.admin, "POST", "/faults", json=spec)
        elif fault.kind == "lago_slow":
            spec = {"mode": "delay", "seconds": fault.down_s, "count": 3}
            await asyncio.to_thread(self.sandbox.admin, "POST", "/faults", json=spec)

    async def run(self, schedule: list[Fault]) -> None:
        start = asyncio.get_running_loop().time()
        for fault in schedule:
            delay = start + fault.at_s - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.apply(fault)


@pytest.fixture
def chaos_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    pg.start()
    try:
        upgrade(pg.url())
        yield pg
    finally:
        # Kept beside the processes' logs for a failure's post-mortem.
        with contextlib.suppress(OSError):
            (tmp_path / "postgres.log").write_bytes(pg.log_file.read_bytes())
        pg.destroy()


async def _temporal(address: str) -> Client:
    return await Client.connect(address, data_converter=DATA_CONVERTER)


async def _stuck_workflows(client: Client, restored_at: datetime) -> list[str]:
    """Running workflows with an activity that keeps failing once everything is back: attempt
    > 2 and its last attempt ended after ``restored_at`` (an activity still waiting out the
    backoff of failures during the faults is not stuck; its next attempt decides)."""
    stuck: list[str] = []
    async for wf in client.list_workflows("ExecutionStatus = 'Running'"):
        desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
        for pending in desc.raw_description.pending_activities:
            ended = pending.last_attempt_complete_time
            if (
                pending.attempt > 2
                and pending.HasField("last_attempt_complete_time")
                and ended.ToDatetime(tzinfo=UTC) > restored_at
            ):
                stuck.append(
                    f"{wf.id}: {pending.activity_type.name} attempt {pending.attempt}: "
                    f"{pending.last_failure.message[:300]}"
                )
    return stuck


async def test_sessions_survive_a_random_fault_schedule(
    tmp_path: Path, chaos_pg: EmbeddedPostgres, lago_sandbox: RunningSandbox
) -> None:
    seed = chaos_seed()
    print(f"\nchaos seed: {seed} (replay: POLARIS_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    schedule = fault_schedule(rng)
    print("fault schedule:\n  " + "\n  ".join(f.describe() for f in schedule))
    replay = f"[chaos seed {seed}; replay with POLARIS_CHAOS_SEED={seed}]"

    settings = Settings(
        env="test",
        data_dir=tmp_path / "data",
        database_url=chaos_pg.url(),
        lago_api_url=lago_sandbox.url,
        lago_api_key=SecretStr(API_KEY),
    )
    # The auth service creates its schema (the worker's mail relay reads auth.mail_outbox).
    async with running_auth_service(chaos_pg.url(), tmp_path / "auth.log"):
        pass
    engine = make_engine(chaos_pg.url(), pool_size=4)
    factory = make_session_factory(engine)
    lago = LagoBilling(settings, factory)
    riders: list[tuple[str, str, str]] = []
    for _ in range(CHARGERS):
        charge_box_id = await seed_charger(factory)
        driver = await seed_driver(factory, lago)
        assert driver.subscription is not None
        riders.append((charge_box_id, driver.id_tag, driver.subscription))
    await engine.dispose()

    c = cluster(tmp_path, chaos_pg.url(), lago_sandbox.url, gateways=2, workers=2)
    injector = FaultInjector(c, chaos_pg, lago_sandbox)
    sessions: list[Session] = []
    chargers: list[ChaosCharger] = []
    try:
        await asyncio.to_thread(c.start)
        for i, (charge_box_id, _, _) in enumerate(riders):
            chargers.append(ChaosCharger(c.gateway_urls, charge_box_id, random.Random(seed + i)))
        load = asyncio.gather(
            *(
                run_charger(charger, id_tag, subscription, sessions)
                for charger, (_, id_tag, subscription) in zip(chargers, riders, strict=True)
            )
        )
        faults = asyncio.create_task(injector.run(schedule))
        try:
            await load
        finally:
            with contextlib.suppress(Exception):
                await faults
        print(
            f"{len(sessions)} sessions; charger reconnects {sum(ch.reconnects for ch in chargers)},"
            f" resent messages {sum(ch.retries for ch in chargers)}"
        )
        # Everything back: no fault left in Lago, every process running.
        await asyncio.to_thread(lago_sandbox.admin, "DELETE", "/faults")
        for proc in c.processes():
            if proc.proc is None or proc.proc.poll() is not None:
                await asyncio.to_thread(proc.start)
        restored_at = datetime.now(UTC) + timedelta(seconds=20)

        assert len(sessions) == CHARGERS * SESSIONS
        engine = make_engine(chaos_pg.url(), pool_size=4)
        factory = make_session_factory(engine)
        try:
            await _check_invariants(c, factory, lago_sandbox, sessions, replay, restored_at)
        finally:
            await engine.dispose()
    except BaseException:
        print(f"{replay}\nfaults applied:\n  " + "\n  ".join(injector.done))
        print(c.logs(tail=4000))
        raise
    finally:
        await asyncio.gather(*(ch.disconnect() for ch in chargers))
        await asyncio.to_thread(c.stop)


async def _check_invariants(
    c: Cluster,
    factory: Callable[[], Any],
    sandbox: RunningSandbox,
    sessions: list[Session],
    replay: str,
    restored_at: datetime,
) -> None:
    from tests.e2e.conftest import lago_events

    by_tx = {s.transaction_id: s for s in sessions}
    assert len(by_tx) == len(sessions), f"a transaction id was given twice {replay}"

    # 1. Every session reaches a final state.
    async def workflows() -> dict[int, tuple[str, str]] | None:
        async with factory() as db:
            rows = (
                await db.execute(
                    select(Transaction.id, ChargingSession.workflow_id, ChargingSession.state)
                    .join(ChargingSession, ChargingSession.workflow_id == Transaction.workflow_id)
                    .where(Transaction.id.in_(list(by_tx)))
                )
            ).all()
        found = {r.id: (r.workflow_id, r.state) for r in rows}
        if len(found) == len(by_tx) and all(s in FINAL_STATES for _, s in found.values()):
            return found
        return None

    try:
        final = await eventually(workflows, timeout=600, interval=2, message="sessions final")
    except AssertionError:
        async with factory() as db:
            rows = (
                await db.execute(
                    select(ChargingSession.workflow_id, ChargingSession.state).where(
                        ChargingSession.state.not_in(FINAL_STATES)
                    )
                )
            ).all()
        raise AssertionError(f"sessions not final {replay}: {rows[:20]}") from None

    # 2. Billed once, exactly, in billing_events and in Lago.
    async with factory() as db:
        events = (
            (await db.execute(select(BillingEvent).order_by(BillingEvent.sequence))).scalars().all()
        )
    by_workflow: dict[str, list[BillingEvent]] = {}
    for event in events:
        by_workflow.setdefault(event.workflow_id, []).append(event)
    expected_ids: dict[str, set[str]] = {}
    expected_wh: dict[str, int] = {}
    for tx, (workflow_id, _) in final.items():
        s = by_tx[tx]
        billed = by_workflow.get(workflow_id, [])
        assert [e.kind for e in billed].count("final") == 1, (tx, billed, replay)
        assert sum(e.energy_wh for e in billed) == s.meter_stop - s.meter_start, (
            f"tx {tx}: billed {sum(e.energy_wh for e in billed)} Wh, "
            f"meter {s.meter_stop} - {s.meter_start} {replay}"
        )
        expected_ids.setdefault(s.subscription, set()).update(e.transaction_id for e in billed)
        expected_wh[s.subscription] = (
            expected_wh.get(s.subscription, 0) + s.meter_stop - s.meter_start
        )

    def lago_matches() -> bool:
        for subscription, ids in expected_ids.items():
            stored = lago_events(sandbox, subscription)
            if sorted(e["transaction_id"] for e in stored) != sorted(ids):
                return False
            kwh = sum(Decimal(str(e["properties"]["kwh"])) for e in stored)
            if int(kwh * 1000) != expected_wh[subscription]:
                return False
        return True

    try:
        await eventually(lago_matches, timeout=300, interval=2, message="Lago billed")
    except AssertionError:
        diffs = []
        for subscription, ids in expected_ids.items():
            stored = sorted(e["transaction_id"] for e in lago_events(sandbox, subscription))
            if stored != sorted(ids):
                diffs.append((subscription, stored, sorted(ids)))
        raise AssertionError(f"Lago differs from billing_events {replay}: {diffs[:5]}") from None

    # 3. Every sample a charger was told was accepted is in the journal.
    async with factory() as db:
        rows = (
            await db.execute(
                select(MeterSample.transaction_id, MeterSample.energy_wh).where(
                    MeterSample.transaction_id.in_(list(by_tx))
                )
            )
        ).all()
    journaled: dict[int, set[int]] = {}
    for row in rows:
        if row.energy_wh is not None:
            journaled.setdefault(row.transaction_id, set()).add(row.energy_wh)
    for tx, s in by_tx.items():
        missing = set(s.accepted_samples) - journaled.get(tx, set())
        assert not missing, f"tx {tx}: accepted samples missing {sorted(missing)} {replay}"

    # 4. No outbox row left undelivered.
    async def outbox_empty() -> bool:
        async with factory() as db:
            left = await db.scalar(
                select(func.count())
                .select_from(GatewayOutbox)
                .where(GatewayOutbox.delivered_at.is_(None))
            )
        return left == 0

    await eventually(outbox_empty, timeout=300, interval=2, message=f"outbox drained {replay}")

    # 5. No workflow stuck retrying; no session workflow still running.
    client = await _temporal(c.temporal_address)

    async def nothing_stuck() -> bool:
        return not await _stuck_workflows(client, restored_at)

    try:
        await eventually(nothing_stuck, timeout=300, interval=5, message="no workflow stuck")
    except AssertionError:
        raise AssertionError(
            f"stuck {replay}: {await _stuck_workflows(client, restored_at)}"
        ) from None

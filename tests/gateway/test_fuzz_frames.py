"""Fuzz: over 10,000 generated and mutated OCPP 1.6 frames against a live gateway process, while a
well-behaved charger on the same gateway charges a real session and is billed.

The platform is the e2e one (``polaris gateway`` and ``polaris worker`` as real processes, a
Temporal dev server, the Lago sandbox). Several fuzz connections run side by side, each in
lockstep: send a frame, then read the answer it must get (:mod:`tests.gateway.ocpp_fuzz` is the
oracle). Frames that must not be answered (forged CallResults / CallErrors) are not waited for;
the next answer read must then be the next frame's, which shows they were not answered. Frames
that end a connection (oversized, invalid UTF-8) and bad Basic credentials at the handshake get
their own connections. The seed is fixed, so a failure replays exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from ocpp.v16 import ChargePoint, call
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from activities.lago import LagoBilling
from db.engine import SessionFactory
from db.models import Charger
from gateway.passwords import hash_password
from tests.billing.conftest import lago_sandbox  # noqa: F401  (fixture used by the platform)
from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    Platform,
    billed,
    lago_billing,
    lago_events,
    now_iso,
    platform,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.gateway.ocpp_fuzz import RESULT, WEIGHTED, Case, FrameFactory
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(600)

SEED = 20_240_808
FUZZ_CONNECTIONS = 6
FRAMES_PER_CONNECTION = 1_700
MAX_FRAME_BYTES = 64 * 1024  # the default the gateway runs with here
PASSWORD = "fuzz-charger-password"
ANSWER_WAIT_S = 60.0  # a hang guard, not a threshold: answers take milliseconds


@pytest.fixture
def platform_env() -> dict[str, str]:
    # The rate limit stays on but far above what the fuzz connections send; it has its own test
    # (tests/gateway/test_frame_limits.py::test_frame_flood_is_throttled_then_closed_with_1008).
    return {
        "POLARIS_GATEWAY_MAX_FRAMES_PER_S": "1000000",
        "POLARIS_GATEWAY_FRAME_BURST": "1000000",
    }


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def protected_charger(sf: SessionFactory) -> str:
    charge_box_id = await seed_charger(sf)
    async with sf.begin() as s:
        await s.execute(
            update(Charger)
            .where(Charger.charge_box_id == charge_box_id)
            .values(password_hash=hash_password(PASSWORD))
        )
    return charge_box_id


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(self.sent.values())

    def check(self, case: Case, answer: list[Any]) -> None:
        if case.expect == RESULT:
            ok = answer[:2] == [3, case.unique_id]
        else:
            ok = answer[0] == 4 and answer[2] == case.expect
            ok = ok and (case.unique_id is None or answer[1] == case.unique_id)
        if not ok:
            self.wrong.append(f"{case.kind}: sent {str(case.frame)[:160]!r}, got {answer!r:.200}")


async def open_charger(url: str, charge_box_id: str) -> ClientConnection:
    return await connect(
        f"{url}/{charge_box_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic(charge_box_id, PASSWORD),
        max_size=None,
        open_timeout=30,
    )


async def fuzz_connection(
    url: str, charge_box_id: str, factory: FrameFactory, tally: Tally
) -> None:
    weights = [w for w, _ in WEIGHTED]
    makers = [m for _, m in WEIGHTED]
    async with await open_charger(url, charge_box_id) as ws:
        cases = [
            factory.rng.choices(makers, weights)[0](factory) for _ in range(FRAMES_PER_CONNECTION)
        ]
        cases += [factory.near_limit(MAX_FRAME_BYTES) for _ in range(3)]
        cases.append(factory.call("Heartbeat", {}, "last", RESULT))  # flushes unanswered ones
        for case in cases:
            await ws.send(case.frame)
            tally.sent[case.kind] += 1
            if case.expect is not None:
                answer = json.loads(await asyncio.wait_for(ws.recv(), ANSWER_WAIT_S))
                tally.check(case, answer)


async def closing_frames(url: str, charge_box_id: str, rng: random.Random, tally: Tally) -> None:
    """Frames the gateway answers by closing: too big (1009), not UTF-8 (1007)."""
    for i in range(10):
        big = i % 2 == 0
        async with await open_charger(url, charge_box_id) as ws:
            if big:
                size = MAX_FRAME_BYTES + rng.randint(1, MAX_FRAME_BYTES)
                await ws.send(json.dumps([2, f"big{i}", "DataTransfer", {"vendorId": "x" * size}]))
            else:
                await ws.send(b'[2, "u", "Heartbeat", {"x": "\xff\xfe"}]', text=True)
            tally.sent["oversized" if big else "not_utf8"] += 1
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), ANSWER_WAIT_S)
            code = closed.value.rcvd.code if closed.value.rcvd else None
            if code != (1009 if big else 1007):
                tally.wrong.append(f"{'oversized' if big else 'not_utf8'}: closed with {code}")


async def bad_credentials(url: str, charge_box_id: str, tally: Tally) -> None:
    encoded = base64.b64encode
    headers: list[dict[str, str]] = [
        {},
        basic(charge_box_id, "wrong"),
        basic(charge_box_id, ""),
        basic("someone-else", PASSWORD),
        basic(charge_box_id, PASSWORD + "x"),
        basic(charge_box_id, "pässwörd-ünïcode"),
        {"Authorization": "Basic " + encoded(b"no-colon-here").decode()},
        {"Authorization": "Basic " + encoded(b"\xff\xfe:\x00\x01").decode()},  # not UTF-8
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic "},
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Digest username=x"},
    ]
    for header in headers * 3:
        tally.sent["bad_credentials"] += 1
        try:
            async with connect(
                f"{url}/{charge_box_id}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=header,
                open_timeout=30,
            ):
                tally.wrong.append(f"bad credentials {header!r} were accepted")
        except InvalidStatus as refused:
            # 401, or 429 once the address has failed too often (throttled before hashing).
            if refused.response.status_code not in (401, 429):
                tally.wrong.append(f"bad credentials {header!r}: {refused.response.status_code}")


@dataclass
class WellBehaved:
    """A charger on the real ``ocpp`` library that charges while the fuzz runs."""

    url: str
    charge_box_id: str
    id_tag: str
    meter_start_wh: int = 10_000
    register_wh: int = 10_000
    samples: int = 0

    async def run(self, fuzz_done: asyncio.Event) -> int:
        async with await open_charger(self.url, self.charge_box_id) as ws:
            cp = ChargePoint(self.charge_box_id, ws, response_timeout=ANSWER_WAIT_S)
            listening = asyncio.create_task(cp.start())
            try:
                return await self._session(cp, fuzz_done)
            finally:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)

    async def _session(self, cp: ChargePoint, fuzz_done: asyncio.Event) -> int:
        boot = call.BootNotification(charge_point_vendor="Polaris", charge_point_model="Fuzz")
        assert (await cp.call(boot, suppress=False)).status == "Accepted"
        authorized = await cp.call(call.Authorize(id_tag=self.id_tag), suppress=False)
        assert authorized.id_tag_info["status"] == "Accepted"
        started = await cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag=self.id_tag,
                meter_start=self.meter_start_wh,
                timestamp=now_iso(),
            ),
            suppress=False,
        )
        assert started.id_tag_info["status"] == "Accepted"
        tx = int(started.transaction_id)
        while not fuzz_done.is_set() or self.samples < 3:
            self.register_wh += 37
            sampled = {"value": str(self.register_wh), "unit": "Wh", "context": "Sample.Periodic"}
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[{"timestamp": now_iso(), "sampledValue": [sampled]}],
                ),
                suppress=False,
            )
            self.samples += 1
            await asyncio.sleep(0.2)
        await cp.call(
            call.StopTransaction(
                meter_stop=self.register_wh,
                timestamp=now_iso(),
                transaction_id=tx,
                id_tag=self.id_tag,
            ),
            suppress=False,
        )
        return tx


async def test_fuzzed_frames_never_hurt_the_gateway_or_a_charging_session(
    platform: Platform,  # noqa: F811
    session_factory: SessionFactory,
    lago_billing: LagoBilling,  # noqa: F811
) -> None:
    rng = random.Random(SEED)
    driver = await seed_driver(session_factory, lago_billing)
    assert driver.subscription is not None
    good = WellBehaved(
        platform.gateway_url, await protected_charger(session_factory), driver.id_tag
    )
    fuzzed = [await protected_charger(session_factory) for _ in range(FUZZ_CONNECTIONS + 1)]
    tally = Tally()
    fuzz_done = asyncio.Event()
    charging = asyncio.create_task(good.run(fuzz_done))
    try:
        await asyncio.gather(
            *(
                fuzz_connection(
                    platform.gateway_url,
                    cb,
                    FrameFactory(random.Random(rng.random()), f"fz{n}-"),
                    tally,
                )
                for n, cb in enumerate(fuzzed[:-1])
            ),
            closing_frames(platform.gateway_url, fuzzed[-1], random.Random(rng.random()), tally),
            bad_credentials(platform.gateway_url, fuzzed[-1], tally),
        )
    finally:
        fuzz_done.set()
    tx = await charging

    by_kind = Counter(w.split(":", 1)[0] for w in tally.wrong)
    assert not tally.wrong, f"wrong answers {by_kind}:\n" + "\n".join(tally.wrong[:30])
    assert tally.frames >= 10_000, tally.sent
    assert min(tally.sent.values()) >= 5, tally.sent  # every kind was exercised
    # The process never died, and says it is healthy.
    assert platform.gateway.proc is not None and platform.gateway.proc.poll() is None
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{platform.gateway_metrics_url}/healthz")
    assert health.status_code == 200

    # The well-behaved charger charged throughout, and its session is billed exactly.
    assert good.samples >= 3
    workflow_id = await workflow_of(session_factory, tx)

    async def is_billed() -> bool:
        result = await billed(session_factory, workflow_id)
        return (
            result is not None
            and result.state in ("billed", "closed")
            and bool(lago_events(platform.sandbox, driver.subscription or ""))
        )

    try:
        await eventually(is_billed, timeout=120, message="session billed")
    except AssertionError:
        raise AssertionError(
            f"not billed: {await billed(session_factory, workflow_id)}\n{platform.logs()}"
        ) from None
    result = await billed(session_factory, workflow_id)
    assert result is not None
    assert result.energy_wh == good.register_wh - good.meter_start_wh
    # The gateway logged at INFO throughout; the card's idTag is not in it.
    assert driver.id_tag not in platform.gateway.output()

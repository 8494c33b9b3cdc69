"""Handshake floods against a real gateway: wrong passwords are throttled before hashing, the
pending-handshake cap answers 503, forwarded addresses count only from trusted proxies; and a
legitimate charger still gets in. Counts, never timings: lockouts in these tests last an hour."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from ipaddress import ip_network

import pytest
from ocpp.v16 import call
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from config.settings import Settings
from db.engine import SessionFactory
from gateway.handshake_limits import (
    FailureThrottle,
    HandshakeGuard,
    Outcome,
    Ticket,
    address_key,
    client_address,
)
from gateway.main import Gateway
from gateway.passwords import verify_calls
from tests.gateway.conftest import charger_session, seed_charger
from tests.gateway.test_charger_auth import basic, handshake_status
from tests.helpers import eventually

LIMIT = 10
HOUR_S = 3600.0

GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def limited_gateway(gw_settings: Settings) -> GatewayFactory:
    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[Gateway]:
        settings = gw_settings.model_copy(
            update={
                "gateway_auth_failure_limit": LIMIT,
                "gateway_auth_failure_window_s": HOUR_S,
                "gateway_auth_backoff_s": HOUR_S,
                "gateway_auth_backoff_max_s": HOUR_S,
                **overrides,
            }
        )
        gw = Gateway(settings, relay_poll_interval_s=0.5)
        await gw.start()
        try:
            yield gw
        finally:
            await gw.stop()

    return start


async def flood(
    gateway: Gateway,
    charge_box_id: str,
    count: int,
    *,
    source: str,
    headers: Callable[[int], dict[str, str]] | None = None,
    concurrency: int = 25,
) -> Counter[int]:
    """``count`` wrong-password handshakes, ``concurrency`` at a time; the statuses answered."""
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        extra = headers(i) if headers else {}
        async with gate:
            try:
                async with connect(
                    f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    additional_headers={
                        "Authorization": basic(charge_box_id, f"guess-{i}"),
                        **extra,
                    },
                    local_addr=(source, 0),
                    open_timeout=60,
                ):
                    statuses[101] += 1
            except InvalidStatus as exc:
                statuses[exc.response.status_code] += 1
                if exc.response.status_code == 429:
                    assert int(exc.response.headers["Retry-After"]) >= 1

    async with asyncio.timeout(120):
        await asyncio.gather(*(one(i) for i in range(count)))
    return statuses


async def test_wrong_password_flood_is_throttled_before_hashing_and_a_charger_still_boots(
    limited_gateway: GatewayFactory, session_factory: SessionFactory
) -> None:
    victim = await seed_charger(session_factory, password="victim-pw")
    legit = await seed_charger(session_factory, password="legit-pw")
    async with limited_gateway() as gateway:
        hashes_before = verify_calls()
        attack = asyncio.create_task(flood(gateway, victim, 200, source="127.0.0.2"))
        await eventually(lambda: gateway.ocpp.guard.by_address.retry_after_s("127.0.0.2"))
        # The charger next door connects and boots while the flood goes on.
        async with charger_session(gateway, legit, password="legit-pw") as cp:
            boot = await cp.call(
                call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            assert boot.status == "Accepted"
        statuses = await attack
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[401] == LIMIT
    assert statuses[429] == 200 - LIMIT
    # One hash per 401 and one for the legitimate charger: a 429 never hashes.
    assert verify_calls() - hashes_before == LIMIT + 1


async def test_locked_out_charger_id_still_admits_the_address_it_proved_itself_from(
    limited_gateway: GatewayFactory, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, password="right-pw")
    async with limited_gateway() as gateway:
        async with charger_session(gateway, cb, password="right-pw", source="127.0.0.1"):
            pass
        # Guesses from two addresses, under the per-address limit each, lock the chargeBoxId.
        for source in ("127.0.0.2", "127.0.0.3"):
            statuses = await flood(gateway, cb, LIMIT // 2, source=source, concurrency=1)
            assert statuses == Counter({401: LIMIT // 2})
        hashes_before = verify_calls()
        right = basic(cb, "right-pw")
        assert await handshake_status(gateway, cb, authorization=right, source="127.0.0.4") == 429
        assert verify_calls() == hashes_before
        # The real charger, from where it last proved its password, still gets in.
        async with charger_session(gateway, cb, password="right-pw", source="127.0.0.1") as cp:
            assert (await cp.call(call.Heartbeat())).current_time


async def test_pending_handshakes_are_capped_with_503(
    limited_gateway: GatewayFactory, session_factory: SessionFactory
) -> None:
    first = await seed_charger(session_factory, password="pw-1")
    second = await seed_charger(session_factory, password="pw-2")
    async with limited_gateway(
        gateway_max_pending_handshakes=1, gateway_auth_hash_workers=1, gateway_handshake_queue=0
    ) as gateway:
        # Occupy the only hashing thread so the first handshake stays pending.
        release = threading.Event()
        blocker = gateway.ocpp.hash_pool.submit(release.wait)
        try:
            pending = asyncio.create_task(
                handshake_status(gateway, first, authorization=basic(first, "pw-1"))
            )
            await eventually(lambda: gateway.ocpp.pending_handshakes == 1)
            assert (
                await handshake_status(gateway, second, authorization=basic(second, "pw-2")) == 503
            )
        finally:
            release.set()
        blocker.result(timeout=10)
        assert await pending == 101
        assert gateway.ocpp.pending_handshakes == 0
        # The refused charger simply retries.
        assert await handshake_status(gateway, second, authorization=basic(second, "pw-2")) == 101


@asynccontextmanager
async def _one_slot_taken(
    limited_gateway: GatewayFactory, charge_box_id: str, password: str, *, wait_s: float
) -> AsyncIterator[tuple[Gateway, asyncio.Task[int], Callable[[], None]]]:
    """A gateway with one handshake slot and a line of two, its slot held by ``charge_box_id``'s
    handshake (stuck in scrypt) until ``free()`` is called (at the latest when the block ends);
    yields the gateway, that handshake and ``free``."""
    async with limited_gateway(
        gateway_max_pending_handshakes=1,
        gateway_auth_hash_workers=1,
        gateway_handshake_queue=2,
        gateway_handshake_queue_wait_s=wait_s,
    ) as gateway:
        release = threading.Event()
        blocker = gateway.ocpp.hash_pool.submit(release.wait)

        def free() -> None:
            release.set()
            blocker.result(timeout=10)

        try:
            checked = asyncio.create_task(
                handshake_status(
                    gateway, charge_box_id, authorization=basic(charge_box_id, password)
                )
            )
            await eventually(lambda: gateway.ocpp.pending_handshakes == 1)
            yield gateway, checked, free
        finally:
            free()


async def test_past_the_cap_handshakes_wait_in_line_then_get_503(
    limited_gateway: GatewayFactory, session_factory: SessionFactory
) -> None:
    """A reconnect storm waits its turn instead of retrying: past the cap a handshake waits for
    a slot (first come first served); past the queue, or after the longest wait, it gets 503."""
    ids = [await seed_charger(session_factory, password=f"pw-{i}") for i in range(4)]
    async with _one_slot_taken(limited_gateway, ids[0], "pw-0", wait_s=5) as slot:
        gateway, checked, free = slot
        waiting = [
            asyncio.create_task(
                handshake_status(gateway, cb, authorization=basic(cb, f"pw-{i + 1}"))
            )
            for i, cb in enumerate(ids[1:3])
        ]
        await eventually(lambda: len(gateway.ocpp._slot_waiters) == 2)
        # The line is full: the next one is refused at once.
        assert await handshake_status(gateway, ids[3], authorization=basic(ids[3], "pw-3")) == 503
        free()
        # The slot passes down the line: everyone waiting gets in.
        assert await checked == 101
        assert await asyncio.gather(*waiting) == [101, 101]
        assert gateway.ocpp.pending_handshakes == 0 and not gateway.ocpp._slot_waiters

    async with _one_slot_taken(limited_gateway, ids[0], "pw-0", wait_s=0.5) as slot:
        gateway, checked, free = slot
        # Waited its longest: 503, and it leaves the line.
        assert await handshake_status(gateway, ids[1], authorization=basic(ids[1], "pw-1")) == 503
        assert not gateway.ocpp._slot_waiters
        free()
        assert await checked == 101
        assert gateway.ocpp.pending_handshakes == 0


async def test_forwarded_addresses_count_only_from_trusted_proxies(
    limited_gateway: GatewayFactory, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory, password="right-pw")
    other = await seed_charger(session_factory, password="other-pw")

    def rotating(i: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"198.51.100.{i % 250 + 1}"}

    async with limited_gateway() as gateway:
        # Untrusted peer: a rotating X-Forwarded-For buys no fresh allowance.
        statuses = await flood(gateway, cb, 3 * LIMIT, source="127.0.0.2", headers=rotating)
        assert statuses == Counter({401: LIMIT, 429: 2 * LIMIT})

    async with limited_gateway(gateway_trusted_proxies=[ip_network("127.0.0.5/32")]) as gateway:
        # Behind the trusted proxy the forwarded client is throttled (not the proxy, and not
        # the hop the client wrote itself) ...
        statuses = await flood(
            gateway,
            other,
            LIMIT + 2,
            source="127.0.0.5",
            headers=lambda _i: {"X-Forwarded-For": "6.6.6.6, 203.0.113.1"},
            concurrency=1,
        )
        assert statuses == Counter({401: LIMIT, 429: 2})
        guard = gateway.ocpp.guard
        assert guard.by_address.retry_after_s("203.0.113.1")
        assert guard.by_address.retry_after_s("6.6.6.6") is None
        assert guard.by_address.retry_after_s("127.0.0.5") is None
        # ... so another client behind the same proxy still connects.
        status = await handshake_status(
            gateway,
            cb,
            authorization=basic(cb, "right-pw"),
            source="127.0.0.5",
            headers={"X-Forwarded-For": "203.0.113.2"},
        )
        assert status == 101


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("10.0.0.9", ["1.2.3.4"], [], "10.0.0.9"),  # nobody trusted: the socket peer
        ("10.0.0.9", ["1.2.3.4"], ["10.0.0.1/32"], "10.0.0.9"),  # peer is not the proxy
        ("10.0.0.1", ["6.6.6.6, 1.2.3.4"], ["10.0.0.1/32"], "1.2.3.4"),  # rightmost untrusted
        ("10.0.0.1", ["1.2.3.4, 10.0.0.2"], ["10.0.0.0/24"], "1.2.3.4"),  # proxy chain
        ("10.0.0.1", ["1.2.3.4", "10.0.0.2"], ["10.0.0.0/24"], "1.2.3.4"),  # repeated header
        ("10.0.0.1", ["not-an-ip"], ["10.0.0.1/32"], "10.0.0.1"),  # garbage from the proxy
        ("10.0.0.1", [], ["10.0.0.1/32"], "10.0.0.1"),  # no header at all
        (None, ["1.2.3.4"], ["10.0.0.1/32"], None),
    ],
)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: list[str], client: str | None
) -> None:
    settings = Settings(gateway_trusted_proxies=",".join(trusted))
    assert client_address(peer, forwarded, settings.gateway_trusted_proxies) == client


def test_address_key_groups_ipv6_by_64() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "unknown"


def test_settings_refuse_a_malformed_trusted_proxy() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        Settings(gateway_trusted_proxies="10.0.0.1, not-a-network")


def test_settings_refuse_auto_register_in_prod() -> None:
    with pytest.raises(ValueError, match="AUTO_REGISTER"):
        Settings(
            env="prod",
            gateway_auto_register=True,
            auth_secret=SecretStr("a-real-secret-0123456789-0123456789"),
            lago_api_key=SecretStr("real-key"),
            lago_webhook_secret=SecretStr("real-secret"),
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failure_throttle_locks_out_with_doubling_backoff() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(
        limit=3, window_s=60, backoff_s=10, backoff_max_s=25, clock=clock, max_keys=100
    )
    for lockout_s in (10, 20, 25):  # doubling, capped by the maximum
        for _ in range(3):
            assert throttle.retry_after_s("k") is None
            throttle.begin("k")
            throttle.fail("k")
        assert throttle.retry_after_s("k") == lockout_s
        clock.now += lockout_s
    assert throttle.retry_after_s("k") is None
    # Failures older than the window no longer count.
    throttle.begin("k")
    throttle.fail("k")
    clock.now += 61
    for _ in range(2):
        throttle.begin("k")
        throttle.fail("k")
    assert throttle.retry_after_s("k") is None


def test_failure_throttle_counts_handshakes_in_flight() -> None:
    throttle = FailureThrottle(limit=2, window_s=60, backoff_s=10, backoff_max_s=10)
    throttle.begin("k")
    throttle.begin("k")
    assert throttle.retry_after_s("k") is not None  # a burst cannot outrun the count
    throttle.succeed("k")
    throttle.release("k")
    assert throttle.retry_after_s("k") is None
    assert len(throttle) == 0


def test_failure_throttle_memory_is_bounded() -> None:
    throttle = FailureThrottle(limit=2, window_s=60, backoff_s=10, backoff_max_s=10, max_keys=50)
    for i in range(500):
        throttle.begin(f"10.0.{i // 250}.{i % 250}")
        throttle.fail(f"10.0.{i // 250}.{i % 250}")
    assert len(throttle) == 50


async def test_a_reconnect_storm_without_credentials_from_one_address_is_not_throttled(
    limited_gateway: GatewayFactory, session_factory: SessionFactory
) -> None:
    """Chargers that need no password, all behind one address (a site's NAT), reconnecting at
    once: none of them can fail a password check, so none is answered 429 — while an address
    locked out by wrong passwords stays refused, credentials or not."""
    chargers = [
        await seed_charger(session_factory, allow_unauthenticated=True) for _ in range(4 * LIMIT)
    ]
    async with limited_gateway(gateway_max_pending_handshakes=10 * LIMIT) as gateway:
        accepted: list[str] = []
        refused: Counter[int] = Counter()

        async def reconnect(cb: str) -> None:
            try:
                async with connect(
                    f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    local_addr=("127.0.0.5", 0),
                    open_timeout=60,
                ):
                    accepted.append(cb)
            except InvalidStatus as exc:
                refused[exc.response.status_code] += 1

        async with asyncio.timeout(120):
            await asyncio.gather(*(reconnect(cb) for cb in chargers))
        assert not refused, refused
        assert sorted(accepted) == sorted(chargers)

        # An address locked out by wrong passwords is refused even without credentials.
        victim = await seed_charger(session_factory, password="pw")
        await flood(gateway, victim, LIMIT, source="127.0.0.6", concurrency=1)
        assert await handshake_status(gateway, chargers[0], source="127.0.0.6") == 429


def test_handshakes_without_credentials_reserve_nothing() -> None:
    settings = Settings(
        env="test",
        gateway_auth_failure_limit=2,
        gateway_auth_failure_window_s=60,
        gateway_auth_backoff_s=60,
        gateway_auth_backoff_max_s=60,
    )
    guard = HandshakeGuard(settings)
    tickets = [guard.admit("10.0.0.1", f"CB-{i}", offers_credentials=False) for i in range(50)]
    assert all(isinstance(t, Ticket) and not t.reserved for t in tickets)
    assert len(guard.by_address) == 0
    for t in tickets:
        assert isinstance(t, Ticket)
        guard.settle(t, Outcome.NEUTRAL)
    # Two wrong passwords lock the address out: then even a credential-less handshake waits.
    for _ in range(2):
        t = guard.admit("10.0.0.1", "CB-x")
        assert isinstance(t, Ticket)
        guard.settle(t, Outcome.FAILED)
    assert isinstance(guard.admit("10.0.0.1", "CB-y", offers_credentials=False), float)

"""Simulated chargers running whole sessions (run it as its own process; several side by side).

Chargers ``--first`` … ``--first + --count - 1`` (ids and cards of ``bench.platform``) connect
over ``--ramp-s``, boot, report their connector Available, and at the wall-clock time
``--start-at`` begin their sessions: Authorize → StartTransaction → MeterValues → StopTransaction.

- Without ``--stop-file``: ``--sessions`` sessions back to back per charger, each with
  ``--meter-values`` MeterValues (saturation: as fast as the platform answers).
- With ``--until-told``: one session per charger, the taps spread over ``--spread-s``; each
  charger then sends a MeterValues every ``--meter-interval-s`` until the line ``stop`` arrives
  on standard input, stops its transaction, and stays connected until the line ``done``.

Prints one JSON document: every completed session (charger index, transaction id, meter start
and stop in Wh, when the StopTransaction was answered), errors by action, p50/p99 per action.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.exceptions import InternalError
from ocpp.v16 import ChargePoint, call

from bench.platform import charger_id, id_tag

SUBPROTOCOL = websockets.Subprotocol("ocpp1.6")
RESENDS = 20


class Stats:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.sessions: list[dict[str, Any]] = []

    async def call(self, cp: ChargePoint, payload: Any) -> Any:
        """Send until answered; a CallError InternalError (the gateway could not journal the
        message in time) is counted and the message resent unchanged after a pause, as OCPP
        asks a charger to. The latency is the first send to the final answer."""
        action = type(payload).__name__
        started = time.perf_counter()
        for attempt in range(RESENDS + 1):
            try:
                result = await cp.call(payload, suppress=False)
                break
            except InternalError:
                self.errors[f"{action}:InternalError"] += 1
                if attempt == RESENDS:
                    raise
                await asyncio.sleep(1 + random.random())
            except Exception as exc:
                self.errors[f"{action}:{type(exc).__name__}"] += 1
                raise
        self.latencies[action].append((time.perf_counter() - started) * 1000)
        return result

    def summary(self) -> dict[str, Any]:
        actions: dict[str, Any] = {}
        for action, values in sorted(self.latencies.items()):
            values.sort()
            actions[action] = {
                "count": len(values),
                "p50_ms": round(statistics.median(values), 2),
                "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
            }
        return {"actions": actions, "errors": dict(self.errors), "sessions": self.sessions}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _meter(tx: int, wh: int) -> call.MeterValues:
    return call.MeterValues(
        connector_id=1,
        transaction_id=tx,
        meter_value=[
            {
                "timestamp": _now(),
                "sampledValue": [
                    {
                        "value": str(wh),
                        "context": "Sample.Periodic",
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                    }
                ],
            }
        ],
    )


async def _session(
    cp: ChargePoint, i: int, register: int, args: argparse.Namespace, stats: Stats
) -> int:
    tag = id_tag(i)
    await stats.call(cp, call.Authorize(id_tag=tag))
    started = await stats.call(
        cp,
        call.StartTransaction(connector_id=1, id_tag=tag, meter_start=register, timestamp=_now()),
    )
    tx = int(started.transaction_id)
    meter_start = register
    if args.stop is None:
        for _ in range(args.meter_values):
            register += random.randint(10, 200)
            await stats.call(cp, _meter(tx, register))
    else:
        await asyncio.sleep(random.uniform(0, args.meter_interval_s))
        while not args.stop.is_set():
            register += random.randint(10, 200)
            await stats.call(cp, _meter(tx, register))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(args.stop.wait(), args.meter_interval_s)
    register += random.randint(0, 100)
    await stats.call(
        cp,
        call.StopTransaction(
            meter_stop=register, timestamp=_now(), transaction_id=tx, id_tag=tag, reason="Local"
        ),
    )
    stats.sessions.append(
        {
            "charger": i,
            "transaction_id": tx,
            "meter_start": meter_start,
            "meter_stop": register,
            "stopped_at": time.time(),
        }
    )
    return register


async def run_charger(i: int, args: argparse.Namespace, stats: Stats) -> None:
    cb = charger_id(i)
    async with websockets.connect(
        f"{args.url}/{cb}", subprotocols=[SUBPROTOCOL], open_timeout=120, ping_interval=None
    ) as ws:
        cp = ChargePoint(cb, ws, response_timeout=120)
        listener = asyncio.create_task(cp.start())
        try:
            await stats.call(
                cp,
                call.BootNotification(charge_point_vendor="PolarisBench", charge_point_model="S"),
            )
            await stats.call(
                cp,
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available"),
            )
            await asyncio.sleep(max(0.0, args.start_at - time.time()))
            register = random.randint(0, 100_000)
            if args.stop is not None:
                await asyncio.sleep(random.uniform(0, args.spread_s))
                await _session(cp, i, register, args, stats)
                # Keep the socket until the orchestrator is done (a charger stays connected).
                await args.done.wait()
            else:
                for _ in range(args.sessions):
                    register = await _session(cp, i, register, args, stats)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def _commands(stop: asyncio.Event, done: asyncio.Event) -> None:
    """``stop`` / ``done`` lines from the orchestrator on standard input."""
    while not done.is_set():
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() == "stop" or not line:
            stop.set()
        if line.strip() == "done" or not line:
            done.set()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    args.stop = args.done = None
    if args.until_told:
        args.stop, args.done = asyncio.Event(), asyncio.Event()
        commands = asyncio.create_task(_commands(args.stop, args.done))
    tasks = []
    for i in range(args.first, args.first + args.count):
        tasks.append(asyncio.create_task(run_charger(i, args, stats)))
        if args.ramp_s:
            await asyncio.sleep(args.ramp_s / args.count)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if args.until_told:
        commands.cancel()
    return stats.summary() | {
        "charger_failures": len(failures),
        "first_failure": repr(failures[0])[:300] if failures else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="ws://host:port/ocpp (charger id appended)")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--meter-values", type=int, default=10)
    parser.add_argument("--ramp-s", type=float, default=5.0)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall clock (epoch s)")
    parser.add_argument("--until-told", action="store_true")
    parser.add_argument("--spread-s", type=float, default=0.0)
    parser.add_argument("--meter-interval-s", type=float, default=15.0)
    args = parser.parse_args()
    json.dump(asyncio.run(main_async(args)), sys.stdout)
    print()


if __name__ == "__main__":
    main()

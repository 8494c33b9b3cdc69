"""The load generator: N simulated OCPP 1.6J chargers in one process (run it as its own process).

Each charger connects, boots, then runs ``--sessions`` charging sessions: Authorize →
StartTransaction → ``--meter-values`` × MeterValues → StopTransaction, with a small think time
between messages. Chargers connect in a ramp so the server sees a realistic arrival rate.
Prints one JSON document: per action count, p50/p99/max latency (ms), errors, and overall
messages per second (MeterValues throughput is measured over a separate burst phase).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.v16 import ChargePoint, call

SUBPROTOCOL = websockets.Subprotocol("ocpp1.6")


@dataclass
class Recorder:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: int = 0
    first: float = float("inf")
    last: float = 0.0

    async def timed(self, cp: ChargePoint, action: str, payload: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await cp.call(payload, suppress=False)
        except Exception as exc:
            self.errors[f"{action}:{type(exc).__name__}"] += 1
            return None
        ended = time.perf_counter()
        self.latencies_ms[action].append((ended - started) * 1000)
        self.first, self.last = min(self.first, started), max(self.last, ended)
        self.messages += 1
        return result


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _meter(tx_id: int, wh: int, context: str = "Sample.Periodic") -> call.MeterValues:
    return call.MeterValues(
        connector_id=1,
        transaction_id=tx_id,
        meter_value=[
            {
                "timestamp": _now(),
                "sampledValue": [
                    {
                        "value": str(wh),
                        "context": context,
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                    }
                ],
            }
        ],
    )


async def run_charger(
    url: str,
    charge_box_id: str,
    id_tag: str,
    args: argparse.Namespace,
    rec: Recorder,
    burst: Recorder,
    start_gate: asyncio.Event,
) -> None:
    async with websockets.connect(
        f"{url}/{charge_box_id}", subprotocols=[SUBPROTOCOL], open_timeout=60, ping_interval=None
    ) as ws:
        cp = ChargePoint(charge_box_id, ws, response_timeout=60)
        listener = asyncio.create_task(cp.start())
        try:
            await rec.timed(
                cp,
                "BootNotification",
                call.BootNotification(
                    charge_point_vendor="PolarisBench", charge_point_model="Load"
                ),
            )
            await rec.timed(
                cp,
                "StatusNotification",
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available"),
            )
            await start_gate.wait()
            # Sessions begin spread over --spread-s, as taps arrive at a real site.
            await asyncio.sleep(random.uniform(0, args.spread_s))
            register = 0
            for _ in range(args.sessions):
                await asyncio.sleep(random.uniform(0, args.think_s))
                await rec.timed(cp, "Authorize", call.Authorize(id_tag=id_tag))
                started = await rec.timed(
                    cp,
                    "StartTransaction",
                    call.StartTransaction(
                        connector_id=1, id_tag=id_tag, meter_start=register, timestamp=_now()
                    ),
                )
                if started is None:
                    continue
                tx_id = int(started.transaction_id)
                for _ in range(args.meter_values):
                    await asyncio.sleep(random.uniform(0, args.think_s))
                    register += random.randint(50, 500)
                    await rec.timed(cp, "MeterValues", _meter(tx_id, register))
                register += random.randint(50, 500)
                await rec.timed(
                    cp,
                    "StopTransaction",
                    call.StopTransaction(
                        meter_stop=register,
                        timestamp=_now(),
                        transaction_id=tx_id,
                        id_tag=id_tag,
                        reason="Local",
                    ),
                )
            # Burst: MeterValues back to back, for throughput against the baseline.
            if args.burst:
                burst_tx = await rec.timed(
                    cp,
                    "StartTransaction",
                    call.StartTransaction(
                        connector_id=1, id_tag=id_tag, meter_start=register, timestamp=_now()
                    ),
                )
                if burst_tx is not None:
                    for _ in range(args.burst):
                        register += 10
                        await burst.timed(
                            cp, "MeterValues", _meter(burst_tx.transaction_id, register)
                        )
                    await rec.timed(
                        cp,
                        "StopTransaction",
                        call.StopTransaction(
                            meter_stop=register,
                            timestamp=_now(),
                            transaction_id=burst_tx.transaction_id,
                            reason="Local",
                        ),
                    )
        finally:
            listener.cancel()


def _summary(rec: Recorder) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for action, values in sorted(rec.latencies_ms.items()):
        values.sort()
        out[action] = {
            "count": len(values),
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
            "max_ms": round(values[-1], 2),
        }
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rec, burst = Recorder(), Recorder()
    gate = asyncio.Event()
    tasks = []
    connect_started = time.perf_counter()
    for i in range(args.chargers):
        cb = f"{args.prefix}-{i:05d}"
        tag = f"{args.tag_prefix}{i:05d}"[:20]
        tasks.append(asyncio.create_task(run_charger(args.url, cb, tag, args, rec, burst, gate)))
        if args.ramp_s:
            await asyncio.sleep(args.ramp_s / args.chargers)
    # Sessions start once everyone is connected (or after the ramp), so the phases don't mix.
    await asyncio.sleep(0.5)
    gate.set()
    run_started = time.perf_counter()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - run_started
    failures = [r for r in results if isinstance(r, BaseException)]
    burst_seconds = burst.last - burst.first if burst.messages else 0.0
    return {
        "chargers": args.chargers,
        "sessions_per_charger": args.sessions,
        "connect_ramp_s": round(run_started - connect_started, 2),
        "elapsed_s": round(elapsed, 2),
        "messages": rec.messages + burst.messages,
        "messages_per_s": round((rec.messages + burst.messages) / elapsed, 1),
        "meter_values_burst_per_s": round(burst.messages / burst_seconds, 1)
        if burst_seconds
        else 0,
        "actions": _summary(rec),
        "errors": dict(rec.errors) | {f"burst:{k}": v for k, v in burst.errors.items()},
        "charger_failures": len(failures),
        "first_failure": repr(failures[0])[:300] if failures else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="ws://host:port/ocpp (charger id appended)")
    parser.add_argument("--chargers", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--meter-values", type=int, default=3)
    parser.add_argument(
        "--burst", type=int, default=20, help="MeterValues per charger, back to back"
    )
    parser.add_argument("--think-s", type=float, default=1.0)
    parser.add_argument("--ramp-s", type=float, default=10.0)
    parser.add_argument(
        "--spread-s", type=float, default=0.0, help="first taps spread uniformly over this time"
    )
    parser.add_argument("--prefix", default="BENCH")
    parser.add_argument("--tag-prefix", default="BT")
    args = parser.parse_args()
    json.dump(asyncio.run(main_async(args)), sys.stdout)
    print()


if __name__ == "__main__":
    main()

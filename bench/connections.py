"""Connection benchmarks: many chargers on one gateway process, and a reconnect storm.

    .venv/bin/python -m bench.connections hold --chargers 10000 --processes 8
    .venv/bin/python -m bench.connections storm --chargers 2000 --window-s 10

Both start the throw-away platform of ``bench.gateway_load`` (PostgreSQL, Temporal, worker,
billing sandbox, one gateway process) and run the simulated chargers in ``--processes`` separate
load processes (this module with ``--role load``), so the generator's own event loop and file
descriptors are not the gateway's. ``ulimit -n`` is raised to the hard limit for all of them.

- **hold**: every charger connects (over ``--ramp-s``), sends BootNotification and
  StatusNotification, then a Heartbeat every ``--heartbeat-s`` for ``--hold-s``. Reports the
  gateway's resident memory before and with all chargers connected (per charger: the
  difference divided by the chargers), and Heartbeat p50/p99 measured at the charger.
- **storm**: every charger connects and boots, then all drop their sockets and reconnect within
  ``--window-s`` (uniformly spread), each re-sending BootNotification and StatusNotification.
  Reports how many were accepted, p50/p99 of those answers in the storm, and every error.

Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import websockets
from ocpp.v16 import ChargePoint, call

from bench.gateway_load import platform

SUBPROTOCOL = websockets.Subprotocol("ocpp1.6")


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 2) if values else 0.0


def summary(latencies: dict[str, list[float]]) -> dict[str, Any]:
    return {
        action: {
            "count": len(v),
            "p50_ms": round(statistics.median(v), 2),
            "p99_ms": _pct(v, 0.99),
            "max_ms": round(max(v), 2),
        }
        for action, v in sorted(latencies.items())
        if v
    }


# -- the load process -------------------------------------------------------------------------


class _Charger:
    def __init__(self, url: str, charge_box_id: str) -> None:
        self.url = url
        self.id = charge_box_id
        self.ws: Any = None
        self.cp: ChargePoint | None = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await websockets.connect(
            f"{self.url}/{self.id}",
            subprotocols=[SUBPROTOCOL],
            open_timeout=120,
            ping_interval=None,
            compression=None,
        )
        self.cp = ChargePoint(self.id, self.ws, response_timeout=120)
        self.reader = asyncio.create_task(self.cp.start())

    async def drop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        self.ws = self.cp = self.reader = None


class _Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)

    async def timed(self, charger: _Charger, action: str, payload: Any) -> bool:
        assert charger.cp is not None
        started = time.perf_counter()
        try:
            await charger.cp.call(payload, suppress=False)
        except Exception as exc:
            self.errors[f"{action}:{type(exc).__name__}"] += 1
            return False
        self.latencies[action].append((time.perf_counter() - started) * 1000)
        return True

    async def boot(self, charger: _Charger, phase: str) -> bool:
        ok = await self.timed(
            charger,
            f"{phase}BootNotification",
            call.BootNotification(charge_point_vendor="PolarisBench", charge_point_model="Conn"),
        )
        return ok and await self.timed(
            charger,
            f"{phase}StatusNotification",
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available"),
        )


async def _with_retries(rec: _Recorder, charger: _Charger, deadline: float) -> bool:
    """Connect (a refused handshake, e.g. 503 while too many are checked, is retried)."""
    while True:
        try:
            await charger.connect()
            return True
        except Exception as exc:
            response = getattr(exc, "response", None)
            code = getattr(response, "status_code", None)
            rec.errors[f"connect:{type(exc).__name__}{f':{code}' if code else ''}"] += 1
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(random.uniform(0.5, 2.0))


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    rec = _Recorder()
    chargers = [
        _Charger(args.url, f"{args.prefix}-{i:05d}")
        for i in range(args.first, args.first + args.count)
    ]
    deadline = time.monotonic() + args.ramp_s + 300

    async def arrive(i: int, charger: _Charger) -> bool:
        await asyncio.sleep(args.ramp_s * i / max(len(chargers), 1))
        return await _with_retries(rec, charger, deadline) and await rec.boot(charger, "")

    booted = await asyncio.gather(*(arrive(i, c) for i, c in enumerate(chargers)))
    # Tell the orchestrator everyone is up (it measures memory now), then wait for its go.
    print(json.dumps({"ready": sum(booted)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if args.mode == "hold":

        async def beat(charger: _Charger) -> None:
            end = time.monotonic() + args.hold_s
            await asyncio.sleep(random.uniform(0, args.heartbeat_s))
            while time.monotonic() < end:
                await rec.timed(charger, "Heartbeat", call.Heartbeat())
                await asyncio.sleep(args.heartbeat_s)

        await asyncio.gather(*(beat(c) for c, ok in zip(chargers, booted, strict=True) if ok))
    else:

        async def reconnect(charger: _Charger) -> bool:
            await charger.drop()
            await asyncio.sleep(random.uniform(0, args.window_s))
            storm_deadline = time.monotonic() + 300
            return await _with_retries(rec, charger, storm_deadline) and await rec.boot(
                charger, "storm:"
            )

        back = await asyncio.gather(*(reconnect(c) for c in chargers))
        rec.errors["storm:not_accepted"] += len(back) - sum(back)
    for charger in chargers:
        await charger.drop()
    return {
        "latencies": dict(rec.latencies),
        "errors": {k: v for k, v in rec.errors.items() if v},
        "booted": sum(booted),
    }


# -- the orchestrator ---------------------------------------------------------------------------


def _read_all(loader: subprocess.Popen[str]) -> str:
    assert loader.stdout is not None
    return loader.stdout.read()


def _rss_kib(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss // 1024)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    _raise_nofile()
    per = -(-args.chargers // args.processes)
    with tempfile.TemporaryDirectory(prefix="polaris-conn-") as d:
        os.chmod(d, 0o755)
        env = {"POLARIS_GATEWAY_MAX_PENDING_HANDSHAKES": str(args.max_pending_handshakes)}
        with platform(
            Path(d), cards=1, platform_log=args.platform_log, profile=args.profile, extra_env=env
        ) as (url, gateway):
            time.sleep(args.settle_s)  # the gateway's own start-up (its worker) settles first
            rss_before = _rss_kib(gateway.pid)
            loaders = []
            for p in range(args.processes):
                first, count = p * per, min(per, args.chargers - p * per)
                if count <= 0:
                    break
                loaders.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.connections",
                            args.mode,
                            "--role",
                            "load",
                            "--url",
                            url,
                            "--first",
                            str(first),
                            "--count",
                            str(count),
                            "--ramp-s",
                            str(args.ramp_s),
                            "--hold-s",
                            str(args.hold_s),
                            "--heartbeat-s",
                            str(args.heartbeat_s),
                            "--window-s",
                            str(args.window_s),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            ready = 0
            for loader in loaders:
                assert loader.stdout is not None
                ready += json.loads(loader.stdout.readline())["ready"]
            time.sleep(2)
            rss_connected = _rss_kib(gateway.pid)
            started = time.perf_counter()
            for loader in loaders:
                assert loader.stdin is not None
                loader.stdin.write("go\n")
                loader.stdin.flush()
            # Each loader's summary (every latency it measured) is larger than a pipe holds:
            # read them all while they run, or a loader blocks on its last print for ever.
            with ThreadPoolExecutor(max_workers=len(loaders)) as pool:
                outputs = [pool.submit(_read_all, loader) for loader in loaders]
                rss_peak = rss_connected
                while any(loader.poll() is None for loader in loaders):
                    rss_peak = max(rss_peak, _rss_kib(gateway.pid))
                    time.sleep(1)
                results = [json.loads(o.result().strip().splitlines()[-1]) for o in outputs]
            elapsed = time.perf_counter() - started
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for r in results:
        for action, values in r["latencies"].items():
            latencies[action].extend(values)
        for key, n in r["errors"].items():
            errors[key] += n
    out: dict[str, Any] = {
        "mode": args.mode,
        "chargers": args.chargers,
        "load_processes": len(loaders),
        "booted": ready,
        "phase_s": round(elapsed, 1),
        "actions": summary(latencies),
        "errors": dict(errors),
        "gateway_rss_kib": {
            "before": rss_before,
            "connected": rss_connected,
            "peak": rss_peak,
        },
    }
    if ready:
        out["kib_per_charger"] = round((rss_connected - rss_before) / ready, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("hold", "storm"))
    parser.add_argument("--role", choices=("orchestrate", "load"), default="orchestrate")
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--ramp-s", type=float, default=60.0, help="first connections over this")
    parser.add_argument("--hold-s", type=float, default=120.0, help="hold: heartbeat this long")
    parser.add_argument("--heartbeat-s", type=float, default=30.0, help="hold: heartbeat period")
    parser.add_argument("--window-s", type=float, default=10.0, help="storm: reconnect within")
    parser.add_argument("--settle-s", type=float, default=10.0)
    parser.add_argument(
        "--max-pending-handshakes",
        type=int,
        default=64,
        help="POLARIS_GATEWAY_MAX_PENDING_HANDSHAKES of the gateway (its default: 64)",
    )
    parser.add_argument("--platform-log", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy profiles of gateway and worker")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    # --role load only:
    parser.add_argument("--url")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--prefix", default="CONN")
    args = parser.parse_args()
    if args.role == "load":
        _raise_nofile()
        logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # errors are counted, not printed
        print(json.dumps(asyncio.run(run_load(args))))
        return
    result = orchestrate(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()

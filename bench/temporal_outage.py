"""A 60 s Temporal outage with sessions running: how long the outbox takes to drain afterwards,
and whether every session is then billed exactly.

    .venv/bin/python -m bench.temporal_outage --chargers 1000

1. Starts a throw-away platform (``bench.platform``) and ``--chargers`` simulated chargers in
   ``--load-procs`` load processes (``bench.session_load --until-told``): each taps (Authorize),
   starts a transaction (the taps spread over ``--spread-s``) and sends a MeterValues every
   ``--meter-interval-s``.
2. Once every transaction exists and the outbox is empty (each session's workflow has its
   start), stops the Temporal dev server (SIGTERM, or SIGKILL with ``--kill``) for
   ``--outage-s``. The chargers keep metering; ``--stop-after-s`` into the outage they stop their
   transactions (the gateway answers and journals without Temporal; the stops wait in the outbox).
3. Restarts the dev server on its SQLite file, and from the moment it serves again measures:
   the outbox drained (no undelivered row left; aim of issue 12: < 30 s) and every session's
   final billing event accepted by the Lago sandbox.
4. Checks every session is billed exactly: one final line, energy billed == meter stop − meter
   start, in ``billing_events`` and in the sandbox (each event stored once).

Not a test: it prints figures (exit 1 only when a session is not billed exactly).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.platform import Platform, start_platform
from bench.session_throughput import check_billing, merge, wait_billed
from tests.helpers import wait_temporal


def undelivered(platform: Platform) -> int:
    return int(platform.sql("SELECT count(*) FROM gateway_outbox WHERE delivered_at IS NULL")[0][0])


def transactions(platform: Platform) -> int:
    return int(platform.sql("SELECT count(*) FROM transactions")[0][0])


def wait_for(check: Any, timeout_s: float, what: str, poll_s: float = 0.25) -> float:
    """Poll until ``check()`` is true; returns when it became true (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout_s:.0f}s")
        time.sleep(poll_s)
    return time.monotonic()


def tell(procs: list[subprocess.Popen[str]], line: str) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--load-procs", type=int, default=2)
    parser.add_argument("--ramp-s", type=float, default=60.0, help="chargers connect over this")
    parser.add_argument("--spread-s", type=float, default=120.0, help="taps spread over this")
    parser.add_argument("--meter-interval-s", type=float, default=15.0)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--stop-after-s", type=float, default=40.0)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the dev server (a crash)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="polaris-outage-"))
    os.chmod(tmp, 0o755)
    print(f"-- platform in {tmp}", flush=True)
    platform = start_platform(tmp, args.chargers)
    temporal = platform.cluster.temporal
    figures: dict[str, Any] = {"chargers": args.chargers}
    loads: list[subprocess.Popen[str]] = []
    try:
        start_at = time.time() + args.ramp_s + 3
        per = math.ceil(args.chargers / args.load_procs)
        for first in range(0, args.chargers, per):
            loads.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.session_load",
                        "--until-told",
                        *("--url", platform.cluster.gateway_urls[0]),
                        *("--first", str(first), "--count", str(min(per, args.chargers - first))),
                        *("--ramp-s", str(args.ramp_s), "--start-at", str(start_at)),
                        *("--spread-s", str(args.spread_s)),
                        *("--meter-interval-s", str(args.meter_interval_s)),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        print(f"-- {args.chargers} chargers tapping over {args.spread_s:.0f}s", flush=True)
        budget = args.ramp_s + args.spread_s + 600
        wait_for(lambda: transactions(platform) >= args.chargers, budget, "transactions")
        wait_for(lambda: undelivered(platform) == 0, 600, "outbox empty before the outage")
        figures["running_sessions"] = transactions(platform)
        print(f"-- {figures['running_sessions']} sessions running; metering", flush=True)
        time.sleep(min(args.meter_interval_s, 15))

        print(f"-- Temporal down for {args.outage_s:.0f}s", flush=True)
        down = time.monotonic()
        temporal.kill(signal.SIGKILL if args.kill else signal.SIGTERM)
        time.sleep(args.stop_after_s)
        tell(loads, "stop")
        time.sleep(max(0.0, down + args.outage_s - time.monotonic()))
        figures["outage_s"] = round(time.monotonic() - down, 1)
        figures["backlog_at_restart"] = undelivered(platform)
        figures["transactions_at_restart"] = transactions(platform)
        temporal.start()
        wait_temporal(platform.cluster.temporal_address, timeout=120)
        back = time.monotonic()
        back_wall = time.time()
        print(f"-- Temporal back; outbox backlog {figures['backlog_at_restart']}", flush=True)
        drained = wait_for(lambda: undelivered(platform) == 0, 1800, "outbox drained")
        figures["drain_s"] = round(drained - back, 1)
        print(f"-- outbox drained in {figures['drain_s']}s", flush=True)

        tell(loads, "done")
        results = []
        for proc in loads:
            out, _ = proc.communicate(timeout=600)
            results.append(json.loads(out.strip().splitlines()[-1]))
        load = merge(results)
        sessions = load["sessions"]
        tx_ids = [s["transaction_id"] for s in sessions]
        billed, last = wait_billed(platform, tx_ids, 1800)
        figures["sessions_stopped"] = len(sessions)
        figures["billed"] = billed
        figures["all_billed_s"] = round(last - back_wall, 1) if last else None
        figures["errors"] = load["errors"]
        figures["charger_failures"] = load["charger_failures"]
        figures["first_failure"] = load["first_failure"]
        figures["actions"] = load["actions"]
        problems = check_billing(platform, sessions)
        figures["problems"] = problems
        figures["relay_failures"] = int(
            platform.sql("SELECT coalesce(sum(attempts - 1), 0) FROM gateway_outbox")[0][0]
        )
    finally:
        for proc in loads:
            if proc.poll() is None:
                proc.kill()
        platform.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)

    print(
        "\n".join(
            [
                "",
                f"sessions running when Temporal stopped: {figures['running_sessions']}",
                f"Temporal down: {figures['outage_s']} s"
                f" ({'SIGKILL' if args.kill else 'SIGTERM'}, restarted on its file)",
                f"outbox rows waiting when it came back: {figures['backlog_at_restart']}",
                f"outbox drained after Temporal was back: {figures['drain_s']} s (aim < 30 s)",
                f"every session's final billing event in the sandbox after: "
                f"{figures['all_billed_s']} s",
                f"sessions stopped at the chargers: {figures['sessions_stopped']};"
                f" billed: {figures['billed']}; charger errors: {figures['errors'] or 0};"
                f" charger failures: {figures['charger_failures']}",
                f"failed relay deliveries (retried): {figures['relay_failures']}",
                "billing exact (energy == meter stop - start, once, billing_events and sandbox): "
                + ("yes" if not problems else f"NO ({len(problems)}): {problems[:5]}"),
            ]
        )
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if problems or figures["billed"] < args.chargers:
        sys.exit(1)


if __name__ == "__main__":
    main()

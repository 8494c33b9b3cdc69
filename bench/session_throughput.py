"""End-to-end sessions per second vs a trivial workflow on the same Temporal server, one run.

    .venv/bin/python -m bench.session_throughput --chargers 50 --sessions 4

1. Starts a throw-away platform (``bench.platform``: embedded PostgreSQL, Temporal dev server,
   Lago sandbox, one worker, one gateway) seeded with one charger, card and Lago subscription
   per simulated charger.
2. Runs ``--chargers`` simulated chargers in ``--load-procs`` load processes
   (``bench.session_load``), each running ``--sessions`` sessions back to back: Authorize →
   StartTransaction → ``--meter-values`` MeterValues → StopTransaction. A session counts as done
   when its final billing event has been accepted by the Lago sandbox (``billing_events.sent_at``
   is set only after Lago stored the event; the run then checks the sandbox holds every event,
   with the energy the charger measured).
3. Counts the messages (signals and the Authorize update) each session's workflow received, then
   runs the baseline on the SAME Temporal server: a trivial workflow (``bench.trivial_workflow``,
   its own worker process) receiving that many signals and running one activity, started by a
   client at the same concurrency (one loop per simulated charger, ``--sessions`` workflows each).
4. Prints sessions/s, workflows/s and the ratio (the aim of issue 12: >= 0.5).

Not a test: it prints figures and never fails on them (it does exit 1 when a session is not
billed exactly, since a figure bought by losing a session would not count).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.platform import Platform, kwh_to_wh, start_platform

TRIVIAL = (sys.executable, "-m", "bench.trivial_workflow")


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def run_load(
    platform: Platform, chargers: int, procs: int, extra: list[str], ramp_s: float
) -> tuple[float, list[dict[str, Any]]]:
    """The load processes (chargers split between them); returns the wall-clock start of the
    sessions and their merged summaries."""
    url = platform.cluster.gateway_urls[0]
    start_at = time.time() + ramp_s + 3
    per = math.ceil(chargers / procs)
    running = []
    for first in range(0, chargers, per):
        running.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.session_load",
                    "--url",
                    url,
                    "--first",
                    str(first),
                    "--count",
                    str(min(per, chargers - first)),
                    "--ramp-s",
                    str(ramp_s),
                    "--start-at",
                    str(start_at),
                    *extra,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in running:
        out, _ = proc.communicate()
        results.append(json.loads(out.strip().splitlines()[-1]))
    return start_at, results


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    sessions: list[dict[str, Any]] = []
    actions: dict[str, dict[str, float]] = {}
    for r in results:
        errors.update(r["errors"])
        sessions.extend(r["sessions"])
        for action, figures in r["actions"].items():
            # p50/p99 of the worst load process (they are the same population split in two).
            seen = actions.setdefault(action, {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0})
            seen["count"] += figures["count"]
            seen["p50_ms"] = max(seen["p50_ms"], figures["p50_ms"])
            seen["p99_ms"] = max(seen["p99_ms"], figures["p99_ms"])
    failures = sum(r["charger_failures"] for r in results)
    first = next((r["first_failure"] for r in results if r["first_failure"]), None)
    return {
        "errors": dict(errors),
        "sessions": sessions,
        "actions": actions,
        "charger_failures": failures,
        "first_failure": first,
    }


def wait_billed(
    platform: Platform, tx_ids: list[int], timeout_s: float, poll_s: float = 0.5
) -> tuple[int, float | None]:
    """Wait until every transaction's final billing event is sent to Lago; returns how many are
    and the time of the last send (epoch s)."""
    deadline = time.monotonic() + timeout_s
    count, last = 0, None
    while time.monotonic() < deadline:
        row = platform.sql(
            "SELECT count(*), max(b.sent_at) FROM billing_events b"
            " JOIN transactions t ON t.workflow_id = b.workflow_id"
            " WHERE b.kind = 'final' AND b.sent_at IS NOT NULL AND t.id = ANY(%s)",
            (tx_ids,),
        )[0]
        count, last = int(row[0]), (_epoch(row[1]) if row[1] else None)
        if count >= len(tx_ids):
            break
        time.sleep(poll_s)
    return count, last


def check_billing(platform: Platform, sessions: list[dict[str, Any]]) -> list[str]:
    """Every session billed exactly once: in billing_events (one final line, energy = meter stop
    − meter start) and in the sandbox (each of those events stored once, same energy)."""
    problems: list[str] = []
    rows = platform.sql(
        "SELECT t.id, b.transaction_id, b.kind, b.energy_wh, b.sent_at IS NOT NULL"
        " FROM transactions t JOIN billing_events b ON b.workflow_id = t.workflow_id"
        " WHERE t.id = ANY(%s)",
        ([s["transaction_id"] for s in sessions],),
    )
    lines: dict[int, list[tuple[str, str, int, bool]]] = {}
    for tx, event_id, kind, wh, sent in rows:
        lines.setdefault(tx, []).append((event_id, kind, wh, sent))
    stored: dict[str, list[int]] = {}
    for event in platform.lago_events():
        stored.setdefault(event["transaction_id"], []).append(kwh_to_wh(event["properties"]["kwh"]))
    for s in sessions:
        tx, want = s["transaction_id"], s["meter_stop"] - s["meter_start"]
        mine = lines.get(tx, [])
        finals = [line for line in mine if line[1] == "final"]
        billed = sum(line[2] for line in mine)
        if len(finals) != 1 or billed != want:
            problems.append(f"tx {tx}: {len(finals)} final lines, {billed} Wh billed, want {want}")
            continue
        in_lago = 0
        for event_id, _, wh, sent in mine:
            copies = stored.get(event_id, [])
            if not sent or len(copies) != 1 or copies[0] != wh:
                problems.append(f"tx {tx}: event {event_id} sent={sent} in sandbox {copies}")
            in_lago += sum(copies)
        if in_lago != want:
            problems.append(f"tx {tx}: sandbox holds {in_lago} Wh, want {want}")
    return problems


def signals_per_session(platform: Platform, tx_ids: list[int]) -> float:
    """Messages each session's workflow received: its delivered outbox rows (signals) plus the
    Authorize update (the pre-authorization)."""
    row = platform.sql(
        "SELECT count(*) FROM gateway_outbox o JOIN transactions t"
        " ON t.workflow_id = o.workflow_id WHERE t.id = ANY(%s)",
        (tx_ids,),
    )[0]
    return int(row[0]) / max(len(tx_ids), 1) + 1


def baseline(platform: Platform, concurrency: int, per_loop: int, signals: int) -> dict[str, Any]:
    address = platform.cluster.temporal_address
    queue = f"bench-trivial-{uuid.uuid4().hex[:8]}"
    with (platform.tmp / "trivial-worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [*TRIVIAL, "worker", "--address", address, "--task-queue", queue],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        out = subprocess.run(
            [
                *TRIVIAL,
                "client",
                *("--address", address, "--task-queue", queue),
                *("--concurrency", str(concurrency), "--per-loop", str(per_loop)),
                *("--signals", str(signals)),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=4, help="per charger, back to back")
    parser.add_argument("--meter-values", type=int, default=10)
    parser.add_argument("--load-procs", type=int, default=2)
    parser.add_argument("--ramp-s", type=float, default=5.0)
    parser.add_argument("--bill-timeout-s", type=float, default=900.0)
    parser.add_argument(
        "--baseline-signals",
        type=int,
        help="signals per trivial workflow (default: what each session's workflow received)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="polaris-sessions-"))
    os.chmod(tmp, 0o755)
    print(f"-- platform in {tmp}", flush=True)
    platform = start_platform(tmp, args.chargers)
    try:
        print(f"-- {args.chargers} chargers x {args.sessions} sessions", flush=True)
        extra = ["--sessions", str(args.sessions), "--meter-values", str(args.meter_values)]
        start_at, results = run_load(platform, args.chargers, args.load_procs, extra, args.ramp_s)
        load = merge(results)
        sessions = load["sessions"]
        tx_ids = [s["transaction_id"] for s in sessions]
        billed, last = wait_billed(platform, tx_ids, args.bill_timeout_s)
        problems = check_billing(platform, sessions)
        signals = args.baseline_signals or round(signals_per_session(platform, tx_ids))
        print(f"-- baseline: trivial workflow with {signals} signals + 1 activity", flush=True)
        base = baseline(platform, args.chargers, args.sessions, signals)
    finally:
        platform.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)

    elapsed = (last - start_at) if last else float("nan")
    ours = billed / elapsed if last else 0.0
    ratio = ours / base["workflows_per_s"] if base["workflows_per_s"] else 0.0
    expected = args.chargers * args.sessions
    print(
        "\n".join(
            [
                "",
                f"chargers {args.chargers} (load processes {args.load_procs}), sessions per"
                f" charger {args.sessions}, MeterValues per session {args.meter_values}",
                f"sessions completed at the chargers: {len(sessions)} of {expected};"
                f" billed in the sandbox: {billed}; errors: {load['errors'] or 0};"
                f" charger failures: {load['charger_failures']}",
                "",
                "| | completed | elapsed s | per second |",
                "|---|---|---|---|",
                f"| sessions, billed in the sandbox | {billed} | {elapsed:.1f} | {ours:.2f} |",
                f"| trivial workflow ({signals} signals + 1 activity) | {base['workflows']} |"
                f" {base['elapsed_s']} | {base['workflows_per_s']} |",
                "",
                f"ratio sessions / trivial workflows: {ratio:.2f} (aim >= 0.5)",
                "",
                "p50 / p99 ms at the charger: "
                + ", ".join(
                    f"{a} {f['p50_ms']:.0f} / {f['p99_ms']:.0f}"
                    for a, f in sorted(load["actions"].items())
                ),
                "billing exact: " + ("yes" if not problems else f"NO: {problems[:5]}"),
            ]
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sessions_per_s": ours,
                    "billed": billed,
                    "elapsed_s": elapsed,
                    "baseline": base,
                    "ratio": ratio,
                    "load": {k: v for k, v in load.items() if k != "sessions"},
                    "problems": problems,
                },
                indent=2,
            )
        )
    if problems or billed < expected:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Gateway benchmark: our gateway vs. a bare ``ocpp`` central system, in the same run.

    .venv/bin/python -m bench.gateway_load --chargers 1000

1. Starts the bare baseline (``bench.bare_central_system``) and runs the load generator
   (``bench.load``, its own process) against it.
2. Starts a throw-away platform: embedded PostgreSQL in a temp dir (migrated, N cards seeded),
   the Temporal dev server, a worker and the gateway (``polaris worker`` / ``polaris gateway``),
   and runs the same load against the gateway.
3. Prints both summaries side by side with the ratios the issue asks for.

Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from cli.embedded_postgres import EmbeddedPostgres, port_is_open
from cli.embedded_temporal import dev_server_command
from db.migrate import upgrade

ACTIONS = ("Authorize", "StartTransaction", "MeterValues", "StopTransaction")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_is_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} did not open")
        time.sleep(0.2)


def _load(url: str, args: argparse.Namespace, label: str) -> dict[str, Any]:
    print(f"-- load: {args.chargers} chargers against {label} ({url})", flush=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--url",
            url,
            "--chargers",
            str(args.chargers),
            "--sessions",
            str(args.sessions),
            "--meter-values",
            str(args.meter_values),
            "--burst",
            str(args.burst),
            "--think-s",
            str(args.think_s),
            "--ramp-s",
            str(args.ramp_s),
            "--spread-s",
            str(args.spread_s),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _seed_cards(database_url: str, count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ev_cards (id_tag, is_active, blocked, max_concurrent_sessions, created_at)"
            " SELECT 'BT' || lpad(i::text, 5, '0'), true, false, 5, now()"
            " FROM generate_series(0, %s) AS i ON CONFLICT DO NOTHING",
            (count - 1,),
        )
        conn.execute(
            "INSERT INTO user_mappings (user_id, public_id, id_tag, billing_mode, is_active,"
            " created_at) SELECT 'bench-user-' || i, lpad(i::text, 8, '0'),"
            " 'BT' || lpad(i::text, 5, '0'), 'usage', true, now()"
            " FROM generate_series(0, %s) AS i ON CONFLICT DO NOTHING",
            (count - 1,),
        )


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` on a running process (pip install py-spy; not a project dependency)."""
    return subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "50",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _with_cpu(pid: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s summary plus the CPU time the server process used meanwhile, per message
    (on a shared machine a server's throughput says how much CPU it got, this what it needed)."""
    server = psutil.Process(pid)
    before = sum(server.cpu_times()[:2])
    result = run()
    used = sum(server.cpu_times()[:2]) - before
    result["server_cpu_s"] = round(used, 2)
    result["server_cpu_ms_per_message"] = round(1000 * used / max(result["messages"], 1), 3)
    return result


def _bare(args: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_central_system", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        return _with_cpu(proc.pid, lambda: _load(f"ws://127.0.0.1:{port}/ocpp", args, "bare"))
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def platform(
    tmp: Path,
    *,
    cards: int,
    platform_log: Path | None = None,
    profile: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throw-away platform (PostgreSQL, Temporal, billing sandbox, worker, gateway): yields the
    gateway's charger URL and its process."""
    pg = EmbeddedPostgres(tmp / "pg", port=_free_port())
    procs: list[subprocess.Popen[bytes]] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        pg.start()
        upgrade(pg.url())
        _seed_cards(pg.url(), cards)
        temporal_port, gateway_port = _free_port(), _free_port()
        log = (platform_log or tmp / "platform.log").open("wb")
        procs.append(
            subprocess.Popen(
                dev_server_command(port=temporal_port, ui_port=None, db_file=tmp / "temporal.db"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_port(temporal_port)
        lago_port = _free_port()
        env = {
            **os.environ,
            "POLARIS_ENV": "test",
            "POLARIS_DATA_DIR": str(tmp / "data"),
            "POLARIS_DATABASE_URL": pg.url(),
            "POLARIS_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "POLARIS_GATEWAY_PORT": str(gateway_port),
            "POLARIS_GATEWAY_AUTO_REGISTER": "true",
            # The simulated chargers send MeterValues back to back, faster than any charger in
            # the field: the per-connection frame budget would measure itself, not the gateway.
            "POLARIS_GATEWAY_MAX_FRAMES_PER_S": "0",
            "POLARIS_LOG_LEVEL": "WARNING",
            "POLARIS_LAGO_API_URL": f"http://127.0.0.1:{lago_port}",
            "POLARIS_LAGO_API_KEY": "bench-key",
            # Real processes refuse the secrets the repository publishes (config/startup.py).
            "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
            "POLARIS_AUTH_INTERNAL_TOKEN": secrets.token_urlsafe(32),
            "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
            **(extra_env or {}),
        }
        # The billing sandbox stands in for Lago, so billing runs as it would in production.
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sandbox.lago", "--port", str(lago_port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_port(lago_port)
        for command in ("worker", "gateway"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", command],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_port(gateway_port)
        if profile:
            # Sampling profiles of the gateway and the worker while the load runs.
            profile.mkdir(parents=True, exist_ok=True)
            for name, proc in (("worker", procs[-2]), ("gateway", procs[-1])):
                spies.append(_py_spy(proc.pid, profile / f"{name}.collapsed"))
        yield f"ws://127.0.0.1:{gateway_port}/ocpp", procs[-1]
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.destroy()


def _cpu_by_role(tmp: Path) -> dict[str, float]:
    """CPU seconds (user + system) so far of every process of this run, by role: the platform's
    processes are this script's descendants, PostgreSQL's are found by their data directory."""
    roles: dict[str, float] = {}
    me = psutil.Process()
    procs = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter(["cmdline"]):
        if str(tmp) in " ".join(p.info["cmdline"] or []):
            procs.setdefault(p.pid, p)
    procs.pop(me.pid, None)
    for p in procs.values():
        try:
            cmd = " ".join(p.cmdline())
            used = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
        role = next(
            (
                name
                for name, marker in (
                    ("load generator", "bench.load"),
                    ("gateway", "cli.main gateway"),
                    ("worker", "cli.main worker"),
                    ("billing sandbox", "sandbox.lago"),
                    ("temporal", "temporal"),
                    ("postgres", "postgres"),
                    ("py-spy", "py-spy"),
                )
                if marker in cmd
            ),
            "other",
        )
        roles[role] = roles.get(role, 0.0) + used
    return roles


def _journal_means(metrics_url: str) -> dict[str, float]:
    """Mean journal write per OCPP action, ms, from the gateway's /metrics (queue wait, the
    group commit and the commit itself: what a charger waits for besides the network)."""
    text = httpx.get(metrics_url, timeout=10).text
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            if line.startswith("polaris_gateway_journal_write_seconds" + suffix):
                action = line.split('action="', 1)[1].split('"', 1)[0]
                into[action] = float(line.rsplit(" ", 1)[1])
    return {a: round(1000 * sums[a] / counts[a], 2) for a in sums if counts.get(a)}


def _gateway(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    metrics_port = _free_port()
    with platform(
        tmp,
        cards=args.chargers,
        platform_log=args.platform_log,
        profile=args.profile,
        extra_env={"POLARIS_GATEWAY_METRICS_PORT": str(metrics_port)},
    ) as (url, gateway):
        before = _cpu_by_role(tmp)
        started = time.monotonic()
        result = _with_cpu(gateway.pid, lambda: _load(url, args, "Polaris gateway"))
        elapsed = time.monotonic() - started
        after = _cpu_by_role(tmp)
        result["cpu_s_by_process"] = {
            role: round(after[role] - before.get(role, 0.0), 1) for role in sorted(after)
        }
        result["load_wall_s"] = round(elapsed, 1)
        try:
            result["journal_mean_ms"] = _journal_means(f"http://127.0.0.1:{metrics_port}/metrics")
        except Exception as exc:  # a figure we could not read is left out, never invented
            print(f"(journal latency not read from /metrics: {exc!r})", flush=True)
        return result


def _row(name: str, bare: dict[str, Any], ours: dict[str, Any]) -> str:
    b, o = bare["actions"].get(name, {}), ours["actions"].get(name, {})
    return (
        f"| {name} | {b.get('p50_ms', '-')} / {b.get('p99_ms', '-')} | "
        f"{o.get('p50_ms', '-')} / {o.get('p99_ms', '-')} |"
    )


def report(bare: dict[str, Any], ours: dict[str, Any]) -> str:
    lines = [
        f"chargers: {ours['chargers']}, sessions per charger: {ours['sessions_per_charger']}",
        "",
        "| action | bare p50 / p99 (ms) | gateway p50 / p99 (ms) |",
        "|---|---|---|",
        *(_row(a, bare, ours) for a in ACTIONS),
        "",
        f"| messages/s overall | {bare['messages_per_s']} | {ours['messages_per_s']} |",
        f"| MeterValues burst msgs/s | {bare['meter_values_burst_per_s']} | "
        f"{ours['meter_values_burst_per_s']} |",
        f"| errors | {bare['errors'] or 0} | {ours['errors'] or 0} |",
        "",
        "MeterValues throughput ratio (gateway / bare): "
        f"{ours['meter_values_burst_per_s'] / max(bare['meter_values_burst_per_s'], 1e-9):.2f}",
        "server process CPU per message, ms (bare / gateway process alone): "
        f"{bare['server_cpu_ms_per_message']} / {ours['server_cpu_ms_per_message']}",
    ]
    if "cpu_s_by_process" in ours:
        cores = sum(ours["cpu_s_by_process"].values()) / max(ours["load_wall_s"], 1e-9)
        lines.append(
            f"CPU seconds during the gateway's {ours['load_wall_s']} s load (all processes, "
            f"{cores:.2f} cores busy on average): "
            + ", ".join(f"{k} {v}" for k, v in ours["cpu_s_by_process"].items())
        )
    if "journal_mean_ms" in ours:
        lines.append(
            "gateway journal write, mean ms (queue + group commit): "
            + ", ".join(f"{k} {v}" for k, v in sorted(ours["journal_mean_ms"].items()))
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--meter-values", type=int, default=3)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--think-s", type=float, default=2.0)
    parser.add_argument("--ramp-s", type=float, default=60.0, help="chargers connect over this")
    parser.add_argument("--spread-s", type=float, default=300.0, help="first taps spread over this")
    parser.add_argument("--json", type=Path, help="also write both raw summaries here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy profiles (collapsed stacks) of the gateway and the worker here",
    )
    parser.add_argument("--platform-log", type=Path, help="keep the platform processes' log here")
    args = parser.parse_args()
    bare = _bare(args)
    with tempfile.TemporaryDirectory(prefix="polaris-bench-") as d:
        os.chmod(d, 0o755)
        ours = _gateway(args, Path(d))
    print(report(bare, ours))
    if args.json:
        args.json.write_text(json.dumps({"bare": bare, "gateway": ours}, indent=2))


if __name__ == "__main__":
    main()

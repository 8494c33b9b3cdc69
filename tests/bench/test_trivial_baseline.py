"""Smoke test of the end-to-end benchmark's baseline (bench/trivial_workflow.py) at a tiny size:
its worker and client as real processes on the test Temporal dev server. Figures are never
checked here (speed is measured in bench/, not in tests); only that every workflow completed
with the signals it was sent."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

TRIVIAL = [sys.executable, "-m", "bench.trivial_workflow"]


def test_the_baseline_completes_every_workflow(temporal_address: str) -> None:
    queue = f"bench-smoke-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [*TRIVIAL, "worker", "--address", temporal_address, "--task-queue", queue],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = subprocess.run(
            [
                *TRIVIAL,
                "client",
                *("--address", temporal_address, "--task-queue", queue),
                *("--concurrency", "3", "--per-loop", "2", "--signals", "3"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        worker.terminate()
        worker.wait(30)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["workflows"] == 6
    assert result["signals_per_workflow"] == 3
    assert result["workflows_per_s"] > 0

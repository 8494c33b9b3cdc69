"""The baseline for end-to-end sessions: a trivial Temporal workflow, on the same server.

Each workflow is started by a signal (signal-with-start, as the gateway's outbox relay starts a
session), receives ``--signals`` signals in all, then runs one activity and completes. The
client runs ``--concurrency`` loops side by side (as many as there are simulated chargers), each
starting ``--per-loop`` workflows one after the other and waiting for each one's result.

    python -m bench.trivial_workflow worker --address 127.0.0.1:7233 --task-queue q
    python -m bench.trivial_workflow client --address 127.0.0.1:7233 --task-queue q \\
        --concurrency 50 --per-loop 4 --signals 4

The client prints one JSON document: workflows completed, the wall-clock time of the first start
and of the last completion, and workflows per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

SIGNAL = "event"


@activity.defn(name="bench_trivial_activity")
async def trivial_activity(received: int) -> int:
    return received


@workflow.defn(name="BenchTrivial")
class TrivialWorkflow:
    def __init__(self) -> None:
        self.received = 0

    @workflow.signal(name=SIGNAL)
    def event(self, n: int) -> None:
        self.received += 1

    @workflow.run
    async def run(self, signals: int) -> int:
        await workflow.wait_condition(lambda: self.received >= signals)
        return await workflow.execute_activity(
            trivial_activity, self.received, start_to_close_timeout=timedelta(seconds=60)
        )


async def run_worker(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[TrivialWorkflow],
        activities=[trivial_activity],
    )
    await worker.run()


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    client = await Client.connect(args.address)
    done: list[float] = []
    prefix = uuid.uuid4().hex[:8]

    async def loop(n: int) -> None:
        for k in range(args.per_loop):
            handle = await client.start_workflow(
                TrivialWorkflow.run,
                args.signals,
                id=f"bench-trivial-{prefix}-{n}-{k}",
                task_queue=args.task_queue,
                start_signal=SIGNAL,
                start_signal_args=[0],
            )
            for s in range(1, args.signals):
                await handle.signal(SIGNAL, s)
            await handle.result()
            done.append(time.time())

    started = time.time()
    await asyncio.gather(*(loop(n) for n in range(args.concurrency)))
    elapsed = max(done) - started
    return {
        "workflows": len(done),
        "signals_per_workflow": args.signals,
        "started_at": started,
        "last_done_at": max(done),
        "elapsed_s": round(elapsed, 2),
        "workflows_per_s": round(len(done) / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=("worker", "client"))
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--per-loop", type=int, default=1)
    parser.add_argument("--signals", type=int, default=4)
    args = parser.parse_args()
    if args.role == "worker":
        asyncio.run(run_worker(args.address, args.task_queue))
    else:
        json.dump(asyncio.run(run_client(args)), sys.stdout)
        print()


if __name__ == "__main__":
    main()

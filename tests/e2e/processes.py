"""Real platform processes for end-to-end tests: start, kill (any signal), restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cli.embedded_temporal import dev_server_command
from tests.helpers import wait_port


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.starts += 1
        log = self.log_file.open("ab")
        log.write(f"\n==== start #{self.starts} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.port is not None:
            wait_port(self.port, timeout=90)

    def kill(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 30) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def restart(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self.kill(sig)
        self.start()

    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def temporal_process(tmp: Path, port: int) -> ManagedProcess:
    return ManagedProcess(
        "temporal",
        dev_server_command(port=port, ui_port=None, db_file=tmp / "temporal.db"),
        tmp,
        port=port,
    )


def polaris_process(
    name: str, command: str, tmp: Path, env: dict[str, str], port: int | None = None
) -> ManagedProcess:
    return ManagedProcess(
        name, [sys.executable, "-m", "cli.main", command], tmp, env=env, port=port
    )

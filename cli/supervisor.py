"""A small process supervisor for ``polaris dev``.

Runs each child in its own process group, streams its output with a coloured ``name |`` prefix,
restarts a child that dies (exponential backoff, reset after a minute of good health), and stops
everything in reverse start order on request. Children also get ``PR_SET_PDEATHSIG`` so that they
die with the supervisor even if it is killed with SIGKILL: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1
COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93"]
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildFailed(RuntimeError):
    """A child could not be started (it exited, or its ready check failed)."""


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    # Inherited variables the child must not see (secrets it has no use for).
    env_remove: frozenset[str] = frozenset()
    cwd: str | None = None
    # Awaited after (re)start; raise to report the child as not ready.
    ready: Callable[[], Awaitable[None]] | None = None
    stop_timeout_s: float = 15.0

    def full_env(self) -> dict[str, str]:
        """What the child runs with: this process's environment, ``env`` over it, minus
        ``env_remove``."""
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        for name in self.env_remove:
            env.pop(name, None)
        return env


@dataclass
class _Child:
    spec: ChildSpec
    colour: str
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    task: asyncio.Task[None] | None = None
    pump: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, *, out: Callable[[str], None] | None = None) -> None:
        self._children: list[_Child] = []
        self._stopping = asyncio.Event()
        self._out = out or (lambda line: print(line, flush=True))

    def log(self, name: str, line: str, colour: str = "0") -> None:
        prefix = f"{name:>9} |"
        if sys.stdout.isatty():
            prefix = f"\x1b[{colour}m{prefix}\x1b[0m"
        self._out(f"{prefix} {line}")

    async def start(self, spec: ChildSpec) -> None:
        """Start a child and wait until it is ready (its ``ready`` check passes)."""
        child = _Child(spec, COLOURS[len(self._children) % len(COLOURS)])
        self._children.append(child)
        await self._spawn(child)
        if spec.ready is not None:
            await self._wait_ready(child, spec.ready)
        child.task = asyncio.create_task(self._watch(child), name=f"watch-{spec.name}")

    async def _wait_ready(self, child: _Child, ready: Callable[[], Awaitable[None]]) -> None:
        """Wait for the ready check, failing at once if the child exits first."""
        assert child.proc is not None
        check = asyncio.ensure_future(ready())
        exited = asyncio.ensure_future(child.proc.wait())
        done, _ = await asyncio.wait({check, exited}, return_when=asyncio.FIRST_COMPLETED)
        if check in done:
            exited.cancel()
            check.result()
            return
        check.cancel()
        raise ChildFailed(f"{child.spec.name} exited with {exited.result()} before it was ready")

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        env = spec.full_env()
        child.proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            cwd=spec.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.pump = asyncio.create_task(self._pump(child, child.proc))

    async def _pump(self, child: _Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.log(child.spec.name, raw.decode(errors="replace").rstrip(), child.colour)

    async def _watch(self, child: _Child) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            assert child.proc is not None
            started = time.monotonic()
            code = await child.proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > HEALTHY_AFTER_S:
                backoff = 1.0
            self.log(
                child.spec.name, f"exited with {code}; restarting in {backoff:.0f}s", child.colour
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
                return
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            child.restarts += 1
            await self._spawn(child)

    def pids(self) -> dict[str, int | None]:
        return {c.spec.name: c.proc.pid if c.proc else None for c in self._children}

    async def stop(self) -> None:
        """Stop all children, last started first: SIGTERM, then SIGKILL after the timeout."""
        self._stopping.set()
        for child in reversed(self._children):
            if child.task is not None:
                child.task.cancel()
            proc = child.proc
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), child.spec.stop_timeout_s)
            except TimeoutError:
                self.log(child.spec.name, "did not stop in time; killing", child.colour)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            else:
                # Reap anything left in the child's process group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            self.log(child.spec.name, f"stopped ({proc.returncode})", child.colour)

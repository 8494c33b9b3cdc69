"""The worker writes the bytecode caches of the modules its sandbox re-imports for every run, even
under PYTHONDONTWRITEBYTECODE (worker.compile_sandboxed_modules): without them every workflow run
compiled the workflow's source again."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import workflows.charging_session

ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_writes_the_workflow_bytecode_even_when_python_would_not(
    tmp_path: Path,
) -> None:
    source = Path(workflows.charging_session.__file__)
    # A private cache location, so the test neither depends on nor disturbs the checkout's.
    prefix = tmp_path / "pycache"
    cached = Path(
        importlib.util.cache_from_source(str(source)).replace(
            str(source.parent / "__pycache__"), str(prefix) + str(source.parent)
        )
    )
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(prefix),
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, "-c", "import worker; worker.workflow_runner()"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    assert cached.is_file(), f"no bytecode cache at {cached}"
    # And it is the one the import machinery reads: importing the workflow compiles none of the
    # sandboxed packages' modules from source.
    check = (
        "import importlib.machinery as m, sys\n"
        "roots = tuple(sys.argv[1:])\n"
        "compiled = []\n"
        "real = m.SourceFileLoader.source_to_code\n"
        "def spy(self, data, path, *a, **k):\n"
        "    if str(path).startswith(roots):\n"
        "        compiled.append(path)\n"
        "    return real(self, data, path, *a, **k)\n"
        "m.SourceFileLoader.source_to_code = spy\n"
        "import workflows.charging_session\n"
        "print(compiled)\n"
        "sys.exit(len(compiled))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        cwd=ROOT,
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"compiled from source: {done.stdout} {done.stderr}"

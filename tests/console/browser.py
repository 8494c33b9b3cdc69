"""The browser side of the console tests: a real Chromium for Playwright, axe-core checks.

Chromium: ``/usr/bin/chromium`` (Debian's package) when present; else, as root with apt,
``apt-get install -y chromium``; else Playwright's own download (``playwright install chromium``),
where the network allows it. ``POLARIS_TEST_CHROMIUM`` names another executable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIR = ROOT / "api" / "console"
AXE = CONSOLE_DIR / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "console"
SCREENSHOTS = ROOT / "docs" / "screenshots"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")


class BrowserUnavailable(RuntimeError):
    pass


def _debian_chromium() -> str | None:
    for candidate in (os.environ.get("POLARIS_TEST_CHROMIUM"), str(DEBIAN_CHROMIUM)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found


def _apt_install() -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return False
    return True


def _playwright_install() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "playwright", "install", "chromium"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.returncode == 0


def chromium_executable() -> str | None:
    """A Chromium to launch: its path, or None for Playwright's own (installed here)."""
    found = _debian_chromium()
    if found:
        return found
    if _apt_install():
        found = _debian_chromium()
        if found:
            return found
    if _playwright_install():
        return None
    raise BrowserUnavailable(
        "no Chromium: install Debian's `chromium` package (apt-get install -y chromium) or run "
        "`python -m playwright install --with-deps chromium`"
    )


def ensure_console_assets() -> None:
    """``npm ci`` in api/console/ when its node_modules is missing (the Makefile does it too)."""
    lock = CONSOLE_DIR / "package-lock.json"
    modules = CONSOLE_DIR / "node_modules"
    marker = modules / ".package-lock.json"
    if marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BrowserUnavailable("npm is needed to install the console's assets")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=CONSOLE_DIR,
        check=True,
        timeout=600,
    )


SERIOUS = ("serious", "critical")


async def check_accessibility(page: Any, what: str = "") -> None:
    """Run axe-core (from node_modules, never a CDN) on the page: no serious/critical violation."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async () => {
            const r = await window.axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5)
                .map(n => n.target.join(" ") + " :: " + n.failureSummary)}));
        }"""
    )
    bad = [v for v in result if v.get("impact") in SERIOUS]
    assert not bad, f"axe on {what or page.url}: " + "\n".join(
        f"{v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in bad
    )


async def api_call(page: Any, method: str, path: str, **options: Any) -> Any:
    """Call the API from the signed-in page, as a client would: a JWT from ``POST
    /console/token`` (CSRF-protected), then ``fetch``. ``json=`` or ``text=`` is the body.
    Answers ``{"status": …, "body": …}``."""
    return await page.evaluate(
        """async ([method, path, options]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const t = await fetch("/console/token",
                {method: "POST", headers: {"X-CSRF-Token": csrf}});
            const {token} = await t.json();
            const headers = {Authorization: `Bearer ${token}`};
            let body;
            if (options.json !== undefined) {
                headers["Content-Type"] = "application/json";
                body = JSON.stringify(options.json);
            } else if (options.text !== undefined) {
                headers["Content-Type"] = "application/octet-stream";
                body = options.text;
            }
            const r = await fetch(path, {method, headers, body});
            return {status: r.status, body: await r.json().catch(() => null)};
        }""",
        [method, path, options],
    )

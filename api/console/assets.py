"""The console's browser assets, served by the API process: ours (``static/``) and the npm
packages ``api/console/package.json`` pins (installed by ``npm ci`` in ``api/console/``, see the
Makefile's install step). Nothing comes from a CDN: the console works on a network with no
internet. Only the files listed here are served (no directory listing, no path traversal)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.errors import NotFound

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
STATIC = HERE / "static"

VENDOR: dict[str, Path] = {
    "htmx.min.js": MODULES / "htmx.org" / "dist" / "htmx.min.js",
    "uPlot.iife.min.js": MODULES / "uplot" / "dist" / "uPlot.iife.min.js",
    "uPlot.min.css": MODULES / "uplot" / "dist" / "uPlot.min.css",
    # An ES module whose files import each other without the ".js" suffix.
    "fetch-event-source/index": MODULES / "@microsoft/fetch-event-source/lib/esm/index.js",
    "fetch-event-source/fetch": MODULES / "@microsoft/fetch-event-source/lib/esm/fetch.js",
    "fetch-event-source/parse": MODULES / "@microsoft/fetch-event-source/lib/esm/parse.js",
}

MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

router = APIRouter(prefix="/console/assets", include_in_schema=False)


def _media(path: Path, name: str) -> str:
    return MEDIA.get(path.suffix, "application/octet-stream") if "." in name else "text/javascript"


@router.get("/vendor/{name:path}")
async def vendor(name: str) -> FileResponse:
    path = VENDOR.get(name)
    if path is None or not path.is_file():
        raise NotFound("asset")
    return FileResponse(
        path, media_type=_media(path, name), headers={"cache-control": "public, max-age=3600"}
    )


@router.get("/{name}")
async def static(name: str) -> FileResponse:
    allowed = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    path = allowed.get(name)
    if path is None:
        raise NotFound("asset")
    return FileResponse(path, media_type=_media(path, name), headers={"cache-control": "no-cache"})


def missing_vendor_files() -> list[str]:
    """Vendor files absent (``npm ci`` not run in api/console/)."""
    return [name for name, path in VENDOR.items() if not path.is_file()]

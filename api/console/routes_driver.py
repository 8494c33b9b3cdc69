"""Driver pages (``/console/driver``): the driver's portal. Phase 1 holds the home page only;
the driver pages are built on this module (templates in ``templates/driver/``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.web import SignedIn, api_for, page

router = APIRouter(prefix="/console/driver", include_in_schema=False)


@router.get("")
async def driver_home(request: Request, user: SignedIn) -> Response:
    api = api_for(request, user, acting=True)
    me = await api.get("/api/v1/me")
    return page(request, "driver/home.html", {"title": "My charging", "me": me})

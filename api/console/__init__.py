"""The web console: server-rendered pages (Jinja2 + htmx) served by the API process.

``install(app)`` adds its routes under ``/console`` (operator pages under ``/console/operator``,
driver pages under ``/console/driver``) and turns its errors into pages. See docs/console.md.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.console import (
    assets,
    routes_auth,
    routes_driver,
    routes_operator,
    routes_operator_ops,
    routes_scan,
)
from api.console.api_client import ApiFailure
from api.console.web import ConsoleHttpError, SignInRequired, is_htmx, page


def install(app: FastAPI) -> None:
    for module in (
        assets,
        routes_auth,
        routes_operator,
        routes_operator_ops,
        routes_driver,
        routes_scan,
    ):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        target = "/console/sign-in"
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(ConsoleHttpError)
    async def _error(request: Request, exc: ConsoleHttpError) -> Response:
        return page(
            request,
            "error.html",
            {"title": exc.title, "message": exc.message, "status": exc.status},
            status_code=exc.status,
        )

    @app.exception_handler(ApiFailure)
    async def _api_failure(request: Request, exc: ApiFailure) -> Response:
        # A page's read failed: the API's own status and message, as a page.
        if exc.status == 401:
            return await _sign_in(request, SignInRequired())
        title = {403: "Forbidden", 404: "Not found"}.get(exc.status, "Something went wrong")
        return page(
            request,
            "error.html",
            {"title": title, "message": exc.message, "status": exc.status, "code": exc.code},
            status_code=exc.status if exc.status >= 400 else 500,
        )

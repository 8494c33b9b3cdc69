"""The ASGI app: Lago's ``/api/v1`` behind bearer auth and the contract check, plus sandbox extras.

Layers, outermost first: fault injection → bearer auth → contract validation → routes.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from html import escape
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from sandbox.lago import (
    render,
    routes_catalog,
    routes_customers,
    routes_events,
    routes_invoices,
    routes_wallets,
)
from sandbox.lago.config import FaultSpec, SandboxConfig
from sandbox.lago.contract import (
    ASGIApp,
    ContractMiddleware,
    OpenApiContract,
    Receive,
    Scope,
    Send,
)
from sandbox.lago.core import Sandbox, sandbox_of
from sandbox.lago.errors import LagoError, lago_error_handler
from sandbox.lago.faults import FaultMiddleware
from sandbox.lago.state import now

API_PREFIX = "/api/v1"
API_ROUTES = [
    *routes_catalog.ROUTES,
    *routes_customers.ROUTES,
    *routes_events.ROUTES,
    *routes_invoices.ROUTES,
    *routes_wallets.ROUTES,
]
_UNAUTHORIZED = json.dumps({"status": 401, "error": "Unauthorized"}).encode()


class BearerAuthMiddleware:
    """``Authorization: Bearer <api key>`` on every ``/api/v1`` request, answered like Lago."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(API_PREFIX + "/"):
            header = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(header, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_UNAUTHORIZED)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _UNAUTHORIZED})
                return
        await self.app(scope, receive, send)


def implemented_operations(contract: OpenApiContract) -> set[str]:
    """The contract operations our routes implement; a route the document lacks is an error."""
    keys = set()
    for route in API_ROUTES:
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op = contract.find_by_template(method, route.path)
            if op is None:
                raise RuntimeError(
                    f"route {method} {route.path} is not in the Lago OpenAPI document"
                )
            keys.add(op.key)
    return keys


# -- sandbox-only endpoints ----------------------------------------------------------------


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _signed(sb: Sandbox, request: Request) -> bool:
    """The link's signature (sandbox/lago/links.py) covers this very path."""
    return sb.links.valid(request.url.path, request.query_params)


async def invoice_pdf(request: Request) -> Response:
    sb = sandbox_of(request)
    inv = sb.state.invoices.get(request.path_params["lago_id"])
    if inv is None or not inv.get("file_url") or not _signed(sb, request):
        return JSONResponse({"status": 404, "error": "Not Found"}, status_code=404)
    text = f"Sandbox invoice {inv['number']} total {inv['total_amount_cents']} {inv['currency']}"
    pdf = (
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        "2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
        f"% {text}\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )
    return Response(pdf.encode(), media_type="application/pdf")


async def portal(request: Request) -> Response:
    sb = sandbox_of(request)
    cust = sb.state.customers.get(request.path_params["external_id"])
    if cust is None or not _signed(sb, request):
        return HTMLResponse("<h1>Unknown customer</h1>", status_code=404)
    rows = "".join(
        f"<li>{escape(i['number'])}: {i['total_amount_cents']} {escape(i['currency'])}"
        f" ({escape(i['status'])}, {escape(i['payment_status'])})</li>"
        for i in sb.state.invoices.values()
        if i["_external_customer_id"] == cust["external_id"]
    )
    name = escape(str(cust.get("name") or cust["external_id"]))
    return HTMLResponse(f"<h1>Sandbox customer portal: {name}</h1><ul>{rows}</ul>")


async def add_fault(request: Request) -> Response:
    sb = sandbox_of(request)
    try:
        fault = FaultSpec.from_dict(await request.json())
    except (ValueError, TypeError, AttributeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    sb.faults.append(fault)
    return JSONResponse({"fault": fault.to_dict()}, status_code=201)


async def list_faults(request: Request) -> Response:
    sb = sandbox_of(request)
    hits = request.app.state.fault_middleware.hits
    return JSONResponse({"faults": [f.to_dict() for f in sb.faults], "hits": hits})


async def clear_faults(request: Request) -> Response:
    sandbox_of(request).faults.clear()
    return Response(status_code=204)


async def dump_state(request: Request) -> Response:
    sb = sandbox_of(request)
    return JSONResponse({"state": sb.state.to_dict(), "faults": [f.to_dict() for f in sb.faults]})


async def reset(request: Request) -> Response:
    sb = sandbox_of(request)
    sb.reset()
    sb.faults.clear()
    return Response(status_code=204)


async def list_webhooks(request: Request) -> Response:
    sb = sandbox_of(request)
    return JSONResponse({"webhooks": [w.to_dict() for w in sb.webhooks.sent]})


async def contract_report(request: Request) -> Response:
    sb = sandbox_of(request)
    report: dict[str, Any] = sb.contract_log.to_dict()
    report["implemented"] = sorted(request.app.state.implemented_operations)
    report["errata"] = sb.contract.errata
    return JSONResponse(report)


async def set_payment_status(request: Request) -> Response:
    """Simulate the payment provider: ``{"payment_status": "succeeded" | "failed" | "pending"}``."""
    sb = sandbox_of(request)
    inv = sb.state.invoices.get(request.path_params["lago_id"])
    if inv is None:
        return JSONResponse({"error": "invoice not found"}, status_code=404)
    status = (await request.json()).get("payment_status")
    if status not in ("succeeded", "failed", "pending"):
        return JSONResponse(
            {"error": "payment_status: succeeded | failed | pending"}, status_code=400
        )
    inv["payment_status"] = status
    sb.commit()
    body = render.invoice(inv, sb.state)
    sb.webhooks.emit("invoice.payment_status_updated", "invoice", body)
    return JSONResponse({"invoice": body})


async def run_billing(request: Request) -> Response:
    """Close the current period of every active subscription now and invoice its usage."""
    sb = sandbox_of(request)
    until = now()
    raw = await request.body()
    if raw.strip() and (data := json.loads(raw)).get("until"):
        until = datetime.fromisoformat(str(data["until"]).replace("Z", "+00:00"))
    invoices = []
    for sub in list(sb.state.subscriptions.values()):
        if sub["status"] == "active":
            inv = sb.bill_subscription(
                sub, until=until + timedelta(microseconds=1), terminating=False
            )
            if inv is not None:
                invoices.append(render.invoice(inv, sb.state))
    sb.commit()
    return JSONResponse({"invoices": invoices})


ADMIN_ROUTES = [
    Route("/faults", add_fault, methods=["POST"]),
    Route("/faults", list_faults, methods=["GET"]),
    Route("/faults", clear_faults, methods=["DELETE"]),
    Route("/state", dump_state, methods=["GET"]),
    Route("/reset", reset, methods=["POST"]),
    Route("/webhooks", list_webhooks, methods=["GET"]),
    Route("/contract", contract_report, methods=["GET"]),
    Route("/invoices/{lago_id}/payment_status", set_payment_status, methods=["POST"]),
    Route("/billing/run", run_billing, methods=["POST"]),
]


def create_app(config: SandboxConfig, contract: OpenApiContract | None = None) -> ASGIApp:
    """Build the sandbox. The returned ASGI app's ``.sandbox`` is the running :class:`Sandbox`."""
    if not config.api_key:
        raise ValueError("the Lago sandbox needs an API key")
    contract = contract or OpenApiContract.load()
    sandbox = Sandbox(config, contract)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.stop()

    routes: list[Route | Mount] = [
        Route("/health", health, methods=["GET"]),
        Route("/__sandbox/files/invoices/{lago_id}.pdf", invoice_pdf, methods=["GET"]),
        Route("/__sandbox/portal/{external_id}", portal, methods=["GET"]),
        Mount(API_PREFIX, routes=API_ROUTES),
    ]
    if config.admin_enabled:
        routes.append(Mount("/__sandbox", routes=ADMIN_ROUTES))
    inner = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LagoError: lago_error_handler,
            404: _not_found,
            405: _method_not_allowed,
        },
    )
    inner.state.sandbox = sandbox
    inner.state.implemented_operations = implemented_operations(contract)
    checked = ContractMiddleware(
        inner, contract, sandbox.contract_log, strict=config.strict_contract, base_path=API_PREFIX
    )
    authed = BearerAuthMiddleware(checked, config.api_key)
    faulty = FaultMiddleware(authed, sandbox)
    inner.state.fault_middleware = faulty
    return _SandboxApp(faulty, sandbox)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"status": 404, "error": "Not Found", "code": "not_found"}, status_code=404)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    body = {"status": 405, "error": "Method Not Allowed", "code": "not_allowed"}
    return JSONResponse(body, status_code=405)


class _SandboxApp:
    """The outermost ASGI callable, carrying a handle on the sandbox for embedding and tests."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

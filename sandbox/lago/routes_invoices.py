"""Invoices: one-off (add-on fees), list/get, finalize, void, retry payment, download."""

from __future__ import annotations

from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.lago import render
from sandbox.lago.core import Sandbox, sandbox_of
from sandbox.lago.errors import invalid, json_body, not_allowed, not_found, ok, paginate
from sandbox.lago.money import dec_str, from_minor, to_decimal, to_minor
from sandbox.lago.state import Record, iso, new_id, now


async def create_one_off(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["invoice"]
    cust = sb.state.customers.get(data["external_customer_id"])
    if cust is None:
        raise not_found("customer")
    if not data["fees"]:
        raise invalid(fees="no_fees")
    add_ons = []
    for fee in data["fees"]:
        add_on = sb.state.add_ons.get(fee["add_on_code"])
        if add_on is None:
            raise not_found("add_on")
        add_ons.append(add_on)
    currency = data.get("currency") or cust.get("currency") or add_ons[0]["amount_currency"]
    if cust.get("currency") and cust["currency"] != currency:
        raise invalid(currency="currencies_does_not_match")
    if cust.get("currency") is None:
        cust["currency"] = currency
    fees = []
    moment = iso(now())
    for index, (fee, add_on) in enumerate(zip(data["fees"], add_ons, strict=True)):
        try:
            units = to_decimal(fee.get("units"), "1")
        except ValueError as exc:
            raise invalid(**{f"fees.{index}.units": "invalid_value"}) from exc
        if units <= 0:
            raise invalid(**{f"fees.{index}.units": "invalid_value"})
        unit_cents = int(fee.get("unit_amount_cents", add_on["amount_cents"]))
        cents = to_minor(from_minor(unit_cents, currency) * units, currency)
        fees.append(
            {
                "lago_id": new_id(),
                "lago_customer_id": cust["lago_id"],
                "external_customer_id": cust["external_id"],
                "amount_cents": cents,
                "precise_amount": dec_str(from_minor(cents, currency)),
                "amount_currency": currency,
                "taxes_amount_cents": 0,
                "taxes_rate": 0.0,
                "units": dec_str(units),
                "precise_unit_amount": dec_str(from_minor(unit_cents, currency)),
                "total_aggregated_units": dec_str(units),
                "total_amount_cents": cents,
                "total_amount_currency": currency,
                "events_count": None,
                "pay_in_advance": False,
                "invoiceable": True,
                "from_date": fee.get("from_datetime"),
                "to_date": fee.get("to_datetime"),
                "payment_status": "pending",
                "created_at": moment,
                "description": fee.get("description", add_on.get("description")),
                "sub_total_excluding_taxes_amount_cents": cents,
                "sub_total_excluding_taxes_precise_amount_cents": dec_str(Decimal(cents)),
                "item": {
                    "type": "add_on",
                    "code": add_on["code"],
                    "name": add_on["name"],
                    "invoice_display_name": fee.get("invoice_display_name")
                    or add_on.get("invoice_display_name")
                    or add_on["name"],
                    "lago_item_id": add_on["lago_id"],
                    "item_type": "AddOn",
                },
            }
        )
    inv = sb.new_invoice(cust, invoice_type="one_off", currency=currency, fees=fees)
    sb.commit()
    return ok({"invoice": render.invoice(inv, sb.state)})


async def list_invoices(request: Request) -> Response:
    sb = sandbox_of(request)
    q = request.query_params
    customer_id = q.get("external_customer_id")
    statuses = q.getlist("statuses[]") or ([q["status"]] if q.get("status") else None)
    payment = q.getlist("payment_statuses[]") or (
        [q["payment_status"]] if q.get("payment_status") else None
    )
    kind = q.get("invoice_type")
    items = [
        inv
        for inv in sb.state.invoices.values()
        if (customer_id is None or inv["_external_customer_id"] == customer_id)
        and (statuses is None or inv["status"] in statuses)
        and (payment is None or inv["payment_status"] in payment)
        and (kind is None or inv["invoice_type"] == kind)
    ]
    items.sort(key=lambda inv: (inv["created_at"], inv["number"]))
    rendered = [render.invoice(inv, sb.state, with_fees=False) for inv in items]
    return ok(paginate(request, rendered, "invoices"))


def _invoice(sb: Sandbox, request: Request) -> Record:
    inv = sb.state.invoices.get(request.path_params["lago_id"])
    if inv is None:
        raise not_found("invoice")
    return inv


async def get_invoice(request: Request) -> Response:
    sb = sandbox_of(request)
    return ok({"invoice": render.invoice(_invoice(sb, request), sb.state)})


async def finalize_invoice(request: Request) -> Response:
    sb = sandbox_of(request)
    inv = _invoice(sb, request)
    sb.finalize(inv)
    sb.commit()
    return ok({"invoice": render.invoice(inv, sb.state)})


async def void_invoice(request: Request) -> Response:
    sb = sandbox_of(request)
    inv = _invoice(sb, request)
    if inv["status"] != "finalized" or inv["payment_status"] == "succeeded":
        raise not_allowed("not_voidable")
    inv["status"] = "voided"
    inv["voided_at"] = inv["updated_at"] = iso(now())
    sb.commit()
    body = render.invoice(inv, sb.state)
    sb.webhooks.emit("invoice.voided", "invoice", body)
    return ok({"invoice": body})


async def retry_payment(request: Request) -> Response:
    sb = sandbox_of(request)
    inv = _invoice(sb, request)
    if inv["status"] != "finalized" or inv["payment_status"] == "succeeded":
        raise not_allowed("invalid_status")
    inv["payment_status"] = "pending"
    inv["_payment_attempts"] = int(inv.get("_payment_attempts", 0)) + 1
    inv["updated_at"] = iso(now())
    sb.commit()
    return Response(status_code=200)


async def download_invoice(request: Request) -> Response:
    sb = sandbox_of(request)
    inv = _invoice(sb, request)
    sb.generate_pdf_soon(inv)
    return ok({"invoice": render.invoice(inv, sb.state)})


ROUTES = [
    Route("/invoices", create_one_off, methods=["POST"]),
    Route("/invoices", list_invoices, methods=["GET"]),
    Route("/invoices/{lago_id}", get_invoice, methods=["GET"]),
    Route("/invoices/{lago_id}/finalize", finalize_invoice, methods=["PUT"]),
    Route("/invoices/{lago_id}/void", void_invoice, methods=["POST"]),
    Route("/invoices/{lago_id}/retry_payment", retry_payment, methods=["POST"]),
    Route("/invoices/{lago_id}/download", download_invoice, methods=["POST"]),
]

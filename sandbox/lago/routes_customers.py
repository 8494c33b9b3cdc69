"""Customers, subscriptions, current usage and the customer portal link."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.lago import render
from sandbox.lago.core import Sandbox, sandbox_of
from sandbox.lago.errors import invalid, json_body, not_found, ok, paginate
from sandbox.lago.links import PORTAL_TTL_S
from sandbox.lago.state import Record, iso, new_id, now, parse_time
from sandbox.lago.usage import current_usage

_CUSTOMER_FIELDS = (
    "address_line1",
    "address_line2",
    "city",
    "country",
    "currency",
    "email",
    "legal_name",
    "legal_number",
    "logo_url",
    "name",
    "firstname",
    "lastname",
    "account_type",
    "customer_type",
    "phone",
    "state",
    "tax_identification_number",
    "timezone",
    "url",
    "zipcode",
    "net_payment_term",
    "finalize_zero_amount_invoice",
    "skip_invoice_custom_sections",
    "billing_configuration",
    "shipping_address",
)


def upsert_customer(sb: Sandbox, data: dict[str, Any]) -> Record:
    external_id = data["external_id"]
    if not str(external_id).strip():
        raise invalid(external_id="value_is_mandatory")
    moment = iso(now())
    cust = sb.state.customers.get(external_id)
    if cust is None:
        seq = sb.state.next_number("customer")
        cust = {
            "lago_id": new_id(),
            "sequential_id": seq,
            "slug": f"SBX-{seq:04d}",
            "external_id": external_id,
            "billing_entity_code": "sandbox",
            "applicable_timezone": "UTC",
            "account_type": "customer",
            "finalize_zero_amount_invoice": "inherit",
            "skip_invoice_custom_sections": False,
            "created_at": moment,
            "updated_at": moment,
            "taxes": [],
        }
        sb.state.customers[external_id] = cust
    for key in _CUSTOMER_FIELDS:
        if key in data:
            cust[key] = data[key]
    if data.get("timezone"):
        cust["applicable_timezone"] = data["timezone"]
    if "metadata" in data:
        cust["_metadata"] = data["metadata"]
    cust["updated_at"] = moment
    return cust


async def create_customer(request: Request) -> Response:
    sb = sandbox_of(request)
    cust = upsert_customer(sb, (await json_body(request))["customer"])
    sb.commit()
    return ok({"customer": render.customer(cust)})


def _customer(sb: Sandbox, external_id: str) -> Record:
    cust = sb.state.customers.get(external_id)
    if cust is None:
        raise not_found("customer")
    return cust


async def get_customer(request: Request) -> Response:
    sb = sandbox_of(request)
    return ok(
        {"customer": render.customer(_customer(sb, request.path_params["external_customer_id"]))}
    )


async def list_customers(request: Request) -> Response:
    sb = sandbox_of(request)
    items = sorted(sb.state.customers.values(), key=lambda c: c["sequential_id"])
    return ok(paginate(request, [render.customer(c) for c in items], "customers"))


async def get_current_usage(request: Request) -> Response:
    sb = sandbox_of(request)
    cust = _customer(sb, request.path_params["external_customer_id"])
    sub_id = request.query_params.get("external_subscription_id")
    if not sub_id:
        raise invalid(external_subscription_id="value_is_mandatory")
    sub = sb.state.subscriptions.get(sub_id)
    if (
        sub is None
        or sub["external_customer_id"] != cust["external_id"]
        or sub["status"] != "active"
    ):
        raise not_found("subscription")
    plan = sb.state.plans.get(sub["plan_code"])
    if plan is None:
        raise not_found("plan")
    return ok({"customer_usage": current_usage(sb.state, sub, plan, now())})


async def get_portal_url(request: Request) -> Response:
    sb = sandbox_of(request)
    cust = _customer(sb, request.path_params["external_customer_id"])
    path = f"/__sandbox/portal/{quote(cust['external_id'], safe='')}"
    url = f"{sb.base_url}{sb.links.sign(path, ttl_s=PORTAL_TTL_S)}"
    return ok({"customer": {"portal_url": url}})


# -- subscriptions -------------------------------------------------------------------------


async def create_subscription(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["subscription"]
    plan = sb.state.plans.get(data["plan_code"])
    if plan is None:
        raise not_found("plan")
    # Lago creates the customer when it does not exist yet.
    cust = sb.state.customers.get(data["external_customer_id"]) or upsert_customer(
        sb, {"external_id": data["external_customer_id"]}
    )
    moment = now()
    sub = sb.state.subscriptions.get(data["external_id"])
    if sub is not None and sub["status"] in ("active", "pending"):
        if sub["external_customer_id"] != cust["external_id"]:
            raise invalid(external_id="value_already_exist")
        if sub["plan_code"] != plan["code"]:  # plan change, applied at once
            sub["previous_plan_code"] = sub["plan_code"]
            sub["plan_code"] = plan["code"]
        if "name" in data:
            sub["name"] = data["name"]
        sb.commit()
        return ok({"subscription": render.subscription(sub, sb.state, extended=True)})
    if sub is not None:  # terminated: Lago refuses to reuse the external id
        raise invalid(external_id="value_already_exist")
    starts = parse_time(data["subscription_at"]) if data.get("subscription_at") else moment
    pending = starts > moment
    sub = {
        "lago_id": new_id(),
        "external_id": data["external_id"],
        "lago_customer_id": cust["lago_id"],
        "external_customer_id": cust["external_id"],
        "billing_time": data.get("billing_time", "calendar"),
        "name": data.get("name"),
        "plan_code": plan["code"],
        "status": "pending" if pending else "active",
        "created_at": iso(moment),
        "canceled_at": None,
        "started_at": None if pending else iso(starts),
        "ending_at": data.get("ending_at"),
        "subscription_at": iso(starts),
        "terminated_at": None,
        "previous_plan_code": None,
        "next_plan_code": None,
        "downgrade_plan_date": None,
        "trial_ended_at": None,
        "current_billing_period_started_at": None,
        "current_billing_period_ending_at": None,
        "on_termination_credit_note": None,
        "on_termination_invoice": "generate",
        "_seq": sb.state.next_number("subscription"),
    }
    sb.state.subscriptions[sub["external_id"]] = sub
    sb.commit()
    sb.webhooks.emit("subscription.started", "subscription", render.subscription(sub, sb.state))
    return ok({"subscription": render.subscription(sub, sb.state, extended=True)})


async def list_subscriptions(request: Request) -> Response:
    sb = sandbox_of(request)
    params = request.query_params
    statuses = params.getlist("status[]") or ["active"]
    customer_id = params.get("external_customer_id")
    plan_code = params.get("plan_code")
    items = [
        s
        for s in sorted(sb.state.subscriptions.values(), key=lambda s: s["_seq"])
        if s["status"] in statuses
        and (customer_id is None or s["external_customer_id"] == customer_id)
        and (plan_code is None or s["plan_code"] == plan_code)
    ]
    return ok(paginate(request, [render.subscription(s, sb.state) for s in items], "subscriptions"))


def _subscription(sb: Sandbox, request: Request) -> Record:
    sub = sb.state.subscriptions.get(request.path_params["external_id"])
    wanted = request.query_params.get("status")
    if sub is None or (wanted and sub["status"] != wanted):
        raise not_found("subscription")
    return sub


async def get_subscription(request: Request) -> Response:
    sb = sandbox_of(request)
    sub = _subscription(sb, request)
    return ok({"subscription": render.subscription(sub, sb.state, extended=True)})


async def terminate_subscription(request: Request) -> Response:
    sb = sandbox_of(request)
    sub = _subscription(sb, request)
    if sub["status"] not in ("active", "pending"):
        raise not_found("subscription")
    moment = now()
    on_invoice = request.query_params.get("on_termination_invoice", "generate")
    if on_invoice not in ("generate", "skip"):
        raise invalid(on_termination_invoice="invalid_value")
    was_active = sub["status"] == "active"
    sub["on_termination_invoice"] = on_invoice
    if was_active and on_invoice == "generate":
        sb.bill_subscription(sub, until=moment, terminating=True)
    sub["status"] = "terminated" if was_active else "canceled"
    sub["terminated_at" if was_active else "canceled_at"] = iso(moment)
    sb.commit()
    body = render.subscription(sub, sb.state)
    sb.webhooks.emit("subscription.terminated", "subscription", body)
    return ok({"subscription": body})


ROUTES = [
    Route("/customers", create_customer, methods=["POST"]),
    Route("/customers", list_customers, methods=["GET"]),
    Route("/customers/{external_customer_id}", get_customer, methods=["GET"]),
    Route("/customers/{external_customer_id}/current_usage", get_current_usage, methods=["GET"]),
    Route("/customers/{external_customer_id}/portal_url", get_portal_url, methods=["GET"]),
    Route("/subscriptions", create_subscription, methods=["POST"]),
    Route("/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/subscriptions/{external_id}", get_subscription, methods=["GET"]),
    Route("/subscriptions/{external_id}", terminate_subscription, methods=["DELETE"]),
]

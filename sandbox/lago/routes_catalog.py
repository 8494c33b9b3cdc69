"""Billable metrics, plans and add-ons."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.lago import render
from sandbox.lago.core import sandbox_of
from sandbox.lago.errors import invalid, json_body, not_found, ok, paginate
from sandbox.lago.money import to_decimal
from sandbox.lago.state import Record, iso, new_id, now


def _sorted(records: dict[str, Record]) -> list[Record]:
    return sorted(records.values(), key=lambda r: (r["created_at"], r.get("_seq", 0)))


# -- billable metrics ----------------------------------------------------------------------


async def create_billable_metric(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["billable_metric"]
    for key in ("name", "code", "aggregation_type"):
        if not data.get(key):
            raise invalid(**{key: "value_is_mandatory"})
    if data["code"] in sb.state.billable_metrics:
        raise invalid(code="value_already_exist")
    if data["aggregation_type"] != "count_agg" and not data.get("field_name"):
        raise invalid(field_name="value_is_mandatory")
    metric: Record = {
        "lago_id": new_id(),
        "name": data["name"],
        "code": data["code"],
        "description": data.get("description"),
        "recurring": bool(data.get("recurring", False)),
        "rounding_function": data.get("rounding_function"),
        "rounding_precision": data.get("rounding_precision"),
        "created_at": iso(now()),
        "field_name": data.get("field_name"),
        "aggregation_type": data["aggregation_type"],
        "weighted_interval": data.get("weighted_interval"),
        "filters": data.get("filters", []),
        "_seq": sb.state.next_number("billable_metric"),
    }
    if data.get("expression"):
        metric["expression"] = data["expression"]
    sb.state.billable_metrics[metric["code"]] = metric
    sb.commit()
    return ok({"billable_metric": render.plain(metric)})


async def get_billable_metric(request: Request) -> Response:
    sb = sandbox_of(request)
    metric = sb.state.billable_metrics.get(request.path_params["code"])
    if metric is None:
        raise not_found("billable_metric")
    return ok({"billable_metric": render.plain(metric)})


async def list_billable_metrics(request: Request) -> Response:
    sb = sandbox_of(request)
    items = [render.plain(m) for m in _sorted(sb.state.billable_metrics)]
    return ok(paginate(request, items, "billable_metrics"))


# -- plans ---------------------------------------------------------------------------------


def _charge(sb: Any, data: dict[str, Any], index: int) -> Record:
    metric = next(
        (
            m
            for m in sb.state.billable_metrics.values()
            if m["lago_id"] == data.get("billable_metric_id")
        ),
        None,
    )
    if metric is None:
        raise not_found("billable_metric")
    props = dict(data.get("properties") or {})
    try:
        for key in ("amount", "fixed_amount", "rate"):
            if key in props:
                to_decimal(props[key])
    except ValueError as exc:
        raise invalid(**{f"charges.{index}.properties": "invalid_amount"}) from exc
    return {
        "lago_id": new_id(),
        "lago_billable_metric_id": metric["lago_id"],
        "billable_metric_code": metric["code"],
        "code": data.get("code") or metric["code"],
        "created_at": iso(now()),
        "charge_model": data["charge_model"],
        "invoiceable": bool(data.get("invoiceable", True)),
        "invoice_display_name": data.get("invoice_display_name") or metric["name"],
        "regroup_paid_fees": data.get("regroup_paid_fees"),
        "pay_in_advance": bool(data.get("pay_in_advance", False)),
        "prorated": bool(data.get("prorated", False)),
        "min_amount_cents": int(data.get("min_amount_cents", 0)),
        "properties": props,
        "filters": [],
        "taxes": [],
    }


async def create_plan(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["plan"]
    if data["code"] in sb.state.plans:
        raise invalid(code="value_already_exist")
    charges = [_charge(sb, c, i) for i, c in enumerate(data.get("charges", []))]
    plan: Record = {
        "lago_id": new_id(),
        "name": data["name"],
        "invoice_display_name": data.get("invoice_display_name"),
        "created_at": iso(now()),
        "code": data["code"],
        "interval": data["interval"],
        "description": data.get("description"),
        "amount_cents": int(data["amount_cents"]),
        "amount_currency": data["amount_currency"],
        "trial_period": data.get("trial_period"),
        "pay_in_advance": bool(data["pay_in_advance"]),
        "bill_charges_monthly": data.get("bill_charges_monthly"),
        "active_subscriptions_count": 0,
        "draft_invoices_count": 0,
        "charges": charges,
        "taxes": [],
        "usage_thresholds": [],
        "_seq": sb.state.next_number("plan"),
    }
    sb.state.plans[plan["code"]] = plan
    sb.commit()
    return ok({"plan": render.plan_obj(plan)})


async def get_plan(request: Request) -> Response:
    sb = sandbox_of(request)
    plan = sb.state.plans.get(request.path_params["code"])
    if plan is None:
        raise not_found("plan")
    return ok({"plan": render.plan_obj(plan)})


async def list_plans(request: Request) -> Response:
    sb = sandbox_of(request)
    items = [render.plan_obj(p) for p in _sorted(sb.state.plans)]
    return ok(paginate(request, items, "plans"))


# -- add-ons -------------------------------------------------------------------------------


async def create_add_on(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["add_on"]
    for key in ("name", "code", "amount_cents", "amount_currency"):
        if data.get(key) in (None, ""):
            raise invalid(**{key: "value_is_mandatory"})
    if data["code"] in sb.state.add_ons:
        raise invalid(code="value_already_exist")
    add_on: Record = {
        "lago_id": new_id(),
        "name": data["name"],
        "invoice_display_name": data.get("invoice_display_name"),
        "code": data["code"],
        "amount_cents": int(data["amount_cents"]),
        "amount_currency": data["amount_currency"],
        "description": data.get("description"),
        "created_at": iso(now()),
        "taxes": [],
        "_seq": sb.state.next_number("add_on"),
    }
    sb.state.add_ons[add_on["code"]] = add_on
    sb.commit()
    return ok({"add_on": render.plain(add_on)})


async def get_add_on(request: Request) -> Response:
    sb = sandbox_of(request)
    add_on = sb.state.add_ons.get(request.path_params["code"])
    if add_on is None:
        raise not_found("add_on")
    return ok({"add_on": render.plain(add_on)})


async def list_add_ons(request: Request) -> Response:
    sb = sandbox_of(request)
    items = [render.plain(a) for a in _sorted(sb.state.add_ons)]
    return ok(paginate(request, items, "add_ons"))


ROUTES = [
    Route("/billable_metrics", create_billable_metric, methods=["POST"]),
    Route("/billable_metrics", list_billable_metrics, methods=["GET"]),
    Route("/billable_metrics/{code}", get_billable_metric, methods=["GET"]),
    Route("/plans", create_plan, methods=["POST"]),
    Route("/plans", list_plans, methods=["GET"]),
    Route("/plans/{code}", get_plan, methods=["GET"]),
    Route("/add_ons", create_add_on, methods=["POST"]),
    Route("/add_ons", list_add_ons, methods=["GET"]),
    Route("/add_ons/{code}", get_add_on, methods=["GET"]),
]

"""Usage events: idempotent by (external_subscription_id, transaction_id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.lago import render
from sandbox.lago.core import Sandbox, sandbox_of
from sandbox.lago.errors import LagoError, invalid, json_body, not_found, ok, paginate
from sandbox.lago.money import to_decimal
from sandbox.lago.state import Record, iso, iso_ms, new_id, now, parse_time
from sandbox.lago.usage import event_time

MAX_BATCH = 100


def _check(sb: Sandbox, data: dict[str, Any], seen: set[tuple[str, str]]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for key in ("transaction_id", "external_subscription_id", "code"):
        if not str(data.get(key, "")).strip():
            errors[key] = ["value_is_mandatory"]
    key_pair = (str(data.get("external_subscription_id")), str(data.get("transaction_id")))
    if not errors and (key_pair in seen or sb.state.find_event(*key_pair) is not None):
        errors["transaction_id"] = ["value_already_exist"]
    try:
        event_time(data.get("timestamp"), now())
    except (ValueError, OverflowError, OSError):
        errors["timestamp"] = ["invalid_format"]
    seen.add(key_pair)
    return errors


def _build(sb: Sandbox, data: dict[str, Any], received: datetime) -> Record:
    sub = sb.state.subscriptions.get(data["external_subscription_id"])
    return {
        "lago_id": new_id(),
        "transaction_id": data["transaction_id"],
        "lago_customer_id": sub["lago_customer_id"] if sub else None,
        "code": data["code"],
        "timestamp": iso_ms(event_time(data.get("timestamp"), received)),
        "precise_total_amount_cents": data.get("precise_total_amount_cents"),
        "properties": dict(data.get("properties") or {}),
        "lago_subscription_id": sub["lago_id"] if sub else None,
        "external_subscription_id": data["external_subscription_id"],
        "created_at": iso(received),
    }


def _post_process(sb: Sandbox, event: Record) -> None:
    """What Lago checks asynchronously after accepting an event: reported by ``event.error``."""
    metric = sb.state.billable_metrics.get(event["code"])
    if metric is None:
        sb.event_error(event, "invalid_code", f"no billable metric with code {event['code']!r}")
        return
    if event["lago_subscription_id"] is None:
        sb.event_error(event, "subscription_not_found", "no subscription with this external id")
        return
    field = metric.get("field_name")
    if metric["aggregation_type"] in ("sum_agg", "max_agg", "latest_agg") and field:
        try:
            to_decimal(event["properties"].get(field))
        except ValueError:
            sb.event_error(event, "value_is_not_valid_number", f"{field} is not a number")


async def create_event(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["event"]
    errors = _check(sb, data, set())
    if errors:
        raise invalid(**errors)
    event = _build(sb, data, now())
    sb.state.add_event(event)
    sb.commit()
    _post_process(sb, event)
    return ok({"event": render.event(event, created=True)})


async def create_batch(request: Request) -> Response:
    sb = sandbox_of(request)
    items = (await json_body(request))["events"]
    if not items:
        raise invalid(events="no_events")
    if len(items) > MAX_BATCH:
        raise invalid(events="too_many_events")
    seen: set[tuple[str, str]] = set()
    details = {str(i): e for i, data in enumerate(items) if (e := _check(sb, data, seen))}
    if details:
        raise LagoError(422, "Unprocessable Entity", "validation_errors", details)
    received = now()
    events = [_build(sb, data, received) for data in items]
    for event in events:
        sb.state.add_event(event)
    sb.commit()
    for event in events:
        _post_process(sb, event)
    return ok({"events": [render.event(e, created=True) for e in events]})


async def get_event(request: Request) -> Response:
    sb = sandbox_of(request)
    tid = request.path_params["transaction_id"]
    event = next((e for e in sb.state.events if e["transaction_id"] == tid), None)
    if event is None:
        raise not_found("event")
    return ok({"event": render.event(event)})


async def list_events(request: Request) -> Response:
    sb = sandbox_of(request)
    q = request.query_params
    sub_id, code = q.get("external_subscription_id"), q.get("code")
    try:
        t_from = parse_time(q["timestamp_from"]) if q.get("timestamp_from") else None
        t_to = parse_time(q["timestamp_to"]) if q.get("timestamp_to") else None
    except ValueError as exc:
        raise invalid(timestamp="invalid_date") from exc
    if q.get("timestamp_from_started_at") in ("true", "1"):
        sub = sb.state.subscriptions.get(sub_id or "")
        if sub is None:
            raise invalid(external_subscription_id="value_is_mandatory")
        started = parse_time(sub.get("started_at") or sub["created_at"])
        t_from = max(t_from, started) if t_from else started
    items = []
    for event in sb.state.events:
        if sub_id and event["external_subscription_id"] != sub_id:
            continue
        if code and event["code"] != code:
            continue
        moment = parse_time(event["timestamp"])
        if (t_from and moment < t_from) or (t_to and moment > t_to):
            continue
        items.append(render.event(event))
    return ok(paginate(request, items, "events"))


ROUTES = [
    Route("/events", create_event, methods=["POST"]),
    Route("/events", list_events, methods=["GET"]),
    Route("/events/batch", create_batch, methods=["POST"]),
    Route("/events/{transaction_id}", get_event, methods=["GET"]),
]

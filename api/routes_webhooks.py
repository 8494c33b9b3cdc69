"""``/api/v1/webhooks``: outgoing webhook endpoints, their deliveries and redelivery. Operators
and admins only (live-checked; drivers 403); every change audited by the service
(``services/webhooks.py``; docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.authz import LiveOperator
from api.services import Services, actor_of
from services import webhooks

# Every error answers the envelope {error, message, issues} (api/errors.py).
router = APIRouter(
    prefix="/api/v1/webhooks",
    tags=["webhooks"],
    responses={
        401: {"description": "`UNAUTHENTICATED` or `SESSION_REVOKED`"},
        403: {"description": "`FORBIDDEN`: not an operator or admin (drivers, impersonation)"},
        404: {"description": "`NOT_FOUND`: no such endpoint or delivery"},
    },
)

EndpointId = Annotated[str, Path(max_length=40)]
DeliveryId = Annotated[str, Path(max_length=40)]


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    owner_user_id: str
    consecutive_failures: int
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deliveries: dict[str, int] | None = None


class EndpointWithSecret(EndpointOut):
    secret: str  # shown once


class RotatedSecret(BaseModel):
    id: str
    secret: str  # shown once
    previous_secret_expires_at: datetime


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: int
    event_type: str
    status: str
    chain: int
    attempts: int
    last_status_code: int | None
    last_error: str | None
    workflow_id: str | None
    created_at: datetime
    finished_at: datetime | None


class AttemptOut(BaseModel):
    chain: int
    attempt: int
    started_at: datetime
    ok: bool
    duration_ms: int
    request: dict[str, Any]
    response: dict[str, Any] | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    attempts_log: list[AttemptOut]


@router.post(
    "/endpoints",
    status_code=201,
    response_model=EndpointWithSecret,
    summary="Create a webhook endpoint",
)
async def create_endpoint(
    body: webhooks.NewEndpoint, principal: LiveOperator, ctx: Services
) -> dict[str, Any]:
    """The answer carries the signing ``secret`` (``whsec_…``): the only time it is shown.
    422 when the URL is not http(s) or points at a non-public address."""
    return await webhooks.create_endpoint(ctx, actor_of(principal), body)


@router.get("/endpoints", response_model=list[EndpointOut], summary="List webhook endpoints")
async def list_endpoints(_: LiveOperator, ctx: Services) -> list[dict[str, Any]]:
    return await webhooks.list_endpoints(ctx)


@router.get(
    "/endpoints/{endpoint_id}", response_model=EndpointOut, summary="Show a webhook endpoint"
)
async def show_endpoint(endpoint_id: EndpointId, _: LiveOperator, ctx: Services) -> dict[str, Any]:
    return await webhooks.show_endpoint(ctx, endpoint_id)


@router.patch(
    "/endpoints/{endpoint_id}", response_model=EndpointOut, summary="Change a webhook endpoint"
)
async def update_endpoint(
    endpoint_id: EndpointId, body: webhooks.EndpointPatch, principal: LiveOperator, ctx: Services
) -> dict[str, Any]:
    """``{"enabled": true}`` re-enables an endpoint disabled for failing (its counters reset)."""
    return await webhooks.update_endpoint(ctx, actor_of(principal), endpoint_id, body)


@router.delete(
    "/endpoints/{endpoint_id}", response_model=EndpointOut, summary="Delete a webhook endpoint"
)
async def delete_endpoint(
    endpoint_id: EndpointId, principal: LiveOperator, ctx: Services
) -> dict[str, Any]:
    return await webhooks.delete_endpoint(ctx, actor_of(principal), endpoint_id)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    response_model=RotatedSecret,
    summary="Rotate an endpoint's signing secret",
)
async def rotate_secret(
    endpoint_id: EndpointId, principal: LiveOperator, ctx: Services
) -> dict[str, Any]:
    """A new secret, shown once; until ``previous_secret_expires_at`` every webhook carries two
    signatures (new, then old), so receivers can switch at their pace."""
    return await webhooks.rotate_secret(ctx, actor_of(principal), endpoint_id)


@router.get("/deliveries", response_model=list[DeliveryOut], summary="List webhook deliveries")
async def list_deliveries(
    _: LiveOperator,
    ctx: Services,
    endpoint: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    return await webhooks.list_deliveries(ctx, endpoint_id=endpoint, status=status, limit=limit)


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="Show a delivery and its attempts",
)
async def show_delivery(delivery_id: DeliveryId, _: LiveOperator, ctx: Services) -> dict[str, Any]:
    return await webhooks.show_delivery(ctx, delivery_id)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    responses={409: {"description": "`CONFLICT`: the delivery is still being attempted"}},
    response_model=DeliveryDetail,
    summary="Deliver again (a new attempt chain)",
)
async def redeliver(
    delivery_id: DeliveryId, principal: LiveOperator, ctx: Services
) -> dict[str, Any]:
    """409 while the delivery is still being attempted; 422 when its endpoint is disabled."""
    return await webhooks.redeliver(ctx, actor_of(principal), delivery_id)

"""Prepaid-credit wallets and their transactions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.lago import render
from sandbox.lago.core import Sandbox, sandbox_of
from sandbox.lago.errors import LagoError, invalid, json_body, not_found, ok, paginate
from sandbox.lago.money import to_decimal
from sandbox.lago.state import Record, iso, new_id, now


def _credits(data: dict[str, Any], key: str) -> Decimal:
    try:
        value = to_decimal(data.get(key))
    except ValueError as exc:
        raise invalid(**{key: "invalid_value"}) from exc
    if value < 0:
        raise invalid(**{key: "invalid_value"})
    return value


def _top_up(sb: Sandbox, wallet: Record, data: dict[str, Any]) -> list[Record]:
    """Paid and granted credits settle at once in the sandbox (no payment provider)."""
    paid, granted, voided = (
        _credits(data, "paid_credits"),
        _credits(data, "granted_credits"),
        _credits(data, "voided_credits"),
    )
    if (
        voided
        and render.credits_to_cents(voided, wallet["rate_amount"], wallet["currency"])
        > (wallet["balance_cents"])
    ):
        raise invalid(voided_credits="insufficient_credits")
    name = data.get("name") or data.get("transaction_name")
    metadata = data.get("metadata") or data.get("transaction_metadata")
    out = []
    for credits, direction, kind in (
        (paid, "inbound", "purchased"),
        (granted, "inbound", "granted"),
        (voided, "outbound", "voided"),
    ):
        if not credits:
            continue
        tx = sb.wallet_transaction(wallet, direction, kind, credits, name=name, metadata=metadata)
        cents = render.credits_to_cents(credits, wallet["rate_amount"], wallet["currency"])
        wallet["balance_cents"] += cents if direction == "inbound" else -cents
        sb.state.wallet_transactions[tx["lago_id"]] = tx
        out.append(tx)
    return out


async def create_wallet(request: Request) -> Response:
    sb = sandbox_of(request)
    body = await json_body(request)
    if "wallet" not in body:
        raise LagoError(400, "BadRequest: param is missing or the value is empty: wallet")
    data = body["wallet"]
    cust = sb.state.customers.get(data["external_customer_id"])
    if cust is None:
        raise not_found("customer")
    if cust.get("currency") and cust["currency"] != data["currency"]:
        raise invalid(currency="currencies_does_not_match")
    cust["currency"] = data["currency"]
    try:
        rate = to_decimal(data["rate_amount"])
    except ValueError as exc:
        raise invalid(rate_amount="invalid_value") from exc
    if rate <= 0:
        raise invalid(rate_amount="invalid_value")
    moment = iso(now())
    wallet: Record = {
        "lago_id": new_id(),
        "lago_customer_id": cust["lago_id"],
        "external_customer_id": cust["external_id"],
        "status": "active",
        "currency": data["currency"],
        "name": data.get("name"),
        "code": data.get("code") or f"wallet_{sb.state.next_number('wallet')}",
        "priority": int(data.get("priority", 50)),
        "rate_amount": str(data["rate_amount"]),
        "balance_cents": 0,
        "created_at": moment,
        "expiration_at": data.get("expiration_at"),
        "last_balance_sync_at": moment,
        "last_consumed_credit_at": None,
        "terminated_at": None,
        "invoice_requires_successful_payment": bool(
            data.get("invoice_requires_successful_payment", False)
        ),
        "recurring_transaction_rules": [],
        "_consumed_cents": 0,
    }
    sb.state.wallets[wallet["lago_id"]] = wallet
    _top_up(sb, wallet, data)
    sb.commit()
    return ok({"wallet": render.wallet(wallet, sb.state)})


def _list(sb: Sandbox, request: Request, customer_id: str | None) -> Response:
    currency = request.query_params.get("currency")
    items = [
        render.wallet(w, sb.state)
        for w in sorted(sb.state.wallets.values(), key=lambda w: w["created_at"])
        if (customer_id is None or w["external_customer_id"] == customer_id)
        and (currency is None or w["currency"] == currency)
    ]
    return ok(paginate(request, items, "wallets"))


async def list_wallets(request: Request) -> Response:
    sb = sandbox_of(request)
    return _list(sb, request, request.query_params.get("external_customer_id"))


async def list_customer_wallets(request: Request) -> Response:
    sb = sandbox_of(request)
    customer_id = request.path_params["external_customer_id"]
    if customer_id not in sb.state.customers:
        raise not_found("customer")
    return _list(sb, request, customer_id)


def _wallet(sb: Sandbox, lago_id: str) -> Record:
    wallet = sb.state.wallets.get(lago_id)
    if wallet is None:
        raise not_found("wallet")
    return wallet


async def get_wallet(request: Request) -> Response:
    sb = sandbox_of(request)
    return ok({"wallet": render.wallet(_wallet(sb, request.path_params["lago_id"]), sb.state)})


async def create_transactions(request: Request) -> Response:
    sb = sandbox_of(request)
    data = (await json_body(request))["wallet_transaction"]
    wallet = _wallet(sb, data["wallet_id"])
    if wallet["status"] != "active":
        raise invalid(wallet_id="wallet_not_active")
    txs = _top_up(sb, wallet, data)
    sb.commit()
    rendered = [render.wallet_transaction(tx) for tx in txs]
    for tx in rendered:
        sb.webhooks.emit("wallet_transaction.created", "wallet_transaction", tx)
    return ok({"wallet_transactions": rendered})


async def list_transactions(request: Request) -> Response:
    sb = sandbox_of(request)
    wallet = _wallet(sb, request.path_params["lago_id"])
    q = request.query_params
    filters = {k: q.get(k) for k in ("status", "transaction_status", "transaction_type")}
    items = [
        render.wallet_transaction(tx)
        for tx in sorted(sb.state.wallet_transactions.values(), key=lambda t: t["_seq"])
        if tx["lago_wallet_id"] == wallet["lago_id"]
        and all(v is None or tx[k] == v for k, v in filters.items())
    ]
    return ok(paginate(request, items, "wallet_transactions"))


ROUTES = [
    Route("/wallets", create_wallet, methods=["POST"]),
    Route("/wallets", list_wallets, methods=["GET"]),
    Route("/wallets/{lago_id}", get_wallet, methods=["GET"]),
    Route("/wallets/{lago_id}/wallet_transactions", list_transactions, methods=["GET"]),
    Route("/wallet_transactions", create_transactions, methods=["POST"]),
    Route("/customers/{external_customer_id}/wallets", list_customer_wallets, methods=["GET"]),
]

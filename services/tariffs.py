"""Tariffs and their versions.

A tariff is a code and a currency; its prices live in versions, each valid from a time and never
edited afterwards. Changing a price adds a version from now (or from a later time): sessions that
started before keep the version they started under (``db/tariffs.py`` resolves it by the
session's start and records it on the session).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.audit import add_audit
from db.models import Charger, Tariff, TariffVersion
from db.tariffs import version_at, versions_of
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, NotFound
from services.validation import invalid

# The idle fee (domain/idle_fee.py): free minutes after the stop, price per minute after them,
# the most one session pays (None: no cap).
IDLE_TERMS = ("idle_grace_minutes", "idle_price_per_minute_minor", "idle_fee_cap_minor")
MAX_IDLE_GRACE_MINUTES = 24 * 60
MAX_IDLE_FEE_CAP_MINOR = 100_000_000
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# A price above 1 000 000 minor units per kWh, minute or session is a typo, not a tariff.
MAX_PRICE_MINOR = 1_000_000
TERMS = (
    "price_per_kwh_minor",
    "price_per_minute_minor",
    "price_per_session_minor",
    "session_fee_min_energy_wh",
    "session_fee_min_duration_s",
    *IDLE_TERMS,
)

Price = Field(default=0, ge=0, le=MAX_PRICE_MINOR)


class NewTariff(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    price_per_kwh_minor: int = Price
    price_per_minute_minor: int = Price
    price_per_session_minor: int = Price
    # Below either minimum a session pays no per-session fee.
    session_fee_min_energy_wh: int = Field(default=1, ge=0, le=10**9)
    session_fee_min_duration_s: int = Field(default=0, ge=0, le=10**7)
    idle_grace_minutes: int = Field(
        default=0, ge=0, le=MAX_IDLE_GRACE_MINUTES, description="free minutes after the stop"
    )
    idle_price_per_minute_minor: int = Field(
        default=0, ge=0, le=MAX_PRICE_MINOR, description="per minute after the grace; 0: none"
    )
    idle_fee_cap_minor: int | None = Field(
        default=None, ge=1, le=MAX_IDLE_FEE_CAP_MINOR, description="the most one session pays"
    )
    is_default: bool = False


class NewTariffVersion(BaseModel):
    """Terms left out are taken from the version in force now; ``valid_from`` defaults to now."""

    model_config = ConfigDict(extra="forbid")

    valid_from: datetime | None = None
    price_per_kwh_minor: int | None = Field(default=None, ge=0, le=MAX_PRICE_MINOR)
    price_per_minute_minor: int | None = Field(default=None, ge=0, le=MAX_PRICE_MINOR)
    price_per_session_minor: int | None = Field(default=None, ge=0, le=MAX_PRICE_MINOR)
    session_fee_min_energy_wh: int | None = Field(default=None, ge=0, le=10**9)
    session_fee_min_duration_s: int | None = Field(default=None, ge=0, le=10**7)
    idle_grace_minutes: int | None = Field(default=None, ge=0, le=MAX_IDLE_GRACE_MINUTES)
    idle_price_per_minute_minor: int | None = Field(default=None, ge=0, le=MAX_PRICE_MINOR)
    idle_fee_cap_minor: int | None = Field(default=None, ge=1, le=MAX_IDLE_FEE_CAP_MINOR)
    # The cap in force is dropped (left out, idle_fee_cap_minor keeps it).
    remove_idle_fee_cap: bool = False


def check_idle_terms(terms: dict[str, Any]) -> None:
    """Idle terms that make sense together, or a clear error naming the field."""
    if terms["idle_price_per_minute_minor"] == 0:
        if terms["idle_fee_cap_minor"] is not None:
            raise invalid(
                "idle_fee_cap_minor",
                "an idle fee cap needs an idle price per minute (idle_price_per_minute_minor "
                "> 0); remove the cap or set the price",
            )
        if terms["idle_grace_minutes"]:
            raise invalid(
                "idle_grace_minutes",
                "an idle grace period needs an idle price per minute "
                "(idle_price_per_minute_minor > 0)",
            )


def version_dict(v: TariffVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "valid_from": v.valid_from,
        "currency": v.currency,
        **{name: getattr(v, name) for name in TERMS},
        "created_by": v.created_by,
        "created_at": v.created_at,
    }


async def _tariff_or_404(db: AsyncSession, code: str) -> Tariff:
    tariff = await db.scalar(select(Tariff).where(Tariff.code == code))
    if tariff is None:
        raise NotFound(f"no tariff {code!r}")
    return tariff


async def _describe(db: AsyncSession, tariff: Tariff, now: datetime) -> dict[str, Any]:
    versions = await versions_of(db, tariff.id)
    current = await version_at(db, tariff.id, now)
    chargers = (
        await db.scalars(
            select(Charger.charge_box_id)
            .where(Charger.tariff_id == tariff.id, Charger.decommissioned_at.is_(None))
            .order_by(Charger.charge_box_id)
        )
    ).all()
    return {
        "code": tariff.code,
        "currency": tariff.currency,
        "is_default": tariff.is_default,
        "created_at": tariff.created_at,
        "current": version_dict(current) if current else None,
        "versions": [version_dict(v) for v in versions],
        "charge_box_ids": list(chargers),
    }


async def add_tariff(ctx: ServiceContext, actor: Actor, new: NewTariff) -> dict[str, Any]:
    terms = {name: getattr(new, name) for name in TERMS}
    check_idle_terms(terms)
    async with ctx.sessions() as db:
        try:
            async with db.begin():
                if new.is_default:
                    await db.execute(
                        update(Tariff).where(Tariff.is_default).values(is_default=False)
                    )
                tariff = Tariff(
                    code=new.code, currency=new.currency, is_default=new.is_default, **terms
                )
                db.add(tariff)
                await db.flush()
                await db.refresh(tariff)
                db.add(
                    TariffVersion(
                        tariff_id=tariff.id,
                        version=1,
                        valid_from=tariff.created_at,
                        currency=new.currency,
                        created_by=actor.id[:255],
                        **terms,
                    )
                )
                add_audit(
                    db,
                    actor.id,
                    "tariff.added",
                    subject=f"tariff:{new.code}",
                    source=actor.source,
                    details=new.model_dump(),
                )
        except IntegrityError:
            raise Conflict(f"a tariff {new.code!r} exists already") from None
        async with db.begin():
            return await _describe(db, tariff, datetime.now(UTC))


async def add_version(
    ctx: ServiceContext, actor: Actor, code: str, new: NewTariffVersion
) -> dict[str, Any]:
    """A new version of ``code`` from ``valid_from`` (now by default; never in the past, and
    after every existing version: a version a session may already use is never replaced)."""
    now = datetime.now(UTC)
    valid_from = new.valid_from or now
    if valid_from.tzinfo is None:
        raise invalid("valid_from", "give a time zone (e.g. 2026-12-01T00:00:00Z)")
    if valid_from < now and new.valid_from is not None:
        raise invalid(
            "valid_from",
            "a version cannot start in the past: sessions may already be billed under the "
            "version in force then",
        )
    async with ctx.sessions() as db:
        try:
            async with db.begin():
                tariff = await _tariff_or_404(db, code)
                # One version at a time per tariff: the row lock orders concurrent changes.
                await db.execute(select(Tariff.id).where(Tariff.id == tariff.id).with_for_update())
                versions = await versions_of(db, tariff.id)
                latest = versions[-1]
                if valid_from <= latest.valid_from:
                    raise invalid(
                        "valid_from",
                        f"must be after version {latest.version}'s start "
                        f"({latest.valid_from.isoformat()})",
                    )
                base = await version_at(db, tariff.id, now) or latest
                terms = {
                    name: getattr(new, name)
                    if getattr(new, name) is not None
                    else getattr(base, name)
                    for name in TERMS
                }
                if new.remove_idle_fee_cap:
                    if new.idle_fee_cap_minor is not None:
                        raise invalid(
                            "remove_idle_fee_cap",
                            "give either idle_fee_cap_minor or remove_idle_fee_cap, not both",
                        )
                    terms["idle_fee_cap_minor"] = None
                check_idle_terms(terms)
                version = TariffVersion(
                    tariff_id=tariff.id,
                    version=latest.version + 1,
                    valid_from=valid_from,
                    currency=tariff.currency,
                    created_by=actor.id[:255],
                    **terms,
                )
                db.add(version)
                add_audit(
                    db,
                    actor.id,
                    "tariff.version_added",
                    subject=f"tariff:{code}",
                    source=actor.source,
                    details={
                        "version": version.version,
                        "valid_from": valid_from.isoformat(),
                        **terms,
                    },
                )
        except IntegrityError:
            raise Conflict(f"tariff {code!r} changed meanwhile; try again") from None
        async with db.begin():
            return await _describe(db, tariff, now)


async def list_tariffs(ctx: ServiceContext) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    async with ctx.sessions() as db, db.begin():
        tariffs = (await db.scalars(select(Tariff).order_by(Tariff.code))).all()
        out = []
        for tariff in tariffs:
            described = await _describe(db, tariff, now)
            current = described["current"] or {}
            out.append(
                {
                    "code": tariff.code,
                    "currency": tariff.currency,
                    "is_default": tariff.is_default,
                    "version": current.get("version"),
                    "valid_from": current.get("valid_from"),
                    **{name: current.get(name) for name in TERMS},
                    "versions": len(described["versions"]),
                    "chargers": len(described["charge_box_ids"]),
                }
            )
    return out


async def show_tariff(ctx: ServiceContext, code: str) -> dict[str, Any]:
    async with ctx.sessions() as db, db.begin():
        tariff = await _tariff_or_404(db, code)
        return await _describe(db, tariff, datetime.now(UTC))


async def session_tariff(db: AsyncSession, tariff_version_id: int | None) -> dict[str, Any] | None:
    """What ``sessions show`` prints: the code, version and start of the session's version."""
    if tariff_version_id is None:
        return None
    row = (
        await db.execute(
            select(Tariff.code, TariffVersion)
            .join(Tariff, Tariff.id == TariffVersion.tariff_id)
            .where(TariffVersion.id == tariff_version_id)
        )
    ).first()
    if row is None:
        return None
    code, version = row
    return {
        "code": code,
        "version": version.version,
        "valid_from": version.valid_from.isoformat(),
        "currency": version.currency,
        **{name: getattr(version, name) for name in TERMS},
    }


__all__ = [
    "IDLE_TERMS",
    "NewTariff",
    "NewTariffVersion",
    "add_tariff",
    "add_version",
    "check_idle_terms",
    "list_tariffs",
    "session_tariff",
    "show_tariff",
    "version_dict",
]

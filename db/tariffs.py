"""Tariff versions: which terms apply at a time, shared by the session activities and the service.

A tariff (``tariffs``: code, currency, default flag) has versions (``tariff_versions``) that are
never edited. The version that applies at a moment is the latest one whose ``valid_from`` is not
after it; a moment before the first version takes the first version (there was nothing else).
A ``tariffs`` row written without versions (by hand, or before the service existed) gets its
version 1 from its own columns the first time it is needed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Tariff, TariffVersion
from domain.idle_fee import IdleFeeTerms


async def ensure_first_version(db: AsyncSession, tariff_id: int) -> None:
    """Version 1 from the ``tariffs`` row's own terms, if the tariff has no version yet."""
    exists = await db.scalar(
        select(TariffVersion.id).where(TariffVersion.tariff_id == tariff_id).limit(1)
    )
    if exists is not None:
        return
    source = select(
        Tariff.id,
        literal(1),
        Tariff.created_at,
        Tariff.currency,
        Tariff.price_per_kwh_minor,
        Tariff.price_per_minute_minor,
        Tariff.price_per_session_minor,
        Tariff.session_fee_min_energy_wh,
        Tariff.session_fee_min_duration_s,
        Tariff.idle_grace_minutes,
        Tariff.idle_price_per_minute_minor,
        Tariff.idle_fee_cap_minor,
    ).where(Tariff.id == tariff_id)
    await db.execute(
        insert(TariffVersion)
        .from_select(
            [
                "tariff_id",
                "version",
                "valid_from",
                "currency",
                "price_per_kwh_minor",
                "price_per_minute_minor",
                "price_per_session_minor",
                "session_fee_min_energy_wh",
                "session_fee_min_duration_s",
                "idle_grace_minutes",
                "idle_price_per_minute_minor",
                "idle_fee_cap_minor",
            ],
            source,
        )
        .on_conflict_do_nothing()
    )


async def version_at(db: AsyncSession, tariff_id: int, at: datetime) -> TariffVersion | None:
    """The version of ``tariff_id`` that applies at ``at`` (None: no such tariff)."""
    await ensure_first_version(db, tariff_id)
    found = await db.scalar(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff_id, TariffVersion.valid_from <= at)
        .order_by(TariffVersion.valid_from.desc(), TariffVersion.version.desc())
        .limit(1)
    )
    if found is not None:
        return found
    return await db.scalar(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff_id)
        .order_by(TariffVersion.version)
        .limit(1)
    )


def idle_terms(version: TariffVersion) -> IdleFeeTerms:
    """The idle-fee terms of a tariff version (``domain/idle_fee.py``)."""
    return IdleFeeTerms(
        currency=version.currency,
        grace_s=version.idle_grace_minutes * 60,
        price_per_minute_minor=version.idle_price_per_minute_minor,
        cap_minor=version.idle_fee_cap_minor,
    )


async def versions_of(db: AsyncSession, tariff_id: int) -> list[TariffVersion]:
    await ensure_first_version(db, tariff_id)
    rows = await db.scalars(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff_id)
        .order_by(TariffVersion.version)
    )
    return list(rows.all())


__all__ = ["ensure_first_version", "idle_terms", "version_at", "versions_of"]

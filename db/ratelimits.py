"""Rate limits shared by every API process: one GCRA cell per (route family, client key).

GCRA ("generic cell rate algorithm") is a token bucket kept as one number, the *theoretical
arrival time* (TAT): with ``capacity`` requests per ``period_s``, each request advances the TAT by
``T = period_s / capacity``; a request is allowed while ``TAT - now <= period_s - T`` (the burst
tolerance). :func:`take` is ONE statement — ``INSERT … ON CONFLICT … DO UPDATE … RETURNING`` — on
the database clock, so concurrent requests in several processes serialise on the row and never
disagree about the time. A cell whose TAT is past is a full bucket: :func:`prune` deletes those.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Boolean, Float, Index, String, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class ApiRateLimit(Base):
    __tablename__ = "api_rate_limits"
    family: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    # Seconds since the epoch (database clock) at which the bucket is full again.
    tat_epoch_s: Mapped[float] = mapped_column(Float(precision=53))
    # Whether the last request on this cell was let through.
    allowed: Mapped[bool] = mapped_column(Boolean)
    __table_args__ = (
        Index("ix_api_rate_limits_tat_epoch_s", "tat_epoch_s"),
        {"prefixes": ["UNLOGGED"]},
    )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the next request would be allowed (0 when this one was).
    retry_after_s: float
    # Seconds until the bucket is full again.
    reset_s: float


# NOW: the database clock, one value for the whole statement. The first request of a key
# starts from a full bucket; a refused request leaves the TAT where it was.
_NOW = "extract(epoch FROM statement_timestamp())::float8"
_NEXT = f"greatest(cell.tat_epoch_s, {_NOW}) + :interval_s"
_TAKE = text(
    f"""
    INSERT INTO api_rate_limits AS cell (family, key, tat_epoch_s, allowed)
    VALUES (:family, :key, {_NOW} + :interval_s, true)
    ON CONFLICT (family, key) DO UPDATE SET
        allowed = {_NEXT} - {_NOW} <= :tolerance_s,
        tat_epoch_s = CASE WHEN {_NEXT} - {_NOW} <= :tolerance_s
                           THEN {_NEXT} ELSE cell.tat_epoch_s END
    RETURNING allowed, tat_epoch_s - {_NOW} AS ahead_s
    """
)
# Float slack, so that ``capacity`` steps of ``period_s / capacity`` always fit in ``period_s``.
_EPSILON_S = 1e-6


async def take(
    conn: AsyncConnection, family: str, key: str, capacity: int, period_s: float
) -> Decision:
    """Count one request of ``key`` against ``family``'s limit (one statement, autocommit)."""
    interval_s = period_s / capacity
    row = (
        await conn.execute(
            _TAKE,
            {
                "family": family,
                "key": key[:300],
                "interval_s": interval_s,
                "tolerance_s": period_s + _EPSILON_S,
            },
        )
    ).one()
    allowed, ahead_s = bool(row.allowed), max(0.0, float(row.ahead_s))
    # Requests still allowed now: how far the TAT may advance before the tolerance is crossed.
    remaining = max(0, int((period_s + _EPSILON_S - ahead_s) // interval_s))
    retry_after_s = 0.0 if allowed else max(0.0, ahead_s - period_s + interval_s)
    return Decision(allowed, capacity, remaining, retry_after_s, ahead_s)


async def prune(conn: AsyncConnection) -> int:
    """Delete the cells whose bucket is full again (they count exactly like a missing one)."""
    result = await conn.execute(text(f"DELETE FROM api_rate_limits WHERE tat_epoch_s < {_NOW}"))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["ApiRateLimit", "Decision", "prune", "take"]

"""Activities of the site load workflow: the plan (PostgreSQL reads, ``domain/load.py``, the
planned rows and the ``site.load_changed`` event in one transaction) and the charger's answers.

Idempotent: the plan is recomputed from the tables each time and lists only the profiles whose
acknowledged value differs from the planned one; recording an answer sets the acknowledged value
to what was sent, whatever the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from db.engine import SessionFactory
from db.events import record_event
from db.load_models import ChargerLoadProfile, SiteLoadLimit
from db.models import Charger, Site, Transaction
from domain.events import SITE_LOAD_CHANGED
from domain.load import Demand, LoadUnit, allocate, charger_max
from workflows.site_load_messages import (
    ACTIVITY_LOAD_PLAN,
    ACTIVITY_LOAD_RECORD,
    LoadPlan,
    PlanInput,
    ProfileCommand,
    ProfileOutcome,
)

Key = tuple[str, int, str]
# Rounds that forget what chargers reported offering (see ChargerLoadProfile.offered_limit).
RESET_OFFERED = frozenset({"started", "stopped", "limit_changed"})


@dataclass(frozen=True, slots=True)
class _Session:
    charge_box_id: str
    connector_id: int
    transaction_id: int


def _queue(charger: Charger) -> str | None:
    if not charger.connected or not charger.gateway_instance:
        return None
    return f"gateway-{charger.gateway_instance}"


def _acknowledged(row: ChargerLoadProfile | None, unit: str) -> tuple[int | None, int | None]:
    if row is None or row.unit != unit or row.acknowledged_limit is None:
        return None, None
    return row.acknowledged_limit, row.acknowledged_transaction_id


async def _open_sessions(db: AsyncSession, charge_box_ids: list[str]) -> list[_Session]:
    """Open transactions, oldest first; one per connector (the newest wins)."""
    rows = (
        await db.execute(
            select(Transaction.charge_box_id, Transaction.connector_id, Transaction.id)
            .where(
                Transaction.charge_box_id.in_(charge_box_ids),
                Transaction.stopped_at.is_(None),
                Transaction.closed_at.is_(None),
            )
            .order_by(Transaction.started_at, Transaction.id)
        )
    ).all()
    latest: dict[tuple[str, int], _Session] = {}
    for cb, connector, tx in rows:
        latest.pop((cb, connector), None)
        latest[(cb, connector)] = _Session(cb, connector, int(tx))
    return list(latest.values())


class SiteLoadActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_LOAD_PLAN)
    async def plan(self, input: PlanInput) -> LoadPlan:
        async with self._sessions() as db, db.begin():
            if await db.get(Site, input.site_id) is None:
                return LoadPlan(known=False)
            limit = await db.get(SiteLoadLimit, input.site_id, with_for_update=True)
            chargers = {
                c.charge_box_id: c
                for c in (
                    await db.scalars(
                        select(Charger).where(
                            Charger.site_id == input.site_id, Charger.decommissioned_at.is_(None)
                        )
                    )
                ).all()
            }
            rows: dict[Key, ChargerLoadProfile] = {
                (r.charge_box_id, r.connector_id, r.purpose): r
                for r in (
                    await db.scalars(
                        select(ChargerLoadProfile).where(
                            ChargerLoadProfile.charge_box_id.in_(list(chargers))
                        )
                    )
                ).all()
            }
            sessions = await _open_sessions(db, list(chargers))
            if limit is None:
                if input.reason == "limit_cleared":
                    await record_event(
                        db,
                        SITE_LOAD_CHANGED,
                        {"site_id": input.site_id, "reason": input.reason, "site_limit": None},
                        subject=f"site:{input.site_id}",
                        site_id=input.site_id,
                    )
                return LoadPlan(known=True, commands=_clear_all(chargers, rows, sessions))
            planner = _Planner(input, limit, chargers, rows)
            commands = planner.plan(sessions)
            for ended in planner.ended:
                await db.delete(ended)
            for row in planner.new_rows:
                db.add(row)
            if planner.changed:
                await record_event(
                    db,
                    SITE_LOAD_CHANGED,
                    planner.event_payload(),
                    subject=f"site:{input.site_id}",
                    site_id=input.site_id,
                )
            limit.rounds += 1
            limit.last_planned_at = await db.scalar(select(func.now()))
        return LoadPlan(known=True, commands=commands)

    @activity.defn(name=ACTIVITY_LOAD_RECORD)
    async def record(self, input: ProfileOutcome) -> None:
        cmd = input.command
        async with self._sessions() as db, db.begin():
            row = await db.get(
                ChargerLoadProfile,
                (cmd.charge_box_id, cmd.connector_id, cmd.purpose),
                with_for_update=True,
            )
            if row is None:
                return
            if cmd.limit is None and input.status == "accepted":
                await db.delete(row)
                return
            row.status = input.status
            row.error = input.error
            now: datetime = (await db.execute(select(func.now()))).scalar_one()
            row.updated_at = now
            if input.status == "accepted":
                row.unit = cmd.unit
                row.acknowledged_limit = cmd.limit
                row.acknowledged_transaction_id = cmd.transaction_id
                row.acknowledged_at = now


def _clear_all(
    chargers: dict[str, Charger], rows: dict[Key, ChargerLoadProfile], sessions: list[_Session]
) -> list[ProfileCommand]:
    """The site has no limit any more: clear the profiles we set on connected chargers."""
    active = {(s.charge_box_id, s.connector_id) for s in sessions}
    commands = []
    for (cb, connector, purpose), row in rows.items():
        queue = _queue(chargers[cb])
        if queue is None or row.acknowledged_limit is None:
            continue
        if purpose == "TxProfile" and (cb, connector) not in active:
            continue
        commands.append(
            ProfileCommand(
                charge_box_id=cb,
                connector_id=connector,
                purpose="TxDefaultProfile" if purpose == "TxDefaultProfile" else "TxProfile",
                task_queue=queue,
                unit="A" if row.unit == "A" else "W",
                limit=None,
            )
        )
    return commands


class _Planner:
    """One round's arithmetic over rows already read (no I/O)."""

    def __init__(
        self,
        input: PlanInput,
        limit: SiteLoadLimit,
        chargers: dict[str, Charger],
        rows: dict[Key, ChargerLoadProfile],
    ) -> None:
        self.input = input
        self.limit = limit
        self.unit: LoadUnit = "A" if limit.unit == "A" else "W"
        self.chargers = chargers
        self.rows = rows
        # Rows of transactions that ended (the charger dropped their TxProfile): deleted.
        self.ended: list[ChargerLoadProfile] = []
        self.new_rows: list[ChargerLoadProfile] = []
        # A new limit is news even when no session's share moves.
        self.changed = input.reason == "limit_changed"
        self.allocations: list[dict[str, Any]] = []

    def _max(self, charger: Charger) -> int:
        return charger_max(
            charger.max_power_w, self.unit, phases=self.limit.phases, voltage_v=self.limit.voltage_v
        )

    def _row(self, cb: str, connector: int, purpose: str) -> ChargerLoadProfile:
        row = self.rows.get((cb, connector, purpose))
        if row is None:
            row = ChargerLoadProfile(
                charge_box_id=cb,
                connector_id=connector,
                purpose=purpose,
                site_id=self.limit.site_id,
                unit=self.unit,
                status="planned",
            )
            self.rows[(cb, connector, purpose)] = row
            self.new_rows.append(row)
        if row.unit != self.unit:  # the site changed units: nothing acknowledged counts
            row.unit = self.unit
            row.acknowledged_limit = None
            row.acknowledged_transaction_id = None
        row.site_id = self.limit.site_id
        return row

    def plan(self, sessions: list[_Session]) -> list[ProfileCommand]:
        live = {(s.charge_box_id, s.connector_id) for s in sessions}
        ended = [k for k in self.rows if k[2] == "TxProfile" and (k[0], k[1]) not in live]
        self.ended = [self.rows.pop(k) for k in ended]
        if self.ended:
            self.changed = True
        if self.input.reason in RESET_OFFERED:
            # An arrival or departure gives every session a fresh chance at its full share.
            for key, row in self.rows.items():
                if key[2] == "TxProfile" and row.offered_limit is not None:
                    row.offered_limit = None
                    row.offered_at = None
        fixed = 0
        demands: list[Demand] = []
        online: dict[str, _Session] = {}
        for order, s in enumerate(sessions):
            charger = self.chargers[s.charge_box_id]
            if _queue(charger) is None:
                draw = self._offline_draw(s, charger)
                fixed += draw
                self.allocations.append(
                    {
                        "charge_box_id": s.charge_box_id,
                        "connector_id": s.connector_id,
                        "transaction_id": s.transaction_id,
                        "limit": draw,
                        "paused": False,
                        "offline": True,
                    }
                )
                continue
            name = f"{s.charge_box_id}/{s.connector_id}"
            online[name] = s
            demands.append(
                Demand(name, self._cap(s, charger), self.limit.min_per_session, order=order)
            )
        commands: list[ProfileCommand] = []
        for name, share in allocate(self.limit.site_limit - fixed, demands).items():
            s = online[name]
            row = self._row(s.charge_box_id, s.connector_id, "TxProfile")
            if (row.planned_limit, row.planned_transaction_id) != (share.limit, s.transaction_id):
                self.changed = True
            row.planned_limit = share.limit
            row.planned_transaction_id = s.transaction_id
            self.allocations.append(
                {
                    "charge_box_id": s.charge_box_id,
                    "connector_id": s.connector_id,
                    "transaction_id": s.transaction_id,
                    "limit": share.limit,
                    "paused": share.paused,
                    "offline": False,
                }
            )
            if _acknowledged(row, self.unit) != (share.limit, s.transaction_id):
                commands.append(self._command(s.charge_box_id, s.connector_id, "TxProfile", row))
        commands.extend(self._defaults())
        return commands

    def _cap(self, s: _Session, charger: Charger) -> int:
        """The charger's maximum, or less when it reported offering less for this session."""
        row = self.rows.get((s.charge_box_id, s.connector_id, "TxProfile"))
        ceiling = self._max(charger)
        if (
            row is not None
            and row.offered_limit is not None
            and row.acknowledged_transaction_id == s.transaction_id
        ):
            return min(ceiling, row.offered_limit)
        return ceiling

    def _offline_draw(self, s: _Session, charger: Charger) -> int:
        """What a session on an unreachable charger may draw: the profile it acknowledged for
        this transaction, else its TxDefaultProfile, else the charger's maximum."""
        tx_limit, tx_id = _acknowledged(
            self.rows.get((s.charge_box_id, s.connector_id, "TxProfile")), self.unit
        )
        if tx_limit is not None and tx_id == s.transaction_id:
            return tx_limit
        default, _ = _acknowledged(
            self.rows.get((s.charge_box_id, 0, "TxDefaultProfile")), self.unit
        )
        return default if default is not None else self._max(charger)

    def _defaults(self) -> list[ProfileCommand]:
        commands = []
        safe = self.limit.safe_limit
        for cb, charger in sorted(self.chargers.items()):
            if _queue(charger) is None:
                continue
            row = self._row(cb, 0, "TxDefaultProfile")
            row.planned_limit = min(safe, self._max(charger))
            row.planned_transaction_id = None
            acknowledged, _ = _acknowledged(row, self.unit)
            # A charger that booted since it accepted the default may have lost it.
            rebooted = (
                charger.last_boot_at is not None
                and row.acknowledged_at is not None
                and charger.last_boot_at > row.acknowledged_at
            )
            if acknowledged != row.planned_limit or rebooted:
                commands.append(self._command(cb, 0, "TxDefaultProfile", row))
        return commands

    def _command(self, cb: str, connector: int, purpose: str, row: ChargerLoadProfile) -> Any:
        queue = _queue(self.chargers[cb])
        assert queue is not None
        return ProfileCommand(
            charge_box_id=cb,
            connector_id=connector,
            purpose="TxProfile" if purpose == "TxProfile" else "TxDefaultProfile",
            task_queue=queue,
            unit=self.unit,
            limit=row.planned_limit,
            transaction_id=row.planned_transaction_id,
            phases=self.limit.phases if self.unit == "A" else None,
        )

    def event_payload(self) -> dict[str, Any]:
        return {
            "site_id": self.limit.site_id,
            "reason": self.input.reason,
            "unit": self.unit,
            "site_limit": self.limit.site_limit,
            "allocated": sum(a["limit"] for a in self.allocations),
            "active_sessions": len(self.allocations),
            "paused_sessions": sum(1 for a in self.allocations if a["paused"]),
            "allocations": self.allocations,
        }


__all__ = ["SiteLoadActivities"]

"""What the SteVe stand-in remembers, as SteVe's tables do: OCPP tags, charge boxes, transactions
(SteVe's own ids, from its own counter) and their meter values, reservations, charging profiles.

Pure data and rules; no sockets. ``blocked`` is derived as in SteVe: a tag whose
``maxActiveTransactionCount`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now() -> datetime:
    return datetime.now(UTC)


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Tag:
    pk: int
    id_tag: str
    parent_id_tag: str | None = None
    expiry: datetime | None = None
    max_active: int = 1
    note: str | None = None

    @property
    def blocked(self) -> bool:
        return self.max_active == 0


@dataclass
class Tx:
    id: int
    charge_box_id: str
    connector_id: int
    id_tag: str
    start_value: int
    started_at: datetime
    stop_value: int | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    stop_actor: str | None = None  # "station" | "manual"
    values: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.stopped_at is None


@dataclass
class ChargeBox:
    pk: int
    charge_box_id: str
    vendor: str | None = None
    model: str | None = None
    last_heartbeat: datetime | None = None
    statuses: dict[int, str] = field(default_factory=dict)


class SteveState:
    """One SteVe installation's data. ``first_transaction_id`` lets a test keep SteVe's ids apart
    from Polaris' own sequence (a real SteVe counts from 1)."""

    def __init__(self, *, first_transaction_id: int = 1) -> None:
        self.tags: dict[int, Tag] = {}
        self.charge_boxes: dict[str, ChargeBox] = {}
        self.transactions: dict[int, Tx] = {}
        self.reservations: dict[int, dict[str, Any]] = {}
        self.charging_profiles: dict[int, dict[str, Any]] = {}
        self.boots: list[tuple[str, datetime]] = []
        self._next_tag = 1
        self._next_box = 1
        self._next_tx = first_transaction_id
        self._next_reservation = 1
        self._next_profile = 1
        self._next_task = 1

    # -- tags ---------------------------------------------------------------------------------

    def tag_by_id(self, id_tag: str) -> Tag | None:
        return next((t for t in self.tags.values() if t.id_tag == id_tag), None)

    def add_tag(self, id_tag: str, **fields: Any) -> Tag:
        tag = Tag(pk=self._next_tag, id_tag=id_tag, **fields)
        self._next_tag += 1
        self.tags[tag.pk] = tag
        return tag

    def active_count(self, id_tag: str) -> int:
        return sum(1 for t in self.transactions.values() if t.id_tag == id_tag and t.active)

    def tag_status(self, id_tag: str, at: datetime | None = None) -> str:
        """The OCPP authorization status SteVe would answer for ``id_tag``."""
        tag = self.tag_by_id(id_tag)
        if tag is None:
            return "Invalid"
        if tag.blocked:
            return "Blocked"
        if tag.expiry is not None and tag.expiry <= (at or now()):
            return "Expired"
        if tag.max_active > 0 and self.active_count(id_tag) >= tag.max_active:
            return "ConcurrentTx"
        return "Accepted"

    def id_tag_info(self, id_tag: str) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self.tag_status(id_tag)}
        tag = self.tag_by_id(id_tag)
        if tag is not None and tag.parent_id_tag:
            info["parentIdTag"] = tag.parent_id_tag
        if tag is not None and tag.expiry is not None:
            info["expiryDate"] = iso(tag.expiry)
        return info

    def tag_overview(self, tag: Tag) -> dict[str, Any]:
        parent = self.tag_by_id(tag.parent_id_tag) if tag.parent_id_tag else None
        active = self.active_count(tag.id_tag)
        out: dict[str, Any] = {
            "ocppTagPk": tag.pk,
            "idTag": tag.id_tag,
            "blocked": tag.blocked,
            "inTransaction": active > 0,
            "activeTransactionCount": active,
            "maxActiveTransactionCount": tag.max_active,
        }
        if tag.parent_id_tag:
            out["parentIdTag"] = tag.parent_id_tag
        if parent is not None:
            out["parentOcppTagPk"] = parent.pk
        if tag.expiry is not None:
            out["expiryDate"] = iso(tag.expiry)
        if tag.note is not None:
            out["note"] = tag.note
        return out

    # -- charge boxes ---------------------------------------------------------------------------

    def box(self, charge_box_id: str) -> ChargeBox:
        box = self.charge_boxes.get(charge_box_id)
        if box is None:
            box = ChargeBox(pk=self._next_box, charge_box_id=charge_box_id)
            self._next_box += 1
            self.charge_boxes[charge_box_id] = box
        return box

    # -- transactions ---------------------------------------------------------------------------

    def start_transaction(
        self, charge_box_id: str, connector_id: int, id_tag: str, meter_start: int, at: datetime
    ) -> tuple[Tx, bool]:
        """SteVe keeps one row per (connector, idTag, start time, start value): a resent
        StartTransaction gets the id it already has. Returns (transaction, created)."""
        for tx in self.transactions.values():
            if (tx.charge_box_id, tx.connector_id, tx.id_tag, tx.started_at, tx.start_value) == (
                charge_box_id,
                connector_id,
                id_tag,
                at,
                meter_start,
            ):
                return tx, False
        self.box(charge_box_id)
        tx = Tx(self._next_tx, charge_box_id, connector_id, id_tag, meter_start, at)
        self._next_tx += 1
        self.transactions[tx.id] = tx
        return tx, True

    def stop_transaction(
        self,
        tx_id: int,
        meter_stop: int,
        at: datetime,
        reason: str | None,
        actor: str = "station",
    ) -> Tx | None:
        tx = self.transactions.get(tx_id)
        if tx is None or not tx.active:
            return tx
        tx.stop_value, tx.stopped_at, tx.stop_reason, tx.stop_actor = meter_stop, at, reason, actor
        return tx

    def last_energy_value(self, tx: Tx) -> int:
        """The latest energy register reading of ``tx`` in Wh (its start value without one)."""
        best = tx.start_value
        for v in tx.values:
            measurand = v.get("measurand") or "Energy.Active.Import.Register"
            if measurand != "Energy.Active.Import.Register":
                continue
            try:
                value = float(v["value"])
            except (KeyError, ValueError):
                continue
            best = int(value * 1000) if (v.get("unit") == "kWh") else int(value)
        return best

    def transaction_json(self, tx: Tx) -> dict[str, Any]:
        box = self.box(tx.charge_box_id)
        tag = self.tag_by_id(tx.id_tag)
        out: dict[str, Any] = {
            "id": tx.id,
            "chargeBoxId": tx.charge_box_id,
            "chargeBoxPk": box.pk,
            "connectorId": tx.connector_id,
            "ocppIdTag": tx.id_tag,
            "startTimestamp": iso(tx.started_at),
            "startValue": str(tx.start_value),
        }
        if tag is not None:
            out["ocppTagPk"] = tag.pk
        if tx.stopped_at is not None:
            out["stopTimestamp"] = iso(tx.stopped_at)
            out["stopValue"] = str(tx.stop_value)
            out["stopEventActor"] = tx.stop_actor or "station"
            if tx.stop_reason:
                out["stopReason"] = tx.stop_reason
        return out

    # -- ids ----------------------------------------------------------------------------------

    def next_task_id(self) -> int:
        self._next_task += 1
        return self._next_task - 1

    def add_reservation(self, **fields: Any) -> int:
        rid = self._next_reservation
        self._next_reservation += 1
        self.reservations[rid] = {"id": rid, "status": "Waiting", **fields}
        return rid

    def add_charging_profile(self, profile: dict[str, Any]) -> int:
        """A profile as SteVe stores it (its OCPP ``csChargingProfiles`` without the id)."""
        pk = self._next_profile
        self._next_profile += 1
        self.charging_profiles[pk] = {**profile, "chargingProfileId": pk}
        return pk

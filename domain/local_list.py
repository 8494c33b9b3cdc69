"""The OCPP 1.6 local authorization list: what a charger should hold, and how to get it there.

Pure functions, no I/O:

- :func:`desired_list` — every card as a ``localAuthorizationList`` entry (idTag → idTagInfo),
  with the status OCPP's pre-authorization would answer offline (lost, inactive or blocked →
  ``Blocked``; expired → ``Expired``; no active driver → ``Invalid``; a parent's problem is the
  child's), capped at the charger's ``LocalAuthListMaxLength`` (``Accepted`` entries first).
- :func:`plan_updates` — the ``SendLocalList`` requests that move a charger from the list it
  last acknowledged to the desired one: a ``Differential`` update of what changed (a removed
  entry is sent without ``idTagInfo``, as the spec says), or a ``Full`` update; either cut into
  chunks of at most ``SendLocalListMaxLength`` entries, each with the next ``listVersion``.
- :func:`apply_update` — what a charger holds after it accepted one request (what we record).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

ListStatus = Literal["Accepted", "Blocked", "Expired", "Invalid"]
UpdateType = Literal["Differential", "Full"]

# Used when the charger does not say (GetConfiguration unanswered or the key missing). Both are
# required configuration keys when a charger supports local list management; these defaults are
# deliberately modest so a charger that hides them is not flooded.
DEFAULT_LIST_MAX_LENGTH = 1000
DEFAULT_SEND_MAX_LENGTH = 100

# Entries the charger needs most when the list must be cut: an Accepted card charges offline; a
# Blocked one overrides a stale cache entry.
_PRIORITY: dict[str, int] = {"Accepted": 0, "Blocked": 1, "Expired": 2, "Invalid": 3}


class CardRow(BaseModel):
    """What the list needs of one ``ev_cards`` row (built ``from_attributes``)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id_tag: str
    parent_id_tag: str | None = None
    is_active: bool = True
    blocked: bool = False
    expires_at: datetime | None = None
    lost_at: datetime | None = None
    # Has an active user mapping (a card nobody owns is Invalid, as in pre-authorization).
    mapped: bool = True


# idTag → idTagInfo in OCPP's own field names ({"status", "expiryDate"?, "parentIdTag"?}).
IdTagInfo = dict[str, str]
LocalList = dict[str, IdTagInfo]


class SendLocalListRequest(BaseModel):
    """One ``SendLocalList.req``: entries without ``idTagInfo`` are removals (Differential)."""

    model_config = ConfigDict(frozen=True)

    list_version: int
    update_type: UpdateType
    entries: list[dict[str, object]]

    def payload(self) -> dict[str, object]:
        return {
            "listVersion": self.list_version,
            "updateType": self.update_type,
            "localAuthorizationList": list(self.entries),
        }


def ocpp_datetime(at: datetime) -> str:
    """UTC with a ``Z``, milliseconds: one spelling, so equal instants compare equal."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _problem(card: CardRow, now: datetime) -> ListStatus | None:
    if card.lost_at is not None or not card.is_active or card.blocked:
        return "Blocked"
    if card.expires_at is not None and card.expires_at <= now:
        return "Expired"
    return None


def entry_for(card: CardRow, parent: CardRow | None, now: datetime) -> IdTagInfo:
    """The idTagInfo a charger should hold for ``card`` at ``now``."""
    status: ListStatus | None = _problem(card, now)
    if status is None and parent is not None:
        status = _problem(parent, now)
    if status is None and not card.mapped:
        status = "Invalid"
    info: IdTagInfo = {"status": status or "Accepted"}
    expiries = [c.expires_at for c in (card, parent) if c is not None and c.expires_at]
    if info["status"] == "Accepted" and expiries:
        info["expiryDate"] = ocpp_datetime(min(expiries))
    if card.parent_id_tag:
        info["parentIdTag"] = card.parent_id_tag
    return info


def desired_list(
    cards: Iterable[CardRow], now: datetime, *, max_length: int | None = None
) -> LocalList:
    """Every card's entry, cut to ``max_length`` (by status priority, then idTag)."""
    by_tag = {c.id_tag: c for c in cards}
    full = {
        tag: entry_for(card, by_tag.get(card.parent_id_tag or ""), now)
        for tag, card in by_tag.items()
    }
    limit = DEFAULT_LIST_MAX_LENGTH if max_length is None else max(max_length, 0)
    if len(full) <= limit:
        return dict(sorted(full.items()))
    kept = sorted(full.items(), key=lambda kv: (_PRIORITY[kv[1]["status"]], kv[0]))[:limit]
    return dict(sorted(kept))


def digest(entries: Mapping[str, Mapping[str, str]]) -> str:
    """A stable fingerprint of a list (to tell "in step" without comparing lists)."""
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def diff(
    current: Mapping[str, IdTagInfo], desired: Mapping[str, IdTagInfo]
) -> list[dict[str, object]]:
    """Differential entries: added or changed ones with their idTagInfo, removed ones without,
    in idTag order."""
    changes: list[dict[str, object]] = []
    for tag in sorted(set(current) | set(desired)):
        if tag not in desired:
            changes.append({"idTag": tag})
        elif current.get(tag) != desired[tag]:
            changes.append({"idTag": tag, "idTagInfo": dict(desired[tag])})
    return changes


def _chunks(entries: list[dict[str, object]], size: int) -> list[list[dict[str, object]]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


def plan_updates(
    version: int,
    current: Mapping[str, IdTagInfo],
    desired: Mapping[str, IdTagInfo],
    *,
    full: bool = False,
    send_max_length: int | None = None,
) -> list[SendLocalListRequest]:
    """The requests, in order, that take a charger at ``version`` holding ``current`` to
    ``desired``. Versions go up by one per request. Nothing to change → no request (a Full
    update is always at least one request, possibly with an empty list)."""
    size = max(send_max_length or DEFAULT_SEND_MAX_LENGTH, 1)
    if full:
        everything: list[dict[str, object]] = [
            {"idTag": t, "idTagInfo": dict(i)} for t, i in sorted(desired.items())
        ]
        parts = _chunks(everything, size) or [[]]
        return [
            SendLocalListRequest(
                list_version=version + n + 1,
                update_type="Full" if n == 0 else "Differential",
                entries=part,
            )
            for n, part in enumerate(parts)
        ]
    return [
        SendLocalListRequest(list_version=version + n + 1, update_type="Differential", entries=part)
        for n, part in enumerate(_chunks(diff(current, desired), size))
    ]


def apply_update(current: Mapping[str, IdTagInfo], request: SendLocalListRequest) -> LocalList:
    """The list a charger holds after accepting ``request``."""
    result: LocalList = {} if request.update_type == "Full" else dict(current)
    for entry in request.entries:
        tag = str(entry["idTag"])
        info = entry.get("idTagInfo")
        if isinstance(info, Mapping):
            result[tag] = {str(k): str(v) for k, v in info.items()}
        else:
            result.pop(tag, None)
    return dict(sorted(result.items()))


__all__ = [
    "DEFAULT_LIST_MAX_LENGTH",
    "DEFAULT_SEND_MAX_LENGTH",
    "CardRow",
    "IdTagInfo",
    "ListStatus",
    "LocalList",
    "SendLocalListRequest",
    "apply_update",
    "desired_list",
    "diff",
    "digest",
    "entry_for",
    "ocpp_datetime",
    "plan_updates",
]

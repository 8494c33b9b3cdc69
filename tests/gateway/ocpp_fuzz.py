"""Generated and mutated OCPP 1.6J frames, each with the answer OCPP-J requires (the oracle).

Valid payloads are built from the JSON schemas the ``ocpp`` package ships; each mutation breaks
exactly one thing, so exactly one CallError code is right for it. A :class:`Case` says what the
gateway must answer: a CallResult, a CallError code, or nothing at all (answers are never
answered).
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import ocpp
from ocpp.v16.enums import Action

SCHEMAS = Path(ocpp.__file__).parent / "v16" / "schemas"
CHARGER_ACTIONS = (
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
)
# Valid frames of these would open and close real transactions on the fuzz charger: the
# well-behaved charger does that. Their mutations are all refused before any handler runs.
QUIET_ACTIONS = tuple(
    a for a in CHARGER_ACTIONS if a not in ("StartTransaction", "StopTransaction", "MeterValues")
)
CENTRAL_ACTIONS = tuple(sorted(a.value for a in Action if a.value not in CHARGER_ACTIONS))
# Handlers that parse these dateTime fields themselves (the schemas do not check formats).
PARSED_TIMES = {
    "StartTransaction": ("timestamp",),
    "StopTransaction": ("timestamp",),
    "StatusNotification": ("timestamp",),
}
MAX_DEPTH = 16  # gateway.frames.MAX_JSON_DEPTH, restated: the oracle is not the code under test

RESULT = "result"  # the Case expects a CallResult


@dataclass(frozen=True)
class Case:
    kind: str
    frame: str | bytes
    expect: str | None  # RESULT, a CallError code, or None: no answer at all
    unique_id: str | None = None  # the id the answer must carry; None: not checked


@dataclass(frozen=True)
class Place:
    """Where a mutation can go: ``container[key]``, its schema, and whether it is required."""

    container: Any
    key: Any
    spec: dict[str, Any]
    required: bool


@cache
def schema(action: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{action}.json").read_text())
    return loaded


class FrameFactory:
    def __init__(self, rng: random.Random, prefix: str) -> None:
        self.rng = rng
        self.prefix = prefix
        self.count = 0

    # -- valid values -------------------------------------------------------------------

    def uid(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count}"

    def text(self, max_length: int = 20) -> str:
        alphabet = string.ascii_letters + string.digits + "-_ .éß"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(1, max_length)))

    def timestamp(self) -> str:
        at = datetime.now(UTC) + timedelta(seconds=self.rng.randint(-600, 60))
        return at.isoformat().replace("+00:00", "Z")

    def value(self, spec: dict[str, Any], everything: bool = False) -> Any:
        if "enum" in spec:
            return self.rng.choice(spec["enum"])
        kind = spec.get("type")
        if kind == "object":
            out = {}
            for name, sub in spec.get("properties", {}).items():
                if everything or name in spec.get("required", []) or self.rng.random() < 0.5:
                    out[name] = self.value(sub, everything)
            return out
        if kind == "array":
            return [self.value(spec["items"], everything) for _ in range(self.rng.randint(1, 2))]
        if kind == "integer":
            return self.rng.randint(0, 2)
        if kind == "number":
            return round(self.rng.uniform(0, 100), 1)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if spec.get("format") == "date-time":
            return self.timestamp()
        if spec.get("format") == "uri":
            return "https://example.com/" + self.text(10).replace(" ", "")
        return self.text(min(spec.get("maxLength", 20), 20))

    def payload(self, action: str, everything: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = self.value(schema(action), everything)
        return out

    def call(self, action: str, payload: Any, kind: str, expect: str | None) -> Case:
        uid = self.uid()
        return Case(kind, json.dumps([2, uid, action, payload]), expect, uid)

    # -- places to mutate ---------------------------------------------------------------

    def places(self, action: str, payload: dict[str, Any]) -> list[Place]:
        """Every property of an object and every item of an array in ``payload``."""
        found: list[Place] = []

        def walk(node: Any, spec: dict[str, Any]) -> None:
            if isinstance(node, dict):
                for name, sub in spec.get("properties", {}).items():
                    if name in node:
                        found.append(Place(node, name, sub, name in spec.get("required", [])))
                        walk(node[name], sub)
            elif isinstance(node, list):
                for i, item in enumerate(node):
                    found.append(Place(node, i, spec["items"], False))
                    walk(item, spec["items"])

        walk(payload, schema(action))
        return found

    def wrong_type(self, spec: dict[str, Any]) -> Any:
        kind = spec.get("type")
        options: list[Any] = [None, self.rng.randint(-5, 5), "x", True, [1], {"a": 1}, 2.5]
        wrong = {
            "string": lambda v: not isinstance(v, str),
            "integer": lambda v: isinstance(v, bool) or not isinstance(v, int),
            "number": lambda v: isinstance(v, bool) or not isinstance(v, int | float),
            "boolean": lambda v: not isinstance(v, bool),
            "object": lambda v: not isinstance(v, dict),
            "array": lambda v: not isinstance(v, list),
        }[str(kind)]
        return self.rng.choice([o for o in options if wrong(o)])

    # -- the cases ----------------------------------------------------------------------

    def valid(self) -> Case:
        action = self.rng.choice(QUIET_ACTIONS)
        return self.call(action, self.payload(action), "valid", RESULT)

    def mutated_type(self) -> Case:
        action = self.rng.choice(CHARGER_ACTIONS[:5] + CHARGER_ACTIONS[6:])  # not Heartbeat
        payload = self.payload(action, everything=True)
        place = self.rng.choice(self.places(action, payload))
        place.container[place.key] = self.wrong_type(place.spec)
        return self.call(action, payload, "wrong_type", "TypeConstraintViolation")

    def too_long(self) -> Case:
        action = self.rng.choice(("Authorize", "BootNotification", "StartTransaction"))
        payload = self.payload(action, everything=True)
        place = self.rng.choice([p for p in self.places(action, payload) if "maxLength" in p.spec])
        place.container[place.key] = "L" * (place.spec["maxLength"] + self.rng.randint(1, 40))
        return self.call(action, payload, "too_long", "TypeConstraintViolation")

    def bad_enum(self) -> Case:
        action = self.rng.choice(("StatusNotification", "MeterValues", "StopTransaction"))
        payload = self.payload(action, everything=True)
        place = self.rng.choice([p for p in self.places(action, payload) if "enum" in p.spec])
        place.container[place.key] = "Not" + self.rng.choice(place.spec["enum"])
        return self.call(action, payload, "bad_enum", "PropertyConstraintViolation")

    def missing(self) -> Case:
        action = self.rng.choice(CHARGER_ACTIONS[:5] + CHARGER_ACTIONS[6:])
        payload = self.payload(action, everything=True)
        place = self.rng.choice([p for p in self.places(action, payload) if p.required])
        del place.container[place.key]
        return self.call(action, payload, "missing", "ProtocolError")

    def unknown_property(self) -> Case:
        action = self.rng.choice(CHARGER_ACTIONS)
        payload = self.payload(action, everything=True)
        objects = [payload] + [
            p.container[p.key]
            for p in self.places(action, payload)
            if isinstance(p.container[p.key], dict)
        ]
        self.rng.choice(objects)["vendorSurprise" + self.text(5).replace(" ", "")] = 1
        return self.call(action, payload, "unknown_property", "FormationViolation")

    def too_few(self) -> Case:
        payload = self.payload("MeterValues", everything=True)
        if self.rng.random() < 0.5:
            payload["meterValue"] = []
        else:
            payload["meterValue"][0]["sampledValue"] = []
        return self.call("MeterValues", payload, "too_few", "OccurenceConstraintViolation")

    def bad_time(self) -> Case:
        action = self.rng.choice(tuple(PARSED_TIMES))
        payload = self.payload(action, everything=True)
        payload[self.rng.choice(PARSED_TIMES[action])] = self.rng.choice(
            ["yesterday", "", "2030-13-45T99:00:00Z", "12:00", "now", "2030/01/01"]
        )
        return self.call(action, payload, "bad_time", "TypeConstraintViolation")

    def unknown_action(self) -> Case:
        action = "Fly" + self.text(8).replace(" ", "")
        return self.call(action, {}, "unknown_action", "NotImplemented")

    def central_action(self) -> Case:
        return self.call(self.rng.choice(CENTRAL_ACTIONS), {}, "central_action", "NotSupported")

    def bad_message_type(self) -> Case:
        uid = self.uid()
        type_id = self.rng.choice([0, 1, 5, 7, -2, 99, "2", None, 2.5, [2], {}, True, "CALL"])
        frame = json.dumps([type_id, uid, "Heartbeat", {}])
        return Case("bad_message_type", frame, "PropertyConstraintViolation", uid)

    def bad_shape(self) -> Case:
        uid = self.uid()
        shape = self.rng.choice(
            [
                ([2, uid, "Heartbeat"], "ProtocolError", uid),
                ([2, uid, "Heartbeat", {}, "extra"], "ProtocolError", uid),
                ([2], "ProtocolError", "-1"),
                ([2, uid], "ProtocolError", uid),
                ([2, 17, "Heartbeat", {}], "FormationViolation", "-1"),
                ([2, uid, 17, {}], "FormationViolation", uid),
                ([2, uid, "Heartbeat", []], "FormationViolation", uid),
                ([2, uid, "Authorize", "idTag"], "FormationViolation", uid),
                ([2, uid, "BootNotification", None], "FormationViolation", uid),
                ([], "FormationViolation", "-1"),
                ({"a": 1}, "FormationViolation", "-1"),
                ("just a string", "FormationViolation", "-1"),
                (None, "FormationViolation", "-1"),
            ]
        )
        return Case("bad_shape", json.dumps(shape[0]), shape[1], shape[2])

    def long_unique_id(self) -> Case:
        uid = "U" * self.rng.randint(37, 80)
        return Case(
            "long_unique_id",
            json.dumps([2, uid, "Heartbeat", {}]),
            "PropertyConstraintViolation",
            uid,
        )

    def not_json(self) -> Case:
        if self.rng.random() < 0.5:  # a cut-off frame: never valid JSON (the array is open)
            whole = self.call("BootNotification", self.payload("BootNotification"), "", None)
            assert isinstance(whole.frame, str)
            frame = whole.frame[: self.rng.randint(0, len(whole.frame) - 1)]
        else:  # noise without '[' (so it is never an array, and never looks like an answer)
            alphabet = string.printable.replace("[", "")
            frame = "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 60)))
        return Case("not_json", frame, "FormationViolation")

    def deep(self) -> Case:
        depth = self.rng.choice([MAX_DEPTH + 1, MAX_DEPTH + 5, 200, 999, 1001, 5000, 20000])
        uid = self.uid()
        if self.rng.random() < 0.5:
            nested = "[" * depth + "]" * depth
        else:  # five bytes a level: kept under the frame size limit
            depth = min(depth, 5000)
            nested = '{"a":' * depth + "1" + "}" * depth
        frame = f'[2, "{uid}", "DataTransfer", {{"vendorId": "x", "data": {nested}}}]'
        return Case("deep", frame, "FormationViolation", uid)

    def binary(self) -> Case:
        if self.rng.random() < 0.5:
            frame = self.valid().frame
            assert isinstance(frame, str)
            data = frame.encode()
        else:
            data = self.rng.randbytes(self.rng.randint(1, 200))
        return Case("binary", data, "FormationViolation", "-1")

    def forged_answer(self) -> Case:
        uid = self.uid()
        frame = self.rng.choice(
            [
                json.dumps([3, uid, {"status": "Accepted"}]),
                json.dumps([4, uid, "GenericError", "forged", {}]),
                json.dumps([3, uid]),
                json.dumps([4, 17]),
                json.dumps([3, uid, "[" * 50 + "]" * 50]),
                "[3, " + "[" * 3000,
                "[4, " + self.text(20),
            ]
        )
        return Case("forged_answer", frame, None)

    def near_limit(self, limit_bytes: int) -> Case:
        """A frame a few bytes under the size limit (an unknown property pads it)."""
        payload = self.payload("BootNotification")
        uid = self.uid()
        payload["padding"] = ""
        room = limit_bytes - len(json.dumps([2, uid, "BootNotification", payload]).encode())
        payload["padding"] = "P" * (room - self.rng.randint(1, 64))
        frame = json.dumps([2, uid, "BootNotification", payload])
        return Case("near_limit", frame, "FormationViolation", uid)


WEIGHTED: list[tuple[int, Callable[[FrameFactory], Case]]] = [
    (10, FrameFactory.valid),
    (14, FrameFactory.mutated_type),
    (6, FrameFactory.too_long),
    (8, FrameFactory.bad_enum),
    (10, FrameFactory.missing),
    (8, FrameFactory.unknown_property),
    (3, FrameFactory.too_few),
    (4, FrameFactory.bad_time),
    (5, FrameFactory.unknown_action),
    (4, FrameFactory.central_action),
    (5, FrameFactory.bad_message_type),
    (6, FrameFactory.bad_shape),
    (2, FrameFactory.long_unique_id),
    (6, FrameFactory.not_json),
    (3, FrameFactory.deep),
    (3, FrameFactory.binary),
    (5, FrameFactory.forged_answer),
]

"""Helpers of the contract check: errata of the published document, Lago-style request errors."""

from __future__ import annotations

from typing import Any


def apply_errata(document: dict[str, Any]) -> list[str]:
    """Fix known defects of the published document in place; returns where.

    ``oneOf: [{type: string}, {type: integer}, {type: number}]`` (event ``properties`` values)
    rejects every integer, which matches both ``integer`` and ``number``; Lago's own example
    (``{"gb": 10}``) is an integer. Such type-only ``oneOf``s become ``anyOf``.
    A nullable type whose ``enum`` lacks ``null`` (``on_termination_credit_note``, required and
    null for most subscriptions) gets ``null`` added to the enum.
    """
    fixed: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            branches = node.get("oneOf")
            if isinstance(branches, list) and all(
                isinstance(b, dict) and set(b) == {"type"} for b in branches
            ):
                types = {b["type"] for b in branches}
                if {"integer", "number"} <= types:
                    node["anyOf"] = node.pop("oneOf")
                    fixed.append(where)
            kind, enum = node.get("type"), node.get("enum")
            nullable = isinstance(kind, list) and "null" in kind
            if nullable and isinstance(enum, list) and None not in enum:
                enum.append(None)
                fixed.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(document, "#")
    return fixed


def strip_nulls(value: Any) -> Any:
    """Drop ``null`` members of objects (Lago treats an explicit null like an absent key)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def request_errors_to_lago(errors: list[Any]) -> tuple[int, dict[str, Any]]:
    """Turn schema errors into Lago's answer: (status, body)."""
    details: dict[str, list[str]] = {}
    for err in errors:
        path = [str(p) for p in err.absolute_path]
        if err.validator == "required":
            missing = [p for p in err.validator_value if p not in (err.instance or {})]
            if not path:  # the root key itself ("event", "customer", ...) is missing
                return 400, {
                    "status": 400,
                    "error": f"BadRequest: param is missing or the value is empty: {missing[0]}",
                }
            for name in missing:
                details.setdefault(".".join([*path[1:], name]), []).append("value_is_mandatory")
        elif not path:
            return 400, {"status": 400, "error": "BadRequest: the body must be a JSON object"}
        else:
            key = ".".join(path[1:]) or path[0]
            codes = details.setdefault(key, [])
            if "invalid_value" not in codes:
                codes.append("invalid_value")
    body = {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": details,
    }
    return 422, body

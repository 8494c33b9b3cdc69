"""How ``polaris`` commands answer: ``--json`` prints one JSON document on stdout; otherwise a
table or ``key: value`` lines. A :class:`services.errors.ServiceError` becomes a message on stderr
and a non-zero exit code that scripts can tell apart."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from services.errors import ServiceError

# Exit codes by the error's code (anything else: 1).
EXIT_CODES = {
    "VALIDATION_FAILED": 2,
    "BAD_REQUEST": 2,
    "NOT_FOUND": 4,
    "CONFLICT": 5,
    "FORBIDDEN": 6,
    "CHARGER_OFFLINE": 3,
    "UNAVAILABLE": 7,
}
# A more precise code of the same kind (``CARD_EXISTS`` is a conflict) exits as its kind does.
_EXIT_BY_STATUS = {422: 2, 400: 2, 404: 4, 409: 5, 403: 6, 503: 7}


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, sort_keys=False))


def emit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def emit_fields(value: Mapping[str, Any], indent: str = "") -> None:
    for key, item in value.items():
        if isinstance(item, Mapping):
            print(f"{indent}{key}:")
            emit_fields(item, indent + "  ")
        elif isinstance(item, list) and item and isinstance(item[0], Mapping):
            print(f"{indent}{key}:")
            for entry in item:
                print(f"{indent}  - " + ", ".join(f"{k}={_cell(v)}" for k, v in entry.items()))
        else:
            print(f"{indent}{key}: {_cell(item)}")


def emit(value: Any, *, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        emit_json(value)
    elif columns is not None:
        emit_table(value, columns)
    elif isinstance(value, Mapping):
        emit_fields(value)
    else:
        print(value)


def fail(exc: ServiceError, *, as_json: bool = False) -> int:
    """Report a service error (stderr; with ``--json`` also the error document on stdout) and
    return the exit code."""
    if as_json:
        emit_json({**exc.extra, "error": exc.code, "message": exc.message, "issues": exc.issues})
    print(f"error: {exc.message}", file=sys.stderr)
    for issue in exc.issues:
        where = ".".join(str(p) for p in issue.get("path", [])) or "-"
        print(f"  {where}: {issue.get('message', '')}", file=sys.stderr)
    return EXIT_CODES.get(exc.code) or _EXIT_BY_STATUS.get(exc.status, 1)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)

"""SteVe's published OpenAPI document (``api-docs.json``, SteVe 3.15 export) as an executable
contract: every request body, query parameter and response body of ``/steve/api/v1`` is checked.

The published document has one known defect, patched on load: its security scheme carries a
stray ``name`` key (an ``http``/``basic`` scheme has none). Error bodies that SteVe declares as
``*/*`` are validated as JSON all the same (SteVe sends JSON).

:class:`SteveContract` is used by the stand-in (``sandbox/steve/app.py``) on the way in and out,
and by the adapter's tests on the client side.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:polaris:steve-openapi"
DEFAULT_DOCUMENT = Path(__file__).with_name("api-docs.json")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# The document's paths start at /api/v1; SteVe serves them under its context path.
CONTEXT_PATH = "/steve"


class ContractViolation(AssertionError):
    """A request or response does not match SteVe's OpenAPI document."""


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    regex: re.Pattern[str] = field(compare=False)
    spec: dict[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _absolutize(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                DOCUMENT_URI + v
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else _absolutize(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolutize(v) for v in node]
    return node


def _regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


def apply_errata(document: dict[str, Any]) -> list[str]:
    """Patch the published document's known defects in place; returns what was patched."""
    fixed = []
    for name, scheme in document.get("components", {}).get("securitySchemes", {}).items():
        if scheme.get("type") == "http" and "name" in scheme:
            del scheme["name"]
            fixed.append(f"#/components/securitySchemes/{name}/name")
    return fixed


class SteveContract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.errata = apply_errata(document)
        self._registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, DRAFT202012.create_resource(document)
        )
        self._validators: dict[str, Draft202012Validator] = {}
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            for method in HTTP_METHODS:
                if method in item:
                    self.operations.append(
                        Operation(method.upper(), template, _regex(template), item[method])
                    )
        # /transactions/reports/csv before /transactions/{transactionPk}
        self.operations.sort(key=lambda op: (op.template.count("{"), -len(op.template)))

    @classmethod
    def load(cls, path: Path | None = None) -> SteveContract:
        return _load(str(path or DEFAULT_DOCUMENT))

    def find(self, method: str, path: str) -> Operation | None:
        """The operation for ``path`` (with or without the ``/steve`` context path)."""
        if path.startswith(CONTEXT_PATH + "/"):
            path = path[len(CONTEXT_PATH) :]
        for op in self.operations:
            if op.method == method.upper() and op.regex.match(path):
                return op
        return None

    def _validator(self, schema: dict[str, Any], key: str) -> Draft202012Validator:
        v = self._validators.get(key)
        if v is None:
            v = Draft202012Validator(
                _absolutize(schema),
                registry=self._registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
            self._validators[key] = v
        return v

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    @staticmethod
    def _json_schema(content: dict[str, Any]) -> dict[str, Any] | None:
        for media in ("application/json", "*/*"):
            if media in content:
                schema = content[media].get("schema")
                return schema if isinstance(schema, dict) else None
        return None

    def request_problems(
        self, op: Operation, query: dict[str, list[str]], body: Any, has_body: bool
    ) -> list[str]:
        problems: list[str] = []
        params = {p["name"]: p for p in op.spec.get("parameters", []) if p.get("in") == "query"}
        for name, values in query.items():
            param = params.get(name)
            if param is None:
                problems.append(f"query parameter {name!r} is not in the document")
                continue
            schema = param.get("schema", {})
            items = schema.get("items") if schema.get("type") == "array" else None
            if items is None and len(values) > 1:
                problems.append(f"query parameter {name!r} given {len(values)} times")
            for raw in values:
                problems += self._scalar_problems(name, raw, items or schema, op.key)
        request_body = op.spec.get("requestBody")
        if request_body is not None:
            schema = self._json_schema(self._resolve(request_body).get("content", {}))
            if not has_body:
                if request_body.get("required"):
                    problems.append("a JSON body is required")
            elif schema is not None:
                v = self._validator(schema, f"{op.key} request")
                for err in sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path)):
                    where = "/".join(str(p) for p in err.absolute_path) or "(body)"
                    problems.append(f"{where}: {err.message[:300]}")
        elif has_body:
            problems.append(f"{op.key} takes no body")
        return problems

    def _scalar_problems(self, name: str, raw: str, schema: dict[str, Any], key: str) -> list[str]:
        value: Any = raw
        kind = schema.get("type")
        if kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                return [f"query parameter {name!r}: {raw!r} is not an integer"]
        elif kind == "boolean":
            if raw not in ("true", "false"):
                return [f"query parameter {name!r}: {raw!r} is not a boolean"]
            value = raw == "true"
        v = self._validator(schema, f"{key} query {name}")
        return [f"query parameter {name!r}: {e.message[:200]}" for e in v.iter_errors(value)]

    def response_problems(self, op: Operation, status: int, body: bytes) -> list[str]:
        resp = op.spec.get("responses", {}).get(str(status))
        if resp is None:
            return [f"status {status} is not declared for {op.key}"]
        content = self._resolve(resp).get("content", {})
        schema = self._json_schema(content)
        if not content:
            return [] if not body.strip() else [f"{op.key} {status} declares no body, got one"]
        if schema is None:
            return []  # text/csv
        try:
            data = json.loads(body)
        except ValueError:
            return [f"{op.key} {status}: body is not JSON"]
        v = self._validator(schema, f"{op.key} {status}")
        return [
            f"{op.key} {status} at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: "
            f"{e.message[:300]}"
            for e in v.iter_errors(data)
        ]


@cache
def _load(path: str) -> SteveContract:
    with open(path, encoding="utf-8") as fh:
        return SteveContract(json.load(fh))


@dataclass
class ContractLog:
    """Every (operation, status) checked, and every violation found."""

    checked: Counter[tuple[str, int]] = field(default_factory=Counter)
    violations: list[dict[str, Any]] = field(default_factory=list)

    def operations_checked(self) -> set[str]:
        return {key for key, _ in self.checked}

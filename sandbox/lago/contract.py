"""The Lago OpenAPI document as an executable contract.

:class:`OpenApiContract` loads the document once, resolves its ``$ref``s through a
``referencing`` registry and validates request and response bodies per operation.
:class:`ContractMiddleware` applies it to every ``/api/v1`` request of an ASGI app: invalid request
bodies are answered the way Lago answers them (400 for a missing root key, 422
``validation_errors`` with ``error_details`` otherwise); every response body is validated on the
way out, and a mismatch is a bug: in strict mode the client gets a 500 describing it and the
violation is recorded (see :class:`ContractLog`), so a test suite catches drift.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sandbox.lago.contract_support import apply_errata, request_errors_to_lago, strip_nulls

__all__ = [
    "ContractLog",
    "ContractMiddleware",
    "ContractViolation",
    "OpenApiContract",
    "apply_errata",
    "request_errors_to_lago",
    "strip_nulls",
]

log = logging.getLogger("sandbox.lago.contract")

DOCUMENT_URI = "urn:polaris:lago-openapi"
DEFAULT_DOCUMENT = Path(__file__).with_name("openapi.yaml")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ContractViolation(AssertionError):
    """A response body does not match the OpenAPI document."""


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    template: str  # e.g. /events/{transaction_id}
    operation_id: str
    regex: re.Pattern[str]
    spec: dict[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _absolutize(node: Any) -> Any:
    """Copy a schema, turning document-local ``#/...`` refs into refs into the registry."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#"):
                out[k] = DOCUMENT_URI + v
            else:
                out[k] = _absolutize(v)
        return out
    if isinstance(node, list):
        return [_absolutize(v) for v in node]
    return node


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}$")


class OpenApiContract:
    """Operations and validators of one OpenAPI 3.1 document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.errata = apply_errata(document)
        resource = DRAFT202012.create_resource(document)
        self._registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}
        self.operations: list[Operation] = []
        for template, item in document.get("paths", {}).items():
            for method in HTTP_METHODS:
                spec = item.get(method)
                if spec is None:
                    continue
                self.operations.append(
                    Operation(
                        method=method.upper(),
                        template=template,
                        operation_id=str(spec.get("operationId", f"{method} {template}")),
                        regex=_template_regex(template),
                        spec=spec,
                    )
                )
        # Literal segments win over parameters (/events/batch before /events/{transaction_id}).
        self.operations.sort(key=lambda op: (op.template.count("{"), -len(op.template)))

    @classmethod
    def load(cls, path: Path | None = None) -> OpenApiContract:
        return _load_cached(str(path or os.environ.get("POLARIS_LAGO_OPENAPI") or DEFAULT_DOCUMENT))

    def find_operation(self, method: str, path: str) -> Operation | None:
        method = method.upper()
        for op in self.operations:
            if op.method == method and op.regex.match(path):
                return op
        return None

    def find_by_template(self, method: str, template: str) -> Operation | None:
        norm = re.sub(r"\{[^}]+\}", "{}", template)
        for op in self.operations:
            if op.method == method.upper() and re.sub(r"\{[^}]+\}", "{}", op.template) == norm:
                return op
        return None

    def validator_for(
        self, schema: dict[str, Any], cache_key: tuple[str, str]
    ) -> Draft202012Validator:
        cached = self._validators.get(cache_key)
        if cached is None:
            cached = Draft202012Validator(
                _absolutize(schema),
                registry=self._registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
            self._validators[cache_key] = cached
        return cached

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def request_schema(self, op: Operation) -> dict[str, Any] | None:
        body = op.spec.get("requestBody")
        if body is None:
            return None
        schema = self._resolve(body).get("content", {}).get("application/json", {}).get("schema")
        return schema if isinstance(schema, dict) else None

    def request_body_required(self, op: Operation) -> bool:
        body = op.spec.get("requestBody")
        return bool(body and self._resolve(body).get("required"))

    def response_schema(self, op: Operation, status: int) -> tuple[bool, dict[str, Any] | None]:
        """(declared, schema). Undeclared error statuses fall back to Lago's shared error bodies."""
        responses = op.spec.get("responses", {})
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            fallback = _GENERIC_ERRORS.get(status)
            if fallback is None:
                return False, None
            resp = {"$ref": f"#/components/responses/{fallback}"}
        schema = self._resolve(resp).get("content", {}).get("application/json", {}).get("schema")
        return True, schema if isinstance(schema, dict) else None

    def validate_request(self, op: Operation, body: Any) -> list[Any]:
        schema = self.request_schema(op)
        if schema is None:
            return []
        validator = self.validator_for(schema, (op.key, "request"))
        errors = [e for e in validator.iter_errors(body) if not _coercible(e)]
        return sorted(errors, key=lambda e: list(e.absolute_path))

    def validate_response(self, op: Operation, status: int, body: bytes) -> list[str]:
        """Problems with a response (empty list when it matches the document)."""
        declared, schema = self.response_schema(op, status)
        if not declared:
            return [f"status {status} is not declared for {op.key}"]
        if schema is None:
            return [] if not body.strip() else [f"{op.key} {status} declares no body, got one"]
        try:
            data = json.loads(body)
        except ValueError:
            return [f"{op.key} {status}: body is not JSON"]
        validator = self.validator_for(schema, (op.key, str(status)))
        problems = []
        for err in validator.iter_errors(data):
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            problems.append(f"{op.key} {status} at {where}: {err.message[:300]}")
        return problems


def _coercible(error: Any) -> bool:
    """Lago (Rails) coerces scalar params: ``units: 2.0`` for a string, ``"10"`` for an integer.

    The official client sends some fields with another scalar type than the document (one-off
    invoice fee ``units`` is a float there), so such type mismatches are not request errors.
    """
    if error.validator != "type":
        return False
    expected = (
        error.validator_value
        if isinstance(error.validator_value, list)
        else [error.validator_value]
    )
    value = error.instance
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "string" in expected
    if isinstance(value, str) and ({"integer", "number"} & set(expected)):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


_GENERIC_ERRORS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "NotAllowed",
    422: "UnprocessableEntity",
}


@cache
def _load_cached(path: str) -> OpenApiContract:
    with open(path, encoding="utf-8") as fh:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(fh, Loader=loader)
    return OpenApiContract(document)


@dataclass
class ContractLog:
    """What the middleware checked: counts per (operation, status) and every violation."""

    checked: Counter[tuple[str, int]] = field(default_factory=Counter)
    violations: list[dict[str, Any]] = field(default_factory=list)

    def operations_checked(self) -> set[str]:
        return {key for key, _ in self.checked}

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": [
                {"operation": op, "status": status, "count": n}
                for (op, status), n in sorted(self.checked.items())
            ],
            "violations": list(self.violations),
        }


def _json_response(status: int, body: Any) -> tuple[Message, Message]:
    raw = json.dumps(body).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": raw, "more_body": False}


class ContractMiddleware:
    """Validate request and response bodies of every operation under ``base_path``."""

    def __init__(
        self,
        app: ASGIApp,
        contract: OpenApiContract,
        log_: ContractLog,
        *,
        strict: bool = True,
        base_path: str = "/api/v1",
    ) -> None:
        self.app = app
        self.contract = contract
        self.log = log_
        self.strict = strict
        self.base_path = base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.base_path + "/"):
            await self.app(scope, receive, send)
            return
        op = self.contract.find_operation(scope["method"], path[len(self.base_path) :])
        if op is None:
            await self.app(scope, receive, send)
            return

        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)

        early = self._check_request(scope, op, raw)
        if early is not None:
            await self._finish(op, early[0], early[1], send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, replay, capture)
        start = next((m for m in captured if m["type"] == "http.response.start"), None)
        if start is None:
            return
        body = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        await self._finish(op, start, {"type": "http.response.body", "body": body}, send)

    def _check_request(
        self, scope: Scope, op: Operation, raw: bytes
    ) -> tuple[Message, Message] | None:
        schema = self.contract.request_schema(op)
        if schema is None:
            return None
        if not raw.strip():
            if not self.contract.request_body_required(op):
                return None
            return _json_response(
                400, {"status": 400, "error": "BadRequest: a JSON body is required"}
            )
        try:
            data = strip_nulls(json.loads(raw))
        except ValueError:
            return _json_response(
                400, {"status": 400, "error": "BadRequest: the body is not valid JSON"}
            )
        errors = self.contract.validate_request(op, data)
        if errors:
            for err in errors:
                log.info("request to %s rejected: %s", op.key, err.message[:200])
            status, body = request_errors_to_lago(errors)
            return _json_response(status, body)
        scope.setdefault("state", {})["lago_body"] = data
        return None

    async def _finish(self, op: Operation, start: Message, body_msg: Message, send: Send) -> None:
        status = int(start["status"])
        body = bytes(body_msg.get("body", b""))
        problems = self.contract.validate_response(op, status, body)
        self.log.checked[(op.key, status)] += 1
        if problems:
            self.log.violations.append(
                {"operation": op.key, "status": status, "problems": problems}
            )
            for problem in problems:
                log.error("contract violation: %s", problem)
            if self.strict:
                start, body_msg = _json_response(
                    500,
                    {
                        "status": 500,
                        "error": "Internal Server Error",
                        "code": "sandbox_contract_violation",
                        "message": "; ".join(problems)[:2000],
                    },
                )
                body = body_msg["body"]
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

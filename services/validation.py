"""Input models of the service layer, checked the same way for the API and the CLI.

The API declares these models as request bodies (FastAPI answers 422 with the same issue shape);
the CLI and other callers hand plain data to :func:`parse`, which raises
:class:`services.errors.InvalidInput` with ``issues=[{"path": [...], "message": ...}]``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def issues_of(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"path": [str(p) for p in error["loc"]], "message": error["msg"]}
        for error in exc.errors(include_input=False, include_url=False)
    ]


def parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("The request is not valid", issues=issues_of(exc)) from None


def invalid(path: str, message: str) -> InvalidInput:
    """One issue about one field."""
    return InvalidInput(message, issues=[{"path": [path], "message": message}])


__all__ = ["invalid", "issues_of", "parse"]

"""PostgreSQL refusing a *value* is not a transient failure: retrying cannot help.

A ``DataError`` (a number past BIGINT, a date PostgreSQL or Python cannot hold, ...) comes from the
data the activity was given, so every retry fails the same way; with the session activities'
retry policy (no maximum attempts, so an outage is waited out) it would retry forever and the
session would never end. :func:`data_errors_are_final` turns it into a non-retryable
``ApplicationError`` of type :data:`DATA_ERROR`; the workflow flags the session and finishes.
Connection trouble (``OperationalError``, ``OSError``) stays retryable.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DataError
from temporalio.exceptions import ApplicationError

DATA_ERROR = "DataError"

P = ParamSpec("P")
R = TypeVar("R")


def data_errors_are_final(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate an activity (under ``@activity.defn``) so a ``DataError`` is not retried."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (DataError, OverflowError) as exc:
            # The driver's message names the column problem, never a secret; keep it short.
            cause = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise ApplicationError(
                f"PostgreSQL refused a value: {cause}", type=DATA_ERROR, non_retryable=True
            ) from exc

    return wrapper

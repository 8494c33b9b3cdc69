"""What uvicorn's access log may print of a request line.

uvicorn logs ``"%s - \"%s %s HTTP/%s\" %d"`` with the full path, query string included. Two kinds
of secret could ride there: the bearer tokens in file URLs (``/files/firmware/{token}/{name}``,
``/files/diagnostics/{token}`` — a charger cannot send headers) and anything a client puts in a
query string. This filter rewrites the record's path before any handler formats it: file tokens
become ``***`` and the query string is dropped (its keys stay: ``?dry_run=…``).
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_FILE_TOKEN = re.compile(r"^(/files/[^/]+/)[^/?]+")


def redact_path(path: str) -> str:
    """The request path as it may be logged."""
    path, sep, query = path.partition("?")
    path = _FILE_TOKEN.sub(r"\1***", path)
    if not sep:
        return path
    keys = [part.partition("=")[0] for part in query.split("&") if part]
    return f"{path}?{'&'.join(f'{k}=…' for k in keys)}"


class AccessLogRedactor(logging.Filter):
    """Rewrites uvicorn's access record (args: client, method, path, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install_access_log_redactor() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, AccessLogRedactor) for f in logger.filters):
        logger.addFilter(AccessLogRedactor())


__all__ = ["ACCESS_LOGGER", "AccessLogRedactor", "install_access_log_redactor", "redact_path"]

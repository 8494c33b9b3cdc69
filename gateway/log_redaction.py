"""idTags never reach the logs: fingerprints in our own lines, a redacting filter on the library's.

The ``ocpp`` library logs every frame it sends or receives at INFO and the whole request when a
handler raises, idTags included. The gateway lowers the ``ocpp`` logger to WARNING (unless the
operator configured it) and puts :class:`TagRedactor` on it, which rewrites whatever the library
still logs: every ``idTag`` / ``parentIdTag`` value, in JSON frames and in Python reprs alike,
becomes its fingerprint, and so does every OCPP 2.0.1 ``idToken`` value (the string inside an
``idToken`` / ``groupIdToken`` object; the object's ``type`` stays readable). Our own lines
call :meth:`TagRedactor.fingerprint` themselves."""

from __future__ import annotations

import logging
import os
import re

from config.settings import Settings
from domain.ids import tag_fingerprint

LIBRARY_LOGGER = "ocpp"
TRANSPORT_LOGGER = "websockets"

# A tag field name, then ':' (JSON, dict repr) or '=' (dataclass repr), then the value: quoted
# (either quote, escapes allowed) or a bare token (a malformed frame may carry a number).
_TAG_FIELD = re.compile(
    r"""(?P<key>["']?(?:parentIdTag|idTag|idToken|parent_id_tag|id_tag|id_token)["']?\s*[:=]\s*)"""
    r"""(?:(?P<q>["'])(?P<quoted>(?:\\.|(?!(?P=q)).)*)(?P=q)|(?P<bare>[^\s,{}[\])'"]+))"""
)


class TagRedactor(logging.Filter):
    def __init__(self, key: bytes) -> None:
        super().__init__()
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> TagRedactor:
        # Without a configured key, a random one: fingerprints still match within this process.
        key = settings.log_tag_key
        return cls(key.get_secret_value().encode() if key is not None else os.urandom(32))

    def fingerprint(self, id_tag: object) -> str:
        return tag_fingerprint(str(id_tag), self._key)

    def redact(self, text: str) -> str:
        def replace(found: re.Match[str]) -> str:
            value = found.group("quoted")
            if value is None:
                value = found.group("bare")
            return f'{found.group("key")}"{self.fingerprint(value)}"'

        return _TAG_FIELD.sub(replace, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            # Handlers format the traceback from exc_text when it is set: give them a clean one.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def guard_library_logger(redactor: TagRedactor) -> None:
    """WARNING by default for the library's per-frame chatter, and idTags redacted in the rest.

    The ``websockets`` library traces every frame at DEBUG (cut to its first and last bytes, too
    short to redact reliably): it stays at INFO unless the operator set its level explicitly.
    Idempotent: a process that builds several gateways (the tests) keeps one redactor, the last.
    """
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.level == logging.NOTSET:
        library.setLevel(logging.WARNING)
    transport = logging.getLogger(TRANSPORT_LOGGER)
    if transport.level == logging.NOTSET:
        transport.setLevel(logging.INFO)
    for old in [f for f in library.filters if isinstance(f, TagRedactor)]:
        library.removeFilter(old)
    library.addFilter(redactor)

"""Encryption of Temporal payloads (issue #13): histories carry idTags, e-mails and customer ids.

Every payload a client sends to Temporal (workflow inputs and results, signals, activity inputs
and results, memos, queries) is serialized whole and sealed with AES-256-GCM; the sealed payload
says which key sealed it (``encryption-key-id`` in its metadata), so keys rotate without
re-encrypting anything: the first configured key seals new payloads, every configured key opens
old ones. A payload without the codec's encoding (histories written before encryption was turned
on, e.g. ``tests/histories/``) passes through unchanged, so turning the codec on is not a
breaking change for running workflows.

Keys: ``POLARIS_PAYLOAD_KEYS=k2:<base64 32 bytes>,k1:<base64 32 bytes>`` (``polaris codec
new-key`` prints a fresh entry). Losing a key makes the histories it sealed unreadable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PayloadKeyError(ValueError):
    """A payload names a key this process does not hold, or does not open with it."""


def parse_keys(value: SecretStr | str | None) -> list[tuple[str, bytes]]:
    """``id:base64key,...`` → ``[(id, key), ...]`` in the given order (the first seals)."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
    keys: list[tuple[str, bytes]] = []
    for index, entry in enumerate(part.strip() for part in raw.split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID_RE.match(key_id):
            raise ValueError(
                f"POLARIS_PAYLOAD_KEYS entry {index + 1}: expected id:base64key "
                "(id of letters, digits, '_', '-', '.')"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"POLARIS_PAYLOAD_KEYS key {key_id!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"POLARIS_PAYLOAD_KEYS key {key_id!r} must be {KEY_BYTES} bytes")
        if any(existing == key_id for existing, _ in keys):
            raise ValueError(f"POLARIS_PAYLOAD_KEYS lists key id {key_id!r} twice")
        keys.append((key_id, key))
    return keys


def new_key_entry(key_id: str) -> str:
    """A fresh ``id:base64key`` entry for POLARIS_PAYLOAD_KEYS."""
    if not _KEY_ID_RE.match(key_id):
        raise ValueError("key id: letters, digits, '_', '-', '.' (at most 64)")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-GCM over whole payloads; the key id is in the metadata and bound as associated data."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("the payload codec needs at least one key")
        self._current_id, current = keys[0]
        self._current = AESGCM(current)
        self._by_id = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def current_key_id(self) -> str:
        return self._current_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]

    def _seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._current_id.encode()
        sealed = self._current.encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written without the codec (before it was on): unchanged
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        aead = self._by_id.get(key_id)
        if aead is None:
            raise PayloadKeyError(
                f"payload sealed with key {key_id!r}, which is not in POLARIS_PAYLOAD_KEYS"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = aead.decrypt(nonce, sealed, key_id.encode())
        except Exception as exc:  # cryptography's InvalidTag: wrong key or tampered data
            raise PayloadKeyError(f"payload sealed with key {key_id!r} does not open") from exc
        opened = Payload()
        opened.ParseFromString(plain)
        return opened

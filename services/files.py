"""Files the platform keeps for chargers (firmware images, diagnostics uploads) and the tokens in
the URLs chargers use for them.

A charger cannot send our bearer tokens, so each download or upload URL carries a random token
(256 bits). Only its SHA-256 is stored; a URL works until its row's ``token_expires_at`` (and a
diagnostics token only once). All files live under ``settings.files_root``; every API replica
must see the same directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings
from services.errors import InvalidInput

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CHUNK = 64 * 1024


class TooLarge(Exception):
    """The body passed the size limit (the API answers 413)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str, *, path: list[str | int]) -> str:
    """A file name safe in a URL and on disk (no path separators, no leading dot)."""
    if not SAFE_NAME.match(name):
        raise InvalidInput(
            "invalid file name",
            issues=[{"path": path, "message": "letters, digits, '.', '_' and '-' only"}],
        )
    return name


def safe_name(name: str, fallback: str) -> str:
    """A charger's file name made safe (anything else becomes ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(name or ""))[:200].lstrip(".")
    return cleaned or fallback


@dataclass(frozen=True)
class StoredFile:
    relative_path: str
    size_bytes: int
    sha256: str


async def store(
    settings: Settings, relative_dir: str, name: str, body: AsyncIterator[bytes], max_bytes: int
) -> StoredFile:
    """Stream ``body`` to ``files_root/relative_dir/name`` (written to a temporary name, then
    renamed, so a reader never sees half a file). :class:`TooLarge` past ``max_bytes``."""
    directory = settings.files_root / relative_dir
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    tmp = directory / f".{name}.{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            async for chunk in body:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"larger than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return StoredFile(f"{relative_dir}/{name}", size, digest.hexdigest())


def path_of(settings: Settings, relative_path: str) -> Path:
    root = settings.files_root.resolve()
    path = (root / relative_path).resolve()
    if root not in path.parents:
        raise InvalidInput("path outside the files directory")
    return path


async def read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk

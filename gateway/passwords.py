"""Charger passwords for OCPP security profile 1 (HTTP Basic over the WebSocket handshake).

Stored as ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``: a fresh random salt per charger, so two
chargers with the same password never share a hash, and the cost parameters travel with the
hash so they can be raised later without invalidating old rows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading

_N = 2**14
_R = 8
_P = 1
_DKLEN = 32
_SCHEME = "scrypt"

# How many times verify_password ran in this process: the handshake throttle's tests prove that a
# refused handshake costs no hash by reading it (and operators can export it as a metric).
_verify_calls = 0
_verify_calls_lock = threading.Lock()


def verify_calls() -> int:
    return _verify_calls


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison; a malformed stored hash never matches."""
    global _verify_calls
    with _verify_calls_lock:
        _verify_calls += 1
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != _SCHEME:
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)

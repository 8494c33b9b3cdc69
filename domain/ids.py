"""The 8-character Crockford-base32 public id (a user's Lago external customer id), and the
fingerprint that stands for an idTag in logs (:func:`tag_fingerprint`).

Eight Crockford characters carry exactly 40 bits, so an id is made from 5 bytes. The caller
supplies the bytes (``os.urandom(5)`` in an activity or entry point): this module does no I/O
and draws no randomness itself.

Reading is forgiving, as Crockford intends: lower case is accepted, ``I``/``L`` read as ``1``,
``O`` reads as ``0`` and hyphens are ignored. ``U`` is never a valid character.
"""

from __future__ import annotations

import hashlib
import hmac

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PUBLIC_ID_LENGTH = 8
PUBLIC_ID_BYTES = 5  # 8 characters x 5 bits = 40 bits

_DECODE = {ch: i for i, ch in enumerate(ALPHABET)}
_ALIASES = {"I": "1", "L": "1", "O": "0"}


class InvalidPublicId(ValueError):
    """The text is not an 8-character Crockford-base32 public id."""


def public_id_from_bytes(data: bytes) -> str:
    """Encode the first 5 bytes of ``data`` as an 8-character public id."""
    if len(data) < PUBLIC_ID_BYTES:
        raise ValueError(f"need at least {PUBLIC_ID_BYTES} bytes, got {len(data)}")
    number = int.from_bytes(data[:PUBLIC_ID_BYTES], "big")
    chars = []
    for _ in range(PUBLIC_ID_LENGTH):
        chars.append(ALPHABET[number & 0x1F])
        number >>= 5
    return "".join(reversed(chars))


def normalize_public_id(text: str) -> str:
    """Return the canonical (upper-case, de-aliased) form, or raise :class:`InvalidPublicId`."""
    cleaned = text.strip().replace("-", "").upper()
    cleaned = "".join(_ALIASES.get(ch, ch) for ch in cleaned)
    if len(cleaned) != PUBLIC_ID_LENGTH:
        raise InvalidPublicId(f"a public id has {PUBLIC_ID_LENGTH} characters, got {len(cleaned)}")
    bad = sorted({ch for ch in cleaned if ch not in _DECODE})
    if bad:
        raise InvalidPublicId(f"not Crockford base32: {''.join(bad)!r}")
    return cleaned


def is_public_id(text: str) -> bool:
    """True when ``text`` is already a canonical public id (no normalization applied)."""
    return len(text) == PUBLIC_ID_LENGTH and all(ch in _DECODE for ch in text)


def public_id_to_int(text: str) -> int:
    """The 40-bit number behind a public id (after normalization)."""
    number = 0
    for ch in normalize_public_id(text):
        number = (number << 5) | _DECODE[ch]
    return number


# -- idTag fingerprints for logs ---------------------------------------------------------------

TAG_FINGERPRINT_HEX = 12  # 48 bits: enough to tell a few million cards apart in a log


def tag_fingerprint(id_tag: str, key: bytes = b"") -> str:
    """A short keyed digest that stands for an idTag in logs (``tag#3f2a9c01d4e5``).

    An idTag is a bearer credential (whoever presents it charges on its owner's account), so logs
    carry this instead. Card UIDs are short (4-7 bytes): without a secret ``key`` the digest can
    be reversed by trying every UID, so callers pass one; the same key gives the same
    fingerprint, which is what lets an operator follow one card through the logs.
    """
    digest = hmac.new(key, id_tag.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"tag#{digest[:TAG_FINGERPRINT_HEX]}"

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ids import (
    InvalidPublicId,
    is_public_id,
    normalize_public_id,
    public_id_from_bytes,
    public_id_to_int,
)


def test_known_values() -> None:
    assert public_id_from_bytes(b"\x00" * 5) == "00000000"
    assert public_id_from_bytes(b"\xff" * 5) == "ZZZZZZZZ"
    assert public_id_from_bytes(b"\x00\x00\x00\x00\x21") == "00000011"


def test_needs_five_bytes() -> None:
    with pytest.raises(ValueError):
        public_id_from_bytes(b"\x01\x02")


@given(st.binary(min_size=5, max_size=5))
def test_round_trip(data: bytes) -> None:
    public_id = public_id_from_bytes(data)
    assert is_public_id(public_id)
    assert normalize_public_id(public_id) == public_id
    assert public_id_to_int(public_id) == int.from_bytes(data, "big")


def test_normalize_is_forgiving() -> None:
    assert normalize_public_id(" abcd-efgh ") == "ABCDEFGH"
    assert normalize_public_id("oilooilo") == "01100110"


@pytest.mark.parametrize("text", ["", "ABCDEFG", "ABCDEFGHJ", "ABCDEFGU", "ABCD EFG!"])
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidPublicId):
        normalize_public_id(text)
    assert not is_public_id(text)

"""Every refusal code docs/drivers.md lists for a start or a stop has a sentence on the driver
pages (``REFUSALS`` in api/console/routes_driver.py)."""

from __future__ import annotations

import re
from pathlib import Path

from api.console.api_client import ApiFailure
from api.console.routes_driver import REFUSALS, refusal_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "drivers.md"


def documented_codes() -> set[str]:
    text = DOC.read_text()
    start = text.index("## Start a charge")
    end = text.index("## One session in detail")
    section = text[start:end]
    table = set(re.findall(r"^\| \d{3} \| `([A-Z_]+)` \|", section, re.MULTILINE))
    prose = set(re.findall(r"`([A-Z][A-Z_]+[A-Z])`", section))
    assert len(table) >= 15, table
    return table | prose


def test_every_documented_code_has_a_sentence() -> None:
    missing = documented_codes() - set(REFUSALS)
    assert not missing, missing


def test_an_unknown_code_still_reads_as_a_refusal() -> None:
    assert refusal_text(ApiFailure(409, "SOMETHING_NEW", "x")) == "The request was refused."
    assert refusal_text(ApiFailure(409, "NO_CARD", "x")).startswith("You have no charging card")

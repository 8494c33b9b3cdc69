"""A tariff in words a driver reads: "€0.30 per kWh + €0.50 per session"."""

from __future__ import annotations

from decimal import Decimal

from domain.pricing import TariffTerms

SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "CHF": "CHF ", "SEK": "SEK ", "NOK": "NOK "}
# ISO 4217 minor-unit exponents that are not 2.
EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}


def money(amount_minor: int, currency: str) -> str:
    """``3050, "EUR"`` → ``€30.50``; an unknown currency is written as its code."""
    exponent = EXPONENTS.get(currency, 2)
    value = Decimal(amount_minor).scaleb(-exponent)
    number = f"{value:.{exponent}f}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency}"


def tariff_words(terms: TariffTerms) -> str:
    """Each non-zero part, joined by " + "; a tariff with no price is "free"."""
    parts = []
    if terms.price_per_kwh_minor:
        parts.append(f"{money(terms.price_per_kwh_minor, terms.currency)} per kWh")
    if terms.price_per_minute_minor:
        parts.append(f"{money(terms.price_per_minute_minor, terms.currency)} per minute")
    if terms.price_per_session_minor:
        parts.append(f"{money(terms.price_per_session_minor, terms.currency)} per session")
    return " + ".join(parts) if parts else "free"


__all__ = ["money", "tariff_words"]

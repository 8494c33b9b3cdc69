"""A tariff in words a driver reads: "€0.30 per kWh + €0.50 per session", and its idle fee:
"idle fee €0.40 per minute after 15 minutes, at most €12.00"."""

from __future__ import annotations

from decimal import Decimal

from domain.idle_fee import IdleFeeTerms
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


def idle_fee_words(idle: IdleFeeTerms) -> str | None:
    """The idle fee in words, or None when the tariff has none."""
    if not idle.applies:
        return None
    words = f"idle fee {money(idle.price_per_minute_minor, idle.currency)} per minute"
    grace_min = idle.grace_s // 60
    if grace_min:
        words += f" after {grace_min} minute{'s' if grace_min != 1 else ''}"
    else:
        words += " from the stop"
    if idle.cap_minor is not None:
        words += f", at most {money(idle.cap_minor, idle.currency)}"
    return words


def tariff_words(terms: TariffTerms, idle: IdleFeeTerms | None = None) -> str:
    """Each non-zero part, joined by " + "; a tariff with no price is "free". The idle fee, if
    any, follows after "; "."""
    parts = []
    if terms.price_per_kwh_minor:
        parts.append(f"{money(terms.price_per_kwh_minor, terms.currency)} per kWh")
    if terms.price_per_minute_minor:
        parts.append(f"{money(terms.price_per_minute_minor, terms.currency)} per minute")
    if terms.price_per_session_minor:
        parts.append(f"{money(terms.price_per_session_minor, terms.currency)} per session")
    words = " + ".join(parts) if parts else "free"
    idle_words = idle_fee_words(idle) if idle is not None else None
    return f"{words}; {idle_words}" if idle_words else words


__all__ = ["idle_fee_words", "money", "tariff_words"]

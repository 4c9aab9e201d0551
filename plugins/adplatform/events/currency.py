"""Currencies and the fixed rates that normalise money to the reporting currency.

Money in the lakehouse is stored as integer micros of the reporting currency (USD): exact sums,
no float drift in reports. The rates are fixed so synthetic data and golden tests are
reproducible; production replaces them with a daily rates table loaded by the same name.
"""

from __future__ import annotations

from adplatform.events.schema import CURRENCIES

REPORTING_CURRENCY = "USD"
MICROS = 1_000_000

# Units of USD per unit of currency.
USD_PER_UNIT: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 0.0067,
    "BRL": 0.20,
    "INR": 0.012,
    "CAD": 0.73,
    "AUD": 0.66,
}
assert set(USD_PER_UNIT) == CURRENCIES, "every accepted currency needs a rate"


def to_micros(amount: float, currency: str) -> int:
    """``amount`` of ``currency`` as integer micros of the reporting currency."""
    return round(amount * USD_PER_UNIT[currency] * MICROS)

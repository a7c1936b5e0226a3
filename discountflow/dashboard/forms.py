"""What every dashboard form shares: choices, typed amounts, and the API's own validation.

A form only collects text; the rules for what may be saved are the API's pydantic models, so
the dashboard and the API refuse exactly the same things (``validated``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from wtforms import SelectChoice

from ..currencies import CURRENCIES, parse_major_units
from ..errors import InvalidParameter

COMMON_CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "INR", "BRL"]
CURRENCY_CHOICES = [(code, code) for code in COMMON_CURRENCIES] + [
    (code, code) for code in sorted(CURRENCIES) if code not in COMMON_CURRENCIES
]


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """WTForms options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


_PERCENT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,6})?")


def to_minor_units(text: str | None, currency: str, param: str) -> int:
    """``"1,250.5"`` in USD → ``125050``; refuse what is not an amount of that currency."""
    try:
        return parse_major_units(text or "", currency)
    except ValueError as error:
        raise InvalidParameter(f"{error} ({param}).", param=param) from None


def to_percent(text: str | None, param: str) -> float:
    """``"12.5 %"`` → ``12.5``; refuse what is not a plain number."""
    cleaned = (text or "").replace("%", "").strip()
    if not _PERCENT.fullmatch(cleaned):
        raise InvalidParameter(f"Enter a percentage such as 12.5 for {param}.", param=param)
    return float(Decimal(cleaned))


def validated(model: type, data: dict[str, Any]):
    """Validate with the API's model; its first complaint becomes a ``parameter_invalid``."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = first["loc"]
        if location[:1] == ("line_items",) and len(location) >= 3:
            where = f"line {int(location[1]) + 1}, {str(location[2]).replace('_', ' ')}"
        else:
            where = ".".join(str(part) for part in location).replace("_", " ")
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidParameter(f"{where}: {message}", param=where) from error

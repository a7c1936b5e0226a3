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

from ..currencies import MINOR_UNITS
from ..errors import InvalidParameter


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """WTForms options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


# An amount as people type it: 1250, 1250.5, 1,250.50 (groups of three). No sign, exponent,
# NaN or infinity: Decimal would take "1e999999" or "sNaN" and fail far from here.
_AMOUNT = re.compile(r"(\d{1,3}(?:,\d{3})+|\d{1,15})(?:\.(\d{1,12}))?")
_PERCENT = re.compile(r"\d{1,3}(?:\.\d{1,6})?")


def to_minor_units(text: str | None, currency: str, param: str) -> int:
    """``"1,250.5"`` in USD → ``125050``; refuse what is not an amount of that currency."""
    match = _AMOUNT.fullmatch((text or "").replace(" ", ""))
    if match is None:
        raise InvalidParameter(f"Enter an amount such as 1,250.00 for {param}.", param=param)
    digits = MINOR_UNITS.get(currency, 2)
    whole, fraction = match.group(1).replace(",", ""), (match.group(2) or "").rstrip("0")
    if len(fraction) > digits:
        raise InvalidParameter(
            f"{currency} amounts have at most {digits} decimals ({param}).", param=param
        )
    return int(whole) * 10**digits + int(fraction.ljust(digits, "0") or 0)


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

"""What every dashboard form shares: choices, typed amounts, and the API's own validation.

A form only collects text; the rules for what may be saved are the API's pydantic models, so
the dashboard and the API refuse exactly the same things (``validated``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from wtforms import SelectChoice

from ..currencies import MINOR_UNITS
from ..errors import InvalidParameter


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """WTForms options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


def to_minor_units(text: str | None, currency: str, param: str) -> int:
    """``"1,250.5"`` in USD → ``125050``; refuse what is not an amount of that currency."""
    cleaned = (text or "").replace(",", "").replace(" ", "").strip()
    try:
        amount = Decimal(cleaned)
    except InvalidOperation as error:
        message = f"Enter an amount such as 1250.00 for {param}."
        raise InvalidParameter(message, param=param) from error
    digits = MINOR_UNITS.get(currency, 2)
    minor = amount.scaleb(digits)
    if not amount.is_finite() or minor != minor.to_integral_value():
        raise InvalidParameter(
            f"{currency} amounts have at most {digits} decimals ({param}).", param=param
        )
    return int(minor)


def to_percent(text: str | None, param: str) -> float:
    """``"12.5 %"`` → ``12.5``; refuse what is not a number."""
    try:
        value = Decimal((text or "").replace("%", "").strip())
    except InvalidOperation as error:
        message = f"Enter a percentage such as 12.5 for {param}."
        raise InvalidParameter(message, param=param) from error
    if not value.is_finite():
        raise InvalidParameter(f"Enter a percentage such as 12.5 for {param}.", param=param)
    return float(value)


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

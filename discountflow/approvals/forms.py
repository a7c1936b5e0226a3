"""The dashboard's approval forms (Flask-WTF), turned into the API's own input models.

A form only collects text; the rules for what a request may hold are the API's pydantic models
(``schemas.py``), so the dashboard and the API refuse exactly the same things. Prices are typed
in major units (``1,250.00``) and become integer minor units of the chosen currency here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from flask_wtf import FlaskForm
from pydantic import ValidationError
from wtforms import (
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ..auth.forms import choices
from ..currencies import MINOR_UNITS
from ..errors import InvalidParameter

COMMON_CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "INR", "BRL"]
CURRENCY_CHOICES = [(code, code) for code in COMMON_CURRENCIES] + [
    (code, code) for code in sorted(MINOR_UNITS) if code not in COMMON_CURRENCIES
]
MAX_LINES = 50


class LineItemForm(Form):
    """One line; a line left wholly blank is ignored."""

    sku = StringField("SKU", validators=[Optional(), Length(max=64)])
    description = StringField("Description", validators=[Optional(), Length(max=500)])
    quantity = IntegerField("Quantity", validators=[Optional(), NumberRange(min=1)])
    unit_list_price = StringField("Unit list price", validators=[Optional(), Length(max=24)])
    unit_price = StringField("Unit price asked", validators=[Optional(), Length(max=24)])

    def is_blank(self) -> bool:
        texts = (
            self.sku.data,
            self.description.data,
            self.unit_list_price.data,
            self.unit_price.data,
        )
        return self.quantity.data is None and not any((text or "").strip() for text in texts)


class ApprovalForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    customer = StringField("Customer", validators=[DataRequired(), Length(max=200)])
    deal_reference = StringField("Deal reference", validators=[Optional(), Length(max=200)])
    currency = SelectField("Currency", choices=choices(CURRENCY_CHOICES), default="USD")
    justification = TextAreaField("Justification", validators=[Optional(), Length(max=5000)])
    line_items = FieldList(FormField(LineItemForm), min_entries=1, max_entries=MAX_LINES)


class CommentForm(FlaskForm):
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=5000)])


class LevelForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    rank = IntegerField("Rank", validators=[DataRequired(), NumberRange(min=1, max=100)])
    max_discount_percent = StringField("Largest discount (%)", validators=[DataRequired()])
    cap_amount = StringField("Amount cap (optional)", validators=[Optional(), Length(max=24)])
    cap_currency = SelectField("Cap currency", choices=choices(CURRENCY_CHOICES), default="USD")


class SettingsForm(FlaskForm):
    name = StringField("Organization name", validators=[DataRequired(), Length(max=200)])
    auto_approve_threshold_percent = StringField(
        "Auto-approve discounts up to (%)", validators=[DataRequired()]
    )
    default_validity_days = IntegerField(
        "An approved price is valid for (days)", validators=[DataRequired()]
    )


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
    try:
        value = Decimal((text or "").replace("%", "").strip())
    except InvalidOperation as error:
        message = f"Enter a percentage such as 12.5 for {param}."
        raise InvalidParameter(message, param=param) from error
    if not value.is_finite():
        raise InvalidParameter(f"Enter a percentage such as 12.5 for {param}.", param=param)
    return float(value)


def line_items_of(form: ApprovalForm) -> list[dict[str, Any]]:
    """The form's non-blank lines in the API's shape (prices in minor units)."""
    currency = form.currency.data
    items = []
    for number, entry in enumerate(form.line_items.entries, start=1):
        line = entry.form
        if line.is_blank():
            continue
        items.append(
            {
                "sku": (line.sku.data or "").strip(),
                "description": (line.description.data or "").strip(),
                "quantity": line.quantity.data,
                "unit_list_price": to_minor_units(
                    line.unit_list_price.data, currency, f"line {number}, unit list price"
                ),
                "unit_price": to_minor_units(
                    line.unit_price.data, currency, f"line {number}, unit price"
                ),
            }
        )
    return items


def approval_input(form: ApprovalForm) -> dict[str, Any]:
    """The form as the body ``POST /v2/approvals`` takes."""
    return {
        "title": form.title.data,
        "customer": form.customer.data,
        "deal_reference": form.deal_reference.data or "",
        "currency": form.currency.data,
        "justification": form.justification.data or "",
        "line_items": line_items_of(form),
    }


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


def fill_from(form: ApprovalForm, view) -> None:
    """Fill an edit form from an approval (prices back in major units)."""
    approval = view.approval
    digits = MINOR_UNITS.get(approval.currency, 2)
    form.title.data = approval.title
    form.customer.data = approval.customer
    form.deal_reference.data = approval.deal_reference
    form.currency.data = approval.currency
    form.justification.data = approval.justification
    while form.line_items.entries:
        form.line_items.pop_entry()
    for item in view.line_items:
        form.line_items.append_entry(
            {
                "sku": item.sku,
                "description": item.description,
                "quantity": item.quantity,
                "unit_list_price": f"{Decimal(item.unit_list_price).scaleb(-digits):f}",
                "unit_price": f"{Decimal(item.unit_price).scaleb(-digits):f}",
            }
        )

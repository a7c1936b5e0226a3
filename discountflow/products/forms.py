"""The dashboard's price book forms (Flask-WTF), turned into the API's own input models."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, FieldList, Form, FormField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from ..currencies import format_major_units
from ..dashboard.forms import CURRENCY_CHOICES, choices, to_minor_units
from .schemas import DESCRIPTION_LENGTH, MAX_PRICES, NAME_LENGTH, SKU_LENGTH

AMOUNT_LENGTH = 24
MAX_PRICE_ROWS = MAX_PRICES  # one per currency, as the API


class PriceForm(Form):
    """One list price; a row without an amount is ignored."""

    currency = SelectField("Currency", choices=choices(CURRENCY_CHOICES), default="USD")
    amount = StringField("Unit list price", validators=[Optional(), Length(max=AMOUNT_LENGTH)])


class ProductForm(FlaskForm):
    sku = StringField("SKU", validators=[DataRequired(), Length(max=SKU_LENGTH)])
    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_LENGTH)])
    description = StringField(
        "Description", validators=[Optional(), Length(max=DESCRIPTION_LENGTH)]
    )
    active = BooleanField("Active (can go on new line items)", default=True)
    prices = FieldList(FormField(PriceForm), min_entries=1, max_entries=MAX_PRICE_ROWS)


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to import.")])


def product_input(form: ProductForm) -> dict[str, Any]:
    """The form as the body ``POST /v2/products`` takes (prices in minor units)."""
    prices = []
    for number, entry in enumerate(form.prices.entries, start=1):
        text = (entry.form.amount.data or "").strip()
        if not text:
            continue
        currency = entry.form.currency.data
        amount = to_minor_units(text, currency, f"price {number}")
        prices.append({"currency": currency, "unit_list_price": amount})
    return {
        "sku": form.sku.data,
        "name": form.name.data,
        "description": form.description.data or "",
        "active": bool(form.active.data),
        "prices": prices,
    }


def fill_from(form: ProductForm, product: Any) -> None:
    """Fill an edit form from a product (prices back in major units)."""
    form.sku.data = product.sku
    form.name.data = product.name
    form.description.data = product.description
    form.active.data = product.active
    while form.prices.entries:
        form.prices.pop_entry()
    for price in product.prices:
        amount = format_major_units(price.unit_list_price, price.currency)
        form.prices.append_entry({"currency": price.currency, "amount": amount})

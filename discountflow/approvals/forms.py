"""The dashboard's approval forms (Flask-WTF), turned into the API's own input models.

A form only collects text; the rules for what a request may hold are the API's pydantic models
(``schemas.py``), so the dashboard and the API refuse exactly the same things. Prices are typed
in major units (``1,250.00``) and become integer minor units of the chosen currency here.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from ..currencies import format_major_units
from ..dashboard.forms import CURRENCY_CHOICES, choices, to_minor_units
from .schemas import (
    COMMENT_LENGTH,
    CUSTOMER_LENGTH,
    DEAL_REFERENCE_LENGTH,
    DESCRIPTION_LENGTH,
    JUSTIFICATION_LENGTH,
    LEVEL_NAME_LENGTH,
    MAX_LINE_ITEMS,
    SKU_LENGTH,
    TITLE_LENGTH,
)

MAX_LINES = MAX_LINE_ITEMS  # one limit for the API and the form
AMOUNT_LENGTH = 24  # "10,000,000,000.00" and then some


class LineItemForm(Form):
    """One line; a line left wholly blank is ignored."""

    sku = StringField("Product", validators=[Optional(), Length(max=SKU_LENGTH)])  # its SKU
    description = StringField(
        "Description", validators=[Optional(), Length(max=DESCRIPTION_LENGTH)]
    )
    quantity = IntegerField("Quantity", validators=[Optional(), NumberRange(min=1)])
    unit_list_price = StringField(  # custom lines only: a product's comes from the book
        "Unit list price", validators=[Optional(), Length(max=AMOUNT_LENGTH)]
    )
    unit_price = StringField("Unit price asked", validators=[Optional(), Length(max=AMOUNT_LENGTH)])

    def is_blank(self) -> bool:
        texts = (
            self.sku.data,
            self.description.data,
            self.unit_list_price.data,
            self.unit_price.data,
        )
        return self.quantity.data is None and not any((text or "").strip() for text in texts)


class LineList(FieldList):
    """The form's lines, refusing what WTForms' ``FieldList`` would drop without a word: lines
    past ``max_entries`` (a 120-line form saved its first 100), and lines numbered past it (a
    ``line_items-5000-…`` became a line like any other). Such a form is invalid, saying why
    (``refusal``), and nothing of it is saved."""

    def process(self, formdata, *args, **kwargs) -> None:
        self.refusal, readable = self._refusal(formdata) if formdata else (None, True)
        # A number WTForms would read as digits but cannot turn into one ("²") is not read.
        super().process(formdata if readable else None, *args, **kwargs)

    def _refusal(self, formdata) -> tuple[str | None, bool]:
        """What is wrong with the lines posted, if they are more, or numbered higher, than the
        form holds (numbered as WTForms reads them: ``<name>-<digits>-…``); and whether
        WTForms can read their numbers."""
        prefix = self.name + "-"  # (WTForms' default separators, which this form keeps)
        indices = set()
        for name in formdata:
            if name.startswith(prefix):
                index = name[len(prefix) :].split("-", 1)[0]
                if index.isdigit() and not index.isdecimal():
                    return "The form has a line whose number cannot be read.", False
                if index.isdigit():
                    indices.add(int(index))
        limit = self.max_entries
        if len(indices) > limit:
            return (
                f"The form has {len(indices)} lines; a request holds at most {limit} line items.",
                True,
            )
        if indices and max(indices) >= limit:
            return (
                f"The form has a line numbered {max(indices) + 1}; a request holds at most "
                f"{limit} line items, numbered 1 to {limit}.",
                True,
            )
        return None, True


def _lines_within_the_limit(form, field: LineList) -> None:
    if field.refusal:
        raise ValidationError(field.refusal)


class ApprovalForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=TITLE_LENGTH)])
    customer = StringField("Customer", validators=[DataRequired(), Length(max=CUSTOMER_LENGTH)])
    deal_reference = StringField(
        "Deal reference", validators=[Optional(), Length(max=DEAL_REFERENCE_LENGTH)]
    )
    currency = SelectField("Currency", choices=choices(CURRENCY_CHOICES), default="USD")
    justification = TextAreaField(
        "Justification", validators=[Optional(), Length(max=JUSTIFICATION_LENGTH)]
    )
    line_items = LineList(
        FormField(LineItemForm),
        min_entries=1,
        max_entries=MAX_LINES,
        validators=[_lines_within_the_limit],
    )


class CommentForm(FlaskForm):
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=COMMENT_LENGTH)])


class LevelForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=LEVEL_NAME_LENGTH)])
    rank = IntegerField("Rank", validators=[DataRequired(), NumberRange(min=1, max=100)])
    max_discount_percent = StringField("Largest discount (%)", validators=[DataRequired()])
    cap_amount = StringField(
        "Amount cap (optional)", validators=[Optional(), Length(max=AMOUNT_LENGTH)]
    )
    cap_currency = SelectField("Cap currency", choices=choices(CURRENCY_CHOICES), default="USD")


def line_items_of(form: ApprovalForm) -> list[dict[str, Any]]:
    """The form's non-blank lines in the API's shape (prices in minor units).

    A line names its product by SKU; a line without one is a custom line, whose list price is
    typed. What is typed goes to the API as it is: the services refuse, for instance, a list
    price typed on a product's line.
    """
    currency = form.currency.data
    items = []
    for number, entry in enumerate(form.line_items.entries, start=1):
        line = entry.form
        if line.is_blank():
            continue
        item: dict[str, Any] = {
            "quantity": line.quantity.data,
            "unit_price": to_minor_units(
                line.unit_price.data, currency, f"line {number}, unit price"
            ),
        }
        if sku := (line.sku.data or "").strip():
            item["sku"] = sku
        if description := (line.description.data or "").strip():
            item["description"] = description
        if (line.unit_list_price.data or "").strip():
            item["unit_list_price"] = to_minor_units(
                line.unit_list_price.data, currency, f"line {number}, unit list price"
            )
        items.append(item)
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


def fill_from(form: ApprovalForm, view, current_skus: dict[str, str]) -> None:
    """Fill an edit form from an approval (prices back in major units).

    A product's line names the product by its SKU as the book has it now (``current_skus``, by
    product id): a SKU renamed since the line was saved, and given to another product, must
    not switch the line to that product.
    """
    approval = view.approval
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
                "sku": current_skus.get(item.product_id, item.sku) if not item.custom else "",
                "description": item.description,
                "quantity": item.quantity,
                # A product's line is priced from the book again when it is saved.
                "unit_list_price": format_major_units(item.unit_list_price, approval.currency)
                if item.custom
                else "",
                "unit_price": format_major_units(item.unit_price, approval.currency),
            }
        )

"""What the price book's API accepts and returns (REST, OpenAPI and GraphQL alike)."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, field_validator

from ..currencies import CURRENCIES
from ..schemas import (
    MAX_UNIT_PRICE,
    Currency,
    Input,
    Integer,
    ListOf,
    ListQuery,
    Out,
    Time,
    optional,
    text,
)

# What a product may hold: the API's models below, the dashboard's forms and the CSV files.
SKU_LENGTH = 100
NAME_LENGTH = 200
DESCRIPTION_LENGTH = 500
MAX_PRICES = len(CURRENCIES)  # one per currency

_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _visible(value: str) -> str:
    """A SKU people can read and pick: no tabs, line breaks or invisible characters (a
    right-to-left override could make two SKUs look alike)."""
    for char in value:
        if char != " " and (char.isspace() or unicodedata.category(char) in _INVISIBLE):
            raise ValueError(
                "may hold letters, digits, punctuation and spaces only, not "
                f"{unicodedata.name(char, repr(char))}"
            )
    return value


Sku = Annotated[text(SKU_LENGTH, min_length=1), AfterValidator(_visible)]
ProductName = text(NAME_LENGTH, min_length=1)
ProductDescription = text(DESCRIPTION_LENGTH)
Search = text(NAME_LENGTH)


class PriceInput(Input):
    currency: Currency
    unit_list_price: Integer = Field(
        ge=1, le=MAX_UNIT_PRICE, description="List price of one unit, in minor units (cents)."
    )


def _one_price_per_currency(prices: list[PriceInput]) -> list[PriceInput]:
    seen: set[str] = set()
    for price in prices:
        if price.currency in seen:
            raise ValueError(f"{price.currency} is listed twice: one price per currency")
        seen.add(price.currency)
    return sorted(prices, key=lambda price: price.currency)


Prices = Annotated[list[PriceInput], Field(max_length=MAX_PRICES)]


class ProductCreate(Input):
    sku: Sku = Field(description="Unique in the organization; line items may name it.")
    name: ProductName
    description: ProductDescription = ""
    active: StrictBool = Field(True, description="Only active products go on new line items.")
    prices: Prices = Field([], description="List prices, one per currency.")

    _prices = field_validator("prices")(_one_price_per_currency)


class ProductUpdate(Input):
    """Fields left out stay as they are; ``prices`` replaces the whole list."""

    sku: Sku = optional()
    name: ProductName = optional()
    description: ProductDescription = optional()
    active: StrictBool = optional(description="false archives the product.")
    prices: Prices = optional()

    _prices = field_validator("prices")(_one_price_per_currency)


class ProductListQuery(ListQuery):
    active: bool = optional(description="Only active (true) or archived (false) products.")
    sku: Sku = optional(description="Only the product with exactly this SKU.")
    q: Search = optional(description="Name or SKU contains this text (any case).")


class PriceOut(Out):
    currency: str
    unit_list_price: int = Field(description="List price of one unit, in minor units.")


class ProductOut(Out):
    object: Literal["product"]
    id: str
    sku: str
    name: str
    description: str
    active: bool
    prices: list[PriceOut]
    created: Time = Field(validation_alias="created_at")
    updated: Time = Field(validation_alias="updated_at")

    @classmethod
    def read(cls, product: Any) -> Any:
        return super().read(product, prices=product.prices)


class ProductList(ListOf):
    data: list[ProductOut]

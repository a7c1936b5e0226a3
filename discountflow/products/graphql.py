"""The price book over GraphQL: the same services, rules and shapes as REST."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..graphql_base import (
    Connection,
    DateTime,
    Deleted,
    Long,
    actor,
    check_first,
    page,
    validated,
)
from . import services
from .schemas import ProductCreate, ProductListQuery, ProductOut, ProductUpdate


@strawberry.type(description="A list price of one unit, in minor units of its currency.")
class Price:
    currency: str
    unit_list_price: Long


@strawberry.type(description="A product of the price book; line items take its list prices.")
class Product:
    id: strawberry.ID
    sku: str
    name: str
    description: str
    active: bool = strawberry.field(description="Only active products go on new line items.")
    created: DateTime
    updated: DateTime

    # The object is a ProductOut: ``self`` below is that object.
    @strawberry.field(description="Its list prices, one per currency, by currency.")
    def prices(self, first: int) -> list[Price]:
        return self.prices[: check_first(first)]


@strawberry.input
class PriceInput:
    currency: str
    unit_list_price: Long


@strawberry.input
class ProductCreateInput:
    sku: str
    name: str
    description: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    prices: list[PriceInput] | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay as they are; prices replaces the list.")
class ProductUpdateInput:
    sku: str | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    prices: list[PriceInput] | None = strawberry.UNSET


@strawberry.type
class Query:
    @strawberry.field(description="The price book, newest first; filter as GET /v2/products.")
    def products(
        self,
        info: Info,
        first: int,
        after: str | None = None,
        active: bool | None = None,
        sku: str | None = None,
        q: str | None = None,
    ) -> Connection[Product]:
        query = validated(
            ProductListQuery,
            {"limit": first, "starting_after": after, "active": active, "sku": sku, "q": q},
            argument=None,
            names={"limit": "first", "starting_after": "after"},
        )
        found, has_more = services.list_products(actor(info), query, page(first, after))
        return Connection.of([ProductOut.of(product) for product in found], has_more)

    @strawberry.field(description="One product; null (with an error) when there is none.")
    def product(self, info: Info, id: strawberry.ID) -> Product | None:
        return ProductOut.of(services.get_product(actor(info), id))


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Add a product with its list prices (owner and admins).")
    def create_product(self, info: Info, input: ProductCreateInput) -> Product | None:
        data = validated(ProductCreate, input)
        return ProductOut.of(services.create_product(actor(info), data))

    @strawberry.mutation(description="Change a product; active: false archives it.")
    def update_product(
        self, info: Info, id: strawberry.ID, input: ProductUpdateInput
    ) -> Product | None:
        data = validated(ProductUpdate, input)
        return ProductOut.of(services.update_product(actor(info), id, data))

    @strawberry.mutation(description="Delete a product no line item names (archive it instead).")
    def delete_product(self, info: Info, id: strawberry.ID) -> Deleted | None:
        services.delete_product(actor(info), id)
        return Deleted(object="product", id=id, deleted=True)

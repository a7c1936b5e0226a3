"""``/v2/products`` as JSON: the price book."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..openapi import operation
from ..schemas import DeletedOut
from . import services
from .schemas import ProductCreate, ProductList, ProductListQuery, ProductOut, ProductUpdate

bp = Blueprint("products_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

PRODUCTS = "Products"


@bp.get("/products")
@operation(ProductList, tag=PRODUCTS)
def list_products(query: ProductListQuery):
    """List the price book's products, newest first; filter by active, SKU or text."""
    return ProductList.page(*services.list_products(current_actor(), query, query.page()))


@bp.post("/products")
@operation(ProductOut, tag=PRODUCTS, status=201)
def create_product(json: ProductCreate):
    """Add a product with its list prices (owner and admins)."""
    return ProductOut.of(services.create_product(current_actor(), json)), 201


@bp.get("/products/<product_id>")
@operation(ProductOut, tag=PRODUCTS)
def get_product(product_id: str):
    """Retrieve a product with its list prices."""
    return ProductOut.of(services.get_product(current_actor(), product_id))


@bp.patch("/products/<product_id>")
@operation(ProductOut, tag=PRODUCTS)
def update_product(product_id: str, json: ProductUpdate):
    """Change a product (owner and admins); "active": false archives it, and prices replaces
    the list. Line items keep the price they took when they were saved."""
    return ProductOut.of(services.update_product(current_actor(), product_id, json))


@bp.delete("/products/<product_id>")
@operation(DeletedOut, tag=PRODUCTS)
def delete_product(product_id: str):
    """Delete a product no line item names (409 otherwise: archive it instead)."""
    services.delete_product(current_actor(), product_id)
    return DeletedOut(object="product", id=product_id, deleted=True)

"""The price book: products and their list prices — the rules every surface shares.

Everyone who may read the organization's data reads the book (line items name its products);
the owner and admins change it. A product some approval's line item names is archived
(``active: false``), never deleted: the database refuses the delete (the line item's foreign
key), so a product cannot disappear from under a concurrent request either.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ..actors import Actor, fetch, writing
from ..audit.services import EventLog
from ..database import new_id, utcnow
from ..errors import Conflict
from ..extensions import db
from ..pagination import PageRequest, page_of
from .models import Product, ProductPrice
from .schemas import PriceInput, ProductCreate, ProductListQuery, ProductUpdate

MANAGE_PRODUCTS = "manage the price book"
IN_USE = (
    "Line items of approvals name this product, so it stays in the book: archive it instead "
    '("active": false).'
)


def _sku_taken(sku: str) -> Conflict:
    return Conflict(f"The price book already has a product with SKU {sku!r}.", param="sku")


# --- reading -----------------------------------------------------------------------------------


def _contains(column, text: str):
    pattern = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{pattern}%", escape="\\")


def list_products(
    actor: Actor, query: ProductListQuery, page: PageRequest
) -> tuple[list[Product], bool]:
    """Return one page of the organization's products, newest first, filtered."""
    filters = []
    if query.active is not None:
        filters.append(Product.active.is_(query.active))
    if query.sku is not None:
        filters.append(Product.sku == query.sku)
    if query.q:
        filters.append(or_(_contains(Product.name, query.q), _contains(Product.sku, query.q)))
    return page_of(Product, page, Product.organization_id == actor.organization_id, *filters)


def get_product(actor: Actor, product_id: str) -> Product:
    """Return one product of the actor's organization."""
    return fetch(actor, Product, product_id, "product")


def _locked(actor: Actor, product_id: str) -> Product:
    """A product about to change, locked (two changes to its prices run one after the other)."""
    product = get_product(actor, product_id)
    db.session.execute(
        select(Product.id).where(Product.id == product.id).with_for_update()
    ).scalar_one()
    db.session.refresh(product)
    return product


def products_for_lines(
    actor: Actor, product_ids: Collection[str], skus: Collection[str], *, lock: bool = False
) -> list[Product]:
    """The organization's products with these ids or SKUs (with their prices), in one query;
    ``lock`` when line items that name them are about to be written."""
    if not product_ids and not skus:
        return []
    wanted = []
    if product_ids:
        wanted.append(Product.id.in_(list(product_ids)))
    if skus:
        wanted.append(Product.sku.in_(list(skus)))
    statement = select(Product).where(
        Product.organization_id == actor.organization_id, or_(*wanted)
    )
    if lock:
        # Held until the line items commit: a product cannot be deleted from under them
        # (PostgreSQL's FOR KEY SHARE; SQLite's writers run one at a time anyway).
        statement = statement.with_for_update(read=True, key_share=True)
    return list(db.session.execute(statement).scalars())


def active_products(actor: Actor, *, limit: int) -> list[Product]:
    """The first ``limit`` active products of the organization, by SKU (the request form's
    choices)."""
    statement = (
        select(Product)
        .where(Product.organization_id == actor.organization_id, Product.active.is_(True))
        .order_by(Product.sku)
        .limit(limit)
    )
    return list(db.session.execute(statement).scalars())


# --- changing ----------------------------------------------------------------------------------


def _prices(prices: list[PriceInput]) -> list[ProductPrice]:
    return [ProductPrice(currency=p.currency, unit_list_price=p.unit_list_price) for p in prices]


def _commit(product: Product, sku: str) -> Product:
    """Commit a product whose SKU is ``sku`` (read before the commit: a refused one rolls
    back, and the product with it)."""
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise _sku_taken(sku) from error
    return product


def create_product(actor: Actor, data: ProductCreate) -> Product:
    """Add a product to the book; owner and admins only."""
    writing(actor)
    actor.require_manager(MANAGE_PRODUCTS)
    now = utcnow()
    events = EventLog(actor, now)  # reads the actor before the new row can be flushed
    product = Product(
        id=new_id("prd"),
        organization_id=actor.organization_id,
        sku=data.sku,
        name=data.name,
        description=data.description,
        active=data.active,
        created_at=now,
        updated_at=now,
        prices=_prices(data.prices),
    )
    db.session.add(product)
    events.add("product.created", product=product.id, sku=product.sku)
    return _commit(product, data.sku)


def _apply(product: Product, data: ProductUpdate, events: EventLog) -> list[str]:
    """Change a product as ``data`` says; record what changed; return the names changed."""
    changed = []
    for name in ("sku", "name", "description", "active"):
        if name in data.model_fields_set and getattr(data, name) != getattr(product, name):
            setattr(product, name, getattr(data, name))
            changed.append(name)
    if "prices" in data.model_fields_set:
        new = {price.currency: price.unit_list_price for price in data.prices}
        if new != {price.currency: price.unit_list_price for price in product.prices}:
            product.prices = _prices(data.prices)
            changed.append("prices")
    if changed:
        product.updated_at = events.now
        archived = "active" in changed and not product.active
        kind = "product.archived" if archived else "product.updated"
        events.add(kind, product=product.id, sku=product.sku, fields=changed)
    return changed


def update_product(actor: Actor, product_id: str, data: ProductUpdate) -> Product:
    """Change a product (``active: false`` archives it); line items keep the price they took."""
    writing(actor)
    actor.require_manager(MANAGE_PRODUCTS)
    product = _locked(actor, product_id)
    _apply(product, data, EventLog(actor, utcnow()))
    return _commit(product, product.sku)


def delete_product(actor: Actor, product_id: str) -> str:
    """Delete a product no line item names (409 otherwise: archive it instead)."""
    writing(actor)
    actor.require_manager(MANAGE_PRODUCTS)
    now = utcnow()
    product = _locked(actor, product_id)
    EventLog(actor, now).add("product.deleted", product=product.id, sku=product.sku)
    db.session.delete(product)
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise Conflict(IN_USE) from error
    return product_id


def upsert_products(
    actor: Actor,
    rows: list[ProductCreate],
    now: datetime,
    progress: Callable[[int], None] | None = None,
    every: int = 1_000,
) -> tuple[int, int]:
    """Create or change products by SKU, in the caller's transaction; prices are set per
    currency (currencies not named stay), and fields a row leaves out stay. Return how many
    were created and changed. ``progress(done)`` is called every ``every`` rows."""
    skus = [row.sku for row in rows]
    existing = {
        product.sku: product
        for chunk in range(0, len(skus), 500)  # bounded IN lists
        for product in db.session.execute(
            select(Product).where(
                Product.organization_id == actor.organization_id,
                Product.sku.in_(skus[chunk : chunk + 500]),
            )
        ).scalars()
    }
    events = EventLog(actor, now)
    created = changed = 0
    for done, row in enumerate(rows, 1):
        if progress is not None and done % every == 0:
            progress(done)
        product = existing.get(row.sku)
        if product is None:
            product = Product(
                id=new_id("prd"),
                organization_id=actor.organization_id,
                sku=row.sku,
                name=row.name,
                description=row.description,
                active=row.active,
                created_at=now,
                updated_at=now,
                prices=_prices(row.prices),
            )
            db.session.add(product)
            events.add("product.created", product=product.id, sku=product.sku)
            created += 1
            continue
        kept = [p for p in product.prices if p.currency not in {r.currency for r in row.prices}]
        prices = [PriceInput(currency=p.currency, unit_list_price=p.unit_list_price) for p in kept]
        given = {name: getattr(row, name) for name in ("name", "description", "active")}
        update = ProductUpdate(
            prices=prices + list(row.prices),
            # What the row leaves out (a file without the column) stays as it is.
            **{name: value for name, value in given.items() if name in row.model_fields_set},
        )
        if _apply(product, update, events):
            changed += 1
    return created, changed

"""Tables for the price book: products and their list prices, one per currency."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class Product(db.Model):
    """Something the organization sells, by SKU, with its list prices."""

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("organization_id", "sku"),
        # Lists are per organization, newest first, with the id as the tie-breaker.
        Index("ix_products_organization_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "prd"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    prices: Mapped[list[ProductPrice]] = relationship(
        order_by="ProductPrice.currency",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )

    def price_in(self, currency: str) -> int | None:
        """The list price of one unit in this currency (minor units), if the book has one."""
        return next((p.unit_list_price for p in self.prices if p.currency == currency), None)


class ProductPrice(db.Model):
    """The list price of one unit of a product in one currency, in minor units."""

    __tablename__ = "product_prices"

    product_id: Mapped[str] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    unit_list_price: Mapped[int] = mapped_column(BigInteger)

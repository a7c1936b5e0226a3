"""The price book: products and their list prices; line items name a product or are custom

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 12:00:00.000000

Existing line items keep their typed list price and become custom lines (no product); every
existing organization allows custom lines, so nothing that worked stops working.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_products_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("organization_id", "sku", name=op.f("uq_products_organization_id")),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(
            "ix_products_organization_created",
            ["organization_id", "created_at", "id"],
            unique=False,
        )
    op.create_table(
        "product_prices",
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_list_price", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_prices_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_id", "currency", name=op.f("pk_product_prices")),
    )
    # Existing lines: custom (their list price was typed), naming no product.
    with op.batch_alter_table("approval_line_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("product_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("custom", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.create_index(
            batch_op.f("ix_approval_line_items_product_id"), ["product_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_approval_line_items_product_id_products"),
            "products",
            ["product_id"],
            ["id"],
        )
    with op.batch_alter_table("approval_line_items", schema=None) as batch_op:
        batch_op.alter_column("custom", server_default=None)  # new lines always say
    # Existing organizations: custom lines allowed.
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "custom_line_items",
                sa.String(length=16),
                nullable=False,
                server_default="allowed",
            )
        )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.alter_column("custom_line_items", server_default=None)


def downgrade():
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("custom_line_items")
    with op.batch_alter_table("approval_line_items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_approval_line_items_product_id_products"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_approval_line_items_product_id"))
        batch_op.drop_column("custom")
        batch_op.drop_column("product_id")
    op.drop_table("product_prices")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index("ix_products_organization_created")
    op.drop_table("products")

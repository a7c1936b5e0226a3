"""Insights: when each step started waiting, and indexes for the figures

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("approval_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    # Steps decided before this release: the first step of the current round started at its
    # submit; every later step when the step before it was approved. (The first step of an
    # earlier round started at a submit no longer recorded on the approval: left unknown, and
    # left out of the figures.)
    op.execute(
        """
        UPDATE approval_steps SET started_at = (
            SELECT approvals.submitted_at FROM approvals
            WHERE approvals.id = approval_steps.approval_id
              AND approvals.round = approval_steps.round
        )
        WHERE position = 1 AND status <> 'waiting'
        """
    )
    op.execute(
        """
        UPDATE approval_steps SET started_at = (
            SELECT earlier.decided_at FROM approval_steps AS earlier
            WHERE earlier.approval_id = approval_steps.approval_id
              AND earlier.round = approval_steps.round
              AND earlier.position = approval_steps.position - 1
        )
        WHERE position > 1 AND status <> 'waiting'
        """
    )
    with op.batch_alter_table("approval_steps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_steps_insights",
            ["approval_id", "decided_at", "started_at", "level_rank", "level_name"],
            unique=False,
        )
        batch_op.create_index(
            "ix_approval_steps_decided_by", ["decided_by_id", "approval_id"], unique=False
        )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approvals_organization_currency_decided",
            [
                "organization_id",
                "currency",
                "decided_at",
                "status",
                "submitted_at",
                "requested_by_id",
                "required_level_id",
                "list_amount",
                "amount",
                "id",
            ],
            unique=False,
        )
    with op.batch_alter_table("approval_line_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_line_items_insights",
            ["approval_id", "product_id", "custom", "quantity", "unit_list_price", "unit_price"],
            unique=False,
        )
    with op.batch_alter_table("approval_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_decisions_organization_type_created",
            ["organization_id", "type", "created_at"],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table("approval_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_decisions_organization_type_created")
    with op.batch_alter_table("approval_line_items", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_line_items_insights")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_organization_currency_decided")
    with op.batch_alter_table("approval_steps", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_steps_decided_by")
        batch_op.drop_index("ix_approval_steps_insights")
        batch_op.drop_column("started_at")

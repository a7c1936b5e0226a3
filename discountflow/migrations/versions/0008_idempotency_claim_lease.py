"""Idempotency-Key claims record when their request's work was committed

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 15:45:00.000000

A claim whose request died (a worker killed mid-request) is taken over by a retry once its
lease has run out, unless the request's work was committed: ``work_committed_at`` says so,
written in the same transaction as the work.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("work_committed_at", sa.DateTime(timezone=True)))


def downgrade():
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("work_committed_at")

"""Reminders: the organization's reminder interval (hours; 0: no reminders)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 03:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reminder_interval_hours", sa.Integer(), nullable=False, server_default="24")
        )


def downgrade():
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("reminder_interval_hours")

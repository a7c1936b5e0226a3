"""The hour of a member's daily digest (UTC; 8 unless they choose another)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 08:05:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notification_preferences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("digest_hour", sa.SmallInteger(), nullable=False, server_default="8")
        )


def downgrade():
    with op.batch_alter_table("notification_preferences", schema=None) as batch_op:
        batch_op.drop_column("digest_hour")

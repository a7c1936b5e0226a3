"""Chat and push destinations (Apprise URLs, encrypted), their notifications, and the daily
email digest

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "notification_destinations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("masked_url", sa.String(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notification_destinations_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_destinations")),
    )
    with op.batch_alter_table("notification_destinations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_destinations_organization",
            ["organization_id", "created_at", "id"],
            unique=False,
        )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("recipient_id", existing_type=sa.String(length=32), nullable=True)
        batch_op.add_column(sa.Column("destination_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_destination_id_notification_destinations"),
            "notification_destinations",
            ["destination_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            "ix_notifications_destination_created", ["destination_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_notifications_organization_created",
            ["organization_id", "created_at", "id"],
            unique=False,
        )
    with op.batch_alter_table("notification_preferences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("digest", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("notification_preferences", schema=None) as batch_op:
        batch_op.drop_column("digest")
    op.execute("DELETE FROM notifications WHERE recipient_id IS NULL")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_organization_created")
        batch_op.drop_index("ix_notifications_destination_created")
        batch_op.drop_constraint(
            batch_op.f("fk_notifications_destination_id_notification_destinations"),
            type_="foreignkey",
        )
        batch_op.drop_column("destination_id")
        batch_op.alter_column("recipient_id", existing_type=sa.String(length=32), nullable=False)
    with op.batch_alter_table("notification_destinations", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_destinations_organization")
    op.drop_table("notification_destinations")

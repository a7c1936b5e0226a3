"""Who took part in each approval's current round (four eyes); events by type

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The events by which someone created, edited or submitted a round, and those that end one.
TOOK_PART = ("approval.created", "approval.updated", "approval.submitted")
ENDS_ROUND = ("approval.changes_requested", "approval.recalled")
UNDECIDED = ("draft", "pending", "changes_requested")


def upgrade():
    op.create_table(
        "approval_participants",
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approvals.id"],
            name=op.f("fk_approval_participants_approval_id_approvals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_approval_participants_user_id_users")
        ),
        sa.PrimaryKeyConstraint("approval_id", "user_id", name=op.f("pk_approval_participants")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_organization_type",
            ["organization_id", "type", "created_at", "id"],
            unique=False,
        )
    _record_who_took_part_in_open_rounds()


def _record_who_took_part_in_open_rounds():
    """From the audit trail: who created, edited or submitted each undecided approval's current
    round (since the last request for changes or recall), so four eyes holds for them too."""
    connection = op.get_bind()
    events = sa.table(
        "events",
        sa.column("approval_id"),
        sa.column("type"),
        sa.column("actor_user_id"),
        sa.column("created_at"),
    )
    approvals = sa.table("approvals", sa.column("id"), sa.column("status"))
    users = sa.table("users", sa.column("id"))
    participants = sa.table("approval_participants", sa.column("approval_id"), sa.column("user_id"))
    open_ids = [
        row.id
        for row in connection.execute(
            sa.select(approvals.c.id).where(approvals.c.status.in_(UNDECIDED))
        )
    ]
    known_users = set(connection.execute(sa.select(users.c.id)).scalars())
    rows = []
    for approval_id in open_ids:
        trail = connection.execute(
            sa.select(events.c.type, events.c.actor_user_id)
            .where(events.c.approval_id == approval_id)
            .order_by(events.c.created_at)
        ).all()
        took_part: set[str] = set()
        for event_type, user_id in trail:
            if event_type in ENDS_ROUND:
                took_part.clear()
            elif event_type in TOOK_PART and user_id in known_users:
                took_part.add(user_id)
        rows += [{"approval_id": approval_id, "user_id": user_id} for user_id in took_part]
    if rows:
        connection.execute(participants.insert(), rows)


def downgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_organization_type")
    op.drop_table("approval_participants")

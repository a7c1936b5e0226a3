"""Tables for approvals: levels of authority, requests, line items, steps, decisions, comments
and who took part in the current round."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db
from ..products.models import Product


class ApprovalStatus(enum.StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELED = "canceled"
    EXPIRED = "expired"


EDITABLE = frozenset({ApprovalStatus.DRAFT, ApprovalStatus.CHANGES_REQUESTED})
OPEN = frozenset({ApprovalStatus.DRAFT, ApprovalStatus.PENDING, ApprovalStatus.CHANGES_REQUESTED})


class StepStatus(enum.StrEnum):
    WAITING = "waiting"  # a later step: not its turn yet
    PENDING = "pending"  # the active step: awaiting a decision
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    CANCELED = "canceled"  # the round ended (recall, cancel) before this step was decided


class DecisionType(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"
    AUTO_APPROVE = "auto_approve"


def effective_status(status: str, valid_until: datetime | None, now: datetime) -> str:
    """Return the status a reader sees: an approved price past its validity has expired."""
    if status == ApprovalStatus.APPROVED and valid_until is not None and valid_until <= now:
        return ApprovalStatus.EXPIRED.value
    return status


class ApprovalLevel(db.Model):
    """A limit of authority: "Manager up to 15 %, VP up to 30 %, CFO above"."""

    __tablename__ = "approval_levels"
    __table_args__ = (UniqueConstraint("organization_id", "rank"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "lvl"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    rank: Mapped[int] = mapped_column(Integer)  # 1 = lowest
    max_discount_bps: Mapped[int] = mapped_column(Integer)  # the largest discount it approves
    # Optionally also the largest total discount, in minor units of one currency.
    max_discount_amount: Mapped[int | None] = mapped_column(BigInteger)
    max_discount_currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Approval(db.Model):
    """A discount request on a deal. Totals are computed from its line items, never sent in."""

    __tablename__ = "approvals"
    __table_args__ = (
        # Lists are per organization, newest first, with the id as the tie-breaker.
        Index("ix_approvals_organization_created", "organization_id", "created_at", "id"),
        # "Awaiting my decision": pending approvals by the level of their active step.
        Index("ix_approvals_organization_awaiting", "organization_id", "awaiting_level_id"),
        Index("ix_approvals_organization_requester", "organization_id", "requested_by_id"),
        # Approved approvals by when their price expires (status filters read "expired").
        Index("ix_approvals_organization_status_valid", "organization_id", "status", "valid_until"),
        # Insights: the decisions of a period in one currency, read from the index alone (the
        # columns the figures add up come with it, so no row of the table is visited).
        Index(
            "ix_approvals_organization_currency_decided",
            "organization_id",
            "currency",
            "decided_at",
            "status",
            "submitted_at",
            "requested_by_id",
            "required_level_id",
            "list_amount",
            "amount",
            "id",  # (the line items and steps join on it)
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "apr"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    requested_by_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    customer: Mapped[str] = mapped_column(String(200), default="")
    deal_reference: Mapped[str] = mapped_column(String(100), default="")
    currency: Mapped[str] = mapped_column(String(3))
    justification: Mapped[str] = mapped_column(Text, default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(24), default=ApprovalStatus.DRAFT.value)
    # Totals in minor units and the largest line discount, kept in step with the line items.
    list_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    max_line_discount_bps: Mapped[int] = mapped_column(Integer, default=0)
    # Routing, frozen at submit: the level required and the level whose turn it is.
    round: Mapped[int] = mapped_column(Integer, default=0)  # one per submit
    required_level_id: Mapped[str | None] = mapped_column(
        ForeignKey("approval_levels.id", ondelete="SET NULL")
    )
    awaiting_level_id: Mapped[str | None] = mapped_column(
        ForeignKey("approval_levels.id", ondelete="SET NULL")
    )
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    line_items: Mapped[list[LineItem]] = relationship(
        order_by="LineItem.position", cascade="all, delete-orphan", passive_deletes=True
    )
    steps: Mapped[list[Step]] = relationship(
        order_by="(Step.round, Step.position)", cascade="all, delete-orphan", passive_deletes=True
    )
    participants: Mapped[list[Participant]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def discount_amount(self) -> int:
        return self.list_amount - self.amount

    def current_steps(self) -> list[Step]:
        return [step for step in self.steps if step.round == self.round]


class LineItem(db.Model):
    __tablename__ = "approval_line_items"
    __table_args__ = (
        # An approval's items in their order (lists read them in index order).
        Index("ix_approval_line_items_approval_position", "approval_id", "position"),
        # Insights: an approval's lines with what the figures add up, from the index alone.
        Index(
            "ix_approval_line_items_insights",
            "approval_id",
            "product_id",
            "custom",
            "quantity",
            "unit_list_price",
            "unit_price",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "li"))
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    # The product of the price book whose list price the line took when it was saved (a
    # product some line names cannot be deleted, only archived), or none: a custom line.
    product_id: Mapped[str | None] = mapped_column(ForeignKey(Product.id), index=True)
    custom: Mapped[bool] = mapped_column(Boolean)
    # The product's SKU and name as they were when the line was saved (or as typed).
    sku: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(500), default="")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_list_price: Mapped[int] = mapped_column(BigInteger)  # minor units, frozen when saved
    unit_price: Mapped[int] = mapped_column(BigInteger)  # the requested price, minor units


class Step(db.Model):
    """One level an approval must pass in one round of review; any eligible approver decides."""

    __tablename__ = "approval_steps"
    # A submission's steps in their order (lists read them in index order).
    __table_args__ = (
        Index("ix_approval_steps_approval_round", "approval_id", "round", "position"),
        # Insights: how long each decided step waited, from the index alone.
        Index(
            "ix_approval_steps_insights",
            "approval_id",
            "decided_at",
            "started_at",
            "level_rank",
            "level_name",
        ),
        # Insights for an approver: the approvals in which they decided a step.
        Index("ix_approval_steps_decided_by", "decided_by_id", "approval_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "stp"))
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, … in rank order
    approval_level_id: Mapped[str | None] = mapped_column(
        ForeignKey("approval_levels.id", ondelete="SET NULL"), index=True
    )
    # A copy of the level as it was at submit: routing is frozen then.
    level_name: Mapped[str] = mapped_column(String(100))
    level_rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), default=StepStatus.WAITING.value)
    decided_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    # When the step became the active one (its wait began): the submit, for the first step;
    # the approval of the step before it, for the others. None while it waits its turn.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Decision(db.Model):
    """An immutable decision on an approval: approve, reject, request changes, auto-approve."""

    __tablename__ = "approval_decisions"
    # Insights: the decisions of one type in a period (requests for changes).
    __table_args__ = (
        Index(
            "ix_approval_decisions_organization_type_created",
            "organization_id",
            "type",
            "created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "dec"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    approval_id: Mapped[str] = mapped_column(
        ForeignKey("approvals.id", ondelete="CASCADE"), index=True
    )
    step_id: Mapped[str | None] = mapped_column(ForeignKey("approval_steps.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(24))
    comment: Mapped[str] = mapped_column(Text, default="")
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Comment(db.Model):
    __tablename__ = "approval_comments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "cmt"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    approval_id: Mapped[str] = mapped_column(
        ForeignKey("approvals.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Participant(db.Model):
    """A member who created, edited or submitted the current round of an approval.

    Four eyes: none of them may decide any step of that round (a key counts as the owner it
    acts for). The rows of a round are dropped when it ends with changes requested or a recall,
    so the next round starts with whoever edits and submits it.
    """

    __tablename__ = "approval_participants"

    approval_id: Mapped[str] = mapped_column(
        ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)

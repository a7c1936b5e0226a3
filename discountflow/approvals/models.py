"""Tables for approvals (discount requests)."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import partial

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class ApprovalStatus(enum.StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELED = "canceled"
    EXPIRED = "expired"


class Approval(db.Model):
    """A discount request on a deal. The full domain (line items, steps…) builds on this table."""

    __tablename__ = "approvals"
    __table_args__ = (
        # Lists are per organization, newest first, with the id as the tie-breaker.
        Index("ix_approvals_organization_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "apr"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    requested_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    customer: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(24), default=ApprovalStatus.DRAFT.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

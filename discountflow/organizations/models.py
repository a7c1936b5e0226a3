"""Tables for organizations and their members."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import partial

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


DEFAULT_AUTO_APPROVE_THRESHOLD_BPS = 500  # 5 %: what a rep may give without approval
DEFAULT_VALIDITY_DAYS = 30  # how long an approved price holds
DEFAULT_REMINDER_INTERVAL_HOURS = 24  # a request waiting longer at one step reminds its deciders


class CustomLineItems(enum.StrEnum):
    """Whether line items may carry a typed list price instead of a product of the price book."""

    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"


class Organization(db.Model):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "org"))
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    # Percentages are kept in basis points (1 % = 100) so that comparisons are exact.
    auto_approve_threshold_bps: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_AUTO_APPROVE_THRESHOLD_BPS
    )
    default_validity_days: Mapped[int] = mapped_column(Integer, default=DEFAULT_VALIDITY_DAYS)
    # 0: no reminders.
    reminder_interval_hours: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_REMINDER_INTERVAL_HOURS
    )
    custom_line_items: Mapped[str] = mapped_column(
        String(16), default=CustomLineItems.ALLOWED.value
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    members: Mapped[list[User]] = relationship(back_populates="organization")


class User(UserMixin, db.Model):
    """A member of an organization; Flask-Login's user for the dashboard."""

    __tablename__ = "users"
    __table_args__ = (
        # An email is unique in its organization; another organization may have a member with
        # the same one (a person in two organizations), which nobody here can learn.
        UniqueConstraint("organization_id", "email"),
        # Exactly one owner per organization: the service creates it with the organization,
        # and this index refuses a second one.
        Index(
            "uq_users_one_owner_per_organization",
            "organization_id",
            unique=True,
            sqlite_where=text("role = 'owner'"),
            postgresql_where=text("role = 'owner'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "usr"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(60))
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER.value)
    # An approval level makes the member an approver for the steps at that level.
    approval_level_id: Mapped[str | None] = mapped_column(
        ForeignKey("approval_levels.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the member was removed (they left): the row stays, so that history still names
    # them, but they sign in to nothing, decide nothing and are told nothing.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship(back_populates="members")

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER.value

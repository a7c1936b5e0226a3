"""The notifications table: one row per (event, recipient, channel), the outbox the worker
empties (``worker.py``), unique by its idempotency key."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import partial

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being attempted)
    SENT = "sent"  # accepted by the mail server (or written to the log without MAIL_URL)
    FAILED = "failed"  # refused for good, or not accepted within the retry window
    SKIPPED = "skipped"  # no longer true when its turn came (the step was decided meanwhile)


class NotificationKind(enum.StrEnum):
    DECISION_REQUESTED = "decision_requested"  # to the deciders of the active step
    APPROVED = "approved"  # to the requester
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"  # to the participants but the comment's author
    REMINDER = "reminder"  # to the deciders of a step that waited past the reminder interval


class Channel(enum.StrEnum):
    EMAIL = "email"


class Notification(db.Model):
    """One member told of one event through one channel, attempted until sent or given up."""

    __tablename__ = "notifications"
    __table_args__ = (
        # The worker's question: which pending notifications are due?
        Index("ix_notifications_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "ntf"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    # ``<event id>:<recipient id>:<channel>``: one event never tells one member twice.
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    event_type: Mapped[str] = mapped_column(String(48))
    # Not a foreign key, as in the audit trail: the row outlives a deleted draft.
    approval_id: Mapped[str | None] = mapped_column(String(32))
    recipient_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default=Channel.EMAIL.value)
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A worker's claim: the row is its own until next_attempt_at (then due again, if it died).
    claim: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Notification {self.id} {self.kind} {self.status} attempts={self.attempts}>"


class NotificationPreferences(db.Model):
    """Which kinds of email a member wants (each on unless turned off); no row: all on."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    decision_requested: Mapped[bool] = mapped_column(Boolean, default=True)
    reminder: Mapped[bool] = mapped_column(Boolean, default=True)
    approved: Mapped[bool] = mapped_column(Boolean, default=True)
    rejected: Mapped[bool] = mapped_column(Boolean, default=True)
    changes_requested: Mapped[bool] = mapped_column(Boolean, default=True)
    commented: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @classmethod
    def every_kind(cls, user_id: str, organization_id: str) -> NotificationPreferences:
        """A member's preferences before they changed any: every kind on (not yet saved)."""
        return cls(
            user_id=user_id,
            organization_id=organization_id,
            **{kind.value: True for kind in NotificationKind},
        )

    def wants(self, kind: str) -> bool:
        """Whether the member wants emails of this kind."""
        return bool(getattr(self, kind, True))

"""The notifications table: one row per (event, recipient, channel), the outbox the worker
empties (``worker.py``), unique by its idempotency key; each member's preferences; and the
organization's chat and push destinations (Apprise URLs, kept encrypted)."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import partial

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being attempted)
    SENT = "sent"  # accepted by the mail server (or written to the log without MAIL_URL)
    FAILED = "failed"  # refused for good, or not accepted within the retry window
    SKIPPED = "skipped"  # no longer true when its turn came (the step was decided meanwhile)
    DIGEST = "digest"  # held for its member's daily digest (sent with it at next_attempt_at)


class NotificationKind(enum.StrEnum):
    DECISION_REQUESTED = "decision_requested"  # to the deciders of the active step
    APPROVED = "approved"  # to the requester
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"  # to the participants but the comment's author
    REMINDER = "reminder"  # to the deciders of a step that waited past the reminder interval


class Channel(enum.StrEnum):
    EMAIL = "email"  # to a member's address
    CHAT = "chat"  # to one of the organization's destinations (Slack, Teams, ntfy, … by Apprise)


class NotificationDestination(db.Model):
    """A chat or push destination of the whole organization: an Apprise URL (it holds the
    service's tokens, so it is kept encrypted and shown masked) and the kinds it is told of."""

    __tablename__ = "notification_destinations"
    __table_args__ = (
        Index("ix_notification_destinations_organization", "organization_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "ntd"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(100))  # Apprise's name for it: "Slack"
    url: Mapped[str] = mapped_column(Text)  # encrypted (discountflow.sealing)
    masked_url: Mapped[str] = mapped_column(String(2048))  # Apprise's own, its secrets hidden
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # NotificationKind values
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(500), default="")  # "" after a success
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(db.Model):
    """One member told of one event through one channel, attempted until sent or given up."""

    __tablename__ = "notifications"
    __table_args__ = (
        # The worker's question: which pending notifications are due?
        Index("ix_notifications_due", "status", "next_attempt_at"),
        # A destination's latest attempts, newest first (Settings → Notifications).
        Index("ix_notifications_destination_created", "destination_id", "created_at"),
        # The organization's notifications, newest first (GET /v2/notifications).
        Index("ix_notifications_organization_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "ntf"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    # ``<event id>:<recipient id>:<channel>``: one event never tells one member twice.
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    event_type: Mapped[str] = mapped_column(String(48))
    # Not a foreign key, as in the audit trail: the row outlives a deleted draft.
    approval_id: Mapped[str | None] = mapped_column(String(32))
    # A member (email), or one of the organization's destinations (chat).
    recipient_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    destination_id: Mapped[str | None] = mapped_column(
        ForeignKey("notification_destinations.id", ondelete="CASCADE")
    )
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


DIGEST_HOUR = 8  # a member's daily digest, unless they choose another hour (UTC)


class NotificationPreferences(db.Model):
    """Which kinds of email a member wants (each on unless turned off), one by one or in a
    daily digest; no row: all on, one by one."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    decision_requested: Mapped[bool] = mapped_column(Boolean, default=True)
    reminder: Mapped[bool] = mapped_column(Boolean, default=True)
    approved: Mapped[bool] = mapped_column(Boolean, default=True)
    rejected: Mapped[bool] = mapped_column(Boolean, default=True)
    changes_requested: Mapped[bool] = mapped_column(Boolean, default=True)
    commented: Mapped[bool] = mapped_column(Boolean, default=True)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    digest_hour: Mapped[int] = mapped_column(SmallInteger, default=DIGEST_HOUR)  # UTC, 0-23
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @classmethod
    def every_kind(cls, user_id: str, organization_id: str) -> NotificationPreferences:
        """A member's preferences before they changed any: every kind on (not yet saved)."""
        return cls(
            user_id=user_id,
            organization_id=organization_id,
            **{kind.value: True for kind in NotificationKind},
            digest=False,
            digest_hour=DIGEST_HOUR,
        )

    def wants(self, kind: str) -> bool:
        """Whether the member wants emails of this kind."""
        return bool(getattr(self, kind, True))
